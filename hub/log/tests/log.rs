//! The log against real redb files in temp dirs: topics, appends, reads,
//! group commit, idempotence, retention, compaction, time seek, reopen.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_log::{CleanupPolicy, FlushPolicy, Log, LogError, LogOptions, ManualClock, TopicConfig};
use cairn_proto::{BatchWriter, CheckedBatch, OwnedRecord};

fn options() -> LogOptions {
    LogOptions { retention_check_interval: None, ..LogOptions::default() }
}

fn open(dir: &tempfile::TempDir) -> Log {
    Log::open(dir.path().join("cairn.redb"), options()).unwrap()
}

fn batch(values: &[&str], ts: i64) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for v in values {
        w.push_owned(&OwnedRecord::new(v.as_bytes().to_vec(), ts)).unwrap();
    }
    w.finish().unwrap()
}

/// A batch for `Log::prepare`, which takes checked batches only.
fn checked(batch: Vec<u8>) -> CheckedBatch {
    CheckedBatch::check(batch).unwrap()
}

fn keyed_batch(records: &[(&str, &str)], ts: i64) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for (k, v) in records {
        w.push_owned(&OwnedRecord::new(v.as_bytes().to_vec(), ts).with_key(k.as_bytes().to_vec())).unwrap();
    }
    w.finish().unwrap()
}

fn values(log: &Log, topic: &str, partition: u32, from: u64) -> Vec<(u64, String)> {
    log.read_records(topic, partition, from, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.record.value).unwrap()))
        .collect()
}

#[tokio::test]
async fn topic_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let info = log.create_topic("sensors", TopicConfig::with_partitions(3)).await.unwrap();
    assert_eq!(info.partitions.len(), 3);
    assert!(matches!(log.create_topic("sensors", TopicConfig::default()).await, Err(LogError::TopicExists(_))));
    assert!(matches!(
        log.create_topic("bad/name", TopicConfig::default()).await,
        Err(LogError::InvalidTopicName { .. })
    ));
    log.create_topic("alerts", TopicConfig::default()).await.unwrap();
    let names: Vec<String> = log.list_topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["alerts", "sensors"]);

    let grown = log.add_partitions("sensors", 5).await.unwrap();
    assert_eq!(grown.partitions.len(), 5);
    let err = log.add_partitions("sensors", 2).await.unwrap_err();
    assert!(matches!(err, LogError::PartitionsCannotShrink { current: 5, requested: 2, .. }), "{err}");

    log.append("sensors", 4, batch(&["x"], 1)).await.unwrap();
    log.delete_topic("sensors").await.unwrap();
    assert!(matches!(log.describe_topic("sensors"), Err(LogError::UnknownTopic(_))));
    let err = log.append("sensors", 0, batch(&["x"], 1)).await.unwrap_err();
    assert!(err.to_string().contains("unknown topic 'sensors'"), "{err}");

    // A new topic of the same name starts empty.
    log.create_topic("sensors", TopicConfig::default()).await.unwrap();
    assert_eq!(log.offsets("sensors", 0).unwrap().end, 0);
}

#[tokio::test]
async fn watchers_of_the_topics_see_each_creation_change_and_deletion_but_not_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("before", TopicConfig::default()).await.unwrap();
    let mut watch = log.watch_topics();
    assert!(!watch.has_changed().unwrap(), "what came before the watch is not a change");

    log.create_topic("sensors", TopicConfig::default()).await.unwrap();
    assert!(watch.has_changed().unwrap(), "a topic created");
    watch.mark_unchanged();
    log.append("sensors", 0, batch(&["x"], 1)).await.unwrap();
    assert!(!watch.has_changed().unwrap(), "an append changes no topic");
    log.add_partitions("sensors", 2).await.unwrap();
    assert!(watch.has_changed().unwrap(), "partitions added");
    watch.mark_unchanged();
    log.delete_topic("sensors").await.unwrap();
    assert!(watch.has_changed().unwrap(), "a topic deleted");
}

