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
//!   partitions the consumer group assigns to this session, and they deal
//!   what they read among the group's members.
//!
//! This file is the connection loop: the handshake (`handshake.rs` reads
//! the CONNECT and opens the session or refuses it), then read a packet and
//! hand it to its handler, keep-alive, takeover and shutdown, and the
//! session's start (CONNACK) and close (will, positions, what a persistent
//! session keeps). The handlers live with their jobs: `publish.rs`, `subscribe.rs`
//! and `delivery.rs`, all `impl Session` over the state in `session.rs`;
//! `persist.rs` stores sessions, `writer.rs` writes the packets,
//! `shared.rs` deals shared subscriptions' messages, `tail.rs` reads each
//! partition's new records once for the subscribers waiting at its end.
//! Imports go one way:
//! connection → handshake, publish, subscribe → shared → delivery → tail → session → persist
//! → records, and session → dealt; writer is used by all of them and uses
//! none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::codec::{self, CodecError, DisconnectReason, Incoming, Outgoing, RetainHandling, Version, Will};
use super::handshake::{handshake, Admission, Arrival};
use super::persist::save_session;
use super::properties::MessageProperties;
use super::publish::{publish, PublishError};
use super::session::{persistence, End, Session};
use super::writer::{write_packets, Client, Out};
use super::Server;
use crate::net::Shutdown;

/// How often acknowledged positions of a persistent session are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How often a session with shared subscriptions heartbeats their consumer
/// groups (a rebalance reaches it within this).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Serves one client over `socket` (TCP, or TLS whose verified client
/// certificate named `certificate`).
pub(super) async fn run<S>(
    server: Arc<Server>,
    socket: S,
    certificate: Option<String>,
    peer: SocketAddr,
    admission: Admission,
    mut shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(socket);
    let mut buf = BytesMut::with_capacity(2048);
    // Boxed, so that what the handshake held (the CONNECT, the session
    // before it was opened: 1.7 KiB) is not kept for the connection's life.
    let arrival = Arrival { peer, certificate, admission };
    let handshake = handshake(&server, &mut reader, &mut writer, &mut buf, arrival, &mut shutdown);
    let Some((version, mut session)) = Box::pin(handshake).await else { return };
    let (out_tx, out_rx) = mpsc::channel(256);
    let client = Client {
        id: session.client_id.clone(),
        version,
        problem_info: session.problem_info,
        unanswered: session.unanswered.clone(),
    };
    let writer_task = tokio::spawn(write_packets(writer, out_rx, client, server.clone()));
    session.out = Some(out_tx);
    // The steps that run once are boxed: a task keeps room for its largest
    // step for as long as it lives, and 10,000 idle connections should not
    // each hold the room CONNACK or the close needed once.
    Box::pin(session.start()).await;
    let end = session.serve(&mut reader, &mut buf, &mut shutdown).await;
    Box::pin(session.close(end)).await;
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
}

impl Session {
    /// Answers CONNACK, sends again the PUBRELs a resumed session still
    /// owes (MQTT-4.4.0-1), and resumes its subscriptions.
    async fn start(&mut self) {
        // How many QoS 1/2 PUBLISHes the client may have unanswered
        // towards the hub (`[mqtt] receive_maximum`, held to in
        // `count_unanswered`). Not the client's own receive maximum, which
        // bounds the other direction.
        let receive_maximum = self.server.config.receive_maximum;
        let assigned_client_id = self.assigned_id.then(|| self.client_id.clone());
        let connack = Outgoing::ConnAck {
            // MQTT 3.1 has no such flag: that byte is reserved, 0.
            session_present: self.session_present && !self.v31,
            refused: None,
            receive_maximum,
            assigned_client_id,
            server_keep_alive: self.server_keep_alive,
            // Told, so that a client does not send what gets it
            // disconnected with 0x95 (the limit counts whole packets).
            max_packet_size: u32::try_from(self.server.config.max_packet_bytes).ok(),
            response_information: self.response_information(),
        };
        self.send(Out::Packet(connack)).await;
        for pkid in self.released.clone() {
            self.send(Out::Packet(Outgoing::PubRel(pkid))).await;
        }
        if !self.resend_shared.is_empty() {
            Box::pin(self.resend_shared()).await;
        }
        let resumed = std::mem::take(&mut self.resumed_filters);
        if !resumed.is_empty() {
            let resumed = resumed.into_iter().map(|s| (s, RetainHandling::Never)).collect();
            self.subscribe(resumed, true).await;
        }
    }

