//! The operator's view end to end: the real `cairn serve`, its HTTP
//! listener scraped as Prometheus would (the exposition parsed by the
//! Prometheus project's own parser, tests/prom_parse.py), its health
//! endpoints, its access control, and `$SYS` topics read by
//! `mosquitto_sub`. The status page in a real browser is in
//! tests/console_browser.rs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::http::{get, must, scrape, value, Sample};
use common::Hub;

fn produce(hub: &Hub, topic: &str, lines: &[String]) {
    let input = lines.join("\n") + "\n";
    let (ok, _, err) = hub.cli(&["produce", topic, "--key-separator", ":"], Some(&input));
    assert!(ok, "{err}");
}

fn mqtt_publish(hub: &Hub, topic: &str, count: usize) {
    let port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap().to_string();
    for i in 0..count {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", topic, "-m", &format!("m{i}")])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn metrics_move_by_exactly_what_was_produced_and_idle_groups_show_their_lag() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    assert!(hub.cli(&["topic", "create", "readings", "--partitions", "2"], None).0);
    let before = scrape(&hub, None);
    assert_eq!(must(&before, "cairn_ready", &[]), 1.0);
    let appended_before = must(&before, "cairn_log_appended_records_total", &[]);
    let mqtt_in_before = must(&before, "cairn_mqtt_received_messages_total", &[]);

    // 30 records with keys over two partitions, natively; 7 MQTT messages
    // to another topic.
    let lines: Vec<String> = (0..30).map(|i| format!("k{}:v{i}", i % 5)).collect();
    produce(&hub, "readings", &lines);
    mqtt_publish(&hub, "plant/line1", 7);
    // A group reads 12 records and leaves: idle, its lag must still be
    // shown.
    let (ok, _, err) = hub.cli(&["consume", "readings", "--group", "audit", "--from-beginning", "--max", "12"], None);
    assert!(ok, "{err}");

    let after = scrape(&hub, None);
    let records =
        |s: &[Sample], p: &str| value(s, "cairn_partition_records_total", &[("topic", "readings"), ("partition", p)]);
    let produced = records(&after, "0").unwrap() + records(&after, "1").unwrap();
    assert_eq!(produced, 30.0);
    assert_eq!(records(&before, "0").unwrap_or(0.0) + records(&before, "1").unwrap_or(0.0), 0.0);
    assert_eq!(must(&after, "cairn_partition_records_total", &[("topic", "plant"), ("partition", "0")]), 7.0);
    assert_eq!(must(&after, "cairn_log_appended_records_total", &[]) - appended_before, 37.0);
    assert_eq!(must(&after, "cairn_mqtt_received_messages_total", &[]) - mqtt_in_before, 7.0);
    let stored = must(&after, "cairn_partition_stored_bytes", &[("topic", "readings"), ("partition", "0")]);
    assert!(stored > 0.0);
    // Bytes in per partition add up to the hub's total.
    let per_partition: f64 = after
        .iter()
        .filter(|s| s.name == "cairn_partition_appended_bytes_total")
        .filter_map(|s| s.value.as_f64())
        .sum();
    assert_eq!(per_partition, must(&after, "cairn_log_appended_bytes_total", &[]));
    assert!(must(&after, "cairn_partition_appended_bytes_total", &[("topic", "readings"), ("partition", "1")]) > 0.0);

    // The idle group's lag per partition is what `cairn group describe` says.
    let (ok, out, err) = hub.cli(&["group", "describe", "audit", "--output", "json"], None);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(described["members"].as_array().unwrap().is_empty(), "the group is idle: {described}");
    let mut total = 0.0;
    for p in described["partitions"].as_array().unwrap() {
        let partition = p["partition"].as_u64().unwrap().to_string();
        let labels = [("group", "audit"), ("topic", "readings"), ("partition", partition.as_str())];
        let lag = must(&after, "cairn_group_lag_records", &labels);
        assert_eq!(lag, p["lag"].as_f64().unwrap(), "partition {partition}");
        total += lag;
    }
    assert_eq!(total, 18.0, "30 produced, 12 consumed");
    assert_eq!(must(&after, "cairn_group_members", &[("group", "audit")]), 0.0);

    // Commit times are a histogram whose +Inf bucket counts every commit.
    let count = must(&after, "cairn_log_commit_seconds_count", &[]);
    assert!(count >= 3.0);
    assert_eq!(must(&after, "cairn_log_commit_seconds_bucket", &[("le", "+Inf")]), count);
    // The process and its disk.
    assert!(must(&after, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(must(&after, "cairn_disk_free_bytes", &[]) > 0.0);
    assert!(must(&after, "process_open_fds", &[]) > 3.0);

    // A persistent MQTT session whose client went away: what is published
    // meanwhile waits for it, and shows as queued.
    let port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap().to_string();
    let away = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-c", "-i", "away-1", "-q", "1", "-t", "plant/#", "-W", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&away.stdout).is_empty(), "nothing was published yet");
    mqtt_publish(&hub, "plant/line3", 4);
    let later = scrape(&hub, None);
    assert_eq!(must(&later, "cairn_mqtt_sessions_stored", &[]), 1.0);
    assert_eq!(must(&later, "cairn_mqtt_queued_messages", &[]), 4.0);
    assert_eq!(must(&later, "cairn_mqtt_connections", &[]), 0.0);

    // Every metric the Grafana dashboard in docs/ queries is one the hub
    // exposes.
    let dashboard =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/cairn-dashboard.json")).unwrap();
    let families: std::collections::BTreeSet<&str> = after.iter().map(|s| s.family.as_str()).collect();
    let mut queried = 0;
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !(word.starts_with("cairn_") || word.starts_with("process_")) {
            continue;
        }
        let family = ["_total", "_bucket", "_count", "_sum", "_info"]
            .iter()
            .find_map(|suffix| word.strip_suffix(suffix).filter(|f| families.contains(f)))
            .unwrap_or(word);
        assert!(families.contains(family), "the dashboard queries {word}, which /metrics does not have");
        queried += 1;
    }
    assert!(queried > 20, "the dashboard queries the hub's metrics");
}

#[test]
fn health_endpoints_answer_and_the_page_needs_an_admin_key_once_keys_exist() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    assert_eq!(get(&hub, "/healthz", None), (200, "ok\n".to_string()));
    assert_eq!(get(&hub, "/readyz", None), (200, "ready\n".to_string()));
    let (status, page) = get(&hub, "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>") && page.len() < 200 * 1024, "the page is small: {} bytes", page.len());
    // Nothing loaded from outside (a gateway is often offline): no remote
    // scripts, styles, images or fonts.
    for remote in ["src=\"http", "href=\"http", "url(http", "@import", "src=\"//", "href=\"//"] {
        assert!(!page.contains(remote), "the page loads {remote}… from outside");
    }
    drop(hub);

    // With an API key, everything but the health endpoints needs an admin key.
    let (key, secret) = common::auth_init(dir.path());
    let (key, secret) = (key.as_str(), secret.as_str());
    let hub = Hub::start(dir.path(), &[]);
    assert_eq!(get(&hub, "/healthz", None).0, 200);
    assert_eq!(get(&hub, "/readyz", None).0, 200);
    for path in ["/metrics", "/", "/api/overview", "/api/tail?topic=x"] {
        assert_eq!(get(&hub, path, None).0, 401, "{path} without a key");
    }
    let basic =
        |k: &str, s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{k}:{s}")));
    assert_eq!(get(&hub, "/metrics", Some(&basic(key, "wrong"))).0, 401);
    let samples = scrape(&hub, Some(&basic(key, secret)));
    assert_eq!(must(&samples, "cairn_ready", &[]), 1.0);
    // Prometheus' `authorization` setting: a bearer token `key:secret`.
    assert_eq!(get(&hub, "/api/overview", Some(&format!("Bearer {key}:{secret}"))).0, 200);

    // A key that is not an admin's may not look.
    let env = [("CAIRN_API_KEY", key), ("CAIRN_API_SECRET", secret)];
    let (ok, out, err) =
        hub.cli_env(&env, &["auth", "key", "create", "--principal", "sensor", "--output", "json"], None);
    assert!(ok, "{err}");
    let device: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (dkey, dsecret) = (device["key"].as_str().unwrap(), device["secret"].as_str().unwrap());
    assert_eq!(get(&hub, "/metrics", Some(&basic(dkey, dsecret))).0, 403);
}

#[test]
fn sys_topics_reach_mosquitto_sub_and_follow_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nsys_interval_secs = 1\n");
    let port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap().to_string();
    let sub = |filter: &str, count: &str| {
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-t", filter, "-v", "-C", count, "-W", "10"])
            .output()
            .unwrap()
    };
    // The command: five messages of broker statistics.
    let out = sub("$SYS/#", "5");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().all(|l| l.starts_with("$SYS/broker/")), "{text}");
    assert!(text.contains("$SYS/broker/version cairn "), "{text}");

    // The values follow the hub: messages received count what was
    // published (one round a second).
    mqtt_publish(&hub, "plant/line1", 3);
    let started = Instant::now();
    loop {
        let out = sub("$SYS/broker/messages/received", "2");
        let text = String::from_utf8(out.stdout).unwrap();
        let last = text.lines().last().and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<u64>().ok());
        if last == Some(3) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "messages/received never showed 3: {text}");
    }

    // A leading wildcard does not match `$SYS` (MQTT-4.7.2-1): `#` gets
    // the live message only.
    let all = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "#", "-v", "-C", "1", "-W", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    mqtt_publish(&hub, "plant/line2", 1);
    let out = all.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "plant/line2 m0");
}
