//! What a shared subscription's group has dealt out of a partition and not
//! yet seen acknowledged (`shared.rs` deals; the sessions acknowledge).
//!
//! The group's committed position is the lowest offset still outstanding:
//! a message one member has not acknowledged is never skipped, whichever
//! member acknowledges the later ones. One member reads the partition at a
//! time (the one that claimed it last), so no message is dealt twice.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

use super::properties::MessageProperties;

/// A record read for subscribers, before it is matched against a
/// session's filters.
#[derive(Debug, Clone)]
pub(super) struct Message {
    /// Its MQTT topic.
    pub(super) topic: String,
    pub(super) payload: Bytes,
    /// The QoS it was published with.
    pub(super) published: QoS,
    pub(super) retained: bool,
    /// Published by the session the feeder serves (for No Local).
    pub(super) own: bool,
    pub(super) properties: MessageProperties,
    /// Its offset in the partition.
    pub(super) offset: u64,
}

/// What one partition of a shared subscription's group has dealt out and
/// not yet seen acknowledged, each message with the connection it went to.
/// It belongs to the group, not to the member reading the partition: when
/// the partition moves to another member, that member goes on from where
/// the last one stopped reading, and sends again nothing a member still
/// holds (at QoS 2, that would be a duplicate, MQTT-4.8.2-5).
#[derive(Debug)]
pub(super) struct Dealt {
    state: Mutex<State>,
}

/// A message dealt and not yet acknowledged.
#[derive(Debug)]
struct Out {
    /// The connection it went to; None: nobody has it now (it waits for
    /// room at a member, or for the next reader).
    to: Option<u64>,
    /// The QoS it went out at.
    qos: QoS,
    message: Message,
}

/// What happened to a message a dealer was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deal {
    /// No member's filters match it: nothing to wait for.
    Skipped,
    /// It waits for room in a member's queue (or, if the dealer stops
    /// first, for the partition's next reader).
    Waiting,
    /// Sent to this connection at this QoS (at QoS 0, nothing to wait for).
    To(u64, QoS),
}

#[derive(Debug)]
struct State {
    /// By offset.
    outstanding: BTreeMap<u64, Out>,
    /// The offset after the last record read.
    read_to: u64,
    /// The position last committed.
    committed: u64,
    /// The connection whose feeder reads the partition now.
    reader: Option<u64>,
}

