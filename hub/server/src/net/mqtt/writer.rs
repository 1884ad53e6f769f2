//! The writer task of one connection: writes its packets in order, and a
//! PUBACK / PUBREC only once the message it answers is durably committed.
//!
//! The session hands it [`Out`] items through a queue (`Session::send`);
//! it knows nothing of the session.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use cairn_log::{LogError, PendingAppend};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::codec::{self, Outgoing, PubRefusal, Version};
use super::Server;

/// What the writer task writes.
pub(super) enum Out {
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

/// The client the writer writes to: what shapes its packets.
pub(super) struct Client {
    pub(super) id: String,
    pub(super) version: Version,
    /// MQTT 5: reason strings may go on PUBACK / PUBREC (MQTT-3.1.2-29).
    pub(super) problem_info: bool,
    /// Counted out here as the answers are written.
    pub(super) unanswered: Arc<Unanswered>,
}

/// An MQTT 5 client's QoS 1/2 PUBLISHes not yet answered on this
/// connection: the mirror of the client's send quota (5.0 §4.9), which
/// CONNACK's Receive Maximum starts. Every QoS 1/2 PUBLISH counts in (the
/// session holds the count to the maximum); every PUBACK, refusing PUBREC
/// and PUBCOMP counts one out, never below 0, as the client's quota never
/// goes above the maximum (a PUBCOMP may finish a message of an earlier
/// connection: the quota starts afresh with each connection). The writer
/// counts out before it writes, so a client that sends again as soon as
/// it reads the answer is never counted against twice.
#[derive(Debug, Default)]
pub(super) struct Unanswered(AtomicU32);

impl Unanswered {
    /// One more; returns how many are unanswered now.
    pub(super) fn arrived(&self) -> u32 {
        self.0.fetch_add(1, Ordering::AcqRel).saturating_add(1)
    }

    fn answered(&self) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Whether `packet` gives the client back a place in its send quota (a
/// successful PUBREC does not: QoS 2 ends at PUBCOMP).
fn answers_a_publish(packet: &Outgoing) -> bool {
    matches!(packet, Outgoing::PubAck(_) | Outgoing::PubRefused { .. } | Outgoing::PubComp { .. })
}

/// Writes packets in order; PUBACK/PUBREC only after their commit.
pub(super) async fn write_packets<W: AsyncWrite + Unpin>(
    mut socket: W,
    mut queue: mpsc::Receiver<Out>,
    client: Client,
    server: Arc<Server>,
) {
    let Client { id: client_id, version, problem_info, unanswered } = client;
    // Grows to what is written at once; an idle connection keeps little.
    let mut buf = BytesMut::new();
    while let Some(item) = queue.recv().await {
        let packets = match item {
            Out::Packet(p) => vec![p],
            Out::AfterCommit { appends, packets, release } => {
                let mut failure = None;
                for append in appends {
                    if let Err(err) = append.outcome().await {
                        failure = Some(err);
                    }
                }
                match failure {
                    None => {
                        if let Some(pkid) = release {
                            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
                            slots.entry(client_id.clone()).or_default().awaiting_release.insert(pkid);
                        }
                        for _ in &packets {
                            server.broker.metrics().mqtt_acks_out.inc();
                        }
                        packets
                    }
                    // A full disk: MQTT 5 is told (0x97, "disk full" unless
                    // it asked for no reason strings) and the connection
                    // stays; 3.1.1 cannot be told, so the connection closes
                    // (nothing was acknowledged).
                    Some(LogError::DiskFull(reason)) if version == Version::V5 => {
                        tracing::warn!(%client_id, %reason, "MQTT message refused: disk full");
                        if let Some(pkid) = release {
                            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
                            slots.entry(client_id.clone()).or_default().refused_qos2.insert(pkid);
                        }
                        let why = if problem_info { PubRefusal::DiskFull } else { PubRefusal::QuotaExceeded };
                        let refused = packets.iter().filter_map(acknowledged);
                        refused.map(|(pkid, qos)| Outgoing::PubRefused { pkid, qos, why }).collect()
                    }
                    Some(err) => {
                        // Not acknowledged: closing makes the client resend.
                        tracing::warn!(%client_id, error = %err, "MQTT message not stored; closing the connection");
                        break;
                    }
                }
            }
        };
        let mut closing = false;
        for packet in packets {
            closing |= matches!(packet, Outgoing::Disconnect(_));
            if answers_a_publish(&packet) {
                unanswered.answered();
            }
            codec::write(version, packet, &mut buf);
        }
        if queue.is_empty() || buf.len() > 64 * 1024 || closing {
            // A client that stops reading is disconnected rather than
            // holding its queue (and the hub's memory) forever.
            let limit = server.config.write_timeout_secs;
            match tokio::time::timeout(std::time::Duration::from_secs(limit.into()), socket.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    server.broker.metrics().mqtt_slow_readers_closed.inc();
                    tracing::info!(%client_id, seconds = limit, "MQTT client has not read for write_timeout_secs; closing");
                    return;
                }
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

/// The packet id and QoS a PUBACK or PUBREC acknowledges.
fn acknowledged(packet: &Outgoing) -> Option<(u16, QoS)> {
    match packet {
        Outgoing::PubAck(pkid) => Some((*pkid, QoS::AtLeastOnce)),
        Outgoing::PubRec(pkid) => Some((*pkid, QoS::ExactlyOnce)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::net::mqtt::testing;

    /// A writer task on one end of a local connection; the other end.
    async fn writer(server: Arc<Server>) -> (mpsc::Sender<Out>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let (_, write_half) = socket.into_split();
        let (tx, rx) = mpsc::channel(16);
        let to = Client { id: "c".into(), version: Version::V311, problem_info: true, unanswered: Arc::default() };
        tokio::spawn(write_packets(write_half, rx, to, server));
        (tx, client)
    }

    #[tokio::test]
    async fn writes_in_order_and_stops_at_disconnect() {
        let (_dir, server) = testing::server();
        let (tx, mut client) = writer(server).await;
        tx.send(Out::Packet(Outgoing::PingResp)).await.unwrap();
        tx.send(Out::Packet(Outgoing::PubAck(0x0102))).await.unwrap();
        // 3.1.1 has no server DISCONNECT: nothing is written, the socket closes.
        tx.send(Out::Packet(Outgoing::Disconnect(codec::DisconnectReason::ProtocolError))).await.unwrap();
        let _ = tx.send(Out::Packet(Outgoing::PingResp)).await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [0xD0, 0x00, 0x40, 0x02, 0x01, 0x02]);
    }

    #[tokio::test]
    async fn acknowledges_after_the_commit_and_marks_the_release() {
        let (_dir, server) = testing::server();
        let log = server.broker.log();
        log.create_topic("t", cairn_log::TopicConfig::default()).await.unwrap();
        let batch = crate::net::mqtt::records::single_record("t/x", b"v", 1);
        let (_, append) = server.broker.produce_batch("t", None, batch).await.unwrap();
        let (tx, mut client) = writer(server.clone()).await;
        let release = Some(7);
        tx.send(Out::AfterCommit { appends: vec![append], packets: vec![Outgoing::PubRec(7)], release }).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [0x50, 0x02, 0x00, 0x07]);
        assert_eq!(log.offsets("t", 0).unwrap().end, 1, "the append committed");
        let slots = server.slots.lock().unwrap();
        assert!(slots["c"].awaiting_release.contains(&7));
    }
}