#[tokio::test]
async fn appends_get_dense_offsets_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::with_partitions(2)).await.unwrap();
    let a = log.append("t", 0, batch(&["a", "b", "c"], 10)).await.unwrap();
    let b = log.append("t", 0, batch(&["d"], 11)).await.unwrap();
    let c = log.append("t", 1, batch(&["z"], 12)).await.unwrap();
    assert_eq!((a.base_offset, a.last_offset, b.base_offset, b.last_offset), (0, 2, 3, 3));
    assert_eq!((c.base_offset, c.last_offset), (0, 0));
    assert_eq!(values(&log, "t", 0, 0), vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);
    // From the middle of a batch.
    assert_eq!(values(&log, "t", 0, 1), vec![(1, "b".into()), (2, "c".into()), (3, "d".into())]);
    // At the end: nothing, no error. Past it: a range error.
    assert!(values(&log, "t", 0, 4).is_empty());
    let err = log.fetch("t", 0, 9, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("valid offsets are 0..=4"), "{err}");
    let err = log.fetch("t", 7, 0, 1 << 20).unwrap_err();
    assert!(matches!(err, LogError::UnknownPartition { partition: 7, partitions: 2, .. }), "{err}");
}

#[tokio::test]
async fn fetch_respects_max_bytes_but_always_returns_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::default()).await.unwrap();
    for i in 0..10 {
        log.append("t", 0, batch(&[&*"v".repeat(100); 10], i)).await.unwrap();
    }
    let one = log.fetch("t", 0, 0, 1).unwrap();
    assert_eq!(one.batches.len(), 1);
    assert_eq!(one.next_offset(), 10);
    let some = log.fetch("t", 0, 15, 3000).unwrap();
    assert!(some.batches.len() >= 2 && some.batches.len() < 10, "{}", some.batches.len());
    assert_eq!(some.records().next().unwrap().offset, 15);
}

#[tokio::test]
async fn bad_batches_are_refused_with_typed_errors_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("cairn.redb"), LogOptions { max_batch_bytes: 4096, ..options() }).unwrap();
    log.create_topic("t", TopicConfig::default()).await.unwrap();

    let mut corrupt = batch(&["hello"], 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    assert!(matches!(log.append("t", 0, corrupt).await, Err(LogError::InvalidBatch(_))));
    assert!(matches!(log.append("t", 0, vec![1, 2, 3]).await, Err(LogError::InvalidBatch(_))));

    let big = batch(&[&"x".repeat(5000)], 1);
    let err = log.append("t", 0, big).await.unwrap_err();
    assert!(err.to_string().contains("limit of 4096 bytes"), "{err}");

    assert_eq!(log.offsets("t", 0).unwrap().end, 0);
    log.append("t", 0, batch(&["ok"], 1)).await.unwrap();
    assert_eq!(values(&log, "t", 0, 0), vec![(0, "ok".into())]);
}

/// Many tasks append at once, to one partition and to several: every append
/// gets its own dense range, and the log holds exactly what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_dense_and_coalesce_into_few_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("one", TopicConfig::with_partitions(1)).await.unwrap();
    log.create_topic("many", TopicConfig::with_partitions(4)).await.unwrap();
    let commits_before = log.stats().commits.load(Ordering::Relaxed);

    let mut tasks = Vec::new();
    for task in 0..50u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..20u32 {
                let n = 1 + (task + i) % 4;
                let vals: Vec<String> = (0..n).map(|j| format!("{task}-{i}-{j}")).collect();
                let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
                let topic = if task % 2 == 0 { "one" } else { "many" };
                let partition = if topic == "one" { 0 } else { task % 4 };
                let ack = log.append(topic, partition, batch(&refs, 1)).await.unwrap();
                assert_eq!(ack.last_offset - ack.base_offset + 1, u64::from(n));
                acks.push((topic, partition, ack.base_offset, vals));
            }
            acks
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let commits = log.stats().commits.load(Ordering::Relaxed) - commits_before;
    assert!(commits < acked.len() as u64, "{} appends took {commits} commits: no group commit", acked.len());

    for (topic, partitions) in [("one", 1), ("many", 4)] {
        for p in 0..partitions {
            let stored = values(&log, topic, p, 0);
            // Dense from 0 to the end.
            for (i, (offset, _)) in stored.iter().enumerate() {
                assert_eq!(*offset, i as u64);
            }
            assert_eq!(stored.len() as u64, log.offsets(topic, p).unwrap().end);
            // Exactly the acknowledged records, each at its acknowledged offset.
            let mut expected: Vec<(u64, String)> = acked
                .iter()
                .filter(|(t, q, _, _)| *t == topic && *q == p)
                .flat_map(|(_, _, base, vals)| vals.iter().enumerate().map(move |(j, v)| (base + j as u64, v.clone())))
                .collect();
            expected.sort();
            assert_eq!(stored, expected, "{topic}/{p}");
        }
    }
}

