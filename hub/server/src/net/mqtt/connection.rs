//! One MQTT client connection: CONNECT, then its packets in and the
//! messages of its subscriptions out, until it disconnects or breaks.
//!
//! Tasks of one connection:
//! - this task reads packets and acts on them, and hands deliveries to the
//!   writer while fewer than the in-flight limit wait for a PUBACK;
//! - the writer task writes packets in order, waiting for the durable
//!   commit of a PUBLISH before its PUBACK / PUBREC;
//! - one feeder task per subscribed (Cairn topic, partition) long-polls the
//!   log and passes on records matching the session's filters; a shared
//!   subscription (`$share/<group>/<filter>`) has feeders only for the
//!   partitions the consumer group assigns to this session.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_proto::BatchWriter;
use rumqttc::mqttbytes::QoS;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::codec::{self, CodecError, Connect, DisconnectReason, Incoming, Outgoing, Refusal, Version, Will};
use super::mapping::{Route, TopicsRead};
use super::topics::{self, RETAINED_TOPIC, SESSIONS_TOPIC};
use super::{Server, Slot};
use crate::broker::{Broker, GroupError};
use crate::net::Shutdown;
use cairn_log::{CleanupPolicy, LogError, PendingAppend, TopicConfig};

/// How long a client has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest read of one feeder's fetch.
const FEED_BYTES: usize = 256 * 1024;
/// How often acknowledged positions of a persistent session are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How often a session looks for topics and partitions created since it
/// subscribed, and heartbeats the consumer groups of its shared
/// subscriptions (a rebalance reaches it within this).
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Session timeout of a shared subscription's group membership. A
/// connection that ends leaves at once; this only covers a stuck one.
const SHARED_SESSION: Duration = Duration::from_secs(10);

/// What the writer task writes.
enum Out {
    Packet(Outgoing),
    /// Written once the appends are durable; on a failed append the
    /// connection closes instead, so the client sends the message again.
    /// `release` marks a QoS 2 packet id as stored.
    AfterCommit {
        appends: Vec<PendingAppend>,
        packets: Vec<Outgoing>,
        release: Option<u16>,
    },
}

/// A record on its way to the subscriber.
struct Delivery {
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    /// Where it came from, for committing the position once it is acknowledged.
    source: Option<Source>,
}

/// Whose filters a feeder serves: the session's own, or those of one of its
/// shared subscriptions (by consumer group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sub {
    Own,
    Shared(String),
}

/// A feeder's partition of a subscription.
type FeedKey = (Sub, String, u32);

/// Where a delivered record came from.
#[derive(Debug, Clone)]
struct Source {
    feed: FeedKey,
    offset: u64,
}

/// A session's membership in the consumer group of its `$share/<group>/…`
/// subscriptions.
struct SharedSub {
    filters: Filters,
    member_id: Option<String>,
    generation: u32,
    /// The Cairn topics it joined with.
    topics: Vec<String>,
}

/// Why the connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// DISCONNECT: no will.
    Clean,
    /// Anything else: the will is published.
    Abnormal,
}

/// A subscription's filters, shared with its feeders: (filter, granted QoS).
type Filters = Arc<RwLock<Vec<(String, QoS)>>>;

pub(super) async fn run(server: Arc<Server>, socket: TcpStream, peer: SocketAddr, mut shutdown: Shutdown) {
    let (mut reader, mut writer) = socket.into_split();
    let limit = server.config.max_packet_bytes;
    let mut buf = BytesMut::with_capacity(4096);
    let connect = tokio::select! {
        c = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut reader, &mut buf, limit)) => c,
        _ = shutdown.recv() => return,
    };
    let (version, connect) = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(CodecError::UnsupportedVersion(level))) => {
            tracing::info!(%peer, level, "MQTT CONNECT with an unsupported protocol level");
            // CONNACK "unacceptable protocol version" in 3.1.1 form.
            let _ = writer.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return;
        }
        Ok(Err(err)) => {
            tracing::info!(%peer, error = %err, "MQTT connection closed before CONNECT");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "MQTT client sent no CONNECT within 10 s");
            return;
        }
    };
    let mut session = match Session::open(server.clone(), version, connect, peer).await {
        Ok(s) => s,
        Err(refusal) => {
            let mut out = BytesMut::new();
            codec::write(
                version,
                Outgoing::ConnAck { session_present: false, refused: Some(refusal), receive_maximum: 0 },
                &mut out,
            );
            let _ = writer.write_all(&out).await;
            return;
        }
    };
    let (out_tx, out_rx) = mpsc::channel::<Out>(256);
    let writer_task = tokio::spawn(write_packets(writer, out_rx, version, server.clone(), session.client_id.clone()));
    session.out = Some(out_tx);
    session.start().await;
    let end = session.serve(&mut reader, &mut buf, &mut shutdown).await;
    session.close(end).await;
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
}

/// Reads until a whole CONNECT has arrived.
async fn read_connect(
    reader: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    limit: usize,
) -> Result<(Version, Connect), CodecError> {
    loop {
        if let Some(version) = codec::connect_version(buf)? {
            match codec::read(version, buf, limit)? {
                Some(Incoming::Connect(c)) => return Ok((version, c)),
                Some(_) => return Err(CodecError::NotConnect),
                None => {}
            }
        }
        let n = reader.read_buf(buf).await.map_err(|e| CodecError::Malformed(e.to_string()))?;
        if n == 0 {
            return Err(CodecError::Malformed("connection closed".into()));
        }
    }
}

