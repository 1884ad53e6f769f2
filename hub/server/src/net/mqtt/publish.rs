//! The publish path: an inbound PUBLISH (or a run of them) stored as
//! records of its Cairn topic and in the retained store, PUBACK / PUBREC
//! only after the durable commit, and the QoS 2 handshake (PUBREC → PUBREL
//! → PUBCOMP) that stores a message once.
//!
//! More of `impl Session`: state in `session.rs`. The free functions also
//! publish a will (`connection.rs`).

use bytes::Bytes;
use cairn_log::{LogError, PendingAppend};
use rumqttc::mqttbytes::QoS;

use super::access::may_write;
use super::codec::{DisconnectReason, Outgoing, PubRefusal, Version};
use super::properties::MessageProperties;
use super::records::{ensure_retained_topic, ensure_topic, message_batch, retained_record, Message, Origin};
use super::session::{End, Session};
use super::topics::{self, TopicError, RETAINED_TOPIC};
use super::writer::Out;
use super::Server;

impl Session {
    /// Stores a run of QoS 0/1 messages to one topic as one batch; PUBACKs
    /// for the QoS 1 ones after its commit.
    pub(super) async fn publish_run(
        &mut self,
        topic: &str,
        run: Vec<(Bytes, QoS, u16, MessageProperties)>,
    ) -> Option<End> {
        let metrics = self.server.broker.metrics();
        for _ in &run {
            metrics.mqtt_messages_in.inc();
        }
        if !self.may_publish(topic) {
            return self.refuse_publish(topic, run.iter().map(|(_, qos, pkid, _)| (*qos, *pkid))).await;
        }
        let messages: Vec<Message<'_>> = run.iter().map(|(p, qos, _, props)| (p.as_ref(), *qos, props)).collect();
        let appends = match publish_many(&self.server, topic, &messages, self.publisher()).await {
            Ok(appends) => appends,
            Err(err) => {
                let packets: Vec<(QoS, u16)> = run.iter().map(|(_, qos, pkid, _)| (*qos, *pkid)).collect();
                return self.publish_failed(err, &packets).await;
            }
        };
        let acks: Vec<Outgoing> = run
            .iter()
            .filter(|(_, qos, _, _)| *qos == QoS::AtLeastOnce)
            .map(|(_, _, pkid, _)| Outgoing::PubAck(*pkid))
            .collect();
        if !acks.is_empty() {
            self.send(Out::AfterCommit { appends, packets: acks, release: None }).await;
        }
        None
    }

    /// The client id to store with its messages: only while it holds a No
    /// Local subscription, the only reader of it.
    fn publisher(&self) -> Option<&str> {
        let filters = self.filters.read().unwrap_or_else(|e| e.into_inner());
        filters.iter().any(|s| s.no_local).then_some(self.client_id.as_str())
    }

    /// Whether the principal may publish (or retain) to this MQTT topic.
    fn may_publish(&self, topic: &str) -> bool {
        may_write(self.server.broker.auth(), &self.principal, &self.client_id, topic)
    }

    /// Refuses PUBLISHes the principal may not make; nothing is stored.
    /// MQTT 5 answers QoS 1/2 with reason 0x87 (not authorized) and drops
    /// QoS 0; 3.1.1 has no way to say so and closes the connection
    /// (MQTT-3.3.5-2).
    async fn refuse_publish(&mut self, topic: &str, packets: impl Iterator<Item = (QoS, u16)>) -> Option<End> {
        let (client_id, principal) = (&self.client_id, &self.principal.name);
        tracing::info!(%client_id, %principal, topic, "MQTT publish not authorized");
        match self.version {
            Version::V311 => Some(End::Abnormal),
            Version::V5 => {
                self.answer_refused(packets, PubRefusal::NotAuthorized).await;
                None
            }
        }
    }

    /// MQTT 5: a PUBACK / PUBREC with the reason for each QoS 1/2 PUBLISH
    /// refused (QoS 0 has no answer).
    async fn answer_refused(&mut self, packets: impl Iterator<Item = (QoS, u16)>, why: PubRefusal) {
        for (qos, pkid) in packets.filter(|(qos, _)| *qos != QoS::AtMostOnce) {
            self.send(Out::Packet(Outgoing::PubRefused { pkid, qos, why })).await;
        }
    }

