//! One MQTT client connection: CONNECT, then its packets in and the
//! messages of its subscriptions out, until it disconnects or breaks.
//!
//! Tasks of one connection:
//! - this task reads packets and acts on them, and hands deliveries to the
//!   writer while fewer than the in-flight limit wait for a PUBACK;
//! - the writer task writes packets in order, waiting for the durable
//!   commit of a PUBLISH before its PUBACK / PUBREC;
//! - one feeder task per subscribed (Cairn topic, partition) long-polls the
//!   log and passes on records matching the session's filters.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_proto::BatchWriter;
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::codec::{self, CodecError, Connect, DisconnectReason, Incoming, Outgoing, Refusal, Version, Will};
use super::topics::{self, RETAINED_TOPIC, SESSIONS_TOPIC};
use super::{Server, Slot};
use crate::broker::Broker;
use crate::log::{CleanupPolicy, LogError, PendingAppend, TopicConfig};
use crate::net::Shutdown;

/// How long a client has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest read of one feeder's fetch.
const FEED_BYTES: usize = 256 * 1024;
/// How often acknowledged positions of a persistent session are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

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
    /// Where it came from, for committing a persistent session's position.
    source: Option<(String, u32, u64)>,
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
    will: Option<Will>,
    keep_alive: Option<Duration>,
    max_inflight: usize,
    filters: Filters,
    /// (Cairn topic, partition) pairs with a feeder running.
    feeding: HashSet<(String, u32)>,
    feeders: JoinSet<()>,
    deliveries_tx: mpsc::Sender<Delivery>,
    deliveries: mpsc::Receiver<Delivery>,
    /// Our QoS 1 publishes awaiting PUBACK: packet id → source.
    inflight: HashMap<u16, Option<(String, u32, u64)>>,
    /// Per partition, offsets in flight (the lowest is not yet committable).
    unacked: HashMap<(String, u32), BTreeSet<u64>>,
    /// Positions to commit at the next tick.
    to_commit: HashMap<(String, u32), u64>,
    next_pkid: u16,
    kick: Option<oneshot::Receiver<()>>,
    out: Option<mpsc::Sender<Out>>,
    /// Subscriptions of the stored session being resumed.
    resumed_filters: Vec<(String, QoS)>,
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
        let keep = match version {
            Version::V311 => !c.clean,
            Version::V5 => c.session_expiry.unwrap_or(0) > 0,
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
        if c.clean {
            // A clean start forgets what an earlier session stored.
            let _ = save_session(&server.broker, &client_id, None).await;
        }
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
            will: c.will,
            keep_alive,
            max_inflight,
            filters: Arc::new(RwLock::new(Vec::new())),
            feeding: HashSet::new(),
            feeders: JoinSet::new(),
            deliveries_tx,
            deliveries,
            inflight: HashMap::new(),
            unacked: HashMap::new(),
            to_commit: HashMap::new(),
            next_pkid: 1,
            kick: Some(kick_rx),
            out: None,
            resumed_filters: stored.unwrap_or_default(),
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
                let appends = match publish(&self.server, &topic, &payload, retain).await {
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
                    // Shared subscriptions ($share/...) are not built yet:
                    // refused, so a client does not think it is in a group.
                    if topics::valid_filter(&filter) && !filter.starts_with("$share/") {
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

    /// Adds filters, starts feeders for their partitions (from the end, or
    /// from the committed position when resuming), and sends the retained
    /// messages they match (not when resuming).
    async fn subscribe(&mut self, new: Vec<(String, QoS)>, resuming: bool) {
        if new.is_empty() {
            return;
        }
        {
            let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
            for (filter, qos) in &new {
                current.retain(|(f, _)| f != filter);
                current.push((filter.clone(), *qos));
            }
        }
        let broker = self.server.broker.clone();
        let mut topics_to_feed = Vec::new();
        for (filter, _) in &new {
            match topics::filter_topic(filter) {
                Some(topic) => {
                    if topics::cairn_topic(topic).is_ok() && ensure_topic(&self.server, topic).await.is_ok() {
                        topics_to_feed.push(topic.to_string());
                    }
                }
                None => topics_to_feed.extend(
                    broker
                        .log()
                        .list_topics()
                        .into_iter()
                        .map(|t| t.name)
                        .filter(|n| !n.starts_with(topics::INTERNAL_PREFIX)),
                ),
            }
        }
        let group = self.group();
        for topic in topics_to_feed {
            let Ok(partitions) = broker.log().partition_count(&topic) else { continue };
            let committed: HashMap<u32, u64> = if resuming {
                broker.log().committed_offsets(&group, &topic).unwrap_or_default().into_iter().collect()
            } else {
                HashMap::new()
            };
            let mut start_positions = Vec::new();
            for partition in 0..partitions {
                if !self.feeding.insert((topic.clone(), partition)) {
                    continue;
                }
                let end = broker.log().offsets(&topic, partition).map(|o| o.end).unwrap_or(0);
                let start = committed.get(&partition).copied().unwrap_or(end);
                start_positions.push((partition, start));
                let feeder = feed(
                    broker.clone(),
                    topic.clone(),
                    partition,
                    start,
                    self.filters.clone(),
                    self.deliveries_tx.clone(),
                );
                self.feeders.spawn(feeder);
            }
            // A persistent session remembers where it starts, so messages
            // published while it is offline are delivered when it returns.
            if self.keep && !start_positions.is_empty() && !resuming {
                let _ = broker.log().commit_offsets(&group, &topic, &start_positions).await;
            }
        }
        self.save().await;
        if !resuming {
            self.send_retained(&new).await;
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
            if let Some((topic, partition, offset)) = &d.source {
                self.unacked.entry((topic.clone(), *partition)).or_default().insert(*offset);
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
        let Some(Some((topic, partition, offset))) = self.inflight.remove(&pkid) else { return };
        let key = (topic, partition);
        let Some(pending) = self.unacked.get_mut(&key) else { return };
        pending.remove(&offset);
        // Everything below the lowest unacknowledged offset is delivered.
        let committable = pending.first().copied().unwrap_or(offset + 1);
        if self.keep {
            let entry = self.to_commit.entry(key).or_insert(0);
            *entry = (*entry).max(committable);
        }
    }

    async fn commit_positions(&mut self) {
        if self.to_commit.is_empty() {
            return;
        }
        let group = self.group();
        let mut by_topic: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
        for ((topic, partition), offset) in self.to_commit.drain() {
            by_topic.entry(topic).or_default().push((partition, offset));
        }
        for (topic, offsets) in by_topic {
            let _ = self.server.broker.log().commit_offsets(&group, &topic, &offsets).await;
        }
    }

    /// The consumer group holding a persistent session's positions.
    fn group(&self) -> String {
        format!("mqtt.{}", self.client_id)
    }

    /// Stores a persistent session's subscriptions.
    async fn save(&self) {
        if self.keep {
            let filters = self.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
            let _ = save_session(&self.server.broker, &self.client_id, Some(&filters)).await;
        }
    }

    /// Ends the connection: the will on an abnormal end, positions
    /// committed, the session forgotten unless it is persistent.
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
        if !self.keep {
            self.with_slot(|slot| slot.awaiting_release.clear());
        }
        // Leave the slot to a connection that took it over.
        let connection = self.connection;
        self.with_slot(|slot| {
            if slot.kick.as_ref().is_some_and(|(c, _)| *c == connection) {
                slot.kick = None;
            }
        });
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
    let topic = topics::cairn_topic(mqtt_topic).map_err(PublishError::Topic)?;
    let batch = single_record(mqtt_topic, payload);
    let mut appends = Vec::with_capacity(2);
    let submitted = match server.broker.produce_batch(topic, None, batch.clone()).await {
        Err(LogError::UnknownTopic(_)) => {
            ensure_topic(server, topic).await.map_err(PublishError::Log)?;
            server.broker.produce_batch(topic, None, batch.clone()).await
        }
        other => other,
    };
    appends.push(submitted.map_err(PublishError::Log)?.1);
    if retain {
        ensure_retained_topic(server).await.map_err(PublishError::Log)?;
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
    let topic = topics::cairn_topic(mqtt_topic).map_err(PublishError::Topic)?;
    let now = now_ms();
    let size: usize = payloads.iter().map(|p| p.len() + mqtt_topic.len() + 16).sum();
    let mut writer = BatchWriter::new(Vec::with_capacity(size + 64)).expect("a Vec grows");
    for payload in payloads {
        let _ = writer.push_parts(Some(mqtt_topic.as_bytes()), payload, now, std::iter::empty());
    }
    let batch = writer.finish().unwrap_or_default();
    let submitted = match server.broker.produce_batch(topic, None, batch.clone()).await {
        Err(LogError::UnknownTopic(_)) => {
            ensure_topic(server, topic).await.map_err(PublishError::Log)?;
            server.broker.produce_batch(topic, None, batch).await
        }
        other => other,
    };
    Ok(vec![submitted.map_err(PublishError::Log)?.1])
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

/// Stores (or with `None` forgets) a persistent session's subscriptions.
async fn save_session(broker: &Broker, client_id: &str, filters: Option<&[(String, QoS)]>) -> Result<(), LogError> {
    if filters.is_none() && broker.log().partition_count(SESSIONS_TOPIC).is_err() {
        return Ok(());
    }
    ensure_internal_topic(broker, SESSIONS_TOPIC).await?;
    let value = match filters {
        Some(filters) => {
            let list: Vec<(&str, u8)> = filters.iter().map(|(f, q)| (f.as_str(), *q as u8)).collect();
            serde_json::to_vec(&list).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let batch = single_record(client_id, &value);
    broker.log().append(SESSIONS_TOPIC, 0, batch).await.map(|_| ())
}

/// A stored persistent session's subscriptions, if any.
async fn load_session(broker: &Broker, client_id: &str) -> Option<Vec<(String, QoS)>> {
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
    let list: Vec<(String, u8)> = serde_json::from_slice(&value).ok()?;
    Some(list.into_iter().map(|(f, q)| (f, if q == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce })).collect())
}

/// Long-polls one partition and passes on the records some filter matches.
async fn feed(
    broker: Broker,
    topic: String,
    partition: u32,
    mut position: u64,
    filters: Filters,
    tx: mpsc::Sender<Delivery>,
) {
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
            let mqtt_topic = topics::mqtt_topic(&topic, r.key);
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
                    source: Some((topic.clone(), partition, r.offset)),
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
