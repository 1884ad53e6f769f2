//! Test helpers: a `Server` over a log in a temporary directory, and
//! CONNECT packets.

use std::sync::Arc;

use cairn_log::{Log, LogOptions};

use super::codec::Connect;
use super::{MqttConfig, Server};
use crate::broker::Broker;

/// A server with the default settings (keep the directory while it runs).
pub(super) fn server() -> (tempfile::TempDir, Arc<Server>) {
    server_with(MqttConfig::default())
}

pub(super) fn server_with(config: MqttConfig) -> (tempfile::TempDir, Arc<Server>) {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions { retention_check_interval: None, ..LogOptions::default() };
    let log = Log::open(dir.path().join("mqtt.redb"), options).unwrap();
    (dir, Arc::new(Server::new(Broker::new(log), config)))
}

/// An anonymous CONNECT without a will.
pub(super) fn connect(client_id: &str, clean: bool) -> Connect {
    Connect::new(client_id, clean)
}

/// The wall clock, as the test servers' logs ([`cairn_log::SystemClock`])
/// read it.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
