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
//!
//! [[uplink]]
//! name = "confluent"
//! kind = "kafka"
//! topics = ["sensors"]
//! bootstrap_servers = "pkc-xxxxx.europe-west1.gcp.confluent.cloud:9092"
//! tls = true
//! sasl_mechanism = "PLAIN"          # or SCRAM-SHA-256, SCRAM-SHA-512
//! username = "API_KEY"
//! password = "API_SECRET"
//! remote_topic = "site-7.{topic}"
//! compression = "zstd"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use cairn_proto::topic::validate_topic_name;
use serde::Deserialize;

use crate::template::Template;

/// Why an uplink's settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkSettingsError {
    #[error("uplink '{name}': {problem}")]
    Invalid { name: String, problem: String },
    #[error("not an uplink's settings: {0}")]
    Toml(String),
}

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
    /// `mqtt` or `kafka`.
    pub kind: String,
    /// Local topics to forward.
    #[serde(default)]
    pub topics: Vec<String>,
    /// MQTT: the upstream broker.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Kafka: `host:port[,host:port…]`.
    pub bootstrap_servers: Option<String>,
    /// Connect with TLS [default: false], checking the upstream's
    /// certificate against this CA file (PEM) [default: the system's roots].
    pub tls: Option<bool>,
    pub tls_ca_file: Option<PathBuf>,
    /// Kafka: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with `username`
    /// and `password` (Confluent Cloud: PLAIN with an API key and secret).
    pub sasl_mechanism: Option<String>,
    /// Kafka: `none`, `gzip`, `snappy`, `lz4` or `zstd` [default: none].
    pub compression: Option<String>,
    /// Kafka: `key` (the remote partition from the record's key, as Java
    /// clients choose it) or `kept` (the local partition's number) [default: key].
    pub partitioning: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Upstream topic of a forwarded record [default: MQTT `{key}`, Kafka `{topic}`].
    pub remote_topic: Option<String>,
    /// Upstream filters subscribed to, brought into the hub.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Local MQTT topic of what comes down [default: `{topic}`, the upstream topic].
    pub local_topic: Option<String>,
    pub start_at: Option<StartAt>,
    /// Records per run: sent, acknowledged, then committed as one step [default: 5000].
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
    /// Retention keeps the records of `topics` this uplink has not sent
    /// (while the log stores at most `[log] retention_hold_max_bytes`) [default: false].
    pub hold_retention: Option<bool>,
}

/// Reads one uplink's settings from TOML: the keys of an `[[uplink]]`
/// table, bare or under that header (the first table then).
pub fn parse_settings(toml: &str) -> Result<UplinkSettings, UplinkSettingsError> {
    #[derive(Deserialize)]
    struct File {
        uplink: Vec<UplinkSettings>,
    }
    if let Ok(File { uplink }) = toml::from_str::<File>(toml) {
        if let Some(first) = uplink.into_iter().next() {
            return Ok(first);
        }
    }
    toml::from_str::<UplinkSettings>(toml).map_err(|e| UplinkSettingsError::Toml(e.to_string()))
}

/// An uplink's settings, checked, with defaults applied.
#[derive(Debug, Clone)]
pub struct UplinkSpec {
    pub name: String,
    pub topics: Vec<String>,
    pub target: Target,
    /// Upstream topic of a record.
    pub remote_topic: Template,
    pub start_at: StartAt,
    pub batch_records: usize,
    pub linger: Duration,
    pub max_bytes_per_sec: u64,
    pub ack_timeout: Duration,
    pub max_backoff: Duration,
    pub hold_retention: bool,
}

/// Where an uplink sends.
#[derive(Debug, Clone)]
pub enum Target {
    Mqtt(MqttSpec),
    Kafka(KafkaSpec),
}

/// The upstream MQTT broker and what comes down from it.
#[derive(Debug, Clone)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub subscribe: Vec<String>,
    pub local_topic: Template,
    pub keep_alive: Duration,
}

/// The upstream Kafka cluster.
#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub bootstrap_servers: String,
    pub tls: bool,
    pub tls_ca_file: Option<PathBuf>,
    /// (mechanism, username, password).
    pub sasl: Option<(String, String, String)>,
    pub compression: String,
    /// Send to the local partition's number instead of partitioning by key.
    pub keep_partition: bool,
}

impl UplinkSpec {
    /// The consumer group that holds this uplink's progress.
    pub fn group(&self) -> String {
        group_name(&self.name)
    }

