//! Messages out to the client: the feeder task that long-polls one
//! partition of the log and passes its records to a sink (the session's
//! own filters, or a shared subscription's dealer in `shared.rs`), sending
//! each delivery (with a packet id for QoS 1), and PUBACKs turning into
//! positions committed for the session or its shared subscription's group.
//!
//! More of `impl Session`: state in `session.rs`; which feeders run is
//! `subscribe.rs`'s job.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::RecordView;
use rumqttc::mqttbytes::QoS;
use tokio::sync::{mpsc, Notify};

use rumqttc::v5::mqttbytes::v5::PublishProperties;

use super::codec::{self, Outgoing, Subscription, Version};
use super::dealt::Message;
use super::properties::MessageProperties;
use super::records::{published_qos, FEED_BYTES};
use super::session::{Delivery, FeedKey, Filters, Session, Source, Sub};
use super::tail::{poll, Poll, Tails};
use super::topics;
use super::writer::Out;
use crate::broker::Broker;

/// Longest a feeder's long poll waits for new records before it asks
/// again. Any new record, or the topic's deletion, ends the wait at once;
/// this only bounds how often an idle subscription wakes.
const FEED_WAIT: Duration = Duration::from_secs(60);

impl Session {
    /// Sends one delivery to the client (a packet id for QoS 1).
    pub(super) async fn deliver(&mut self, d: Delivery) {
        // A message the client had not acknowledged before it reconnected.
        let resent = match &d.source {
            Some(Source { feed: (_, topic, partition), offset, .. }) if !self.resend.is_empty() => {
                self.resend.remove(&(topic.clone(), *partition, *offset))
            }
            _ => None,
        };
        let dup = resent.is_some() && d.qos != QoS::AtMostOnce;
        let pkid = if d.qos == QoS::AtMostOnce {
            0
        } else {
            let pkid = match resent {
                Some(pkid) if !self.inflight.contains_key(&pkid) && !self.released.contains(&pkid) => pkid,
                _ => self.next_free_pkid(),
            };
            // A shared subscription's dealer tracks what it dealt.
            if let Some(source) = d.source.as_ref().filter(|s| s.feed.0 == Sub::Own) {
                self.unacked.entry(source.feed.clone()).or_default().insert(source.offset);
            }
            self.inflight.insert(pkid, d.source);
            self.status.set_in_flight(self.in_flight());
            pkid
        };
        // Properties exist on the wire in MQTT 5 only.
        let properties = match self.version {
            Version::V5 => {
                let mut p = d.properties.to_v5(self.server.broker.log().steady_ms());
                if !d.subscription_ids.is_empty() {
                    let ids = d.subscription_ids.iter().map(|id| *id as usize).collect();
                    p.get_or_insert_with(Default::default).subscription_identifiers = ids;
                }
                p.map(Box::new)
            }
            Version::V311 => None,
        };
        let (topic, payload, qos, retain) = (d.topic, d.payload, d.qos, d.retain);
        if let Some(max) = self.max_packet_out {
            // Sized with the whole topic: an alias only makes it smaller.
            let size = codec::v5_publish_size(&topic, &payload, qos, &properties);
            if size > max {
                // Discarded as if sent and acknowledged (MQTT-3.1.2-25).
                tracing::debug!(client_id = %self.client_id, %topic, size, max, "message over the client's maximum packet size; not sent");
                self.acknowledged(pkid);
                return;
            }
        }
        self.server.broker.metrics().mqtt_messages_out.inc();
        let (topic, properties) = self.alias_out(topic, qos, properties);
        let packet = Outgoing::Publish { topic, payload, qos, retain, pkid, dup, properties };
        self.send(Out::Packet(packet)).await;
    }

    /// MQTT 5 topic aliases to the client, within its Topic Alias Maximum:
    /// a topic's first PUBLISH names it and sets an alias, later ones send
    /// the alias and an empty topic. The first topics get the aliases and
    /// keep them for the connection. A QoS 2 PUBLISH always names its topic
    /// (with the alias, which the spec allows): MQTT.js 5 hands a QoS 2
    /// message to the application from what it stored before resolving
    /// the alias, so an alias alone reached Node-RED and browser
    /// dashboards with an empty topic.
    fn alias_out(
        &mut self,
        topic: String,
        qos: QoS,
        properties: Option<Box<PublishProperties>>,
    ) -> (String, Option<Box<PublishProperties>>) {
        if self.alias_max_out == 0 {
            return (topic, properties);
        }
        let (alias, known) = match self.aliases_out.get(&topic) {
            Some(alias) => (*alias, true),
            None if self.aliases_out.len() < usize::from(self.alias_max_out) => {
                let alias = self.aliases_out.len() as u16 + 1;
                self.aliases_out.insert(topic.clone(), alias);
                (alias, false)
            }
            None => return (topic, properties),
        };
        let mut properties = properties.unwrap_or_default();
        properties.topic_alias = Some(alias);
        (if known && qos != QoS::ExactlyOnce { String::new() } else { topic }, Some(properties))
    }

