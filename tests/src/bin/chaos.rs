//! The mixed-load crash audit (`scripts/chaos.sh`, docs/RELIABILITY.md).
//!
//! Runs the real `cairn serve` under everything at once: idempotent native
//! producers (one of them into a topic with an ingest plugin, one into the
//! source of a derived topic), MQTT QoS 1 and QoS 2 publishers, and a
//! native consumer group. It `kill -9`s the hub at random moments, restarts
//! it on the same ports and data, and audits:
//!
//! - every acknowledged record is stored exactly once, and each key's
//!   records are in the order they were produced (the producers retry
//!   through the kills; the hub must recognise what it already stored);
//! - the ingest plugin's filter held for everything stored;
//! - the derived topic holds one output per source record, in order;
//! - after each restart the group's committed offsets are never ahead of
//!   what its member had processed.
//!
//! Usage: `chaos <cairn binary> <plugin wasm dir> <rounds>`; exits non-zero
//! with what was wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{Client, GroupConsumer, Producer, ProducerConfig, StartFrom};
use cairn_e2e::hub_process::HubProcess;
use cairn_proto::OwnedRecord;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinSet;

/// The consumer group whose offsets are audited.
const GROUP: &str = "chaos-audit";

/// What was acknowledged, by workload: (key, value) pairs.
type Acked = Arc<Mutex<Vec<(String, String)>>>;

/// The key and value of a producer's n-th record.
type KeyValue = fn(u64) -> (String, String);

/// Produces `key_value(n)` for n = 0, 1, … with an idempotent producer
/// that retries through the kills (for up to 20 s per batch), recording
/// what was acknowledged.
async fn produce(addr: String, topic: &'static str, key_value: KeyValue, stop: Arc<AtomicBool>, acked: Acked) -> u64 {
    let config = ProducerConfig { retries: 200, retry_backoff: Duration::from_millis(100), ..Default::default() };
    let producer = Producer::connect(&addr, config).await.expect("connect the producer");
    let window = Arc::new(tokio::sync::Semaphore::new(256));
    let mut waiting = JoinSet::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let permit = window.clone().acquire_owned().await.unwrap();
        let (key, value) = key_value(n);
        n += 1;
        let record = OwnedRecord::new(value.clone(), 0).with_key(key.clone());
        let Ok(ack) = producer.send(topic, record).await else { continue };
        let acked = acked.clone();
        waiting.spawn(async move {
            if ack.await.is_ok() {
                acked.lock().unwrap().push((key, value));
            }
            drop(permit);
        });
        while waiting.try_join_next().is_some() {}
    }
    while waiting.join_next().await.is_some() {}
    n
}

/// Publishes one message at a time at `qos`, each once (a new connection
/// after a kill; what was not acknowledged is not sent again), recording
/// those acknowledged (PUBACK, or PUBREC for QoS 2: the hub has stored it).
async fn publish(port: u16, id: String, qos: QoS, stop: Arc<AtomicBool>, acked: Acked) -> u64 {
    let topic = format!("chaos/q{}/{id}", qos as u8);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut options = MqttOptions::new(format!("{id}-{n}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    if tx.send(packet).is_err() {
                        return;
                    }
                }
            }
        });
        if wait(&mut rx, |p| matches!(p, Packet::ConnAck(_))).await {
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("{id}-{n}");
                n += 1;
                let sent = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.publish(topic.clone(), qos, false, payload.clone()),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
                let ack: fn(&Packet) -> bool = match qos {
                    QoS::ExactlyOnce => |p| matches!(p, Packet::PubRec(_)),
                    _ => |p| matches!(p, Packet::PubAck(_)),
                };
                if !wait(&mut rx, ack).await {
                    break;
                }
                acked.lock().unwrap().push((topic.clone(), payload));
            }
        }
        pump.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

/// Waits up to 5 s for a packet `want` accepts; false if none came or the
/// connection ended.
async fn wait(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Packet>, want: fn(&Packet) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) if want(&p) => return true,
            Ok(Some(_)) => {}
            _ => return false,
        }
    }
}

/// A group member reading `native`: "processes" each record (notes the
/// next offset per partition), then commits. Reconnects and rejoins after
/// each kill.
async fn consume(addr: String, stop: Arc<AtomicBool>, processed: Arc<Mutex<HashMap<u32, u64>>>) {
    let mut consumer: Option<GroupConsumer> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(member) = consumer.as_mut() else {
            if let Ok(client) = Client::connect(&addr).await {
                let joined =
                    GroupConsumer::join(client, GROUP, &["native"], Duration::from_secs(10), StartFrom::Earliest).await;
                consumer = joined.ok();
            }
            if consumer.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let polled = member.poll(Duration::from_millis(200)).await;
        let ok = match polled {
            Ok(records) => {
                {
                    let mut processed = processed.lock().unwrap();
                    for r in &records {
                        let next = processed.entry(r.partition).or_default();
                        *next = (*next).max(r.offset + 1);
                    }
                }
                member.commit().await.is_ok()
            }
            Err(_) => false,
        };
        if !ok {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let rejoined = match Client::connect(&addr).await {
                Ok(client) => member.rejoin(client).await.is_ok(),
                Err(_) => false,
            };
            if !rejoined {
                consumer = None;
            }
        }
    }
}

