//! MQTT 5 message properties kept with a message: stored as record headers
//! (so native consumers, plugins and uplinks see them too) and handed back
//! to MQTT 5 subscribers unchanged, with the message expiry counted down.
//!
//! | property | record header |
//! |---|---|
//! | payload format indicator | `mqtt-payload-format` (`0` or `1`) |
//! | message expiry | `mqtt-expires-at` (ms since the epoch, the log's clock) |
//! | content type | `mqtt-content-type` |
//! | response topic | `mqtt-response-topic` |
//! | correlation data | `mqtt-correlation-data` (bytes as sent) |
//! | user property `name: value` | `mqtt-user:name` (repeated names keep their order) |

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

const PAYLOAD_FORMAT: &str = "mqtt-payload-format";
const EXPIRES_AT: &str = "mqtt-expires-at";
const CONTENT_TYPE: &str = "mqtt-content-type";
const RESPONSE_TOPIC: &str = "mqtt-response-topic";
const CORRELATION_DATA: &str = "mqtt-correlation-data";
const USER_PREFIX: &str = "mqtt-user:";

/// False when a Payload Format Indicator says UTF-8 (1) and the payload is
/// not (§3.3.2.3.2, §3.1.3.2.3: the hub may refuse it with 0x99, and does,
/// so subscribers that trust the indicator are not misled).
pub fn payload_format_holds(format: Option<u8>, payload: &[u8]) -> bool {
    format != Some(1) || std::str::from_utf8(payload).is_ok()
}

/// What of a PUBLISH's properties travels with the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub payload_format: Option<u8>,
    /// When the message expires, if it does: ms since the epoch on the log's
    /// steady clock (`Log::steady_ms`: the wall clock without its jumps).
    pub expires_at_ms: Option<i64>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user: Vec<(String, String)>,
}

impl MessageProperties {
    /// The properties of an incoming MQTT 5 PUBLISH received at `now_ms`.
    pub fn from_v5(p: Option<PublishProperties>, now_ms: i64) -> MessageProperties {
        let Some(p) = p else { return MessageProperties::default() };
        MessageProperties {
            payload_format: p.payload_format_indicator,
            expires_at_ms: p.message_expiry_interval.map(|s| now_ms.saturating_add(i64::from(s) * 1000)),
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user: p.user_properties,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == MessageProperties::default()
    }

    /// See [`payload_format_holds`].
    pub fn payload_format_holds(&self, payload: &[u8]) -> bool {
        payload_format_holds(self.payload_format, payload)
    }

    /// Whether the message has expired by `now_ms` (MQTT-3.3.2-5: not
    /// delivered then).
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// The record headers that store them.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(f) = self.payload_format {
            out.push((PAYLOAD_FORMAT.to_string(), f.to_string().into_bytes()));
        }
        if let Some(at) = self.expires_at_ms {
            out.push((EXPIRES_AT.to_string(), at.to_string().into_bytes()));
        }
        if let Some(t) = &self.content_type {
            out.push((CONTENT_TYPE.to_string(), t.clone().into_bytes()));
        }
        if let Some(t) = &self.response_topic {
            out.push((RESPONSE_TOPIC.to_string(), t.clone().into_bytes()));
        }
        if let Some(d) = &self.correlation_data {
            out.push((CORRELATION_DATA.to_string(), d.to_vec()));
        }
        for (name, value) in &self.user {
            out.push((format!("{USER_PREFIX}{name}"), value.clone().into_bytes()));
        }
        out
    }

    /// Read back from a record's headers (others are ignored).
    pub fn from_headers<'h>(headers: impl Iterator<Item = (&'h str, &'h [u8])>) -> MessageProperties {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let mut p = MessageProperties::default();
        for (name, value) in headers {
            match name {
                PAYLOAD_FORMAT => p.payload_format = text(value).parse().ok(),
                EXPIRES_AT => p.expires_at_ms = text(value).parse().ok(),
                CONTENT_TYPE => p.content_type = Some(text(value)),
                RESPONSE_TOPIC => p.response_topic = Some(text(value)),
                CORRELATION_DATA => p.correlation_data = Some(Bytes::copy_from_slice(value)),
                _ => {
                    if let Some(user) = name.strip_prefix(USER_PREFIX) {
                        p.user.push((user.to_string(), text(value)));
                    }
                }
            }
        }
        p
    }

    /// The properties of an outgoing MQTT 5 PUBLISH sent at `now_ms`: the
    /// expiry is what is left of it (MQTT-3.3.2-6).
    pub fn to_v5(&self, now_ms: i64) -> Option<PublishProperties> {
        if self.is_empty() {
            return None;
        }
        let left =
            self.expires_at_ms.map(|at| u32::try_from(((at - now_ms).max(1000) + 999) / 1000).unwrap_or(u32::MAX));
        Some(PublishProperties {
            payload_format_indicator: self.payload_format,
            message_expiry_interval: left,
            topic_alias: None,
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user.clone(),
            subscription_identifiers: Vec::new(),
            content_type: self.content_type.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_through_record_headers_with_the_expiry_counting_down() {
        let sent = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: None,
            response_topic: Some("replies/7".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01req")),
            user_properties: vec![("site".into(), "7".into()), ("site".into(), "8".into())],
            subscription_identifiers: Vec::new(),
            content_type: Some("application/json".into()),
        };
        let stored = MessageProperties::from_v5(Some(sent.clone()), 1_000_000);
        let headers = stored.headers();
        let back = MessageProperties::from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        assert_eq!(back, stored);
        let out = back.to_v5(1_000_000 + 20_000).unwrap();
        assert_eq!(out.message_expiry_interval, Some(40));
        assert_eq!(PublishProperties { message_expiry_interval: Some(60), ..out }, sent);
        assert!(!back.expired(1_059_999) && back.expired(1_060_000));
        assert_eq!(MessageProperties::from_v5(None, 5).to_v5(5), None);
    }
}