    /// Reads and handles packets, and passes deliveries on, until the
    /// connection ends.
    async fn serve<S: AsyncRead>(
        &mut self,
        reader: &mut ReadHalf<S>,
        buf: &mut BytesMut,
        shutdown: &mut Shutdown,
    ) -> End {
        let limit = self.server.config.max_packet_bytes;
        let far = Duration::from_secs(365 * 24 * 3600);
        let mut deadline = Instant::now() + self.keep_alive.unwrap_or(far);
        // Each tick is waited on only while it has work (below): an idle
        // connection, the common case on a gateway, wakes for nothing.
        // After a pause a tick comes at once, then at its interval again.
        let mut commit_tick = tokio::time::interval(COMMIT_EVERY);
        commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh_tick = tokio::time::interval(REFRESH_EVERY);
        refresh_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut kick = self.kick.take().expect("kick receiver set in open");
        let mut revocations = self.server.broker.auth().revocations();
        let regroup = self.regroup.clone();
        // The writer task ends when the client stops reading (write
        // timeout) or the socket fails: the session ends with it.
        let writer = self.out.clone();
        let writer_gone = async move {
            match writer {
                Some(tx) => tx.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(writer_gone);
        // Handlers are boxed: the loop waits on reads far more often than it
        // handles anything, and the task keeps room for its largest step.
        // Packets that arrived with the CONNECT.
        if let Some(end) = Box::pin(self.handle_buffered(buf, limit)).await {
            return end;
        }
        loop {
            let can_deliver = self.in_flight() < self.max_inflight;
            let to_commit = !self.to_commit.is_empty() || !self.dealing.is_empty();
            let feeds_own = !self.filters.read().unwrap_or_else(|e| e.into_inner()).is_empty();
            tokio::select! {
                read = reader.read_buf(buf) => match read {
                    Ok(0) | Err(_) => return End::Abnormal,
                    Ok(_) => {
                        deadline = Instant::now() + self.keep_alive.unwrap_or(far);
                        if let Some(end) = Box::pin(self.handle_buffered(buf, limit)).await {
                            return end;
                        }
                    }
                },
                Some(delivery) = self.deliveries.recv(), if can_deliver => Box::pin(self.deliver(*delivery)).await,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(peer = %self.peer, client_id = %self.client_id, "MQTT keep-alive timeout");
                    self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::KeepAliveTimeout))).await;
                    return End::Abnormal;
                }
                _ = &mut writer_gone => {
                    tracing::info!(peer = %self.peer, client_id = %self.client_id, "MQTT connection's writer ended; closing");
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
                Ok(()) = revocations.changed() => {
                    if !self.server.broker.auth().still_valid(&self.principal) {
                        tracing::info!(peer = %self.peer, client_id = %self.client_id, "MQTT client's API key revoked; closing");
                        self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::NotAuthorized))).await;
                        // Its will is not published: the key no longer holds.
                        return End::Clean;
                    }
                }
                _ = commit_tick.tick(), if to_commit => Box::pin(self.commit_positions()).await,
                // New topics and partitions are fed when the log says one
                // came, not looked for on a timer.
                Ok(()) = self.topic_changes.changed(), if feeds_own => Box::pin(self.refresh_own()).await,
                _ = refresh_tick.tick(), if !self.shared.is_empty() => Box::pin(self.refresh()).await,
                _ = regroup.notified(), if !self.shared.is_empty() => Box::pin(self.refresh()).await,
            }
        }
    }

    /// Handles every whole packet in `buf`; `Some` ends the connection.
    async fn handle_buffered(&mut self, buf: &mut BytesMut, limit: usize) -> Option<End> {
        // Consecutive PUBLISHes (QoS 0/1, not retained) to one topic that
        // arrived together become one record batch: one append, one commit
        // slot, and their acknowledgements go out together after it.
        let mut run: Vec<(Bytes, QoS, u16, MessageProperties)> = Vec::new();
        let mut run_topic = String::new();
        let now = self.server.broker.log().steady_ms();
        loop {
            let packet = match codec::read(self.version, buf, limit) {
                Ok(Some(publish @ Incoming::Publish { .. })) => match self.admit(publish) {
                    Ok(publish) => Ok(Some(publish)),
                    Err(reason) => {
                        // The messages that came before it are stored first
                        // (a run of QoS 0 ones would otherwise be lost).
                        if !run.is_empty() {
                            let _ = self.publish_run(&run_topic, std::mem::take(&mut run)).await;
                        }
                        self.send(Out::Packet(Outgoing::Disconnect(reason))).await;
                        return Some(End::Abnormal);
                    }
                },
                other => other,
            };
            // A PUBLISH that may join a run: QoS 0/1, not retained, and a
            // payload its format indicator holds for (else `on_publish`
            // refuses it, in order with the run before it).
            let runnable = match &packet {
                Ok(Some(Incoming::Publish { topic, payload, qos, retain: false, pkid, properties }))
                    if *qos != QoS::ExactlyOnce =>
                {
                    let properties = MessageProperties::from_v5(properties.clone(), now);
                    properties
                        .payload_format_holds(payload)
                        .then(|| (topic, (payload.clone(), *qos, *pkid, properties)))
                }
                _ => None,
            };
            let runnable = match runnable {
                Some((topic, message)) if (run.is_empty() || *topic == run_topic) && run.len() < 1000 => {
                    if run.is_empty() {
                        run_topic = topic.clone();
                    }
                    run.push(message);
                    continue;
                }
                other => other,
            };
            if !run.is_empty() {
                if let Some(end) = self.publish_run(&run_topic, std::mem::take(&mut run)).await {
                    return Some(end);
                }
                // The packet that ended the run is handled below; a
                // PUBLISH may start the next run.
                if let Some((topic, message)) = runnable {
                    run_topic = topic.clone();
                    run.push(message);
                    continue;
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
                        CodecError::Malformed(_) => DisconnectReason::MalformedPacket,
                        _ => DisconnectReason::ProtocolError,
                    };
                    self.send(Out::Packet(Outgoing::Disconnect(reason))).await;
                    return Some(End::Abnormal);
                }
            }
        }
    }

    /// What every PUBLISH goes through before it is handled: its topic
    /// alias resolved, and the Receive Maximum. An error closes the
    /// connection with that reason.
    fn admit(&mut self, publish: Incoming) -> Result<Incoming, DisconnectReason> {
        let publish = match self.resolve_alias(publish) {
            Ok(publish) => publish,
            Err(reason) => {
                tracing::info!(peer = %self.peer, client_id = %self.client_id, ?reason, "bad MQTT topic alias; closing");
                return Err(reason);
            }
        };
        if let Err(reason) = self.count_unanswered(&publish) {
            let max = self.server.config.receive_maximum;
            tracing::info!(peer = %self.peer, client_id = %self.client_id, max, "MQTT 5 client passed the receive maximum; closing");
            return Err(reason);
        }
        Ok(publish)
    }

    /// MQTT 5 Receive Maximum (§3.2.2.3.3, §4.9): a QoS 1/2 PUBLISH
    /// counts until it is answered (the writer counts the answers out);
    /// one past the maximum is 0x93. 3.1.1 has no such limit to hold a
    /// client to.
    fn count_unanswered(&self, publish: &Incoming) -> Result<(), DisconnectReason> {
        let Incoming::Publish { qos, .. } = publish else { return Ok(()) };
        if self.version != Version::V5 || *qos == QoS::AtMostOnce {
            return Ok(());
        }
        if self.unanswered.arrived() > u32::from(self.server.config.receive_maximum) {
            return Err(DisconnectReason::ReceiveMaximumExceeded);
        }
        Ok(())
    }

    /// MQTT 5 topic aliases: a PUBLISH with an alias and a topic sets it,
    /// one with an alias and an empty topic uses it.
    fn resolve_alias(&mut self, packet: Incoming) -> Result<Incoming, DisconnectReason> {
        let Incoming::Publish { topic, payload, qos, retain, pkid, mut properties } = packet else { return Ok(packet) };
        let topic = match properties.as_mut().and_then(|p| p.topic_alias.take()) {
            // No name and no alias to stand for it (5.0 §3.3.2.3.4;
            // 3.1.1 MQTT-4.7.3-1).
            None if topic.is_empty() => return Err(DisconnectReason::ProtocolError),
            None => topic,
            Some(alias) if alias == 0 || alias > codec::TOPIC_ALIAS_MAX => {
                return Err(DisconnectReason::TopicAliasInvalid)
            }
            Some(alias) if topic.is_empty() => {
                self.aliases.get(&alias).cloned().ok_or(DisconnectReason::ProtocolError)?
            }
            Some(alias) => {
                self.aliases.insert(alias, topic.clone());
                topic
            }
        };
        Ok(Incoming::Publish { topic, payload, qos, retain, pkid, properties })
    }

    async fn handle(&mut self, packet: Incoming) -> Option<End> {
        match packet {
            Incoming::Connect(_) => {
                tracing::info!(peer = %self.peer, "second CONNECT on one connection; closing");
                self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::ProtocolError))).await;
                return Some(End::Abnormal);
            }
            Incoming::Publish { topic, payload, qos, retain, pkid, properties } => {
                let properties = MessageProperties::from_v5(properties, self.server.broker.log().steady_ms());
                return self.on_publish(topic, payload, qos, retain, pkid, properties).await;
            }
            Incoming::PubRel(pkid) => self.on_pubrel(pkid).await,
            Incoming::PubAck(pkid) => self.acknowledged(pkid),
            Incoming::PubRec { pkid, failed } => self.received(pkid, failed).await,
            Incoming::PubComp(pkid) => self.completed(pkid),
            Incoming::Subscribe { pkid, filters } => return self.on_subscribe(pkid, filters).await,
            Incoming::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters).await,
            Incoming::PingReq => self.send(Out::Packet(Outgoing::PingResp)).await,
            // MQTT 5 "disconnect with will message": the will goes out.
            Incoming::Disconnect { with_will, session_expiry } => {
                if let Some(end) = self.expiry_on_disconnect(session_expiry).await {
                    return Some(end);
                }
                return Some(if with_will { End::Abnormal } else { End::Clean });
            }
        }
        None
    }

    /// MQTT 5: a DISCONNECT may set a new session expiry interval, except
    /// on a session whose CONNECT had none (0): that is a protocol error,
    /// answered with DISCONNECT 0x82 and the will (§3.14.2.2.2).
    async fn expiry_on_disconnect(&mut self, session_expiry: Option<u32>) -> Option<End> {
        let secs = session_expiry?;
        if !self.keep && secs != 0 {
            tracing::info!(peer = %self.peer, client_id = %self.client_id, "MQTT 5 DISCONNECT set a session expiry the CONNECT had not; closing");
            self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::ProtocolError))).await;
            return Some(End::Abnormal);
        }
        let (keep, expiry) = persistence(secs);
        if self.keep && !keep {
            // The session ends with this connection: its stored copy goes.
            let _ = save_session(&self.server, &self.client_id, None).await;
        }
        (self.keep, self.expiry) = (keep, expiry);
        None
    }

    /// Ends the connection: the will on an abnormal end (now, or after
    /// its delay), positions committed, shared groups left, the session
    /// forgotten unless it is persistent (then its expiry counts from now).
    pub(super) async fn close(&mut self, end: End) {
        if end == End::Abnormal {
            if let Some(will) = self.will.take() {
                self.will_out(*will).await;
            }
        }
        self.feeders.abort_all();
        self.commit_positions().await;
        let groups: Vec<String> = self.shared.keys().cloned().collect();
        let mut stored = self.stored(Some(self.server.broker.log().steady_ms()));
        for group in groups {
            self.leave_group(&group);
        }
        self.hand_back_dealt();
        // Leave the slot to a connection that took it over; only the last
        // connection of a client id records when the client left.
        let connection = self.connection;
        let last = {
            let mut slots = self.server.slots.lock().unwrap_or_else(|e| e.into_inner());
            let last =
                slots.get(&self.client_id).is_some_and(|s| s.kick.as_ref().is_some_and(|(c, _)| *c == connection));
            if last && !self.keep {
                // Nothing of a clean session outlives it: the map of client
                // ids does not grow with every client that ever connected.
                slots.remove(&self.client_id);
            } else if let Some(slot) = slots.get_mut(&self.client_id).filter(|_| last) {
                slot.kick = None;
                slot.client = None;
            }
            last
        };
        if last && self.keep {
            stored.qos2 = self.with_slot(|slot| slot.awaiting_release.iter().copied().collect());
            let _ = save_session(&self.server, &self.client_id, Some(&stored)).await;
        } else if last && self.session_present {
            // A resumed session with expiry 0 ends with its connection.
            let _ = save_session(&self.server, &self.client_id, None).await;
        }
        self.out = None;
        self.server.broker.metrics().mqtt_disconnects.inc();
        tracing::debug!(peer = %self.peer, client_id = %self.client_id, ?end, "MQTT client disconnected");
    }
}