/// Every record of `topic`: (partition, key, value) in offset order per
/// partition.
async fn read_all(client: &Client, topic: &str) -> Vec<(u32, String, String)> {
    let partitions = client.describe_topic(topic).await.expect("describe the topic").partitions.len() as u32;
    let mut out = Vec::new();
    for p in 0..partitions {
        let mut offset = 0;
        loop {
            let fetch = client.fetch(topic, p, offset, 4 << 20, Duration::ZERO).await.expect("fetch");
            for r in fetch.records() {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                out.push((p, r.key.map(text).unwrap_or_default(), text(r.value)));
                offset = r.offset + 1;
            }
            if offset >= fetch.end_offset {
                break;
            }
        }
    }
    out
}

/// Each key's records are stored in the order they were sent: the number
/// ending each value grows.
fn in_order(name: &str, stored: &[(u32, String, String)], failures: &mut Vec<String>) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, k, v) in stored {
        let n: u64 = v.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if let Some(prev) = last.insert(k, n).filter(|prev| *prev >= n) {
            failures.push(format!("{name}: key {k} out of order ({n} after {prev})"));
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, cairn, plugins, rounds] = &args[..] else {
        eprintln!("usage: chaos <cairn binary> <plugin wasm dir> <rounds>");
        std::process::exit(2);
    };
    let rounds: u32 = rounds.parse().expect("rounds: a number");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let failures = runtime.block_on(run(PathBuf::from(cairn), Path::new(plugins), rounds));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}

