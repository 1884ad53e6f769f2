//! The MQTT listener: Cairn as an MQTT 3.1.1 and 5 broker whose messages
//! live in the log.
//!
//! listener (this file) → connection (`connection.rs`: one client's
//! packet loop, after the CONNECT read in `handshake.rs` and the client
//! authenticated in `access.rs`; its session's state in `session.rs`, inbound PUBLISH in
//! `publish.rs`, subscriptions in `subscribe.rs`, messages out in
//! `delivery.rs`, shared subscriptions dealt among their members in
//! `shared.rs` and `dealt.rs`, stored sessions in `persist.rs`, the packets it writes in
//! `writer.rs`, records in `records.rs`) → broker / log. Packets are read
//! and written by `cairn_proto::mqtt` (on rumqttc's codecs), known here as
//! `codec`; how MQTT topics map
//! to Cairn topics and keys is in `topics.rs`.
//!
//! What differs from an ordinary broker: a QoS 1/2 PUBLISH is acknowledged
//! only once its record is durably committed, and subscribers are fed from
//! the log, so a persistent session resumes where it left off, even after a
//! hub restart, and records produced over the native protocol reach MQTT
//! subscribers too.

// The MQTT packet codec is part of the wire format, in `cairn-proto`.
use cairn_proto::mqtt as codec;
mod access;
mod connection;
mod dealt;
mod delivery;
mod handshake;
pub mod mapping;
mod persist;
mod properties;
mod publish;
mod records;
mod retained;
mod session;
mod shared;
pub mod status;
mod subscribe;
mod sweep;
mod sys;
mod tail;
#[cfg(test)]
mod testing;
pub mod topics;
mod websocket;
mod writer;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use self::handshake::Admission;
use super::accept::Acceptor;
use super::tls::Tls;
use super::Shutdown;
use crate::broker::Broker;

/// MQTT settings (`[mqtt]` in the config file).
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Largest packet accepted; a larger one closes the connection.
    pub max_packet_bytes: usize,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most subscriptions (filters) one session may hold; more are refused
    /// in SUBACK (MQTT 5: 0x97 quota exceeded).
    pub max_subscriptions: usize,
    /// Longest keep-alive a client may use (seconds). MQTT 5 clients asking
    /// for none or a longer one are told this one in CONNACK; 3.1.1 clients
    /// asking for a longer one are refused.
    pub max_keep_alive_secs: u16,
    /// QoS 1 messages in flight to one subscriber (MQTT 5 clients may ask
    /// for fewer with receive maximum).
    pub max_inflight: u16,
    /// Most retained messages; a new retained topic past it is refused
    /// (MQTT 5: 0x97 quota exceeded; 3.1.1: published, not retained).
    pub max_retained_messages: usize,
    /// Most bytes (topics and payloads) of retained messages, likewise.
    pub max_retained_bytes: usize,
    /// Most stored persistent sessions; a new one past it is refused in
    /// CONNACK (MQTT 5: 0x97; 3.1.1: 3 server unavailable).
    pub max_sessions: usize,
    /// Most messages waiting for a persistent session whose client is
    /// away, per partition it reads; the oldest are skipped past it. 0: no
    /// limit (the topic's retention bounds them).
    pub max_queued_messages: u64,
    /// Partitions of Cairn topics created by an MQTT publish or subscribe.
    pub topic_partitions: u32,
    /// How often `$SYS/broker/…` statistics go to their subscribers
    /// (seconds); 0: no `$SYS` topics.
    pub sys_interval_secs: u32,
    /// Rules choosing the Cairn topic and key of a published message.
    pub mapping: mapping::Mapping,
    /// Longest a write to a client may wait for it to read (seconds); a
    /// client that reads nothing for that long is disconnected rather than
    /// holding its queue, and the hub's memory, forever.
    pub write_timeout_secs: u32,
    /// MQTT 5 Response Information for clients that ask for it, `%c`
    /// standing for the client id (e.g. `reply/%c`); empty: none sent.
    pub response_information: String,
    /// The Receive Maximum of CONNACK: QoS 1/2 PUBLISHes an MQTT 5 client
    /// may have sent and not had answered (PUBACK, or for QoS 2 PUBCOMP).
    /// Past it the client is disconnected (0x93). It bounds what one
    /// client holds in the hub (QoS 2 ids awaiting PUBREL among them)
    /// while leaving room for many messages per commit.
    pub receive_maximum: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_bytes: 1024 * 1024,
            max_connections: 10_000,
            max_subscriptions: 100,
            max_keep_alive_secs: u16::MAX,
            max_inflight: 64,
            max_retained_messages: 100_000,
            max_retained_bytes: 64 * 1024 * 1024,
            max_sessions: 100_000,
            max_queued_messages: 0,
            topic_partitions: 1,
            sys_interval_secs: 10,
            mapping: mapping::Mapping::default(),
            write_timeout_secs: 30,
            response_information: String::new(),
            receive_maximum: 1024,
        }
    }
}

