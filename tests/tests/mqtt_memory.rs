//! The hub's memory under many MQTT clients that come and go: 10,000
//! clients, each with a persistent session (expiry 1 s) subscribing 10
//! filters, vanish without DISCONNECT, three times over; once their
//! sessions have expired and been swept, the hub's RSS is back within 20 %
//! of where it started (a hub that has served its first 1,000 clients:
//! the runtime's threads, allocator arenas, topic and caches in use). Also
//! prints the RSS per connection, recorded in docs/BENCHMARKS.md.
//!
//! The clients are raw sockets writing packets made by rumqttc's codec: a
//! full client per connection would cost the test more than the hub.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::Hub;
use rumqttc::v5::mqttbytes::v5::{Connect, ConnectProperties, Filter, Packet, Subscribe};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 10_000;
const FILTERS: usize = 10;
const ROUNDS: usize = 3;
const WARM_UP: usize = 1_000;

/// The hub's resident set in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connects with a persistent session of 1 s expiry, subscribes to
/// `FILTERS` filters and waits for SUBACK; returns the open socket.
async fn connect_and_subscribe(addr: &str, id: String) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let mut out = BytesMut::new();
    let properties = ConnectProperties { session_expiry_interval: Some(1), ..ConnectProperties::new() };
    let filters = (0..FILTERS).map(|j| Filter::new(format!("mem/{id}/{j}"), QoS::AtLeastOnce)).collect();
    let connect = Connect { keep_alive: 60, client_id: id, clean_start: true, properties: Some(properties) };
    Packet::Connect(connect, None, None).write(&mut out, None).unwrap();
    Packet::Subscribe(Subscribe { pkid: 1, filters, properties: None }).write(&mut out, None).unwrap();
    socket.write_all(&out).await.unwrap();
    let mut got = BytesMut::new();
    loop {
        match Packet::read(&mut got, None) {
            Ok(Packet::SubAck(ack)) => {
                assert_eq!(ack.return_codes.len(), FILTERS);
                return socket;
            }
            Ok(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success)
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                let n = socket.read_buf(&mut got).await.unwrap();
                assert!(n > 0, "the hub closed the connection");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// One round: every client connects and subscribes (at most 200 at once),
/// all stay connected together, then all vanish at once. Returns the RSS
/// while they were all connected.
async fn round(addr: &str, pid: u32, n: usize) -> u64 {
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, gate) = (addr.to_string(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                connect_and_subscribe(&addr, format!("r{n}-c{i}")).await
            })
        })
        .collect();
    let mut sockets = Vec::with_capacity(CLIENTS);
    for task in tasks {
        sockets.push(task.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = rss_kib(pid);
    drop(sockets); // no DISCONNECT: the sessions stay, then expire
    connected
}

/// The hub's `mqtt_sessions_expired` counter.
fn expired(hub: &Hub) -> u64 {
    let (_, out, _) = hub.cli(&["metrics"], None);
    out.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("mqtt_sessions_expired")).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_vanishing_clients_leave_no_memory_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    // Room for one round's connections while the last round's close; a
    // small page cache, as the cache fills up to its own bound (16 MiB by
    // default) from the first writes on, which is not what is measured here.
    std::fs::write(&config, "[mqtt]\nmax_connections = 15000\n[log]\ncache_bytes = 1048576\n").unwrap();
    let hub = Hub::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let (addr, pid) = (hub.mqtt_addr.clone().unwrap(), hub.child.id());
    // Warm-up: a first 1,000 clients come and go, so the start is a hub
    // that has served clients (its threads, arenas, topic and caches in use).
    let fresh = rss_kib(pid);
    let mut warm = Vec::new();
    for i in 0..WARM_UP {
        warm.push(connect_and_subscribe(&addr, format!("warm-{i}")).await);
    }
    drop(warm);
    let deadline = Instant::now() + Duration::from_secs(60);
    while expired(&hub) < WARM_UP as u64 {
        assert!(Instant::now() < deadline, "warm-up sessions not swept");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = rss_kib(pid);
    println!("RSS {fresh} KiB fresh, {start} KiB after {WARM_UP} clients came and went");
    let mut report = Vec::new();
    for n in 0..ROUNDS {
        let connected = round(&addr, pid, n).await;
        // Expired after 1 s, swept within 2 s more; wait until all are.
        let want = ((n + 1) * CLIENTS + WARM_UP) as u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while expired(&hub) < want {
            assert!(Instant::now() < deadline, "sessions not swept: {} of {want}", expired(&hub));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The sweeper hands freed memory back every 2 s while clients
        // leave, and once more when they are gone: wait up to 10 s for the
        // RSS to come back within the bound (the lowest reading counts).
        let settle = Instant::now() + Duration::from_secs(10);
        let mut after = rss_kib(pid);
        while after as f64 > start as f64 * 1.2 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(500)).await;
            after = after.min(rss_kib(pid));
        }
        report.push((connected, after));
        println!(
            "round {n}: RSS {start} KiB at the start, {connected} KiB with {CLIENTS} clients connected \
             ({:.1} KiB per connection), {after} KiB once their sessions expired",
            (connected.saturating_sub(start)) as f64 / CLIENTS as f64
        );
    }
    let (_, last) = report[ROUNDS - 1];
    assert!(
        last as f64 <= start as f64 * 1.2,
        "RSS did not come back: {start} KiB at the start, {last} KiB after {ROUNDS} rounds ({report:?})"
    );
    let (ok, groups, _) = hub.cli(&["group", "list"], None);
    assert!(ok && !groups.contains("mqtt.r"), "expired sessions' groups left behind: {groups}");
}
