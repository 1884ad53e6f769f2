//! What a shared subscription's feeder has dealt out and not yet seen
//! acknowledged (`shared.rs` deals; the sessions acknowledge).
//!
//! The group's committed position is the lowest offset still outstanding:
//! a message one member has not acknowledged is never skipped, whichever
//! member acknowledges the later ones.

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

/// One shared feeder's messages out: those dealt at QoS 1/2 and not yet
/// acknowledged, each with the connection it went to.
#[derive(Debug)]
pub(super) struct Dealt {
    /// The connection whose feeder deals (it commits the group's position).
    pub(super) owner: u64,
    state: Mutex<State>,
}

/// A message dealt and not yet acknowledged.
#[derive(Debug)]
struct Out {
    /// The connection it went to; None: nobody has it now.
    to: Option<u64>,
    /// The QoS it went out at.
    qos: QoS,
    message: Message,
}

#[derive(Debug)]
struct State {
    /// By offset.
    outstanding: BTreeMap<u64, Out>,
    /// The offset after the last record read.
    read_to: u64,
    /// The position last committed.
    committed: u64,
}

impl Dealt {
    pub(super) fn new(owner: u64, position: u64) -> Dealt {
        let state = State { outstanding: BTreeMap::new(), read_to: position, committed: position };
        Dealt { owner, state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `message` went to `connection` at `qos` (None: to nobody, for now)
    /// and waits for its acknowledgement.
    pub(super) fn dealt(&self, connection: Option<u64>, qos: QoS, message: &Message) {
        self.state().outstanding.insert(message.offset, Out { to: connection, qos, message: message.clone() });
    }

    /// Nothing more is owed for `offset`: acknowledged, sent at QoS 0, or
    /// wanted by no member.
    pub(super) fn settled(&self, offset: u64) {
        self.state().outstanding.remove(&offset);
    }

    /// Everything before `position` has been read (and dealt).
    pub(super) fn read_to(&self, position: u64) {
        let mut state = self.state();
        state.read_to = state.read_to.max(position);
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
    /// without acknowledging it: it stays outstanding until dealt again.
    /// None if it is not outstanding with `connection`, or if it is a QoS 2
    /// message already `sent` to that client: such a message goes to no
    /// other client (MQTT-4.8.2-5), so nothing more is owed for it.
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

    #[test]
    fn the_position_waits_for_the_lowest_unacknowledged_message() {
        let dealt = Dealt::new(1, 10);
        assert_eq!(dealt.progress(), None, "nothing read yet");
        for offset in 10..13 {
            dealt.dealt(Some(if offset == 11 { 2 } else { 1 }), QoS::AtLeastOnce, &message(offset));
        }
        dealt.read_to(13);
        assert_eq!(dealt.progress(), None, "offset 10 is still out");
        dealt.settled(10);
        dealt.settled(12);
        assert_eq!(dealt.progress(), Some(11), "offset 11, dealt to connection 2, is not acknowledged");
        assert_eq!(dealt.progress(), Some(11), "until the group accepts it");
        dealt.committed(11);
        assert_eq!(dealt.progress(), None);
        // Connection 2 leaves: its message stays outstanding until dealt again.
        assert!(dealt.reclaim(11, 1, true).is_none(), "not dealt to connection 1");
        assert_eq!(dealt.reclaim(11, 2, true).map(|m| m.offset), Some(11));
        assert!(dealt.reclaim(11, 2, true).is_none(), "taken back once");
        assert_eq!(dealt.progress(), None);
        dealt.dealt(Some(1), QoS::AtLeastOnce, &message(11));
        dealt.settled(11);
        assert_eq!(dealt.progress(), Some(13));
    }

    #[test]
    fn a_qos_2_message_sent_to_a_member_goes_to_no_other() {
        let dealt = Dealt::new(1, 0);
        for offset in 0..2 {
            dealt.dealt(Some(2), QoS::ExactlyOnce, &message(offset));
        }
        dealt.read_to(2);
        assert!(dealt.reclaim(0, 2, true).is_none(), "sent: the delivery had begun");
        assert_eq!(dealt.reclaim(1, 2, false).map(|m| m.offset), Some(1), "still queued: dealt again");
        assert_eq!(dealt.progress(), Some(1));
    }
}