#[tokio::test]
async fn idempotent_retry_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::default()).await.unwrap();
    let pid = log.allocate_producer_id().await.unwrap();
    assert_ne!(pid, log.allocate_producer_id().await.unwrap(), "producer ids are unique");

    let idem = |seq: i32, vals: &[&str]| {
        let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(pid, seq);
        for v in vals {
            w.push_owned(&OwnedRecord::new(v.as_bytes().to_vec(), 1)).unwrap();
        }
        w.finish().unwrap()
    };
    let first = log.append("t", 0, idem(0, &["a", "b"])).await.unwrap();
    let retry = log.append("t", 0, idem(0, &["a", "b"])).await.unwrap();
    assert!(!first.duplicate && retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (first.base_offset, first.last_offset));
    let next = log.append("t", 0, idem(2, &["c"])).await.unwrap();
    assert_eq!(next.base_offset, 2);
    assert_eq!(values(&log, "t", 0, 0).len(), 3, "the retry was not stored again");

    let err = log.append("t", 0, idem(7, &["lost?"])).await.unwrap_err();
    assert!(matches!(err, LogError::SequenceGap { expected: 3, got: 7, .. }), "{err}");
    let err = log.append("t", 0, idem(1, &["b"])).await.unwrap_err();
    assert!(matches!(err, LogError::OutOfOrderSequence { .. }), "{err}");

    // The producer state is durable: the retry is still recognised after reopening.
    drop(log);
    let log = open(&dir);
    let again = log.append("t", 0, idem(2, &["c"])).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(values(&log, "t", 0, 0).len(), 3);
}

#[tokio::test]
async fn retention_by_age_deletes_whole_batches_and_moves_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Log::open(dir.path().join("cairn.redb"), LogOptions { clock: clock.clone(), ..options() }).unwrap();
    let config = TopicConfig { retention_ms: Some(60_000), ..TopicConfig::default() };
    log.create_topic("t", config).await.unwrap();
    log.append("t", 0, batch(&["old1", "old2"], 1_000_000)).await.unwrap();
    log.append("t", 0, batch(&["mid"], 1_030_000)).await.unwrap();
    log.append("t", 0, batch(&["new"], 1_090_000)).await.unwrap();
    let size_before = log.offsets("t", 0).unwrap().bytes;

    // Nothing is old enough yet.
    clock.set(1_060_000);
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 0);

    clock.set(1_095_000);
    let report = log.enforce_retention().await.unwrap();
    assert_eq!(report.batches_deleted, 2);
    let offsets = log.offsets("t", 0).unwrap();
    assert_eq!((offsets.start, offsets.end), (3, 4));
    assert!(offsets.bytes < size_before);
    assert_eq!(values(&log, "t", 0, 3), vec![(3, "new".into())]);

    let err = log.fetch("t", 0, 0, 1 << 20).unwrap_err();
    assert!(matches!(err, LogError::OffsetOutOfRange { offset: 0, start: 3, end: 4, .. }), "{err}");
    assert!(err.to_string().contains("valid offsets are 3..=4"), "{err}");

    // Survives reopening: the start offset is persisted.
    drop(log);
    let log = open(&dir);
    assert_eq!(log.offsets("t", 0).unwrap().start, 3);
    assert_eq!(values(&log, "t", 0, 3), vec![(3, "new".into())]);
}

