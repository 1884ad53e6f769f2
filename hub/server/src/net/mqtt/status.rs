//! What the MQTT side reports about itself: the clients connected now (for
//! the status page) and the totals behind `/metrics` and `$SYS`.
//!
//! Each connected client's slot holds a [`ClientStatus`] that its session
//! keeps up to date (one relaxed store when its in-flight count changes), so
//! a look costs one pass over the slots and nothing on the message path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::codec::{Subscription, Version};
use super::{MqttHub, Server};

/// A subscription's filters (with the QoS granted and their options),
/// shared with its feeders.
pub(super) type Filters = Arc<std::sync::RwLock<Vec<Subscription>>>;

/// A connected client, as its slot holds it while the connection lasts.
pub(super) struct ClientStatus {
    pub(super) peer: SocketAddr,
    pub(super) version: Version,
    pub(super) connected_ms: i64,
    /// The session's own subscriptions (shared ones are not counted).
    pub(super) filters: Filters,
    /// Deliveries awaiting the client's acknowledgement.
    pub(super) in_flight: AtomicUsize,
}

impl ClientStatus {
    pub(super) fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n, Ordering::Relaxed);
    }
}

/// A connected MQTT client, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttClient {
    pub client_id: String,
    pub peer: SocketAddr,
    /// `3.1.1` or `5`.
    pub version: &'static str,
    /// When it connected (the hub's clock, ms since the epoch).
    pub connected_ms: i64,
    pub subscriptions: usize,
    pub in_flight: usize,
}

/// The MQTT side's totals now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttTotals {
    pub connected: usize,
    /// Subscriptions (filters) held by connected clients.
    pub subscriptions: usize,
    /// Deliveries to connected clients awaiting acknowledgement.
    pub in_flight: usize,
    /// Persistent sessions stored (connected or not).
    pub sessions_stored: usize,
    /// Those whose client is away.
    pub sessions_away: usize,
    pub retained_messages: usize,
    /// Topic and payload bytes of the retained messages.
    pub retained_bytes: usize,
}

impl MqttHub {
    /// The clients connected now, by client id.
    pub fn clients(&self) -> Vec<MqttClient> {
        let mut out: Vec<MqttClient> = {
            let slots = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .iter()
                .filter_map(|(id, slot)| {
                    let c = slot.client.as_ref()?;
                    Some(MqttClient {
                        client_id: id.clone(),
                        peer: c.peer,
                        version: match c.version {
                            Version::V311 => "3.1.1",
                            Version::V5 => "5",
                        },
                        connected_ms: c.connected_ms,
                        subscriptions: c.filters.read().unwrap_or_else(|e| e.into_inner()).len(),
                        in_flight: c.in_flight.load(Ordering::Relaxed),
                    })
                })
                .collect()
        };
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Connections, subscriptions, in-flight deliveries, stored sessions
    /// and retained messages now.
    pub fn totals(&self) -> MqttTotals {
        totals(&self.0)
    }
}

pub(super) fn totals(server: &Server) -> MqttTotals {
    let mut t = MqttTotals::default();
    {
        let slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
        for c in slots.values().filter_map(|s| s.client.as_ref()) {
            t.connected += 1;
            t.subscriptions += c.filters.read().unwrap_or_else(|e| e.into_inner()).len();
            t.in_flight += c.in_flight.load(Ordering::Relaxed);
        }
    }
    t.sessions_stored = server.sessions.len();
    t.sessions_away = server.sessions.away_count();
    let mut retained = server.retained.lock().unwrap_or_else(|e| e.into_inner());
    retained.sync(server.broker.log());
    (t.retained_messages, t.retained_bytes) = retained.totals();
    t
}

/// A new status for the connection now taking a client id over.
pub(super) fn new_status(peer: SocketAddr, version: Version, now_ms: i64) -> Arc<ClientStatus> {
    Arc::new(ClientStatus {
        peer,
        version,
        connected_ms: now_ms,
        filters: Filters::default(),
        in_flight: AtomicUsize::new(0),
    })
}
