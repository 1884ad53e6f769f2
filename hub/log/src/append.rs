//! The way in: batches checked (CRC, records, size, topic rules) and queued
//! for the writer, alone, chosen a partition, or as one transaction.

use cairn_proto::{BatchHeader, BatchView, CheckedBatch};
use tokio::sync::oneshot;

use std::sync::Arc;

use crate::catalog::TopicEntry;
use crate::writer::{self, Command, ProducerSpan};
use crate::{AppendOutcome, CleanupPolicy, Log, LogError, Result};

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

impl Log {
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
        Ok((partition, self.queue(append).await?))
    }

    /// Hands one checked append to the writer (waiting while its queue is
    /// full: the backpressure).
    async fn queue(&self, append: writer::BatchToAppend) -> Result<PendingAppend> {
        let (reply, rx) = oneshot::channel();
        let request = writer::AppendRequest { append, reply };
        self.shared.commands.send(Command::Append(request)).await.map_err(|_| LogError::Closed)?;
        Ok(PendingAppend { rx: PendingRx::One(rx), not_stored: 0 })
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
    /// before ingest plugins see the batch; the [`CheckedBatch`] it gets back
    /// carries what was checked, so nothing parses the batch again
    /// ([`Log::submit_checked`] stores it as it is).
    pub fn check_batch(
        &self,
        topic: &str,
        batch: Vec<u8>,
        choose: impl FnOnce(&BatchView<'_>, u32) -> Result<u32>,
    ) -> Result<(u32, CheckedBatch)> {
        let entry = self.entry_for(topic, batch.len())?;
        let checked = CheckedBatch::check(batch)?;
        let (_, partition, _) = self.check_view(topic, entry, &checked.view(), choose)?;
        Ok((partition, checked))
    }

    /// Queues a batch that [`Log::check_batch`] passed for `(topic,
    /// partition)`, like [`Log::submit`], without walking its records again
    /// (the topic's rules are applied again: it may have changed meanwhile).
    pub async fn submit_checked(&self, topic: &str, partition: u32, batch: CheckedBatch) -> Result<PendingAppend> {
        let entry = self.entry_for(topic, batch.as_bytes().len())?;
        let (entry, partition, header) = self.check_view(topic, entry, &batch.view(), |_, _| Ok(partition))?;
        let append = writer::BatchToAppend {
            topic_id: entry.id,
            topic: topic.to_string(),
            partition,
            header,
            batch: batch.into_bytes(),
        };
        self.queue(append).await
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
}
