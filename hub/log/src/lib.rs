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
//! Files: this one opens the log and answers topic and offset questions;
//! `append` checks and queues batches, `writer/` commits them, `read`
//! fetches, `catalog` is the readers' view of topics, `options` and `stats`
//! are the tuning and the counters.

mod append;
mod backend;
mod catalog;
pub mod clock;
mod database;
mod error;
mod holds;
mod jumps;
mod options;
mod producer_state;
mod read;
mod registry;
mod retention;
mod space;
mod state;
mod stats;
mod tables;
mod topic;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

pub use append::{OffsetCommit, PendingAppend, PreparedBatch};
pub use clock::{Clock, ClockJump, ManualClock, SystemClock};
pub use error::{LogError, Result};
pub use holds::RetentionHolds;
pub use options::{LogOptions, DEFAULT_CACHE_BYTES};
pub use read::{Fetch, FetchedRecord};
pub use retention::RetentionReport;
pub use space::{disk_space, DiskSpace, DEFAULT_MIN_FREE_DISK_BYTES};
pub use stats::{Histogram, HistogramSnapshot, LogStats, COMMIT_BUCKETS, SLOW_COMMIT_BOUNDS};
pub use topic::{validate_topic_name, CleanupPolicy, FlushPolicy, PartitionInfo, TopicConfig, TopicInfo};

use catalog::{Catalog, TopicEntry};
use writer::{Command, Writer};
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

/// A handle to the log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<database::DbSlot>,
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
        let db = Arc::new(database::DbSlot::open(path, options.cache_bytes)?);
        let catalog = Arc::new(Catalog::default());
        let space = space::SpaceGuard::new(path, options.max_disk_bytes, options.min_free_disk_bytes);
        let writer = Writer::load(db.clone(), catalog.clone(), options.clone(), space)?;
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

    /// The partition count of topic `name`, created with `config` first if
    /// it does not exist: the one place where "create if missing" is decided
    /// (MQTT topics, plugin outputs, dead letters). A topic created
    /// meanwhile by someone else is taken as it is. Called on hot paths
    /// (MQTT publishes), so an existing topic costs one catalog lookup.
    pub async fn ensure_topic(&self, name: &str, config: TopicConfig) -> Result<u32> {
        if let Ok(partitions) = self.partition_count(name) {
            return Ok(partitions);
        }
        match self.create_topic(name, config).await {
            Ok(_) | Err(LogError::TopicExists(_)) => self.partition_count(name),
            Err(e) => Err(e),
        }
    }

    /// Milliseconds since the Unix epoch by the log's clock (a
    /// `ManualClock` in tests): arrival timestamps, upload times.
    pub fn now_ms(&self) -> i64 {
        self.shared.options.clock.now_ms()
    }

    /// The log's steady clock: [`Log::now_ms`] without the clock jumps the
    /// log has seen, run on the monotonic clock, so it never steps (it
    /// carries on from where it was when the wall clock is set back, and
    /// does not leap when it jumps ahead). Deadlines and "how long since" (MQTT session and message
    /// expiry) are kept on it; record timestamps stay on the wall clock.
    pub fn steady_ms(&self) -> i64 {
        let offset = self.shared.catalog.steady_offset_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.shared.options.clock.monotonic_ms().saturating_add(offset)
    }

    /// The jumps of the wall clock the log has seen, oldest first.
    pub fn clock_jumps(&self) -> Vec<ClockJump> {
        self.shared.catalog.clock_jumps.read().expect("lock poisoned").clone()
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

    /// Bytes appended to each partition of `topic` since the log was opened
    /// (record batches as stored; retries of a stored batch not counted).
    pub fn bytes_appended(&self, topic: &str) -> Result<Vec<u64>> {
        let entry = self.shared.catalog.get(topic)?;
        Ok(entry.bytes_in.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).collect())
    }

    /// Largest record batch accepted, in bytes.
    pub fn max_batch_bytes(&self) -> usize {
        self.shared.options.max_batch_bytes
    }

    /// What the writer has done since the log was opened.
    pub fn stats(&self) -> &LogStats {
        &self.shared.catalog.stats
    }

    /// Marked changed each time a topic is created, altered (partitions
    /// added) or deleted after the receiver was made: what a reader of
    /// "every topic matching a filter" waits on to find new ones.
    pub fn watch_topics(&self) -> tokio::sync::watch::Receiver<()> {
        self.shared.catalog.changes.0.subscribe()
    }

    /// Number of partitions of `topic`.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.shared.catalog.get(topic)?.partitions.len() as u32)
    }

    /// Last committed offsets of one partition.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        Ok(*self.shared.catalog.get(topic)?.partition(partition)?.borrow())
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

    /// Makes retention keep what `groups` have not read (their committed
    /// offsets), replacing the groups set before; bounded by
    /// `retention_hold_max_bytes`.
    pub fn hold_retention_for(&self, groups: impl IntoIterator<Item = String>) {
        self.shared.options.retention_holds.set(groups);
    }

    /// Removes every committed offset of a group (a group nobody will
    /// resume, such as an expired MQTT session's).
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.call(|reply| Command::DeleteGroup { group: group.to_string(), reply }).await
    }

    /// Runs retention (delete policy) and compaction (compact policy) on
    /// every topic now. The background ticker calls the same thing.
    pub async fn enforce_retention(&self) -> Result<RetentionReport> {
        self.call(|reply| Command::Retention { reply: Some(reply) }).await
    }

    /// The database now (none for the moment it is reopened after a
    /// storage error).
    pub(crate) fn db(&self) -> Result<Arc<Database>> {
        self.shared.db.get()
    }

    pub(crate) fn topic_entry(&self, topic: &str) -> Result<Arc<TopicEntry>> {
        self.shared.catalog.get(topic)
    }

    /// Bytes of record batches stored, over all topics (the file itself is
    /// larger by redb's pages and free space; see docs/BENCHMARKS.md).
    pub fn stored_bytes(&self) -> Result<u64> {
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
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
pub(crate) fn log_repair_progress() -> impl Fn(&mut redb::RepairSession) + 'static {
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
