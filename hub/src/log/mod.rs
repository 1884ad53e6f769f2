//! The durable, partitioned log: every record Cairn acknowledges lives here.
//!
//! One redb database holds all topics. The path of a record:
//!
//! 1. [`Log::append`] (any task) validates the batch — CRC, records, size —
//!    and hands it to the writer over a bounded channel (backpressure).
//! 2. The writer thread ([`writer`]) owns redb's single write transaction. It
//!    drains everything waiting, assigns offsets, writes all batches in one
//!    transaction, commits (fsync), and only then answers every caller:
//!    *group commit*. Under load many appends share one fsync.
//! 3. After the commit it publishes each partition's new end offset on a
//!    `watch` channel, which wakes long-polling readers ([`Log::wait_for`]).
//! 4. Readers ([`read`]) use redb read transactions (MVCC): they never block
//!    the writer and always see whole commits.
//!
//! See `tables` for what is stored and `retention` for how old data goes.

pub mod clock;
mod error;
mod producer_state;
mod read;
mod registry;
mod retention;
mod tables;
mod topic;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use cairn_proto::{BatchHeader, BatchView, CheckedBatch};
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot, watch};

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{LogError, Result};
pub use read::{Fetch, FetchedRecord};
pub use retention::RetentionReport;
pub use topic::{validate_topic_name, CleanupPolicy, FlushPolicy, PartitionInfo, TopicConfig, TopicInfo};

use writer::{Command, ProducerSpan, Writer};

/// Tuning of a [`Log`]. `Default` gives the embedded defaults.
#[derive(Clone)]
pub struct LogOptions {
    /// Largest record batch accepted, in bytes.
    pub max_batch_bytes: usize,
    /// For `flush = interval` topics: longest time an acknowledged record may
    /// stay un-fsynced.
    pub flush_interval: Duration,
    /// How often retention and compaction run in the background; `None` runs
    /// them only when [`Log::enforce_retention`] is called.
    pub retention_check_interval: Option<Duration>,
    /// Appends that may wait for the writer before `append` itself waits.
    pub queue_depth: usize,
    /// Save redb's allocator state with every commit so that reopening after
    /// a crash (power loss, `kill -9`) takes milliseconds instead of a walk
    /// over the whole database (about 1–2 s per GB here). Off by default:
    /// each commit then also writes the whole allocator state, which grows
    /// with the file (6 KB written per 100-byte record in a 1.5 GB log, 1 KB
    /// without), plus a second fsync; docs/BENCHMARKS.md has the figures.
    pub quick_repair: bool,
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
    /// Time source for retention by age and arrival timestamps.
    pub clock: Arc<dyn Clock>,
}

/// redb's page cache by default. It is most of the hub's memory under load;
/// 64 MiB held ~50 MB more RSS than 16 MiB (~120 MB more after a catch-up
/// read) with no throughput to show for it (docs/BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_batch_bytes: 1024 * 1024,
            flush_interval: Duration::from_secs(1),
            retention_check_interval: Some(Duration::from_secs(30)),
            queue_depth: 4096,
            quick_repair: false,
            cache_bytes: DEFAULT_CACHE_BYTES,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOptions")
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("retention_check_interval", &self.retention_check_interval)
            .field("queue_depth", &self.queue_depth)
            .field("quick_repair", &self.quick_repair)
            .field("cache_bytes", &self.cache_bytes)
            .finish_non_exhaustive()
    }
}

/// A partition's first stored offset, next offset and size, as last committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
}

/// What an append was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: u64,
    pub last_offset: u64,
    /// True when this was an idempotent retry of a batch already stored: the
    /// offsets are those of the original, and nothing was written.
    pub duplicate: bool,
}

/// Counters of the writer's work, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Write transactions committed (appends, admin, flushes).
    pub commits: AtomicU64,
    /// Batches appended (duplicates excluded).
    pub batches_appended: AtomicU64,
    /// Microseconds spent in redb's commit (page writes and, unless every
    /// topic in it is `flush = interval`, the fsync), summed over all commits.
    pub commit_us: AtomicU64,
    /// Commits that took longer than each of [`SLOW_COMMIT_BOUNDS`]. The
    /// writer commits one at a time, so every produce waiting meanwhile
    /// waited at least that long; the time is mostly the disk's fsync, so
    /// these tell a slow or busy disk from a slow hub.
    pub slow_commits: [AtomicU64; 3],
}