/// One client's session while it is connected.
struct Session {
    server: Arc<Server>,
    version: Version,
    client_id: String,
    peer: SocketAddr,
    connection: u64,
    /// The session outlives the connection (persistent session).
    keep: bool,
    /// MQTT 5 session expiry in seconds (None: never, as in 3.1.1).
    expiry: Option<u32>,
    will: Option<Will>,
    keep_alive: Option<Duration>,
    max_inflight: usize,
    /// The session's own (not shared) subscriptions.
    filters: Filters,
    /// Shared subscriptions by consumer group.
    shared: HashMap<String, SharedSub>,
    /// The feeders running.
    feeding: HashMap<FeedKey, AbortHandle>,
    feeders: JoinSet<()>,
    deliveries_tx: mpsc::Sender<Delivery>,
    deliveries: mpsc::Receiver<Delivery>,
    /// Our QoS 1 publishes awaiting PUBACK: packet id → source.
    inflight: HashMap<u16, Option<Source>>,
    /// Per feeder, offsets in flight (the lowest is not yet committable).
    unacked: HashMap<FeedKey, BTreeSet<u64>>,
    /// Positions to commit at the next tick.
    to_commit: HashMap<FeedKey, u64>,
    /// QoS 2 packet ids stored and not yet released (persisted with a
    /// persistent session, so a retransmission after a hub restart is not
    /// stored twice either).
    qos2: BTreeSet<u16>,
    next_pkid: u16,
    kick: Option<oneshot::Receiver<()>>,
    out: Option<mpsc::Sender<Out>>,
    /// Subscriptions of the stored session being resumed.
    resumed_filters: Vec<(String, QoS)>,
    /// Some subscription reads every topic (its first level is a wildcard,
    /// or a rule may have stored its messages anywhere).
    reads_all: bool,
    session_present: bool,
}

