//! The broker over a real log: partitioning of produced records.

use std::collections::HashSet;

use cairn_log::{Log, LogOptions, TopicConfig};
use cairn_proto::OwnedRecord;

fn options() -> LogOptions {
    LogOptions { retention_check_interval: None, ..LogOptions::default() }
}

fn open(dir: &tempfile::TempDir) -> Log {
    Log::open(dir.path().join("cairn.redb"), options()).unwrap()
}

fn values(log: &Log, topic: &str, partition: u32, from: u64) -> Vec<(u64, String)> {
    log.read_records(topic, partition, from, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.record.value).unwrap()))
        .collect()
}

#[tokio::test]
async fn produce_splits_by_key_and_sticks_unkeyed_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = cairn_hub::broker::Broker::new(open(&dir));
    broker.log().create_topic("t", TopicConfig::with_partitions(4)).await.unwrap();
    let records: Vec<OwnedRecord> = (0..40)
        .map(|i| OwnedRecord::new(format!("v{i}").into_bytes(), 1).with_key(format!("k{}", i % 8).into_bytes()))
        .collect();
    let produced = broker.produce("t", &records).await.unwrap();
    let mut seen = HashSet::new();
    for p in &produced {
        assert!(p.outcome.is_ok(), "{:?}", p.outcome);
        for &i in &p.records {
            assert_eq!(cairn_proto::partition_for_key(records[i].key.as_ref().unwrap(), 4), p.partition);
            assert!(seen.insert(i));
        }
        // Stored in input order within the partition.
        let stored = values(broker.log(), "t", p.partition, 0);
        let expected: Vec<String> = p.records.iter().map(|&i| format!("v{i}")).collect();
        assert_eq!(stored.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), expected);
    }
    assert_eq!(seen.len(), 40);

    let unkeyed = vec![OwnedRecord::new(b"u".to_vec(), 1); 3];
    let a = broker.produce("t", &unkeyed).await.unwrap();
    let b = broker.produce("t", &unkeyed).await.unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_ne!(a[0].partition, b[0].partition, "the sticky partition moves on after a call");
}
