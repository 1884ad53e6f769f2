//! Records: hello, produce (acknowledged by the writer task once durable),
//! fetch (long polls run beside the connection), offsets by time, producer
//! ids, and the counters.

use std::time::Duration;

use cairn_log::LogError;
use cairn_proto::frame::{self, Acks, ErrorCode, RequestBody, Response, ResponseBody, PROTOCOL_VERSION};

use super::Handler;
use crate::net::native::outgoing::{encode_log_error, Outgoing};

impl Handler {
    pub(super) async fn records_request(&self, id: u32, body: RequestBody<'_>) {
        match body {
            RequestBody::Hello { client, version } => {
                tracing::debug!(client, version, "hello");
                let max_batch_bytes = self.broker.log().max_batch_bytes() as u32;
                let body = ResponseBody::Hello {
                    server: concat!("cairn ", env!("CARGO_PKG_VERSION")),
                    version: PROTOCOL_VERSION,
                    max_frame_bytes: self.limits.max_frame_bytes as u32,
                    max_batch_bytes,
                    auth_required: self.principal().is_err(),
                };
                self.send(id, body).await;
            }
            RequestBody::Produce { topic, partition, acks, batch } => {
                // Queued in arrival order before the next frame is read, so
                // pipelined batches of one connection keep their order.
                let submitted = self.broker.produce_batch(topic, partition, batch.to_vec()).await;
                let (partition, pending) = match submitted {
                    Ok(p) => p,
                    Err(err) => {
                        if acks == Acks::Durable {
                            self.send_log_error(id, &err).await;
                        } else {
                            tracing::debug!(error = %err, topic, "produce with acks=none failed");
                        }
                        return;
                    }
                };
                if acks == Acks::None {
                    return;
                }
                // The writer awaits the commit and answers, in order: no task
                // per produce, and the bounded queue is the backpressure.
                let _ = self.responses.send(Outgoing::Ack { id, partition, pending }).await;
            }
            RequestBody::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
                // Long polls run beside the connection so they do not hold up
                // requests pipelined behind them.
                let permit = self.in_flight.clone().acquire_owned().await;
                let (broker, responses, mut shutdown) =
                    (self.broker.clone(), self.responses.clone(), self.shutdown.clone());
                let topic = topic.to_string();
                let wait = Duration::from_millis(u64::from(max_wait_ms.min(self.limits.max_fetch_wait_ms)));
                let max_bytes = (max_bytes as usize).min(self.limits.max_frame_bytes.saturating_sub(1024)).max(1);
                tokio::spawn(async move {
                    let _permit = permit;
                    let fetched = tokio::select! {
                        f = broker.fetch(&topic, partition, offset, max_bytes, wait) => f,
                        _ = shutdown.recv() => Err(LogError::Closed),
                    };
                    let mut out = Vec::new();
                    match fetched {
                        Ok(f) => {
                            count_fetched(broker.metrics(), &f);
                            // Sized once: the response is the batches plus a little CBOR.
                            out.reserve(f.batches.iter().map(|b| b.len() + 8).sum::<usize>() + 128);
                            let body = ResponseBody::Fetched {
                                partition,
                                start_offset: f.start_offset,
                                end_offset: f.end_offset,
                                batches: f.batches.iter().map(|b| serde_bytes::Bytes::new(b)).collect(),
                            };
                            frame::encode(&Response { id, body }, &mut out);
                        }
                        Err(err) => encode_log_error(id, &err, &mut out),
                    }
                    let _ = responses.send(Outgoing::Frame(out)).await;
                });
            }
            RequestBody::OffsetsForTime { topic, timestamp_ms } => {
                let log = self.broker.log();
                let result = log
                    .partition_count(topic)
                    .and_then(|n| (0..n).map(|p| Ok((p, log.offset_for_timestamp(topic, p, timestamp_ms)?))).collect());
                match result {
                    Ok(offsets) => self.send(id, ResponseBody::Offsets { offsets }).await,
                    Err(err) => self.send_log_error(id, &err).await,
                }
            }
            RequestBody::AllocateProducerId => match self.broker.log().allocate_producer_id().await {
                Ok(producer_id) => self.send(id, ResponseBody::ProducerId { producer_id }).await,
                Err(err) => self.send_log_error(id, &err).await,
            },
            RequestBody::Metrics => {
                let mut counters: Vec<(&str, u64)> = self.broker.metrics().snapshot();
                // The log's group commit at work: batches per commit, and
                // how long commits (mostly the disk's fsync) take.
                counters.extend(self.broker.log().stats().counters());
                let uplinks = uplink_counters(self.broker.uplinks().map(|u| u.list()).unwrap_or_default());
                counters.extend(uplinks.iter().map(|(name, value)| (name.as_str(), *value)));
                self.send(id, ResponseBody::Metrics { counters }).await;
            }
            _ => self.send_error(id, ErrorCode::UnknownRequest, "not a records request").await,
        }
    }
}

/// Counts the records and bytes of a fetch response: from the offset asked
/// for (a first batch may start before it) to the end of its last batch.
fn count_fetched(metrics: &crate::metrics::Metrics, f: &cairn_proto::fetch::Fetch) {
    let Some(last) = f.batches.last() else { return };
    let Ok(header) = cairn_proto::batch::BatchHeader::read(last) else { return };
    metrics.records_fetched.add(header.next_offset().saturating_sub(f.offset));
    metrics.bytes_fetched.add(f.batches.iter().map(|b| b.len() as u64).sum());
}

/// Each uplink's backlog and counters, named `uplink.<name>.<counter>`.
fn uplink_counters(uplinks: Vec<cairn_proto::frame::UplinkInfo>) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for u in uplinks {
        let age = u.oldest_unsent_age_ms.map_or(0, |ms| ms.max(0) as u64);
        let connected = u64::from(u.state == "connected");
        for (counter, value) in [
            ("connected", connected),
            ("backlog_records", u.backlog_records),
            ("backlog_bytes", u.backlog_bytes),
            ("records_per_sec", u.records_per_sec),
            ("oldest_unsent_age_ms", age),
            ("records_sent", u.records_sent),
            ("bytes_sent", u.bytes_sent),
            ("records_resent", u.records_resent),
            ("records_skipped", u.records_skipped),
            ("records_received", u.records_received),
            ("connects", u.connects),
            ("link_failures", u.link_failures),
        ] {
            out.push((format!("uplink.{}.{counter}", u.name), value));
        }
    }
    out
}
