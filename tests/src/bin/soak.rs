//! The soak (`scripts/soak.sh`, docs/RELIABILITY.md): the real `cairn
//! serve` with many MQTT devices each publishing one reading a second (QoS
//! 1), several MQTT subscribers to all of them and a native consumer group,
//! for a long while. Every `sample` seconds it records the hub's RSS and open
//! files, the end-to-end latency from publish to subscriber (p50, p99), the
//! commit latency (p99, from `/metrics`), and what was published and
//! received, as a CSV row. At the end every acknowledged message must have
//! reached every subscriber and the group exactly as often as it was sent,
//! and (runs of 3 minutes or more) the RSS must be within 10 % of the
//! sample at minute 2: memory does not creep.
//!
//! Usage: `soak <cairn binary> <clients> <subscribers> <seconds> <sample
//! seconds> <csv file>`; exits non-zero with what was wrong.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_client::{Client, GroupConsumer, StartFrom};
use cairn_e2e::hub_process::HubProcess;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinSet;

/// Counts shared by the load and the sampler.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    acked: AtomicU64,
    /// Per subscriber.
    received: Vec<AtomicU64>,
    consumed: AtomicU64,
    /// Publish → subscriber latencies (µs) since the last sample.
    latencies: Mutex<Vec<u64>>,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Connects an MQTT client; its incoming packets go to `on_packet`. Returns
/// once CONNACK is in.
async fn mqtt(port: u16, id: String, mut on_packet: impl FnMut(Packet) + Send + 'static) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(60)).set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (connected, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut connected = Some(connected);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(tx) = connected.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(packet)) => on_packet(packet),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready).await.expect("CONNACK in 30 s").expect("connected");
    client
}

