//! Serial ingest: devices that speak the native protocol over a UART.
//!
//! Two ways in, one protocol (COBS + CRC frames, `cairn_proto::serial`):
//! - a serial device of the gateway (`/dev/ttyUSB0` at a baud rate), opened
//!   again whenever it goes away (a USB adapter unplugged);
//! - a TCP port where each connection is one serial line: what QEMU's
//!   `-serial tcp:` and ser2net connect to.
//!
//! Each line is served by the native protocol's connection code with serial
//! framing; acknowledgements go back on the same line.
//!
//! A serial line does not authenticate: whoever can reach the wire has
//! physical access. It acts as a configured principal (`serial` unless set)
//! that ACL rules grant to like any other, so a line is not a free pass to
//! administer the hub.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_serial::SerialPortBuilderExt;

use super::accept::Acceptor;
use super::native::connection::{self, Framing};
use super::native::handler::access::Identity;
use super::native::NativeLimits;
use super::Shutdown;
use crate::auth::Principal;
use crate::broker::Broker;

/// The principal serial lines act as unless configured otherwise.
pub const DEFAULT_PRINCIPAL: &str = "serial";

pub use cairn_proto::serial::MAX_SERIAL_FRAME;

/// Where a serial device is and how fast it talks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialDevice {
    pub path: PathBuf,
    pub baud: u32,
}

fn framing(broker: &Broker) -> Framing {
    Framing::Serial { max_frame: MAX_SERIAL_FRAME, metrics: broker.metrics().clone() }
}

/// Binds the serial-over-TCP port and logs the address it got.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "serial-over-TCP").await
}

/// Serves each TCP connection as one serial line until shutdown (at most
/// `limits.max_connections` lines at once).
pub async fn serve_tcp(
    listener: TcpListener,
    principal: Principal,
    broker: Broker,
    limits: NativeLimits,
    shutdown: Shutdown,
) {
    let acceptor = Acceptor::new("serial-over-TCP", limits.max_connections);
    let limits = Arc::new(limits);
    let serve = |socket: TcpStream, peer: SocketAddr| {
        broker.metrics().serial_links.inc();
        tracing::info!(%peer, "serial line connected over TCP");
        let (read_half, write_half) = socket.into_split();
        connection::run(
            read_half,
            write_half,
            format!("serial-tcp {peer}"),
            framing(&broker),
            Identity::Fixed(principal.clone()),
            broker.clone(),
            limits.clone(),
            shutdown.clone(),
        )
    };
    let refuse = |_socket, _peer| async {};
    acceptor.run(listener, shutdown.clone(), serve, refuse).await;
    acceptor.drain().await;
}

/// Serves a serial device until shutdown, reopening it (every second) when
/// it cannot be opened or goes away.
pub async fn serve_device(
    device: SerialDevice,
    principal: Principal,
    broker: Broker,
    limits: NativeLimits,
    mut shutdown: Shutdown,
) {
    let limits = Arc::new(limits);
    let mut warned = false;
    while !shutdown.is_shutdown() {
        match tokio_serial::new(device.path.to_string_lossy(), device.baud).open_native_async() {
            Ok(port) => {
                warned = false;
                broker.metrics().serial_links.inc();
                tracing::info!(path = %device.path.display(), baud = device.baud, "serial device open");
                let (read_half, write_half) = tokio::io::split(port);
                let peer = format!("serial {}", device.path.display());
                connection::run(
                    read_half,
                    write_half,
                    peer,
                    framing(&broker),
                    Identity::Fixed(principal.clone()),
                    broker.clone(),
                    limits.clone(),
                    shutdown.clone(),
                )
                .await;
                tracing::info!(path = %device.path.display(), "serial device closed");
            }
            Err(err) if !warned => {
                tracing::warn!(path = %device.path.display(), error = %err, "cannot open serial device; retrying every second");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.recv() => {}
        }
    }
}
