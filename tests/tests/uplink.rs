//! Uplinks end to end: the real `cairn serve` forwarding to a real Mosquitto
//! on 127.0.0.1 (started by each test), read there by an independent client
//! (rumqttc with a persistent session), and commands published upstream
//! reaching local subscribers. Outages are real: the broker stopped for
//! 30 s and restarted, a proxy that goes silent without closing, the hub
//! killed.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::certs::Ca;
use common::mosquitto::{free_port, Mosquitto};
use common::proxy::Proxy;
use common::Hub;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// What an upstream subscriber received: (topic, payload), in arrival order.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A client of the upstream broker with a persistent session (it gets
/// what arrived while it was away), subscribed to `filter`, reconnecting
/// by itself until the test ends.
async fn upstream_reader(port: u16, filter: &str) -> Received {
    let mut options = MqttOptions::new(format!("reader-{port}"), "127.0.0.1", port);
    options.set_clean_session(false).set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let received: Received = Arc::default();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let keep = received.clone();
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    keep.lock().unwrap().push((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.expect("SUBACK from mosquitto").unwrap();
    received
}

/// Waits until `received` holds `n` distinct messages (duplicates allowed).
async fn wait_distinct(received: &Received, n: usize, within: Duration) {
    let started = Instant::now();
    loop {
        let distinct = received.lock().unwrap().iter().collect::<HashSet<_>>().len();
        if distinct >= n {
            return;
        }
        assert!(started.elapsed() < within, "only {distinct} of {n} distinct messages arrived upstream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that each topic's payloads, duplicates removed, are `0..n` in
/// order; returns the number of duplicates.
fn assert_in_order(received: &Received, expected: &BTreeMap<String, usize>) -> usize {
    let got = received.lock().unwrap().clone();
    let mut per_topic: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for (topic, payload) in &got {
        if !seen.insert((topic.clone(), payload.clone())) {
            duplicates += 1;
            continue;
        }
        per_topic.entry(topic.clone()).or_default().push(payload.parse().unwrap());
    }
    for (topic, n) in expected {
        let seqs = per_topic.remove(topic).unwrap_or_default();
        assert_eq!(seqs, (0..*n).collect::<Vec<_>>(), "messages of {topic}: missing or out of order");
    }
    assert!(per_topic.is_empty(), "unexpected topics upstream: {:?}", per_topic.keys());
    duplicates
}

/// Starts the hub with one MQTT uplink to 127.0.0.1:`upstream` forwarding
/// topic `sensors` as `site-7/data/{key}`, plus `extra` settings.
fn hub_with_uplink(dir: &Path, upstream: u16, extra: &str) -> Hub {
    Hub::start_with_config(
        dir,
        &format!(
            "[[uplink]]\nname = \"cloud\"\nkind = \"mqtt\"\ntopics = [\"sensors\"]\nhost = \"127.0.0.1\"\nport = {upstream}\n\
             remote_topic = \"site-7/data/{{key}}\"\nack_timeout_secs = 2\nmax_backoff_secs = 1\n{extra}"
        ),
    )
}

/// Produces records with values `values` for each of `keys` keys (`dev0`,
/// …) over the native protocol.
fn produce(hub: &Hub, keys: usize, values: std::ops::Range<usize>) {
    let mut lines = String::new();
    for i in values {
        for k in 0..keys {
            lines.push_str(&format!("dev{k},{i}\n"));
        }
    }
    let (ok, _, err) = hub.cli(&["produce", "sensors", "--key-separator", ","], Some(&lines));
    assert!(ok, "produce failed: {err}");
}

/// `cairn uplink describe cloud --output json`.
fn describe(hub: &Hub) -> serde_json::Value {
    hub.uplink("cloud")
}

/// [`describe`] once `ready` holds (within 10 s).
fn describe_when(hub: &Hub, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    hub.uplink_when("cloud", Duration::from_secs(10), ready)
}

fn create_sensors(hub: &Hub) {
    let (ok, _, err) = hub.cli(&["topic", "create", "sensors", "--partitions", "2"], None);
    assert!(ok, "{err}");
}

fn expected(keys: usize, per_key: usize) -> BTreeMap<String, usize> {
    (0..keys).map(|k| (format!("site-7/data/dev{k}"), per_key)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_mqtt_records_go_upstream_in_order_and_commands_come_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(dir.path(), port);
    let received = upstream_reader(port, "site-7/data/#").await;
    let toml = "subscribe = [\"site-7/cmd/#\"]\nlocal_topic = \"cmd/{topic}\"\n";
    let hub = hub_with_uplink(dir.path(), port, toml);
    create_sensors(&hub);
    produce(&hub, 4, 0..50);

    // Over MQTT into the hub: Cairn topic `sensors`, key = the MQTT topic.
    let hub_mqtt = hub.mqtt_addr.clone().unwrap();
    let (host, hub_port) = hub_mqtt.rsplit_once(':').unwrap();
    let options = MqttOptions::new("device-1", host, hub_port.parse().unwrap());
    let (device, mut device_loop) = AsyncClient::new(options, 100);
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < 50 {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = device_loop.poll().await {
                acked += 1;
            }
        }
    });
    for i in 0..50 {
        device.publish("sensors/t1", QoS::AtLeastOnce, false, i.to_string()).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), acks).await.expect("PUBACKs from the hub").unwrap();

    wait_distinct(&received, 250, Duration::from_secs(20)).await;
    let mut want = expected(4, 50);
    want.insert("site-7/data/sensors/t1".into(), 50);
    let duplicates = assert_in_order(&received, &want);
    assert_eq!(duplicates, 0, "no failure, so no message is sent twice");
    // The upstream's reader may see the last run before its PUBACKs are back,
    // and the uplink commits a run just after counting it sent (the backlog
    // is what is not committed).
    let status = describe_when(&hub, |s| s["records_sent"] == 250 && s["backlog_records"] == 0);
    assert_eq!(status["state"], "connected");
    assert_eq!(status["backlog_records"], 0);
    assert_eq!(status["oldest_unsent_age_ms"], serde_json::Value::Null);
    let (ok, out, err) = hub.cli(&["metrics", "--output", "json"], None);
    assert!(ok, "{err}");
    let metrics: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(metrics["uplink.cloud.records_sent"], 250, "{metrics}");
    assert_eq!(
        (metrics["uplink.cloud.connected"].as_u64(), metrics["uplink.cloud.backlog_records"].as_u64()),
        (Some(1), Some(0))
    );

    // Paused, records wait in the log; resumed, they go.
    let (ok, _, err) = hub.cli(&["uplink", "pause", "cloud"], None);
    assert!(ok, "{err}");
    produce(&hub, 4, 50..60);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(received.lock().unwrap().len(), 250, "a paused uplink sent");
    let status = describe(&hub);
    assert_eq!((status["state"].as_str(), status["backlog_records"].as_u64()), (Some("paused"), Some(40)));
    let (ok, _, err) = hub.cli(&["uplink", "resume", "cloud"], None);
    assert!(ok, "{err}");
    wait_distinct(&received, 290, Duration::from_secs(20)).await;
    let (ok, _, err) = hub.cli(&["uplink", "pause", "nope"], None);
    assert!(!ok && err.contains("no uplink is named 'nope'"), "{err}");

    // A command published upstream reaches a local MQTT subscriber, and the log.
    let local = Command::new("mosquitto_sub")
        .args(["-h", host, "-p", hub_port, "-t", "cmd/#", "-q", "1", "-v", "-C", "1", "-W", "15"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // mosquitto_sub subscribed
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "site-7/cmd/valve", "-m", "open", "-q", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = local.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cmd/site-7/cmd/valve open");
    let (ok, out, err) = hub.cli(&["consume", "cmd", "--from-beginning", "--max", "1"], None);
    assert!(ok && out.contains("open"), "{out} {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_outage_loses_nothing_and_drains_without_a_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mosquitto = Mosquitto::start(dir.path(), port);
    let received = upstream_reader(port, "site-7/data/#").await;
    let hub = hub_with_uplink(dir.path(), port, "");
    create_sensors(&hub);
    produce(&hub, 2, 0..100);
    wait_distinct(&received, 200, Duration::from_secs(20)).await;
    // The reader may see the last run before the uplink has its PUBACKs and
    // commits it: until then that run counts in the backlog (CI once saw
    // 3,007 below), and would be sent again after the outage.
    describe_when(&hub, |s| s["records_sent"] == 200 && s["backlog_records"] == 0);

    // The broker goes away; records keep arriving at the hub, and wait there.
    mosquitto.stop();
    produce(&hub, 2, 100..1100);
    produce(&hub, 2, 1100..1600);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let status = describe(&hub);
    assert_eq!(status["state"], "backing off");
    assert_eq!(status["backlog_records"], 3000);
    assert!(status["oldest_unsent_age_ms"].as_i64().unwrap() >= 29_000, "{status}");
    assert!(status["last_error"].as_str().unwrap().contains("cannot connect"), "{status}");
    mosquitto.restart();
    // Nothing new is produced: the backlog drains by itself.
    wait_distinct(&received, 3200, Duration::from_secs(60)).await;
    let duplicates = assert_in_order(&received, &expected(2, 1600));
    println!("outage of 30 s: 3,000 records forwarded after the broker came back, {duplicates} duplicates");
}

/// Slow enough (about 4 s for 6,000 records) that a fault lands mid-drain.
const SLOW: &str = "batch_records = 100\nmax_bytes_per_sec = 6000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_cut_mid_backlog_is_detected_by_timeout_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(dir.path(), port);
    let received = upstream_reader(port, "site-7/data/#").await;
    let proxy = Proxy::start(0, port).await;
    let hub = hub_with_uplink(dir.path(), proxy.port, SLOW);
    create_sensors(&hub);
    produce(&hub, 2, 0..3000);
    wait_distinct(&received, 1500, Duration::from_secs(30)).await;
    proxy.cut_silently();
    let cut_at = received.lock().unwrap().len();
    wait_distinct(&received, 6000, Duration::from_secs(60)).await;
    let duplicates = assert_in_order(&received, &expected(2, 3000));
    let log = hub.log.lock().unwrap().join("\n");
    assert!(
        log.contains("no acknowledgement from the upstream"),
        "the cut was not detected by the ack timeout:\n{log}"
    );
    // Two runs of 100 may be in flight (one sent, the one before it committing).
    assert!(duplicates <= 200, "{duplicates} duplicates: more than two runs of 100 were resent");
    println!("silent cut after {cut_at} messages: all 6,000 arrived, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_forward_resumes_from_its_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(dir.path(), port);
    let received = upstream_reader(port, "site-7/data/#").await;
    let mut hub = hub_with_uplink(dir.path(), port, SLOW);
    create_sensors(&hub);
    produce(&hub, 2, 0..3000);
    wait_distinct(&received, 1500, Duration::from_secs(30)).await;
    hub.kill9();
    let killed_at = received.lock().unwrap().len();
    assert!(killed_at < 6000, "the drain finished before the kill");
    let hub = hub_with_uplink(dir.path(), port, SLOW);
    wait_distinct(&received, 6000, Duration::from_secs(60)).await;
    let duplicates = assert_in_order(&received, &expected(2, 3000));
    let logged = hub.startup_log.iter().chain(hub.log.lock().unwrap().iter()).any(|l| l.contains("uplink resumes"));
    assert!(logged, "the restart did not say it may resend");
    // Two runs of 100 may be in flight (one sent, the one before it committing).
    assert!(duplicates <= 200, "{duplicates} duplicates: more than two runs of 100 were resent");
    println!("kill -9 after {killed_at} messages: all 6,000 arrived, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_upstream_is_checked_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "upstream");
    let (cert, key) = ca.issue("mosquitto", "127.0.0.1", &["127.0.0.1"], false);
    let port = free_port();
    let tls = format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
    let _mosquitto = Mosquitto::start_with(dir.path(), port, &tls);
    let ca_file = ca.ca_file().display().to_string();
    let reader = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", &ca_file])
        .args(["-t", "site-7/data/#", "-q", "1", "-v", "-C", "20", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // subscribed
    let hub = hub_with_uplink(dir.path(), port, &format!("tls_ca_file = \"{ca_file}\"\n"));
    create_sensors(&hub);
    produce(&hub, 2, 0..10);
    let out = reader.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 20, "over TLS: {lines:?}");
    for k in 0..2 {
        let values: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix(&format!("site-7/data/dev{k} "))).collect();
        assert_eq!(values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    // Another CA: the upstream's certificate is refused, and the uplink says why.
    let other = Ca::new(dir.path(), "other");
    let settings = format!(
        "name = \"wrong-ca\"\nkind = \"mqtt\"\ntopics = [\"sensors\"]\nhost = \"127.0.0.1\"\nport = {port}\n\
         tls_ca_file = \"{}\"\nmax_backoff_secs = 1\n",
        other.ca_file().display()
    );
    let (ok, out, err) = hub.cli(&["uplink", "add", "-"], Some(&settings));
    assert!(ok && out.contains("uplink wrong-ca added"), "{out} {err}");
    let status = hub.uplink_when("wrong-ca", Duration::from_secs(15), |s| s["last_error"].is_string());
    let error = status["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate") || error.contains("issuer"), "{status}");
    assert_eq!(status["records_sent"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplinks_added_at_runtime_survive_a_restart_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(dir.path(), port);
    let received = upstream_reader(port, "site-7/alarms/#").await;
    let mut hub = hub_with_uplink(dir.path(), port, "");
    let (ok, _, err) = hub.cli(&["topic", "create", "alarms"], None);
    assert!(ok, "{err}");
    let settings = format!(
        "[[uplink]]\nname = \"alarms\"\nkind = \"mqtt\"\ntopics = [\"alarms\"]\nhost = \"127.0.0.1\"\n\
         port = {port}\nremote_topic = \"site-7/alarms/{{key}}\"\n"
    );
    let file = dir.path().join("alarms.toml");
    std::fs::write(&file, &settings).unwrap();
    let (ok, out, err) = hub.cli(&["uplink", "add", file.to_str().unwrap()], None);
    assert!(ok && out.contains("uplink alarms added (mqtt to 127.0.0.1:"), "{out} {err}");
    let (ok, _, err) = hub.cli(&["uplink", "add", file.to_str().unwrap()], None);
    assert!(!ok && err.contains("an uplink named 'alarms' exists already"), "{err}");
    let (ok, _, err) =
        hub.cli(&["uplink", "add", "-"], Some("name = \"x\"\nkind = \"amqp\"\nhost = \"h\"\ntopics = [\"t\"]\n"));
    assert!(!ok && err.contains("kind 'amqp' is not supported"), "{err}");

    let alarm = |hub: &Hub, values: std::ops::Range<usize>| {
        let lines: String = values.map(|i| format!("door,{i}\n")).collect();
        let (ok, _, err) = hub.cli(&["produce", "alarms", "--key-separator", ","], Some(&lines));
        assert!(ok, "{err}");
    };
    alarm(&hub, 0..10);
    wait_distinct(&received, 10, Duration::from_secs(20)).await;

    // Kept across a restart of the hub.
    assert!(hub.terminate(), "the hub did not stop cleanly");
    let hub = hub_with_uplink(dir.path(), port, "");
    let (ok, out, err) = hub.cli(&["uplink", "list"], None);
    assert!(ok && out.contains("cloud\tmqtt") && out.contains("alarms\tmqtt"), "{out} {err}");
    alarm(&hub, 10..20);
    wait_distinct(&received, 20, Duration::from_secs(20)).await;

    // Removed, it sends no more; the config file's cannot be removed at runtime.
    let (ok, _, err) = hub.cli(&["uplink", "remove", "cloud"], None);
    assert!(!ok && err.contains("declared in the config file"), "{err}");
    let (ok, out, err) = hub.cli(&["uplink", "remove", "alarms"], None);
    assert!(ok && out.contains("uplink alarms removed"), "{out} {err}");
    alarm(&hub, 20..25);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut want = BTreeMap::new();
    want.insert("site-7/alarms/door".to_string(), 20);
    assert_eq!(assert_in_order(&received, &want), 0);
    let (ok, out, _) = hub.cli(&["uplink", "list"], None);
    assert!(ok && !out.contains("alarms"), "{out}");
}

/// With `hold_retention`, retention keeps what the uplink has not sent: the
/// upstream is unreachable, the topic keeps 1 s, and nothing goes, while a
/// topic no uplink reads loses its records as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uplink_holding_retention_keeps_what_it_has_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = free_port();
    let hub = Hub::start_with_config(
        dir.path(),
        &format!(
            "[log]\nretention_check_secs = 1\n\n[[uplink]]\nname = \"cloud\"\nkind = \"mqtt\"\ntopics = [\"sensors\"]\n\
             host = \"127.0.0.1\"\nport = {unreachable}\nhold_retention = true\nmax_backoff_secs = 1\n"
        ),
    );
    for topic in ["sensors", "other"] {
        let (ok, _, err) = hub.cli(&["topic", "create", topic, "--retention-ms", "1000"], None);
        assert!(ok, "{err}");
        let (ok, _, err) = hub.cli(&["produce", topic, "--key-separator", ","], Some("dev0,1\ndev0,2\ndev0,3\n"));
        assert!(ok, "{err}");
    }
    let start_of = |topic: &str| {
        let (ok, out, err) = hub.cli(&["topic", "describe", topic], None);
        assert!(ok, "{err}");
        out.lines()
            .find(|l| l.contains("partition 0"))
            .and_then(|l| l.split("start=").nth(1))
            .map(|s| s.split_whitespace().next().unwrap().to_string())
    };
    let started = Instant::now();
    while start_of("other").as_deref() != Some("3") {
        assert!(started.elapsed() < Duration::from_secs(15), "retention never ran on `other`");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(start_of("sensors").as_deref(), Some("0"), "the uplink's unsent records were deleted");
    let status = describe(&hub);
    assert_eq!(status["backlog_records"], 3, "{status}");
    let log = hub.log.lock().unwrap().join("\n");
    assert!(log.contains("partitions_held: 1"), "{log}");
}

/// A derived topic goes up instead of the raw one: a plugin (the threshold
/// example, built by scripts/build-plugins.sh) keeps readings of 30 and over
/// in `alerts`, and only those leave the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_topic_is_forwarded_filtered_by_its_plugin() {
    let plugin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-unknown-unknown/release/cairn_plugin_threshold.wasm");
    assert!(plugin.exists(), "{} is missing: run scripts/build-plugins.sh first", plugin.display());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _mosquitto = Mosquitto::start(dir.path(), port);
    let received = upstream_reader(port, "site-7/alerts/#").await;
    let hub = hub_with_uplink(dir.path(), port, "");
    let (ok, _, err) = hub.cli(&["plugin", "upload", plugin.to_str().unwrap(), "--name", "threshold"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["topic", "create", "readings"], None);
    assert!(ok, "{err}");
    let attach = ["plugin", "attach", "readings", "threshold", "--derived-to", "alerts", "--params", "min=30"];
    let (ok, _, err) = hub.cli(&attach, None);
    assert!(ok, "{err}");
    let settings = format!(
        "name = \"alerts\"\nkind = \"mqtt\"\ntopics = [\"alerts\"]\nhost = \"127.0.0.1\"\nport = {port}\n\
         remote_topic = \"site-7/alerts/{{key}}\"\n"
    );
    let (ok, _, err) = hub.cli(&["uplink", "add", "-"], Some(&settings));
    assert!(ok, "{err}");
    let (ok, _, err) =
        hub.cli(&["produce", "readings", "--key-separator", ","], Some("boiler,12\nboiler,35\nboiler,20\nboiler,41\n"));
    assert!(ok, "{err}");
    wait_distinct(&received, 2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            ("site-7/alerts/boiler".to_string(), "35".to_string()),
            ("site-7/alerts/boiler".to_string(), "41".to_string())
        ]
    );
}