#[tokio::test]
async fn a_holding_group_keeps_what_it_has_not_read_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Log::open(dir.path().join("cairn.redb"), LogOptions { clock: clock.clone(), ..options() }).unwrap();
    let config = TopicConfig { retention_ms: Some(60_000), ..TopicConfig::default() };
    log.create_topic("t", config).await.unwrap();
    for i in 0..4 {
        log.append("t", 0, batch(&[&format!("r{i}")], 1_000_000)).await.unwrap();
    }
    log.commit_offsets("__uplink.cloud", "t", &[(0, 1)]).await.unwrap();
    log.hold_retention_for(["__uplink.cloud".to_string()]);
    clock.set(2_000_000);

    // Everything is past retention; the group has read offset 0 only.
    let report = log.enforce_retention().await.unwrap();
    assert_eq!((report.batches_deleted, report.partitions_held), (1, 1));
    assert_eq!(log.offsets("t", 0).unwrap().start, 1);

    // It reads on: retention follows.
    log.commit_offsets("__uplink.cloud", "t", &[(0, 3)]).await.unwrap();
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 2);
    assert_eq!(log.offsets("t", 0).unwrap().start, 3);

    // Released, retention applies as usual.
    log.hold_retention_for(Vec::new());
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 1);
    drop(log);

    // Over the cap, holds are ignored.
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions { clock: clock.clone(), retention_hold_max_bytes: 10, ..options() };
    let log = Log::open(dir.path().join("cairn.redb"), options).unwrap();
    log.create_topic("t", TopicConfig { retention_ms: Some(60_000), ..TopicConfig::default() }).await.unwrap();
    log.append("t", 0, batch(&["old"], 1_000_000)).await.unwrap();
    log.commit_offsets("__uplink.cloud", "t", &[(0, 0)]).await.unwrap();
    log.hold_retention_for(["__uplink.cloud".to_string()]);
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 1);
}

#[tokio::test]
async fn retention_by_bytes_keeps_the_partition_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let one = batch(&[&"x".repeat(200)], 5).len() as u64;
    let config = TopicConfig { retention_ms: None, retention_bytes: Some(one * 3), ..TopicConfig::default() };
    log.create_topic("t", config).await.unwrap();
    for i in 0..10 {
        log.append("t", 0, batch(&[&"x".repeat(200)], i)).await.unwrap();
    }
    let report = log.enforce_retention().await.unwrap();
    assert_eq!(report.batches_deleted, 7);
    let offsets = log.offsets("t", 0).unwrap();
    assert_eq!((offsets.start, offsets.end, offsets.bytes), (7, 10, one * 3));
    assert_eq!(values(&log, "t", 0, 7).len(), 3);
}

#[tokio::test]
async fn compaction_keeps_the_last_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let config = TopicConfig { cleanup_policy: CleanupPolicy::Compact, retention_ms: None, ..TopicConfig::default() };
    log.create_topic("state", config).await.unwrap();
    log.append("state", 0, keyed_batch(&[("a", "a1"), ("b", "b1"), ("a", "a2")], 1)).await.unwrap();
    log.append("state", 0, keyed_batch(&[("b", "b2"), ("c", "c1")], 2)).await.unwrap();
    log.append("state", 0, keyed_batch(&[("c", "c2")], 3)).await.unwrap();
    let err = log.append("state", 0, batch(&["no key"], 4)).await.unwrap_err();
    assert!(matches!(err, LogError::MissingKeyOnCompactedTopic(_)), "{err}");
    let bytes_before = log.offsets("state", 0).unwrap().bytes;

    let report = log.enforce_retention().await.unwrap();
    assert_eq!(report.records_compacted, 3);
    assert!(log.offsets("state", 0).unwrap().bytes < bytes_before);
    assert_eq!(values(&log, "state", 0, 0), vec![(2, "a2".into()), (3, "b2".into()), (5, "c2".into())]);
    // New records still get the next offset; nothing to do on an unchanged log.
    assert_eq!(log.offsets("state", 0).unwrap().end, 6);
    assert_eq!(log.enforce_retention().await.unwrap().records_compacted, 0);
    let next = log.append("state", 0, keyed_batch(&[("a", "a3")], 5)).await.unwrap();
    assert_eq!(next.base_offset, 6);
    log.enforce_retention().await.unwrap();
    assert_eq!(values(&log, "state", 0, 0), vec![(3, "b2".into()), (5, "c2".into()), (6, "a3".into())]);
    // Reading from inside a gap starts at the next surviving record.
    assert_eq!(values(&log, "state", 0, 4)[0], (5, "c2".into()));
}

