//! `cairn serve` settings: embedded defaults, overridden by a TOML file
//! (`--config`), overridden by environment variables and flags.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_log::LogOptions;
use serde::Deserialize;

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

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
    pub uplink: Vec<cairn_uplink::UplinkSettings>,
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
    pub mapping: Option<Vec<cairn_hub::net::mqtt::mapping::RuleSettings>>,
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

// `[log]`, and the `cairn serve` flags of the same names: one struct for
// both layers; `ServeConfig::resolve` turns it into the `LogOptions` the log
// takes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Largest record batch accepted, in bytes [default: 1 MiB].
    #[arg(long, env = "CAIRN_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<usize>,
    /// redb quick-repair: reopen in milliseconds after a crash or power loss,
    /// at the cost of saving the allocator state (which grows with the log)
    /// and a second fsync in every commit [default: false].
    #[arg(long, env = "CAIRN_QUICK_REPAIR")]
    pub quick_repair: Option<bool>,
    /// redb's page cache, in bytes: most of the hub's memory under load
    /// [default: 16 MiB].
    #[arg(long, env = "CAIRN_CACHE_BYTES")]
    pub cache_bytes: Option<usize>,
    /// Uplinks with `hold_retention` keep retention from deleting what they
    /// have not sent while the log stores at most this many bytes [default: 1 GiB].
    #[arg(long, env = "CAIRN_RETENTION_HOLD_MAX_BYTES")]
    pub retention_hold_max_bytes: Option<u64>,
    /// How often retention and compaction run, in seconds [default: 30].
    #[arg(long, env = "CAIRN_RETENTION_CHECK_SECS")]
    pub retention_check_secs: Option<u64>,
    /// fsync interval for topics with `flush = interval`, in milliseconds [default: 1000].
    #[arg(long, env = "CAIRN_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Refuse appends (disk full) once the log stores this many bytes of
    /// records [default: no limit but the disk].
    #[arg(long, env = "CAIRN_MAX_DISK_BYTES")]
    pub max_disk_bytes: Option<u64>,
    /// Refuse appends (disk full) while fewer bytes than this would stay
    /// free on the data directory's filesystem, keeping room for the
    /// commits that free space [default: 32 MiB].
    #[arg(long, env = "CAIRN_MIN_FREE_DISK_BYTES")]
    pub min_free_disk_bytes: Option<u64>,
}

/// The settings `serve` runs with, every value decided.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// Clients without a key act as `anonymous` instead of being refused;
    /// with no key at all, the listeners may bind beyond loopback.
    pub allow_anonymous: bool,
    /// `None`: loopback until an API key exists, then every interface
    /// (decided by `serve` once the keys are loaded).
    pub native_addr: Option<SocketAddr>,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    /// MQTT listeners (`Some(empty)`: MQTT off; `None`: the default, as
    /// for `native_addr`).
    pub mqtt_addrs: Option<Vec<SocketAddr>>,
    /// TLS listeners (none unless configured), and their files.
    pub native_tls_addr: Option<SocketAddr>,
    pub mqtt_tls_addrs: Vec<SocketAddr>,
    /// MQTT over WebSocket listeners (none unless configured).
    pub mqtt_ws_addrs: Vec<SocketAddr>,
    /// MQTT over secure WebSocket listeners (none unless configured).
    pub mqtt_wss_addrs: Vec<SocketAddr>,
    pub tls: Option<cairn_hub::net::tls::TlsFiles>,
    pub mqtt_max_packet_bytes: usize,
    pub mqtt_max_inflight: u16,
    pub mqtt_max_connections: usize,
    pub mqtt_max_subscriptions: usize,
    pub mqtt_max_keep_alive_secs: u16,
    pub mqtt_max_retained_messages: usize,
    pub mqtt_max_retained_bytes: usize,
    pub mqtt_max_sessions: usize,
    pub mqtt_max_queued_messages: u64,
    pub mqtt_topic_partitions: u32,
    pub mqtt_sys_interval_secs: u32,
    pub mqtt_mapping: Vec<cairn_hub::net::mqtt::mapping::RuleSettings>,
    /// The HTTP listener (`None`: the default, as for `native_addr`), and
    /// whether there is one at all.
    pub http_addr: Option<SocketAddr>,
    pub http_enabled: bool,
    /// Serial-over-TCP listener (off when `None`).
    pub serial_tcp_addr: Option<SocketAddr>,
    /// Serial device (off when `None`) and its baud rate.
    pub serial_device: Option<PathBuf>,
    pub serial_baud: u32,
    /// The principal serial lines act as.
    pub serial_principal: String,
    /// What the log is opened with: `[log]` lands here directly, and its
    /// defaults are `LogOptions::default()`, defined once in `cairn-log`.
    pub log: LogOptions,
    /// Run WebAssembly plugins at all.
    pub plugins_enabled: bool,
    pub plugin_defaults: cairn_hub::plugins::Defaults,
    /// `[[uplink]]` tables, as written (checked when the hub starts).
    pub uplinks: Vec<cairn_uplink::UplinkSettings>,
}

