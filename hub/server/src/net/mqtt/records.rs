//! What MQTT writes into the log: record batches of messages, single
//! records of the internal topics (retained store, sessions), and those
//! topics created on first use.
//!
//! Shared by the publish path, subscriptions, feeders and persistence; it
//! imports none of them.

use cairn_log::{CleanupPolicy, LogError, TopicConfig};
use cairn_proto::BatchWriter;
use rumqttc::mqttbytes::QoS;

use super::properties::MessageProperties;

use super::mapping::Route;
use super::topics::{self, RETAINED_TOPIC};
use super::Server;
use crate::broker::Broker;

/// Largest read of one feeder's fetch (and of one step of a scan of the
/// retained store or the stored sessions).
pub(super) const FEED_BYTES: usize = 256 * 1024;

/// One message for [`message_batch`]: payload, QoS, MQTT 5 properties.
pub(super) type Message<'a> = (&'a [u8], QoS, &'a MessageProperties);

/// What a batch's messages share besides their topic.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Origin<'a> {
    /// Published with the retain flag.
    pub(super) retain: bool,
    /// The client id stored with them (for No Local subscriptions).
    pub(super) publisher: Option<&'a str>,
}

/// Messages to one MQTT topic as one batch of records: key from the route,
/// and the MQTT topic in a header when a mapping rule chose topic and key;
/// headers only for what differs from the common case (QoS 1, not
/// retained, no properties). `now`: the arrival time, by the log's clock.
pub(super) fn message_batch(
    route: &Route,
    mqtt_topic: &str,
    messages: &[Message<'_>],
    now: i64,
    origin: Origin<'_>,
) -> Vec<u8> {
    let topic = route.mapped.then_some((topics::TOPIC_HEADER, mqtt_topic.as_bytes()));
    let retain = origin.retain.then_some((topics::RETAIN_HEADER, &b"1"[..]));
    let publisher = origin.publisher.map(|id| (topics::PUBLISHER_HEADER, id.as_bytes()));
    let size: usize = messages.iter().map(|(p, _, _)| p.len() + route.key.len() + 2 * mqtt_topic.len() + 40).sum();
    let mut writer = BatchWriter::new(Vec::with_capacity(size + 64)).expect("a Vec grows");
    for (payload, qos, properties) in messages {
        let qos = qos_header(*qos);
        let stored = properties.headers();
        let stored = stored.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let headers = topic.into_iter().chain(qos).chain(retain).chain(publisher).chain(stored);
        let _ = writer.push_parts(Some(route.key.as_bytes()), payload, now, headers);
    }
    writer.finish().unwrap_or_default()
}

/// The header saying a message's QoS: none for QoS 1, the common case.
fn qos_header(qos: QoS) -> Option<(&'static str, &'static [u8])> {
    match qos {
        QoS::AtMostOnce => Some((topics::QOS_HEADER, b"0")),
        QoS::AtLeastOnce => None,
        QoS::ExactlyOnce => Some((topics::QOS_HEADER, b"2")),
    }
}

/// The QoS a message was published with, from its QoS header's value
/// (none: QoS 1).
pub(super) fn published_qos(header: Option<&[u8]>) -> QoS {
    match header {
        Some(b"0") => QoS::AtMostOnce,
        Some(b"2") => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// A retained message: key = the MQTT topic, value = the payload, and its
/// QoS and MQTT 5 properties as headers.
pub(super) fn retained_record(
    mqtt_topic: &str,
    payload: &[u8],
    qos: QoS,
    properties: &MessageProperties,
    now: i64,
) -> Vec<u8> {
    let headers = properties.headers();
    let headers = qos_header(qos).into_iter().chain(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    record(mqtt_topic, payload, headers, now)
}

/// One record: key = the MQTT topic, value = the payload.
pub(super) fn single_record(key: &str, value: &[u8], now: i64) -> Vec<u8> {
    record(key, value, std::iter::empty(), now)
}

fn record<'h>(
    key: &str,
    value: &[u8],
    headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
    now: i64,
) -> Vec<u8> {
    let mut writer = BatchWriter::new(Vec::with_capacity(value.len() + key.len() + 128)).expect("a Vec grows");
    let _ = writer.push_parts(Some(key.as_bytes()), value, now, headers);
    writer.finish().unwrap_or_default()
}

/// Creates a Cairn topic for MQTT on first use.
pub(super) async fn ensure_topic(server: &Server, topic: &str) -> Result<(), LogError> {
    if server.broker.log().partition_count(topic).is_ok() {
        return Ok(());
    }
    let config = TopicConfig::with_partitions(server.config.topic_partitions.max(1));
    server.broker.log().ensure_topic(topic, config).await?;
    tracing::info!(topic, "created topic for MQTT");
    Ok(())
}

/// The retained store: compacted, one partition, kept forever.
pub(super) async fn ensure_retained_topic(server: &Server) -> Result<(), LogError> {
    ensure_internal_topic(&server.broker, RETAINED_TOPIC).await
}

/// An internal topic (retained store, sessions): compacted, one partition,
/// kept forever.
pub(super) async fn ensure_internal_topic(broker: &Broker, topic: &str) -> Result<(), LogError> {
    let config = TopicConfig {
        partitions: 1,
        retention_ms: None,
        cleanup_policy: CleanupPolicy::Compact,
        ..TopicConfig::default()
    };
    broker.log().ensure_topic(topic, config).await.map(drop)
}

#[cfg(test)]
mod tests {
    use cairn_proto::batch::BatchView;

    use super::*;
    use crate::net::mqtt::{testing, MqttConfig};

    /// (key, value, headers) of each record of a batch.
    type Decoded = Vec<(Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)>;

    fn decode(batch: &[u8]) -> Decoded {
        let view = BatchView::parse(batch).expect("a valid batch");
        let records = view.records().map(|r| {
            let headers = r.headers.clone().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
            (r.key.map(<[u8]>::to_vec), r.value.to_vec(), headers)
        });
        records.collect()
    }

    #[test]
    fn a_message_batch_is_keyed_by_the_route_and_names_a_mapped_topic() {
        let plain = Route { topic: "sensors".into(), key: "sensors/a".into(), mapped: false };
        let none = MessageProperties::default();
        let messages: [Message<'_>; 2] = [(b"1", QoS::AtLeastOnce, &none), (b"2", QoS::AtMostOnce, &none)];
        let records = decode(&message_batch(&plain, "sensors/a", &messages, 1, Origin::default()));
        let key = Some(b"sensors/a".to_vec());
        // A QoS 0 message says so, so it is delivered at QoS 0.
        let qos0 = (topics::QOS_HEADER.to_string(), b"0".to_vec());
        assert_eq!(records, vec![(key.clone(), b"1".to_vec(), vec![]), (key, b"2".to_vec(), vec![qos0])]);

        // A rule's topic and key hide the MQTT topic: it travels in a header;
        // QoS 2, the retain flag and the publisher when asked for too.
        let mapped = Route { topic: "plant".into(), key: "line1".into(), mapped: true };
        let origin = Origin { retain: true, publisher: Some("dev-1") };
        let records = decode(&message_batch(&mapped, "sensors/a", &[(b"x", QoS::ExactlyOnce, &none)], 1, origin));
        let headers = vec![
            (topics::TOPIC_HEADER.to_string(), b"sensors/a".to_vec()),
            (topics::QOS_HEADER.to_string(), b"2".to_vec()),
            (topics::RETAIN_HEADER.to_string(), b"1".to_vec()),
            (topics::PUBLISHER_HEADER.to_string(), b"dev-1".to_vec()),
        ];
        assert_eq!(records, vec![(Some(b"line1".to_vec()), b"x".to_vec(), headers)]);
    }

    #[test]
    fn a_single_record_is_keyed_by_its_key() {
        let records = decode(&single_record("client-1", b"{}", 1));
        assert_eq!(records, vec![(Some(b"client-1".to_vec()), b"{}".to_vec(), vec![])]);
    }

    #[tokio::test]
    async fn topics_are_created_once_with_their_settings() {
        let (_dir, server) = testing::server_with(MqttConfig { topic_partitions: 3, ..MqttConfig::default() });
        let log = server.broker.log();
        ensure_topic(&server, "sensors").await.unwrap();
        assert_eq!(log.partition_count("sensors").unwrap(), 3);
        // An existing topic is left as it is.
        log.create_topic("one", TopicConfig::default()).await.unwrap();
        ensure_topic(&server, "one").await.unwrap();
        assert_eq!(log.partition_count("one").unwrap(), 1);

        ensure_retained_topic(&server).await.unwrap();
        ensure_retained_topic(&server).await.unwrap();
        let config = log.describe_topic(RETAINED_TOPIC).unwrap().config;
        assert_eq!((config.partitions, config.retention_ms), (1, None));
        assert_eq!(config.cleanup_policy, CleanupPolicy::Compact);
    }
}
