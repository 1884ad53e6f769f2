//! How MQTT topics map onto Cairn's log, and MQTT topic filters.
//!
//! MQTT topic `a/b/c` is stored in Cairn topic `a` with key `a/b/c` (so one
//! MQTT topic keeps its order: a key always lands in the same partition).
//! Going the other way, a record's MQTT topic is its key when the key is an
//! MQTT topic under the Cairn topic's name; records from the native
//! protocol with another key appear as `<cairn topic>/<key>`, and without a
//! key as `<cairn topic>`.

use cairn_log::validate_topic_name;

pub use crate::topic_filter::{matches, valid_filter};

/// Cairn topics whose name starts with this belong to the hub itself
/// (retained messages, MQTT sessions); MQTT clients cannot publish to them.
pub const INTERNAL_PREFIX: &str = "__";

/// The compacted topic holding the last retained message per MQTT topic.
pub const RETAINED_TOPIC: &str = "__mqtt_retained";

/// The compacted topic holding persistent sessions' subscriptions.
pub const SESSIONS_TOPIC: &str = "__mqtt_sessions";

/// Whether a topic is a bridge's status, as Mosquitto's bridges publish it
/// (`$SYS/broker/connection/<client id>/state`: "1" while connected, "0"
/// in its will). The one `$` topic a client may publish to.
pub fn bridge_state(mqtt_topic: &str) -> bool {
    mqtt_topic
        .strip_prefix("$SYS/broker/connection/")
        .and_then(|rest| rest.strip_suffix("/state"))
        .is_some_and(|id| !id.is_empty() && id.len() <= 1024 && !id.contains(['/', '+', '#']))
}

/// Why an MQTT topic name cannot be published to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("empty topic name")]
    Empty,
    #[error("topic name '{0}' contains a wildcard")]
    Wildcard(String),
    #[error("topic '{0}': its first level must be a valid Cairn topic name (ASCII letters, digits, '.', '_', '-')")]
    FirstLevel(String),
    #[error("topic '{0}' is reserved for the hub")]
    Reserved(String),
    #[error("topic '{mqtt}': a mapping rule maps it to '{topic}', which is not a valid Cairn topic name")]
    Mapped { mqtt: String, topic: String },
}

/// The Cairn topic of MQTT topics whose first level is not a Cairn topic
/// name (`/a`, `a b/c`, `café/x`): every MQTT topic name may be published
/// (§4.7), and these are stored here, each with its MQTT topic in a header.
pub const OTHER_TOPIC: &str = "mqtt-other";

/// The Cairn topic an MQTT topic is stored in by default: its first level
/// (`FirstLevel` when that is not a Cairn topic name: see [`OTHER_TOPIC`]).
/// Topics starting with `$` are the server's (MQTT 4.7.2): refused.
pub fn cairn_topic(mqtt_topic: &str) -> Result<&str, TopicError> {
    if mqtt_topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if mqtt_topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard(mqtt_topic.to_string()));
    }
    if mqtt_topic.starts_with('$') {
        return Err(TopicError::Reserved(mqtt_topic.to_string()));
    }
    let first = mqtt_topic.split('/').next().unwrap_or_default();
    if validate_topic_name(first).is_err() {
        return Err(TopicError::FirstLevel(mqtt_topic.to_string()));
    }
    if first.starts_with(INTERNAL_PREFIX) {
        return Err(TopicError::Reserved(mqtt_topic.to_string()));
    }
    Ok(first)
}

/// The record header holding the MQTT topic of a message that a mapping
/// rule stored under another topic or key (so subscribers get the topic it
/// was published to).
pub const TOPIC_HEADER: &str = "mqtt-topic";

/// Record header with the QoS a message was published at, `0` or `2`: it is
/// delivered at the lower of that and the subscription's granted QoS
/// (MQTT-3.8.4-8 in 3.1.1, 3.3.5 in 5.0). Records without it (QoS 1
/// publishes, records produced natively) count as QoS 1.
pub const QOS_HEADER: &str = "mqtt-qos";

/// Record header (value `1`) of a message published with the retain flag:
/// subscriptions with Retain As Published see the flag on live messages.
pub const RETAIN_HEADER: &str = "mqtt-retain";

/// Record header naming the client id that published the message. Written
/// only while that client holds a No Local subscription, which is the only
/// reader of it.
pub const PUBLISHER_HEADER: &str = "mqtt-client-id";