impl Default for ServeConfig {
    /// The embedded defaults.
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("cairn-data"),
            allow_anonymous: false,
            native_addr: None,
            max_connections: 1024,
            max_frame_bytes: 8 * 1024 * 1024,
            mqtt_addrs: None,
            native_tls_addr: None,
            mqtt_tls_addrs: Vec::new(),
            mqtt_ws_addrs: Vec::new(),
            mqtt_wss_addrs: Vec::new(),
            tls: None,
            mqtt_max_packet_bytes: 1024 * 1024,
            mqtt_max_inflight: 64,
            mqtt_max_connections: 10_000,
            mqtt_max_subscriptions: 100,
            mqtt_max_keep_alive_secs: u16::MAX,
            mqtt_max_retained_messages: 100_000,
            mqtt_max_retained_bytes: 64 * 1024 * 1024,
            mqtt_max_sessions: 100_000,
            mqtt_max_queued_messages: 0,
            mqtt_topic_partitions: 1,
            mqtt_sys_interval_secs: 10,
            mqtt_mapping: Vec::new(),
            http_addr: None,
            http_enabled: true,
            serial_tcp_addr: None,
            serial_device: None,
            serial_baud: 115_200,
            serial_principal: cairn_hub::net::serial::DEFAULT_PRINCIPAL.to_string(),
            log: LogOptions::default(),
            plugins_enabled: true,
            plugin_defaults: cairn_hub::plugins::Defaults::default(),
            uplinks: Vec::new(),
        }
    }
}

impl Settings {
    /// Reads a TOML config file. Unknown keys are errors (typos must not
    /// silently fall back to defaults).
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.display().to_string(), message: e.to_string() })
    }
}