#[tokio::test]
async fn seek_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig { retention_ms: None, ..TopicConfig::default() }).await.unwrap();
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for (v, ts) in [("a", 100), ("b", 300), ("c", 200)] {
        w.push_owned(&OwnedRecord::new(v.as_bytes().to_vec(), ts)).unwrap();
    }
    log.append("t", 0, w.finish().unwrap()).await.unwrap(); // offsets 0..=2
    log.append("t", 0, batch(&["d"], 250)).await.unwrap(); // 3: older than the max so far
    log.append("t", 0, batch(&["e"], 400)).await.unwrap(); // 4
    let at = |ts| log.offset_for_timestamp("t", 0, ts).unwrap();
    assert_eq!(at(0), Some(0));
    assert_eq!(at(100), Some(0));
    assert_eq!(at(150), Some(1));
    assert_eq!(at(300), Some(1));
    assert_eq!(at(301), Some(4));
    assert_eq!(at(400), Some(4));
    assert_eq!(at(401), None);
}

#[tokio::test]
async fn seek_by_timestamp_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(10_000));
    let log = Log::open(dir.path().join("cairn.redb"), LogOptions { clock: clock.clone(), ..options() }).unwrap();
    log.create_topic("t", TopicConfig { retention_ms: Some(5_000), ..TopicConfig::default() }).await.unwrap();
    log.append("t", 0, batch(&["a"], 9_000)).await.unwrap();
    log.append("t", 0, batch(&["b"], 1_000)).await.unwrap(); // late record, running max stays 9000
    log.append("t", 0, batch(&["c"], 16_000)).await.unwrap();
    clock.set(14_500); // batches 0 (max 9000) and 1 (max 1000) expire
    log.enforce_retention().await.unwrap();
    assert_eq!(log.offsets("t", 0).unwrap().start, 2);
    assert_eq!(log.offset_for_timestamp("t", 0, 0).unwrap(), Some(2));
    assert_eq!(log.offset_for_timestamp("t", 0, 16_000).unwrap(), Some(2));
    assert_eq!(log.offset_for_timestamp("t", 0, 16_001).unwrap(), None);
}

#[tokio::test]
async fn wait_for_is_woken_by_an_append_and_times_out_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::default()).await.unwrap();
    let started = Instant::now();
    let idle = log.wait_for("t", 0, 0, Duration::from_millis(100)).await.unwrap();
    assert_eq!(idle.end, 0);
    assert!(started.elapsed() >= Duration::from_millis(100));

    let waiter = {
        let log = log.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (log.wait_for("t", 0, 0, Duration::from_secs(30)).await.unwrap(), t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.append("t", 0, batch(&["wake"], 1)).await.unwrap();
    let (offsets, waited) = waiter.await.unwrap();
    assert_eq!(offsets.end, 1);
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
}

#[tokio::test]
async fn group_offsets_are_stored_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::with_partitions(3)).await.unwrap();
    log.commit_offsets("g1", "t", &[(0, 5), (2, 7)]).await.unwrap();
    log.commit_offsets("g2", "t", &[(1, 1)]).await.unwrap();
    log.commit_offsets("g1", "t", &[(0, 6)]).await.unwrap();
    assert!(matches!(log.commit_offsets("g1", "t", &[(9, 1)]).await, Err(LogError::UnknownPartition { .. })));
    drop(log);
    let log = open(&dir);
    assert_eq!(log.committed_offsets("g1", "t").unwrap(), vec![(0, 6), (2, 7)]);
    assert_eq!(log.committed_offsets("g2", "t").unwrap(), vec![(1, 1)]);
    let groups = log.list_groups().unwrap();
    assert_eq!(groups, vec![("g1".to_string(), vec!["t".to_string()]), ("g2".to_string(), vec!["t".to_string()])]);
    // Deleting a group removes its offsets only ("g1x" shares a prefix).
    log.commit_offsets("g1x", "t", &[(0, 2)]).await.unwrap();
    log.delete_group("g1").await.unwrap();
    assert!(log.committed_offsets("g1", "t").unwrap().is_empty());
    assert_eq!(log.committed_offsets("g1x", "t").unwrap(), vec![(0, 2)]);
    assert_eq!(log.committed_offsets("g2", "t").unwrap(), vec![(1, 1)]);
    log.delete_topic("t").await.unwrap();
    assert!(log.list_groups().unwrap().is_empty());
}

