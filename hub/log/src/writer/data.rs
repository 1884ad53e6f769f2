//! One group commit's data: appends (offsets assigned, idempotent producers
//! checked), group offset commits and multi-partition transactions, written
//! into the tables of one write transaction.

use super::*;

/// Outcome of a sequence check that lets the caller go on.
enum Sequenced {
    /// Already stored: answer with this, write nothing.
    Duplicate(AppendOutcome),
    /// New: write, then remember it in this window.
    New((i64, u32, u32), ProducerWindow),
}

/// The tables an append group writes.
pub(super) struct DataTables<'txn> {
    pub(super) batches: Table<'txn, (u32, u32, u64), &'static [u8]>,
    pub(super) partitions: Table<'txn, PartitionKey, (u64, u64, u64, i64)>,
    pub(super) time_index: Table<'txn, (u32, u32, i64), u64>,
    pub(super) producers: Table<'txn, (i64, u32, u32), &'static [u8]>,
    pub(super) group_offsets: Table<'txn, (&'static str, u32, u32), u64>,
}

impl<'txn> DataTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self> {
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
    /// Returns one outcome per command (one per batch; none for offset
    /// commits), or the storage error that aborted the transaction.
    pub(super) fn write_data(
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
        self.commit(txn, durable)?;
        Ok(outcomes)
    }

    pub(super) fn apply_commit(
        t: &mut DataTables<'_>,
        group: &str,
        topic_id: u32,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        for &(p, offset) in offsets {
            t.group_offsets.insert((group, topic_id, p), offset).map_err(LogError::storage)?;
        }
        Ok(())
    }

    /// All of a transaction's batches and its offset commit, or (when a
    /// topic or partition is gone) none: everything that could refuse one
    /// batch is checked before the first is written.
    pub(super) fn apply_transaction(
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
    pub(super) fn apply_append(
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
    pub(super) fn set_part_state(&mut self, (topic_id, partition): PartitionKey, state: PartState) {
        if let Some(topic) = self.topics.get_mut(&topic_id) {
            if let Some(slot) = topic.parts.get_mut(partition as usize) {
                *slot = state;
            }
            if let Some(tx) = topic.entry.partitions.get(partition as usize) {
                tx.send_replace(state.offsets());
            }
        }
    }
}
