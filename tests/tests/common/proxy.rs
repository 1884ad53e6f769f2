//! A TCP proxy on 127.0.0.1 in front of an upstream port, for link faults
//! that are real on the wire:
//! - [`Proxy::cut_silently`]: every connection open at that moment stops
//!   forwarding in both directions without closing (no FIN, no RST: a
//!   cellular modem that dropped out); later connections work;
//! - [`Proxy::set_down`]: every connection is closed and new ones are
//!   refused (closed at once) until it is set up again: the upstream is
//!   unreachable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Connections born before the current generation are silent.
    generation: AtomicU64,
    down: AtomicBool,
}

impl Proxy {
    /// Listens on a free port (or `port`, when not 0) and forwards to `upstream`.
    pub async fn start(port: u16, upstream: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.down.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let born = shared.generation.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, shared.clone(), born));
                tokio::spawn(pipe(sr, cw, shared.clone(), born));
            }
        });
        Proxy { port, state }
    }

    pub fn cut_silently(&self) {
        self.state.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes or the proxy goes down; holds
/// both open and silent forever once the generation moved past `born`.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: Arc<State>, born: u64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = wait_down(&state) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.generation.load(Ordering::SeqCst) > born {
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if state.down.load(Ordering::SeqCst) || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn wait_down(state: &State) {
    while !state.down.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