#[tokio::test]
async fn reopen_recovers_topics_offsets_and_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(&dir);
        log.create_topic("t", TopicConfig::with_partitions(2)).await.unwrap();
        log.append("t", 1, batch(&["a", "b"], 1)).await.unwrap();
        log.close().await.unwrap();
    }
    let log = open(&dir);
    let info = log.describe_topic("t").unwrap();
    assert_eq!(info.partitions[1].end_offset, 2);
    assert_eq!(log.append("t", 1, batch(&["c"], 2)).await.unwrap().base_offset, 2);
    assert_eq!(values(&log, "t", 1, 0).len(), 3);
}

#[tokio::test]
async fn flush_interval_topics_are_acknowledged_and_made_durable_later() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Log::open(dir.path().join("cairn.redb"), LogOptions { flush_interval: Duration::from_millis(50), ..options() })
            .unwrap();
    log.create_topic("wear", TopicConfig { flush: FlushPolicy::Interval, ..TopicConfig::default() }).await.unwrap();
    for i in 0..5 {
        log.append("wear", 0, batch(&["r"], i)).await.unwrap();
    }
    assert_eq!(log.offsets("wear", 0).unwrap().end, 5);
    let commits = log.stats().commits.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(log.stats().commits.load(Ordering::Relaxed) > commits, "the ticker flushed");
    drop(log);
    let log = open(&dir);
    assert_eq!(values(&log, "wear", 0, 0).len(), 5);
}

#[tokio::test]
async fn closed_log_refuses_work_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::default()).await.unwrap();
    let other = log.clone();
    log.close().await.unwrap();
    assert!(matches!(other.append("t", 0, batch(&["x"], 1)).await, Err(LogError::Closed)));
}

#[tokio::test]
async fn batches_that_would_break_offsets_or_sequences_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::default()).await.unwrap();

    // One record claiming five offsets would leave holes at the partition end.
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    w.push_owned(&OwnedRecord::new(b"x".to_vec(), 1)).unwrap();
    w.reserve_offsets_through(4);
    let err = log.append("t", 0, w.finish().unwrap()).await.unwrap_err();
    assert!(matches!(err, LogError::InvalidProducerBatch(_)), "{err}");

    // Sequences past i32::MAX cannot be checked for duplicates.
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(3, i32::MAX - 1);
    for _ in 0..3 {
        w.push_owned(&OwnedRecord::new(b"x".to_vec(), 1)).unwrap();
    }
    let err = log.append("t", 0, w.finish().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("start a new producer id"), "{err}");

    // A producer id with a negative sequence is neither idempotent nor plain.
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(3, -5);
    w.push_owned(&OwnedRecord::new(b"x".to_vec(), 1)).unwrap();
    let err = log.append("t", 0, w.finish().unwrap()).await.unwrap_err();
    assert!(matches!(err, LogError::InvalidProducerBatch(_)), "{err}");

    assert_eq!(log.offsets("t", 0).unwrap().end, 0, "nothing was stored");
}

#[tokio::test]
async fn time_index_restarts_after_retention_empties_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(100_000));
    let log = Log::open(dir.path().join("cairn.redb"), LogOptions { clock: clock.clone(), ..options() }).unwrap();
    log.create_topic("t", TopicConfig { retention_ms: Some(1_000), ..TopicConfig::default() }).await.unwrap();
    log.append("t", 0, batch(&["far future"], 90_000)).await.unwrap();
    log.enforce_retention().await.unwrap();
    let offsets = log.offsets("t", 0).unwrap();
    assert_eq!((offsets.start, offsets.end), (1, 1), "retention emptied the partition");
    // A device without a clock sends small timestamps afterwards.
    log.append("t", 0, batch(&["early"], 5)).await.unwrap();
    assert_eq!(log.offset_for_timestamp("t", 0, 0).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp("t", 0, 5).unwrap(), Some(1));
}

