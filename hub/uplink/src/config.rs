//! What an uplink is, as written under `[[uplink]]` in the config file.
//!
//! ```toml
//! [[uplink]]
//! name = "cloud"                    # also names its consumer group: __uplink.cloud
//! kind = "mqtt"
//! topics = ["sensors", "alarms"]    # local topics forwarded, in order per partition
//! host = "broker.example.com"
//! port = 1883
//! client_id = "site-7-gateway"
//! remote_topic = "site-7/{key}"     # {topic}, {key}, {partition}
//! subscribe = ["site-7/cmd/#"]      # upstream filters brought down …
//! local_topic = "cmd/{topic}"       # … to this local MQTT topic ({topic}: the upstream one)
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::template::Template;
use crate::UplinkError;

/// Where a new uplink starts reading its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Everything still stored (a gateway that was collecting before its
    /// uplink was configured sends what it has).
    #[default]
    Earliest,
    /// Only what arrives from now on.
    Latest,
}

/// One `[[uplink]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSettings {
    pub name: String,
    /// `mqtt` (the only kind so far).
    pub kind: String,
    /// Local topics to forward.
    #[serde(default)]
    pub topics: Vec<String>,
    pub host: String,
    pub port: Option<u16>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Upstream topic of a forwarded record [default: `{key}`].
    pub remote_topic: Option<String>,
    /// Upstream filters subscribed to, brought into the hub.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Local MQTT topic of what comes down [default: `{topic}`, the upstream topic].
    pub local_topic: Option<String>,
    pub start_at: Option<StartAt>,
    /// Records per batch sent before waiting for the upstream's acknowledgements [default: 500].
    pub batch_records: Option<usize>,
    /// How long a partial batch waits for more records, in milliseconds [default: 5].
    pub linger_ms: Option<u64>,
    /// Upper bound on forwarded payload bytes per second; 0 = unlimited [default: 0].
    pub max_bytes_per_sec: Option<u64>,
    /// A link that acknowledges nothing for this long is cut and reopened [default: 10].
    pub ack_timeout_secs: Option<u64>,
    /// MQTT keep-alive with the upstream broker, in seconds [default: 15].
    pub keep_alive_secs: Option<u64>,
    /// Longest wait between reconnect attempts, in seconds [default: 30].
    pub max_backoff_secs: Option<u64>,
}

/// An uplink's settings, checked, with defaults applied.
#[derive(Debug, Clone)]
pub struct UplinkSpec {
    pub name: String,
    pub topics: Vec<String>,
    pub mqtt: MqttSpec,
    pub start_at: StartAt,
    pub batch_records: usize,
    pub linger: Duration,
    pub max_bytes_per_sec: u64,
    pub ack_timeout: Duration,
    pub max_backoff: Duration,
}

/// The upstream MQTT broker and what goes to and comes from it.
#[derive(Debug, Clone)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub remote_topic: Template,
    pub subscribe: Vec<String>,
    pub local_topic: Template,
    pub keep_alive: Duration,
}

impl UplinkSpec {
    /// The consumer group that holds this uplink's progress.
    pub fn group(&self) -> String {
        group_name(&self.name)
    }
}

/// The consumer group of uplink `name`.
pub fn group_name(name: &str) -> String {
    format!("__uplink.{name}")
}

/// Most records one batch may hold (the MQTT client's in-flight window is
/// 16 bits of packet ids).
const MAX_BATCH_RECORDS: usize = 10_000;

impl TryFrom<&UplinkSettings> for UplinkSpec {
    type Error = UplinkError;

