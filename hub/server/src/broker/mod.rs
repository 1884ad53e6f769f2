//! The broker: what producers and consumers ask of topics, above the log.
//!
//! - Produce: a batch's partition is chosen (keyed records by the stable
//!   hash in `cairn_proto::partition`, unkeyed ones by the sticky
//!   [`Partitioner`]), the batch goes through the topic's ingest plugins if
//!   it has any, and is queued for the log's group commit.
//! - Fetch: a long poll on the log (woken by the writer after each commit).
//! - Consumer groups ([`groups`]): membership, assignment and committed
//!   offsets, coordinated by the hub.

pub mod groups;
mod partitioner;

pub use groups::{Coordinator, GroupError};
pub use partitioner::Partitioner;

use std::time::Duration;

use cairn_proto::{partition_for_key, BatchView, BatchWriter, OwnedRecord};

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::plugins::{Ingested, Plugins};
use cairn_log::{AppendOutcome, Fetch, Log, LogError, PendingAppend, Result};

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

/// Produces records to topics of a [`Log`] and coordinates consumer groups.
#[derive(Clone)]
pub struct Broker {
    log: Log,
    partitioner: Partitioner,
    groups: std::sync::Arc<Coordinator>,
    metrics: std::sync::Arc<Metrics>,
    plugins: Option<std::sync::Arc<Plugins>>,
    auth: std::sync::Arc<Auth>,
    /// Set once the uplinks have started (they need the broker first). Weak:
    /// the uplinks hold the broker (through the MQTT side), and a cycle
    /// would keep the log open past shutdown.
    uplinks: std::sync::Arc<std::sync::OnceLock<std::sync::Weak<dyn UplinkControl>>>,
}

/// The hub's uplinks as the native protocol sees them (started by `cairn
/// serve`, which knows the uplink crate; the broker only forwards requests).
pub trait UplinkControl: Send + Sync {
    /// Every uplink's state, backlog and counters.
    fn list(&self) -> Vec<cairn_proto::frame::UplinkInfo>;
    /// Pauses or resumes uplink `name`; an error says why not (unknown name).
    fn set_paused(&self, name: &str, paused: bool) -> Result<(), String>;
    /// Declares an uplink from TOML settings, stores and starts it.
    fn add<'a>(&'a self, settings: &'a str) -> UplinkFuture<'a, cairn_proto::frame::UplinkInfo>;
    /// Stops and forgets an uplink declared at runtime.
    fn remove<'a>(&'a self, name: &'a str) -> UplinkFuture<'a, ()>;
}

/// What [`UplinkControl`]'s requests that wait return.
pub type UplinkFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'a>>;

impl Broker {
    /// A broker whose listeners let everyone do everything (open mode,
    /// keys not loaded): for tests and embedding. `cairn serve` adds the
    /// keys and rules stored in the log with [`Broker::with_auth`].
    pub fn new(log: Log) -> Self {
        let groups = std::sync::Arc::new(Coordinator::new(log.clone()));
        let auth = Auth::open_mode(log.clone());
        Broker {
            log,
            partitioner: Partitioner::default(),
            groups,
            metrics: Default::default(),
            plugins: None,
            auth,
            uplinks: Default::default(),
        }
    }

