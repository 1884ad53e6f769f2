//! `/api/overview`: everything the status page shows, as one JSON document
//! (topics, groups with lag per partition, MQTT clients, plugins, uplinks,
//! disk, and the charts' history). Built on request, off the async threads.

use serde_json::{json, Value};

use crate::{lag, Console};

/// The overview now.
pub(crate) fn build(console: &Console) -> Value {
    let c = &console.0;
    let broker = &c.broker;
    let log = broker.log();
    let (points, topic_rates) = {
        let h = c.history.lock().unwrap_or_else(|e| e.into_inner());
        (h.points(), h.topic_rates())
    };
    let last = points.last();
    let topics = log.list_topics();
    let stored: u64 = topics.iter().flat_map(|t| &t.partitions).map(|p| p.bytes).sum();
    let disk = cairn_log::disk_space(&c.data_dir).unwrap_or_default();
    let file_bytes = std::fs::metadata(&c.log_file).map(|m| m.len()).unwrap_or(0);
    let m = broker.metrics();
    let totals = c.mqtt.totals();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": c.started.elapsed().as_secs(),
        "now_ms": log.now_ms(),
        "disk": {
            "data_dir": c.data_dir.display().to_string(),
            "stored_bytes": stored,
            "file_bytes": file_bytes,
            "free_bytes": disk.free_bytes,
            "total_bytes": disk.total_bytes,
        },
        "rates": {
            "records_in_per_sec": last.map_or(0.0, |p| p.records_in_per_sec),
            "records_out_per_sec": last.map_or(0.0, |p| p.records_out_per_sec),
        },
        "history": points,
        "topics": topics.iter().map(|t| json!({
            "name": t.name,
            "cleanup": t.config.cleanup_policy.as_str(),
            "retention": retention(t.config.retention_ms, t.config.retention_bytes),
            "records_per_sec": topic_rates.get(&t.name).copied().unwrap_or(0.0),
            "partitions": t.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "bytes": p.bytes,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "groups": lag::groups(broker).iter().map(|g| json!({
            "name": g.state.group,
            "members": g.members,
            "lag": g.total(),
            "partitions": g.state.partitions.iter().map(|p| json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "end_offset": p.end_offset,
                "lag": p.lag,
                "owner": p.owner,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "mqtt": {
            "connected": totals.connected,
            "subscriptions": totals.subscriptions,
            "messages_in": m.mqtt_messages_in.get(),
            "messages_out": m.mqtt_messages_out.get(),
            "clients": c.mqtt.clients().iter().map(|cl| json!({
                "client_id": cl.client_id,
                "peer": cl.peer.to_string(),
                "version": cl.version,
                "subscriptions": cl.subscriptions,
                "in_flight": cl.in_flight,
                "connected_ms": cl.connected_ms,
            })).collect::<Vec<_>>(),
        },
        "plugins": broker.plugins().and_then(|p| p.list().ok()).unwrap_or_default().iter().map(|p| json!({
            "name": p.name,
            "attachments": p.attachments.iter().map(|a| json!({
                "name": a.name,
                "topic": a.topic,
                "derived_to": a.derived_to,
                "status": a.status,
                "status_reason": a.status_reason,
                "batches": a.batches,
                "records_in": a.records_in,
                "records_out": a.records_out,
                "records_dropped": a.records_dropped,
                "dead_lettered": a.dead_lettered,
                "failures": a.failures,
                "last_error": a.last_error,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "uplinks": broker.uplinks().map(|u| u.list()).unwrap_or_default().iter().map(|u| json!({
            "name": u.name,
            "kind": u.kind,
            "state": u.state,
            "upstream": u.upstream,
            "records_sent": u.records_sent,
            "records_per_sec": u.records_per_sec,
            "backlog_records": u.backlog_records,
            "oldest_unsent_age_ms": u.oldest_unsent_age_ms,
            "last_error": u.last_error,
        })).collect::<Vec<_>>(),
    })
}

/// A topic's retention in words: "7d, 1 GiB per partition", "forever".
fn retention(ms: Option<i64>, bytes: Option<u64>) -> String {
    let time = ms.map(|ms| {
        let secs = ms / 1000;
        match secs {
            s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
            s if s % 3_600 == 0 && s > 0 => format!("{}h", s / 3_600),
            s if s % 60 == 0 && s > 0 => format!("{}min", s / 60),
            _ => format!("{ms}ms"),
        }
    });
    let size = bytes.map(|b| {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match UNITS.iter().find(|(u, _)| b >= *u && b % u == 0) {
            Some((u, name)) => format!("{} {name} per partition", b / u),
            None => format!("{b} bytes per partition"),
        }
    });
    match (time, size) {
        (None, None) => "forever".to_string(),
        (Some(t), None) => t,
        (None, Some(s)) => s,
        (Some(t), Some(s)) => format!("{t}, {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::retention;

    #[test]
    fn retention_in_words() {
        assert_eq!(retention(None, None), "forever");
        assert_eq!(retention(Some(7 * 86_400_000), Some(1 << 30)), "7d, 1 GiB per partition");
        assert_eq!(retention(Some(3_600_000), None), "1h");
        assert_eq!(retention(Some(1500), Some(1000)), "1500ms, 1000 bytes per partition");
    }
}