impl Dealt {
    pub(super) fn new(position: u64) -> Dealt {
        let state = State { outstanding: BTreeMap::new(), read_to: position, committed: position, reader: None };
        Dealt { state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `connection` the partition's reader (a reader before it
    /// deals nothing more): where it reads from, and the messages waiting
    /// for a member, for it to deal first.
    pub(super) fn claim(&self, connection: u64) -> (u64, Vec<Message>) {
        let mut state = self.state();
        state.reader = Some(connection);
        let waiting = state.outstanding.values().filter(|out| out.to.is_none()).map(|out| out.message.clone());
        (state.read_to, waiting.collect())
    }

    /// Notes what `reader` did with a message it read. False when another
    /// connection reads the partition now: the message is that one's to
    /// deal, and `reader` stops.
    pub(super) fn read(&self, reader: u64, message: &Message, deal: Deal) -> bool {
        let mut state = self.state();
        if state.reader != Some(reader) {
            return false;
        }
        state.read_to = state.read_to.max(message.offset + 1);
        let (to, qos) = match deal {
            Deal::Skipped | Deal::To(_, QoS::AtMostOnce) => return true,
            Deal::Waiting => (None, message.published),
            Deal::To(connection, qos) => (Some(connection), qos),
        };
        state.outstanding.insert(message.offset, Out { to, qos, message: message.clone() });
        true
    }

    /// Notes what became of a waiting message. False when it is not
    /// waiting: another dealer took it, and it must not be sent twice.
    pub(super) fn give(&self, offset: u64, deal: Deal) -> bool {
        let mut state = self.state();
        let Some(out) = state.outstanding.get_mut(&offset).filter(|out| out.to.is_none()) else { return false };
        match deal {
            Deal::Waiting => {}
            Deal::To(connection, qos) if qos != QoS::AtMostOnce => (out.to, out.qos) = (Some(connection), qos),
            Deal::Skipped | Deal::To(..) => {
                state.outstanding.remove(&offset);
            }
        }
        true
    }

    /// The QoS the message at `offset` went to `connection` at, while it
    /// waits for that connection's acknowledgement.
    pub(super) fn sent_at(&self, offset: u64, connection: u64) -> Option<QoS> {
        self.state().outstanding.get(&offset).filter(|out| out.to == Some(connection)).map(|out| out.qos)
    }

    /// Nothing more is owed for `offset`: acknowledged.
    pub(super) fn settled(&self, offset: u64) {
        self.state().outstanding.remove(&offset);
    }

    /// Everything before `position` has been read by `reader` (and dealt),
    /// if it still reads the partition.
    pub(super) fn read_to(&self, reader: u64, position: u64) {
        let mut state = self.state();
        if state.reader == Some(reader) {
            state.read_to = state.read_to.max(position);
        }
    }

    /// The position to commit, when it moved since the last commit.
    pub(super) fn progress(&self) -> Option<u64> {
        let state = self.state();
        let position = state.outstanding.keys().next().copied().unwrap_or(state.read_to);
        (position != state.committed).then_some(position)
    }

    /// The group accepted `position` (a refused commit is tried again with
    /// the next progress).
    pub(super) fn committed(&self, position: u64) {
        self.state().committed = position;
    }

    /// Takes back the message at `offset` from `connection`, which left
    /// without acknowledging it: it waits until dealt again. None if it is
    /// not outstanding with `connection`, or if it is a QoS 2 message
    /// already `sent` to that client: such a message goes to no other
    /// client (MQTT-4.8.2-5), so nothing more is owed for it.
    pub(super) fn reclaim(&self, offset: u64, connection: u64, sent: bool) -> Option<Message> {
        let mut state = self.state();
        let out = state.outstanding.get_mut(&offset).filter(|out| out.to == Some(connection))?;
        if sent && out.qos == QoS::ExactlyOnce {
            state.outstanding.remove(&offset);
            return None;
        }
        out.to = None;
        Some(out.message.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: u64) -> Message {
        let (topic, payload, published) = ("t/x".to_string(), Bytes::from_static(b"v"), QoS::AtLeastOnce);
        let properties = MessageProperties::default();
        Message { topic, payload, published, retained: false, own: false, properties, offset }
    }

    fn offsets(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn the_position_waits_for_the_lowest_unacknowledged_message() {
        let dealt = Dealt::new(10);
        assert_eq!(dealt.claim(1).0, 10);
        assert_eq!(dealt.progress(), None, "nothing read yet");
        for offset in 10..13 {
            let to = if offset == 11 { 2 } else { 1 };
            assert!(dealt.read(1, &message(offset), Deal::To(to, QoS::AtLeastOnce)));
        }
        dealt.read_to(1, 13);
        assert_eq!(dealt.progress(), None, "offset 10 is still out");
        dealt.settled(10);
        dealt.settled(12);
        assert_eq!(dealt.progress(), Some(11), "offset 11, dealt to connection 2, is not acknowledged");
        assert_eq!(dealt.progress(), Some(11), "until the group accepts it");
        dealt.committed(11);
        assert_eq!(dealt.progress(), None);
        assert!(dealt.reclaim(11, 1, true).is_none(), "not dealt to connection 1");
        assert_eq!(dealt.reclaim(11, 2, true).map(|m| m.offset), Some(11));
        assert!(dealt.reclaim(11, 2, true).is_none(), "taken back once");
        assert_eq!(dealt.progress(), None);
        assert!(dealt.give(11, Deal::To(1, QoS::AtLeastOnce)));
        dealt.settled(11);
        assert_eq!(dealt.progress(), Some(13));
    }

    #[test]
    fn a_qos_2_message_sent_to_a_member_goes_to_no_other() {
        let dealt = Dealt::new(0);
        dealt.claim(1);
        for offset in 0..2 {
            assert!(dealt.read(1, &message(offset), Deal::To(2, QoS::ExactlyOnce)));
        }
        assert!(dealt.reclaim(0, 2, true).is_none(), "sent: the delivery had begun");
        assert_eq!(dealt.reclaim(1, 2, false).map(|m| m.offset), Some(1), "still queued: dealt again");
        assert_eq!(dealt.progress(), Some(1));
    }

    #[test]
    fn a_new_reader_goes_on_where_the_last_stopped_and_deals_what_waits() {
        let dealt = Dealt::new(0);
        dealt.claim(1);
        assert!(dealt.read(1, &message(0), Deal::To(2, QoS::ExactlyOnce)));
        assert!(dealt.read(1, &message(1), Deal::Waiting));
        assert!(dealt.read(1, &message(2), Deal::Skipped));
        assert!(dealt.read(1, &message(3), Deal::To(2, QoS::AtMostOnce)));
        let (position, waiting) = dealt.claim(3);
        assert_eq!((position, offsets(&waiting)), (4, vec![1]), "0 is still with connection 2: not sent again");
        assert!(!dealt.read(1, &message(4), Deal::To(2, QoS::AtLeastOnce)), "the last reader deals no more");
        dealt.read_to(1, 10);
        assert_eq!(dealt.claim(3).0, 4, "nor moves the position");
        assert!(dealt.give(1, Deal::To(3, QoS::AtLeastOnce)));
        assert!(!dealt.give(1, Deal::To(2, QoS::AtLeastOnce)), "a waiting message is taken once");
        assert!(!dealt.give(0, Deal::To(3, QoS::AtLeastOnce)), "not waiting");
        dealt.settled(0);
        dealt.settled(1);
        assert_eq!(dealt.progress(), Some(4));
    }
}
