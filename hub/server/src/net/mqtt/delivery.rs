//! Messages out to the client: the feeder task that long-polls one
//! partition of the log for records the session's filters match, sending
//! each delivery (with a packet id for QoS 1), and PUBACKs turning into
//! positions committed for the session or its shared subscription's group.
//!
//! More of `impl Session`: state in `session.rs`; which feeders run is
//! `subscribe.rs`'s job.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_log::LogError;
use rumqttc::mqttbytes::QoS;
use tokio::sync::mpsc;

use super::codec::{self, Outgoing, Version};
use super::properties::MessageProperties;
use super::records::FEED_BYTES;
use super::session::{Delivery, FeedKey, Filters, Session, Source, Sub};
use super::topics;
use super::writer::Out;
use crate::broker::Broker;

impl Session {
    /// Sends one delivery to the client (a packet id for QoS 1).
    pub(super) async fn deliver(&mut self, d: Delivery) {
        let pkid = if d.qos == QoS::AtMostOnce {
            0
        } else {
            let pkid = self.next_free_pkid();
            if let Some(source) = &d.source {
                self.unacked.entry(source.feed.clone()).or_default().insert(source.offset);
            }
            self.inflight.insert(pkid, d.source);
            pkid
        };
        // Properties exist on the wire in MQTT 5 only.
        let properties = match self.version {
            Version::V5 => d.properties.to_v5(self.server.broker.log().now_ms()),
            Version::V311 => None,
        };
        let (topic, payload, qos, retain) = (d.topic, d.payload, d.qos, d.retain);
        if let Some(max) = self.max_packet_out {
            let size = codec::v5_publish_size(&topic, &payload, qos, &properties);
            if size > max {
                // Discarded as if sent and acknowledged (MQTT-3.1.2-25).
                tracing::debug!(client_id = %self.client_id, %topic, size, max, "message over the client's maximum packet size; not sent");
                self.acknowledged(pkid);
                return;
            }
        }
        self.server.broker.metrics().mqtt_messages_out.inc();
        let packet = Outgoing::Publish { topic, payload, qos, retain, pkid, properties };
        self.send(Out::Packet(packet)).await;
    }

    fn next_free_pkid(&mut self) -> u16 {
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&pkid) {
                return pkid;
            }
        }
    }

    /// A PUBACK for one of our deliveries: its position may be committed.
    pub(super) fn acknowledged(&mut self, pkid: u16) {
        let Some(Some(Source { feed, offset })) = self.inflight.remove(&pkid) else { return };
        let Some(pending) = self.unacked.get_mut(&feed) else { return };
        pending.remove(&offset);
        // Everything below the lowest unacknowledged offset is delivered.
        let committable = pending.first().copied().unwrap_or(offset + 1);
        // A clean session's own positions are not kept; a shared
        // subscription's are the group's, whatever the session.
        if self.keep || feed.0 != Sub::Own {
            let entry = self.to_commit.entry(feed).or_insert(0);
            *entry = (*entry).max(committable);
        }
    }

    pub(super) async fn commit_positions(&mut self) {
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
                    if let Err(err) = self.server.broker.groups().commit(&group, fence, &topic, &offsets).await {
                        tracing::debug!(client_id = %self.client_id, group, error = %err, "shared subscription commit refused");
                    }
                }
            }
        }
    }
}

/// The highest of some QoS levels (a message matching several filters of
/// one session is delivered once, at the best of them).
pub(super) fn best_qos(levels: impl Iterator<Item = QoS>) -> Option<QoS> {
    levels.max_by_key(|q| *q as u8)
}

/// Long-polls one partition and passes on the records some filter matches.
pub(super) async fn feed(
    broker: Broker,
    key: FeedKey,
    mut position: u64,
    filters: Filters,
    tx: mpsc::Sender<Delivery>,
) {
    let (topic, partition) = (key.1.clone(), key.2);
    loop {
        let fetch = match broker.fetch(&topic, partition, position, FEED_BYTES, Duration::from_secs(5)).await {
            Ok(f) => f,
            Err(LogError::OffsetOutOfRange { .. }) => {
                // Retention removed what we had not read: go on from the start.
                position = broker.log().offsets(&topic, partition).map(|o| o.start).unwrap_or(position);
                continue;
            }
            Err(LogError::UnknownTopic(_)) | Err(LogError::Closed) => return,
            Err(err) => {
                tracing::warn!(topic, partition, error = %err, "MQTT feeder could not read; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for r in fetch.records() {
            if r.offset < position {
                continue;
            }
            let headers = r.headers.clone().map(|h| (h.name, h.value));
            let mqtt_topic = topics::delivered_topic(&topic, r.key, headers);
            let granted = {
                let filters = filters.read().unwrap_or_else(|e| e.into_inner());
                best_qos(filters.iter().filter(|(f, _)| topics::matches(f, &mqtt_topic)).map(|(_, q)| *q))
            };
            // Delivered at the lower of the granted and the published QoS;
            // an expired message not at all (MQTT-3.3.2-5).
            let qos0 = r.headers.clone().any(|h| h.name == topics::QOS_HEADER && h.value == b"0");
            let properties = MessageProperties::from_headers(r.headers.clone().map(|h| (h.name, h.value)));
            let expired = properties.expired(broker.log().now_ms());
            let qos = granted.filter(|_| !expired).map(|q| if qos0 { QoS::AtMostOnce } else { q });
            if let Some(qos) = qos {
                let delivery = Delivery {
                    topic: mqtt_topic,
                    payload: Bytes::copy_from_slice(r.value),
                    qos,
                    retain: false,
                    properties,
                    source: Some(Source { feed: key.clone(), offset: r.offset }),
                };
                if tx.send(delivery).await.is_err() {
                    return;
                }
            }
            position = r.offset + 1;
        }
        position = position.max(fetch.next_offset().min(fetch.end_offset));
    }
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
        let source = Some(Source { feed: feed.clone(), offset });
        let properties = MessageProperties::default();
        Delivery { topic: "t/x".into(), payload: Bytes::from_static(b"v"), qos, retain: false, properties, source }
    }

    #[test]
    fn the_best_qos_wins() {
        assert_eq!(best_qos([QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtMostOnce].into_iter()), Some(QoS::AtLeastOnce));
        assert_eq!(best_qos([QoS::AtMostOnce].into_iter()), Some(QoS::AtMostOnce));
        assert_eq!(best_qos(std::iter::empty()), None);
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
    async fn a_clean_session_commits_only_shared_positions() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", true)).await;
        let own = (Sub::Own, "t".to_string(), 0);
        let shared = (Sub::Shared("g".into()), "t".to_string(), 1);
        s.deliver(delivery(&own, 5, QoS::AtLeastOnce)).await;
        s.deliver(delivery(&shared, 7, QoS::AtLeastOnce)).await;
        s.acknowledged(1);
        s.acknowledged(2);
        assert_eq!(s.to_commit.get(&own), None);
        assert_eq!(s.to_commit.get(&shared), Some(&8));
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
        let filters = vec![("t/a".into(), QoS::AtLeastOnce), ("t/+".into(), QoS::AtMostOnce)];
        let (tx, mut rx) = mpsc::channel(16);
        let key = (Sub::Own, "t".to_string(), 0);
        let feeder = tokio::spawn(feed(broker.clone(), key.clone(), 0, Arc::new(RwLock::new(filters)), tx));
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
