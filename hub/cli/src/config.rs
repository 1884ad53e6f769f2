//! `cairn serve` settings: embedded defaults, overridden by the config file
//! (`--config`, read by `cairn-config`), overridden by environment variables
//! and flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_config::{Addrs, RuleSettings, Settings, UplinkSettings};
use cairn_log::LogOptions;

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
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
    pub mqtt_write_timeout_secs: u32,
    pub mqtt_receive_maximum: u16,
    pub mqtt_response_information: String,
    pub mqtt_mapping: Vec<RuleSettings>,
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
    pub uplinks: Vec<UplinkSettings>,
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
            mqtt_write_timeout_secs: 30,
            mqtt_receive_maximum: 1024,
            mqtt_response_information: String::new(),
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
            mqtt_write_timeout_secs: pick!(mqtt.write_timeout_secs, d.mqtt_write_timeout_secs),
            mqtt_receive_maximum: pick!(mqtt.receive_maximum, d.mqtt_receive_maximum),
            mqtt_response_information: pick!(mqtt.response_information, d.mqtt_response_information),
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
            native: cairn_config::NativeSettings {
                addr: Some("127.0.0.1:9100".parse().unwrap()),
                ..Default::default()
            },
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
}
