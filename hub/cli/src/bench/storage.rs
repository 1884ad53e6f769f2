//! `cairn bench storage`: measures the log directly, without the network.
//!
//! Four measurements on a fresh database (method in docs/BENCHMARKS.md):
//! 1. batched appends: producers each keep a few batches in flight;
//! 2. single-record appends: many appenders, each waiting for its ack before
//!    sending the next record (what group commit is for);
//! 3. catch-up read of everything written, decoding every record;
//! 4. bytes on disk against payload bytes, and the time to reopen.
//!
//! Every append is durable (fsync before the ack).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_proto::{BatchWriter, Record};
use serde::Serialize;

use cairn_log::{Log, LogError, LogOptions, TopicConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct StorageBenchConfig {
    /// Where the database goes (a fresh file is created inside).
    pub dir: PathBuf,
    /// Records written by the batched phase.
    pub records: u64,
    pub value_bytes: usize,
    pub key_bytes: usize,
    /// Records per batch in the batched phase.
    pub batch_records: usize,
    pub producers: usize,
    /// Batches each producer keeps in flight.
    pub in_flight: usize,
    pub partitions: u32,
    /// Concurrent single-record appenders.
    pub appenders: usize,
    /// How long the single-record phase runs.
    pub single_duration: Duration,
    pub quick_repair: bool,
}

/// Results of one run.
#[derive(Debug, Clone, Serialize)]
pub struct StorageBenchReport {
    pub batched_records_per_sec: f64,
    pub batched_mb_per_sec: f64,
    pub batched_commits: u64,
    pub single_records_per_sec: f64,
    pub single_commits: u64,
    pub catchup_records_per_sec: f64,
    pub payload_bytes: u64,
    pub stored_batch_bytes: u64,
    /// Length of the database file.
    pub file_bytes: u64,
    /// Blocks the file really occupies (what `du` shows): redb grows the file
    /// by doubling with `set_len`, and the part never written takes no space.
    pub disk_bytes: u64,
    /// `disk_bytes` / payload bytes (value + key + headers).
    pub disk_ratio: f64,
    pub reopen_ms: f64,
    pub records_stored: u64,
}

/// A failed benchmark: a log error, or the log disagreeing with what the
/// benchmark wrote.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn payload(config: &StorageBenchConfig) -> (Vec<u8>, Vec<u8>) {
    let value: Vec<u8> = (0..config.value_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let key: Vec<u8> = (0..config.key_bytes).map(|i| b'0' + (i % 10) as u8).collect();
    (key, value)
}

fn encode_batch(key: &[u8], value: &[u8], n: usize, ts: i64) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::with_capacity(n * (value.len() + key.len() + 8) + 64)).expect("vec grows");
    for _ in 0..n {
        let mut r = Record::new(value, ts);
        if !key.is_empty() {
            r = r.with_key(key);
        }
        w.push(&r).expect("vec grows");
    }
    w.finish().expect("non-empty batch")
}

