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

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::batch::set_base_offset;
use cairn_proto::BatchHeader;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot, watch};

use super::error::{LogError, Result};
use super::producer_state::{ProducerWindow, RecentBatch, SequenceCheck};
use super::retention::{self, RetentionReport};
use super::tables::{self, PartitionKey};
use super::topic::{TopicConfig, TopicMeta};
use super::{AppendOutcome, Catalog, FlushPolicy, LogOptions, PartitionOffsets, TopicEntry};

/// Most commands folded into one transaction. Bounds commit latency and the
/// memory of one group; at 1,000-record batches this is far above what the
/// disk can take per fsync anyway.
const MAX_GROUP: usize = 1024;

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// A group's offsets in a transaction: (group, topic id, [(partition, offset)]).
pub(crate) type GroupCommit = (String, u32, Vec<(u32, u64)>);

/// What callers ask of the writer.
pub(crate) enum Command {
    Append(AppendRequest),
    /// Batches to several partitions and a group's offsets, all stored in
    /// one transaction or none of them (derived topics: outputs and the
    /// source position together, so processing is exactly-once).
    /// With `producer`, the whole transaction is one idempotent producer
    /// batch (ingest plugins rewrote it): a retry is answered as a duplicate.
    Transaction {
        appends: Vec<BatchToAppend>,
        commit: Option<GroupCommit>,
        producer: Option<ProducerSpan>,
        reply: Reply<Vec<AppendOutcome>>,
    },
    CommitOffsets {
        group: String,
        topic_id: u32,
        offsets: Vec<(u32, u64)>,
        reply: Reply<()>,
    },
    CreateTopic {
        name: String,
        config: TopicConfig,
        reply: Reply<()>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<()>,
    },
    AlterTopic {
        name: String,
        config: TopicConfig,
        reply: Reply<()>,
    },
    AllocateProducerId {
        reply: Reply<i64>,
    },
    /// A plugin upload, stored as the next version of `name`.
    PutPluginVersion {
        name: String,
        hash: String,
        bytes: Vec<u8>,
        meta: Vec<u8>,
        reply: Reply<u32>,
    },
    /// An attachment stored (`Some`) or removed (`None`).
    PutAttachment {
        name: String,
        spec: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    Retention {
        reply: Option<Reply<RetentionReport>>,
    },
    /// Make earlier `flush = interval` commits durable (sent by the ticker).
    Flush,
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct AppendRequest {
    pub append: BatchToAppend,
    pub reply: Reply<AppendOutcome>,
}

/// A validated batch on its way into a partition.
pub(crate) struct BatchToAppend {
    pub topic_id: u32,
    pub topic: String,
    pub partition: u32,
    pub header: BatchHeader,
    pub batch: Vec<u8>,
}

/// The producer batch a rewritten transaction stands for (ingest plugins
/// stored fewer records, or other topics): where the producer sent it and,
/// for an idempotent producer, its sequence numbers, checked and remembered
/// as if the batch had been stored as sent. The transaction's outcomes end
/// with one more: this batch's, as its producer is answered.
#[derive(Debug, Clone)]
pub(crate) struct ProducerSpan {
    pub topic_id: u32,
    pub topic: String,
    pub partition: u32,
    /// (producer id, first sequence, last sequence).
    pub sequence: Option<(i64, i32, i32)>,
}

/// Outcome of a sequence check that lets the caller go on.
enum Sequenced {
    /// Already stored: answer with this, write nothing.
    Duplicate(AppendOutcome),
    /// New: write, then remember it in this window.
    New((i64, u32, u32), ProducerWindow),
}

/// A partition as the writer tracks it; mirrors a row of `PARTITIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartState {
    pub start: u64,
    pub next: u64,
    pub bytes: u64,
    /// Largest timestamp ever appended (drives the time index).
    pub max_ts: i64,
}

impl PartState {
    pub const EMPTY: PartState = PartState { start: 0, next: 0, bytes: 0, max_ts: i64::MIN };

    pub fn row(&self) -> (u64, u64, u64, i64) {
        (self.start, self.next, self.bytes, self.max_ts)
    }

    fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets { start: self.start, end: self.next, bytes: self.bytes }
    }
}

pub(crate) struct WriterTopic {
    pub meta: TopicMeta,
    pub parts: Vec<PartState>,
    /// The same entry readers find in the catalog; its watch senders wake
    /// long-polling readers.
    pub entry: Arc<TopicEntry>,
}

