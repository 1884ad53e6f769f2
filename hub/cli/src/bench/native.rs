//! Benchmarks over the native protocol against a running hub:
//! `cairn bench produce|consume|e2e`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_proto::frame::{Acks, ErrorCode, TopicSettings};
use cairn_proto::{BatchWriter, Record};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use super::Percentiles;
use cairn_client::{Client, ClientError};

/// Creates the benchmark topic if it is missing.
pub async fn ensure_topic(client: &Client, topic: &str, partitions: u32) -> Result<u32, ClientError> {
    let settings = TopicSettings { partitions: Some(partitions), retention_ms: Some(-1), ..TopicSettings::default() };
    match client.create_topic(topic, settings).await {
        Ok(info) => Ok(info.partitions.len() as u32),
        Err(ClientError::Server { code: ErrorCode::TopicExists, .. }) => {
            Ok(client.describe_topic(topic).await?.partitions.len() as u32)
        }
        Err(e) => Err(e),
    }
}

/// A batch of `n` records whose values are `values` in turn.
fn encode(n: usize, values: &[Vec<u8>]) -> Vec<u8> {
    let size = values.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = BatchWriter::new(Vec::with_capacity(n * (size + 8) + 64)).expect("vec");
    for value in values.iter().cycle().take(n) {
        w.push(&Record::new(value, now_us() / 1000)).expect("vec");
    }
    w.finish().expect("non-empty")
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub hub: String,
    /// API key every connection authenticates with, if any.
    pub connect: cairn_client::ConnectOptions,
    pub topic: String,
    pub partitions: u32,
    pub records: u64,
    pub value_bytes: usize,
    /// Plain-text readings the values cycle through, each padded to
    /// `value_bytes`.
    pub readings: Vec<String>,
    pub batch_records: usize,
    pub producers: usize,
    pub in_flight: usize,
    pub acks: Acks,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProduceReport {
    pub records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    /// Time from sending a batch to its acknowledgement.
    pub ack_latency: Percentiles,
}

/// Producers, each on its own connection, each keeping `in_flight` batches
/// outstanding, to partitions spread round-robin.
pub async fn produce(config: &ProduceConfig) -> Result<ProduceReport, ClientError> {
    let admin = Client::connect_with(&config.hub, &config.connect).await?;
    let partitions = ensure_topic(&admin, &config.topic, config.partitions).await?;
    // Plain-text readings padded to the size asked for, so an ingest filter
    // (the threshold example) can parse them: `cairn bench produce` against
    // a topic with a plugin attached measures the plugin's cost.
    let values: Vec<Vec<u8>> = config
        .readings
        .iter()
        .map(|r| format!("{r:<width$}", width = config.value_bytes.max(r.len())).into_bytes())
        .collect();
    let values = if values.is_empty() { vec![vec![b' '; config.value_bytes.max(1)]] } else { values };
    let batch = encode(config.batch_records, &values);
    let batches = config.records.div_ceil(config.batch_records as u64);
    let per_producer = batches.div_ceil(config.producers as u64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..config.producers {
        let client = Client::connect_with(&config.hub, &config.connect).await?;
        let (batch, topic, acks, in_flight) =
            (batch.clone(), config.topic.clone(), config.acks, config.in_flight.max(1));
        let partition = i as u32 % partitions;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_producer as usize);
            // Borrowed, not cloned per request: the load generator shares
            // the 2 cores with the hub, so its own cost per request counts.
            let (client, batch, topic) = (&client, batch.as_slice(), topic.as_str());
            let mut pending = FuturesUnordered::new();
            let mut sent = 0;
            while sent < per_producer || !pending.is_empty() {
                while sent < per_producer && pending.len() < in_flight {
                    pending.push(async move {
                        let t = Instant::now();
                        client.produce(topic, Some(partition), batch, acks).await.map(|_| t.elapsed())
                    });
                    sent += 1;
                }
                if let Some(done) = pending.next().await {
                    latencies.push(done?.as_micros() as u64);
                }
            }
            Ok::<_, ClientError>((sent, latencies))
        }));
    }
    let mut sent = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("producer task")?;
        sent += n;
        latencies.extend(l);
    }
    let seconds = started.elapsed().as_secs_f64();
    let records = sent * config.batch_records as u64;
    let records_per_sec = records as f64 / seconds;
    Ok(ProduceReport {
        records,
        seconds,
        records_per_sec,
        mb_per_sec: records_per_sec * config.value_bytes as f64 / 1e6,
        ack_latency: if config.acks == Acks::Durable { Percentiles::of(latencies) } else { Percentiles::default() },
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    pub records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

/// Reads every partition of `topic` from its start to its current end, one
/// connection per partition, decoding every record.
pub async fn consume(hub: &str, topic: &str) -> Result<ConsumeReport, ClientError> {
    let admin = Client::connect(hub).await?;
    let info = admin.describe_topic(topic).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in info.partitions {
        let client = Client::connect(hub).await?;
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut offset, mut records, mut bytes) = (p.start_offset, 0u64, 0u64);
            while offset < p.end_offset {
                let fetch = client.fetch(&topic, p.partition, offset, 4 * 1024 * 1024, Duration::ZERO).await?;
                for r in fetch.records() {
                    records += 1;
                    bytes += r.value.len() as u64;
                }
                offset = fetch.next_offset();
            }
            Ok::<_, ClientError>((records, bytes))
        }));
    }
    let (mut records, mut bytes) = (0, 0);
    for t in tasks {
        let (r, b) = t.await.expect("consumer task")?;
        records += r;
        bytes += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ConsumeReport {
        records,
        seconds,
        records_per_sec: records as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    pub rate: u64,
    pub sent: u64,
    pub received: u64,
    /// From the producer handing a record to the client to a consumer
    /// receiving it from a long-poll fetch (durable acks, so it includes
    /// the commit).
    pub latency: Percentiles,
}

/// Produces `rate` single-record batches per second for `duration` while
/// long-polling consumers (one per partition) timestamp their arrival.
pub async fn e2e(
    hub: &str,
    topic: &str,
    partitions: u32,
    rate: u64,
    duration: Duration,
    value_bytes: usize,
) -> Result<E2eReport, ClientError> {
    let admin = Client::connect(hub).await?;
    let partitions = ensure_topic(&admin, topic, partitions).await?;
    let info = admin.describe_topic(topic).await?;
    let stop_at = Instant::now() + duration + Duration::from_secs(2);
    let mut consumers = Vec::new();
    for p in info.partitions {
        let client = Client::connect(hub).await?;
        let topic = topic.to_string();
        consumers.push(tokio::spawn(async move {
            let mut offset = p.end_offset;
            let mut latencies = Vec::new();
            while Instant::now() < stop_at {
                let fetch = client.fetch(&topic, p.partition, offset, 1024 * 1024, Duration::from_millis(500)).await?;
                let now = now_us();
                for r in fetch.records() {
                    if r.value.len() >= 8 {
                        let sent = i64::from_be_bytes(r.value[..8].try_into().expect("8 bytes"));
                        latencies.push((now - sent).max(0) as u64);
                    }
                }
                offset = fetch.next_offset();
            }
            Ok::<_, ClientError>(latencies)
        }));
    }
    // Pace with a 1 ms tick; pipelined sends on a few connections.
    let producers: Vec<Client> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(Client::connect(hub).await?);
        }
        v
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    let mut inflight = FuturesUnordered::new();
    let mut value = vec![b'x'; value_bytes.max(8)];
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            value[..8].copy_from_slice(&now_us().to_be_bytes());
            let batch = encode(1, std::slice::from_ref(&value));
            let client = producers[sent as usize % producers.len()].clone();
            let partition = (sent % u64::from(partitions)) as u32;
            let topic = topic.to_string();
            inflight.push(async move { client.produce(&topic, Some(partition), &batch, Acks::Durable).await });
            sent += 1;
        }
        while let Some(Some(result)) = futures::FutureExt::now_or_never(inflight.next()) {
            result?;
        }
    }
    while let Some(result) = inflight.next().await {
        result?;
    }
    let mut latencies = Vec::new();
    for c in consumers {
        latencies.extend(c.await.expect("consumer task")?);
    }
    Ok(E2eReport { rate, sent, received: latencies.len() as u64, latency: Percentiles::of(latencies) })
}