    /// `mqtt` or `kafka`.
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Mqtt(_) => "mqtt",
            Target::Kafka(_) => "kafka",
        }
    }

    /// The upstream, as people name it.
    pub fn upstream(&self) -> String {
        match &self.target {
            Target::Mqtt(m) => format!("{}:{}", m.host, m.port),
            Target::Kafka(k) => k.bootstrap_servers.clone(),
        }
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
    type Error = UplinkSettingsError;

    fn try_from(s: &UplinkSettings) -> Result<Self, UplinkSettingsError> {
        let bad = |problem: String| UplinkSettingsError::Invalid { name: s.name.clone(), problem };
        if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad("the name must be letters, digits, '-', '_' or '.'".into()));
        }
        if s.topics.is_empty() && s.subscribe.is_empty() {
            return Err(bad("it forwards no `topics` and subscribes to nothing".into()));
        }
        for topic in &s.topics {
            validate_topic_name(topic).map_err(|e| bad(format!("topic '{topic}': {e}")))?;
        }
        let template = |text: &Option<String>, default: &str, allowed: &[&str]| {
            Template::parse(text.as_deref().unwrap_or(default), allowed).map_err(|e| bad(e.to_string()))
        };
        let batch_records = s.batch_records.unwrap_or(5000);
        if batch_records == 0 || batch_records > MAX_BATCH_RECORDS {
            return Err(bad(format!("batch_records must be 1..={MAX_BATCH_RECORDS}")));
        }
        let placeholders = ["topic", "key", "partition"];
        let (target, remote_topic) = match s.kind.as_str() {
            "mqtt" => (Target::Mqtt(mqtt_spec(s, &bad)?), template(&s.remote_topic, "{key}", &placeholders)?),
            "kafka" => (Target::Kafka(kafka_spec(s, &bad)?), template(&s.remote_topic, "{topic}", &placeholders)?),
            other => return Err(bad(format!("kind '{other}' is not supported (supported: mqtt, kafka)"))),
        };
        Ok(UplinkSpec {
            name: s.name.clone(),
            topics: s.topics.clone(),
            target,
            remote_topic,
            start_at: s.start_at.unwrap_or_default(),
            batch_records,
            linger: Duration::from_millis(s.linger_ms.unwrap_or(5)),
            max_bytes_per_sec: s.max_bytes_per_sec.unwrap_or(0),
            ack_timeout: Duration::from_secs(s.ack_timeout_secs.unwrap_or(10).max(1)),
            max_backoff: Duration::from_secs(s.max_backoff_secs.unwrap_or(30).max(1)),
            hold_retention: s.hold_retention.unwrap_or(false),
        })
    }
}

/// Settings that only another kind reads, named if set, so a typo'd kind
/// or a misplaced setting is not silently ignored.
fn not_for(
    kind: &str,
    set: &[(&str, bool)],
    bad: &dyn Fn(String) -> UplinkSettingsError,
) -> Result<(), UplinkSettingsError> {
    match set.iter().find(|(_, is_set)| *is_set) {
        Some((name, _)) => Err(bad(format!("`{name}` is not a setting of a {kind} uplink"))),
        None => Ok(()),
    }
}

fn mqtt_spec(s: &UplinkSettings, bad: &dyn Fn(String) -> UplinkSettingsError) -> Result<MqttSpec, UplinkSettingsError> {
    not_for(
        "mqtt",
        &[
            ("bootstrap_servers", s.bootstrap_servers.is_some()),
            ("sasl_mechanism", s.sasl_mechanism.is_some()),
            ("compression", s.compression.is_some()),
            ("partitioning", s.partitioning.is_some()),
        ],
        bad,
    )?;
    let host = s.host.clone().ok_or_else(|| bad("an mqtt uplink needs `host`".into()))?;
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
    let local = s.local_topic.as_deref().unwrap_or("{topic}");
    let tls = s.tls.unwrap_or(false) || s.tls_ca_file.is_some();
    Ok(MqttSpec {
        host,
        port: s.port.unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
        tls_ca_file: s.tls_ca_file.clone(),
        client_id: s.client_id.clone().unwrap_or_else(|| format!("cairn-uplink-{}", s.name)),
        credentials,
        subscribe: s.subscribe.clone(),
        local_topic: Template::parse(local, &["topic"]).map_err(|e| bad(e.to_string()))?,
        keep_alive: Duration::from_secs(s.keep_alive_secs.unwrap_or(15).max(1)),
    })
}