impl Session {
    /// Publishes the will of a connection that ended abnormally, at once,
    /// or after its delay interval if the session outlives the connection
    /// (MQTT-3.1.3-9: not at all if the session is resumed meanwhile; at
    /// once if a clean start ends it; at the latest when it expires). A
    /// connection taken over is resumed at once, so a delayed will is
    /// dropped.
    async fn will_out(&mut self, will: Will) {
        let delay = match (self.keep, self.expiry) {
            (false, _) => 0,
            (true, Some(expiry)) => will.delay_secs.min(expiry),
            (true, None) => will.delay_secs,
        };
        if delay == 0 {
            publish_will(&self.server, &self.client_id, will).await;
            return;
        }
        let connection = self.connection;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let taken_over = self.with_slot(|slot| {
            let taken_over = slot.kick.as_ref().is_some_and(|(c, _)| *c != connection);
            if !taken_over {
                slot.pending_will = Some(tx);
            }
            taken_over
        });
        if taken_over {
            tracing::debug!(client_id = %self.client_id, "session resumed by a new connection; delayed will dropped");
            return;
        }
        tracing::debug!(client_id = %self.client_id, delay, "will delayed");
        let (server, client_id) = (self.server.clone(), self.client_id.clone());
        tokio::spawn(async move {
            let now = tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::from(delay))) => true,
                // `true`: a clean start ended the session; `false` (or the
                // slot gone): the session was resumed.
                told = rx => told.unwrap_or(false),
            };
            if now {
                publish_will(&server, &client_id, will).await;
            }
        });
    }
}