pub(crate) struct Writer {
    db: Arc<Database>,
    catalog: Arc<Catalog>,
    options: LogOptions,
    topics: HashMap<u32, WriterTopic>,
    ids: HashMap<String, u32>,
    /// A `flush = interval` commit has not been fsynced yet.
    /// When the oldest not-yet-fsynced (`flush = interval`) commit happened.
    unflushed_since: Option<Instant>,
    /// Partition end offset at the last compaction, to skip unchanged ones.
    compacted_at: HashMap<PartitionKey, u64>,
}

/// The tables an append group writes.
struct DataTables<'txn> {
    batches: Table<'txn, (u32, u32, u64), &'static [u8]>,
    partitions: Table<'txn, PartitionKey, (u64, u64, u64, i64)>,
    time_index: Table<'txn, (u32, u32, i64), u64>,
    producers: Table<'txn, (i64, u32, u32), &'static [u8]>,
    group_offsets: Table<'txn, (&'static str, u32, u32), u64>,
}

impl<'txn> DataTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(DataTables {
            batches: txn.open_table(tables::BATCHES).map_err(LogError::storage)?,
            partitions: txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?,
            time_index: txn.open_table(tables::TIME_INDEX).map_err(LogError::storage)?,
            producers: txn.open_table(tables::PRODUCERS).map_err(LogError::storage)?,
            group_offsets: txn.open_table(tables::GROUP_OFFSETS).map_err(LogError::storage)?,
        })
    }
}