fn kafka_spec(
    s: &UplinkSettings,
    bad: &dyn Fn(String) -> UplinkSettingsError,
) -> Result<KafkaSpec, UplinkSettingsError> {
    not_for(
        "kafka",
        &[
            ("host", s.host.is_some()),
            ("port", s.port.is_some()),
            ("client_id", s.client_id.is_some()),
            ("subscribe", !s.subscribe.is_empty()),
            ("local_topic", s.local_topic.is_some()),
            ("keep_alive_secs", s.keep_alive_secs.is_some()),
        ],
        bad,
    )?;
    let bootstrap_servers =
        s.bootstrap_servers.clone().ok_or_else(|| bad("a kafka uplink needs `bootstrap_servers`".into()))?;
    if s.topics.is_empty() {
        return Err(bad("it forwards no `topics`".into()));
    }
    let sasl = match (&s.sasl_mechanism, &s.username, &s.password) {
        (None, None, None) => None,
        (Some(m), Some(u), Some(p)) => {
            let m = m.to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
                return Err(bad(format!("sasl_mechanism '{m}' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")));
            }
            Some((m, u.clone(), p.clone()))
        }
        _ => return Err(bad("SASL needs all of `sasl_mechanism`, `username` and `password`".into())),
    };
    let compression = s.compression.clone().unwrap_or_else(|| "none".into()).to_ascii_lowercase();
    if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
        return Err(bad(format!("compression '{compression}' is not one of none, gzip, snappy, lz4, zstd")));
    }
    let keep_partition = match s.partitioning.as_deref().unwrap_or("key") {
        "key" => false,
        "kept" => true,
        other => return Err(bad(format!("partitioning '{other}' is not `key` or `kept`"))),
    };
    Ok(KafkaSpec {
        bootstrap_servers,
        tls: s.tls.unwrap_or(false) || s.tls_ca_file.is_some(),
        tls_ca_file: s.tls_ca_file.clone(),
        sasl,
        compression,
        keep_partition,
    })
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
            host: Some("127.0.0.1".into()),
            port: None,
            bootstrap_servers: None,
            tls: None,
            tls_ca_file: None,
            sasl_mechanism: None,
            compression: None,
            partitioning: None,
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
            hold_retention: None,
        }
    }

    #[test]
    fn defaults_are_applied() {
        let spec = UplinkSpec::try_from(&settings()).unwrap();
        let Target::Mqtt(mqtt) = &spec.target else { panic!("an mqtt uplink") };
        assert_eq!(mqtt.port, 1883);
        assert_eq!(mqtt.client_id, "cairn-uplink-cloud");
        assert_eq!(spec.group(), "__uplink.cloud");
        assert_eq!(spec.batch_records, 5000);
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
        let mut s = settings();
        s.compression = Some("zstd".into());
        assert!(UplinkSpec::try_from(&s).unwrap_err().to_string().contains("`compression` is not a setting of a mqtt"));
    }

    #[test]
    fn settings_are_read_bare_or_under_their_header() {
        let bare = "name = \"a\"\nkind = \"mqtt\"\nhost = \"h\"\ntopics = [\"t\"]\n";
        assert_eq!(parse_settings(bare).unwrap().name, "a");
        let table = format!("[[uplink]]\n{bare}");
        assert_eq!(parse_settings(&table).unwrap().host.as_deref(), Some("h"));
        let e = parse_settings("name = \"a\"\nkind = \"mqtt\"\nhots = \"h\"\n").unwrap_err();
        assert!(e.to_string().contains("hots"), "{e}");
    }

    #[test]
    fn a_kafka_uplink_is_checked() {
        let mut s = settings();
        s.kind = "kafka".into();
        s.host = None;
        assert!(UplinkSpec::try_from(&s).unwrap_err().to_string().contains("needs `bootstrap_servers`"));
        s.bootstrap_servers = Some("127.0.0.1:9092".into());
        s.sasl_mechanism = Some("plain".into());
        assert!(UplinkSpec::try_from(&s).unwrap_err().to_string().contains("SASL needs all of"));
        s.username = Some("key".into());
        s.password = Some("secret".into());
        s.compression = Some("ZSTD".into());
        let spec = UplinkSpec::try_from(&s).unwrap();
        let Target::Kafka(k) = &spec.target else { panic!("a kafka uplink") };
        assert_eq!(k.sasl, Some(("PLAIN".into(), "key".into(), "secret".into())));
        assert_eq!((k.compression.as_str(), k.tls, k.keep_partition), ("zstd", false, false));
        assert_eq!(spec.kind(), "kafka");
    }
}