impl Session {
    /// Checks the CONNECT, takes over the client id, and answers CONNACK.
    async fn open(server: Arc<Server>, version: Version, c: Connect, peer: SocketAddr) -> Result<Session, Refusal> {
        if !server.config.authenticate(c.username.as_deref(), c.password.as_deref()) {
            tracing::info!(%peer, client_id = %c.client_id, "MQTT CONNECT refused: bad username or password");
            return Err(Refusal::BadUserNamePassword);
        }
        let connection = server.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client_id = if c.client_id.is_empty() {
            if !c.clean {
                return Err(Refusal::ClientIdNotValid);
            }
            format!("cairn-auto-{connection}")
        } else {
            c.client_id.clone()
        };
        let (keep, expiry) = match version {
            Version::V311 => (!c.clean, None),
            Version::V5 => match c.session_expiry.unwrap_or(0) {
                0 => (false, None),
                u32::MAX => (true, None),
                secs => (true, Some(secs)),
            },
        };
        // Take the client id over: the connection using it now is closed.
        let (kick_tx, kick_rx) = oneshot::channel();
        {
            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(client_id.clone()).or_default();
            if let Some((_, old)) = slot.kick.replace((connection, kick_tx)) {
                let _ = old.send(());
            }
            if c.clean {
                slot.awaiting_release.clear();
            }
        }
        let stored = if c.clean { None } else { load_session(&server.broker, &client_id).await };
        let expired = stored.as_ref().is_some_and(StoredSession::expired);
        if expired {
            tracing::debug!(%client_id, "MQTT session expired while the client was away");
        }
        let stored = stored.filter(|_| !expired);
        if c.clean || expired {
            // A clean start (or an expired session) forgets what an earlier
            // session stored.
            let _ = save_session(&server.broker, &client_id, None).await;
        }
        let qos2: BTreeSet<u16> = {
            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(client_id.clone()).or_default();
            if let Some(stored) = &stored {
                // After a hub restart the slot is empty: the stored ids refill it.
                slot.awaiting_release.extend(stored.qos2.iter().copied());
            }
            slot.awaiting_release.iter().copied().collect()
        };
        let session_present = stored.is_some();
        let max_inflight = usize::from(c.receive_maximum.unwrap_or(u16::MAX).min(server.config.max_inflight).max(1));
        let (deliveries_tx, deliveries) = mpsc::channel(max_inflight.max(16));
        let keep_alive = (c.keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(c.keep_alive_secs) * 1500));
        tracing::debug!(%peer, %client_id, ?version, keep, session_present, "MQTT client connected");
        server.broker.metrics().mqtt_connections.inc();
        let session = Session {
            server,
            version,
            client_id,
            peer,
            connection,
            keep,
            expiry,
            will: c.will,
            keep_alive,
            max_inflight,
            filters: Arc::new(RwLock::new(Vec::new())),
            shared: HashMap::new(),
            feeding: HashMap::new(),
            feeders: JoinSet::new(),
            deliveries_tx,
            deliveries,
            inflight: HashMap::new(),
            unacked: HashMap::new(),
            to_commit: HashMap::new(),
            qos2,
            next_pkid: 1,
            kick: Some(kick_rx),
            out: None,
            resumed_filters: stored.map(|s| s.subscriptions()).unwrap_or_default(),
            reads_all: false,
            session_present,
        };
        Ok(session)
    }

    /// Answers CONNACK and resumes a stored session's subscriptions.
    async fn start(&mut self) {
        let receive_maximum = self.max_inflight as u16;
        let connack = Outgoing::ConnAck { session_present: self.session_present, refused: None, receive_maximum };
        self.send(Out::Packet(connack)).await;
        let resumed = std::mem::take(&mut self.resumed_filters);
        if !resumed.is_empty() {
            self.subscribe(resumed, true).await;
        }
    }

    async fn send(&self, out: Out) {
        if let Some(tx) = &self.out {
            let _ = tx.send(out).await;
        }
    }

    /// Reads and handles packets, and passes deliveries on, until the
    /// connection ends.
    async fn serve(
        &mut self,
        reader: &mut tokio::net::tcp::OwnedReadHalf,
        buf: &mut BytesMut,
        shutdown: &mut Shutdown,
    ) -> End {
        let limit = self.server.config.max_packet_bytes;
        let far = Duration::from_secs(365 * 24 * 3600);
        let mut deadline = Instant::now() + self.keep_alive.unwrap_or(far);
        let mut commit_tick = tokio::time::interval(COMMIT_EVERY);
        let mut refresh_tick = tokio::time::interval(REFRESH_EVERY);
        let mut kick = self.kick.take().expect("kick receiver set in open");
        // Packets that arrived with the CONNECT.
        if let Some(end) = self.handle_buffered(buf, limit).await {
            return end;
        }
        loop {
            let can_deliver = self.inflight.len() < self.max_inflight;
            tokio::select! {
                read = reader.read_buf(buf) => match read {
                    Ok(0) | Err(_) => return End::Abnormal,
                    Ok(_) => {
                        deadline = Instant::now() + self.keep_alive.unwrap_or(far);
                        if let Some(end) = self.handle_buffered(buf, limit).await {
                            return end;
                        }
                    }
                },
                Some(delivery) = self.deliveries.recv(), if can_deliver => self.deliver(delivery).await,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(peer = %self.peer, client_id = %self.client_id, "MQTT keep-alive timeout");
                    self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::KeepAliveTimeout))).await;
                    return End::Abnormal;
                }
                _ = &mut kick => {
                    tracing::info!(peer = %self.peer, client_id = %self.client_id, "MQTT session taken over by a new connection");
                    self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::SessionTakenOver))).await;
                    return End::Abnormal;
                }
                _ = shutdown.recv() => {
                    self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::ServerShuttingDown))).await;
                    return End::Clean;
                }
                _ = commit_tick.tick() => self.commit_positions().await,
                _ = refresh_tick.tick() => self.refresh().await,
            }
        }
    }

    /// Handles every whole packet in `buf`; `Some` ends the connection.
    async fn handle_buffered(&mut self, buf: &mut BytesMut, limit: usize) -> Option<End> {
        // Consecutive PUBLISHes (QoS 0/1, not retained) to one topic that
        // arrived together become one record batch: one append, one commit
        // slot, and their acknowledgements go out together after it.
        let mut run: Vec<(Bytes, QoS, u16)> = Vec::new();
        let mut run_topic = String::new();
        loop {
            let packet = codec::read(self.version, buf, limit);
            if let Ok(Some(Incoming::Publish { topic, payload, qos, retain: false, pkid })) = &packet {
                if *qos != QoS::ExactlyOnce && (run.is_empty() || *topic == run_topic) && run.len() < 1000 {
                    if run.is_empty() {
                        run_topic = topic.clone();
                    }
                    run.push((payload.clone(), *qos, *pkid));
                    continue;
                }
            }
            if !run.is_empty() {
                if let Some(end) = self.publish_run(&run_topic, std::mem::take(&mut run)).await {
                    return Some(end);
                }
                // The packet that ended the run is handled below; a
                // PUBLISH may start the next run.
                if let Ok(Some(Incoming::Publish { topic, payload, qos, retain: false, pkid })) = &packet {
                    if *qos != QoS::ExactlyOnce {
                        run_topic = topic.clone();
                        run.push((payload.clone(), *qos, *pkid));
                        continue;
                    }
                }
            }
            match packet {
                Ok(None) => return None,
                Ok(Some(packet)) => {
                    if let Some(end) = self.handle(packet).await {
                        return Some(end);
                    }
                }
                Err(err) => {
                    tracing::info!(peer = %self.peer, client_id = %self.client_id, error = %err, "MQTT protocol error; closing");
                    let reason = match err {
                        CodecError::TooLarge { .. } => DisconnectReason::PacketTooLarge,
                        _ => DisconnectReason::ProtocolError,
                    };
                    self.send(Out::Packet(Outgoing::Disconnect(reason))).await;
                    return Some(End::Abnormal);
                }
            }
        }
    }

    /// Stores a run of QoS 0/1 messages to one topic as one batch; PUBACKs
    /// for the QoS 1 ones after its commit.
    async fn publish_run(&mut self, topic: &str, run: Vec<(Bytes, QoS, u16)>) -> Option<End> {
        let metrics = self.server.broker.metrics();
        for _ in &run {
            metrics.mqtt_messages_in.inc();
        }
        let payloads: Vec<&[u8]> = run.iter().map(|(p, _, _)| p.as_ref()).collect();
        let appends = match publish_many(&self.server, topic, &payloads).await {
            Ok(appends) => appends,
            Err(PublishError::Topic(err)) => {
                tracing::info!(peer = %self.peer, client_id = %self.client_id, error = %err, "MQTT publish to an invalid topic; closing");
                self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::TopicNameInvalid))).await;
                return Some(End::Abnormal);
            }
            Err(PublishError::Log(err)) => {
                tracing::warn!(client_id = %self.client_id, error = %err, "MQTT publish could not be stored; closing so the client retries");
                return Some(End::Abnormal);
            }
        };
        let acks: Vec<Outgoing> = run
            .iter()
            .filter(|(_, qos, _)| *qos == QoS::AtLeastOnce)
            .map(|(_, _, pkid)| Outgoing::PubAck(*pkid))
            .collect();
        if !acks.is_empty() {
            self.send(Out::AfterCommit { appends, packets: acks, release: None }).await;
        }
        None
    }

    async fn handle(&mut self, packet: Incoming) -> Option<End> {
        match packet {
            Incoming::Connect(_) => {
                tracing::info!(peer = %self.peer, "second CONNECT on one connection; closing");
                self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::ProtocolError))).await;
                return Some(End::Abnormal);
            }
            Incoming::Publish { topic, payload, qos, retain, pkid } => {
                self.server.broker.metrics().mqtt_messages_in.inc();
                if qos == QoS::ExactlyOnce && self.stored_qos2(pkid) {
                    // A retransmission of a message already stored.
                    self.send(Out::Packet(Outgoing::PubRec(pkid))).await;
                    return None;
                }
                let mut appends = match publish(&self.server, &topic, &payload, retain).await {
                    Ok(appends) => appends,
                    Err(PublishError::Topic(err)) => {
                        tracing::info!(peer = %self.peer, client_id = %self.client_id, error = %err, "MQTT publish to an invalid topic; closing");
                        self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::TopicNameInvalid))).await;
                        return Some(End::Abnormal);
                    }
                    Err(PublishError::Log(err)) => {
                        tracing::warn!(client_id = %self.client_id, error = %err, "MQTT publish could not be stored; closing so the client retries");
                        return Some(End::Abnormal);
                    }
                };
                match qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        self.send(Out::AfterCommit { appends, packets: vec![Outgoing::PubAck(pkid)], release: None })
                            .await
                    }
                    QoS::ExactlyOnce => {
                        // A persistent session stores the packet id with the
                        // message (same wait before PUBREC), so a
                        // retransmission after a hub restart is recognised.
                        self.qos2.insert(pkid);
                        if self.keep {
                            if let Some(stored) = self.save_submit().await {
                                appends.push(stored);
                            }
                        }
                        self.send(Out::AfterCommit {
                            appends,
                            packets: vec![Outgoing::PubRec(pkid)],
                            release: Some(pkid),
                        })
                        .await
                    }
                }
            }
            Incoming::PubRel(pkid) => {
                self.with_slot(|slot| slot.awaiting_release.remove(&pkid));
                if self.qos2.remove(&pkid) && self.keep {
                    // Forgetting the id need not be waited for.
                    let _ = self.save_submit().await;
                }
                self.send(Out::Packet(Outgoing::PubComp(pkid))).await;
            }
            Incoming::PubAck(pkid) => self.acknowledged(pkid),
            // We publish at QoS 1 at most; these would answer a QoS 2 send.
            Incoming::PubRec(pkid) => self.send(Out::Packet(Outgoing::PubRel(pkid))).await,
            Incoming::PubComp => {}
            Incoming::Subscribe { pkid, filters } => {
                let mut granted = Vec::with_capacity(filters.len());
                let mut accepted = Vec::new();
                for (filter, qos) in filters {
                    let valid = topics::shared(&filter).is_some()
                        || (topics::valid_filter(&filter) && !filter.starts_with("$share"));
                    if valid {
                        let qos = if qos == QoS::AtMostOnce { qos } else { QoS::AtLeastOnce };
                        granted.push(Some(qos));
                        accepted.push((filter, qos));
                    } else {
                        granted.push(None);
                    }
                }
                self.send(Out::Packet(Outgoing::SubAck { pkid, granted })).await;
                self.subscribe(accepted, false).await;
            }
            Incoming::Unsubscribe { pkid, filters } => {
                {
                    let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
                    current.retain(|(f, _)| !filters.contains(f));
                }
                for filter in &filters {
                    if let Some((group, inner)) = topics::shared(filter) {
                        self.unsubscribe_shared(group, inner).await;
                    }
                }
                self.save().await;
                self.send(Out::Packet(Outgoing::UnsubAck { pkid, count: filters.len() })).await;
            }
            Incoming::PingReq => self.send(Out::Packet(Outgoing::PingResp)).await,
            Incoming::Disconnect => return Some(End::Clean),
        }
        None
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        let mut slots = self.server.slots.lock().unwrap_or_else(|e| e.into_inner());
        f(slots.entry(self.client_id.clone()).or_default())
    }

    fn stored_qos2(&self, pkid: u16) -> bool {
        self.with_slot(|slot| slot.awaiting_release.contains(&pkid))
    }

    /// Adds filters and starts feeders for their partitions (from the end,
    /// or from the committed position when resuming), and sends the
    /// retained messages they match (not when resuming, and not for shared
    /// subscriptions, as MQTT 5 says). A `$share/<group>/…` filter joins
    /// that consumer group; its feeders follow the group's assignment.
    async fn subscribe(&mut self, new: Vec<(String, QoS)>, resuming: bool) {
        if new.is_empty() {
            return;
        }
        let mut own = Vec::new();
        let mut groups = BTreeSet::new();
        for (filter, qos) in &new {
            match topics::shared(filter) {
                Some((group, inner)) => {
                    let sub = self.shared.entry(group.to_string()).or_insert_with(|| SharedSub {
                        filters: Arc::default(),
                        member_id: None,
                        generation: 0,
                        topics: Vec::new(),
                    });
                    let mut current = sub.filters.write().unwrap_or_else(|e| e.into_inner());
                    current.retain(|(f, _)| f != inner);
                    current.push((inner.to_string(), *qos));
                    groups.insert(group.to_string());
                }
                None => own.push((filter.clone(), *qos)),
            }
        }
        if !own.is_empty() {
            {
                let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
                for (filter, qos) in &own {
                    current.retain(|(f, _)| f != filter);
                    current.push((filter.clone(), *qos));
                }
            }
            self.feed_own(if resuming { Start::Committed } else { Start::End }).await;
        }
        for group in groups {
            self.follow_group(&group).await;
        }
        self.save().await;
        if !resuming {
            self.send_retained(&own).await;
        }
    }

    /// The Cairn topics `filters` read now: those named by the filter or a
    /// mapping rule (created when `create`), and every existing topic for a
    /// filter whose messages may be in any. The flag tells whether some
    /// filter reads any topic.
    async fn topics_of(&self, filters: &[(String, QoS)], create: bool) -> (BTreeSet<String>, bool) {
        let log = self.server.broker.log();
        let mut out = BTreeSet::new();
        let mut all = false;
        for (filter, _) in filters {
            match self.server.config.mapping.topics_for(filter) {
                TopicsRead::Named(names) => {
                    for topic in names {
                        if create {
                            let _ = ensure_topic(&self.server, &topic).await;
                        }
                        if log.partition_count(&topic).is_ok() {
                            out.insert(topic);
                        }
                    }
                }
                TopicsRead::All => all = true,
            }
        }
        if all {
            out.extend(
                log.list_topics().into_iter().map(|t| t.name).filter(|n| !n.starts_with(topics::INTERNAL_PREFIX)),
            );
        }
        (out, all)
    }

    /// Starts feeders for the own subscriptions' partitions that have none:
    /// at subscription, when resuming, and later for topics and partitions
    /// created since (from their beginning: all of it is newer than the
    /// subscription).
    async fn feed_own(&mut self, start: Start) {
        let filters = self.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (topics, all) = self.topics_of(&filters, start != Start::Beginning).await;
        self.reads_all = all;
        let log = self.server.broker.log().clone();
        let group = self.group();
        for topic in topics {
            let Ok(partitions) = log.partition_count(&topic) else { continue };
            let committed: HashMap<u32, u64> = if start == Start::Committed {
                log.committed_offsets(&group, &topic).unwrap_or_default().into_iter().collect()
            } else {
                HashMap::new()
            };
            let mut positions = Vec::new();
            for partition in 0..partitions {
                let key = (Sub::Own, topic.clone(), partition);
                if self.feeding.contains_key(&key) {
                    continue;
                }
                let Ok(offsets) = log.offsets(&topic, partition) else { continue };
                let position = match start {
                    Start::End => offsets.end,
                    Start::Beginning => offsets.start,
                    // Every partition a session fed has its start committed,
                    // so one without a commit appeared while it was away.
                    Start::Committed => committed.get(&partition).copied().unwrap_or(offsets.start),
                };
                positions.push((partition, position));
                self.spawn_feeder(key, position, self.filters.clone());
            }
            // A persistent session remembers where it starts, so messages
            // published while it is offline are delivered when it returns.
            if self.keep && !positions.is_empty() && start != Start::Committed {
                let _ = log.commit_offsets(&group, &topic, &positions).await;
            }
        }
    }

    fn spawn_feeder(&mut self, key: FeedKey, position: u64, filters: Filters) {
        let feeder = feed(self.server.broker.clone(), key.clone(), position, filters, self.deliveries_tx.clone());
        let handle = self.feeders.spawn(feeder);
        self.feeding.insert(key, handle);
    }

    /// Joins (or heartbeats) the consumer group of a shared subscription and
    /// follows its assignment: feeders for the partitions gained (from the
    /// group's committed offset), none for those lost.
    async fn follow_group(&mut self, group: &str) {
        let Some(sub) = self.shared.get(group) else { return };
        let filters = sub.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (member_id, known_topics) = (sub.member_id.clone(), sub.topics.clone());
        let (topics, _) = self.topics_of(&filters, member_id.is_none()).await;
        let topics: Vec<String> = topics.into_iter().collect();
        if topics.is_empty() {
            return; // nothing to read yet: the next refresh tries again
        }
        let server = self.server.clone();
        let coordinator = server.broker.groups();
        let membership = match &member_id {
            Some(id) if topics == known_topics => match coordinator.heartbeat(group, id) {
                Err(GroupError::UnknownMember { .. }) => None,
                other => Some(other),
            },
            _ => None,
        };
        let membership = match membership {
            Some(m) => m,
            None => {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                coordinator.join(group, member_id.as_deref(), &names, SHARED_SESSION)
            }
        };
        let membership = match membership {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(client_id = %self.client_id, group, error = %err, "MQTT shared subscription could not join its group");
                return;
            }
        };
        if let Some(sub) = self.shared.get_mut(group) {
            sub.member_id = Some(membership.member_id.clone());
            sub.generation = membership.generation;
            sub.topics = topics;
        }
        let kind = Sub::Shared(group.to_string());
        let assigned: HashSet<(String, u32)> = membership.assignment.into_iter().collect();
        let lost: Vec<FeedKey> =
            self.feeding.keys().filter(|k| k.0 == kind && !assigned.contains(&(k.1.clone(), k.2))).cloned().collect();
        for key in lost {
            self.stop_feeder(&key);
        }
        let Some(filters) = self.shared.get(group).map(|s| s.filters.clone()) else { return };
        let fence = (membership.member_id.as_str(), membership.generation);
        for (topic, partition) in assigned {
            let key = (kind.clone(), topic.clone(), partition);
            if self.feeding.contains_key(&key) {
                continue;
            }
            let committed = coordinator
                .committed(group, &topic)
                .ok()
                .and_then(|c| c.into_iter().find(|(p, _)| *p == partition).and_then(|(_, offset)| offset));
            let position = match committed {
                Some(offset) => offset,
                None => {
                    // A new group starts at the end; committing that start
                    // means a member taking the partition over later goes on
                    // from here, skipping nothing.
                    let end = self.server.broker.log().offsets(&topic, partition).map(|o| o.end).unwrap_or(0);
                    let _ = coordinator.commit(group, Some(fence), &topic, &[(partition, end)]).await;
                    end
                }
            };
            self.spawn_feeder(key, position, filters.clone());
        }
    }

    fn stop_feeder(&mut self, key: &FeedKey) {
        if let Some(handle) = self.feeding.remove(key) {
            handle.abort();
        }
        self.unacked.remove(key);
        self.to_commit.remove(key);
    }

    /// Removes a shared subscription's filter; without filters left, the
    /// session leaves the group (its partitions go to the other members).
    async fn unsubscribe_shared(&mut self, group: &str, filter: &str) {
        let Some(sub) = self.shared.get(group) else { return };
        let empty = {
            let mut current = sub.filters.write().unwrap_or_else(|e| e.into_inner());
            current.retain(|(f, _)| f != filter);
            current.is_empty()
        };
        if !empty {
            return;
        }
        self.commit_positions().await;
        self.leave_group(group);
    }

    fn leave_group(&mut self, group: &str) {
        let Some(sub) = self.shared.remove(group) else { return };
        let kind = Sub::Shared(group.to_string());
        let keys: Vec<FeedKey> = self.feeding.keys().filter(|k| k.0 == kind).cloned().collect();
        for key in keys {
            self.stop_feeder(&key);
        }
        if let Some(member) = sub.member_id {
            let _ = self.server.broker.groups().leave(group, &member);
        }
    }

    /// The periodic look: feeders for topics and partitions created since
    /// the subscriptions were made, and the shared subscriptions' groups
    /// heartbeated (following a rebalance).
    async fn refresh(&mut self) {
        while self.feeders.try_join_next().is_some() {}
        let has_own = !self.filters.read().unwrap_or_else(|e| e.into_inner()).is_empty();
        if has_own {
            self.feed_own(Start::Beginning).await;
        }
        if !self.shared.is_empty() {
            // Progress first, so a partition that moves away moves with it.
            self.commit_positions().await;
            let groups: Vec<String> = self.shared.keys().cloned().collect();
            for group in groups {
                self.follow_group(&group).await;
            }
        }
    }

    /// Sends the retained messages matching `filters`.
    async fn send_retained(&self, filters: &[(String, QoS)]) {
        let log = self.server.broker.log();
        if log.partition_count(RETAINED_TOPIC).is_err() {
            return;
        }
        let mut last: HashMap<String, Bytes> = HashMap::new();
        let mut offset = log.offsets(RETAINED_TOPIC, 0).map(|o| o.start).unwrap_or(0);
        while let Ok(fetch) = log.fetch(RETAINED_TOPIC, 0, offset, FEED_BYTES) {
            if fetch.batches.is_empty() {
                break;
            }
            for r in fetch.records() {
                if let Some(topic) = r.key.and_then(|k| std::str::from_utf8(k).ok()) {
                    last.insert(topic.to_string(), Bytes::copy_from_slice(r.value));
                }
            }
            offset = fetch.next_offset();
        }
        for (topic, payload) in last {
            if payload.is_empty() {
                continue; // an empty retained message clears the topic
            }
            let best = best_qos(filters.iter().filter(|(f, _)| topics::matches(f, &topic)).map(|(_, q)| *q));
            if let Some(qos) = best {
                let delivery = Delivery { topic, payload, qos, retain: true, source: None };
                let _ = self.deliveries_tx.send(delivery).await;
            }
        }
    }

    /// Sends one delivery to the client (a packet id for QoS 1).
    async fn deliver(&mut self, d: Delivery) {
        let pkid = if d.qos == QoS::AtMostOnce {
            0
        } else {
            let pkid = self.next_free_pkid();
            if let Some(source) = &d.source {
                self.unacked.entry(source.feed.clone()).or_default().insert(source.offset);
            }
            self.inflight.insert(pkid, d.source);
            pkid
        };
        self.server.broker.metrics().mqtt_messages_out.inc();
        let packet = Outgoing::Publish { topic: d.topic, payload: d.payload, qos: d.qos, retain: d.retain, pkid };
        self.send(Out::Packet(packet)).await;
    }

    fn next_free_pkid(&mut self) -> u16 {
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&pkid) {
                return pkid;
            }
        }
    }

    /// A PUBACK for one of our deliveries: its position may be committed.
    fn acknowledged(&mut self, pkid: u16) {
        let Some(Some(Source { feed, offset })) = self.inflight.remove(&pkid) else { return };
        let Some(pending) = self.unacked.get_mut(&feed) else { return };
        pending.remove(&offset);
        // Everything below the lowest unacknowledged offset is delivered.
        let committable = pending.first().copied().unwrap_or(offset + 1);
        // A clean session's own positions are not kept; a shared
        // subscription's are the group's, whatever the session.
        if self.keep || feed.0 != Sub::Own {
            let entry = self.to_commit.entry(feed).or_insert(0);
            *entry = (*entry).max(committable);
        }
    }

    async fn commit_positions(&mut self) {
        if self.to_commit.is_empty() {
            return;
        }
        let mut by_topic: HashMap<(Sub, String), Vec<(u32, u64)>> = HashMap::new();
        for ((sub, topic, partition), offset) in self.to_commit.drain() {
            by_topic.entry((sub, topic)).or_default().push((partition, offset));
        }
        for ((sub, topic), offsets) in by_topic {
            match sub {
                Sub::Own => {
                    let _ = self.server.broker.log().commit_offsets(&self.group(), &topic, &offsets).await;
                }
                Sub::Shared(group) => {
                    let Some(shared) = self.shared.get(&group) else { continue };
                    let Some(member) = shared.member_id.as_deref() else { continue };
                    let fence = Some((member, shared.generation));
                    // Refused after a rebalance took the partition away: its
                    // new owner goes on from the last accepted commit.
                    if let Err(err) = self.server.broker.groups().commit(&group, fence, &topic, &offsets).await {
                        tracing::debug!(client_id = %self.client_id, group, error = %err, "shared subscription commit refused");
                    }
                }
            }
        }
    }

    /// The consumer group holding a persistent session's positions.
    fn group(&self) -> String {
        format!("mqtt.{}", self.client_id)
    }

    /// What a persistent session stores: its subscriptions (shared ones as
    /// `$share/<group>/<filter>`), expiry, QoS 2 ids not yet released.
    fn stored(&self, left_at_ms: Option<i64>) -> StoredSession {
        let mut subscriptions: Vec<(String, u8)> =
            self.filters.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(f, q)| (f.clone(), *q as u8)).collect();
        for (group, sub) in &self.shared {
            for (f, q) in sub.filters.read().unwrap_or_else(|e| e.into_inner()).iter() {
                subscriptions.push((format!("$share/{group}/{f}"), *q as u8));
            }
        }
        StoredSession { subscriptions, expiry_secs: self.expiry, left_at_ms, qos2: self.qos2.iter().copied().collect() }
    }

    /// Stores a persistent session, waiting for the commit.
    async fn save(&self) {
        if self.keep {
            let _ = save_session(&self.server.broker, &self.client_id, Some(&self.stored(None))).await;
        }
    }

    /// Stores a persistent session without waiting; the append is returned
    /// for a caller that must wait for it.
    async fn save_submit(&self) -> Option<PendingAppend> {
        submit_session(&self.server.broker, &self.client_id, Some(&self.stored(None))).await.ok()
    }

    /// Ends the connection: the will on an abnormal end, positions
    /// committed, shared groups left, the session forgotten unless it is
    /// persistent (then its expiry counts from now).
    async fn close(&mut self, end: End) {
        if end == End::Abnormal {
            if let Some(will) = self.will.take() {
                tracing::debug!(client_id = %self.client_id, topic = %will.topic, "publishing will");
                if let Ok(appends) = publish(&self.server, &will.topic, &will.payload, will.retain).await {
                    for append in appends {
                        let _ = append.outcome().await;
                    }
                }
            }
        }
        self.feeders.abort_all();
        self.commit_positions().await;
        let groups: Vec<String> = self.shared.keys().cloned().collect();
        let mut stored = self.stored(Some(now_ms()));
        for group in groups {
            self.leave_group(&group);
        }
        // Leave the slot to a connection that took it over; only the last
        // connection of a client id records when the client left.
        let connection = self.connection;
        let last = self.with_slot(|slot| {
            let last = slot.kick.as_ref().is_some_and(|(c, _)| *c == connection);
            if last {
                slot.kick = None;
                if !self.keep {
                    slot.awaiting_release.clear();
                }
            }
            last
        });
        if last && self.keep {
            stored.qos2 = self.with_slot(|slot| slot.awaiting_release.iter().copied().collect());
            let _ = save_session(&self.server.broker, &self.client_id, Some(&stored)).await;
        } else if last && self.session_present {
            // A resumed session with expiry 0 ends with its connection.
            let _ = save_session(&self.server.broker, &self.client_id, None).await;
        }
        self.out = None;
        tracing::debug!(peer = %self.peer, client_id = %self.client_id, ?end, "MQTT client disconnected");
    }
}

