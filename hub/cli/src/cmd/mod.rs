//! The `cairn` subcommands that talk to a running hub over the native
//! protocol, in the spirit of kcat / kafka-topics / rpk.

pub mod consume;
pub mod group;
pub mod metrics;
pub mod plugin;
pub mod produce;
pub mod topic;

use std::time::Duration;

use cairn_client::{Client, ClientError};
use clap::{Args, ValueEnum};

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct HubArgs {
    /// Address of the hub's native protocol listener.
    #[arg(long, env = "CAIRN_HUB", default_value = "127.0.0.1:7878", global = true)]
    pub hub: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// How long a request waits for the hub's answer (e.g. 30s, 500ms)
    /// before the connection is given up as dead. A fetch's long poll comes
    /// on top.
    #[arg(long, env = "CAIRN_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_timeout, global = true)]
    pub request_timeout: Duration,
}

/// A request timeout: a duration such as `30s` or `500ms`, not zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (e.g. 30s, 500ms)")),
    }
}

impl HubArgs {
    /// A connection to the hub, its requests bounded by --request-timeout.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        Ok(Client::connect(&self.hub).await?.with_request_timeout(self.request_timeout))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON document per line.
    Json,
}

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes as text when they are UTF-8, for printing.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Milliseconds since the Unix epoch: the timestamp of records the CLI and
/// the benchmarks produce (the hub itself uses its log's clock).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
