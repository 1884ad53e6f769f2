//! Clock jumps with the real binary: the hub runs under libfaketime
//! (Debian's `faketime`, installed by scripts/test.sh), whose offset file
//! the test rewrites to step the hub's wall clock while its monotonic clock
//! runs on, as NTP's first sync or `date -s` would (docs/operations.md,
//! "Clock jumps").

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Hub;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

fn libfaketime() -> PathBuf {
    let found = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
        .iter()
        .map(|dir| Path::new(dir).join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime is missing: ./scripts/test.sh installs Debian's faketime")
}

/// An MQTT 5 connection with a one-hour session; returns whether the
/// session was present, and the packets that follow.
async fn connect(addr: &str, id: &str) -> (AsyncClient, bool, mpsc::UnboundedReceiver<Packet>) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut options = MqttOptions::new(id, host, port.parse().unwrap());
    options.set_clean_start(false).set_session_expiry_interval(Some(3600));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Packet::ConnAck(ack))) => (client, ack.session_present, rx),
        other => panic!("no CONNACK: {other:?}"),
    }
}

/// Waits until `cairn metrics` shows `n` clock jumps.
fn wait_for_jumps(hub: &Hub, n: u64) {
    let started = Instant::now();
    loop {
        let (ok, out, err) = hub.cli(&["metrics"], None);
        assert!(ok, "{err}");
        let jumps = out.lines().find_map(|l| l.strip_prefix("log_clock_jumps")).map(|v| v.trim().parse::<u64>());
        if jumps == Some(Ok(n)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no clock jump {n} seen: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_jump_ahead_and_a_step_back_keep_records_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[log]\nretention_check_secs = 1\n").unwrap();
    let preload = libfaketime();
    let env = [
        ("LD_PRELOAD", preload.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
        // Read the offset again each second; only the wall clock is faked.
        ("FAKETIME_CACHE_DURATION", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let hub = Hub::start_with_env(&dir.path().join("data"), &["--config", config.to_str().unwrap()], &env);
    let addr = hub.mqtt_addr.clone().unwrap();

    // A day of retention, five records, and a persistent MQTT session (one
    // hour) whose client goes away.
    assert!(hub.cli(&["topic", "create", "readings", "--retention-ms", "86400000"], None).0);
    let (ok, _, err) = hub.cli(&["produce", "readings"], Some("1\n2\n3\n4\n5\n"));
    assert!(ok, "{err}");
    let (device, present, _rx) = connect(&addr, "device-1").await;
    assert!(!present);
    device.subscribe("alerts/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    device.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The clock jumps a year ahead; retention runs each second.
    std::fs::write(&offset, "+365d\n").unwrap();
    wait_for_jumps(&hub, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let consumed = |hub: &Hub| {
        let (ok, out, err) = hub.cli(&["consume", "readings", "--from-beginning"], None);
        assert!(ok, "{err}");
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(consumed(&hub), ["1", "2", "3", "4", "5"], "retention took records a year old by the jumped clock");
    let (device, present, _rx) = connect(&addr, "device-1").await;
    assert!(present, "the session expired with the jump");
    device.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Set back by a day (an operator's `date -s`): noticed too; nothing lost,
    // the session still there, and appends go on.
    std::fs::write(&offset, "+364d\n").unwrap();
    wait_for_jumps(&hub, 2);
    let (ok, _, err) = hub.cli(&["produce", "readings"], Some("6\n"));
    assert!(ok, "{err}");
    assert_eq!(consumed(&hub), ["1", "2", "3", "4", "5", "6"]);
    let (_device, present, _) = connect(&addr, "device-1").await;
    assert!(present, "the session expired after the step back");
    assert!(hub.log.lock().unwrap().iter().any(|l| l.contains("the system clock jumped")), "the jump is logged");
}