/// The highest of some QoS levels (a message matching several filters of
/// one session is delivered once, at the best of them).
fn best_qos(levels: impl Iterator<Item = QoS>) -> Option<QoS> {
    levels.max_by_key(|q| *q as u8)
}

/// Why a PUBLISH could not be stored.
enum PublishError {
    Topic(topics::TopicError),
    Log(LogError),
}

/// Submits an MQTT message as a record of its Cairn topic (and the retained
/// store when `retain`); returns the appends to wait for.
async fn publish(
    server: &Server,
    mqtt_topic: &str,
    payload: &[u8],
    retain: bool,
) -> Result<Vec<PendingAppend>, PublishError> {
    let route = server.config.mapping.route(mqtt_topic).map_err(PublishError::Topic)?;
    let batch = message_batch(&route, mqtt_topic, &[payload]);
    let mut appends = Vec::with_capacity(2);
    appends.push(produce(server, &route.topic, batch).await?);
    if retain {
        // The retained store is keyed by the MQTT topic itself.
        ensure_retained_topic(server).await.map_err(PublishError::Log)?;
        let batch = single_record(mqtt_topic, payload);
        let (_, pending) =
            server.broker.produce_batch(RETAINED_TOPIC, Some(0), batch).await.map_err(PublishError::Log)?;
        appends.push(pending);
    }
    Ok(appends)
}

