//! Network listeners: each turns a protocol into broker calls: the native
//! protocol over TCP, the same protocol over serial lines, and MQTT. All
//! TCP listeners share one accept loop (`accept`: limit, shutdown, logs);
//! the native and MQTT ones may speak TLS (`tls`).

mod accept;
pub mod mqtt;
pub mod native;
pub mod serial;
pub mod tls;

use tokio::sync::watch;

/// Tells every listener and connection that the hub is shutting down.
/// Cloned into each task; `is_shutdown` / `recv` as in mini-redis.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending side: `trigger` starts the shutdown.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new shutdown signal pair.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
