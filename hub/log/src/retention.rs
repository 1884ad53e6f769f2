//! Getting rid of old records: retention by age and size for `delete` topics,
//! and compaction (last record per key) for `compact` topics.
//!
//! Both run in the writer, in one transaction, whole batches at a time.
//! Retention only ever removes batches from the front of a partition and moves
//! its start offset forward. Compaction rewrites batches in place, keeping each
//! surviving record at its original offset (so offsets then have gaps, as in
//! Kafka), and drops batches left empty.

use std::collections::HashMap;

use cairn_proto::batch::set_base_offset;
use cairn_proto::{BatchHeader, BatchView, BatchWriter};
use redb::{ReadableTable, Table, WriteTransaction};

use super::error::{LogError, Result};
use super::jumps::{self, StoredJump};
use super::state::{PartState, WriterTopic};
use super::tables::{self, PartitionKey};
use super::topic::CleanupPolicy;

/// What one retention run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Batches deleted by age or size.
    pub batches_deleted: u64,
    /// Bytes freed by retention and compaction.
    pub bytes_deleted: u64,
    /// Records removed by compaction because a later record has the same key.
    pub records_compacted: u64,
    /// Partitions where a retention hold kept batches retention would have deleted.
    pub partitions_held: u64,
}

type BatchTable<'t> = Table<'t, (u32, u32, u64), &'static [u8]>;
type TimeIndex<'t> = Table<'t, (u32, u32, i64), u64>;

/// What [`enforce`] did: the report, the partition states to publish after
/// commit, and the end offsets at which partitions were compacted.
pub(crate) type Enforced = (RetentionReport, Vec<(PartitionKey, PartState)>, Vec<(PartitionKey, u64)>);

/// Applies retention and compaction to every topic inside `txn`.
pub(crate) fn enforce(
    txn: &WriteTransaction,
    topics: &HashMap<u32, WriterTopic>,
    compacted_at: &HashMap<PartitionKey, u64>,
    held: &HashMap<PartitionKey, u64>,
    now_ms: i64,
    jumps: &[StoredJump],
) -> Result<Enforced> {
    let mut report = RetentionReport::default();
    let mut changes = Vec::new();
    let mut compacted = Vec::new();
    let mut batches = txn.open_table(tables::BATCHES).map_err(LogError::storage)?;
    let mut time_index = txn.open_table(tables::TIME_INDEX).map_err(LogError::storage)?;
    let mut partitions = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
    for (&id, topic) in topics {
        let config = &topic.meta.config;
        for (p, state) in topic.parts.iter().enumerate() {
            let key = (id, p as u32);
            let new_state = match config.cleanup_policy {
                CleanupPolicy::Delete if config.retention_ms.is_some() || config.retention_bytes.is_some() => {
                    let limits = Limits {
                        now_ms,
                        retention_ms: config.retention_ms,
                        retention_bytes: config.retention_bytes,
                        hold: held.get(&key).copied(),
                        jumps,
                    };
                    delete_old(&mut batches, &mut time_index, key, *state, limits, &mut report)?
                }
                CleanupPolicy::Compact if compacted_at.get(&key) != Some(&state.next) => {
                    compacted.push((key, state.next));
                    compact(&mut batches, key, *state, &mut report)?
                }
                _ => None,
            };
            if let Some(new_state) = new_state {
                partitions.insert(key, new_state.row()).map_err(LogError::storage)?;
                changes.push((key, new_state));
            }
        }
    }
    Ok((report, changes, compacted))
}

#[derive(Clone, Copy)]
struct Limits<'a> {
    now_ms: i64,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    /// No batch holding a record at or past this offset goes.
    hold: Option<u64>,
    /// Clock jumps: a batch written before one is judged without it.
    jumps: &'a [StoredJump],
}