/// Submits several messages to one MQTT topic as one batch.
async fn publish_many(
    server: &Server,
    mqtt_topic: &str,
    payloads: &[&[u8]],
) -> Result<Vec<PendingAppend>, PublishError> {
    let route = server.config.mapping.route(mqtt_topic).map_err(PublishError::Topic)?;
    let batch = message_batch(&route, mqtt_topic, payloads);
    Ok(vec![produce(server, &route.topic, batch).await?])
}

/// Messages to one MQTT topic as one batch of records: key from the route,
/// and the MQTT topic in a header when a mapping rule chose topic and key.
fn message_batch(route: &Route, mqtt_topic: &str, payloads: &[&[u8]]) -> Vec<u8> {
    let now = now_ms();
    let header = [(topics::TOPIC_HEADER, mqtt_topic.as_bytes())];
    let headers: &[(&str, &[u8])] = if route.mapped { &header } else { &[] };
    let size: usize = payloads.iter().map(|p| p.len() + route.key.len() + 2 * mqtt_topic.len() + 32).sum();
    let mut writer = BatchWriter::new(Vec::with_capacity(size + 64)).expect("a Vec grows");
    for payload in payloads {
        let _ = writer.push_parts(Some(route.key.as_bytes()), payload, now, headers.iter().copied());
    }
    writer.finish().unwrap_or_default()
}

