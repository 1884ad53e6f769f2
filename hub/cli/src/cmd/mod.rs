//! The `cairn` subcommands that talk to a running hub over the native
//! protocol, in the spirit of kcat / kafka-topics / rpk.

pub mod access;
pub mod consume;
pub mod group;
pub mod metrics;
pub mod plugin;
pub mod produce;
pub mod topic;
pub mod uplink;

use std::time::Duration;

use cairn_client::{Client, ClientError, ConnectOptions, Credentials, TlsOptions};
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
    /// API key id to authenticate with (hubs with keys require one).
    #[arg(long, env = "CAIRN_API_KEY", global = true)]
    pub api_key: Option<String>,
    /// The API key's secret. Prefer the environment variable or
    /// --client-config to the flag, which other users can see in `ps`.
    #[arg(long, env = "CAIRN_API_SECRET", hide_env_values = true, global = true)]
    pub api_secret: Option<String>,
    /// A TOML file with `api_key`, `api_secret`, `tls_ca`, `tls_cert`,
    /// `tls_key` (keep it private: chmod 600), used for what the flags and
    /// environment do not set.
    #[arg(long, env = "CAIRN_CLIENT_CONFIG", global = true)]
    pub client_config: Option<std::path::PathBuf>,
    /// Connect with TLS, checking the hub's certificate against this CA
    /// (PEM). --hub must then name the hub's TLS listener.
    #[arg(long, env = "CAIRN_TLS_CA", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The name the hub's certificate must carry [default: the host of --hub].
    #[arg(long, env = "CAIRN_TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,
    /// A client certificate (PEM) for hubs that map certificates to
    /// principals; with --tls-key.
    #[arg(long, env = "CAIRN_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CAIRN_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
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
        // A bad client config is not retriable: `Refused`.
        let options = self.options().map_err(|e| ClientError::Refused(e.to_string()))?;
        Ok(Client::connect_with(&self.hub, &options).await?.with_request_timeout(self.request_timeout))
    }

    /// The connection options: the key from the flags or environment, else
    /// from the client config file.
    pub fn options(&self) -> Result<ConnectOptions, AnyError> {
        let file = match &self.client_config {
            Some(path) => ClientFile::load(path)?,
            None => ClientFile::default(),
        };
        let key = self.api_key.clone().or(file.api_key);
        let secret = self.api_secret.clone().or(file.api_secret);
        let credentials = match (key, secret) {
            (Some(key), Some(secret)) => Some(Credentials { key, secret }),
            (None, None) => None,
            (Some(_), None) => return Err("--api-key needs --api-secret (or CAIRN_API_SECRET)".into()),
            (None, Some(_)) => return Err("--api-secret needs --api-key (or CAIRN_API_KEY)".into()),
        };
        let ca = self.tls_ca.clone().or(file.tls_ca);
        let client_cert = match (self.tls_cert.clone().or(file.tls_cert), self.tls_key.clone().or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("a TLS client certificate needs both tls_cert and tls_key".into()),
        };
        let tls = match ca {
            Some(ca_file) => Some(TlsOptions { ca_file, server_name: self.tls_server_name.clone(), client_cert }),
            None if client_cert.is_some() => return Err("a TLS client certificate needs --tls-ca".into()),
            None => None,
        };
        Ok(ConnectOptions { credentials, tls })
    }
}

/// `--client-config`: what a client may keep in a file instead of flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    api_key: Option<String>,
    api_secret: Option<String>,
    tls_ca: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
}

impl ClientFile {
    fn load(path: &std::path::Path) -> Result<ClientFile, AnyError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read client config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("client config {} is invalid: {e}", path.display()).into())
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
