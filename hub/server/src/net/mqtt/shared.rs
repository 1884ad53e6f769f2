//! Shared subscriptions dealt round robin: each message of a
//! `$share/<group>/<filter>` subscription goes to one member of the group,
//! the next in turn whose filters match it, as in Mosquitto, EMQX and
//! HiveMQ.
//!
//! The consumer group still decides which member reads each partition;
//! that member's feeder deals what it reads among all the group's members
//! on the hub ([`Dealer`]), and commits the group's position up to the
//! lowest message some member has not acknowledged. What was dealt is the
//! group's (`dealt.rs`), kept here with its members: when a partition
//! moves to another member, that member reads on from where the last one
//! stopped, and no message goes out twice. A member whose queue is full is
//! passed over for the next. When a member's connection ends, what it had
//! not acknowledged goes to the others (MQTT 5, 4.8.2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rumqttc::mqttbytes::QoS;
use tokio::sync::{mpsc, Notify};

use super::codec::Subscription;
use super::dealt::{Deal, Dealt, Message};
use super::delivery::{delivery, lower, matching, read_message, Match, Sink};
use super::persist::StoredUnacked;
use super::session::{Delivery, FeedKey, Filters, Session, Source, Sub};
use super::Server;

/// The members of each shared subscription group, for dealing.
#[derive(Default)]
pub(super) struct Members {
    groups: Mutex<HashMap<String, Group>>,
}

#[derive(Default)]
struct Group {
    members: Vec<Member>,
    /// Where the next deal starts looking.
    next: usize,
    /// What was dealt of each (Cairn topic, partition), whoever reads it.
    dealt: HashMap<(String, u32), Arc<Dealt>>,
}

struct Member {
    connection: u64,
    /// The member's filters in this group.
    filters: Filters,
    /// Its session's deliveries queue.
    tx: mpsc::Sender<Box<Delivery>>,
    /// Wakes its session to follow the group's assignment.
    regroup: Arc<Notify>,
}

/// A member a message may go to, and how its subscriptions matched it.
struct Candidate {
    connection: u64,
    matched: Match,
    tx: mpsc::Sender<Box<Delivery>>,
}

impl Candidate {
    /// What dealing `message` to this member is.
    fn deal(&self, message: &Message) -> Deal {
        Deal::To(self.connection, lower(self.matched.qos, message.published))
    }
}

impl Members {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deals `connection` in to `group` (once): its filters there, its
    /// session's deliveries queue and wake-up.
    pub(super) fn join(
        &self,
        group: &str,
        connection: u64,
        filters: &Filters,
        tx: &mpsc::Sender<Box<Delivery>>,
        regroup: &Arc<Notify>,
    ) {
        let mut groups = self.lock();
        let g = groups.entry(group.to_string()).or_default();
        if !g.members.iter().any(|m| m.connection == connection) {
            let (filters, tx, regroup) = (filters.clone(), tx.clone(), regroup.clone());
            g.members.push(Member { connection, filters, tx, regroup });
        }
    }

    /// Deals `connection` out of `group`, and wakes the members left to
    /// take over the partitions it read (call it once the consumer group
    /// has let the member go). The last member out takes what was dealt
    /// with it: a member joining later starts from the group's committed
    /// position.
    pub(super) fn leave(&self, group: &str, connection: u64) {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return };
        g.members.retain(|m| m.connection != connection);
        for member in &g.members {
            member.regroup.notify_one();
        }
        if g.members.is_empty() {
            groups.remove(group);
        }
    }

    /// What `group` dealt of a partition, kept with the group (a new record
    /// at `position` if there is none yet).
    pub(super) fn dealt(&self, group: &str, topic: &str, partition: u32, position: u64) -> Arc<Dealt> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return Arc::new(Dealt::new(position)) };
        let key = (topic.to_string(), partition);
        g.dealt.entry(key).or_insert_with(|| Arc::new(Dealt::new(position))).clone()
    }

    /// The members of `group` that `message` may go to, the next in turn
    /// first; the turn moves past the first.
    fn candidates(&self, group: &str, message: &Message) -> Vec<Candidate> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return Vec::new() };
        let n = g.members.len();
        let mut out = Vec::new();
        let mut first = None;
        for i in 0..n {
            let index = (g.next + i) % n;
            let member = &g.members[index];
            // No Local is refused on shared subscriptions (MQTT-3.8.3-4).
            let found = matching(&member.filters.read().unwrap_or_else(|e| e.into_inner()), &message.topic, false);
            if let Some(matched) = found {
                first.get_or_insert(index);
                out.push(Candidate { connection: member.connection, matched, tx: member.tx.clone() });
            }
        }
        if let Some(index) = first {
            g.next = (index + 1) % n;
        }
        out
    }
}

