//! Retention holds: consumer groups whose unread records retention keeps,
//! such as an uplink's, so a link down for longer than a topic's retention
//! still loses nothing; bounded by a size cap beyond which retention
//! applies as usual.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use redb::{ReadableTable, WriteTransaction};

use super::error::{LogError, Result};
use super::tables::{self, PartitionKey};

/// The groups that hold retention (set at runtime by whoever owns them).
#[derive(Debug, Default)]
pub struct RetentionHolds {
    groups: Mutex<BTreeSet<String>>,
}

impl RetentionHolds {
    /// Replaces the holding groups.
    pub fn set(&self, groups: impl IntoIterator<Item = String>) {
        *self.groups.lock().unwrap_or_else(|e| e.into_inner()) = groups.into_iter().collect();
    }

    pub(crate) fn groups(&self) -> Vec<String> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// The lowest committed offset of the holding `groups` per partition: no
/// batch holding a record at or past it is deleted.
pub(crate) fn held_offsets(txn: &WriteTransaction, groups: &[String]) -> Result<HashMap<PartitionKey, u64>> {
    let mut held: HashMap<PartitionKey, u64> = HashMap::new();
    if groups.is_empty() {
        return Ok(held);
    }
    let table = txn.open_table(tables::GROUP_OFFSETS).map_err(LogError::storage)?;
    for group in groups {
        let rows = table.range((group.as_str(), 0u32, 0u32)..=(group.as_str(), u32::MAX, u32::MAX));
        for row in rows.map_err(LogError::storage)? {
            let (key, offset) = row.map_err(LogError::storage)?;
            let (_, topic_id, partition) = key.value();
            let at = held.entry((topic_id, partition)).or_insert(u64::MAX);
            *at = (*at).min(offset.value());
        }
    }
    Ok(held)
}
