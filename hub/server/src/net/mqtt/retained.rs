//! The retained messages in memory: the last one per MQTT topic, as the
//! compacted topic `__mqtt_retained` holds them (which keeps them across
//! restarts).
//!
//! The store is the log; this is its index. It is brought up to date by
//! reading what was appended since the last look, before each use, so it
//! never disagrees with what was committed, and a SUBSCRIBE matches its
//! filters against memory instead of reading the whole store. It also
//! counts what is retained, for `[mqtt] max_retained_messages` and
//! `max_retained_bytes`.

use std::collections::HashMap;

use bytes::Bytes;
use cairn_log::{Log, LogError};
use rumqttc::mqttbytes::QoS;

use super::properties::MessageProperties;
use super::records::{published_qos, FEED_BYTES};
use super::topics::{QOS_HEADER, RETAINED_TOPIC};

/// One retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RetainedMessage {
    pub(super) payload: Bytes,
    /// As published: a subscriber gets it at the lower of this and its
    /// subscription's QoS (MQTT-3.8.4-6 in 3.1.1, -3.8.4-8 in 5.0).
    pub(super) qos: QoS,
    pub(super) properties: MessageProperties,
}

impl RetainedMessage {
    /// What it counts for against `max_retained_bytes`.
    fn size(&self, topic: &str) -> usize {
        topic.len() + self.payload.len()
    }
}

/// The limits on what is retained (`[mqtt]`).
#[derive(Debug, Clone, Copy)]
pub(super) struct RetainLimits {
    pub(super) max_messages: usize,
    pub(super) max_bytes: usize,
}

/// The retained messages by MQTT topic.
#[derive(Debug, Default)]
pub(super) struct Retained {
    messages: HashMap<String, RetainedMessage>,
    /// Topic and payload bytes of all of them.
    bytes: usize,
    /// The next offset of the store to read.
    next: u64,
}

impl Retained {
    /// Reads what the store got since the last call: a message retains its
    /// topic, an empty one clears it.
    pub(super) fn sync(&mut self, log: &Log) {
        if log.partition_count(RETAINED_TOPIC).is_err() {
            return; // nothing was ever retained
        }
        loop {
            let fetch = match log.fetch(RETAINED_TOPIC, 0, self.next, FEED_BYTES) {
                Ok(fetch) => fetch,
                Err(LogError::OffsetOutOfRange { start, .. }) if self.next < start => {
                    // Not expected of a compacted topic without retention,
                    // but then only a full re-read is right.
                    *self = Retained { next: start, ..Retained::default() };
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not read the MQTT retained store");
                    return;
                }
            };
            if fetch.batches.is_empty() {
                return;
            }
            for r in fetch.records() {
                if r.offset < self.next {
                    continue;
                }
                if let Some(topic) = r.key.and_then(|k| std::str::from_utf8(k).ok()) {
                    let message = (!r.value.is_empty()).then(|| RetainedMessage {
                        payload: Bytes::copy_from_slice(r.value),
                        qos: published_qos(r.headers.clone().find(|h| h.name == QOS_HEADER).map(|h| h.value)),
                        properties: MessageProperties::from_headers(r.headers.clone().map(|h| (h.name, h.value))),
                    });
                    self.set(topic, message);
                }
            }
            self.next = fetch.next_offset();
        }
    }

    fn set(&mut self, topic: &str, message: Option<RetainedMessage>) {
        if let Some(old) = self.messages.remove(topic) {
            self.bytes -= old.size(topic);
        }
        if let Some(message) = message {
            self.bytes += message.size(topic);
            self.messages.insert(topic.to_string(), message);
        }
    }

    /// Whether retaining `payload` on `topic` stays within `limits`
    /// (replacing or clearing a retained message always does).
    pub(super) fn admits(&self, topic: &str, payload: &[u8], limits: RetainLimits) -> bool {
        if payload.is_empty() {
            return true;
        }
        let replaced = self.messages.get(topic).map_or(0, |m| m.size(topic));
        let count = self.messages.len() + usize::from(replaced == 0);
        let bytes = self.bytes - replaced + topic.len() + payload.len();
        count <= limits.max_messages && bytes <= limits.max_bytes
    }

    /// The retained messages whose topics `wanted` accepts.
    pub(super) fn matching(&self, wanted: impl Fn(&str) -> bool) -> Vec<(String, RetainedMessage)> {
        self.messages.iter().filter(|(t, _)| wanted(t)).map(|(t, m)| (t.clone(), m.clone())).collect()
    }

    /// How many messages are retained, and their topic and payload bytes.
    pub(super) fn totals(&self) -> (usize, usize) {
        (self.messages.len(), self.bytes)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.messages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mqtt::records::{ensure_retained_topic, retained_record};
    use crate::net::mqtt::testing;

    #[tokio::test]
    async fn follows_the_store_and_counts_against_the_limits() {
        let (_dir, server) = testing::server();
        let log = server.broker.log().clone();
        let mut retained = Retained::default();
        retained.sync(&log);
        assert_eq!(retained.len(), 0, "no store yet");
        ensure_retained_topic(&server).await.unwrap();
        let none = MessageProperties::default();
        let keep = |topic: &str, payload: &[u8]| {
            let log = log.clone();
            let batch = retained_record(topic, payload, QoS::AtLeastOnce, &none, 1);
            async move { log.submit(RETAINED_TOPIC, 0, batch).await.unwrap().outcome().await.unwrap() }
        };
        keep("a/1", b"one").await;
        keep("a/2", b"two").await;
        keep("a/1", b"uno").await;
        retained.sync(&log);
        let mut got = retained.matching(|t| t.starts_with("a/"));
        got.sort_by(|x, y| x.0.cmp(&y.0));
        let payloads: Vec<(&str, &[u8])> = got.iter().map(|(t, m)| (t.as_str(), &m.payload[..])).collect();
        assert_eq!(payloads, [("a/1", &b"uno"[..]), ("a/2", b"two")]);
        assert_eq!(retained.bytes, 2 * 3 + 2 * 3);
        // An empty message clears its topic.
        keep("a/2", b"").await;
        retained.sync(&log);
        assert_eq!(retained.len(), 1);
        assert_eq!(retained.bytes, 6);

        let limits = RetainLimits { max_messages: 2, max_bytes: 20 };
        assert!(retained.admits("a/3", b"x", limits), "a second message fits");
        assert!(!retained.admits("a/3", &[0; 20], limits), "too many bytes");
        assert!(retained.admits("a/1", b"a longer one", limits), "a replacement fits");
        let one = RetainLimits { max_messages: 1, ..limits };
        assert!(!retained.admits("a/3", b"x", one), "too many messages");
        assert!(retained.admits("a/1", b"y", one) && retained.admits("a/3", b"", one), "replace or clear");
    }
}
