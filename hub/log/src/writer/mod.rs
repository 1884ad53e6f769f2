//! The writer thread: sole owner of redb's write transaction, and the place
//! where group commit happens.
//!
//! Each turn of the loop takes every command waiting in the queue (up to
//! [`MAX_GROUP`]), applies all appends and offset commits in one transaction,
//! commits once, and then answers each caller. Topic administration and
//! retention run in transactions of their own between those groups. State the
//! writer keeps in memory (each partition's next offset, start, size) is
//! changed only after a commit succeeds, so a failed commit leaves memory and
//! disk in agreement.
//!
//! A commit that fails for an I/O error (a full disk) leaves redb refusing
//! everything until the database is opened again: the writer reopens it
//! before its next transaction and reloads its state from the file. Before
//! that happens, the space guard (`space.rs`) refuses appends while the disk
//! is nearly full, so redb keeps room for the commits that free space.
//!
//! Files: this one runs the loop and commits; `command` is what callers send,
//! `data` applies appends, offset commits and transactions, `admin` topic
//! changes, plugin rows and retention, `time` clock jumps.

mod admin;
mod command;
mod data;
mod time;

use data::DataTables;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::batch::set_base_offset;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot, watch};

use super::database::DbSlot;
use super::error::{LogError, Result};
use super::producer_state::{ProducerWindow, RecentBatch, SequenceCheck};
use super::retention::{self, RetentionReport};
use super::space::SpaceGuard;
use super::state::{PartState, WriterTopic};
use super::tables::{self, PartitionKey};
use super::topic::{TopicConfig, TopicMeta};
use super::{AppendOutcome, Catalog, FlushPolicy, LogOptions, TopicEntry};
pub(crate) use command::{AppendRequest, BatchToAppend, Command, GroupCommit, ProducerSpan};

/// Most commands folded into one transaction. Bounds commit latency and the
/// memory of one group; at 1,000-record batches this is far above what the
/// disk can take per fsync anyway.
const MAX_GROUP: usize = 1024;

pub(crate) struct Writer {
    slot: Arc<DbSlot>,
    /// The database (`None` after a storage error, until reopened).
    db: Option<Arc<Database>>,
    /// A commit failed for an I/O error: reopen before the next transaction.
    broken: std::cell::Cell<bool>,
    space: SpaceGuard,
    /// Appends are being refused for lack of space (logged once per spell).
    disk_full: bool,
    catalog: Arc<Catalog>,
    options: LogOptions,
    topics: HashMap<u32, WriterTopic>,
    ids: HashMap<String, u32>,
    /// A `flush = interval` commit has not been fsynced yet.
    /// When the oldest not-yet-fsynced (`flush = interval`) commit happened.
    unflushed_since: Option<Instant>,
    /// Partition end offset at the last compaction, to skip unchanged ones.
    compacted_at: HashMap<PartitionKey, u64>,
    /// Watches the wall clock for jumps (set once the state is loaded).
    watch: Option<crate::clock::ClockWatch>,
    /// The clock jumps seen, oldest first (retention corrects ages by them).
    jumps: Vec<crate::jumps::StoredJump>,
}

impl Writer {
    /// Reads topics and partition states (not the log itself) and fills the
    /// catalog. This is all a reopen costs.
    pub fn load(slot: Arc<DbSlot>, catalog: Arc<Catalog>, options: LogOptions, space: SpaceGuard) -> Result<Writer> {
        let db = slot.get()?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write().map_err(LogError::storage)?;
        {
            DataTables::open(&txn)?;
            txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
            txn.open_table(tables::PLUGIN_BLOBS).map_err(LogError::storage)?;
            txn.open_table(tables::PLUGIN_VERSIONS).map_err(LogError::storage)?;
            txn.open_table(tables::ATTACHMENTS).map_err(LogError::storage)?;
            txn.open_table(tables::SECURITY).map_err(LogError::storage)?;
            txn.open_table(tables::UPLINKS).map_err(LogError::storage)?;
            txn.open_table(tables::CLOCK_JUMPS).map_err(LogError::storage)?;
        }
        txn.commit().map_err(LogError::storage)?;

        let mut writer = Writer {
            slot,
            db: Some(db),
            broken: std::cell::Cell::new(false),
            space,
            disk_full: false,
            catalog,
            options,
            topics: HashMap::new(),
            ids: HashMap::new(),
            unflushed_since: None,
            compacted_at: HashMap::new(),
            watch: None,
            jumps: Vec::new(),
        };
        writer.load_topics()?;
        writer.start_clock_watch()?;
        tracing::debug!(topics = writer.topics.len(), "log state loaded");
        Ok(writer)
    }