impl ServeConfig {
    /// Defaults, then `file`, then `overrides` (flags and environment).
    pub fn resolve(file: &Settings, overrides: &Settings) -> ServeConfig {
        let d = ServeConfig::default();
        macro_rules! pick {
            ($($field:ident).+, $default:expr) => {
                overrides.$($field).+.clone().or_else(|| file.$($field).+.clone()).unwrap_or($default)
            };
        }
        ServeConfig {
            data_dir: pick!(data_dir, d.data_dir),
            allow_anonymous: pick!(auth.allow_anonymous, d.allow_anonymous),
            native_addr: overrides.native.addr.or(file.native.addr),
            max_connections: pick!(native.max_connections, d.max_connections),
            max_frame_bytes: pick!(native.max_frame_bytes, d.max_frame_bytes),
            mqtt_addrs: if pick!(mqtt.enabled, true) {
                overrides.mqtt.addr.as_ref().or(file.mqtt.addr.as_ref()).map(Addrs::to_vec)
            } else {
                Some(Vec::new())
            },
            native_tls_addr: overrides.native.tls_addr.or(file.native.tls_addr),
            mqtt_tls_addrs: if pick!(mqtt.enabled, true) {
                overrides.mqtt.tls_addr.as_ref().or(file.mqtt.tls_addr.as_ref()).map(Addrs::to_vec).unwrap_or_default()
            } else {
                Vec::new()
            },
            mqtt_ws_addrs: if pick!(mqtt.enabled, true) {
                overrides.mqtt.ws_addr.as_ref().or(file.mqtt.ws_addr.as_ref()).map(Addrs::to_vec).unwrap_or_default()
            } else {
                Vec::new()
            },
            mqtt_wss_addrs: if pick!(mqtt.enabled, true) {
                overrides.mqtt.wss_addr.as_ref().or(file.mqtt.wss_addr.as_ref()).map(Addrs::to_vec).unwrap_or_default()
            } else {
                Vec::new()
            },
            tls: match (pick!(tls.cert_file, PathBuf::new()), pick!(tls.key_file, PathBuf::new())) {
                (cert, key) if cert.as_os_str().is_empty() || key.as_os_str().is_empty() => None,
                (cert, key) => Some(cairn_hub::net::tls::TlsFiles {
                    cert,
                    key,
                    client_ca: overrides.tls.client_ca_file.clone().or_else(|| file.tls.client_ca_file.clone()),
                }),
            },
            mqtt_max_packet_bytes: pick!(mqtt.max_packet_bytes, d.mqtt_max_packet_bytes),
            mqtt_max_inflight: pick!(mqtt.max_inflight, d.mqtt_max_inflight),
            mqtt_max_connections: pick!(mqtt.max_connections, d.mqtt_max_connections),
            mqtt_max_subscriptions: pick!(mqtt.max_subscriptions, d.mqtt_max_subscriptions),
            mqtt_max_keep_alive_secs: pick!(mqtt.max_keep_alive_secs, d.mqtt_max_keep_alive_secs),
            mqtt_max_retained_messages: pick!(mqtt.max_retained_messages, d.mqtt_max_retained_messages),
            mqtt_max_retained_bytes: pick!(mqtt.max_retained_bytes, d.mqtt_max_retained_bytes),
            mqtt_max_sessions: pick!(mqtt.max_sessions, d.mqtt_max_sessions),
            mqtt_max_queued_messages: pick!(mqtt.max_queued_messages, d.mqtt_max_queued_messages),
            mqtt_topic_partitions: pick!(mqtt.topic_partitions, d.mqtt_topic_partitions),
            mqtt_sys_interval_secs: pick!(mqtt.sys_interval_secs, d.mqtt_sys_interval_secs),
            mqtt_mapping: pick!(mqtt.mapping, d.mqtt_mapping),
            http_addr: overrides.http.addr.or(file.http.addr),
            http_enabled: pick!(http.enabled, d.http_enabled),
            serial_tcp_addr: overrides.serial.tcp_addr.or(file.serial.tcp_addr),
            serial_device: overrides.serial.device.clone().or_else(|| file.serial.device.clone()),
            serial_baud: pick!(serial.baud, d.serial_baud),
            serial_principal: pick!(serial.principal, d.serial_principal),
            log: LogOptions {
                max_batch_bytes: pick!(log.max_batch_bytes, d.log.max_batch_bytes),
                // Floors (10 ms, 1 s): smaller values would only spin.
                flush_interval: millis(pick!(log.flush_interval_ms, d.log.flush_interval.as_millis() as u64).max(10)),
                retention_check_interval: Some(Duration::from_secs(
                    pick!(log.retention_check_secs, d.log.retention_check_interval.map_or(30, |i| i.as_secs())).max(1),
                )),
                quick_repair: pick!(log.quick_repair, d.log.quick_repair),
                cache_bytes: pick!(log.cache_bytes, d.log.cache_bytes),
                retention_hold_max_bytes: pick!(log.retention_hold_max_bytes, d.log.retention_hold_max_bytes),
                max_disk_bytes: overrides.log.max_disk_bytes.or(file.log.max_disk_bytes),
                min_free_disk_bytes: pick!(log.min_free_disk_bytes, d.log.min_free_disk_bytes),
                ..d.log.clone()
            },
            plugins_enabled: pick!(plugins.enabled, d.plugins_enabled),
            plugin_defaults: cairn_hub::plugins::Defaults {
                fuel_per_batch: pick!(plugins.fuel_per_batch, d.plugin_defaults.fuel_per_batch),
                memory_bytes: pick!(plugins.memory_bytes, d.plugin_defaults.memory_bytes),
                max_failures: pick!(plugins.max_failures, d.plugin_defaults.max_failures),
                max_fuel_per_batch: pick!(plugins.max_fuel_per_batch, d.plugin_defaults.max_fuel_per_batch),
                max_memory_bytes: pick!(plugins.max_memory_bytes, d.plugin_defaults.max_memory_bytes),
                max_upload_bytes: pick!(plugins.max_upload_bytes, d.plugin_defaults.max_upload_bytes),
                max_versions: pick!(plugins.max_versions, d.plugin_defaults.max_versions),
            },
            // From the file only: an uplink has too many settings for flags.
            uplinks: file.uplink.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/cairn\"\n[native]\naddr = \"127.0.0.1:9000\"\n[log]\nquick_repair = true\ncache_bytes = 4194304\n",
        )
        .unwrap();
        let file = Settings::load(&path).unwrap();
        let flags = Settings {
            native: NativeSettings { addr: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() },
            ..Default::default()
        };
        let c = ServeConfig::resolve(&file, &flags);
        assert_eq!(c.data_dir, PathBuf::from("/srv/cairn"));
        assert_eq!(c.native_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.mqtt_addrs, None, "unset: loopback or all interfaces, decided once keys are loaded");
        assert!(!c.allow_anonymous);
        assert!(c.log.quick_repair, "the file turns on what the default leaves off");
        assert_eq!(c.log.cache_bytes, 4 << 20);
        assert_eq!(c.max_connections, 1024);
    }

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
}
