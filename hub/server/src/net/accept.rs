//! The one accept loop every TCP listener uses (native protocol, MQTT,
//! serial-over-TCP): a connection limit, shutdown, accept errors logged and
//! retried, and after shutdown a bounded wait for connections to finish, so
//! the acknowledgements they owe go out before the log closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Shutdown;

/// How long connections get to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept (out of file descriptors and the like), so a
/// persistent failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Connections past the limit being told why at once, at most (each holds
/// a socket, and for MQTT a CONNECT read); past that they are closed
/// without a word.
const MAX_REFUSING: usize = 64;

/// Accepts connections for one protocol, at most `limit` open at once across
/// all its listeners. Cheap to clone; clones share the limit.
#[derive(Clone)]
pub(crate) struct Acceptor {
    /// Names the protocol in logs ("native", "MQTT", "serial-over-TCP").
    name: &'static str,
    limit: usize,
    permits: Arc<Semaphore>,
    /// Refusals running (at most [`MAX_REFUSING`]).
    refusing: Arc<Semaphore>,
}

impl Acceptor {
    pub fn new(name: &'static str, limit: usize) -> Acceptor {
        Acceptor {
            name,
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// Accepts on `listener` until `shutdown` fires. Each connection runs in
    /// its own task, `serve(socket, peer)`, holding a permit until it ends;
    /// past the limit, `refuse(socket, peer)` runs instead (it may tell the
    /// client why before closing), at most [`MAX_REFUSING`] at once.
    pub async fn run<S, SF, R, RF>(&self, listener: TcpListener, mut shutdown: Shutdown, serve: S, refuse: R)
    where
        S: Fn(TcpStream, SocketAddr) -> SF,
        SF: Future<Output = ()> + Send + 'static,
        R: Fn(TcpStream, SocketAddr) -> RF,
        RF: Future<Output = ()> + Send + 'static,
    {
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::warn!(listener = self.name, error = %err, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                },
                _ = shutdown.recv() => break,
            };
            let _ = socket.set_nodelay(true);
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let connection = serve(socket, peer);
                    tokio::spawn(async move {
                        connection.await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(listener = self.name, %peer, limit = self.limit, "connection refused: too many connections");
                    // Dropped at once (closed) when too many are being told.
                    if let Ok(telling) = self.refusing.clone().try_acquire_owned() {
                        let refusal = refuse(socket, peer);
                        tokio::spawn(async move {
                            refusal.await;
                            drop(telling);
                        });
                    }
                }
            }
        }
    }

    /// After shutdown: waits until every connection has ended, at most
    /// [`DRAIN_TIMEOUT`]. Connections watch the same shutdown signal: they
    /// answer what is in flight and close.
    pub async fn drain(&self) {
        let all = u32::try_from(self.limit).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN_TIMEOUT, self.permits.acquire_many(all)).await.is_err() {
            tracing::warn!(listener = self.name, "some connections did not close within {DRAIN_TIMEOUT:?}");
        }
        tracing::info!(listener = self.name, "listener stopped");
    }
}

/// Binds `addr` and logs the address it got (port 0 picks a free one).
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    Ok(listener)
}