/// The sink of a shared subscription's feeder: deals each message to one
/// member of the group.
pub(super) struct Dealer {
    server: Arc<Server>,
    group: String,
    key: FeedKey,
    dealt: Arc<Dealt>,
    /// The connection whose feeder reads the partition.
    reader: u64,
}

impl Dealer {
    pub(super) fn new(server: Arc<Server>, group: String, key: FeedKey, dealt: Arc<Dealt>, reader: u64) -> Dealer {
        Dealer { server, group, key, dealt, reader }
    }

    /// Deals `message` to the next member in turn that has room in its
    /// queue; when none has, waits for room at the next in turn. `fresh`:
    /// just read by this dealer's reader (else a message waiting to be
    /// dealt again). False when the message is not this dealer's to deal:
    /// another member reads the partition now, or another dealer took it.
    async fn deal(&self, message: Message, fresh: bool) -> bool {
        // Noted before it is sent, so an acknowledgement cannot come first.
        let note = |deal: Deal| {
            if fresh {
                self.dealt.read(self.reader, &message, deal)
            } else {
                self.dealt.give(message.offset, deal)
            }
        };
        let candidates = self.server.shared.candidates(&self.group, &message);
        if candidates.is_empty() {
            return note(Deal::Skipped); // no member's filters match it
        }
        for c in &candidates {
            if let Ok(room) = c.tx.try_reserve() {
                if !note(c.deal(&message)) {
                    return false;
                }
                room.send(self.delivery(c, &message));
                return true;
            }
        }
        // Every queue is full. Noted as waiting first: if this task ends
        // before it has room, the partition's next reader deals it.
        if !note(Deal::Waiting) {
            return false;
        }
        for c in &candidates {
            let Ok(room) = c.tx.reserve().await else { continue }; // leaving
            if self.dealt.give(message.offset, c.deal(&message)) {
                room.send(self.delivery(c, &message));
            }
            return true;
        }
        // Every member is leaving: the message waits (the group's position
        // stays before it) for the partition's next reader.
        true
    }

    /// The delivery of `message` to candidate `c`.
    fn delivery(&self, c: &Candidate, message: &Message) -> Box<Delivery> {
        let source = Source { feed: self.key.clone(), offset: message.offset, dealt: Some(self.dealt.clone()) };
        Box::new(delivery(message.clone(), c.matched.clone(), source))
    }

    /// Deals the messages that wait for a member (taken back from members
    /// that left, or left by the last reader), in order.
    pub(super) async fn deal_again(&self, messages: Vec<Message>) {
        for message in messages {
            self.deal(message, false).await;
        }
    }
}

impl Sink for Dealer {
    async fn pass(&mut self, message: Message) -> bool {
        let dealt = self.deal(message, true).await;
        if !dealt {
            tracing::debug!(group = %self.group, topic = %self.key.1, partition = self.key.2, "shared partition read by another member now; this feeder stops");
        }
        dealt
    }

    fn read_to(&mut self, position: u64) {
        self.dealt.read_to(self.reader, position);
    }
}