/// The bounds of [`LogStats::slow_commits`], and the names they are
/// reported under.
pub const SLOW_COMMIT_BOUNDS: [(Duration, &str); 3] = [
    (Duration::from_millis(5), "log_commits_over_5ms"),
    (Duration::from_millis(20), "log_commits_over_20ms"),
    (Duration::from_millis(100), "log_commits_over_100ms"),
];

impl LogStats {
    /// Counts one commit that took `took`.
    fn record_commit(&self, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        for ((bound, _), count) in SLOW_COMMIT_BOUNDS.iter().zip(&self.slow_commits) {
            if took > *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Every counter with the name `cairn metrics` shows it under.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = vec![
            ("log_commits", self.commits.load(Ordering::Relaxed)),
            ("log_batches_appended", self.batches_appended.load(Ordering::Relaxed)),
            ("log_commit_us", self.commit_us.load(Ordering::Relaxed)),
        ];
        for ((_, name), count) in SLOW_COMMIT_BOUNDS.iter().zip(&self.slow_commits) {
            counters.push((name, count.load(Ordering::Relaxed)));
        }
        counters
    }
}

/// A batch checked by [`Log::prepare`] for a transaction: it will not be
/// refused for its content when the transaction is written.
pub struct PreparedBatch(writer::BatchToAppend);

impl std::fmt::Debug for PreparedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.0;
        write!(f, "PreparedBatch({}/{}, {} records)", a.topic, a.partition, a.header.record_count)
    }
}

/// A consumer group's offsets to commit with a transaction's batches.
#[derive(Debug, Clone, Copy)]
pub struct OffsetCommit<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    /// (partition, next offset to read).
    pub offsets: &'a [(u32, u64)],
}

/// An append queued for the writer; [`PendingAppend::outcome`] waits for its
/// commit.
#[derive(Debug)]
pub struct PendingAppend {
    rx: PendingRx,
    not_stored: u32,
}

#[derive(Debug)]
enum PendingRx {
    /// A batch stored as sent.
    One(oneshot::Receiver<Result<AppendOutcome>>),
    /// A rewritten batch's transaction: its last outcome is the answer.
    Rewritten(oneshot::Receiver<Result<Vec<AppendOutcome>>>),
}

impl PendingAppend {
    /// Records of the batch its producer sent that were not stored in the
    /// partition (dropped by ingest plugins, or dead-lettered).
    pub fn not_stored(&self) -> u32 {
        self.not_stored
    }

    /// Sets what [`PendingAppend::not_stored`] reports.
    pub fn with_not_stored(mut self, records: u32) -> Self {
        self.not_stored = records;
        self
    }

    /// Resolves once the commit holding the batch is done (durable, for
    /// `flush = always` topics).
    pub async fn outcome(self) -> Result<AppendOutcome> {
        match self.rx {
            PendingRx::One(rx) => rx.await.map_err(|_| LogError::Closed)?,
            PendingRx::Rewritten(rx) => {
                let outcomes = rx.await.map_err(|_| LogError::Closed)??;
                outcomes.last().copied().ok_or(LogError::Closed)
            }
        }
    }
}

/// The topics as readers see them: config and each partition's offsets.
/// Only the writer changes it, after each commit.
#[derive(Default)]
pub(crate) struct Catalog {
    topics: RwLock<HashMap<String, Arc<TopicEntry>>>,
    pub stats: LogStats,
}

pub(crate) struct TopicEntry {
    pub id: u32,
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<watch::Sender<PartitionOffsets>>,
}

impl Catalog {
    fn get(&self, topic: &str) -> Result<Arc<TopicEntry>> {
        self.topics
            .read()
            .expect("catalog lock poisoned")
            .get(topic)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }

    pub(crate) fn insert(&self, entry: TopicEntry) {
        self.topics.write().expect("catalog lock poisoned").insert(entry.name.clone(), Arc::new(entry));
    }

    pub(crate) fn remove(&self, topic: &str) {
        self.topics.write().expect("catalog lock poisoned").remove(topic);
    }
}

impl TopicEntry {
    fn partition(&self, partition: u32) -> Result<&watch::Sender<PartitionOffsets>> {
        self.partitions.get(partition as usize).ok_or_else(|| LogError::UnknownPartition {
            topic: self.name.clone(),
            partition,
            partitions: self.partitions.len() as u32,
        })
    }
}