    fn next_free_pkid(&mut self) -> u16 {
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            // Ids kept for messages to send again are not handed out.
            let kept = !self.resend.is_empty() && self.resend.values().any(|&p| p == pkid);
            if !self.inflight.contains_key(&pkid) && !self.released.contains(&pkid) && !kept {
                return pkid;
            }
        }
    }

    /// Deliveries waiting for the client: QoS 1 for PUBACK, QoS 2 for
    /// PUBREC or PUBCOMP (the client's receive maximum counts them all).
    pub(super) fn in_flight(&self) -> usize {
        self.inflight.len() + self.released.len()
    }

    /// PUBREC for one of our QoS 2 deliveries: the client has it, so its
    /// position may be committed; PUBREL follows unless the client refused
    /// the message (MQTT 5 reason code 0x80 or more). A PUBREC for an id
    /// already released is answered again (a retransmission).
    pub(super) async fn received(&mut self, pkid: u16, failed: bool) {
        let ours = self.inflight.contains_key(&pkid);
        self.acknowledged(pkid);
        if failed {
            return;
        }
        if ours {
            self.released.insert(pkid);
            self.status.set_in_flight(self.in_flight());
        }
        self.send(Out::Packet(Outgoing::PubRel(pkid))).await;
    }

    /// PUBCOMP: the QoS 2 delivery is complete, its packet id free again.
    pub(super) fn completed(&mut self, pkid: u16) {
        self.released.remove(&pkid);
        self.status.set_in_flight(self.in_flight());
    }

    /// A PUBACK for one of our deliveries: its position may be committed.
    pub(super) fn acknowledged(&mut self, pkid: u16) {
        let removed = self.inflight.remove(&pkid);
        self.status.set_in_flight(self.in_flight());
        let Some(Some(Source { feed, offset, dealt })) = removed else { return };
        if let Some(dealt) = dealt {
            // Dealt by a shared subscription's feeder, which commits.
            dealt.settled(offset);
            return;
        }
        let Some(pending) = self.unacked.get_mut(&feed) else { return };
        pending.remove(&offset);
        // Everything below the lowest unacknowledged offset is delivered.
        let committable = pending.first().copied().unwrap_or(offset + 1);
        // A clean session's own positions are not kept.
        if self.keep {
            let entry = self.to_commit.entry(feed).or_insert(0);
            *entry = (*entry).max(committable);
        }
    }

    pub(super) async fn commit_positions(&mut self) {
        for (key, dealt) in &self.dealing {
            if let Some(position) = dealt.progress() {
                self.to_commit.insert(key.clone(), position);
            }
        }
        if self.to_commit.is_empty() {
            return;
        }
        let mut by_topic: HashMap<(Sub, String), Vec<(u32, u64)>> = HashMap::new();
        for ((sub, topic, partition), offset) in self.to_commit.drain() {
            by_topic.entry((sub, topic)).or_default().push((partition, offset));
        }
        for ((sub, topic), offsets) in by_topic {
            match sub {
                Sub::Own => {
                    let _ = self.server.broker.log().commit_offsets(&self.group(), &topic, &offsets).await;
                }
                Sub::Shared(group) => {
                    let Some(shared) = self.shared.get(&group) else { continue };
                    let Some(member) = shared.member_id.as_deref() else { continue };
                    let fence = Some((member, shared.generation));
                    // Refused after a rebalance took the partition away: its
                    // new owner goes on from the last accepted commit.
                    match self.server.broker.groups().commit(&group, fence, &topic, &offsets).await {
                        Ok(()) => {
                            let sub = Sub::Shared(group);
                            for (partition, offset) in offsets {
                                if let Some(dealt) = self.dealing.get(&(sub.clone(), topic.clone(), partition)) {
                                    dealt.committed(offset);
                                }
                            }
                        }
                        Err(err) => {
                            tracing::debug!(client_id = %self.client_id, group, error = %err, "shared subscription commit refused")
                        }
                    }
                }
            }
        }
    }
}