/// One device: a reading a second, until `until`.
async fn device(port: u16, i: usize, until: tokio::time::Instant, counts: Arc<Counts>) {
    let acked = counts.clone();
    let client = mqtt(port, format!("soak-dev-{i}"), move |p| {
        if matches!(p, Packet::PubAck(_)) {
            acked.acked.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
    // Spread the devices over the second.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seq = 0u64;
    while tokio::time::Instant::now() < until {
        tick.tick().await;
        let payload = format!("{i}:{seq}:{}", now_us());
        if client.publish(format!("soak/dev{i}/temp"), QoS::AtLeastOnce, false, payload).await.is_err() {
            break;
        }
        counts.sent.fetch_add(1, Ordering::Relaxed);
        seq += 1;
    }
    // Leave the last PUBACKs time to come.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = client.disconnect().await;
}

/// A subscriber to every device: counts and times what arrives.
async fn subscriber(port: u16, n: usize, counts: Arc<Counts>) -> AsyncClient {
    let seen = counts.clone();
    let client = mqtt(port, format!("soak-sub-{n}"), move |p| {
        if let Packet::Publish(p) = p {
            seen.received[n].fetch_add(1, Ordering::Relaxed);
            let sent = std::str::from_utf8(&p.payload).ok().and_then(|s| s.rsplit(':').next()?.parse::<u64>().ok());
            if let Some(sent) = sent {
                seen.latencies.lock().unwrap().push(now_us().saturating_sub(sent));
            }
        }
    })
    .await;
    client.subscribe("soak/#", QoS::AtLeastOnce).await.expect("subscribe");
    client
}

/// A native consumer group member counting what it reads.
async fn group_member(addr: String, counts: Arc<Counts>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let client = Client::connect(&addr).await.expect("connect the consumer");
    let mut member = GroupConsumer::join(client, "soak-group", &["soak"], Duration::from_secs(30), StartFrom::Earliest)
        .await
        .expect("join the group");
    while !stop.load(Ordering::Relaxed) {
        match member.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                counts.consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
                let _ = member.commit().await;
            }
            Err(err) => {
                eprintln!("group member: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// `q` (0..1) of `values` (sorted in place); 0 when empty.
fn quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// The hub's RSS (KiB) and open files, from /proc.
fn process(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss, fds)
}

/// The commit latency histogram's cumulative buckets (upper bound in s,
/// count) from `/metrics`.
fn commit_buckets(http: &str) -> Vec<(f64, u64)> {
    let Ok(mut response) = ureq::get(&format!("http://{http}/metrics")).call() else { return Vec::new() };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("cairn_log_commit_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// The p99 bucket bound (ms) of the commits between two scrapes.
fn commit_p99_ms(before: &[(f64, u64)], after: &[(f64, u64)]) -> f64 {
    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| (*le, n - before.iter().find(|(b, _)| b == le).map_or(0, |(_, m)| (*m).min(*n))))
        .collect();
    let total = diff.last().map_or(0, |(_, n)| *n);
    let wanted = (total as f64 * 0.99).ceil() as u64;
    diff.iter().find(|(_, n)| *n >= wanted && total > 0).map_or(0.0, |(le, _)| le * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, cairn, clients, subscribers, seconds, sample, csv] = &args[..] else {
        eprintln!("usage: soak <cairn binary> <clients> <subscribers> <seconds> <sample seconds> <csv file>");
        std::process::exit(2);
    };
    let number = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("not a number: {s}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let failures = runtime.block_on(run(
        PathBuf::from(cairn),
        number(clients) as usize,
        number(subscribers) as usize,
        Duration::from_secs(number(seconds)),
        Duration::from_secs(number(sample)),
        PathBuf::from(csv),
    ));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}

async fn run(
    cairn: PathBuf,
    clients: usize,
    subscribers: usize,
    length: Duration,
    sample: Duration,
    csv: PathBuf,
) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut hub = HubProcess::new(cairn, dir.path().join("data"), dir.path().join("hub.log"));
    hub.start();
    let pid = hub.pid().expect("running");
    hub.cli(&["topic", "create", "soak", "--partitions", "4"]);
    let counts =
        Arc::new(Counts { received: (0..subscribers).map(|_| AtomicU64::new(0)).collect(), ..Default::default() });
    let port = hub.mqtt_port();

    let mut subs = Vec::new();
    for n in 0..subscribers {
        subs.push(subscriber(port, n, counts.clone()).await);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let member = tokio::spawn(group_member(hub.native.clone(), counts.clone(), stop.clone()));
    let until = tokio::time::Instant::now() + length;
    let mut devices = JoinSet::new();
    for i in 0..clients {
        devices.spawn(device(port, i, until, counts.clone()));
    }

    let mut out = std::fs::File::create(&csv).expect("create the CSV file");
    writeln!(out, "seconds,rss_mib,open_files,published,received,latency_p50_ms,latency_p99_ms,commit_p99_ms").unwrap();
    println!("soak: {clients} devices at 1 msg/s, {subscribers} subscribers, a consumer group, {} s", length.as_secs());
    let started = Instant::now();
    let mut buckets = commit_buckets(&hub.http);
    let (mut last_sent, mut last_received) = (0, 0);
    let mut rss_samples = Vec::new();
    while started.elapsed() < length {
        tokio::time::sleep(sample.min(length.saturating_sub(started.elapsed())).max(Duration::from_millis(100))).await;
        let (rss_kib, fds) = process(pid);
        let mut latencies = std::mem::take(&mut *counts.latencies.lock().unwrap());
        let (p50, p99) = (quantile(&mut latencies, 0.5), quantile(&mut latencies, 0.99));
        let now_buckets = commit_buckets(&hub.http);
        let commit_p99 = commit_p99_ms(&buckets, &now_buckets);
        buckets = now_buckets;
        let sent = counts.sent.load(Ordering::Relaxed);
        let received: u64 = counts.received.iter().map(|r| r.load(Ordering::Relaxed)).sum();
        let row = format!(
            "{:.0},{:.1},{fds},{},{},{:.1},{:.1},{commit_p99:.1}",
            started.elapsed().as_secs_f64(),
            rss_kib as f64 / 1024.0,
            sent - last_sent,
            received - last_received,
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
        );
        (last_sent, last_received) = (sent, received);
        rss_samples.push((started.elapsed(), rss_kib));
        writeln!(out, "{row}").unwrap();
        println!("{row}");
    }

    // Every device stops, its last acknowledgements in; then everything
    // published reaches every subscriber and the group.
    while devices.join_next().await.is_some() {}
    let (sent, acked) = (counts.sent.load(Ordering::Relaxed), counts.acked.load(Ordering::Relaxed));
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |c: &Counts| {
        c.received.iter().all(|r| r.load(Ordering::Relaxed) >= sent) && c.consumed.load(Ordering::Relaxed) >= sent
    };
    while !done(&counts) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = member.await;
    drop(subs);

    let mut failures = Vec::new();
    if acked != sent {
        failures.push(format!("{sent} published, {acked} acknowledged"));
    }
    for (n, r) in counts.received.iter().enumerate() {
        let r = r.load(Ordering::Relaxed);
        if r != sent {
            failures.push(format!("subscriber {n} received {r} of {sent}"));
        }
    }
    let consumed = counts.consumed.load(Ordering::Relaxed);
    if consumed != sent {
        failures.push(format!("the consumer group read {consumed} of {sent}"));
    }
    let peak = rss_samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    let minute_2 = rss_samples.iter().find(|(t, _)| *t >= Duration::from_secs(115)).map(|(_, rss)| *rss);
    let checked = length >= Duration::from_secs(180);
    if let (true, Some(m2), Some(&(t, last))) = (checked, minute_2, rss_samples.last()) {
        let change = (last as f64 - m2 as f64) / m2 as f64 * 100.0;
        println!(
            "soak: RSS {:.1} MiB at minute 2, {:.1} MiB at {:.0} s ({change:+.1} %)",
            m2 as f64 / 1024.0,
            last as f64 / 1024.0,
            t.as_secs_f64()
        );
        if change.abs() > 10.0 {
            failures.push(format!("RSS changed {change:+.1} % from minute 2 to the end (limit 10 %)"));
        }
    }
    println!(
        "soak: {sent} published, {acked} acknowledged, {} delivered to {subscribers} subscribers, {consumed} read by the group; \
         peak RSS {:.1} MiB; {}",
        counts.received.iter().map(|r| r.load(Ordering::Relaxed)).sum::<u64>(),
        peak as f64 / 1024.0,
        if failures.is_empty() { "PASS".to_string() } else { format!("{} FAILURES", failures.len()) }
    );
    failures
}