/// Submits a batch to a Cairn topic, creating the topic on first use.
async fn produce(server: &Server, topic: &str, batch: Vec<u8>) -> Result<PendingAppend, PublishError> {
    let submitted = match server.broker.produce_batch(topic, None, batch.clone()).await {
        Err(LogError::UnknownTopic(_)) => {
            ensure_topic(server, topic).await.map_err(PublishError::Log)?;
            server.broker.produce_batch(topic, None, batch).await
        }
        other => other,
    };
    Ok(submitted.map_err(PublishError::Log)?.1)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One record: key = the MQTT topic, value = the payload.
fn single_record(key: &str, value: &[u8]) -> Vec<u8> {
    let mut writer = BatchWriter::new(Vec::with_capacity(value.len() + key.len() + 80)).expect("a Vec grows");
    let _ = writer.push_parts(Some(key.as_bytes()), value, now_ms(), std::iter::empty());
    writer.finish().unwrap_or_default()
}

/// Creates a Cairn topic for MQTT on first use.
async fn ensure_topic(server: &Server, topic: &str) -> Result<(), LogError> {
    if server.broker.log().partition_count(topic).is_ok() {
        return Ok(());
    }
    let config = TopicConfig { partitions: server.config.topic_partitions.max(1), ..TopicConfig::default() };
    match server.broker.log().create_topic(topic, config).await {
        Ok(_) | Err(LogError::TopicExists(_)) => {
            tracing::info!(topic, "created topic for MQTT");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The retained store: compacted, one partition, kept forever.
async fn ensure_retained_topic(server: &Server) -> Result<(), LogError> {
    ensure_internal_topic(&server.broker, RETAINED_TOPIC).await
}

async fn ensure_internal_topic(broker: &Broker, topic: &str) -> Result<(), LogError> {
    if broker.log().partition_count(topic).is_ok() {
        return Ok(());
    }
    let config = TopicConfig {
        partitions: 1,
        retention_ms: None,
        cleanup_policy: CleanupPolicy::Compact,
        ..TopicConfig::default()
    };
    match broker.log().create_topic(topic, config).await {
        Ok(_) | Err(LogError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where a feeder starts on a partition it has not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// New messages only (a new subscription).
    End,
    /// Everything there (a topic or partition created after subscribing).
    Beginning,
    /// Where a resumed persistent session left off.
    Committed,
}

/// A persistent session as stored in `__mqtt_sessions` (JSON, keyed by
/// client id; the topic is compacted, so the last one counts).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredSession {
    /// (filter, QoS); shared ones as `$share/<group>/<filter>`.
    subscriptions: Vec<(String, u8)>,
    /// MQTT 5 session expiry; None: never.
    expiry_secs: Option<u32>,
    /// When the client disconnected (ms since the epoch); None while it is
    /// connected (or if the hub stopped meanwhile).
    left_at_ms: Option<i64>,
    /// QoS 2 packet ids stored and not yet released.
    qos2: Vec<u16>,
}

impl StoredSession {
    fn expired(&self) -> bool {
        match (self.expiry_secs, self.left_at_ms) {
            (Some(secs), Some(left)) => now_ms() > left.saturating_add(i64::from(secs) * 1000),
            _ => false,
        }
    }

    fn subscriptions(&self) -> Vec<(String, QoS)> {
        let qos = |q: u8| if q == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        self.subscriptions.iter().map(|(f, q)| (f.clone(), qos(*q))).collect()
    }
}

/// The record storing (or with `None` forgetting) a persistent session.
async fn session_append(
    broker: &Broker,
    client_id: &str,
    session: Option<&StoredSession>,
) -> Result<Option<PendingAppend>, LogError> {
    if session.is_none() && broker.log().partition_count(SESSIONS_TOPIC).is_err() {
        return Ok(None);
    }
    ensure_internal_topic(broker, SESSIONS_TOPIC).await?;
    let value = session.map(|s| serde_json::to_vec(s).unwrap_or_default()).unwrap_or_default();
    let batch = single_record(client_id, &value);
    broker.log().submit(SESSIONS_TOPIC, 0, batch).await.map(Some)
}

/// Stores (or forgets) a persistent session and waits for the commit.
async fn save_session(broker: &Broker, client_id: &str, session: Option<&StoredSession>) -> Result<(), LogError> {
    match session_append(broker, client_id, session).await? {
        Some(append) => append.outcome().await.map(|_| ()),
        None => Ok(()),
    }
}

/// Stores a persistent session without waiting for the commit.
async fn submit_session(
    broker: &Broker,
    client_id: &str,
    session: Option<&StoredSession>,
) -> Result<PendingAppend, LogError> {
    session_append(broker, client_id, session).await?.ok_or(LogError::Closed)
}

/// A stored persistent session, if any.
async fn load_session(broker: &Broker, client_id: &str) -> Option<StoredSession> {
    let log = broker.log();
    log.partition_count(SESSIONS_TOPIC).ok()?;
    let mut found = None;
    let mut offset = log.offsets(SESSIONS_TOPIC, 0).ok()?.start;
    while let Ok(fetch) = log.fetch(SESSIONS_TOPIC, 0, offset, FEED_BYTES) {
        if fetch.batches.is_empty() {
            break;
        }
        for r in fetch.records() {
            if r.key == Some(client_id.as_bytes()) {
                found = Some(r.value.to_vec());
            }
        }
        offset = fetch.next_offset();
    }
    let value = found.filter(|v| !v.is_empty())?;
    match serde_json::from_slice(&value) {
        Ok(session) => Some(session),
        Err(err) => {
            tracing::warn!(client_id, error = %err, "stored MQTT session unreadable; starting a new one");
            None
        }
    }
}

/// Long-polls one partition and passes on the records some filter matches.
async fn feed(broker: Broker, key: FeedKey, mut position: u64, filters: Filters, tx: mpsc::Sender<Delivery>) {
    let (topic, partition) = (key.1.clone(), key.2);
    loop {
        let fetch = match broker.fetch(&topic, partition, position, FEED_BYTES, Duration::from_secs(5)).await {
            Ok(f) => f,
            Err(LogError::OffsetOutOfRange { .. }) => {
                // Retention removed what we had not read: go on from the start.
                position = broker.log().offsets(&topic, partition).map(|o| o.start).unwrap_or(position);
                continue;
            }
            Err(LogError::UnknownTopic(_)) | Err(LogError::Closed) => return,
            Err(err) => {
                tracing::warn!(topic, partition, error = %err, "MQTT feeder could not read; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for r in fetch.records() {
            if r.offset < position {
                continue;
            }
            let headers = r.headers.clone().map(|h| (h.name, h.value));
            let mqtt_topic = topics::delivered_topic(&topic, r.key, headers);
            let qos = {
                let filters = filters.read().unwrap_or_else(|e| e.into_inner());
                best_qos(filters.iter().filter(|(f, _)| topics::matches(f, &mqtt_topic)).map(|(_, q)| *q))
            };
            if let Some(qos) = qos {
                let delivery = Delivery {
                    topic: mqtt_topic,
                    payload: Bytes::copy_from_slice(r.value),
                    qos,
                    retain: false,
                    source: Some(Source { feed: key.clone(), offset: r.offset }),
                };
                if tx.send(delivery).await.is_err() {
                    return;
                }
            }
            position = r.offset + 1;
        }
        position = position.max(fetch.next_offset().min(fetch.end_offset));
    }
}

/// Writes packets in order; PUBACK/PUBREC only after their commit.
async fn write_packets(
    mut socket: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Out>,
    version: Version,
    server: Arc<Server>,
    client_id: String,
) {
    let mut buf = BytesMut::with_capacity(4096);
    while let Some(item) = queue.recv().await {
        let packets = match item {
            Out::Packet(p) => vec![p],
            Out::AfterCommit { appends, packets, release } => {
                let mut stored = true;
                for append in appends {
                    stored &= append.outcome().await.is_ok();
                }
                if !stored {
                    // Not acknowledged: closing makes the client resend.
                    tracing::warn!(%client_id, "MQTT message not stored; closing the connection");
                    break;
                }
                if let Some(pkid) = release {
                    let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.entry(client_id.clone()).or_default().awaiting_release.insert(pkid);
                }
                for _ in &packets {
                    server.broker.metrics().mqtt_acks_out.inc();
                }
                packets
            }
        };
        let mut closing = false;
        for packet in packets {
            closing |= matches!(packet, Outgoing::Disconnect(_));
            codec::write(version, packet, &mut buf);
        }
        if queue.is_empty() || buf.len() > 64 * 1024 || closing {
            if socket.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
        }
        if closing {
            break;
        }
    }
    if !buf.is_empty() {
        let _ = socket.write_all(&buf).await;
    }
    let _ = socket.shutdown().await;
}