    /// A publish that could not be stored. A valid topic name the hub does
    /// not take (`$…`, or one a mapping rule cannot store): MQTT 5 answers
    /// QoS 1/2 with reason 0x90 and the connection stays; 3.1.1 has no
    /// reason codes, so, as Mosquitto does, it is acknowledged and dropped
    /// (MQTT-3.3.5-2 allows that or a close; the close broke clients and
    /// test suites that probe `$` topics). A QoS 0 one in MQTT 5, or a topic
    /// no client may send (with a wildcard, MQTT-3.3.2-2): the connection
    /// closes (MQTT 5 with DISCONNECT 0x90). A log failure closes the
    /// connection without a word, so the client retries (nothing was
    /// acknowledged).
    async fn publish_failed(&mut self, err: PublishError, packets: &[(QoS, u16)]) -> Option<End> {
        match err {
            PublishError::Topic(err) => {
                let (peer, client_id) = (&self.peer, &self.client_id);
                let not_taken = matches!(err, TopicError::Reserved(_) | TopicError::Mapped { .. });
                if not_taken && self.version == Version::V311 {
                    tracing::info!(%peer, %client_id, error = %err, "MQTT 3.1.1 publish to a topic the hub does not take; acknowledged and dropped");
                    for &(qos, pkid) in packets {
                        match qos {
                            QoS::AtMostOnce => {}
                            QoS::AtLeastOnce => self.send(Out::Packet(Outgoing::PubAck(pkid))).await,
                            QoS::ExactlyOnce => self.send(Out::Packet(Outgoing::PubRec(pkid))).await,
                        }
                    }
                    return None;
                }
                if not_taken && packets.iter().all(|(qos, _)| *qos != QoS::AtMostOnce) {
                    tracing::info!(%peer, %client_id, error = %err, "MQTT publish to a topic the hub does not take; refused");
                    self.answer_refused(packets.iter().copied(), PubRefusal::TopicNameInvalid).await;
                    return None;
                }
                tracing::info!(%peer, %client_id, error = %err, "MQTT publish to a topic the hub does not take; closing");
                self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::TopicNameInvalid))).await;
            }
            PublishError::Log(err) => {
                tracing::warn!(client_id = %self.client_id, error = %err, "MQTT publish could not be stored; closing so the client retries");
            }
            // Handled by `on_publish` before it gets here.
            PublishError::RetainedQuota => {}
        }
        Some(End::Abnormal)
    }

    /// A PUBLISH outside a run: stored, then PUBACK / PUBREC once it is
    /// committed; a QoS 2 retransmission is answered, not stored again.
    pub(super) async fn on_publish(
        &mut self,
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        pkid: u16,
        properties: MessageProperties,
    ) -> Option<End> {
        self.server.broker.metrics().mqtt_messages_in.inc();
        if !properties.payload_format_holds(&payload) {
            let (peer, client_id) = (&self.peer, &self.client_id);
            tracing::info!(%peer, %client_id, %topic, "MQTT publish with payload format indicator 1 is not UTF-8; refused");
            if qos == QoS::AtMostOnce {
                self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::PayloadFormatInvalid))).await;
                return Some(End::Abnormal);
            }
            self.answer_refused([(qos, pkid)].into_iter(), PubRefusal::PayloadFormatInvalid).await;
            return None;
        }
        if qos == QoS::ExactlyOnce && self.stored_qos2(pkid) {
            // A retransmission of a message already stored.
            self.send(Out::Packet(Outgoing::PubRec(pkid))).await;
            return None;
        }
        if !self.may_publish(&topic) {
            return self.refuse_publish(&topic, [(qos, pkid)].into_iter()).await;
        }
        let publisher = self.publisher();
        let mut published = publish(&self.server, &topic, &payload, qos, retain, &properties, publisher).await;
        if let Err(PublishError::RetainedQuota) = published {
            self.server.broker.metrics().mqtt_retained_refused.inc();
            let (client_id, max) = (&self.client_id, self.server.config.max_retained_messages);
            match self.version {
                // MQTT 5 is told, and nothing is stored.
                Version::V5 => {
                    tracing::info!(%client_id, %topic, max, "retained message refused: max_retained_messages or max_retained_bytes reached");
                    self.answer_refused([(qos, pkid)].into_iter(), PubRefusal::QuotaExceeded).await;
                    return None;
                }
                // 3.1.1 cannot be told: the message is published, not retained.
                Version::V311 => {
                    tracing::warn!(%client_id, %topic, max, "retained store full (max_retained_messages or max_retained_bytes): message published but not retained");
                    published = publish(&self.server, &topic, &payload, qos, false, &properties, publisher).await;
                }
            }
        }
        let mut appends = match published {
            Ok(appends) => appends,
            Err(err) => return self.publish_failed(err, &[(qos, pkid)]).await,
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send(Out::AfterCommit { appends, packets: vec![Outgoing::PubAck(pkid)], release: None }).await
            }
            QoS::ExactlyOnce => {
                // A persistent session stores the packet id with the
                // message (same wait before PUBREC), so a
                // retransmission after a hub restart is recognised. A new
                // message may reuse the id of one refused earlier.
                self.with_slot(|slot| slot.refused_qos2.remove(&pkid));
                self.qos2.insert(pkid);
                if self.keep {
                    if let Some(stored) = self.save_submit().await {
                        appends.push(stored);
                    }
                }
                self.send(Out::AfterCommit { appends, packets: vec![Outgoing::PubRec(pkid)], release: Some(pkid) })
                    .await
            }
        }
        None
    }

    /// PUBREL: the QoS 2 packet id is released, PUBCOMP (MQTT 5 says
    /// whether the id was known).
    pub(super) async fn on_pubrel(&mut self, pkid: u16) {
        let awaited = self.with_slot(|slot| slot.awaiting_release.remove(&pkid));
        let held = self.qos2.remove(&pkid);
        if held && self.keep {
            // Forgetting the id need not be waited for.
            let _ = self.save_submit().await;
        }
        self.send(Out::Packet(Outgoing::PubComp { pkid, found: awaited || held })).await;
    }
}

