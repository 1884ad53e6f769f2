//! The broker: what producers and consumers ask of topics, above the log.
//!
//! For now this is the produce path: records are split by partition (keyed
//! records by the stable hash in `cairn_proto::partition`, unkeyed ones to a
//! sticky partition) and appended as one batch per partition. Consumer-group
//! coordination joins it with the native protocol.

mod partitioner;

pub use partitioner::Partitioner;

use cairn_proto::{BatchWriter, OwnedRecord};

use crate::log::{AppendOutcome, Log, LogError, Result};

/// Where one produce call's records went, per partition.
#[derive(Debug)]
pub struct Produced {
    pub partition: u32,
    /// Index in the input of each record sent to this partition, in order.
    pub records: Vec<usize>,
    /// This partition's own result: appends to different partitions succeed
    /// or fail independently, so a caller retries only what failed.
    pub outcome: Result<AppendOutcome>,
}

/// Produces records to topics of a [`Log`].
#[derive(Clone)]
pub struct Broker {
    log: Log,
    partitioner: Partitioner,
}

impl Broker {
    pub fn new(log: Log) -> Self {
        Broker {
            log,
            partitioner: Partitioner::default(),
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Writes `records` to `topic`, choosing partitions, one batch per
    /// partition appended concurrently (so they share a group commit). Order
    /// is kept within each partition. Fails as a whole only when nothing was
    /// sent (unknown topic, unencodable records).
    pub async fn produce(&self, topic: &str, records: &[OwnedRecord]) -> Result<Vec<Produced>> {
        let partitions = self.log.partition_count(topic)?;
        let split =
            self.partitioner
                .split(topic, partitions, records.iter().map(|r| r.key.as_deref()));
        let mut batches = Vec::with_capacity(split.len());
        for (partition, indexes) in split {
            let batch = encode(indexes.iter().map(|&i| &records[i]))?;
            batches.push((partition, indexes, batch));
        }
        let appends = batches.into_iter().map(|(partition, records, batch)| {
            let log = self.log.clone();
            async move {
                let outcome = log.append(topic, partition, batch).await;
                Produced {
                    partition,
                    records,
                    outcome,
                }
            }
        });
        Ok(futures::future::join_all(appends).await)
    }
}

fn encode<'a>(records: impl Iterator<Item = &'a OwnedRecord>) -> Result<Vec<u8>> {
    let mut writer =
        BatchWriter::new(Vec::new()).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    for r in records {
        writer
            .push_owned(r)
            .map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    }
    writer
        .finish()
        .map_err(|e| LogError::InvalidConfig(e.to_string()))
}
