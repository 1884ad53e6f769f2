//! Choosing a partition for each record.
//!
//! * Keyed records: `cairn_proto::partition_for_key` (Kafka-compatible
//!   murmur2), so one key always lands in one partition and stays ordered.
//! * Unkeyed records: all records of one produce call go to the topic's
//!   current "sticky" partition, which then moves on round-robin. One batch per
//!   call instead of one per partition keeps batches large (as Kafka's sticky
//!   partitioner does) while load still spreads over partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cairn_proto::partition_for_key;

/// Partition choice with per-topic sticky state. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Partitioner {
    sticky: Arc<Mutex<HashMap<String, u32>>>,
}

impl Partitioner {
    /// Groups record indexes by partition, keeping input order within each.
    pub fn split<'a>(
        &self,
        topic: &str,
        partitions: u32,
        keys: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> BTreeMap<u32, Vec<usize>> {
        let mut out: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut sticky = None;
        for (i, key) in keys.enumerate() {
            let partition = match key {
                Some(k) => partition_for_key(k, partitions),
                None => *sticky.get_or_insert_with(|| self.sticky(topic, partitions)),
            };
            out.entry(partition).or_default().push(i);
        }
        out
    }

    /// The topic's sticky partition for one batch of unkeyed records;
    /// advances it for the next batch.
    pub fn sticky(&self, topic: &str, partitions: u32) -> u32 {
        let mut sticky = self.sticky.lock().expect("partitioner lock poisoned");
        let slot = sticky.entry(topic.to_string()).or_insert(0);
        let chosen = *slot % partitions.max(1);
        *slot = (chosen + 1) % partitions.max(1);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_records_follow_the_hash_and_keep_order() {
        let p = Partitioner::default();
        let keys: Vec<Option<&[u8]>> = vec![Some(b"a"), Some(b"b"), Some(b"a"), Some(b"c"), Some(b"a")];
        let split = p.split("t", 4, keys.iter().copied());
        let a = partition_for_key(b"a", 4);
        assert_eq!(split[&a].iter().filter(|&&i| keys[i] == Some(b"a")).copied().collect::<Vec<_>>(), vec![0, 2, 4]);
        for (part, idx) in &split {
            for &i in idx {
                assert_eq!(partition_for_key(keys[i].unwrap(), 4), *part);
            }
        }
    }

    #[test]
    fn unkeyed_records_stick_per_call_and_rotate() {
        let p = Partitioner::default();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let split = p.split("t", 3, [None, None, None].into_iter());
            assert_eq!(split.len(), 1, "one call, one partition");
            let (&part, idx) = split.iter().next().unwrap();
            assert_eq!(idx, &vec![0, 1, 2]);
            seen.push(part);
        }
        assert_eq!(seen, vec![0, 1, 2, 0, 1, 2]);
    }
}
