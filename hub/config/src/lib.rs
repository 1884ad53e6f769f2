//! Cairn's config file, `cairn.toml`: each table as a type, every key
//! optional (what is not set keeps `cairn serve`'s embedded default, and
//! flags and environment variables override the file). Unknown keys are
//! errors, so a typo is not silently a default.
//!
//! * this module: the file's tables ([`Settings`] and its sections);
//! * [`uplink`]: an `[[uplink]]` table, and its check into an
//!   [`uplink::UplinkSpec`] (the form the uplinks run from);
//! * [`template`]: the `{placeholder}` templates uplinks name topics with.
//!
//! The file is outside input: reading it must give a clear error or a
//! value, never a panic (fuzzed as `config_file`, docs/RELIABILITY.md).
//!
//!
//! ```toml
//! data_dir = "/var/lib/cairn"
//!
//! [auth]                           # docs/security.md
//! allow_anonymous = false          # clients without a key: refused (true: act as `anonymous`)
//!
//! [tls]                            # for the TLS listeners; reloaded on SIGHUP
//! cert_file = "/etc/cairn/tls/server.pem"
//! key_file = "/etc/cairn/tls/server.key"
//! client_ca_file = "/etc/cairn/tls/devices-ca.pem"   # optional: client certificates name the principal
//!
//! [native]
//! addr = "0.0.0.0:7878"            # default: 127.0.0.1 until an API key exists
//! tls_addr = "0.0.0.0:7883"        # off unless set
//! max_connections = 1024
//! max_frame_bytes = 8388608
//!
//! [mqtt]
//! addr = "0.0.0.0:1883"          # or a list; default: 127.0.0.1 until an API key exists
//! tls_addr = "0.0.0.0:8883"      # or a list; off unless set
//! ws_addr = "0.0.0.0:8080"       # MQTT over WebSocket (ws://), or a list; off unless set
//! wss_addr = "0.0.0.0:8443"      # MQTT over secure WebSocket (wss://, [tls]), or a list; off unless set
//! enabled = true
//! max_packet_bytes = 1048576
//! max_inflight = 64
//! max_connections = 10000          # MQTT connections at once
//! max_subscriptions = 100          # filters one session may hold
//! max_keep_alive_secs = 65535      # longest keep-alive (MQTT 5: told in CONNACK)
//! max_retained_messages = 100000   # retained topics
//! max_retained_bytes = 67108864    # retained topics and payloads, bytes
//! max_sessions = 100000            # stored persistent sessions
//! max_queued_messages = 0          # per partition for a client away; 0: no limit (oldest skipped)
//! topic_partitions = 1             # partitions of topics MQTT creates
//! sys_interval_secs = 10           # $SYS/broker/... statistics to subscribers; 0: none
//! write_timeout_secs = 30         # a client that reads nothing this long is disconnected
//! receive_maximum = 1024           # MQTT 5: QoS 1/2 messages a client may have unanswered (more: DISCONNECT 0x93)
//! response_information = ""        # MQTT 5 Response Information (e.g. "reply/%c"); "": none
//!
//! [[mqtt.mapping]]                 # optional rules, first match wins (docs/mqtt.md)
//! filter = "factory/+/sensors/#"
//! topic = "factory-{2}"            # {N}: level N of the MQTT topic
//! key = "{topic}"                  # {topic}: the whole MQTT topic (the default)
//!
//! [http]                         # status page, /metrics, /healthz (docs/observability.md)
//! addr = "0.0.0.0:7880"          # default: 127.0.0.1 until an API key exists
//! enabled = true
//!
//! [serial]
//! tcp_addr = "0.0.0.0:7879"     # serial-over-TCP (QEMU, ser2net); off unless set
//! device = "/dev/ttyUSB0"        # a UART of the gateway; off unless set
//! baud = 115200
//! principal = "serial"           # who serial lines act as (ACL rules apply)
//!
//! [plugins]                      # WebAssembly plugins (docs/plugins.md)
//! enabled = true
//! fuel_per_batch = 500000000       # CPU budget of one plugin call (about one unit per instruction)
//! memory_bytes = 67108864          # memory cap of one plugin instance
//! max_failures = 5                 # failed batches in a row before an attachment pauses
//! max_fuel_per_batch = 5000000000  # ceilings no attach or upload may exceed
//! max_memory_bytes = 268435456
//! max_upload_bytes = 8388608
//! max_versions = 100               # versions kept per plugin
//!
//! [[uplink]]                     # store and forward to an upstream broker (docs/uplinks.md)
//! name = "cloud"                 # its progress is consumer group __uplink.cloud
//! kind = "mqtt"
//! topics = ["sensors"]           # local topics forwarded
//! host = "broker.example.com"
//! port = 1883
//! remote_topic = "site-7/{key}"  # {topic}, {key}, {partition}
//! subscribe = ["site-7/cmd/#"]   # upstream filters brought into the hub …
//! local_topic = "cmd/{topic}"    # … as this local MQTT topic
//! hold_retention = false         # true: retention keeps what it has not sent (up to [log] retention_hold_max_bytes)
//!
//! [log]
//! max_batch_bytes = 1048576
//! flush_interval_ms = 1000
//! retention_check_secs = 30
//! quick_repair = false
//! cache_bytes = 16777216         # redb's page cache, most of the hub's memory under load
//! retention_hold_max_bytes = 1073741824  # uplinks' retention holds end above this (docs/uplinks.md)
//! max_disk_bytes = 8589934592    # appends refused (disk full) past this many bytes of records; default: none
//! min_free_disk_bytes = 33554432 # appends refused while less would stay free on the filesystem
//! ```

