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

/// Where one produce call's records went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub outcome: AppendOutcome,
    /// Index in the input of each record written to this partition, in order.
    pub records: Vec<usize>,
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
    /// is kept within each partition.
    pub async fn produce(&self, topic: &str, records: &[OwnedRecord]) -> Result<Vec<Produced>> {
        let partitions = self.log.partition_count(topic)?;
        let split =
            self.partitioner
                .split(topic, partitions, records.iter().map(|r| r.key.as_deref()));
        let appends = split.into_iter().map(|(partition, indexes)| {
            let log = self.log.clone();
            let batch = encode(indexes.iter().map(|&i| &records[i]));
            async move {
                let outcome = log.append(topic, partition, batch?).await?;
                Ok::<_, LogError>(Produced {
                    partition,
                    outcome,
                    records: indexes,
                })
            }
        });
        let mut out = Vec::new();
        for result in futures::future::join_all(appends).await {
            out.push(result?);
        }
        Ok(out)
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