    /// Reads every topic's settings and partition states from the file into
    /// the writer and the catalog (existing catalog entries are reused, so
    /// waiting readers stay subscribed).
    fn load_topics(&mut self) -> Result<()> {
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
        let partitions = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
        for row in topics.iter().map_err(LogError::storage)? {
            let (name, meta) = row.map_err(LogError::storage)?;
            let name = name.value().to_string();
            let meta = TopicMeta::from_bytes(meta.value())?;
            let mut parts = Vec::with_capacity(meta.config.partitions as usize);
            for p in 0..meta.config.partitions {
                let row = partitions.get((meta.id, p)).map_err(LogError::storage)?;
                let state = match row {
                    Some(r) => {
                        let (start, next, bytes, max_ts) = r.value();
                        PartState { start, next, bytes, max_ts }
                    }
                    None => {
                        return Err(LogError::CorruptMetadata(format!(
                            "partition {p} of topic '{name}' has no state row"
                        )))
                    }
                };
                parts.push(state);
            }
            let old = self.catalog.get(&name).ok();
            self.install_topic(name, meta, parts, old.as_deref());
        }
        Ok(())
    }

    fn db(&self) -> Result<&Arc<Database>> {
        self.db.as_ref().ok_or(LogError::Reopening)
    }

    /// After an I/O error: closes the database, opens it again (redb checks
    /// the file as after a crash) and reloads the state from it, dropping
    /// topics and partition states that only the failed commits had.
    fn reopen(&mut self) -> Result<()> {
        tracing::warn!("reopening the log after a storage error");
        let db = self.slot.reopen(self.db.take())?;
        self.db = Some(db);
        self.broken.set(false);
        self.catalog.stats.reopens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.unflushed_since = None;
        self.compacted_at.clear();
        let known: Vec<String> = self.ids.keys().cloned().collect();
        self.load_topics()?;
        // A topic only a failed commit created is gone from the file.
        let now: std::collections::HashSet<String> = self.topics.values().map(|t| t.entry.name.clone()).collect();
        for name in known.into_iter().filter(|n| !now.contains(n)) {
            if let Some(id) = self.ids.remove(&name) {
                self.topics.remove(&id);
            }
            self.catalog.remove(&name);
        }
        tracing::info!(topics = self.topics.len(), "log reopened");
        Ok(())
    }