/// What outlives one connection of a client id.
#[derive(Default)]
struct Slot {
    /// Closes the connection currently using this client id (takeover).
    kick: Option<(u64, oneshot::Sender<()>)>,
    /// The connection using it now, as the status page and `$SYS` see it.
    client: Option<Arc<status::ClientStatus>>,
    /// The principal of the connection using it (only it may take over).
    owner: Option<String>,
    /// QoS 2 packet ids stored and not yet released by PUBREL: a
    /// retransmitted PUBLISH with one of these is not stored again.
    awaiting_release: HashSet<u16>,
    /// QoS 2 packet ids whose message could not be stored (a full disk)
    /// and was refused: the session, which took the id as held when the
    /// message arrived, must not store it as held (after a restart, a new
    /// message reusing the id would be taken for a retransmission).
    refused_qos2: HashSet<u16>,
    /// A will waiting out its delay interval: send `true` to publish it
    /// now, `false` to cancel it (the session was resumed).
    pending_will: Option<oneshot::Sender<bool>>,
}

/// State shared by all MQTT connections.
pub(crate) struct Server {
    broker: Broker,
    config: MqttConfig,
    slots: Mutex<HashMap<String, Slot>>,
    next_connection: std::sync::atomic::AtomicU64,
    /// Every stored persistent session (mirrors `__mqtt_sessions`).
    sessions: persist::Sessions,
    /// The retained messages (mirrors `__mqtt_retained`).
    retained: Mutex<retained::Retained>,
    /// When the MQTT side started (`$SYS/broker/uptime`).
    started: std::time::Instant,
    /// The members of shared subscription groups, to deal messages among.
    shared: shared::Members,
    /// The partitions' ends, where subscribers that read everything wait.
    tails: tail::Tails,
    /// Bridges' last reported status by topic (`topics::bridge_state`),
    /// shown under `$SYS`; in memory only.
    bridge_states: Mutex<std::collections::BTreeMap<String, String>>,
}

/// Most bridge status topics kept, and the most bytes of each status kept
/// (a status is "0" or "1"; the bounds are for clients that would send
/// many, or large ones).
const MAX_BRIDGE_STATES: usize = 1000;
const MAX_BRIDGE_STATE_BYTES: usize = 64;

impl Server {
    /// The shared state, with the stored sessions read from the log.
    fn new(broker: Broker, config: MqttConfig) -> Server {
        Server {
            sessions: persist::Sessions::load(&broker),
            broker,
            config,
            slots: Mutex::new(HashMap::new()),
            next_connection: Default::default(),
            retained: Mutex::default(),
            started: std::time::Instant::now(),
            bridge_states: Mutex::default(),
            shared: shared::Members::default(),
            tails: tail::Tails::default(),
        }
    }

    /// Keeps a bridge's status message (an empty one clears it, as for a
    /// retained message).
    fn note_bridge_state(&self, topic: &str, payload: &[u8]) {
        let mut states = self.bridge_states.lock().unwrap_or_else(|e| e.into_inner());
        if payload.is_empty() {
            states.remove(topic);
        } else if states.len() < MAX_BRIDGE_STATES || states.contains_key(topic) {
            let state = &payload[..payload.len().min(MAX_BRIDGE_STATE_BYTES)];
            states.insert(topic.to_string(), String::from_utf8_lossy(state).into_owned());
        } else {
            tracing::warn!(topic, max = MAX_BRIDGE_STATES, "bridge status not kept: too many bridge status topics");
        }
    }

    fn retain_limits(&self) -> retained::RetainLimits {
        let c = &self.config;
        retained::RetainLimits { max_messages: c.max_retained_messages, max_bytes: c.max_retained_bytes }
    }
}

/// Binds the MQTT address and logs the address it got.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "MQTT").await
}

/// Binds a TLS listener's address and logs the address it got.
pub async fn bind_tls(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "MQTT over TLS").await
}

/// Binds an MQTT-over-WebSocket listener's address and logs it.
pub async fn bind_ws(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "MQTT over WebSocket").await
}

/// Binds an MQTT-over-secure-WebSocket (`wss://`) listener's address and logs it.
pub async fn bind_wss(addr: SocketAddr) -> std::io::Result<TcpListener> {
    super::accept::bind(addr, "MQTT over secure WebSocket").await
}

