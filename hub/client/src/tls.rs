//! TLS to a hub's TLS listener (rustls): the hub's certificate is checked
//! against the CA file the user gives (a gateway's certificate is usually
//! from the site's own CA, not a public one), for the host name of the
//! address or the name given.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::{ClientError, Result};

/// TLS settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA that signed the hub's certificate.
    pub ca_file: PathBuf,
    /// The name the hub's certificate must carry; default: the host of the
    /// address (an IP address is checked against the certificate's IPs).
    pub server_name: Option<String>,
    /// A client certificate and its key (PEM), for hubs that map
    /// certificates to principals.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

fn tls_error(message: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(message.to_string())
}

/// rustls with *ring*, as the hub uses (deprecated in rustls 0.23.48 only
/// for lacking post-quantum key exchange).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsOptions {
    /// The rustls client settings these options make (for other TLS
    /// clients of the hub, such as an MQTT client in a benchmark).
    pub fn client_config(&self) -> Result<ClientConfig> {
        config(self)
    }
}

fn config(options: &TlsOptions) -> Result<ClientConfig> {
    let path = options.ca_file.display();
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&options.ca_file)
        .map_err(|e| tls_error(format!("cannot read the CA file {path}: {e}")))?;
    for ca in cas {
        let ca = ca.map_err(|e| tls_error(format!("the CA file {path} is not valid PEM: {e}")))?;
        roots.add(ca).map_err(|e| tls_error(format!("the CA file {path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(tls_error(format!("the CA file {path} holds no certificate")));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots);
    match &options.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("cannot read the client certificate {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_error(format!("cannot read the client key {}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(tls_error)
        }
    }
}

/// The TLS handshake over `socket`, connected to `addr`.
pub(crate) async fn connect(addr: &str, socket: TcpStream, options: &TlsOptions) -> Result<TlsStream<TcpStream>> {
    let host = match &options.server_name {
        Some(name) => name.clone(),
        None => addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_matches(['[', ']']).to_string(),
    };
    let name =
        ServerName::try_from(host.clone()).map_err(|e| tls_error(format!("'{host}' is not a server name: {e}")))?;
    let connector = TlsConnector::from(Arc::new(config(options)?));
    connector.connect(name, socket).await.map_err(|e| tls_error(format!("TLS handshake with {addr} failed: {e}")))
}