    /// Reopens the database if a commit broke it; false if that failed (the
    /// next command tries again).
    fn ready(&mut self) -> bool {
        if !self.broken.get() && self.db.is_some() {
            return true;
        }
        match self.reopen() {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(error = %err, "cannot reopen the log; retrying with the next command");
                false
            }
        }
    }

    /// Bytes of record batches stored, all topics.
    fn stored_bytes(&self) -> u64 {
        self.topics.values().flat_map(|t| t.parts.iter()).map(|p| p.bytes).sum()
    }

    /// Puts a topic into the writer's state and the readers' catalog,
    /// reusing existing watch senders so waiters stay subscribed.
    pub(super) fn install_topic(
        &mut self,
        name: String,
        meta: TopicMeta,
        parts: Vec<PartState>,
        old: Option<&TopicEntry>,
    ) {
        let partitions = parts
            .iter()
            .enumerate()
            .map(|(i, st)| match old.and_then(|o| o.partitions.get(i)) {
                Some(tx) => {
                    tx.send_replace(st.offsets());
                    tx.clone()
                }
                None => watch::channel(st.offsets()).0,
            })
            .collect();
        let bytes_in =
            (0..parts.len()).map(|i| old.and_then(|o| o.bytes_in.get(i).cloned()).unwrap_or_default()).collect();
        let entry = TopicEntry { id: meta.id, name: name.clone(), config: meta.config.clone(), partitions, bytes_in };
        self.catalog.insert(entry);
        let entry = self.catalog.get(&name).expect("just inserted");
        self.ids.insert(name, meta.id);
        self.topics.insert(meta.id, WriterTopic { meta, parts, entry });
    }

    /// The writer loop. Returns when the log is closed or every handle dropped.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut shutdown = Vec::new();
        let mut last_group = 0;
        while let Some(first) = rx.blocking_recv() {
            let group = gather(&mut rx, first, last_group);
            last_group = group.len();
            self.process(group, &mut shutdown);
            if !shutdown.is_empty() {
                // Finish whatever was already queued, refuse the rest.
                rx.close();
                let rest: Vec<Command> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
                self.process(rest, &mut shutdown);
                break;
            }
        }
        self.flush();
        if let Err(err) = self.save_wall_clock() {
            tracing::warn!(error = %err, "cannot store the clock's last reading");
        }
        tracing::info!("log writer stopped");
        for reply in shutdown {
            let _ = reply.send(());
        }
    }

    pub(super) fn process(&mut self, group: Vec<Command>, shutdown: &mut Vec<oneshot::Sender<()>>) {
        // A failed reopen (or an admin transaction's I/O error) leaves the
        // database to reopen: every transaction fails with `Reopening`
        // meanwhile, and each group tries again.
        self.ready();
        self.watch_clock();
        let mut data = Vec::new();
        for cmd in group {
            match cmd {
                Command::Append(_) | Command::CommitOffsets { .. } | Command::Transaction { .. } => data.push(cmd),
                Command::Shutdown { reply } => shutdown.push(reply),
                other => {
                    // Keep order: what was queued before goes in first.
                    self.commit_data(std::mem::take(&mut data));
                    self.admin(other);
                }
            }
        }
        self.commit_data(data);
    }

    /// Writes a group of appends and offset commits in one transaction, then
    /// answers each. A storage failure fails the whole group (nothing of it
    /// is stored) and every caller is told so.
    pub(super) fn commit_data(&mut self, mut data: Vec<Command>) {
        if data.is_empty() {
            return;
        }
        let durable = data.iter().any(|cmd| match cmd {
            Command::Append(a) => {
                self.topics.get(&a.append.topic_id).is_none_or(|t| t.meta.config.flush == FlushPolicy::Always)
            }
            _ => true,
        });
        // Interval topics are fsynced at least every flush_interval even when
        // the ticker's flush cannot get through a full queue.
        let overdue = self.unflushed_since.is_some_and(|since| since.elapsed() >= self.options.flush_interval);
        let durable = durable || overdue;
        let mut overlay: HashMap<PartitionKey, PartState> = HashMap::new();
        // Appends wait for room on the disk; offset commits never do.
        let needed: u64 = data
            .iter()
            .map(|cmd| match cmd {
                Command::Append(a) => a.append.batch.len() as u64,
                Command::Transaction { appends, .. } => appends.iter().map(|a| a.batch.len() as u64).sum(),
                _ => 0,
            })
            .sum();
        if needed > 0 {
            match self.space.check(self.stored_bytes(), needed) {
                Err(why) => {
                    data = self.refuse_appends(data, &why);
                    if data.is_empty() {
                        return;
                    }
                }
                Ok(()) if self.disk_full => {
                    self.disk_full = false;
                    tracing::info!("space freed on the disk: appends resume");
                }
                Ok(()) => {}
            }
        }
        match self.write_data(&mut data, &mut overlay, durable) {
            Ok(outcomes) => {
                for (key, state) in overlay {
                    self.set_part_state(key, state);
                }
                // An fsynced commit also persists every earlier non-durable one.
                if durable {
                    self.unflushed_since = None;
                } else {
                    self.unflushed_since.get_or_insert_with(Instant::now);
                }
                for (cmd, outcome) in data.into_iter().zip(outcomes) {
                    match cmd {
                        Command::Append(a) => {
                            if let Ok(o) = &outcome {
                                if let Some(o) = o.first().filter(|o| !o.duplicate) {
                                    let records = o.last_offset + 1 - o.base_offset;
                                    let bytes = a.append.batch.len() as u64;
                                    self.catalog.stats.record_append(records, bytes);
                                    self.count_bytes_in(a.append.topic_id, a.append.partition, bytes);
                                }
                            }
                            let _ = a.reply.send(outcome.map(|mut o| o.swap_remove(0)));
                        }
                        Command::Transaction { reply, appends, .. } => {
                            if outcome.is_ok() {
                                for a in &appends {
                                    let bytes = a.batch.len() as u64;
                                    self.catalog.stats.record_append(u64::from(a.header.record_count), bytes);
                                    self.count_bytes_in(a.topic_id, a.partition, bytes);
                                }
                            }
                            let _ = reply.send(outcome);
                        }
                        Command::CommitOffsets { reply, .. } => {
                            let _ = reply.send(outcome.map(|_| ()));
                        }
                        _ => {}
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, commands = data.len(), "commit failed; nothing from this group was stored");
                let full = is_out_of_space(&err);
                if full {
                    self.space.filled(self.stored_bytes());
                }
                // Reopened before anyone hears of the failure, so what they
                // do next (a read, a retry) finds a working database.
                self.ready();
                let message = err.to_string();
                for cmd in data {
                    let fail = || {
                        if full {
                            LogError::DiskFull(format!("the filesystem has no room left ({message})"))
                        } else {
                            LogError::CommitFailed(message.clone())
                        }
                    };
                    match cmd {
                        Command::Append(a) => {
                            let _ = a.reply.send(Err(fail()));
                        }
                        Command::CommitOffsets { reply, .. } => {
                            let _ = reply.send(Err(fail()));
                        }
                        Command::Transaction { reply, .. } => {
                            let _ = reply.send(Err(fail()));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Adds an appended batch's bytes to its partition's count.
    fn count_bytes_in(&self, topic_id: u32, partition: u32, bytes: u64) {
        if let Some(counter) = self.topics.get(&topic_id).and_then(|t| t.entry.bytes_in.get(partition as usize)) {
            counter.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Answers the appends of `data` with "disk full" and returns what is
    /// left (offset commits).
    fn refuse_appends(&mut self, data: Vec<Command>, why: &str) -> Vec<Command> {
        if !self.disk_full {
            self.disk_full = true;
            tracing::warn!(reason = why, "disk full: appends refused until space is freed");
        }
        let mut rest = Vec::new();
        let refused = || self.catalog.stats.disk_full_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for cmd in data {
            match cmd {
                Command::Append(a) => {
                    refused();
                    let _ = a.reply.send(Err(LogError::DiskFull(why.to_string())));
                }
                Command::Transaction { reply, .. } => {
                    refused();
                    let _ = reply.send(Err(LogError::DiskFull(why.to_string())));
                }
                other => rest.push(other),
            }
        }
        rest
    }

    pub(super) fn begin(&self, durable: bool) -> Result<WriteTransaction> {
        let mut txn = self.db()?.begin_write().map_err(|e| {
            let err = LogError::storage(e);
            self.broken.set(self.broken.get() || is_io(&err));
            err
        })?;
        let durability = if durable { Durability::Immediate } else { Durability::None };
        txn.set_durability(durability).map_err(LogError::storage)?;
        txn.set_quick_repair(self.options.quick_repair);
        Ok(txn)
    }

    /// Commits, counting it and its time in the stats (`durable`: the
    /// transaction was begun with an fsync).
    pub(super) fn commit(&self, txn: WriteTransaction, durable: bool) -> Result<()> {
        let started = Instant::now();
        if let Err(err) = txn.commit() {
            let err = LogError::storage(err);
            if is_io(&err) {
                // redb refuses everything after this until reopened.
                self.broken.set(true);
            }
            return Err(err);
        }
        let took = started.elapsed();
        self.catalog.stats.record_commit(took, durable);
        if took >= VERY_SLOW_COMMIT {
            // Every producer waiting on this commit waited as long.
            tracing::warn!(
                elapsed_ms = took.as_millis() as u64,
                "a commit took over a second, and produces waited meanwhile: the disk is slow or failing, or \
                 retention had much to delete (see `cairn metrics`, log_commits_over_*)"
            );
        }
        Ok(())
    }

    /// An empty durable commit: makes every earlier non-durable one durable.
    pub(super) fn flush(&mut self) {
        if self.unflushed_since.is_none() {
            return;
        }
        let result = self.begin(true).and_then(|txn| self.commit(txn, true));
        match result {
            Ok(()) => self.unflushed_since = None,
            Err(err) => {
                tracing::error!(error = %err, "flush failed; will retry at the next interval")
            }
        }
    }
}

/// Collects the commands that make up one group commit, starting with `first`.
///
/// Everything already queued is taken. Then, if the previous group had more
/// than one command, the writer waits up to [`GATHER_WAIT`] for about as many
/// to arrive again: callers answered by the last commit are typically sending
/// their next request right now, and one commit for all of them costs little
/// more than a commit for the first few (the fsync dominates). An idle log
/// (previous group of one) never waits, so a lone producer sees one commit of
/// latency.
fn gather(rx: &mut mpsc::Receiver<Command>, first: Command, last_group: usize) -> Vec<Command> {
    let mut group = vec![first];
    let want = last_group.clamp(1, MAX_GROUP);
    let deadline = Instant::now() + GATHER_WAIT;
    loop {
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(cmd) => group.push(cmd),
                Err(_) => break,
            }
        }
        if group.len() >= want || group.len() >= MAX_GROUP || Instant::now() >= deadline {
            return group;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// A commit this slow is logged as a warning, each time.
const VERY_SLOW_COMMIT: Duration = Duration::from_secs(1);

/// Longest a group waits for stragglers (see [`gather`]); small next to the
/// cost of the commit itself (~0.6 ms here).
const GATHER_WAIT: Duration = Duration::from_micros(500);

/// Starts the thread that asks the writer to flush `interval` topics and to
/// run retention on schedule. It holds only a weak sender, so it never keeps
/// the log alive, and stops when `stop` is dropped.
pub(crate) fn spawn_ticker(
    commands: mpsc::WeakSender<Command>,
    stop: std::sync::mpsc::Receiver<()>,
    options: &LogOptions,
) -> std::io::Result<()> {
    let flush_every = options.flush_interval.max(Duration::from_millis(10));
    let retention_every = options.retention_check_interval;
    let tick = retention_every.map_or(flush_every, |r| r.min(flush_every));
    std::thread::Builder::new().name("cairn-log-ticker".into()).spawn(move || {
        let mut last_retention = Instant::now();
        loop {
            match stop.recv_timeout(tick) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let Some(tx) = commands.upgrade() else { return };
            // A full queue means the writer is busy committing anyway.
            let _ = tx.try_send(Command::Flush);
            if retention_every.is_some_and(|every| last_retention.elapsed() >= every) {
                last_retention = Instant::now();
                let _ = tx.try_send(Command::Retention { reply: None });
            }
        }
    })?;
    Ok(())
}

/// An error from the disk itself (redb wants a reopen after one).
fn is_io(err: &LogError) -> bool {
    matches!(err, LogError::Storage(redb::Error::Io(_)) | LogError::Reopening)
}

/// The filesystem had no room for the commit.
fn is_out_of_space(err: &LogError) -> bool {
    match err {
        LogError::Storage(redb::Error::Io(io)) => {
            io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28)
        }
        _ => false,
    }
}