/// Why a PUBLISH could not be stored.
pub(super) enum PublishError {
    Topic(topics::TopicError),
    Log(LogError),
    /// Retaining it would pass `max_retained_messages` or `max_retained_bytes`.
    RetainedQuota,
}

/// Submits an MQTT message as a record of its Cairn topic (and the retained
/// store when `retain`); returns the appends to wait for. `publisher`: the
/// client id to store with it (for No Local).
pub(super) async fn publish(
    server: &Server,
    mqtt_topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    properties: &MessageProperties,
    publisher: Option<&str>,
) -> Result<Vec<PendingAppend>, PublishError> {
    if topics::bridge_state(mqtt_topic) {
        // Nothing to store or wait for.
        server.note_bridge_state(mqtt_topic, payload);
        return Ok(Vec::new());
    }
    let route = server.config.mapping.route(mqtt_topic).map_err(PublishError::Topic)?;
    if retain {
        let mut retained = server.retained.lock().unwrap_or_else(|e| e.into_inner());
        retained.sync(server.broker.log());
        if !retained.admits(mqtt_topic, payload, server.retain_limits()) {
            return Err(PublishError::RetainedQuota);
        }
    }
    let now = server.broker.log().now_ms();
    let origin = Origin { retain, publisher };
    let batch = message_batch(&route, mqtt_topic, &[(payload, qos, properties)], now, origin);
    let mut appends = Vec::with_capacity(2);
    appends.push(produce(server, &route.topic, batch).await?);
    if retain {
        // The retained store is keyed by the MQTT topic itself.
        ensure_retained_topic(server).await.map_err(PublishError::Log)?;
        let batch = retained_record(mqtt_topic, payload, qos, properties, now);
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
    messages: &[Message<'_>],
    publisher: Option<&str>,
) -> Result<Vec<PendingAppend>, PublishError> {
    if topics::bridge_state(mqtt_topic) {
        if let Some((payload, ..)) = messages.last() {
            server.note_bridge_state(mqtt_topic, payload);
        }
        return Ok(Vec::new());
    }
    let route = server.config.mapping.route(mqtt_topic).map_err(PublishError::Topic)?;
    let origin = Origin { retain: false, publisher };
    let batch = message_batch(&route, mqtt_topic, messages, server.broker.log().now_ms(), origin);
    Ok(vec![produce(server, &route.topic, batch).await?])
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::net::mqtt::codec::Version;
    use crate::net::mqtt::persist::load_session;
    use crate::net::mqtt::session::tests::open;
    use crate::net::mqtt::testing;

    /// Records stored in partition 0 of a topic.
    fn stored(server: &Server, topic: &str) -> u64 {
        server.broker.log().offsets(topic, 0).map_or(0, |o| o.end)
    }

    #[tokio::test]
    async fn publish_stores_in_the_topic_and_the_retained_store() {
        let (_dir, server) = testing::server();
        for append in
            publish(&server, "t/a", b"1", QoS::AtLeastOnce, false, &Default::default(), None).await.ok().unwrap()
        {
            append.outcome().await.unwrap();
        }
        assert_eq!((stored(&server, "t"), stored(&server, RETAINED_TOPIC)), (1, 0));
        let appends =
            publish(&server, "t/a", b"2", QoS::AtLeastOnce, true, &Default::default(), None).await.ok().unwrap();
        assert_eq!(appends.len(), 2);
        for append in appends {
            append.outcome().await.unwrap();
        }
        assert_eq!((stored(&server, "t"), stored(&server, RETAINED_TOPIC)), (2, 1));
        assert!(matches!(
            publish(&server, "a/+/b", b"x", QoS::AtLeastOnce, false, &Default::default(), None).await,
            Err(PublishError::Topic(_))
        ));
    }

    #[tokio::test]
    async fn a_run_is_one_batch_acknowledged_after_its_commit() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", true)).await;
        let (tx, mut sent) = mpsc::channel(16);
        s.out = Some(tx);
        let run = vec![
            (Bytes::from_static(b"1"), QoS::AtLeastOnce, 1, MessageProperties::default()),
            (Bytes::from_static(b"2"), QoS::AtMostOnce, 0, MessageProperties::default()),
            (Bytes::from_static(b"3"), QoS::AtLeastOnce, 2, MessageProperties::default()),
        ];
        assert_eq!(s.publish_run("t/a", run).await, None);
        let Ok(Out::AfterCommit { appends, packets, release: None }) = sent.try_recv() else { panic!("no PUBACKs") };
        assert_eq!(appends.len(), 1, "one batch");
        assert!(matches!(packets[..], [Outgoing::PubAck(1), Outgoing::PubAck(2)]));
        appends.into_iter().next().unwrap().outcome().await.unwrap();
        assert_eq!(stored(&server, "t"), 3);

        let run = vec![(Bytes::from_static(b"x"), QoS::AtLeastOnce, 3, MessageProperties::default())];
        assert_eq!(s.publish_run("a/+/b", run).await, Some(End::Abnormal));
        let reason = DisconnectReason::TopicNameInvalid;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::Disconnect(r))) if r == reason));
    }

    #[tokio::test]
    async fn qos_2_is_stored_once_until_released() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", false)).await;
        let (tx, mut sent) = mpsc::channel(16);
        s.out = Some(tx);
        let payload = Bytes::from_static(b"m");
        assert_eq!(
            s.on_publish("t/a".into(), payload.clone(), QoS::ExactlyOnce, false, 7, Default::default()).await,
            None
        );
        let Ok(Out::AfterCommit { appends, packets, release: Some(7) }) = sent.try_recv() else { panic!("no PUBREC") };
        assert!(matches!(packets[..], [Outgoing::PubRec(7)]));
        // The message and, for a persistent session, its packet id.
        assert_eq!(appends.len(), 2);
        for append in appends {
            append.outcome().await.unwrap();
        }
        assert_eq!(load_session(&server, "a").unwrap().qos2, vec![7]);
        // The writer marks the id once stored; a retransmission is only answered.
        s.with_slot(|slot| slot.awaiting_release.insert(7));
        assert_eq!(s.on_publish("t/a".into(), payload, QoS::ExactlyOnce, false, 7, Default::default()).await, None);
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::PubRec(7)))));
        assert_eq!(stored(&server, "t"), 1);

        s.on_pubrel(7).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::PubComp { pkid: 7, found: true }))));
        assert!(s.qos2.is_empty() && !s.stored_qos2(7));
        // Released already: not found (MQTT 5 reason 0x92), answered all the same.
        s.on_pubrel(7).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::PubComp { pkid: 7, found: false }))));
    }
}