impl Writer {
    /// Reads topics and partition states (not the log itself) and fills the
    /// catalog. This is all a reopen costs.
    pub fn load(db: Arc<Database>, catalog: Arc<Catalog>, options: LogOptions) -> Result<Writer> {
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write().map_err(LogError::storage)?;
        {
            DataTables::open(&txn)?;
            txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
            txn.open_table(tables::PLUGIN_BLOBS).map_err(LogError::storage)?;
            txn.open_table(tables::PLUGIN_VERSIONS).map_err(LogError::storage)?;
            txn.open_table(tables::ATTACHMENTS).map_err(LogError::storage)?;
        }
        txn.commit().map_err(LogError::storage)?;

        let mut writer = Writer {
            db,
            catalog,
            options,
            topics: HashMap::new(),
            ids: HashMap::new(),
            unflushed_since: None,
            compacted_at: HashMap::new(),
        };
        let txn = writer.db.begin_read().map_err(LogError::storage)?;
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
            writer.install_topic(name, meta, parts, None);
        }
        tracing::debug!(topics = writer.topics.len(), "log state loaded");
        Ok(writer)
    }

    /// Puts a topic into the writer's state and the readers' catalog,
    /// reusing existing watch senders so waiters stay subscribed.
    fn install_topic(&mut self, name: String, meta: TopicMeta, parts: Vec<PartState>, old: Option<&TopicEntry>) {
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
        let entry = TopicEntry { id: meta.id, name: name.clone(), config: meta.config.clone(), partitions };
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
        tracing::info!("log writer stopped");
        for reply in shutdown {
            let _ = reply.send(());
        }
    }

    fn process(&mut self, group: Vec<Command>, shutdown: &mut Vec<oneshot::Sender<()>>) {
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
    fn commit_data(&mut self, mut data: Vec<Command>) {
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
                            if matches!(&outcome, Ok(o) if o.first().is_some_and(|o| !o.duplicate)) {
                                self.catalog.stats.batches_appended.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = a.reply.send(outcome.map(|mut o| o.swap_remove(0)));
                        }
                        Command::Transaction { reply, .. } => {
                            if let Ok(o) = &outcome {
                                self.catalog.stats.batches_appended.fetch_add(o.len() as u64, Ordering::Relaxed);
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
                let message = err.to_string();
                for cmd in data {
                    let fail = || LogError::CommitFailed(message.clone());
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

    fn begin(&self, durable: bool) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(LogError::storage)?;
        let durability = if durable { Durability::Immediate } else { Durability::None };
        txn.set_durability(durability).map_err(LogError::storage)?;
        txn.set_quick_repair(self.options.quick_repair);
        Ok(txn)
    }

    /// Commits, counting it and its time in the stats.
    fn commit(&self, txn: WriteTransaction) -> Result<()> {
        let started = Instant::now();
        txn.commit().map_err(LogError::storage)?;
        let took = started.elapsed();
        self.catalog.stats.record_commit(took);
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

    /// Returns one outcome per command (one per batch; none for offset
    /// commits), or the storage error that aborted the transaction.
    fn write_data(
        &self,
        data: &mut [Command],
        overlay: &mut HashMap<PartitionKey, PartState>,
        durable: bool,
    ) -> Result<Vec<Result<Vec<AppendOutcome>>>> {
        let txn = self.begin(durable)?;
        let mut outcomes = Vec::with_capacity(data.len());
        {
            let mut t = DataTables::open(&txn)?;
            for cmd in data.iter_mut() {
                let outcome = match cmd {
                    Command::Append(a) => self.apply_append(&mut t, overlay, &mut a.append).map(|o| vec![o]),
                    Command::CommitOffsets { group, topic_id, offsets, .. } => {
                        Self::apply_commit(&mut t, group, *topic_id, offsets).map(|()| Vec::new())
                    }
                    Command::Transaction { appends, commit, producer, .. } => {
                        self.apply_transaction(&mut t, overlay, appends, commit, producer.as_ref())
                    }
                    _ => unreachable!("only data commands are grouped"),
                };
                if let Err(LogError::Storage(e)) = outcome {
                    return Err(LogError::Storage(e));
                }
                outcomes.push(outcome);
            }
            for (key, state) in overlay.iter() {
                t.partitions.insert(*key, state.row()).map_err(LogError::storage)?;
            }
        }
        self.commit(txn)?;
        Ok(outcomes)
    }

    fn apply_commit(t: &mut DataTables<'_>, group: &str, topic_id: u32, offsets: &[(u32, u64)]) -> Result<()> {
        for &(p, offset) in offsets {
            t.group_offsets.insert((group, topic_id, p), offset).map_err(LogError::storage)?;
        }
        Ok(())
    }

    /// All of a transaction's batches and its offset commit, or (when a
    /// topic or partition is gone) none: everything that could refuse one
    /// batch is checked before the first is written.
    fn apply_transaction(
        &self,
        t: &mut DataTables<'_>,
        overlay: &mut HashMap<PartitionKey, PartState>,
        appends: &mut [BatchToAppend],
        commit: &Option<GroupCommit>,
        producer: Option<&ProducerSpan>,
    ) -> Result<Vec<AppendOutcome>> {
        for a in appends.iter() {
            let topic = self.topics.get(&a.topic_id).ok_or_else(|| LogError::UnknownTopic(a.topic.clone()))?;
            if a.partition as usize >= topic.parts.len() {
                return Err(LogError::UnknownPartition {
                    topic: a.topic.clone(),
                    partition: a.partition,
                    partitions: topic.parts.len() as u32,
                });
            }
        }
        if let Some((_, topic_id, offsets)) = commit {
            let topic = self.topics.get(topic_id).ok_or_else(|| LogError::UnknownTopic(format!("id {topic_id}")))?;
            if let Some(&(p, _)) = offsets.iter().find(|(p, _)| *p as usize >= topic.parts.len()) {
                return Err(LogError::UnknownPartition {
                    topic: topic.entry.name.clone(),
                    partition: p,
                    partitions: topic.parts.len() as u32,
                });
            }
        }
        let mut window = None;
        if let Some(span) = producer {
            self.topics
                .get(&span.topic_id)
                .and_then(|topic| topic.parts.get(span.partition as usize))
                .ok_or_else(|| LogError::UnknownTopic(span.topic.clone()))?;
            match self.check_sequence(t, span)? {
                Some(Sequenced::Duplicate(outcome)) => return Ok(vec![outcome]),
                Some(Sequenced::New(pkey, w)) => window = Some((pkey, w)),
                None => {}
            }
        }
        if let Some((group, topic_id, offsets)) = commit {
            Self::apply_commit(t, group, *topic_id, offsets)?;
        }
        // Batches without a producer id (checked when queued): no sequence
        // check can refuse them, so none fails after another was written.
        let mut outcomes: Vec<AppendOutcome> =
            appends.iter_mut().map(|a| self.apply_append(t, overlay, a)).collect::<Result<_>>()?;
        if let Some(span) = producer {
            // The producer's answer: the records stored in the partition it
            // sent to, or (all dropped) that partition's end offset.
            let stored = appends
                .iter()
                .zip(&outcomes)
                .find(|(a, _)| a.topic_id == span.topic_id && a.partition == span.partition)
                .map(|(_, o)| *o);
            let outcome = stored.unwrap_or_else(|| {
                let end = overlay.get(&(span.topic_id, span.partition)).copied().or_else(|| {
                    let topic = self.topics.get(&span.topic_id)?;
                    topic.parts.get(span.partition as usize).copied()
                });
                let end = end.map_or(0, |s| s.next);
                AppendOutcome { base_offset: end, last_offset: end, duplicate: false }
            });
            if let (Some((_, first_seq, last_seq)), Some((pkey, mut w))) = (span.sequence, window) {
                w.record(RecentBatch { first_seq, last_seq, base_offset: outcome.base_offset });
                t.producers.insert(pkey, w.to_bytes().as_slice()).map_err(LogError::storage)?;
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Idempotence: decides, before anything is written, whether a batch with
    /// these sequence numbers is new, a retry (duplicate) or refused.
    fn check_sequence(&self, t: &DataTables<'_>, span: &ProducerSpan) -> Result<Option<Sequenced>> {
        let Some((producer_id, first_seq, last_seq)) = span.sequence else {
            return Ok(None);
        };
        let pkey = (producer_id, span.topic_id, span.partition);
        let w = t
            .producers
            .get(pkey)
            .map_err(LogError::storage)?
            .map(|g| ProducerWindow::from_bytes(g.value()))
            .unwrap_or_default();
        match w.check(first_seq, last_seq) {
            SequenceCheck::Append => Ok(Some(Sequenced::New(pkey, w))),
            SequenceCheck::Duplicate { base_offset, last_offset } => {
                Ok(Some(Sequenced::Duplicate(AppendOutcome { base_offset, last_offset, duplicate: true })))
            }
            SequenceCheck::Gap { expected } => Err(LogError::SequenceGap {
                producer_id,
                topic: span.topic.clone(),
                partition: span.partition,
                expected,
                got: first_seq,
            }),
            SequenceCheck::OutOfOrder { last } => Err(LogError::OutOfOrderSequence {
                producer_id,
                topic: span.topic.clone(),
                partition: span.partition,
                got: first_seq,
                last,
            }),
        }
    }

    /// Checks sequence numbers, assigns offsets and stores one batch.
    fn apply_append(
        &self,
        t: &mut DataTables<'_>,
        overlay: &mut HashMap<PartitionKey, PartState>,
        a: &mut BatchToAppend,
    ) -> Result<AppendOutcome> {
        let topic = self.topics.get(&a.topic_id).ok_or_else(|| LogError::UnknownTopic(a.topic.clone()))?;
        let current = topic.parts.get(a.partition as usize).ok_or_else(|| LogError::UnknownPartition {
            topic: a.topic.clone(),
            partition: a.partition,
            partitions: topic.parts.len() as u32,
        })?;
        let key = (a.topic_id, a.partition);
        let state = overlay.entry(key).or_insert(*current);
        let h = a.header;

        // Idempotence: decide before writing anything.
        let mut window = None;
        if let Some(last_seq) = h.last_sequence() {
            let span = ProducerSpan {
                topic_id: a.topic_id,
                topic: a.topic.clone(),
                partition: a.partition,
                sequence: Some((h.producer_id, h.base_sequence, last_seq)),
            };
            match self.check_sequence(t, &span)? {
                Some(Sequenced::Duplicate(outcome)) => return Ok(outcome),
                Some(Sequenced::New(pkey, w)) => window = Some((pkey, w, last_seq)),
                None => {}
            }
        }

        let base = state.next;
        set_base_offset(&mut a.batch, base)?;
        t.batches.insert((a.topic_id, a.partition, base), a.batch.as_slice()).map_err(LogError::storage)?;
        if h.max_timestamp > state.max_ts {
            t.time_index.insert((a.topic_id, a.partition, h.max_timestamp), base).map_err(LogError::storage)?;
            state.max_ts = h.max_timestamp;
        }
        state.next = base + u64::from(h.last_offset_delta) + 1;
        state.bytes += a.batch.len() as u64;
        if let Some((pkey, mut w, last_seq)) = window {
            w.record(RecentBatch { first_seq: h.base_sequence, last_seq, base_offset: base });
            t.producers.insert(pkey, w.to_bytes().as_slice()).map_err(LogError::storage)?;
        }
        Ok(AppendOutcome { base_offset: base, last_offset: state.next - 1, duplicate: false })
    }

    /// Makes a committed partition state visible: memory, then readers.
    fn set_part_state(&mut self, (topic_id, partition): PartitionKey, state: PartState) {
        if let Some(topic) = self.topics.get_mut(&topic_id) {
            if let Some(slot) = topic.parts.get_mut(partition as usize) {
                *slot = state;
            }
            if let Some(tx) = topic.entry.partitions.get(partition as usize) {
                tx.send_replace(state.offsets());
            }
        }
    }

    /// An empty durable commit: makes every earlier non-durable one durable.
    fn flush(&mut self) {
        if self.unflushed_since.is_none() {
            return;
        }
        let result = self.begin(true).and_then(|txn| self.commit(txn));
        match result {
            Ok(()) => self.unflushed_since = None,
            Err(err) => {
                tracing::error!(error = %err, "flush failed; will retry at the next interval")
            }
        }
    }

    fn admin(&mut self, cmd: Command) {
        match cmd {
            Command::CreateTopic { name, config, reply } => {
                let _ = reply.send(self.create_topic(name, config));
            }
            Command::DeleteTopic { name, reply } => {
                let _ = reply.send(self.delete_topic(&name));
            }
            Command::AlterTopic { name, config, reply } => {
                let _ = reply.send(self.alter_topic(name, config));
            }
            Command::AllocateProducerId { reply } => {
                let _ = reply.send(self.next_counter("next_producer_id").map(|id| id as i64));
            }
            Command::PutPluginVersion { name, hash, bytes, meta, reply } => {
                let _ = reply.send(self.put_plugin_version(&name, &hash, &bytes, &meta));
            }
            Command::PutAttachment { name, spec, reply } => {
                let _ = reply.send(self.put_attachment(&name, spec.as_deref()));
            }
            Command::Retention { reply } => {
                let result = self.retention();
                if let Err(err) = &result {
                    tracing::error!(error = %err, "retention failed");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Flush => self.flush(),
            Command::Append(_)
            | Command::CommitOffsets { .. }
            | Command::Transaction { .. }
            | Command::Shutdown { .. } => {
                unreachable!("handled in process")
            }
        }
    }

    fn put_plugin_version(&mut self, name: &str, hash: &str, bytes: &[u8], meta: &[u8]) -> Result<u32> {
        let txn = self.begin(true)?;
        let version = {
            let mut blobs = txn.open_table(tables::PLUGIN_BLOBS).map_err(LogError::storage)?;
            if blobs.get(hash).map_err(LogError::storage)?.is_none() {
                blobs.insert(hash, bytes).map_err(LogError::storage)?;
            }
            let mut versions = txn.open_table(tables::PLUGIN_VERSIONS).map_err(LogError::storage)?;
            let last = versions
                .range((name, 0)..=(name, u32::MAX))
                .map_err(LogError::storage)?
                .next_back()
                .transpose()
                .map_err(LogError::storage)?
                .map_or(0, |(key, _)| key.value().1);
            let version = last + 1;
            versions.insert((name, version), meta).map_err(LogError::storage)?;
            version
        };
        self.commit(txn)?;
        self.unflushed_since = None;
        Ok(version)
    }

    fn put_attachment(&mut self, name: &str, spec: Option<&[u8]>) -> Result<()> {
        let txn = self.begin(true)?;
        {
            let mut table = txn.open_table(tables::ATTACHMENTS).map_err(LogError::storage)?;
            match spec {
                Some(spec) => table.insert(name, spec).map(drop),
                None => table.remove(name).map(drop),
            }
            .map_err(LogError::storage)?;
        }
        self.commit(txn)?;
        self.unflushed_since = None;
        Ok(())
    }

    /// Reads and increments a persistent counter in a durable transaction.
    fn next_counter(&mut self, name: &str) -> Result<u64> {
        let txn = self.begin(true)?;
        let value = {
            let mut counters = txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
            let value = counters.get(name).map_err(LogError::storage)?.map(|g| g.value()).unwrap_or(0);
            counters.insert(name, value + 1).map_err(LogError::storage)?;
            value
        };
        self.commit(txn)?;
        self.unflushed_since = None;
        Ok(value)
    }

    fn create_topic(&mut self, name: String, config: TopicConfig) -> Result<()> {
        if self.ids.contains_key(&name) {
            return Err(LogError::TopicExists(name));
        }
        let txn = self.begin(true)?;
        let meta = {
            let mut counters = txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
            let id = counters.get("next_topic_id").map_err(LogError::storage)?.map(|g| g.value()).unwrap_or(0);
            counters.insert("next_topic_id", id + 1).map_err(LogError::storage)?;
            let id = u32::try_from(id).map_err(|_| LogError::InvalidConfig("topic ids exhausted".into()))?;
            let meta = TopicMeta { id, config };
            let mut topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            topics.insert(name.as_str(), meta.to_bytes().as_slice()).map_err(LogError::storage)?;
            let mut partitions = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
            for p in 0..meta.config.partitions {
                partitions.insert((id, p), PartState::EMPTY.row()).map_err(LogError::storage)?;
            }
            meta
        };
        self.commit(txn)?;
        self.unflushed_since = None;
        tracing::info!(topic = %name, partitions = meta.config.partitions, "topic created");
        let parts = vec![PartState::EMPTY; meta.config.partitions as usize];
        self.install_topic(name, meta, parts, None);
        Ok(())
    }

    fn delete_topic(&mut self, name: &str) -> Result<()> {
        let id = *self.ids.get(name).ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let txn = self.begin(true)?;
        {
            let mut topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            topics.remove(name).map_err(LogError::storage)?;
            let mut t = DataTables::open(&txn)?;
            t.batches.retain_in((id, 0, 0)..=(id, u32::MAX, u64::MAX), |_, _| false).map_err(LogError::storage)?;
            t.partitions.retain_in((id, 0)..=(id, u32::MAX), |_, _| false).map_err(LogError::storage)?;
            t.time_index
                .retain_in((id, 0, i64::MIN)..=(id, u32::MAX, i64::MAX), |_, _| false)
                .map_err(LogError::storage)?;
            t.producers.retain(|k, _| k.1 != id).map_err(LogError::storage)?;
            t.group_offsets.retain(|k, _| k.1 != id).map_err(LogError::storage)?;
        }
        self.commit(txn)?;
        self.unflushed_since = None;
        self.topics.remove(&id);
        self.ids.remove(name);
        self.catalog.remove(name);
        self.compacted_at.retain(|k, _| k.0 != id);
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    fn alter_topic(&mut self, name: String, config: TopicConfig) -> Result<()> {
        let id = *self.ids.get(&name).ok_or_else(|| LogError::UnknownTopic(name.clone()))?;
        let topic = &self.topics[&id];
        let current = topic.meta.config.partitions;
        if config.partitions < current {
            return Err(LogError::PartitionsCannotShrink { topic: name, current, requested: config.partitions });
        }
        let meta = TopicMeta { id, config };
        let txn = self.begin(true)?;
        {
            let mut topics = txn.open_table(tables::TOPICS).map_err(LogError::storage)?;
            topics.insert(name.as_str(), meta.to_bytes().as_slice()).map_err(LogError::storage)?;
            let mut partitions = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
            for p in current..meta.config.partitions {
                partitions.insert((id, p), PartState::EMPTY.row()).map_err(LogError::storage)?;
            }
        }
        self.commit(txn)?;
        self.unflushed_since = None;
        let old = self.topics.remove(&id).expect("topic present");
        let mut parts = old.parts;
        parts.resize(meta.config.partitions as usize, PartState::EMPTY);
        tracing::info!(topic = %name, partitions = meta.config.partitions, "topic altered");
        self.install_topic(name, meta, parts, Some(&old.entry));
        Ok(())
    }

    fn retention(&mut self) -> Result<RetentionReport> {
        let now = self.options.clock.now_ms();
        let txn = self.begin(true)?;
        let (report, changes, compacted) = retention::enforce(&txn, &self.topics, &self.compacted_at, now)?;
        self.commit(txn)?;
        self.unflushed_since = None;
        for (key, state) in changes {
            self.set_part_state(key, state);
        }
        self.compacted_at.extend(compacted);
        if report.batches_deleted > 0 || report.records_compacted > 0 {
            tracing::info!(?report, "retention");
        }
        Ok(report)
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