/// Publishes a will and waits for its commit.
async fn publish_will(server: &Server, client_id: &str, will: Will) {
    tracing::debug!(client_id, topic = %will.topic, "publishing will");
    let properties = MessageProperties::from_v5(will.properties, server.broker.log().steady_ms());
    let (topic, payload, qos, retain) = (&will.topic, &will.payload, will.qos, will.retain);
    let mut published = publish(server, topic, payload, qos, retain, &properties, None).await;
    if let Err(PublishError::RetainedQuota) = published {
        server.broker.metrics().mqtt_retained_refused.inc();
        tracing::warn!(client_id, %topic, "retained store full: will published but not retained");
        published = publish(server, topic, payload, qos, false, &properties, None).await;
    }
    if let Ok(appends) = published {
        for append in appends {
            let _ = append.outcome().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::handshake::tests::CONNECT;
    use tokio::io::AsyncWriteExt;

    /// A socket that counts how often the connection loop asks it for
    /// bytes: once per turn of the loop, so once per wake-up.
    struct CountingSocket {
        inner: tokio::io::DuplexStream,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for CountingSocket {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountingSocket {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Gateways hold thousands of idle devices: an idle connection, with a
    /// subscription or without, must not wake on timers of its own.
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_sleeps_until_something_happens() {
        let (_dir, server) = super::super::testing::server();
        let (client, inner) = tokio::io::duplex(4096);
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let socket = CountingSocket { inner, reads: reads.clone() };
        let (trigger, shutdown) = crate::net::shutdown_channel();
        let peer = "127.0.0.1:1".parse().unwrap();
        let served = tokio::spawn(run(server.clone(), socket, None, peer, Admission::Admitted, shutdown));
        let (mut from_hub, mut to_hub) = tokio::io::split(client);

        // No keep-alive: nothing is due, however far the paused clock runs.
        let mut connect = CONNECT;
        (connect[10], connect[11]) = (0, 0);
        to_hub.write_all(&connect).await.unwrap();
        let mut connack = [0; 4];
        from_hub.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
        let idle = |reads: &std::sync::atomic::AtomicUsize| reads.load(std::sync::atomic::Ordering::Relaxed);
        let before = idle(&reads);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(idle(&reads) - before <= 1, "a publisher woke {} times in 30 s", idle(&reads) - before);

        // SUBSCRIBE a/# (QoS 0): SUBACK, then quiet again.
        to_hub.write_all(&[0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 0]).await.unwrap();
        let mut suback = [0; 5];
        from_hub.read_exact(&mut suback).await.unwrap();
        assert_eq!(suback, [0x90, 3, 0, 1, 0]);
        let before = idle(&reads);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(idle(&reads) - before <= 2, "a subscriber woke {} times in 30 s", idle(&reads) - before);

        // A new topic is still found at once: its message arrives.
        let properties = MessageProperties::default();
        let appends = publish(&server, "a/new", b"hi", QoS::AtMostOnce, false, &properties, None).await;
        for append in appends.ok().unwrap() {
            append.outcome().await.unwrap();
        }
        let mut publish = [0; 11];
        tokio::time::timeout(Duration::from_secs(1), from_hub.read_exact(&mut publish)).await.unwrap().unwrap();
        assert_eq!(publish, [0x30, 9, 0, 5, b'a', b'/', b'n', b'e', b'w', b'h', b'i']);

        trigger.trigger();
        served.await.unwrap();
    }

    /// What a connection holds for its whole life is mostly its task: a
    /// gateway with 10,000 devices holds 10,000 of them. The handshake's
    /// state is boxed and freed: it once kept 1.7 KiB per connection (the
    /// task was 4,000 bytes).
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let (_dir, server) = super::super::testing::server();
        let (_client, socket) = tokio::io::duplex(64);
        let (_trigger, shutdown) = crate::net::shutdown_channel();
        let task = run(server, socket, None, "127.0.0.1:1".parse().unwrap(), Admission::Admitted, shutdown);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2560, "a connection's task is {size} bytes");
    }
}