/// How a message is delivered to a session whose subscriptions it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Match {
    /// The best QoS granted among them.
    pub(super) qos: QoS,
    /// Some of them keep the published retain flag (Retain As Published).
    pub(super) retain_as_published: bool,
    /// Their subscription identifiers.
    pub(super) ids: Vec<u32>,
}

/// Whether a message to `topic` reaches a session through `subs`, and how:
/// once, at the best QoS of the subscriptions it matches, with all their
/// identifiers (MQTT-3.3.4-2, -3.3.4-3, -3.3.4-5). `own`: the session's
/// client published it, so No Local subscriptions do not count
/// (MQTT-3.8.3-3).
pub(super) fn matching(subs: &[Subscription], topic: &str, own: bool) -> Option<Match> {
    let mut found: Option<Match> = None;
    for s in subs.iter().filter(|s| !(own && s.no_local) && topics::matches(&s.filter, topic)) {
        let m = found.get_or_insert(Match { qos: s.qos, retain_as_published: false, ids: Vec::new() });
        if s.qos > m.qos {
            m.qos = s.qos;
        }
        m.retain_as_published |= s.retain_as_published;
        m.ids.extend(s.id);
    }
    found
}

/// The lower of two QoS levels.
pub(super) fn lower(a: QoS, b: QoS) -> QoS {
    if a < b {
        a
    } else {
        b
    }
}

/// Where a feeder's messages go: the session's own subscriptions, or a
/// shared subscription's members (`shared.rs`).
pub(super) trait Sink: Send + 'static {
    /// Passes a message on; `false` when its receiver is gone (the feeder
    /// stops).
    fn pass(&mut self, message: Message) -> impl Future<Output = bool> + Send;
    /// Every record before `position` has been passed on (or matched
    /// nothing).
    fn read_to(&mut self, _position: u64) {}
    /// Once the feeder has read to the partition's end (`position`): waits
    /// for a record worth reading and returns where to read from. `None`:
    /// this sink wants every record, and the feeder long-polls.
    fn wait_at_end(
        &mut self,
        _broker: &Broker,
        _key: &FeedKey,
        _position: u64,
    ) -> impl Future<Output = Option<u64>> + Send {
        std::future::ready(None)
    }
}

/// A session's own subscriptions: what their filters match goes to it.
pub(super) struct Own {
    pub(super) key: FeedKey,
    pub(super) filters: Filters,
    pub(super) tx: mpsc::Sender<Box<Delivery>>,
    /// Where it waits at the partition's end (`tail.rs`).
    pub(super) tails: Tails,
    /// Notified when the session adds filters: a wait filed under the
    /// levels of the old ones would miss the new one's records.
    pub(super) filters_changed: Arc<Notify>,
}

impl Sink for Own {
    async fn pass(&mut self, message: Message) -> bool {
        let found = {
            let filters = self.filters.read().unwrap_or_else(|e| e.into_inner());
            matching(&filters, &message.topic, message.own)
        };
        let Some(m) = found else { return true };
        let source = Source { feed: self.key.clone(), offset: message.offset, dealt: None };
        self.tx.send(Box::new(delivery(message, m, source))).await.is_ok()
    }

    /// Woken only by a record its filters match: the partition may carry
    /// many other sessions' topics (sessions whose few filters each name
    /// more than the Cairn topic, see `tail.rs`; the others long-poll).
    async fn wait_at_end(&mut self, broker: &Broker, key: &FeedKey, position: u64) -> Option<u64> {
        if !Tails::takes(&self.filters) {
            return None;
        }
        let changed = self.filters_changed.notified();
        tokio::pin!(changed);
        // Listening before the tail copies the filters: no change is missed.
        changed.as_mut().enable();
        tokio::select! {
            next = self.tails.wait(broker, &key.1, key.2, position, &self.filters) => Some(next),
            // Read on from here, then wait again with the new filters.
            _ = changed => Some(position),
        }
    }
}