pub mod template;
pub mod uplink;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use uplink::UplinkSettings;

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

/// What a config file (or the flags) may set; everything optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub data_dir: Option<PathBuf>,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
    pub native: NativeSettings,
    pub mqtt: MqttSettings,
    pub http: HttpSettings,
    pub serial: SerialSettings,
    pub log: LogSettings,
    pub plugins: PluginSettings,
    pub uplink: Vec<UplinkSettings>,
}

/// `[auth]`: who may connect without a key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub allow_anonymous: Option<bool>,
}

/// `[tls]`: the TLS listeners' files.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// `[plugins]`: defaults of attachments that do not set their own limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    pub enabled: Option<bool>,
    pub fuel_per_batch: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub max_failures: Option<u32>,
    pub max_fuel_per_batch: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub max_upload_bytes: Option<u64>,
    pub max_versions: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// One address, or a list (several listeners).
    pub addr: Option<Addrs>,
    /// TLS listeners, likewise.
    pub tls_addr: Option<Addrs>,
    /// MQTT-over-WebSocket listeners, likewise.
    pub ws_addr: Option<Addrs>,
    /// MQTT-over-secure-WebSocket listeners, likewise.
    pub wss_addr: Option<Addrs>,
    pub enabled: Option<bool>,
    pub max_packet_bytes: Option<usize>,
    pub max_inflight: Option<u16>,
    pub max_connections: Option<usize>,
    pub max_subscriptions: Option<usize>,
    pub max_keep_alive_secs: Option<u16>,
    pub max_retained_messages: Option<usize>,
    pub max_retained_bytes: Option<usize>,
    pub max_sessions: Option<usize>,
    pub max_queued_messages: Option<u64>,
    pub topic_partitions: Option<u32>,
    pub sys_interval_secs: Option<u32>,
    pub write_timeout_secs: Option<u32>,
    /// MQTT 5 CONNACK Receive Maximum.
    pub receive_maximum: Option<u16>,
    /// MQTT 5 Response Information, `%c` for the client id.
    pub response_information: Option<String>,
    pub mapping: Option<Vec<RuleSettings>>,
}

/// `addr = "0.0.0.0:1883"` or `addr = ["0.0.0.0:1883", "[::]:1884"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Addrs {
    One(SocketAddr),
    Many(Vec<SocketAddr>),
}

impl Addrs {
    pub fn to_vec(&self) -> Vec<SocketAddr> {
        match self {
            Addrs::One(a) => vec![*a],
            Addrs::Many(v) => v.clone(),
        }
    }
}

