//! The sweeper: reclaims what clients that went away leave behind.
//!
//! Every few seconds it removes the stored sessions whose expiry has passed
//! (their record in `__mqtt_sessions`, their positions, their client id's
//! slot with its QoS 2 ids), so neither memory nor the log grows with every
//! client that ever connected. With `[mqtt] max_queued_messages` it also
//! moves the positions of sessions whose client is away forward, so no more
//! than that many messages per partition wait for them (the oldest are
//! skipped and counted).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::persist::{save_session, session_group};
use super::Server;
use crate::net::Shutdown;

/// How often the sweeper looks.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Sweeps until shutdown. After clients have gone, the memory their
/// connections and sessions freed is handed back to the OS: the
/// allocator would otherwise keep it, and a gateway's RSS would stay at the
/// high-water mark of its busiest minute.
pub(super) async fn run(server: Arc<Server>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    let metrics = server.broker.metrics().clone();
    let mut gone = metrics.mqtt_disconnects.get();
    // Connections and sessions are still being freed while a wave of
    // clients leaves, some after a look's trim: so the first quiet look
    // after a busy one trims once more.
    let mut busy = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let removed = sweep(&server).await;
                let now_gone = metrics.mqtt_disconnects.get();
                let was_busy = std::mem::replace(&mut busy, now_gone != gone || removed > 0);
                if busy || was_busy {
                    gone = now_gone;
                    server.sessions.shrink();
                    {
                        let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
                        if slots.len() * 4 < slots.capacity() {
                            slots.shrink_to_fit();
                        }
                    }
                    tokio::task::spawn_blocking(crate::memory::release_free_memory);
                }
            }
            _ = shutdown.recv() => return,
        }
    }
}

/// One look: expired sessions removed (returns how many), then queues
/// trimmed.
pub(super) async fn sweep(server: &Server) -> usize {
    let now = server.broker.log().steady_ms();
    let mut removed = 0;
    for client_id in server.sessions.expired(now) {
        if connected(server, &client_id) {
            continue; // its new connection decides what becomes of it
        }
        let _ = save_session(server, &client_id, None).await;
        let _ = server.broker.log().delete_group(&session_group(&client_id)).await;
        {
            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.get(&client_id).is_some_and(|s| s.kick.is_none()) {
                slots.remove(&client_id);
            }
        }
        server.broker.metrics().mqtt_sessions_expired.inc();
        tracing::debug!(%client_id, "expired MQTT session removed");
        removed += 1;
    }
    if server.config.max_queued_messages > 0 {
        trim_queues(server).await;
    }
    removed
}

fn connected(server: &Server, client_id: &str) -> bool {
    let slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
    slots.get(client_id).is_some_and(|s| s.kick.is_some())
}

/// Moves the positions of sessions whose client is away so that at most
/// `max_queued_messages` wait per partition (drop oldest).
async fn trim_queues(server: &Server) {
    let max = server.config.max_queued_messages;
    let away: HashSet<String> = server.sessions.away().into_iter().map(|id| session_group(&id)).collect();
    if away.is_empty() {
        return;
    }
    let log = server.broker.log();
    let Ok(groups) = log.list_groups() else { return };
    for (group, topics) in groups.into_iter().filter(|(g, _)| away.contains(g)) {
        let mut dropped = 0;
        for topic in topics {
            let Ok(committed) = log.committed_offsets(&group, &topic) else { continue };
            let mut moved = Vec::new();
            for (partition, offset) in committed {
                let Ok(end) = log.offsets(&topic, partition).map(|o| o.end) else { continue };
                if end.saturating_sub(offset) > max {
                    moved.push((partition, end - max));
                    dropped += end - max - offset;
                }
            }
            if !moved.is_empty() {
                let _ = log.commit_offsets(&group, &topic, &moved).await;
            }
        }
        if dropped > 0 {
            for _ in 0..dropped {
                server.broker.metrics().mqtt_queued_dropped.inc();
            }
            tracing::info!(%group, dropped, max, "MQTT session away: oldest messages over max_queued_messages skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mqtt::codec::Version;
    use crate::net::mqtt::persist::{load_session, StoredSession};
    use crate::net::mqtt::records::single_record;
    use crate::net::mqtt::session::tests::open;
    use crate::net::mqtt::session::End;
    use crate::net::mqtt::testing::{self, now_ms};
    use crate::net::mqtt::MqttConfig;

    #[tokio::test]
    async fn expired_sessions_go_with_their_positions_and_slots() {
        let (_dir, server) = testing::server();
        let log = server.broker.log().clone();
        log.create_topic("t", cairn_log::TopicConfig::default()).await.unwrap();
        let away = |expiry_secs, left_at_ms| StoredSession {
            subscriptions: vec![("t/#".into(), 1)],
            expiry_secs: Some(expiry_secs),
            left_at_ms: Some(left_at_ms),
            ..StoredSession::default()
        };
        for (id, session) in [("gone", away(1, now_ms() - 5_000)), ("kept", away(3600, now_ms()))] {
            save_session(&server, id, Some(&session)).await.unwrap();
            log.commit_offsets(&session_group(id), "t", &[(0, 0)]).await.unwrap();
            server.slots.lock().unwrap().entry(id.to_string()).or_default().awaiting_release.insert(3);
        }
        sweep(&server).await;
        assert_eq!(load_session(&server, "gone"), None);
        assert!(log.committed_offsets("mqtt.gone", "t").unwrap().is_empty());
        assert!(!server.slots.lock().unwrap().contains_key("gone"));
        assert!(load_session(&server, "kept").is_some());
        assert_eq!(log.committed_offsets("mqtt.kept", "t").unwrap(), vec![(0, 0)]);
        assert_eq!(server.broker.metrics().mqtt_sessions_expired.get(), 1);
    }

    #[tokio::test]
    async fn an_away_sessions_queue_keeps_only_the_newest() {
        let config = MqttConfig { max_queued_messages: 3, ..MqttConfig::default() };
        let (_dir, server) = testing::server_with(config);
        let log = server.broker.log().clone();
        log.create_topic("t", cairn_log::TopicConfig::default()).await.unwrap();
        // A persistent session subscribes, then its client goes away.
        let mut s = open(&server, Version::V311, testing::connect("away", false)).await;
        s.subscribe(
            vec![(
                super::super::codec::Subscription::plain("t/#", rumqttc::mqttbytes::QoS::AtLeastOnce),
                super::super::codec::RetainHandling::Never,
            )],
            false,
        )
        .await;
        s.close(End::Clean).await;
        for i in 0..10 {
            log.submit("t", 0, single_record("t/x", format!("{i}").as_bytes(), 1))
                .await
                .unwrap()
                .outcome()
                .await
                .unwrap();
        }
        sweep(&server).await;
        assert_eq!(log.committed_offsets("mqtt.away", "t").unwrap(), vec![(0, 7)], "the 3 newest wait");
        assert_eq!(server.broker.metrics().mqtt_queued_dropped.get(), 7);
        // A connected session's queue is its feeders' business.
        let _back = open(&server, Version::V311, testing::connect("away", false)).await;
        log.submit("t", 0, single_record("t/x", b"more", 1)).await.unwrap().outcome().await.unwrap();
        save_session(
            &server,
            "away",
            Some(&StoredSession { left_at_ms: None, ..load_session(&server, "away").unwrap() }),
        )
        .await
        .unwrap();
        sweep(&server).await;
        assert_eq!(log.committed_offsets("mqtt.away", "t").unwrap(), vec![(0, 7)]);
    }
}