    fn try_from(s: &UplinkSettings) -> Result<Self, UplinkError> {
        let bad = |problem: String| UplinkError::Config { name: s.name.clone(), problem };
        if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad("the name must be letters, digits, '-', '_' or '.'".into()));
        }
        if s.kind != "mqtt" {
            return Err(bad(format!("kind '{}' is not supported (supported: mqtt)", s.kind)));
        }
        if s.topics.is_empty() && s.subscribe.is_empty() {
            return Err(bad("it forwards no `topics` and subscribes to nothing".into()));
        }
        for topic in &s.topics {
            cairn_log::validate_topic_name(topic).map_err(|e| bad(format!("topic '{topic}': {e}")))?;
        }
        for filter in &s.subscribe {
            if filter.is_empty() || !valid_filter(filter) {
                return Err(bad(format!("'{filter}' is not a valid MQTT topic filter")));
            }
        }
        let credentials = match (&s.username, &s.password) {
            (Some(u), p) => Some((u.clone(), p.clone().unwrap_or_default())),
            (None, Some(_)) => return Err(bad("a password needs a username".into())),
            (None, None) => None,
        };
        let template = |text: &Option<String>, default: &str, allowed: &[&str]| {
            Template::parse(text.as_deref().unwrap_or(default), allowed).map_err(|e| bad(e.to_string()))
        };
        let batch_records = s.batch_records.unwrap_or(500);
        if batch_records == 0 || batch_records > MAX_BATCH_RECORDS {
            return Err(bad(format!("batch_records must be 1..={MAX_BATCH_RECORDS}")));
        }
        Ok(UplinkSpec {
            name: s.name.clone(),
            topics: s.topics.clone(),
            mqtt: MqttSpec {
                host: s.host.clone(),
                port: s.port.unwrap_or(1883),
                client_id: s.client_id.clone().unwrap_or_else(|| format!("cairn-uplink-{}", s.name)),
                credentials,
                remote_topic: template(&s.remote_topic, "{key}", &["topic", "key", "partition"])?,
                subscribe: s.subscribe.clone(),
                local_topic: template(&s.local_topic, "{topic}", &["topic"])?,
                keep_alive: Duration::from_secs(s.keep_alive_secs.unwrap_or(15).max(1)),
            },
            start_at: s.start_at.unwrap_or_default(),
            batch_records,
            linger: Duration::from_millis(s.linger_ms.unwrap_or(5)),
            max_bytes_per_sec: s.max_bytes_per_sec.unwrap_or(0),
            ack_timeout: Duration::from_secs(s.ack_timeout_secs.unwrap_or(10).max(1)),
            max_backoff: Duration::from_secs(s.max_backoff_secs.unwrap_or(30).max(1)),
        })
    }
}

/// An MQTT filter: `#` only as the last level, wildcards only as whole levels.
fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> UplinkSettings {
        UplinkSettings {
            name: "cloud".into(),
            kind: "mqtt".into(),
            topics: vec!["sensors".into()],
            host: "127.0.0.1".into(),
            port: None,
            client_id: None,
            username: None,
            password: None,
            remote_topic: None,
            subscribe: vec![],
            local_topic: None,
            start_at: None,
            batch_records: None,
            linger_ms: None,
            max_bytes_per_sec: None,
            ack_timeout_secs: None,
            keep_alive_secs: None,
            max_backoff_secs: None,
        }
    }

    #[test]
    fn defaults_are_applied() {
        let spec = UplinkSpec::try_from(&settings()).unwrap();
        assert_eq!(spec.mqtt.port, 1883);
        assert_eq!(spec.mqtt.client_id, "cairn-uplink-cloud");
        assert_eq!(spec.group(), "__uplink.cloud");
        assert_eq!(spec.batch_records, 500);
        assert_eq!(spec.start_at, StartAt::Earliest);
    }

    #[test]
    fn mistakes_are_named() {
        let mut s = settings();
        s.kind = "kafka2".into();
        assert!(UplinkSpec::try_from(&s).unwrap_err().to_string().contains("kind 'kafka2'"));
        let mut s = settings();
        s.subscribe = vec!["a/#/b".into()];
        assert!(UplinkSpec::try_from(&s).unwrap_err().to_string().contains("not a valid MQTT topic filter"));
        let mut s = settings();
        s.remote_topic = Some("x/{offset}".into());
        assert!(UplinkSpec::try_from(&s).unwrap_err().to_string().contains("{offset}"));
        let mut s = settings();
        s.topics.clear();
        assert!(UplinkSpec::try_from(&s).is_err());
        let mut s = settings();
        s.password = Some("p".into());
        assert!(UplinkSpec::try_from(&s).is_err());
    }
}
