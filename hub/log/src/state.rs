//! What the writer knows of each topic and partition between commits: the
//! in-memory mirror of the `partitions` table. Retention reads and updates it
//! too, so it lives apart from both.

use std::sync::Arc;

use crate::topic::TopicMeta;
use crate::{PartitionOffsets, TopicEntry};

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

    pub(crate) fn offsets(&self) -> PartitionOffsets {
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