/// The delivery of `message` through subscriptions that matched it as `m`:
/// at the lower of the granted and the published QoS; a live message's
/// retain flag cleared unless a subscription asked for it as published
/// (MQTT-3.3.1-12, -13).
pub(super) fn delivery(message: Message, m: Match, source: Source) -> Delivery {
    Delivery {
        qos: lower(m.qos, message.published),
        retain: message.retained && m.retain_as_published,
        topic: message.topic,
        payload: message.payload,
        properties: message.properties,
        subscription_ids: m.ids,
        source: Some(source),
    }
}

/// Long-polls one partition from `position` and passes its records on to
/// `sink`, but expired ones (MQTT-3.3.2-5). `client_id`: the session's, for
/// its No Local subscriptions.
pub(super) async fn feed(broker: Broker, key: FeedKey, mut position: u64, client_id: String, mut sink: impl Sink) {
    let (topic, partition) = (key.1.clone(), key.2);
    // A sink that waits at the end asks there first: a feeder with records
    // to catch up on is sent back at once to read them.
    let mut at_end = true;
    loop {
        let mut wait = FEED_WAIT;
        if at_end {
            if let Some(next) = sink.wait_at_end(&broker, &key, position).await {
                // Nothing before `next` was for this sink.
                position = position.max(next);
                sink.read_to(position);
                // The tail said where to read: no long poll.
                wait = Duration::ZERO;
            }
        }
        let fetch = match poll(&broker, &topic, partition, position, wait).await {
            Poll::Records(fetch) => fetch,
            // Retention removed what we had not read: go on from the start.
            Poll::MovedTo(start) => {
                position = start;
                continue;
            }
            Poll::Gone => return,
        };
        for r in fetch.records() {
            if r.offset < position {
                continue;
            }
            if let Some(message) = message(&topic, &r, &client_id, broker.log().steady_ms()) {
                if !sink.pass(message).await {
                    return;
                }
            }
            position = r.offset + 1;
            sink.read_to(position);
        }
        position = position.max(fetch.next_offset().min(fetch.end_offset));
        sink.read_to(position);
        at_end = position >= fetch.end_offset;
    }
}

/// The MQTT message a record of Cairn topic `topic` holds; None once it
/// expired. `client_id`: the session's, for its No Local subscriptions.
fn message(topic: &str, r: &RecordView<'_>, client_id: &str, now: i64) -> Option<Message> {
    let properties = MessageProperties::from_headers(r.headers.clone().map(|h| (h.name, h.value)));
    if properties.expired(now) {
        return None;
    }
    let headers = r.headers.clone().map(|h| (h.name, h.value));
    let mqtt_topic = topics::delivered_topic(topic, r.key, headers);
    let (mut published, mut retained, mut own) = (QoS::AtLeastOnce, false, false);
    for h in r.headers.clone() {
        match h.name {
            topics::QOS_HEADER => published = published_qos(Some(h.value)),
            topics::RETAIN_HEADER => retained = true,
            topics::PUBLISHER_HEADER => own = h.value == client_id.as_bytes(),
            _ => {}
        }
    }
    let payload = Bytes::copy_from_slice(r.value);
    Some(Message { topic: mqtt_topic, payload, published, retained, own, properties, offset: r.offset })
}

