//! `cairn bench …` on the command line: each benchmark's arguments, its runs
//! and how the figures are printed (one line per run, then the medians; or
//! JSON with `--output json`). The load generators themselves are the
//! sibling modules.

use std::path::PathBuf;
use std::time::Duration;

use cairn_proto::frame::Acks;
use clap::{Args, Subcommand};

use super::native as native_bench;
use super::{median_of, run_storage, StorageBenchConfig, StorageBenchReport};
use crate::cmd::Output;
use crate::AnyError;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Append and read directly against the log (no network): batched and
    /// single-record durable appends, catch-up reads, disk usage, reopen time.
    Storage(StorageArgs),
    /// Produce to a running hub over the native protocol: records/s, MB/s,
    /// acknowledgement latency.
    Produce(BenchProduceArgs),
    /// Read a topic of a running hub from start to end: records/s, MB/s.
    Consume(BenchConsumeArgs),
    /// Produce at a fixed rate while consumers long-poll: end-to-end latency.
    E2e(BenchE2eArgs),
    /// MQTT publishers against any MQTT broker (Cairn, Mosquitto, ...):
    /// messages/s until the broker has accepted (PUBACKed) everything.
    Mqtt(BenchMqttArgs),
    /// librdkafka's idempotent producer straight to a Kafka-API broker:
    /// records/s until everything is acknowledged (the reference for Kafka
    /// uplinks).
    #[cfg(feature = "kafka")]
    Kafka(super::kafka::BenchKafkaArgs),
    /// One WebAssembly plugin stage alone: records/s through the plugin
    /// (batches in, validated output batches out), compile and cached-load time.
    Plugin(BenchPluginArgs),
}

#[derive(Args)]
pub struct BenchPluginArgs {
    /// The plugin (.wasm, component or core module with wit-bindgen metadata).
    #[arg(long)]
    plugin: PathBuf,
    /// Plugin parameters, `name=value` (repeatable).
    #[arg(long = "param", value_parser = parse_param, default_value = "min=20")]
    params: Vec<(String, String)>,
    #[arg(long, default_value_t = 5_000_000)]
    records: usize,
    /// Records per batch (one plugin call each).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("'{s}' is not name=value"))
}

#[derive(Args)]
pub struct BenchMqttArgs {
    /// host:port of the MQTT broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// MQTT username (for Cairn: an API key id) of every client.
    #[arg(long, env = "CAIRN_API_KEY")]
    username: Option<String>,
    /// MQTT password (for Cairn: the key's secret).
    #[arg(long, env = "CAIRN_API_SECRET", hide_env_values = true)]
    password: Option<String>,
    /// Connect with TLS, checking the broker's certificate against this CA
    /// (PEM); --broker names its TLS listener.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Publishers, each on its own connection.
    #[arg(long, default_value_t = 10)]
    publishers: usize,
    /// Messages each publisher sends.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// 0 or 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// QoS 1 messages each publisher may have unacknowledged (1: each
    /// waits for its PUBACK before sending the next).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    in_flight: u16,
    /// Subscribers to `bench/#` that must each receive every message.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// The subscribers share one subscription, `$share/<GROUP>/bench/#`:
    /// each message must reach one of them, once.
    #[arg(long, value_name = "GROUP", requires = "subscribers")]
    shared: Option<String>,
    /// Instead of publishing: hold this many idle connections for --hold-secs.
    #[arg(long)]
    connections: Option<usize>,
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
    /// With --connections: each idle connection first subscribes to this
    /// filter (QoS 1), as devices waiting for commands do; `{i}` stands for
    /// the connection's number (`cmd/{i}`: one command topic per device).
    #[arg(long, value_name = "FILTER", requires = "connections")]
    subscribe: Option<String>,
}

