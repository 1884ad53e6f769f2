//! TLS on the native and MQTT listeners (rustls): the certificate and key
//! files from the configuration, optionally a CA whose client certificates
//! are accepted (mutual TLS: the certificate's common name becomes the
//! connection's principal), and reloading the files without a restart
//! (`cairn serve` does it on SIGHUP; connections already open keep theirs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate and key are, and the CA of client
/// certificates (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates signed by this CA are accepted, and name the
    /// principal; clients without one authenticate with an API key.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {message}")]
    File { what: &'static str, path: String, message: String },
    #[error("TLS setup failed: {0}")]
    Config(String),
}

/// The listeners' TLS settings, swapped whole on reload.
pub struct Tls {
    files: TlsFiles,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Reads the files; fails with the file and the reason.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&files)?));
        Ok(Arc::new(Tls { files, acceptor: RwLock::new(acceptor) }))
    }

    /// Reads the files again (a renewed certificate). On failure the
    /// current settings stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&self.files)?));
        *self.acceptor.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }

    /// The server side of the handshake, and the common name of a verified
    /// client certificate if the client sent one.
    pub async fn accept(&self, socket: TcpStream) -> std::io::Result<(TlsStream<TcpStream>, Option<String>)> {
        let acceptor = self.acceptor.read().unwrap_or_else(|e| e.into_inner()).clone();
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no TLS handshake within 10 s"))??;
        let name = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(common_name);
        Ok((stream, name))
    }
}

/// The subject's common name of a certificate, if it has a usable one.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    (!name.is_empty()).then_some(name)
}

fn file_error<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + 'p {
    move |e| TlsError::File { what, path: path.display().to_string(), message: e.to_string() }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(file_error(what, path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error(what, path))?;
    if certs.is_empty() {
        let message = "no PEM certificate in it".to_string();
        return Err(TlsError::File { what, path: path.display().to_string(), message });
    }
    Ok(certs)
}

/// rustls with *ring*'s cryptography: small, and built with nothing but a C
/// compiler, also for the ARM gateways. rustls 0.23.48 marks it deprecated
/// because *ring* has no post-quantum key exchange (aws-lc-rs has, at the
/// cost of a much larger C build); a key exchange is classical here.
#[allow(deprecated)]
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = certificates("the TLS certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(file_error("the TLS private key", &files.key))?;
    let provider = Arc::new(crypto_provider());
    let config = |e: rustls::Error| TlsError::Config(e.to_string());
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(config)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("the client CA", path)? {
                roots.add(ca).map_err(config)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| TlsError::Config(format!("certificate and key: {e}")))
}