async fn run(cairn: PathBuf, plugins: &Path, rounds: u32) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = std::env::var_os("CHAOS_HUB_LOG").map(PathBuf::from).unwrap_or_else(|| dir.path().join("hub.log"));
    let mut hub = HubProcess::new(cairn, dir.path().join("data"), log);
    hub.start();
    let (native, mqtt_port) = (hub.native.clone(), hub.mqtt_port());

    // An ingest filter (threshold: keeps readings >= 20) and a derived topic
    // (celsius → fahrenheit).
    hub.cli(&["topic", "create", "native", "--partitions", "3"]);
    for topic in ["temps", "celsius", "fahrenheit"] {
        hub.cli(&["topic", "create", topic, "--partitions", "1"]);
    }
    let wasm = |name: &str| plugins.join(format!("{name}.wasm")).to_string_lossy().into_owned();
    hub.cli(&["plugin", "upload", &wasm("cairn_plugin_threshold"), "--name", "threshold"]);
    hub.cli(&["plugin", "upload", &wasm("cairn_plugin_celsius_to_fahrenheit"), "--name", "c2f"]);
    hub.cli(&["plugin", "attach", "temps", "threshold", "-p", "min=20"]);
    hub.cli(&["plugin", "attach", "celsius", "c2f", "--derived-to", "fahrenheit"]);

    let stop = Arc::new(AtomicBool::new(false));
    let acked: HashMap<&str, Acked> =
        ["native", "temps", "celsius", "mqtt"].into_iter().map(|w| (w, Acked::default())).collect();
    let processed = Arc::new(Mutex::new(HashMap::new()));
    let mut workers = JoinSet::new();
    let producers: [(&'static str, KeyValue); 3] = [
        ("native", |n| (format!("k{}", n % 8), n.to_string())),
        ("temps", |n| (format!("t{n}"), (10 + n % 20).to_string())),
        ("celsius", |n| (format!("c{n}"), (n % 40).to_string())),
    ];
    for (topic, key_value) in producers {
        workers.spawn(produce(native.clone(), topic, key_value, stop.clone(), acked[topic].clone()));
    }
    for (id, qos) in [("p1", QoS::AtLeastOnce), ("p2", QoS::AtLeastOnce), ("p3", QoS::ExactlyOnce)] {
        workers.spawn(publish(mqtt_port, id.to_string(), qos, stop.clone(), acked["mqtt"].clone()));
    }
    workers.spawn({
        let (native, stop, processed) = (native.clone(), stop.clone(), processed.clone());
        async move {
            consume(native, stop, processed).await;
            0
        }
    });

    let mut failures = Vec::new();
    let started = Instant::now();
    for round in 1..=rounds {
        let load = Duration::from_millis(fastrand::u64(500..2500));
        tokio::time::sleep(load).await;
        hub.kill9();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
        hub.start();
        // Committed offsets are read first, what was processed after: the
        // commit must not be ahead of processing at any moment.
        let client = Client::connect(&native).await.expect("connect after the restart");
        let committed = client.fetch_committed(GROUP, "native").await.unwrap_or_default();
        let processed = processed.lock().unwrap().clone();
        for (p, offset) in committed {
            let done = processed.get(&p).copied().unwrap_or(0);
            if offset.is_some_and(|o| o > done) {
                failures
                    .push(format!("round {round}: group offset {offset:?} of partition {p} is past {done} processed"));
            }
        }
        let counts: Vec<String> = acked.iter().map(|(w, a)| format!("{w} {}", a.lock().unwrap().len())).collect();
        println!(
            "round {round}: killed after {} ms of load; acknowledged so far: {}",
            load.as_millis(),
            counts.join(", ")
        );
    }

    // Let the load run on the last restart a little, then stop it and wait
    // for every outstanding acknowledgement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    while let Some(n) = workers.join_next().await {
        sent += n.expect("a worker panicked");
    }

    let client = Client::connect(&native).await.expect("connect for the audit");
    // The derived topic catches up with its source.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (celsius, fahrenheit) = loop {
        let (c, f) = (read_all(&client, "celsius").await, read_all(&client, "fahrenheit").await);
        if c.len() == f.len() || Instant::now() > deadline {
            break (c, f);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Every acknowledged record exactly once; each key's records in order.
    let audit_once = |name: &str, stored: &[(u32, String, String)], failures: &mut Vec<String>| {
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (_, k, v) in stored {
            *seen.entry((k, v)).or_default() += 1;
        }
        let twice = seen.values().filter(|n| **n > 1).count();
        if twice > 0 {
            failures.push(format!("{name}: {twice} records stored more than once"));
        }
        let acked = acked[name].lock().unwrap();
        let lost: Vec<_> = acked.iter().filter(|(k, v)| !seen.contains_key(&(k.as_str(), v.as_str()))).collect();
        if !lost.is_empty() {
            failures.push(format!(
                "{name}: {} acknowledged records missing, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(3)]
            ));
        }
    };
    let native_records = read_all(&client, "native").await;
    audit_once("native", &native_records, &mut failures);
    in_order("native", &native_records, &mut failures);

    // The ingest filter: only readings >= 20 stored; those acknowledged all there.
    let temps = read_all(&client, "temps").await;
    if let Some(low) = temps.iter().find(|(_, _, v)| v.parse::<u64>().map_or(true, |n| n < 20)) {
        failures.push(format!("temps: {low:?} passed the threshold filter"));
    }
    let keys: HashSet<&str> = temps.iter().map(|(_, k, _)| k.as_str()).collect();
    if keys.len() != temps.len() {
        failures.push(format!("temps: {} records stored more than once", temps.len() - keys.len()));
    }
    let kept_missing = acked["temps"]
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, v)| v.parse::<u64>().is_ok_and(|n| n >= 20) && !keys.contains(k.as_str()))
        .count();
    if kept_missing > 0 {
        failures.push(format!("temps: {kept_missing} acknowledged readings >= 20 missing"));
    }

    // The derived topic: one output per source record, in order.
    audit_once("celsius", &celsius, &mut failures);
    if celsius.len() != fahrenheit.len() {
        failures.push(format!("derived: {} source records, {} outputs", celsius.len(), fahrenheit.len()));
    }
    for (i, ((_, _, c), (_, _, f))) in celsius.iter().zip(&fahrenheit).enumerate() {
        let expected = format!("{:.1}", c.parse::<f64>().unwrap_or(f64::NAN) * 9.0 / 5.0 + 32.0);
        if *f != expected {
            failures.push(format!("derived: output {i} is {f}, expected {expected} (from {c})"));
            break;
        }
    }

    // MQTT: every PUBACKed / PUBRECed message exactly once.
    let mqtt: Vec<_> = read_all(&client, "chaos").await;
    audit_once("mqtt", &mqtt, &mut failures);
    in_order("mqtt", &mqtt, &mut failures);

    let acked_total: usize = acked.values().map(|a| a.lock().unwrap().len()).sum();
    println!(
        "chaos: {rounds} kill -9 rounds in {:.0} s; {sent} records sent, {acked_total} acknowledged \
         (native {}, ingest {}, derived source {}, MQTT QoS 1/2 {}); stored: native {}, temps {}, celsius {} → \
         fahrenheit {}, mqtt {}; {}",
        started.elapsed().as_secs_f64(),
        acked["native"].lock().unwrap().len(),
        acked["temps"].lock().unwrap().len(),
        acked["celsius"].lock().unwrap().len(),
        acked["mqtt"].lock().unwrap().len(),
        native_records.len(),
        temps.len(),
        celsius.len(),
        fahrenheit.len(),
        mqtt.len(),
        if failures.is_empty() { "PASS".to_string() } else { format!("{} FAILURES", failures.len()) }
    );
    hub.kill9();
    failures
}