#[derive(Args)]
pub struct BenchProduceArgs {
    #[arg(long, env = "CAIRN_HUB", default_value = "127.0.0.1:7878")]
    hub: String,
    /// API key id to authenticate every connection with.
    #[arg(long, env = "CAIRN_API_KEY")]
    api_key: Option<String>,
    /// The API key's secret.
    #[arg(long, env = "CAIRN_API_SECRET", hide_env_values = true)]
    api_secret: Option<String>,
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Records in total.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Values as plain-text readings, used in turn and padded to
    /// --value-bytes (`21.5,19.0`: with a threshold filter at 20, half kept).
    #[arg(long, value_delimiter = ',', default_value = "21.5")]
    readings: Vec<String>,
    /// Records per batch (1 = one record per request).
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// Producers, each on its own connection.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Batches each producer keeps outstanding.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// durable (wait for fsync) or none.
    #[arg(long, default_value = "durable", value_parser = ["durable", "none"])]
    acks: String,
    /// Repeat, report each run and, for more than one, the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// text, or one JSON document per run and one for the medians.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
pub struct BenchConsumeArgs {
    #[arg(long, env = "CAIRN_HUB", default_value = "127.0.0.1:7878")]
    hub: String,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Repeat, report each run and, for more than one, the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// text, or one JSON document per run and one for the medians.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
pub struct BenchE2eArgs {
    #[arg(long, env = "CAIRN_HUB", default_value = "127.0.0.1:7878")]
    hub: String,
    #[arg(long, default_value = "bench-e2e")]
    topic: String,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Records per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Repeat, report each run and, for more than one, the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// text, or one JSON document per run and one for the medians.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
pub struct StorageArgs {
    /// Directory for the benchmark database (default: a fresh temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Records written in the batched phase.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Key size in bytes (0 = unkeyed).
    #[arg(long, default_value_t = 0)]
    key_bytes: usize,
    /// Target batch size in bytes in the batched phase (records per batch are
    /// derived from it). The default fills a 128 KiB redb page; see
    /// docs/BENCHMARKS.md on why batch sizes just under a power of two store best.
    #[arg(long, default_value_t = 124 * 1024)]
    batch_bytes: usize,
    /// Records per batch; overrides --batch-bytes.
    #[arg(long)]
    batch_records: Option<usize>,
    /// Concurrent producers in the batched phase.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Batches each producer keeps in flight.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Concurrent single-record appenders (each waits for its ack).
    #[arg(long, default_value_t = 100)]
    appenders: usize,
    /// Seconds the single-record phase runs.
    #[arg(long, default_value_t = 5)]
    single_secs: u64,
    /// redb quick-repair (fast reopen after a crash; every commit saves the
    /// allocator state and fsyncs twice).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    quick_repair: bool,
    /// Repeat the whole benchmark this many times and report medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// text, or json: one JSON document per run, then one with the medians.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs one benchmark.
pub async fn run(command: BenchCommand) -> Result<(), AnyError> {
    match command {
        BenchCommand::Storage(args) => bench_storage(args).await,
        BenchCommand::Produce(args) => bench_produce(args).await,
        BenchCommand::Consume(args) => bench_consume(args).await,
        BenchCommand::E2e(args) => bench_e2e(args).await,
        BenchCommand::Mqtt(args) => bench_mqtt(args).await,
        #[cfg(feature = "kafka")]
        BenchCommand::Kafka(args) => super::kafka::run(args).await,
        BenchCommand::Plugin(args) => bench_plugin(args),
    }
}

async fn bench_storage(args: StorageArgs) -> Result<(), AnyError> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let config = StorageBenchConfig {
        dir,
        records: args.records,
        value_bytes: args.value_bytes,
        key_bytes: args.key_bytes,
        // ~8 bytes of per-record framing (lengths, deltas) on top of key + value.
        batch_records: args.batch_records.unwrap_or(args.batch_bytes / (args.value_bytes + args.key_bytes + 8)).max(1),
        producers: args.producers.max(1),
        in_flight: args.in_flight.max(1),
        partitions: args.partitions.max(1),
        appenders: args.appenders.max(1),
        single_duration: Duration::from_secs(args.single_secs.max(1)),
        quick_repair: args.quick_repair,
    };
    if args.output == Output::Text {
        println!(
            "bench storage: {} records of {} B value + {} B key in batches of {}, {} producers x {} in flight, \
             {} partitions; {} single-record appenders for {:?}; quick_repair={}",
            config.records,
            config.value_bytes,
            config.key_bytes,
            config.batch_records,
            config.producers,
            config.in_flight,
            config.partitions,
            config.appenders,
            config.single_duration,
            config.quick_repair,
        );
    }
    let mut reports = Vec::new();
    for run in 1..=args.runs.max(1) {
        let report = run_storage(&config).await?;
        match args.output {
            Output::Text => print_report(&format!("run {run}"), &report),
            Output::Json => print_run(args.output, run, &report, String::new),
        }
        reports.push(report);
    }
    if reports.len() > 1 {
        let medians = median(&reports);
        match args.output {
            Output::Text => print_report("median", &medians),
            Output::Json => print_median_doc(reports.len(), &medians),
        }
    }
    Ok(())
}

async fn bench_produce(args: BenchProduceArgs) -> Result<(), AnyError> {
    let credentials = match (args.api_key, args.api_secret) {
        (Some(key), Some(secret)) => Some(cairn_client::Credentials { key, secret }),
        (None, None) => None,
        _ => return Err("--api-key and --api-secret go together".into()),
    };
    let config = native_bench::ProduceConfig {
        connect: cairn_client::ConnectOptions { credentials, tls: None },
        hub: args.hub,
        topic: args.topic,
        partitions: args.partitions,
        records: args.records,
        value_bytes: args.value_bytes,
        readings: args.readings,
        batch_records: args.batch_records.max(1),
        producers: args.producers.max(1),
        in_flight: args.in_flight.max(1),
        acks: if args.acks == "none" { Acks::None } else { Acks::Durable },
    };
    if args.output == Output::Text {
        println!(
            "bench produce: {} records of {} B, batches of {}, {} producers x {} in flight, acks={}",
            config.records, config.value_bytes, config.batch_records, config.producers, config.in_flight, args.acks
        );
    }
    let (mut rates, mut p99s) = (Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let r = native_bench::produce(&config).await?;
        print_run(args.output, run, &r, || {
            format!(
                "{:.0} rec/s ({:.1} MB/s) in {:.2} s | ack latency {}",
                r.records_per_sec, r.mb_per_sec, r.seconds, r.ack_latency
            )
        });
        rates.push(r.records_per_sec);
        p99s.push(r.ack_latency.p99_us as f64);
    }
    print_medians(args.output, &[("records_per_sec", rates), ("ack_p99_us", p99s)], |m| {
        format!("{:.0} rec/s, ack latency p99 {:.2} ms", m[0], m[1] / 1e3)
    });
    Ok(())
}

/// One run's report: a text line, or the report as one JSON document.
fn print_run<T: serde::Serialize>(output: Output, run: usize, report: &T, text: impl FnOnce() -> String) {
    match output {
        Output::Text => println!("run {run}: {}", text()),
        Output::Json => {
            let mut doc = serde_json::to_value(report).unwrap_or_default();
            if let Some(fields) = doc.as_object_mut() {
                fields.insert("run".into(), run.into());
            }
            println!("{doc}");
        }
    }
}

/// The median of each named figure over the runs (the upper one for an
/// even count, as the other benchmarks report); nothing for a single run.
/// `text` words the medians, in the order of `figures`.
fn print_medians(output: Output, figures: &[(&str, Vec<f64>)], text: impl FnOnce(&[f64]) -> String) {
    let runs = figures.first().map_or(0, |(_, values)| values.len());
    if runs < 2 {
        return;
    }
    let medians: Vec<f64> = figures.iter().map(|(_, values)| median_of(values)).collect();
    match output {
        Output::Text => println!("median of {runs} runs: {}", text(&medians)),
        Output::Json => {
            let fields: serde_json::Map<String, serde_json::Value> =
                figures.iter().zip(&medians).map(|((name, _), value)| (name.to_string(), (*value).into())).collect();
            print_median_doc(runs, &fields);
        }
    }
}

/// The last JSON document of a benchmark with several runs.
fn print_median_doc(runs: usize, median: &impl serde::Serialize) {
    println!("{}", serde_json::json!({ "runs": runs, "median": median }));
}

async fn bench_consume(args: BenchConsumeArgs) -> Result<(), AnyError> {
    let mut rates = Vec::new();
    for run in 1..=args.runs.max(1) {
        let r = native_bench::consume(&args.hub, &args.topic).await?;
        print_run(args.output, run, &r, || {
            format!(
                "read {} records in {:.2} s: {:.0} rec/s ({:.1} MB/s)",
                r.records, r.seconds, r.records_per_sec, r.mb_per_sec
            )
        });
        rates.push(r.records_per_sec);
    }
    print_medians(args.output, &[("records_per_sec", rates)], |m| format!("{:.0} rec/s", m[0]));
    Ok(())
}

async fn bench_e2e(args: BenchE2eArgs) -> Result<(), AnyError> {
    if args.output == Output::Text {
        println!("bench e2e: {} records/s of {} B for {} s, acks=durable", args.rate, args.value_bytes, args.seconds);
    }
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let r = native_bench::e2e(
            &args.hub,
            &args.topic,
            args.partitions,
            args.rate,
            Duration::from_secs(args.seconds),
            args.value_bytes,
        )
        .await?;
        print_run(args.output, run, &r, || {
            format!("sent {} received {} | produce→consume latency {}", r.sent, r.received, r.latency)
        });
        p50s.push(r.latency.p50_us as f64);
        p99s.push(r.latency.p99_us as f64);
    }
    print_medians(args.output, &[("latency_p50_us", p50s), ("latency_p99_us", p99s)], |m| {
        format!("produce→consume latency p50 {:.2} ms, p99 {:.2} ms", m[0] / 1e3, m[1] / 1e3)
    });
    Ok(())
}

fn bench_plugin(args: BenchPluginArgs) -> Result<(), AnyError> {
    use super::plugin;
    let config = plugin::PluginBenchConfig {
        plugin: args.plugin.clone(),
        params: args.params.clone(),
        records: args.records.max(1),
        batch_records: args.batch.max(1),
        value_bytes: args.value_bytes,
    };
    println!(
        "bench plugin: {} records of {} B in batches of {} through {}",
        config.records,
        config.value_bytes,
        config.batch_records,
        args.plugin.display()
    );
    let input = plugin::batches(&config);
    let mut rates = Vec::new();
    for run in 1..=args.runs.max(1) {
        let r = plugin::run(&config, &input)?;
        println!(
            "run {run}: {} records ({} kept) in {:.3} s = {:.0} rec/s | compile {:.1} ms, cached load {:.1} ms",
            r.records, r.kept, r.seconds, r.records_per_sec, r.compile_ms, r.cached_load_ms
        );
        rates.push(r.records_per_sec);
    }
    println!("median: {:.0} rec/s", median_of(&rates));
    Ok(())
}

async fn bench_mqtt(args: BenchMqttArgs) -> Result<(), AnyError> {
    use super::mqtt;
    if let Some(count) = args.connections {
        let hold = Duration::from_secs(args.hold_secs);
        let held = mqtt::hold_connections(&args.broker, count, hold, args.subscribe.as_deref()).await?;
        println!("held {held} idle MQTT connections to {} for {} s", args.broker, args.hold_secs);
        return Ok(());
    }
    let qos = if args.qos == 0 { rumqttc::QoS::AtMostOnce } else { rumqttc::QoS::AtLeastOnce };
    let config = mqtt::MqttBenchConfig {
        broker: args.broker.clone(),
        credentials: args.username.clone().zip(args.password.clone()),
        tls_ca: args.tls_ca.clone(),
        publishers: args.publishers.max(1),
        messages_per_publisher: args.messages.max(1),
        payload_bytes: args.payload_bytes,
        qos,
        in_flight: args.in_flight,
        subscribers: args.subscribers,
        shared: args.shared.clone(),
    };
    // The window only bounds QoS 1 messages.
    let window = if args.qos == 1 { format!(", {} in flight each", args.in_flight) } else { String::new() };
    println!(
        "bench mqtt: {} publishers x {} messages of {} B at QoS {}{window}, to {}",
        config.publishers, config.messages_per_publisher, config.payload_bytes, args.qos, args.broker
    );
    let (mut rates, mut deliveries) = (Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let r = mqtt::run(&config).await?;
        println!(
            "run {run}: {} messages in {:.2} s = {:.0} msg/s ({:.1} MB/s)",
            r.messages, r.seconds, r.messages_per_sec, r.mb_per_sec
        );
        if let (Some(group), true) = (&config.shared, config.subscribers > 0) {
            let (got, expected) = (r.delivered, r.expected_deliveries);
            println!(
                "run {run}: the {} members of shared group {group} received {got} of {expected} = {:.0} msg/s delivered \
                 (each member {} to {})",
                config.subscribers, r.delivered_per_sec, r.fewest_received, r.most_received
            );
            match got.cmp(&expected) {
                std::cmp::Ordering::Equal => println!("run {run}: every message reached one member"),
                std::cmp::Ordering::Less => {
                    println!("run {run}: MISSING: {} messages reached no member", expected - got)
                }
                std::cmp::Ordering::Greater => println!("run {run}: {} messages reached two members", got - expected),
            }
            deliveries.push(r.delivered_per_sec);
        } else if let Some(each) = r.expected_deliveries.checked_div(config.subscribers) {
            println!(
                "run {run}: subscribers received {} of {} = {:.0} msg/s delivered",
                r.delivered, r.expected_deliveries, r.delivered_per_sec
            );
            if r.short_subscribers == 0 {
                println!("run {run}: every one of the {} subscribers received all {each}", config.subscribers);
            } else {
                println!(
                    "run {run}: MISSING: {} of {} subscribers received fewer than {each} (the fewest: {})",
                    r.short_subscribers, config.subscribers, r.fewest_received
                );
            }
            deliveries.push(r.delivered_per_sec);
        }
        rates.push(r.messages_per_sec);
    }
    println!("median: {:.0} msg/s", median_of(&rates));
    if !deliveries.is_empty() {
        println!("median delivered: {:.0} msg/s", median_of(&deliveries));
    }
    Ok(())
}

fn print_report(label: &str, r: &StorageBenchReport) {
    println!(
        "{label}: batched {:.0} rec/s ({:.1} MB/s, {} commits) | single-record {:.0} rec/s ({} commits) | \
         catch-up {:.0} rec/s | disk {:.3}x payload ({} B on disk, {} B file length, {} B batches) | reopen {:.1} ms",
        r.batched_records_per_sec,
        r.batched_mb_per_sec,
        r.batched_commits,
        r.single_records_per_sec,
        r.single_commits,
        r.catchup_records_per_sec,
        r.disk_ratio,
        r.disk_bytes,
        r.file_bytes,
        r.stored_batch_bytes,
        r.reopen_ms,
    );
}

/// Median of each figure independently.
fn median(reports: &[StorageBenchReport]) -> StorageBenchReport {
    let m = |f: fn(&StorageBenchReport) -> f64| median_of(&reports.iter().map(f).collect::<Vec<_>>());
    let mut out = reports[0].clone();
    out.batched_records_per_sec = m(|r| r.batched_records_per_sec);
    out.batched_mb_per_sec = m(|r| r.batched_mb_per_sec);
    out.batched_commits = m(|r| r.batched_commits as f64) as u64;
    out.single_records_per_sec = m(|r| r.single_records_per_sec);
    out.single_commits = m(|r| r.single_commits as f64) as u64;
    out.catchup_records_per_sec = m(|r| r.catchup_records_per_sec);
    out.disk_ratio = m(|r| r.disk_ratio);
    out.file_bytes = m(|r| r.file_bytes as f64) as u64;
    out.disk_bytes = m(|r| r.disk_bytes as f64) as u64;
    out.stored_batch_bytes = m(|r| r.stored_batch_bytes as f64) as u64;
    out.reopen_ms = m(|r| r.reopen_ms);
    out.payload_bytes = m(|r| r.payload_bytes as f64) as u64;
    out.records_stored = m(|r| r.records_stored as f64) as u64;
    out
}