#[tokio::test]
async fn a_transaction_stores_its_batches_and_offsets_together_or_not_at_all() {
    use cairn_log::OffsetCommit;
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("readings", TopicConfig::default()).await.unwrap();
    log.create_topic("celsius", TopicConfig::with_partitions(2)).await.unwrap();
    log.create_topic("alerts", TopicConfig::default()).await.unwrap();
    log.append("readings", 0, batch(&["a", "b", "c"], 1)).await.unwrap();

    // Outputs in two topics and the source position, in one go.
    let out = log
        .append_transaction(
            vec![
                ("celsius".into(), 1, batch(&["21.5", "22.0"], 1)),
                ("alerts".into(), 0, batch(&["hot"], 1)),
                ("celsius".into(), 1, batch(&["23.0"], 1)),
            ],
            Some(OffsetCommit { group: "derive.celsius", topic: "readings", offsets: &[(0, 3)] }),
        )
        .await
        .unwrap();
    let offsets: Vec<(u64, u64)> = out.iter().map(|o| (o.base_offset, o.last_offset)).collect();
    assert_eq!(offsets, vec![(0, 1), (0, 0), (2, 2)]);
    assert_eq!(values(&log, "celsius", 1, 0), vec![(0, "21.5".into()), (1, "22.0".into()), (2, "23.0".into())]);
    assert_eq!(values(&log, "alerts", 0, 0), vec![(0, "hot".into())]);
    assert_eq!(log.committed_offsets("derive.celsius", "readings").unwrap(), vec![(0, 3)]);

    // One batch names a partition that does not exist: nothing is stored,
    // neither the other batch nor the offset.
    let err = log
        .append_transaction(
            vec![("alerts".into(), 0, batch(&["lost?"], 2)), ("celsius".into(), 7, batch(&["x"], 2))],
            Some(OffsetCommit { group: "derive.celsius", topic: "readings", offsets: &[(0, 9)] }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::UnknownPartition { partition: 7, .. }), "{err}");
    assert_eq!(values(&log, "alerts", 0, 0).len(), 1);
    assert_eq!(log.committed_offsets("derive.celsius", "readings").unwrap(), vec![(0, 3)]);

    // Idempotent batches have no place in a transaction.
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(5, 0);
    w.push_owned(&OwnedRecord::new(b"x".to_vec(), 1)).unwrap();
    let err = log.append_transaction(vec![("alerts".into(), 0, w.finish().unwrap())], None).await.unwrap_err();
    assert!(matches!(err, LogError::InvalidProducerBatch(_)), "{err}");

    // And it all survives a reopen.
    log.close().await.unwrap();
    drop(log);
    let log = open(&dir);
    assert_eq!(values(&log, "celsius", 1, 0).len(), 3);
    assert_eq!(log.committed_offsets("derive.celsius", "readings").unwrap(), vec![(0, 3)]);
}