/// Deletes batches from the front while the oldest is past `retention_ms`
/// (judged by its newest record, so no record goes early, and without the
/// clock jumps since it was written) or the partition
/// holds more than `retention_bytes`. Returns the new state if anything went.
fn delete_old(
    batches: &mut BatchTable<'_>,
    time_index: &mut TimeIndex<'_>,
    (id, p): PartitionKey,
    state: PartState,
    limits: Limits<'_>,
    report: &mut RetentionReport,
) -> Result<Option<PartState>> {
    let mut new = state;
    let mut doomed = Vec::new();
    for row in batches.range((id, p, 0)..=(id, p, u64::MAX)).map_err(LogError::storage)? {
        let (key, value) = row.map_err(LogError::storage)?;
        let bytes = value.value();
        let header = match BatchHeader::read(bytes) {
            Ok(h) => h,
            Err(err) => {
                tracing::warn!(topic_id = id, partition = p, error = %err, "unreadable stored batch; retention stops here");
                break;
            }
        };
        let age = || {
            let jumped = jumps::correction(limits.jumps, (id, p), header.next_offset());
            limits.now_ms.saturating_sub(header.max_timestamp).saturating_sub(jumped)
        };
        let too_old = limits.retention_ms.is_some_and(|ms| age() > ms);
        let too_big = limits.retention_bytes.is_some_and(|max| new.bytes > max);
        if !(too_old || too_big) {
            break;
        }
        if limits.hold.is_some_and(|hold| header.next_offset() > hold) {
            report.partitions_held += 1;
            break;
        }
        doomed.push(key.value().2);
        new.bytes -= bytes.len() as u64;
        new.start = header.next_offset();
        report.bytes_deleted += bytes.len() as u64;
    }
    if doomed.is_empty() {
        return Ok(None);
    }
    for base in &doomed {
        batches.remove((id, p, *base)).map_err(LogError::storage)?;
    }
    report.batches_deleted += doomed.len() as u64;

    // Time index entries of deleted batches go; the newest of them is kept,
    // pointing at the new start, because batches from there on may still
    // hold records up to its timestamp.
    let mut stale = Vec::new();
    for row in time_index.range((id, p, i64::MIN)..=(id, p, i64::MAX)).map_err(LogError::storage)? {
        let (key, base) = row.map_err(LogError::storage)?;
        if base.value() >= new.start {
            break;
        }
        stale.push(key.value().2);
    }
    for ts in &stale {
        time_index.remove((id, p, *ts)).map_err(LogError::storage)?;
    }
    if new.start == new.next {
        // Empty now: the next batch starts the index afresh, whatever its
        // timestamps (devices without a clock may send small ones).
        new.max_ts = i64::MIN;
    } else if let Some(&newest) = stale.last() {
        time_index.insert((id, p, newest), new.start).map_err(LogError::storage)?;
    }
    Ok(Some(new))
}

/// Keeps only the last record of each key in one partition.
fn compact(
    batches: &mut BatchTable<'_>,
    (id, p): PartitionKey,
    state: PartState,
    report: &mut RetentionReport,
) -> Result<Option<PartState>> {
    // Pass 1: the offset of the last record of each key.
    let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
    for row in batches.range((id, p, 0)..=(id, p, u64::MAX)).map_err(LogError::storage)? {
        let (_, value) = row.map_err(LogError::storage)?;
        let Ok(view) = BatchView::parse(value.value()) else {
            continue;
        };
        for r in view.records() {
            if let Some(k) = r.key {
                last.insert(k.to_vec(), r.offset);
            }
        }
    }
    // Pass 2: rewrite batches holding superseded records.
    let mut rewrites: Vec<(u64, Option<Vec<u8>>, usize)> = Vec::new();
    for row in batches.range((id, p, 0)..=(id, p, u64::MAX)).map_err(LogError::storage)? {
        let (key, value) = row.map_err(LogError::storage)?;
        let bytes = value.value();
        let Ok(view) = BatchView::parse(bytes) else {
            continue;
        };
        let is_latest = |r: &cairn_proto::RecordView<'_>| r.key.is_none_or(|k| last.get(k) == Some(&r.offset));
        let kept = view.records().filter(is_latest).count();
        let total = view.header().record_count as usize;
        if kept == total {
            continue;
        }
        report.records_compacted += (total - kept) as u64;
        let base = key.value().2;
        if kept == 0 {
            rewrites.push((base, None, bytes.len()));
            continue;
        }
        let h = view.header();
        let mut writer =
            BatchWriter::new(Vec::with_capacity(bytes.len())).map_err(|e| LogError::CorruptMetadata(e.to_string()))?;
        if h.producer_id >= 0 {
            writer = writer.idempotent(h.producer_id, h.base_sequence);
        }
        for r in view.records().filter(is_latest) {
            writer.push_view(&r, h.base_offset).map_err(|e| LogError::CorruptMetadata(e.to_string()))?;
        }
        writer.reserve_offsets_through(h.last_offset_delta);
        let mut rewritten = writer.finish().map_err(|e| LogError::CorruptMetadata(e.to_string()))?;
        set_base_offset(&mut rewritten, base)?;
        rewrites.push((base, Some(rewritten), bytes.len()));
    }
    if rewrites.is_empty() {
        return Ok(None);
    }
    let mut new = state;
    for (base, rewritten, old_len) in rewrites {
        new.bytes -= old_len as u64;
        report.bytes_deleted += old_len as u64;
        match rewritten {
            Some(bytes) => {
                new.bytes += bytes.len() as u64;
                report.bytes_deleted -= bytes.len() as u64;
                batches.insert((id, p, base), bytes.as_slice()).map_err(LogError::storage)?;
            }
            None => {
                batches.remove((id, p, base)).map_err(LogError::storage)?;
            }
        }
    }
    Ok(Some(new))
}
