//! The native protocol listener: accepts TCP connections and runs one
//! [`connection`] task per client, up to a connection limit.
//!
//! listener (this file) → connection (frames in, frames out) → handler (one
//! request → broker → one response, one file per request area); both use
//! `outgoing` for what is sent back. Wire types come from `cairn_proto::frame`.

pub(crate) mod connection;
mod handler;
mod outgoing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Shutdown;
use crate::broker::Broker;

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
/// stops accepting and returns (open connections finish on their own, also
/// watching `shutdown`).
pub async fn serve(listener: TcpListener, broker: Broker, limits: NativeLimits, mut shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => break,
        };
        let (socket, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: wait a little, go on.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let permit = permits.clone().try_acquire_owned().ok();
        let (broker, limits, shutdown) = (broker.clone(), limits.clone(), shutdown.clone());
        tokio::spawn(async move {
            match permit {
                Some(_permit) => {
                    broker.metrics().native_connections.inc();
                    let (read_half, write_half) = socket.into_split();
                    let framing = connection::Framing::LengthPrefixed;
                    connection::run(read_half, write_half, peer, framing, broker, limits, shutdown).await
                }
                None => connection::refuse_too_many(socket, peer, limits.max_connections).await,
            }
        });
    }
    // Connections see the same shutdown signal: they answer what is in
    // flight and close. Wait for them (bounded), so their acknowledgements
    // go out before the log closes.
    let all = limits.max_connections as u32;
    if tokio::time::timeout(std::time::Duration::from_secs(10), permits.acquire_many(all)).await.is_err() {
        tracing::warn!("some connections did not close within 10 s");
    }
    tracing::info!("native listener stopped");
}

/// Binds the native protocol's address and logs the address it got (port 0
/// picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "native protocol listening");
    Ok(listener)
}
