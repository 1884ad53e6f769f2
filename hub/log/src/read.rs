//! Reading the log: fetch by offset, seek by time, committed group offsets.
//!
//! Every read runs in a redb read transaction: it sees one consistent commit
//! and never blocks the writer (MVCC).

pub use cairn_proto::fetch::Fetch;
use cairn_proto::{BatchHeader, BatchView, OwnedRecord};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::error::{LogError, Result};
use super::tables;
use super::Log;

/// A record with the offset it is stored at, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: u64,
    pub record: OwnedRecord,
}

impl Log {
    /// Reads whole batches from `offset` on, up to about `max_bytes` (at
    /// least one batch is returned when any exists, however large, so a
    /// consumer always makes progress). An offset below the start or past the
    /// end is an `OffsetOutOfRange` error naming the valid range; the end
    /// offset itself is valid and returns nothing.
    pub fn fetch(&self, topic: &str, partition: u32, offset: u64, max_bytes: usize) -> Result<Fetch> {
        let entry = self.topic_entry(topic)?;
        entry.partition(partition)?;
        let id = entry.id;
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let (start, end) = partition_range(&txn, topic, id, partition)?;
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { topic: topic.to_string(), partition, offset, start, end });
        }
        let mut fetch = Fetch { batches: Vec::new(), offset, start_offset: start, end_offset: end };
        if offset == end {
            return Ok(fetch);
        }
        let batches = txn.open_table(tables::BATCHES).map_err(LogError::storage)?;
        // The batch holding `offset` is the one with the greatest base ≤ it.
        let from =
            match batches.range((id, partition, 0)..=(id, partition, offset)).map_err(LogError::storage)?.next_back() {
                Some(row) => row.map_err(LogError::storage)?.0.value().2,
                None => offset,
            };
        let mut total = 0usize;
        for row in batches.range((id, partition, from)..=(id, partition, u64::MAX)).map_err(LogError::storage)? {
            let (key, value) = row.map_err(LogError::storage)?;
            let bytes = value.value();
            // Corruption at rest is an error, never a silent skip.
            let header = BatchHeader::read_checked(bytes).map_err(|reason| LogError::CorruptBatch {
                topic: topic.to_string(),
                partition,
                base_offset: key.value().2,
                reason,
            })?;
            // Skip a batch that ends before `offset` (compaction leaves gaps).
            if header.next_offset() <= offset {
                continue;
            }
            if !fetch.batches.is_empty() && total + bytes.len() > max_bytes {
                break;
            }
            total += bytes.len();
            fetch.batches.push(bytes.to_vec());
        }
        Ok(fetch)
    }

    /// Reads up to `max_records` records from `offset` on, owned. A
    /// convenience over [`Log::fetch`] for tools and tests.
    pub fn read_records(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Vec<FetchedRecord>> {
        let mut out = Vec::new();
        let mut next = offset;
        while out.len() < max_records {
            let fetch = self.fetch(topic, partition, next, 1024 * 1024)?;
            if fetch.batches.is_empty() {
                break;
            }
            for r in fetch.records().take(max_records - out.len()) {
                out.push(FetchedRecord { offset: r.offset, record: OwnedRecord::from(&r) });
            }
            next = fetch.next_offset();
            if next >= fetch.end_offset {
                break;
            }
        }
        Ok(out)
    }

    /// The offset of the first record with a timestamp ≥ `timestamp_ms`, or
    /// `None` when no stored record is that recent (a consumer would then
    /// start at the end).
    pub fn offset_for_timestamp(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<Option<u64>> {
        let entry = self.topic_entry(topic)?;
        entry.partition(partition)?;
        let id = entry.id;
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let (start, _) = partition_range(&txn, topic, id, partition)?;
        let index = txn.open_table(tables::TIME_INDEX).map_err(LogError::storage)?;
        // First batch at which the running max timestamp reached the target:
        // no earlier batch holds a record that recent.
        let first =
            index.range((id, partition, timestamp_ms)..=(id, partition, i64::MAX)).map_err(LogError::storage)?.next();
        let Some(row) = first else { return Ok(None) };
        let base = row.map_err(LogError::storage)?.1.value().max(start);
        let batches = txn.open_table(tables::BATCHES).map_err(LogError::storage)?;
        for row in batches.range((id, partition, base)..=(id, partition, u64::MAX)).map_err(LogError::storage)? {
            let (_, value) = row.map_err(LogError::storage)?;
            let Ok(view) = BatchView::parse(value.value()) else {
                continue;
            };
            if view.header().max_timestamp < timestamp_ms {
                continue;
            }
            if let Some(r) = view.records().find(|r| r.timestamp >= timestamp_ms) {
                return Ok(Some(r.offset));
            }
        }
        Ok(None)
    }

    /// A group's committed offsets on a topic, by partition.
    pub fn committed_offsets(&self, group: &str, topic: &str) -> Result<Vec<(u32, u64)>> {
        let id = self.topic_entry(topic)?.id;
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(tables::GROUP_OFFSETS).map_err(LogError::storage)?;
        let mut out = Vec::new();
        for row in table.range((group, id, 0)..=(group, id, u32::MAX)).map_err(LogError::storage)? {
            let (key, offset) = row.map_err(LogError::storage)?;
            out.push((key.value().2, offset.value()));
        }
        Ok(out)
    }

    /// Every group that has committed offsets, sorted, with the topics it
    /// committed on.
    pub fn list_groups(&self) -> Result<Vec<(String, Vec<String>)>> {
        let names: std::collections::HashMap<u32, String> =
            self.list_topics().into_iter().filter_map(|t| Some((self.topic_entry(&t.name).ok()?.id, t.name))).collect();
        let txn = self.db()?.begin_read().map_err(LogError::storage)?;
        let table = txn.open_table(tables::GROUP_OFFSETS).map_err(LogError::storage)?;
        let mut groups: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
        for row in table.iter().map_err(LogError::storage)? {
            let (key, _) = row.map_err(LogError::storage)?;
            let (group, topic_id, _) = key.value();
            let topics = groups.entry(group.to_string()).or_default();
            if let Some(name) = names.get(&topic_id) {
                topics.insert(name.clone());
            }
        }
        Ok(groups.into_iter().map(|(g, t)| (g, t.into_iter().collect())).collect())
    }
}

/// (start, end) of a partition as of this read transaction.
fn partition_range(txn: &ReadTransaction, topic: &str, id: u32, partition: u32) -> Result<(u64, u64)> {
    let table = txn.open_table(tables::PARTITIONS).map_err(LogError::storage)?;
    let row = table.get((id, partition)).map_err(LogError::storage)?;
    // Missing row: the topic was deleted after we looked it up.
    let (start, end, _, _) = row.ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?.value();
    Ok((start, end))
}
