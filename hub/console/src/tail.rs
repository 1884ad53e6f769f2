//! `/api/tail?topic=…`: a topic's new records as server-sent events, for
//! the status page's live tail. Each partition is long-polled from its end
//! by its own task (as a consumer would, through the broker's fetch); the
//! records go to the browser as JSON with the value shown as text: JSON or
//! text as is, CBOR decoded to JSON, anything else as hex.
//!
//! A person reads a few records a second, a gateway may take in hundreds
//! of thousands: each partition is polled at most [`POLLS_PER_SEC`] times a
//! second for at most its [`NEWEST`] newest records, so an open page costs
//! the hub the same at any rate (older records in between are skipped).
//!
//! A tail ends when the browser goes away, or when the hub shuts down (so a
//! graceful stop does not wait for open pages).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cairn_proto::record::RecordView;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{access, AppState};

/// How long one long poll waits for new records before polling again.
const POLL: Duration = Duration::from_secs(5);

/// Polls per second and partition, at most.
const POLLS_PER_SEC: u32 = 5;

/// Records per poll and partition, at most: the newest.
const NEWEST: u64 = 100;

/// Most bytes read per poll.
const POLL_BYTES: usize = 64 * 1024;

/// Records waiting for a slow browser; past it the oldest are not shown.
const BACKLOG: usize = 256;

#[derive(serde::Deserialize)]
pub(crate) struct TailQuery {
    topic: String,
}

pub(crate) async fn tail(
    State((console, shutdown)): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<TailQuery>,
) -> Response {
    if let Err(refused) = access::check(&console, peer.0, &headers).await {
        return refused;
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(BACKLOG);
    let broker = console.0.broker.clone();
    match broker.log().describe_topic(&q.topic) {
        Err(err) => {
            // An `error` event rather than a 404: the page shows the reason,
            // and the browser's console stays clean.
            let event = Event::default().event("error").data(json!({ "message": err.to_string() }).to_string());
            let _ = tx.try_send(Ok(event));
        }
        Ok(info) => {
            for p in info.partitions {
                let (broker, tx, topic, mut shutdown) = (broker.clone(), tx.clone(), q.topic.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = follow(&broker, &topic, p.partition, p.end_offset, &tx) => {}
                        _ = tx.closed() => {}
                        _ = shutdown.recv() => {}
                    }
                });
            }
        }
    }
    drop(tx);
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response()
}

/// Sends the partition's records from `offset` on, as they come.
async fn follow(
    broker: &cairn_hub::broker::Broker,
    topic: &str,
    partition: u32,
    mut offset: u64,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut pace = tokio::time::interval(Duration::from_secs(1) / POLLS_PER_SEC);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        pace.tick().await;
        // Far behind (a busy topic): only the newest records are worth showing.
        if let Ok(o) = broker.log().offsets(topic, partition) {
            offset = offset.max(o.end.saturating_sub(NEWEST));
        }
        let fetch = match broker.fetch(topic, partition, offset, POLL_BYTES, POLL).await {
            Ok(f) => f,
            Err(cairn_log::LogError::OffsetOutOfRange { .. }) => {
                // Retention passed us: carry on from what is stored.
                let Ok(o) = broker.log().offsets(topic, partition) else { return };
                offset = o.start.max(offset.min(o.end));
                continue;
            }
            Err(err) => {
                let event = Event::default().event("error").data(json!({ "message": err.to_string() }).to_string());
                let _ = tx.send(Ok(event)).await;
                return;
            }
        };
        for r in fetch.records().take(NEWEST as usize) {
            // A full queue (a slow browser) skips records rather than
            // holding the log.
            let _ = tx.try_send(Ok(Event::default().data(describe(partition, &r).to_string())));
        }
        offset = fetch.next_offset();
    }
}

/// A record as the page shows it.
fn describe(partition: u32, r: &RecordView<'_>) -> serde_json::Value {
    let (format, value) = render(r.value);
    json!({
        "partition": partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp,
        "key": r.key.map(|k| String::from_utf8_lossy(k).into_owned()),
        "format": format,
        "value": value,
    })
}

/// The value as text, and what it was: `json`, `text`, `cbor` or `binary`.
fn render(value: &[u8]) -> (&'static str, String) {
    if let Ok(text) = std::str::from_utf8(value) {
        let json = serde_json::from_str::<serde_json::Value>(text).is_ok();
        return (if json { "json" } else { "text" }, text.to_string());
    }
    if let Ok(cbor) = serde_cbor::from_slice::<serde_cbor::Value>(value) {
        if let Ok(json) = serde_json::to_string(&cbor) {
            return ("cbor", json);
        }
    }
    ("binary", value.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn values_are_shown_as_json_text_cbor_or_hex() {
        assert_eq!(render(br#"{"t":21.5}"#), ("json", r#"{"t":21.5}"#.to_string()));
        assert_eq!(render(b"21.5 C"), ("text", "21.5 C".to_string()));
        let cbor = serde_cbor::to_vec(&serde_cbor::Value::Map(
            [(serde_cbor::Value::Text("t".into()), serde_cbor::Value::Float(21.5))].into_iter().collect(),
        ))
        .unwrap();
        assert_eq!(render(&cbor), ("cbor", r#"{"t":21.5}"#.to_string()));
        assert_eq!(render(&[0xff, 0x00]), ("binary", "ff00".to_string()));
    }
}