#[tokio::test]
async fn a_rewritten_batch_keeps_its_producers_sequence_and_writes_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    log.create_topic("t", TopicConfig::with_partitions(2)).await.unwrap();
    log.create_topic("side", TopicConfig::default()).await.unwrap();
    let pid = log.allocate_producer_id().await.unwrap();
    // Sequences 0..=2 sent to t/1; a plugin kept two records and emitted one.
    let rewritten = || {
        vec![
            log.prepare("t", 1, checked(batch(&["a", "b"], 1))).unwrap(),
            log.prepare("side", 0, checked(batch(&["x"], 1))).unwrap(),
        ]
    };
    let first = log.submit_rewritten("t", 1, Some((pid, 0, 2)), rewritten()).await.unwrap();
    let first = first.outcome().await.unwrap();
    assert_eq!((first.base_offset, first.last_offset, first.duplicate), (0, 1, false));
    // The retry is a duplicate: nothing written again, anywhere.
    let retry = log.submit_rewritten("t", 1, Some((pid, 0, 2)), rewritten()).await.unwrap().outcome().await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 0);
    assert_eq!(values(&log, "t", 1, 0).len(), 2);
    assert_eq!(values(&log, "side", 0, 0), [(0, "x".to_string())]);
    // Everything dropped: nothing stored, the answer is the end offset, and
    // the sequence still moves on.
    let dropped = log.submit_rewritten("t", 1, Some((pid, 3, 5)), vec![]).await.unwrap().outcome().await.unwrap();
    assert_eq!((dropped.base_offset, dropped.duplicate), (2, false));
    let next =
        log.submit_rewritten("t", 1, Some((pid, 6, 6)), vec![log.prepare("t", 1, checked(batch(&["c"], 2))).unwrap()]);
    let next = next.await.unwrap();
    assert_eq!(next.outcome().await.unwrap().base_offset, 2);
    // A gap is refused, and with it the whole transaction (nothing in `side`).
    let gap = vec![log.prepare("side", 0, checked(batch(&["y"], 3))).unwrap()];
    let refused = log.submit_rewritten("t", 1, Some((pid, 9, 9)), gap).await.unwrap().outcome().await;
    assert!(matches!(refused, Err(LogError::SequenceGap { expected: 7, .. })), "{refused:?}");
    assert_eq!(values(&log, "side", 0, 0).len(), 1);
    // Batches carrying a producer id of their own are refused up front.
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(pid, 0);
    w.push_owned(&OwnedRecord::new(b"z".to_vec(), 1)).unwrap();
    assert!(matches!(log.prepare("side", 0, checked(w.finish().unwrap())), Err(LogError::InvalidProducerBatch(_))));
    drop(log);
    // All of it survives a reopen.
    let log = open(&dir);
    assert_eq!(values(&log, "t", 1, 0).iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The wall clock jumping a year ahead (a bad NTP step) makes no record a
/// year old: records written before the jump are aged without it, still
/// expire once they really are old, and the jump is remembered across a
/// reopen.
#[tokio::test]
async fn a_clock_jumping_a_year_ahead_does_not_make_records_a_year_old() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let opts = || LogOptions { clock: clock.clone(), ..options() };
    let log = Log::open(dir.path().join("cairn.redb"), opts()).unwrap();
    let config = TopicConfig { retention_ms: Some(DAY_MS), ..TopicConfig::default() };
    log.create_topic("t", config).await.unwrap();
    log.append("t", 0, batch(&["before"], start)).await.unwrap();

    clock.step(365 * DAY_MS);
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 0, "a year-old record by the jumped clock");
    let jumps = log.clock_jumps();
    assert_eq!(jumps.len(), 1);
    assert_eq!((jumps[0].at_ms, jumps[0].delta_ms), (start + 365 * DAY_MS, 365 * DAY_MS));
    assert_eq!(log.steady_ms(), start, "no time passed");

    clock.advance(DAY_MS / 2);
    log.append("t", 0, batch(&["after"], log.now_ms())).await.unwrap();
    clock.advance(DAY_MS / 2 + 3_600_000);
    // 25 h since "before" was written, 13 h since "after".
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 1);
    assert_eq!(values(&log, "t", 0, 1), vec![(1, "after".into())]);

    drop(log);
    let log = Log::open(dir.path().join("cairn.redb"), opts()).unwrap();
    assert_eq!(log.clock_jumps(), jumps, "the jump is stored");
    assert_eq!(log.enforce_retention().await.unwrap().batches_deleted, 0);
    assert_eq!(values(&log, "t", 0, 1), vec![(1, "after".into())]);
}

/// A clock set back while the log was closed (a gateway without a
/// real-time clock booting in 1970) is noticed at the next open: the steady
/// clock carries on from where it was.
#[tokio::test]
async fn a_clock_set_back_while_closed_is_noticed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let opts = || LogOptions { clock: clock.clone(), ..options() };
    let log = Log::open(dir.path().join("cairn.redb"), opts()).unwrap();
    log.close().await.unwrap();
    drop(log);

    clock.step(-start);
    let log = Log::open(dir.path().join("cairn.redb"), opts()).unwrap();
    let jumps = log.clock_jumps();
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert_eq!(jumps[0].delta_ms, -start);
    clock.advance(1_000);
    assert_eq!(log.now_ms(), 1_000);
    assert_eq!(log.steady_ms(), start + 1_000);
    assert_eq!(log.stats().clock_jumps.load(Ordering::Relaxed), 1);
}