/// The MQTT topic a record of `cairn_topic` is delivered under: its
/// [`TOPIC_HEADER`] when a mapping rule stored it, otherwise from its key.
pub fn delivered_topic<'h>(
    cairn_topic: &str,
    key: Option<&[u8]>,
    mut headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> String {
    if let Some((_, value)) = headers.find(|(name, _)| *name == TOPIC_HEADER) {
        if let Ok(topic) = std::str::from_utf8(value) {
            if !topic.is_empty() && !topic.contains(['+', '#']) {
                return topic.to_string();
            }
        }
    }
    mqtt_topic(cairn_topic, key)
}

/// The MQTT topic a record of `cairn_topic` is delivered under.
pub fn mqtt_topic(cairn_topic: &str, key: Option<&[u8]>) -> String {
    let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
        return cairn_topic.to_string();
    };
    let under_topic = key == cairn_topic || key.strip_prefix(cairn_topic).is_some_and(|rest| rest.starts_with('/'));
    if under_topic {
        key.to_string()
    } else if key.is_empty() || key.contains(['+', '#']) {
        cairn_topic.to_string()
    } else {
        format!("{cairn_topic}/{key}")
    }
}

/// The Cairn topic a filter reads, when its first level names one; `None`
/// when the first level is a wildcard (every topic is read).
pub fn filter_topic(filter: &str) -> Option<&str> {
    let first = filter.split('/').next().unwrap_or_default();
    (first != "+" && first != "#").then_some(first)
}

/// Whether some topic matches both filters (so a subscription to one may
/// receive messages a mapping rule for the other stored).
pub fn overlaps(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&"#"), _) | (_, Some(&"#")) => return true,
            (None, None) => return true,
            // One is longer: only a trailing `#` (which matches its parent) fits.
            (None, Some(_)) => return b.get(i..) == Some(&["#"][..]),
            (Some(_), None) => return a.get(i..) == Some(&["#"][..]),
            (Some(x), Some(y)) => {
                if *x != "+" && *y != "+" && x != y {
                    return false;
                }
            }
        }
        i += 1;
    }
}

/// A `$share/<group>/<filter>` subscription: (group, filter).
pub fn shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, filter) = rest.split_once('/')?;
    (!group.is_empty() && !group.contains(['+', '#']) && valid_filter(filter)).then_some((group, filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bridge_status_topic_is_one() {
        assert!(bridge_state("$SYS/broker/connection/gw.site/state"));
        for not in
            ["$SYS/broker/connection//state", "$SYS/broker/connection/a/b/state", "$SYS/broker/uptime", "site/state"]
        {
            assert!(!bridge_state(not), "{not}");
        }
    }

    #[test]
    fn publish_topics_map_to_their_first_level() {
        assert_eq!(cairn_topic("sensors/room1/temp"), Ok("sensors"));
        assert_eq!(cairn_topic("sensors"), Ok("sensors"));
        assert!(matches!(cairn_topic(""), Err(TopicError::Empty)));
        assert!(matches!(cairn_topic("a/+/b"), Err(TopicError::Wildcard(_))));
        assert!(matches!(cairn_topic("bad topic/x"), Err(TopicError::FirstLevel(_))));
        assert!(matches!(cairn_topic("/leading"), Err(TopicError::FirstLevel(_))));
        assert!(matches!(cairn_topic("__mqtt_retained/x"), Err(TopicError::Reserved(_))));
    }

    #[test]
    fn records_map_back_to_mqtt_topics() {
        assert_eq!(mqtt_topic("sensors", Some(b"sensors/room1/temp")), "sensors/room1/temp");
        assert_eq!(mqtt_topic("sensors", Some(b"sensors")), "sensors");
        assert_eq!(mqtt_topic("readings", Some(b"room-1")), "readings/room-1");
        assert_eq!(mqtt_topic("readings", Some(b"sensorsX")), "readings/sensorsX");
        assert_eq!(mqtt_topic("readings", None), "readings");
        assert_eq!(mqtt_topic("readings", Some(&[0xff, 0xfe])), "readings");
        assert_eq!(mqtt_topic("readings", Some(b"a/#")), "readings");
    }

    #[test]
    fn filters_match_as_the_spec_says() {
        assert!(matches("a/b/c", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("#", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("+/+", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(valid_filter("a/+/#") && valid_filter("#") && valid_filter("+"));
        assert!(!valid_filter("a/#/b") && !valid_filter("a+") && !valid_filter("") && !valid_filter("a/b#"));
        assert_eq!(filter_topic("sensors/+/temp"), Some("sensors"));
        assert_eq!(filter_topic("+/temp"), None);
        assert_eq!(shared("$share/g1/sensors/#"), Some(("g1", "sensors/#")));
        assert_eq!(shared("$share/g1"), None);
    }
}
