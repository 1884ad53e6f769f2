//! `cairn bench kafka`: librdkafka's idempotent producer sending straight to
//! a Kafka-API broker, in runs of `--in-flight` records each awaited whole,
//! as a Kafka uplink sends: the reference a Kafka uplink's forwarding rate
//! is measured against (scripts/bench-uplink.sh).

use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::median_of;
use crate::AnyError;

#[derive(Args)]
pub struct BenchKafkaArgs {
    /// Bootstrap servers of the Kafka cluster.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// Topic written to (it must exist, or the broker create it).
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Records queued before all their acknowledgements are awaited.
    #[arg(long, default_value_t = 500)]
    in_flight: usize,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

pub async fn run(args: BenchKafkaArgs) -> Result<(), AnyError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("compression.type", &args.compression)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()?;
    let value = vec![b'x'; args.value_bytes];
    let mut rates = Vec::new();
    for run in 1..=args.runs.max(1) {
        let started = Instant::now();
        let mut sent = 0;
        while sent < args.records {
            let n = args.in_flight.max(1).min(args.records - sent);
            let mut deliveries = Vec::with_capacity(n);
            for i in sent..sent + n {
                let key = format!("k{}", i % 16);
                let record = FutureRecord::to(&args.topic).key(&key).payload(&value);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(format!("not acknowledged: {e}").into()),
                    Err(_) => return Err("the producer went away".into()),
                }
            }
            sent += n;
        }
        let rate = args.records as f64 / started.elapsed().max(Duration::from_micros(1)).as_secs_f64();
        println!(
            "run {run}: {} records in {:.2} s: {rate:.0} records/s",
            args.records,
            started.elapsed().as_secs_f64()
        );
        rates.push(rate);
    }
    println!("median: {:.0} records/s", median_of(&rates));
    Ok(())
}