/// A handle to the log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<Database>,
    catalog: Arc<Catalog>,
    commands: mpsc::Sender<Command>,
    options: LogOptions,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropping this stops the ticker thread.
    _stop_ticker: std::sync::mpsc::Sender<()>,
}

impl Log {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    ///
    /// Reopening reads only the topic and partition tables — the log itself
    /// is not scanned — so it takes milliseconds whatever the data size
    /// (after a crash, redb first walks the file to rebuild its allocator
    /// state, about 1–2 s per GB, unless `quick_repair` was on; its progress
    /// is logged).
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        let path = path.as_ref();
        let started = std::time::Instant::now();
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .set_repair_callback(log_repair_progress())
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => LogError::AlreadyOpen(path.display().to_string()),
                other => LogError::storage(other),
            })?;
        let db = Arc::new(db);
        let catalog = Arc::new(Catalog::default());
        let writer = Writer::load(db.clone(), catalog.clone(), options.clone())?;
        let (commands, rx) = mpsc::channel(options.queue_depth.max(1));
        let weak = commands.downgrade();
        let writer_thread = std::thread::Builder::new()
            .name("cairn-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Storage(e.into()))?;
        let (stop_ticker, stop_rx) = std::sync::mpsc::channel();
        writer::spawn_ticker(weak, stop_rx, &options).map_err(|e| LogError::Storage(e.into()))?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(path = %path.display(), elapsed_ms, cache_bytes = options.cache_bytes, "log opened");
        Ok(Log {
            shared: Arc::new(Shared {
                db,
                catalog,
                commands,
                options,
                writer_thread: Mutex::new(Some(writer_thread)),
                _stop_ticker: stop_ticker,
            }),
        })
    }

    /// Finishes everything queued, makes it durable, and stops the writer.
    /// Other clones of this handle get [`LogError::Closed`] afterwards.
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.shared.commands.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.shared.writer_thread.lock().expect("lock poisoned").take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join()).await.ok();
        }
        Ok(())
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.shared.commands.send(make(reply)).await.map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// Creates a topic.
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        validate_topic_name(name)?;
        config.validate()?;
        self.call(|reply| Command::CreateTopic { name: name.to_string(), config, reply }).await?;
        self.describe_topic(name)
    }

    /// Deletes a topic, its records and the group offsets committed for it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.shared.catalog.get(name)?;
        self.call(|reply| Command::DeleteTopic { name: name.to_string(), reply }).await
    }

    /// Changes a topic's config. Partitions may grow, never shrink.
    pub async fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo> {
        config.validate()?;
        self.call(|reply| Command::AlterTopic { name: name.to_string(), config, reply }).await?;
        self.describe_topic(name)
    }

    /// Grows a topic to `partitions` partitions.
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> Result<TopicInfo> {
        let config = TopicConfig { partitions, ..self.shared.catalog.get(name)?.config.clone() };
        self.alter_topic(name, config).await
    }

    /// All topics, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        let topics = self.shared.catalog.topics.read().expect("catalog lock poisoned");
        let mut list: Vec<TopicInfo> = topics.values().map(|t| topic_info(t)).collect();
        drop(topics);
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// One topic's config and per-partition offsets.
    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        Ok(topic_info(&*self.shared.catalog.get(name)?))
    }

    /// Largest record batch accepted, in bytes.
    pub fn max_batch_bytes(&self) -> usize {
        self.shared.options.max_batch_bytes
    }

    /// What the writer has done since the log was opened.
    pub fn stats(&self) -> &LogStats {
        &self.shared.catalog.stats
    }

    /// Number of partitions of `topic`.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.shared.catalog.get(topic)?.partitions.len() as u32)
    }

    /// Last committed offsets of one partition.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        Ok(*self.shared.catalog.get(topic)?.partition(partition)?.borrow())
    }

    /// Appends one encoded record batch (as built by
    /// [`cairn_proto::BatchWriter`]) to a partition. Returns once the batch is
    /// committed — durably, unless the topic uses `flush = interval`.
    pub async fn append(&self, topic: &str, partition: u32, batch: Vec<u8>) -> Result<AppendOutcome> {
        self.submit(topic, partition, batch).await?.outcome().await
    }

    /// Validates a batch and queues it for the writer, returning once it is
    /// queued; the returned [`PendingAppend`] resolves when it is committed.
    /// Batches submitted one after another from one task are written in that
    /// order, so a connection can pipeline produce requests and keep order.
    pub async fn submit(&self, topic: &str, partition: u32, batch: Vec<u8>) -> Result<PendingAppend> {
        let (_, pending) = self.submit_to(topic, batch, |_, _| Ok(partition)).await?;
        Ok(pending)
    }

    /// Like [`Log::submit`], with the partition chosen by `choose` from the
    /// validated batch and the topic's partition count (the broker's
    /// key-based and sticky partitioning), so the batch is parsed only once.
    pub async fn submit_to(
        &self,
        topic: &str,
        batch: Vec<u8>,
        choose: impl FnOnce(&BatchView<'_>, u32) -> Result<u32>,
    ) -> Result<(u32, PendingAppend)> {
        let append = self.validate(topic, batch, choose)?;
        let partition = append.partition;
        let (reply, rx) = oneshot::channel();
        let request = writer::AppendRequest { append, reply };
        self.shared.commands.send(Command::Append(request)).await.map_err(|_| LogError::Closed)?;
        Ok((partition, PendingAppend { rx: PendingRx::One(rx), not_stored: 0 }))
    }

    /// Appends batches to any partitions and commits a group's offsets in
    /// one transaction: after a crash, either all of it is there or none.
    /// Derived topics use it to store a plugin's output together with the
    /// source position it came from. Batches must not be idempotent
    /// (producer id -1): the committed offset is what prevents duplicates.
    pub async fn append_transaction(
        &self,
        batches: Vec<(String, u32, Vec<u8>)>,
        commit: Option<OffsetCommit<'_>>,
    ) -> Result<Vec<AppendOutcome>> {
        let batches =
            batches.into_iter().map(|(t, p, b)| self.prepare(&t, p, CheckedBatch::check(b)?)).collect::<Result<_>>()?;
        self.append_prepared(batches, commit).await
    }

    /// [`Log::append_transaction`] of batches checked already with
    /// [`Log::prepare`] (derived topics check their outputs first, to send
    /// the input to a dead-letter topic if the log would refuse one).
    pub async fn append_prepared(
        &self,
        batches: Vec<PreparedBatch>,
        commit: Option<OffsetCommit<'_>>,
    ) -> Result<Vec<AppendOutcome>> {
        let appends = batches.into_iter().map(|b| b.0).collect();
        let commit = match commit {
            Some(c) => {
                let entry = self.shared.catalog.get(c.topic)?;
                for &(p, _) in c.offsets {
                    entry.partition(p)?;
                }
                Some((c.group.to_string(), entry.id, c.offsets.to_vec()))
            }
            None => None,
        };
        self.call(|reply| Command::Transaction { appends, commit, producer: None, reply }).await
    }

    /// Queues the rewritten form of one producer batch — batches for any
    /// topics, possibly none, checked with [`Log::prepare`] — as one
    /// transaction (ingest plugins). The producer sent it to `(topic,
    /// partition)`; with `sequence` (its idempotent producer id, first and
    /// last sequence number) those numbers are checked and remembered as if
    /// the batch had been stored as sent, so a retry is answered as a
    /// duplicate and nothing is written twice. Returns once queued, like
    /// [`Log::submit`]; the pending append resolves to the records stored in
    /// `(topic, partition)`, or to its end offset when there are none.
    pub async fn submit_rewritten(
        &self,
        topic: &str,
        partition: u32,
        sequence: Option<(i64, i32, i32)>,
        batches: Vec<PreparedBatch>,
    ) -> Result<PendingAppend> {
        let appends = batches.into_iter().map(|b| b.0).collect();
        let entry = self.shared.catalog.get(topic)?;
        entry.partition(partition)?;
        let producer = ProducerSpan { topic_id: entry.id, topic: topic.to_string(), partition, sequence };
        let (reply, rx) = oneshot::channel();
        let command = Command::Transaction { appends, commit: None, producer: Some(producer), reply };
        self.shared.commands.send(command).await.map_err(|_| LogError::Closed)?;
        Ok(PendingAppend { rx: PendingRx::Rewritten(rx), not_stored: 0 })
    }

    /// Checks a batch for a transaction to `(topic, partition)`: everything
    /// an append checks, and no producer id (the transaction's committed
    /// offset, or the rewritten batch's original sequence numbers, keep it
    /// from being stored twice). Its CRC and records were checked when the
    /// [`CheckedBatch`] was made, and are not walked again.
    pub fn prepare(&self, topic: &str, partition: u32, batch: CheckedBatch) -> Result<PreparedBatch> {
        let entry = self.entry_for(topic, batch.as_bytes().len())?;
        let (entry, partition, header) = self.check_view(topic, entry, &batch.view(), |_, _| Ok(partition))?;
        if header.producer_id != cairn_proto::batch::NO_PRODUCER {
            return Err(LogError::InvalidProducerBatch(
                "a transaction's batches carry no producer id; the transaction deduplicates them".into(),
            ));
        }
        let batch = batch.into_bytes();
        Ok(PreparedBatch(writer::BatchToAppend {
            topic_id: entry.id,
            topic: topic.to_string(),
            partition,
            header,
            batch,
        }))
    }

    /// The checks every batch passes before the writer sees it.
    fn validate(
        &self,
        topic: &str,
        batch: Vec<u8>,
        choose: impl FnOnce(&BatchView<'_>, u32) -> Result<u32>,
    ) -> Result<writer::BatchToAppend> {
        let (entry, partition, header) = self.check(topic, &batch, choose)?;
        Ok(writer::BatchToAppend { topic_id: entry.id, topic: topic.to_string(), partition, header, batch })
    }

    /// The checks a producer's batch passes before anything is done with it
    /// (size, CRC and records, numbering, sequence numbers, keys on compacted
    /// topics), and the partition `choose` picks for it. The broker runs them
    /// before ingest plugins see the batch.
    pub fn check_batch(
        &self,
        topic: &str,
        batch: &[u8],
        choose: impl FnOnce(&BatchView<'_>, u32) -> Result<u32>,
    ) -> Result<(u32, BatchHeader)> {
        let (_, partition, header) = self.check(topic, batch, choose)?;
        Ok((partition, header))
    }

    fn check(
        &self,
        topic: &str,
        batch: &[u8],
        choose: impl FnOnce(&BatchView<'_>, u32) -> Result<u32>,
    ) -> Result<(Arc<TopicEntry>, u32, BatchHeader)> {
        let entry = self.entry_for(topic, batch.len())?;
        let view = BatchView::parse(batch)?;
        self.check_view(topic, entry, &view, choose)
    }

    /// The topic a batch of `size` bytes goes to, once the size is within
    /// the limit: an oversized batch is refused before it is walked.
    fn entry_for(&self, topic: &str, size: usize) -> Result<Arc<TopicEntry>> {
        let limit = self.shared.options.max_batch_bytes;
        if size > limit {
            return Err(LogError::BatchTooLarge { size, limit });
        }
        self.shared.catalog.get(topic)
    }

    /// The checks of [`Log::check`] after the batch itself was found valid.
    fn check_view(
        &self,
        topic: &str,
        entry: Arc<TopicEntry>,
        view: &BatchView<'_>,
        choose: impl FnOnce(&BatchView<'_>, u32) -> Result<u32>,
    ) -> Result<(Arc<TopicEntry>, u32, BatchHeader)> {
        let partition = choose(view, entry.partitions.len() as u32)?;
        entry.partition(partition)?;
        if entry.config.cleanup_policy == CleanupPolicy::Compact && view.records().any(|r| r.key.is_none()) {
            return Err(LogError::MissingKeyOnCompactedTopic(topic.to_string()));
        }
        let header: BatchHeader = *view.header();
        // A producer's batch numbers its records 0..n: anything else would
        // move the partition's end past offsets that hold nothing.
        if u64::from(header.last_offset_delta) + 1 != u64::from(header.record_count) {
            return Err(LogError::InvalidProducerBatch(format!(
                "last_offset_delta is {} for {} records; a produced batch must number its records 0..n",
                header.last_offset_delta, header.record_count
            )));
        }
        if header.producer_id != cairn_proto::batch::NO_PRODUCER {
            if header.producer_id < 0 || header.base_sequence < 0 {
                return Err(LogError::InvalidProducerBatch(format!(
                    "producer id {} with base sequence {}: an idempotent batch needs both non-negative (or producer id -1)",
                    header.producer_id, header.base_sequence
                )));
            }
            if header.last_sequence().is_none() {
                return Err(LogError::InvalidProducerBatch(format!(
                    "sequence numbers {}..+{} pass 2^31-1; start a new producer id",
                    header.base_sequence, header.record_count
                )));
            }
        }
        Ok((entry, partition, header))
    }

    /// Waits until `partition` holds an offset greater than `offset` (that
    /// is, its end offset passes `offset`), or `timeout` passes. Returns the
    /// partition's offsets either way. Woken by the writer after each commit.
    pub async fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<PartitionOffsets> {
        let entry = self.shared.catalog.get(topic)?;
        let mut rx = entry.partition(partition)?.subscribe();
        drop(entry);
        let waited = tokio::time::timeout(timeout, rx.wait_for(|o| o.end > offset)).await;
        let waited = waited.map(|r| r.map(|offsets| *offsets));
        match waited {
            Ok(Ok(offsets)) => Ok(offsets),
            // The sender went away: the topic was deleted while we waited.
            Ok(Err(_)) => Err(LogError::UnknownTopic(topic.to_string())),
            Err(_elapsed) => Ok(*rx.borrow()),
        }
    }

    /// Allocates a new idempotent producer id, unique for this log forever.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        self.call(|reply| Command::AllocateProducerId { reply }).await
    }

    /// Stores a consumer group's committed offsets for some partitions of a
    /// topic, durably, in one transaction.
    pub async fn commit_offsets(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
        let entry = self.shared.catalog.get(topic)?;
        for &(p, _) in offsets {
            entry.partition(p)?;
        }
        let (topic_id, offsets) = (entry.id, offsets.to_vec());
        self.call(|reply| Command::CommitOffsets { group: group.to_string(), topic_id, offsets, reply }).await
    }

    /// Runs retention (delete policy) and compaction (compact policy) on
    /// every topic now. The background ticker calls the same thing.
    pub async fn enforce_retention(&self) -> Result<RetentionReport> {
        self.call(|reply| Command::Retention { reply: Some(reply) }).await
    }

    pub(crate) fn db(&self) -> &Database {
        &self.shared.db
    }

    pub(crate) fn topic_entry(&self, topic: &str) -> Result<Arc<TopicEntry>> {
        self.shared.catalog.get(topic)
    }

    /// Bytes of record batches stored, over all topics (the file itself is
    /// larger by redb's pages and free space; see docs/BENCHMARKS.md).
    pub fn stored_bytes(&self) -> Result<u64> {
        let txn = self.db().begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
        let mut total = 0;
        for row in table.iter().map_err(LogError::storage)? {
            let (_, v) = row.map_err(LogError::storage)?;
            total += v.value().2;
        }
        Ok(total)
    }
}

impl Drop for Shared {
    /// The last handle is gone: let the writer finish what is queued, flush,
    /// and close the database before returning, so the file can be reopened
    /// at once.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(handle) = self.writer_thread.lock().map(|mut h| h.take()).unwrap_or(None) {
            let _ = handle.join();
        }
    }
}

/// A redb repair callback that says what is happening: after a crash the
/// open can take seconds on a large log, and an operator watching the logs
/// should know why the hub is not up yet. Logs at the start, then every 25 %.
fn log_repair_progress() -> impl Fn(&mut redb::RepairSession) + 'static {
    let next_step = std::cell::Cell::new(0.0_f64);
    move |session| {
        let progress = session.progress();
        if next_step.get() == 0.0 {
            tracing::warn!(
                "the log was not closed cleanly (crash, power loss or kill -9): checking the whole file before \
                 opening it, about 1-2 s per GB (set quick_repair = true to trade commit speed for a fast reopen)"
            );
        } else if progress < next_step.get() {
            return;
        } else {
            tracing::info!(percent = (progress * 100.0).round(), "repairing the log");
        }
        next_step.set((progress + 0.25).min(1.0).max(next_step.get() + 0.25));
    }
}

fn topic_info(entry: &TopicEntry) -> TopicInfo {
    TopicInfo {
        name: entry.name.clone(),
        config: entry.config.clone(),
        partitions: entry
            .partitions
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                let o = *tx.borrow();
                PartitionInfo { partition: i as u32, start_offset: o.start, end_offset: o.end, bytes: o.bytes }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_are_summed_and_slow_ones_counted_per_bound() {
        let stats = LogStats::default();
        for ms in [1, 6, 30, 200] {
            stats.record_commit(Duration::from_millis(ms));
        }
        let counters = stats.counters();
        let get = |name: &str| counters.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("log_commits"), 4);
        assert_eq!(get("log_commit_us"), 237_000);
        assert_eq!(get("log_commits_over_5ms"), 3);
        assert_eq!(get("log_commits_over_20ms"), 2);
        assert_eq!(get("log_commits_over_100ms"), 1);
    }
}