/// How a listener's connections carry MQTT.
#[derive(Clone)]
pub enum Transport {
    Tcp,
    /// TLS first; a verified client certificate names the principal.
    Tls(Arc<Tls>),
    /// A WebSocket handshake first (`ws://`).
    WebSocket,
    /// TLS, then a WebSocket handshake (`wss://`).
    SecureWebSocket(Arc<Tls>),
}

/// The MQTT side of the hub (sessions, retained messages, mapping rules),
/// shared by its listeners and by publishers inside the hub: an uplink
/// bringing messages down from an upstream broker.
#[derive(Clone)]
pub struct MqttHub(Arc<Server>);

impl MqttHub {
    /// The shared state, with the stored sessions read from the log.
    pub fn new(broker: Broker, config: MqttConfig) -> MqttHub {
        MqttHub(Arc::new(Server::new(broker, config)))
    }

    /// Stores a QoS 1 message to `mqtt_topic` as a local client's PUBLISH
    /// would be (mapping rules apply, subscribers receive it); returns once
    /// it is committed.
    pub async fn publish(&self, mqtt_topic: &str, payload: &[u8]) -> Result<(), String> {
        let properties = properties::MessageProperties::default();
        let appends = publish::publish(
            &self.0,
            mqtt_topic,
            payload,
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            false,
            &properties,
            None,
        )
        .await
        .map_err(|e| match e {
            publish::PublishError::Topic(e) => e.to_string(),
            publish::PublishError::Log(e) => e.to_string(),
            publish::PublishError::RetainedQuota => "retained message quota reached".to_string(),
        })?;
        for append in appends {
            append.outcome().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// One connection's task, whatever its transport.
type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves MQTT on `listeners` (sharing sessions and the connection limit)
/// until shutdown, each with its transport.
pub async fn serve(listeners: Vec<(TcpListener, Transport)>, hub: MqttHub, shutdown: Shutdown) {
    let server = hub.0;
    let acceptor = Acceptor::new("MQTT", server.config.max_connections);
    let sweeper = tokio::spawn(sweep::run(server.clone(), shutdown.clone()));
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(listener, transport)| {
            let (acceptor, server, shutdown) = (acceptor.clone(), server.clone(), shutdown.clone());
            tokio::spawn(async move {
                // Each transport's connection is boxed on its own: a task
                // keeps room for the largest future it could be, and the TLS
                // and WebSocket handshakes are far larger than a plain TCP
                // connection, which would otherwise pay for them.
                let serve_as = |socket: TcpStream, peer: SocketAddr, admission: Admission| -> Connection {
                    let (server, shutdown) = (server.clone(), shutdown.clone());
                    match transport.clone() {
                        Transport::Tcp => Box::pin(connection::run(server, socket, None, peer, admission, shutdown)),
                        Transport::Tls(tls) => Box::pin(async move {
                            match tls.accept(socket).await {
                                Ok((stream, name)) => {
                                    connection::run(server, stream, name, peer, admission, shutdown).await
                                }
                                Err(err) => tracing::info!(%peer, error = %err, "MQTT TLS handshake failed"),
                            }
                        }),
                        Transport::WebSocket => Box::pin(async move {
                            match websocket::accept(socket).await {
                                Ok(stream) => connection::run(server, stream, None, peer, admission, shutdown).await,
                                Err(err) => tracing::info!(%peer, error = %err, "MQTT WebSocket handshake failed"),
                            }
                        }),
                        Transport::SecureWebSocket(tls) => Box::pin(async move {
                            let (stream, name) = match tls.accept(socket).await {
                                Ok(secure) => secure,
                                Err(err) => {
                                    return tracing::info!(%peer, error = %err, "MQTT wss:// TLS handshake failed")
                                }
                            };
                            match websocket::accept(stream).await {
                                Ok(stream) => connection::run(server, stream, name, peer, admission, shutdown).await,
                                Err(err) => {
                                    tracing::info!(%peer, error = %err, "MQTT wss:// WebSocket handshake failed")
                                }
                            }
                        }),
                    }
                };
                let serve = |socket, peer| serve_as(socket, peer, Admission::Admitted);
                // Over the limit, a connection is read up to its CONNECT and
                // answered "server busy" (the acceptor bounds how many at
                // once; past that they close at once, as in Mosquitto).
                let refuse = |socket, peer| serve_as(socket, peer, Admission::OverLimit);
                acceptor.run(listener, shutdown.clone(), serve, refuse).await
            })
        })
        .collect();
    for task in accepting {
        let _ = task.await;
    }
    acceptor.drain().await;
    let _ = sweeper.await;
}