/// Runs all phases and returns the figures.
pub async fn run_storage(config: &StorageBenchConfig) -> Result<StorageBenchReport, BenchError> {
    let path = config.dir.join("bench.redb");
    let _ = std::fs::remove_file(&path);
    let options = LogOptions {
        retention_check_interval: None,
        quick_repair: config.quick_repair,
        max_batch_bytes: 64 * 1024 * 1024,
        ..LogOptions::default()
    };
    let log = Log::open(&path, options.clone())?;
    let topic_config = TopicConfig { retention_ms: None, ..TopicConfig::with_partitions(config.partitions) };
    log.create_topic("bench", topic_config.clone()).await?;
    log.create_topic("single", TopicConfig { retention_ms: None, ..TopicConfig::with_partitions(1) }).await?;
    let (key, value) = payload(config);

    // Phase 1: batched appends.
    let batch = encode_batch(&key, &value, config.batch_records, crate::cmd::now_ms());
    let batches_total = config.records.div_ceil(config.batch_records as u64);
    let per_producer = batches_total.div_ceil(config.producers as u64);
    let commits_before = log.stats().commits.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for producer in 0..config.producers {
        let log = log.clone();
        let batch = batch.clone();
        let in_flight = config.in_flight.max(1);
        let partitions = config.partitions;
        tasks.push(tokio::spawn(async move {
            let partition = producer as u32 % partitions;
            let mut pending = futures::stream::FuturesUnordered::new();
            let mut sent = 0u64;
            use futures::StreamExt;
            while sent < per_producer || !pending.is_empty() {
                while sent < per_producer && pending.len() < in_flight {
                    let log = log.clone();
                    let batch = batch.clone();
                    pending.push(async move { log.append("bench", partition, batch).await });
                    sent += 1;
                }
                if let Some(result) = pending.next().await {
                    result?;
                }
            }
            Ok::<u64, LogError>(sent)
        }));
    }
    let mut batches_written = 0;
    for t in tasks {
        batches_written += t.await.expect("producer task panicked")?;
    }
    let batched_secs = started.elapsed().as_secs_f64();
    let batched_commits = log.stats().commits.load(std::sync::atomic::Ordering::Relaxed) - commits_before;
    let records_written = batches_written * config.batch_records as u64;
    let batched_records_per_sec = records_written as f64 / batched_secs;
    let record_payload = (value.len() + key.len()) as u64;
    let batched_mb_per_sec = batched_records_per_sec * record_payload as f64 / 1e6;

    // Phase 2: single-record appends, each appender waiting for its ack.
    let single = encode_batch(&key, &value, 1, crate::cmd::now_ms());
    let commits_before = log.stats().commits.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + config.single_duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..config.appenders {
        let log = log.clone();
        let single = single.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                log.append("single", 0, single.clone()).await?;
                n += 1;
            }
            Ok::<u64, LogError>(n)
        }));
    }
    let mut single_records = 0;
    for t in tasks {
        single_records += t.await.expect("appender task panicked")?;
    }
    let single_secs = started.elapsed().as_secs_f64();
    let single_commits = log.stats().commits.load(std::sync::atomic::Ordering::Relaxed) - commits_before;
    let single_records_per_sec = single_records as f64 / single_secs;

    // Phase 3: catch-up read of the batched topic, decoding every record.
    let started = Instant::now();
    let mut read = 0u64;
    for p in 0..config.partitions {
        let mut offset = log.offsets("bench", p)?.start;
        loop {
            let fetch = log.fetch("bench", p, offset, 4 * 1024 * 1024)?;
            if fetch.batches.is_empty() {
                break;
            }
            for r in fetch.records() {
                read += 1;
                std::hint::black_box(r.value);
            }
            offset = fetch.next_offset();
        }
    }
    let catchup_records_per_sec = read as f64 / started.elapsed().as_secs_f64();
    let records_stored = records_written + single_records;
    if read != records_written {
        return Err(format!("catch-up read {read} records, but {records_written} were written").into());
    }

    // Phase 4: size on disk and reopen time.
    let stored_batch_bytes = log.stored_bytes()?;
    log.close().await?;
    drop(log);
    let (file_bytes, disk_bytes) = file_size(&path);
    let payload_bytes = records_stored * record_payload;
    let started = Instant::now();
    let reopened = Log::open(&path, options)?;
    let reopen_ms = started.elapsed().as_secs_f64() * 1e3;
    let end: u64 = reopened.describe_topic("bench")?.partitions.iter().map(|p| p.end_offset).sum();
    if end != records_written {
        return Err(format!("the reopened log ends at {end}, but {records_written} records were written").into());
    }
    reopened.close().await?;

    Ok(StorageBenchReport {
        batched_records_per_sec,
        batched_mb_per_sec,
        batched_commits,
        single_records_per_sec,
        single_commits,
        catchup_records_per_sec,
        payload_bytes,
        stored_batch_bytes,
        file_bytes,
        disk_bytes,
        disk_ratio: disk_bytes as f64 / payload_bytes as f64,
        reopen_ms,
        records_stored,
    })
}

/// (file length, bytes of disk blocks allocated to it).
fn file_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.len(), m.blocks() * 512)).unwrap_or((0, 0))
}
