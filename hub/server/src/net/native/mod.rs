//! The native protocol listener: accepts TCP connections and runs one
//! [`connection`] task per client, up to a connection limit.
//!
//! listener (this file) → connection (frames in, frames out) → handler (one
//! request → broker → one response, one file per request area); both use
//! `outgoing` for what is sent back. Wire types come from `cairn_proto::frame`.

pub(crate) mod connection;
pub(crate) mod handler;
mod outgoing;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::accept::Acceptor;
use super::tls::Tls;
use super::Shutdown;
use crate::auth::Principal;
use crate::broker::Broker;
use handler::access::Identity;

/// Limits of the native protocol, each named in the error a client gets.
#[derive(Debug, Clone)]
pub struct NativeLimits {
    /// Largest frame accepted, in bytes (prefix excluded).
    pub max_frame_bytes: usize,
    /// Most connections open at once; more are told so and closed.
    pub max_connections: usize,
    /// Most requests of one connection being worked on at once; past it the
    /// hub stops reading from that connection until some are answered.
    pub max_in_flight: usize,
    /// Longest long-poll a fetch may ask for.
    pub max_fetch_wait_ms: u32,
}

impl Default for NativeLimits {
    fn default() -> Self {
        NativeLimits {
            max_frame_bytes: 8 * 1024 * 1024,
            max_connections: 1024,
            max_in_flight: 256,
            max_fetch_wait_ms: 30_000,
        }
    }
}

/// Serves the native protocol on `listener` until `shutdown` fires; then
/// stops accepting and waits (bounded) for open connections, which watch
/// `shutdown` too, to answer what is in flight. With `tls`, each connection
/// starts with a TLS handshake; a verified client certificate names the
/// connection's principal.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    broker: Broker,
    limits: NativeLimits,
    shutdown: Shutdown,
) {
    let name = if tls.is_some() { "native (TLS)" } else { "native" };
    let acceptor = Acceptor::new(name, limits.max_connections);
    let limits = Arc::new(limits);
    let max_connections = limits.max_connections;
    // Each kind of connection is boxed on its own: a task keeps room for the
    // largest future it could be, and a TLS handshake is far larger than a
    // plain connection, which would otherwise pay for it.
    let serve = |socket: TcpStream, peer: SocketAddr| -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (broker, limits, shutdown) = (broker.clone(), limits.clone(), shutdown.clone());
        broker.metrics().native_connections.inc();
        let framing = connection::Framing::LengthPrefixed;
        match tls.clone() {
            None => Box::pin(async move {
                let identity = Identity::Key { peer: peer.ip(), certificate: None };
                let (read_half, write_half) = socket.into_split();
                connection::run(read_half, write_half, peer, framing, identity, broker, limits, shutdown).await
            }),
            Some(tls) => Box::pin(async move {
                match tls.accept(socket).await {
                    Ok((stream, name)) => {
                        let certificate = name.map(|n| Principal::named(&n));
                        let identity = Identity::Key { peer: peer.ip(), certificate };
                        let (read_half, write_half) = tokio::io::split(stream);
                        connection::run(read_half, write_half, peer, framing, identity, broker, limits, shutdown).await
                    }
                    Err(err) => tracing::info!(%peer, error = %err, "TLS handshake failed"),
                }
            }),
        }
    };
    let refuse = move |socket, peer| connection::refuse_too_many(socket, peer, max_connections);
    acceptor.run(listener, shutdown.clone(), serve, refuse).await;
    acceptor.drain().await;
}

/// Binds the native protocol's address and logs the address it got (port 0
/// picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "native protocol").await
}

/// Binds a TLS listener's address and logs the address it got.
pub async fn bind_tls(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "native protocol over TLS").await
}