impl Session {
    /// A resumed persistent session sends again the QoS 2 messages of its
    /// shared subscriptions that its client had not acknowledged, with
    /// their packet ids and DUP (MQTT-4.4.0-1; no other member got them,
    /// MQTT-4.8.2-5). Their group has moved on, so the session reads them
    /// itself; one the log no longer holds (retention) is gone. Call it
    /// before the subscriptions are resumed.
    pub(super) async fn resend_shared(&mut self) {
        let stored = std::mem::take(&mut self.resend_shared);
        // Their packet ids are kept from the start, so none is handed out
        // to another of them; `deliver` sends each with its own.
        for u in &stored {
            self.resend.insert((u.topic.clone(), u.partition, u.offset), u.pkid);
        }
        for StoredUnacked { topic, partition, offset, group, .. } in stored {
            let Some(group) = group else { continue };
            let prefix = format!("$share/{group}/");
            let feed = (Sub::Shared(group), topic, partition);
            let Some(message) = read_message(&self.server.broker, &feed, offset, &self.client_id).await else {
                self.resend.remove(&(feed.1.clone(), feed.2, offset));
                continue;
            };
            // The group's subscriptions as they were, for their identifiers.
            let filters: Vec<Subscription> = (self.resumed_filters.iter())
                .filter_map(|s| Some(Subscription { filter: s.filter.strip_prefix(&prefix)?.to_string(), ..s.clone() }))
                .collect();
            let matched = matching(&filters, &message.topic, false).unwrap_or(Match {
                qos: QoS::ExactlyOnce,
                retain_as_published: false,
                ids: Vec::new(),
            });
            let source = Source { feed, offset, dealt: None };
            self.deliver(delivery(message, matched, source)).await;
        }
    }