    /// The broker with this hub's keys and access rules: every listener
    /// asks them.
    pub fn with_auth(mut self, auth: std::sync::Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// Who may connect and what they may do.
    pub fn auth(&self) -> &std::sync::Arc<Auth> {
        &self.auth
    }

    /// The broker with WebAssembly plugins: ingest attachments then run on
    /// every produce path (native, MQTT, serial), and management requests
    /// are served.
    pub fn with_plugins(mut self, plugins: std::sync::Arc<Plugins>) -> Self {
        self.plugins = Some(plugins);
        self
    }

    /// The plugin registry, when the hub runs plugins.
    pub fn plugins(&self) -> Option<&std::sync::Arc<Plugins>> {
        self.plugins.as_ref()
    }

    /// Hands the running uplinks to this broker and its clones (once); the
    /// caller keeps them alive.
    pub fn set_uplinks(&self, uplinks: &std::sync::Arc<dyn UplinkControl>) {
        let _ = self.uplinks.set(std::sync::Arc::downgrade(uplinks));
    }

    /// The uplinks, once started (and until the hub drops them).
    pub fn uplinks(&self) -> Option<std::sync::Arc<dyn UplinkControl>> {
        self.uplinks.get().and_then(std::sync::Weak::upgrade)
    }

    /// The hub's traffic counters.
    pub fn metrics(&self) -> &std::sync::Arc<Metrics> {
        &self.metrics
    }

    /// The consumer-group coordinator.
    pub fn groups(&self) -> &Coordinator {
        &self.groups
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
        let split = self.partitioner.split(topic, partitions, records.iter().map(|r| r.key.as_deref()));
        let mut batches = Vec::with_capacity(split.len());
        for (partition, indexes) in split {
            let batch = encode(indexes.iter().map(|&i| &records[i]))?;
            batches.push((partition, indexes, batch));
        }
        let appends = batches.into_iter().map(|(partition, records, batch)| async move {
            // Through `produce_batch`, so ingest plugins apply here too.
            let outcome = match self.produce_batch(topic, Some(partition), batch).await {
                Ok((_, pending)) => pending.outcome().await,
                Err(e) => Err(e),
            };
            Produced { partition, records, outcome }
        });
        Ok(futures::future::join_all(appends).await)
    }
}

impl Broker {
    /// Queues one producer-built batch. Without `partition`, keyed records
    /// choose it by the key hash (every key in the batch must land in the
    /// same partition), unkeyed ones take the topic's sticky partition.
    /// Returns the partition and the pending append, in submission order.
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: Option<u32>,
        batch: Vec<u8>,
    ) -> Result<(u32, PendingAppend)> {
        let choose = |view: &BatchView<'_>, partitions| match partition {
            Some(p) => Ok(p),
            None => self.choose_partition(topic, view, partitions),
        };
        if let Some(plugins) = self.plugins.as_ref().filter(|p| p.has_ingest(topic)) {
            // Checked and placed as sent; the plugins then decide what of
            // it is stored, and the rewrite is stored in one transaction.
            let (partition, checked) = self.log.check_batch(topic, batch, choose)?;
            return match plugins.ingest(topic, partition, checked).await? {
                Ingested::Rewritten(r) => {
                    let pending = self.log.submit_rewritten(topic, partition, r.sequence, r.batches).await?;
                    Ok((partition, pending.with_not_stored(r.not_stored)))
                }
                // Detached meanwhile: stored as sent, in the partition chosen.
                Ingested::Unchanged(batch) => Ok((partition, self.log.submit_checked(topic, partition, batch).await?)),
            };
        }
        self.log.submit_to(topic, batch, choose).await
    }

    fn choose_partition(&self, topic: &str, view: &BatchView<'_>, partitions: u32) -> Result<u32> {
        let mut chosen = None;
        for record in view.records() {
            let Some(key) = record.key else { continue };
            let p = partition_for_key(key, partitions);
            match chosen {
                None => chosen = Some(p),
                Some(c) if c != p => {
                    return Err(LogError::InvalidProducerBatch(format!(
                        "the batch's keys map to partitions {c} and {p} of '{topic}'; \
                         send one batch per partition or name the partition"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(chosen.unwrap_or_else(|| self.partitioner.sticky(topic, partitions)))
    }

    /// Reads from `offset`; when the consumer is caught up, waits up to
    /// `max_wait` for new records (long poll, woken by the writer's commit).
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Fetch> {
        let fetch = self.log.fetch(topic, partition, offset, max_bytes)?;
        if !fetch.batches.is_empty() || max_wait.is_zero() || offset != fetch.end_offset {
            return Ok(fetch);
        }
        self.log.wait_for(topic, partition, offset, max_wait).await?;
        self.log.fetch(topic, partition, offset, max_bytes)
    }
}

fn encode<'a>(records: impl Iterator<Item = &'a OwnedRecord>) -> Result<Vec<u8>> {
    let mut writer = BatchWriter::new(Vec::new()).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    for r in records {
        writer.push_owned(r).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    }
    writer.finish().map_err(|e| LogError::InvalidConfig(e.to_string()))
}
