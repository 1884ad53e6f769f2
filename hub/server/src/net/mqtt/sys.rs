//! `$SYS/broker/…` topics in Mosquitto's style: the hub's statistics,
//! published every `[mqtt] sys_interval_secs` to the clients subscribed to
//! them (`mosquitto_sub -t '$SYS/#'`).
//!
//! They are not stored in the log: a gateway on an SD card should not write
//! its own statistics to disk every few seconds. Each session reading
//! `$SYS` gets a small task (kept with its feeders) that builds the values
//! and queues them on the session's deliveries, as a feeder queues records.
//! The first round goes out at once with the retain flag set, as a
//! broker's retained `$SYS` messages would; later rounds are live messages.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use tokio::sync::mpsc;

use super::properties::MessageProperties;
use super::session::{Delivery, Filters};
use super::{status, topics, Server};

/// Whether a filter reads `$SYS` topics (a leading wildcard never does,
/// MQTT-4.7.2-1).
pub(super) fn reads_sys(filter: &str) -> bool {
    filter == "$SYS" || filter.starts_with("$SYS/")
}

/// The statistics now, and the status bridges reported, as `$SYS` topics
/// and their values.
pub(super) fn snapshot(server: &Server) -> Vec<(Cow<'static, str>, String)> {
    let mut all: Vec<(Cow<'static, str>, String)> =
        statistics(server).into_iter().map(|(topic, value)| (Cow::Borrowed(topic), value)).collect();
    let bridges = server.bridge_states.lock().unwrap_or_else(|e| e.into_inner());
    all.extend(bridges.iter().map(|(topic, state)| (Cow::Owned(topic.clone()), state.clone())));
    all
}

/// The hub's statistics in Mosquitto's `$SYS` topics.
fn statistics(server: &Server) -> Vec<(&'static str, String)> {
    let m = server.broker.metrics();
    let totals = status::totals(server);
    let stored: u64 = server.broker.log().list_topics().iter().flat_map(|t| &t.partitions).map(|p| p.bytes).sum();
    vec![
        ("$SYS/broker/version", format!("cairn {}", env!("CARGO_PKG_VERSION"))),
        ("$SYS/broker/uptime", format!("{} seconds", server.started.elapsed().as_secs())),
        ("$SYS/broker/clients/connected", totals.connected.to_string()),
        // As Mosquitto counts them: persistent sessions whose client is
        // away are disconnected clients.
        ("$SYS/broker/clients/disconnected", totals.sessions_away.to_string()),
        ("$SYS/broker/clients/total", (totals.connected + totals.sessions_away).to_string()),
        ("$SYS/broker/sessions/stored", totals.sessions_stored.to_string()),
        ("$SYS/broker/subscriptions/count", totals.subscriptions.to_string()),
        ("$SYS/broker/messages/inflight", totals.in_flight.to_string()),
        ("$SYS/broker/messages/received", m.mqtt_messages_in.get().to_string()),
        ("$SYS/broker/messages/sent", m.mqtt_messages_out.get().to_string()),
        ("$SYS/broker/messages/dropped", m.mqtt_queued_dropped.get().to_string()),
        ("$SYS/broker/retained messages/count", totals.retained_messages.to_string()),
        ("$SYS/broker/store/messages/bytes", stored.to_string()),
    ]
}

/// Queues the statistics every `interval` for the session's `$SYS`
/// filters, until the session ends (its deliveries close) or the task is
/// stopped (it unsubscribed).
pub(super) async fn feed(server: Arc<Server>, filters: Filters, tx: mpsc::Sender<Box<Delivery>>, interval: Duration) {
    let mut retain = true;
    loop {
        for (topic, value) in snapshot(&server) {
            let ids: Option<Vec<u32>> = {
                let filters = filters.read().unwrap_or_else(|e| e.into_inner());
                let matched: Vec<_> = filters.iter().filter(|s| topics::matches(&s.filter, &topic)).collect();
                (!matched.is_empty()).then(|| matched.iter().filter_map(|s| s.id).collect())
            };
            let Some(subscription_ids) = ids else { continue };
            // QoS 0: the lower of the published QoS (0, as Mosquitto's) and
            // any granted one.
            let delivery = Delivery {
                topic: topic.to_string(),
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain,
                properties: MessageProperties::default(),
                subscription_ids,
                source: None,
            };
            if tx.send(Box::new(delivery)).await.is_err() {
                return;
            }
        }
        retain = false;
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mqtt::testing;

    /// The bridge status topics in a snapshot, with their values.
    fn bridges(server: &Server) -> Vec<(String, String)> {
        let all = snapshot(server).into_iter().map(|(topic, value)| (topic.into_owned(), value));
        all.filter(|(topic, _)| topics::bridge_state(topic)).collect()
    }

    #[test]
    fn bridge_states_show_under_sys_within_their_bounds() {
        let (_dir, server) = testing::server();
        let topic = |i: usize| format!("$SYS/broker/connection/gw-{i}/state");
        server.note_bridge_state(&topic(0), b"1");
        assert_eq!(bridges(&server), [(topic(0), "1".to_string())]);
        // A status is short; a long one is cut.
        server.note_bridge_state(&topic(0), &[b'0'; 1000]);
        assert_eq!(bridges(&server)[0].1.len(), 64);
        // At most 1,000 topics; those kept may still change; empty clears.
        for i in 1..1100 {
            server.note_bridge_state(&topic(i), b"1");
        }
        assert_eq!(bridges(&server).len(), 1000);
        server.note_bridge_state(&topic(0), b"0");
        server.note_bridge_state(&topic(5), b"");
        let now = bridges(&server);
        assert_eq!((now.len(), now.contains(&(topic(0), "0".to_string()))), (999, true));
    }
}
