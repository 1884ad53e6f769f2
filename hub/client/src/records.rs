//! Records: hello, produce, fetch, offsets by time, producer ids, and the
//! hub's counters.

use std::time::Duration;

use cairn_proto::frame::{self, Acks, RequestBody, ResponseBody};

use crate::{Client, Fetch, HubInfo, Produced, Result};

impl Client {
    /// Exchanges versions; the answer carries the hub's limits, so a client
    /// can size its batches to them.
    pub async fn hello(&self, client: &str) -> Result<HubInfo> {
        self.request(RequestBody::Hello { client, version: frame::PROTOCOL_VERSION }, |r| match r {
            ResponseBody::Hello { server, version, max_frame_bytes, max_batch_bytes, auth_required } => {
                Some(HubInfo { server: server.to_string(), version, max_frame_bytes, max_batch_bytes, auth_required })
            }
            _ => None,
        })
        .await
    }

    /// Appends one encoded batch. With `Acks::None` nothing comes back
    /// (`Ok(None)`); with `Acks::Durable` the offsets once durable.
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        batch: &[u8],
        acks: Acks,
    ) -> Result<Option<Produced>> {
        let body = RequestBody::Produce { topic, partition, acks, batch };
        if acks == Acks::None {
            self.cast(body).await?;
            return Ok(None);
        }
        self.request(body, |r| match r {
            ResponseBody::Produced { partition, base_offset, last_offset, duplicate, not_stored } => {
                Some(Some(Produced { partition, base_offset, last_offset, duplicate, not_stored }))
            }
            _ => None,
        })
        .await
    }

    /// Reads batches from `offset`, waiting up to `max_wait` when caught up.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<Fetch> {
        let max_wait_ms = max_wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let body = RequestBody::Fetch { topic, partition, offset, max_bytes, max_wait_ms };
        self.request_waiting(body, max_wait, |r| match r {
            ResponseBody::Fetched { start_offset, end_offset, batches, .. } => Some(Fetch {
                batches: batches.into_iter().map(|b| b.to_vec()).collect(),
                offset,
                start_offset,
                end_offset,
            }),
            _ => None,
        })
        .await
    }

    /// Per partition, the first offset with a timestamp ≥ `timestamp_ms`.
    pub async fn offsets_for_time(&self, topic: &str, timestamp_ms: i64) -> Result<Vec<(u32, Option<u64>)>> {
        self.request(RequestBody::OffsetsForTime { topic, timestamp_ms }, |r| match r {
            ResponseBody::Offsets { offsets } => Some(offsets),
            _ => None,
        })
        .await
    }

    pub async fn allocate_producer_id(&self) -> Result<i64> {
        self.request(RequestBody::AllocateProducerId, |r| match r {
            ResponseBody::ProducerId { producer_id } => Some(producer_id),
            _ => None,
        })
        .await
    }

    /// The hub's traffic counters, by name.
    pub async fn metrics(&self) -> Result<Vec<(String, u64)>> {
        self.request(RequestBody::Metrics, |r| match r {
            ResponseBody::Metrics { counters } => {
                Some(counters.iter().map(|(name, value)| (name.to_string(), *value)).collect())
            }
            _ => None,
        })
        .await
    }
}
