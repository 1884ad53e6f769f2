//! Shared subscriptions dealt round robin: each message of a
//! `$share/<group>/<filter>` subscription goes to one member of the group,
//! the next in turn whose filters match it, as in Mosquitto, EMQX and
//! HiveMQ.
//!
//! The consumer group still decides which member reads each partition;
//! that member's feeder deals what it reads among all the group's members
//! on the hub ([`Dealer`]), and commits the group's position up to the
//! lowest message some member has not acknowledged (`dealt.rs`). A member
//! whose queue is full is passed over for the next. When a member's
//! connection ends, what it had not acknowledged goes to the others
//! (MQTT 5, 4.8.2); what the leaving member's own feeders had dealt is read
//! again by the partition's next owner, from the committed position.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rumqttc::mqttbytes::QoS;
use tokio::sync::mpsc;

use super::dealt::{Dealt, Message};
use super::delivery::{delivery, lower, matching, Match, Sink};
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
}

struct Member {
    connection: u64,
    /// The member's filters in this group.
    filters: Filters,
    /// Its session's deliveries queue.
    tx: mpsc::Sender<Box<Delivery>>,
}

/// A member a message may go to, and how its subscriptions matched it.
struct Candidate {
    connection: u64,
    matched: Match,
    tx: mpsc::Sender<Box<Delivery>>,
}

impl Members {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deals `connection` in to `group` (once).
    pub(super) fn join(&self, group: &str, connection: u64, filters: &Filters, tx: &mpsc::Sender<Box<Delivery>>) {
        let mut groups = self.lock();
        let g = groups.entry(group.to_string()).or_default();
        if !g.members.iter().any(|m| m.connection == connection) {
            g.members.push(Member { connection, filters: filters.clone(), tx: tx.clone() });
        }
    }

    /// Deals `connection` out of `group`.
    pub(super) fn leave(&self, group: &str, connection: u64) {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return };
        g.members.retain(|m| m.connection != connection);
        if g.members.is_empty() {
            groups.remove(group);
        }
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
}

impl Dealer {
    pub(super) fn new(server: Arc<Server>, key: FeedKey, dealt: Arc<Dealt>) -> Dealer {
        let group = match &key.0 {
            Sub::Shared(group) => group.clone(),
            Sub::Own => String::new(),
        };
        Dealer { server, group, key, dealt }
    }

    /// Deals `message` to the next member in turn that has room in its
    /// queue; when none has, waits for room at the next in turn.
    async fn deal(&self, message: Message) {
        let candidates = self.server.shared.candidates(&self.group, &message);
        if candidates.is_empty() {
            self.dealt.settled(message.offset); // no member's filters match it
            return;
        }
        for c in &candidates {
            if c.tx.try_send(self.deliver_to(c, &message)).is_ok() {
                return;
            }
        }
        for c in &candidates {
            if c.tx.send(self.deliver_to(c, &message)).await.is_ok() {
                return;
            }
        }
        // Every member is leaving: the message waits (the group's position
        // stays before it) for the partition's next owner to read it again.
        self.dealt.dealt(None, message.published, &message);
    }

    /// The delivery of `message` to candidate `c`, noted as dealt to it.
    fn deliver_to(&self, c: &Candidate, message: &Message) -> Box<Delivery> {
        match lower(c.matched.qos, message.published) {
            QoS::AtMostOnce => self.dealt.settled(message.offset), // nothing to acknowledge
            qos => self.dealt.dealt(Some(c.connection), qos, message),
        }
        let source = Source { feed: self.key.clone(), offset: message.offset, dealt: Some(self.dealt.clone()) };
        Box::new(delivery(message.clone(), c.matched.clone(), source))
    }
}

impl Sink for Dealer {
    async fn pass(&mut self, message: Message) -> bool {
        self.deal(message).await;
        true
    }

    fn read_to(&mut self, position: u64) {
        self.dealt.read_to(position);
    }
}

impl Session {
    /// At the end of a connection, after it left its groups: the messages
    /// other members' feeders dealt to it that its client had not
    /// acknowledged, sent or still queued, are dealt again to the members
    /// left (MQTT 5, 4.8.2), but QoS 2 ones already sent (MQTT-4.8.2-5).
    pub(super) fn hand_back_dealt(&mut self) {
        // Closed first, so a dealer can no longer queue anything here.
        self.deliveries.close();
        let mut sources = Vec::new();
        while let Ok(d) = self.deliveries.try_recv() {
            sources.extend(d.source.map(|s| (s, false)));
        }
        sources.extend(self.inflight.values().flatten().map(|s| (s.clone(), true)));
        let connection = self.connection;
        let back: Vec<(Source, Message)> = sources
            .into_iter()
            .filter_map(|(s, sent)| {
                let dealt = s.dealt.as_ref().filter(|d| d.owner != connection)?;
                let message = dealt.reclaim(s.offset, connection, sent)?;
                Some((s, message))
            })
            .collect();
        if back.is_empty() {
            return;
        }
        tracing::debug!(client_id = %self.client_id, messages = back.len(), "shared subscription messages dealt again");
        let server = self.server.clone();
        tokio::spawn(async move {
            for (source, message) in back {
                let Some(dealt) = source.dealt else { continue };
                Dealer::new(server.clone(), source.feed, dealt).deal(message).await;
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

    #[test]
    fn members_whose_filters_match_take_turns() {
        let members = Members::default();
        let (tx, _rx) = mpsc::channel(1);
        let filters = |filter: &str| Arc::new(RwLock::new(vec![Subscription::plain(filter, QoS::AtLeastOnce)]));
        members.join("g", 1, &filters("jobs/#"), &tx);
        members.join("g", 2, &filters("jobs/urgent/#"), &tx);
        members.join("g", 3, &filters("jobs/#"), &tx);
        members.join("g", 1, &filters("other"), &tx); // joined already: no change
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
        members.leave("g", 1);
        members.leave("g", 2);
        assert!(members.lock().is_empty(), "an empty group is forgotten");
    }
}
