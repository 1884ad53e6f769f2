//! The topics as readers see them. Only the writer changes the catalog,
//! after each commit; readers take a topic's entry and watch its partitions'
//! offsets (long polls wake on them).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::{LogError, LogStats, PartitionOffsets, Result, TopicConfig};

/// The topics as readers see them: config and each partition's offsets.
/// Only the writer changes it, after each commit.
#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) topics: RwLock<HashMap<String, Arc<TopicEntry>>>,
    /// Marked changed whenever a topic is created, altered or deleted, so
    /// readers that follow "every topic matching …" wait on it instead of
    /// polling the catalog.
    pub(crate) changes: TopicChanges,
    pub stats: LogStats,
    /// The clock jumps the log has seen, oldest first.
    pub(crate) clock_jumps: RwLock<Vec<crate::ClockJump>>,
    /// `Log::steady_ms` minus the clock's monotonic reading: the steady
    /// clock runs on the monotonic one, so it never leaps, not even before
    /// the writer has noticed a jump. Set when the log opens and after
    /// each jump (to the wall clock without the jumps). Read for every MQTT
    /// message delivered, so without a lock.
    pub(crate) steady_offset_ms: std::sync::atomic::AtomicI64,
}

pub(crate) struct TopicEntry {
    pub id: u32,
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<watch::Sender<PartitionOffsets>>,
    /// Bytes appended to each partition since the log was opened (kept
    /// when partitions are added).
    pub bytes_in: Vec<Arc<AtomicU64>>,
}

impl Catalog {
    pub(crate) fn get(&self, topic: &str) -> Result<Arc<TopicEntry>> {
        self.topics
            .read()
            .expect("catalog lock poisoned")
            .get(topic)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }

    pub(crate) fn insert(&self, entry: TopicEntry) {
        self.topics.write().expect("catalog lock poisoned").insert(entry.name.clone(), Arc::new(entry));
        self.changes.0.send_replace(());
    }

    pub(crate) fn remove(&self, topic: &str) {
        self.topics.write().expect("catalog lock poisoned").remove(topic);
        self.changes.0.send_replace(());
    }
}

/// The sender behind [`crate::Log::watch_topics`].
pub(crate) struct TopicChanges(pub(crate) watch::Sender<()>);

impl Default for TopicChanges {
    fn default() -> Self {
        TopicChanges(watch::channel(()).0)
    }
}

impl TopicEntry {
    pub(crate) fn partition(&self, partition: u32) -> Result<&watch::Sender<PartitionOffsets>> {
        self.partitions.get(partition as usize).ok_or_else(|| LogError::UnknownPartition {
            topic: self.name.clone(),
            partition,
            partitions: self.partitions.len() as u32,
        })
    }
}