/// `[http]`: the status page, `/metrics` and the health endpoints.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub addr: Option<SocketAddr>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SerialSettings {
    pub tcp_addr: Option<SocketAddr>,
    pub device: Option<PathBuf>,
    pub baud: Option<u32>,
    pub principal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeSettings {
    pub addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub max_frame_bytes: Option<usize>,
}

// `[log]`, and (feature `clap`) the `cairn serve` flags of the same names:
// one struct for both layers; `cairn serve` turns it into the options the
// log takes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Largest record batch accepted, in bytes [default: 1 MiB].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_MAX_BATCH_BYTES"))]
    pub max_batch_bytes: Option<usize>,
    /// redb quick-repair: reopen in milliseconds after a crash or power loss,
    /// at the cost of saving the allocator state (which grows with the log)
    /// and a second fsync in every commit [default: false].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_QUICK_REPAIR"))]
    pub quick_repair: Option<bool>,
    /// redb's page cache, in bytes: most of the hub's memory under load
    /// [default: 16 MiB].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_CACHE_BYTES"))]
    pub cache_bytes: Option<usize>,
    /// Uplinks with `hold_retention` keep retention from deleting what they
    /// have not sent while the log stores at most this many bytes [default: 1 GiB].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_RETENTION_HOLD_MAX_BYTES"))]
    pub retention_hold_max_bytes: Option<u64>,
    /// How often retention and compaction run, in seconds [default: 30].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_RETENTION_CHECK_SECS"))]
    pub retention_check_secs: Option<u64>,
    /// fsync interval for topics with `flush = interval`, in milliseconds [default: 1000].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_FLUSH_INTERVAL_MS"))]
    pub flush_interval_ms: Option<u64>,
    /// Refuse appends (disk full) once the log stores this many bytes of
    /// records [default: no limit but the disk].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_MAX_DISK_BYTES"))]
    pub max_disk_bytes: Option<u64>,
    /// Refuse appends (disk full) while fewer bytes than this would stay
    /// free on the data directory's filesystem, keeping room for the
    /// commits that free space [default: 32 MiB].
    #[cfg_attr(feature = "clap", arg(long, env = "CAIRN_MIN_FREE_DISK_BYTES"))]
    pub min_free_disk_bytes: Option<u64>,
}

/// `[[mqtt.mapping]]`: which Cairn topic and key the MQTT messages matching
/// `filter` are stored under (docs/mqtt.md; checked by the hub's MQTT
/// listener, which applies them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    pub filter: String,
    pub topic: String,
    pub key: Option<String>,
}

impl Settings {
    /// Reads a TOML config file. Unknown keys are errors (typos must not
    /// silently fall back to defaults).
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Settings::from_toml(&text)
            .map_err(|e| ConfigError::Invalid { path: path.display().to_string(), message: e.to_string() })
    }

    /// Reads config-file text (what `load` does once the file is read).
    pub fn from_toml(text: &str) -> Result<Settings, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[native]\nadress = \"x\"\n").unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains("adress") && err.contains("bad.toml"), "{err}");
        std::fs::write(&path, "[log]\nquick_repair = \"yes\"\n").unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("quick_repair"));
        let err = Settings::load(&dir.path().join("missing.toml")).unwrap_err().to_string();
        assert!(err.contains("cannot read config file"), "{err}");
    }

    #[test]
    fn the_documented_example_is_a_valid_config() {
        // The example at the top of this file, as a user would copy it.
        let example: String = include_str!("lib.rs")
            .lines()
            .skip_while(|l| *l != "//! ```toml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap_or("")))
            .collect();
        let settings = Settings::from_toml(&example).unwrap();
        assert_eq!(settings.mqtt.mapping.as_ref().map(Vec::len), Some(1));
        assert_eq!(settings.uplink.len(), 1);
        let spec = uplink::UplinkSpec::try_from(&settings.uplink[0]).unwrap();
        assert_eq!(spec.group(), "__uplink.cloud");
        assert_eq!(settings.log.max_disk_bytes, Some(8 << 30));
    }
}