/// The message at one offset of a partition, if the log still holds it
/// (and it has not expired).
pub(super) async fn read_message(broker: &Broker, key: &FeedKey, offset: u64, client_id: &str) -> Option<Message> {
    let (topic, partition) = (&key.1, key.2);
    let fetch = broker.fetch(topic, partition, offset, FEED_BYTES, Duration::ZERO).await.ok()?;
    let r = fetch.records().find(|r| r.offset == offset)?;
    message(topic, &r, client_id, broker.log().steady_ms())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;
    use crate::net::mqtt::codec::Version;
    use crate::net::mqtt::records::single_record;
    use crate::net::mqtt::session::tests::open;
    use crate::net::mqtt::testing;

    fn delivery(feed: &FeedKey, offset: u64, qos: QoS) -> Delivery {
        let source = Some(Source { feed: feed.clone(), offset, dealt: None });
        let properties = MessageProperties::default();
        let (topic, payload, subscription_ids) = ("t/x".into(), Bytes::from_static(b"v"), Vec::new());
        Delivery { topic, payload, qos, retain: false, properties, subscription_ids, source }
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_best_qos_with_every_identifier() {
        let subs = [
            Subscription { id: Some(1), ..Subscription::plain("a/#", QoS::ExactlyOnce) },
            Subscription { id: Some(2), retain_as_published: true, ..Subscription::plain("a/+", QoS::AtLeastOnce) },
            Subscription { no_local: true, id: Some(3), ..Subscription::plain("a/b", QoS::AtMostOnce) },
            Subscription::plain("c", QoS::AtLeastOnce),
        ];
        let all = Match { qos: QoS::ExactlyOnce, retain_as_published: true, ids: vec![1, 2, 3] };
        assert_eq!(matching(&subs, "a/b", false), Some(all));
        // The client's own message: the No Local subscription does not count.
        let own = Match { qos: QoS::ExactlyOnce, retain_as_published: true, ids: vec![1, 2] };
        assert_eq!(matching(&subs, "a/b", true), Some(own));
        let deep = Match { qos: QoS::ExactlyOnce, retain_as_published: false, ids: vec![1] };
        assert_eq!(matching(&subs, "a/b/c", false), Some(deep));
        assert_eq!(matching(&subs, "b", false), None);
        assert_eq!(matching(&subs[2..3], "a/b", true), None);
    }

    #[tokio::test]
    async fn packet_ids_skip_those_in_flight_and_wrap_past_zero() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", true)).await;
        assert_eq!((s.next_free_pkid(), s.next_free_pkid()), (1, 2));
        s.inflight.insert(3, None);
        assert_eq!(s.next_free_pkid(), 4);
        s.next_pkid = u16::MAX;
        s.inflight.insert(1, None);
        assert_eq!((s.next_free_pkid(), s.next_free_pkid()), (u16::MAX, 2));
    }

    #[tokio::test]
    async fn acknowledged_positions_commit_up_to_the_lowest_in_flight() {
        let (_dir, server) = testing::server();
        server.broker.log().create_topic("t", cairn_log::TopicConfig::default()).await.unwrap();
        let mut s = open(&server, Version::V311, testing::connect("a", false)).await;
        let (tx, mut sent) = mpsc::channel(16);
        s.out = Some(tx);
        let feed = (Sub::Own, "t".to_string(), 0);
        for offset in [10, 11, 12] {
            s.deliver(delivery(&feed, offset, QoS::AtLeastOnce)).await;
        }
        s.deliver(delivery(&feed, 13, QoS::AtMostOnce)).await;
        let mut pkids = Vec::new();
        while let Ok(Out::Packet(Outgoing::Publish { pkid, .. })) = sent.try_recv() {
            pkids.push(pkid);
        }
        assert_eq!(pkids, [1, 2, 3, 0], "QoS 0 goes without a packet id");
        assert_eq!(s.inflight.len(), 3);

        s.acknowledged(2);
        assert_eq!(s.to_commit.get(&feed), Some(&10), "10 is still in flight");
        s.acknowledged(1);
        assert_eq!(s.to_commit.get(&feed), Some(&12));
        s.acknowledged(3);
        assert_eq!(s.to_commit.get(&feed), Some(&13));
        assert!(s.inflight.is_empty());

        s.commit_positions().await;
        assert!(s.to_commit.is_empty());
        let committed = server.broker.log().committed_offsets(&s.group(), "t").unwrap();
        assert_eq!(committed, vec![(0, 13)]);
    }

    #[tokio::test]
    async fn a_qos_2_delivery_holds_its_packet_id_until_pubcomp() {
        let (_dir, server) = testing::server();
        let c = crate::net::mqtt::codec::Connect { session_expiry: Some(60), ..testing::connect("a", false) };
        let mut s = open(&server, Version::V5, c).await;
        let (tx, mut sent) = mpsc::channel(16);
        s.out = Some(tx);
        let feed = (Sub::Own, "t".to_string(), 0);
        s.deliver(delivery(&feed, 4, QoS::ExactlyOnce)).await;
        s.deliver(delivery(&feed, 5, QoS::ExactlyOnce)).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::Publish { pkid: 1, qos: QoS::ExactlyOnce, .. }))));
        let _ = sent.try_recv();
        // PUBREC: the position is delivered, PUBREL goes out, the id stays taken.
        s.received(1, false).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::PubRel(1)))));
        assert_eq!(s.to_commit.get(&feed), Some(&5));
        assert_eq!((s.in_flight(), s.next_free_pkid()), (2, 3));
        // A refused message (reason >= 0x80) is done with: no PUBREL.
        s.received(2, true).await;
        assert!(sent.try_recv().is_err());
        assert_eq!(s.to_commit.get(&feed), Some(&6));
        s.completed(1);
        assert_eq!(s.in_flight(), 0);
        // What a persistent session stores keeps a PUBREL still owed.
        s.deliver(delivery(&feed, 6, QoS::ExactlyOnce)).await;
        s.received(4, false).await;
        assert_eq!(s.stored(None).released, vec![4]);
    }

    #[tokio::test]
    async fn topic_aliases_to_the_client_stay_within_its_maximum() {
        let (_dir, server) = testing::server();
        let c = crate::net::mqtt::codec::Connect { topic_alias_max: Some(2), ..testing::connect("a", true) };
        let mut s = open(&server, Version::V5, c).await;
        let mut sent = Vec::new();
        let (q1, q2) = (QoS::AtLeastOnce, QoS::ExactlyOnce);
        for (topic, qos) in [("t/1", q1), ("t/1", q1), ("t/2", q1), ("t/3", q1), ("t/1", q1), ("t/1", q2), ("t/2", q2)]
        {
            let (topic, p) = s.alias_out(topic.to_string(), qos, None);
            sent.push((topic, p.and_then(|p| p.topic_alias)));
        }
        // QoS 2 names the topic along with its alias.
        let expected = [
            ("t/1", Some(1)),
            ("", Some(1)),
            ("t/2", Some(2)),
            ("t/3", None),
            ("", Some(1)),
            ("t/1", Some(1)),
            ("t/2", Some(2)),
        ];
        assert_eq!(sent, expected.map(|(t, a)| (t.to_string(), a)));
        // A client that allows none gets none.
        let mut s = open(&server, Version::V5, testing::connect("b", true)).await;
        assert_eq!(s.alias_out("t/1".into(), q1, None), ("t/1".to_string(), None));
    }

    #[tokio::test]
    async fn a_clean_session_commits_no_position_nor_does_a_shared_message_sent_again() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", true)).await;
        let own = (Sub::Own, "t".to_string(), 0);
        // Shared, without a dealer: sent again when a persistent session resumed.
        let shared = (Sub::Shared("g".into()), "t".to_string(), 1);
        s.deliver(delivery(&own, 5, QoS::AtLeastOnce)).await;
        s.deliver(delivery(&shared, 7, QoS::ExactlyOnce)).await;
        s.acknowledged(1);
        s.acknowledged(2);
        assert_eq!(s.to_commit.get(&own), None, "a clean session's positions are not kept");
        assert_eq!(s.to_commit.get(&shared), None, "the group moved on without it");
        assert!(s.inflight.is_empty() && s.unacked.values().all(|u| u.is_empty()));
    }

    #[tokio::test]
    async fn a_feeder_passes_on_what_the_filters_match() {
        let (_dir, server) = testing::server();
        let broker = server.broker.clone();
        broker.log().create_topic("t", cairn_log::TopicConfig::default()).await.unwrap();
        let produce = |key: &'static str| {
            let broker = broker.clone();
            async move { broker.produce_batch("t", None, single_record(key, b"v", 1)).await.unwrap().1.outcome().await }
        };
        for key in ["t/a", "t/b", "t/a/deep"] {
            produce(key).await.unwrap();
        }
        let filters = vec![Subscription::plain("t/a", QoS::AtLeastOnce), Subscription::plain("t/+", QoS::AtMostOnce)];
        let (tx, mut rx) = mpsc::channel(16);
        let key = (Sub::Own, "t".to_string(), 0);
        let filters = Arc::new(RwLock::new(filters));
        let (tails, filters_changed) = (server.tails.clone(), Arc::default());
        let sink = Own { key: key.clone(), filters, tx, tails, filters_changed };
        let feeder = tokio::spawn(feed(broker.clone(), key.clone(), 0, "c".into(), sink));
        let mut got = Vec::new();
        for n in 0..3 {
            if n == 2 {
                // Records appended later reach the long-polling feeder too.
                produce("t/c").await.unwrap();
            }
            let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            got.push((d.topic, d.qos, d.source.map(|s| s.offset)));
        }
        feeder.abort();
        // Each at the best QoS of the filters it matches; t/a/deep matches none.
        let expected = vec![
            ("t/a".to_string(), QoS::AtLeastOnce, Some(0)),
            ("t/b".to_string(), QoS::AtMostOnce, Some(1)),
            ("t/c".to_string(), QoS::AtMostOnce, Some(3)),
        ];
        assert_eq!(got, expected);
    }
}