    /// At the end of a connection, after it left its groups: the shared
    /// subscriptions' messages dealt to it (whichever member read them) that
    /// its client had not acknowledged, sent or still queued, are dealt
    /// again to the members left (MQTT 5, 4.8.2), but QoS 2 ones already
    /// sent (MQTT-4.8.2-5).
    pub(super) fn hand_back_dealt(&mut self) {
        // Closed first, so a dealer can no longer queue anything here.
        self.deliveries.close();
        let mut sources = Vec::new();
        while let Ok(d) = self.deliveries.try_recv() {
            sources.extend(d.source.map(|s| (s, false)));
        }
        sources.extend(self.inflight.values().flatten().map(|s| (s.clone(), true)));
        let connection = self.connection;
        let back: Vec<(Dealer, Message)> = sources
            .into_iter()
            .filter_map(|(s, sent)| {
                let (Sub::Shared(group), Some(dealt)) = (&s.feed.0, &s.dealt) else { return None };
                let message = dealt.reclaim(s.offset, connection, sent)?;
                let dealer = Dealer::new(self.server.clone(), group.clone(), s.feed.clone(), dealt.clone(), connection);
                Some((dealer, message))
            })
            .collect();
        if back.is_empty() {
            return;
        }
        tracing::debug!(client_id = %self.client_id, messages = back.len(), "shared subscription messages dealt again");
        tokio::spawn(async move {
            for (dealer, message) in back {
                dealer.deal(message, false).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use bytes::Bytes;

    use super::*;
    use crate::net::mqtt::codec::Subscription;
    use crate::net::mqtt::properties::MessageProperties;

    fn message(topic: &str) -> Message {
        let (payload, published, properties) =
            (Bytes::from_static(b"v"), QoS::AtLeastOnce, MessageProperties::default());
        Message { topic: topic.into(), payload, published, retained: false, own: false, properties, offset: 0 }
    }

    /// Whether `notify` has a wake-up waiting (taking it).
    async fn woken(notify: &Notify) -> bool {
        tokio::time::timeout(std::time::Duration::ZERO, notify.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn members_whose_filters_match_take_turns_and_a_leaving_one_wakes_the_rest() {
        let members = Members::default();
        let (tx, _rx) = mpsc::channel(1);
        let filters = |filter: &str| Arc::new(RwLock::new(vec![Subscription::plain(filter, QoS::AtLeastOnce)]));
        let wakes: Vec<Arc<Notify>> = (0..4).map(|_| Arc::new(Notify::new())).collect();
        members.join("g", 1, &filters("jobs/#"), &tx, &wakes[1]);
        members.join("g", 2, &filters("jobs/urgent/#"), &tx, &wakes[2]);
        members.join("g", 3, &filters("jobs/#"), &tx, &wakes[3]);
        members.join("g", 1, &filters("other"), &tx, &wakes[1]); // joined already: no change
        let turns = |topic: &str| -> Vec<u64> {
            members.candidates("g", &message(topic)).iter().map(|c| c.connection).collect()
        };
        assert_eq!(turns("jobs/a"), vec![1, 3], "2's filter does not match");
        assert_eq!(turns("jobs/a"), vec![3, 1]);
        assert_eq!(turns("jobs/urgent/x"), vec![1, 2, 3]);
        assert_eq!(turns("jobs/urgent/x"), vec![2, 3, 1]);
        assert!(turns("elsewhere").is_empty());
        members.leave("g", 3);
        assert_eq!(turns("jobs/a"), vec![1]);
        assert!(woken(&wakes[1]).await && woken(&wakes[2]).await, "the members left take over its partitions");
        assert!(!woken(&wakes[3]).await);
        members.leave("g", 1);
        members.leave("g", 2);
        assert!(members.lock().is_empty(), "an empty group is forgotten");
    }

    #[test]
    fn what_was_dealt_is_the_groups_until_its_last_member_leaves() {
        let members = Members::default();
        let (tx, _rx) = mpsc::channel(1);
        let filters = Arc::new(RwLock::new(vec![Subscription::plain("t/#", QoS::AtLeastOnce)]));
        members.join("g", 1, &filters, &tx, &Arc::new(Notify::new()));
        let first = members.dealt("g", "t", 0, 5);
        assert_eq!(first.claim(1).0, 5);
        first.read_to(1, 9);
        let again = members.dealt("g", "t", 0, 0);
        assert!(Arc::ptr_eq(&first, &again), "the next reader gets the same record");
        assert_eq!(again.claim(2).0, 9, "and reads on from where the last one stopped");
        assert!(!Arc::ptr_eq(&first, &members.dealt("g", "t", 1, 0)), "one per partition");
        members.leave("g", 1);
        assert_eq!(members.dealt("g", "t", 0, 3).claim(1).0, 3, "a group new on the hub starts where it is told");
    }

    #[tokio::test]
    async fn a_persistent_member_stores_its_shared_qos_2_deliveries_in_flight_but_not_qos_1() {
        use crate::net::mqtt::codec::Version;
        use crate::net::mqtt::session::tests::open;
        use crate::net::mqtt::testing;

        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("m", false)).await;
        let (tx, _sent) = mpsc::channel(16);
        s.out = Some(tx);
        let dealt = Arc::new(Dealt::new(0));
        dealt.claim(99);
        let feed = (Sub::Shared("g".into()), "t".to_string(), 0);
        for (offset, qos) in [(0, QoS::AtLeastOnce), (1, QoS::ExactlyOnce)] {
            let m = Message { offset, published: qos, ..message("t/x") };
            assert!(dealt.read(99, &m, Deal::To(s.connection, qos)));
            let source = Source { feed: feed.clone(), offset, dealt: Some(dealt.clone()) };
            let matched = Match { qos, retain_as_published: false, ids: Vec::new() };
            s.deliver(delivery(m, matched, source)).await;
        }
        let stored = s.stored(None).unacked;
        let (topic, group) = ("t".to_string(), Some("g".to_string()));
        // QoS 1: handed to another member when the connection ends.
        assert_eq!(stored, vec![StoredUnacked { topic, partition: 0, offset: 1, pkid: 2, group }]);
    }
}
