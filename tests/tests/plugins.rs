//! WebAssembly plugins end to end: the example plugins (built from source
//! by scripts/build-plugins.sh) uploaded to a real `cairn serve` and attached
//! on ingest and as derived topics; hostile modules contained; derived
//! topics exactly once across `kill -9`; hot swap under load; backfill.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_client::{AttachFrom, AttachSpec, AttachmentInfo, Client};
use cairn_proto::frame::{Acks, ErrorCode, TopicSettings};
use cairn_proto::{BatchView, BatchWriter};
use common::Hub;

fn example(crate_name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-unknown-unknown/release")
        .join(format!("{crate_name}.wasm"));
    assert!(path.exists(), "{} is missing: run scripts/build-plugins.sh first", path.display());
    path
}

/// One stored record, as a test compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    key: Option<String>,
    value: String,
    headers: Vec<(String, String)>,
}

fn batch_of(values: &[&str], key: Option<&str>) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for v in values {
        w.push_parts(key.map(str::as_bytes), v.as_bytes(), 1_700_000_000_000, std::iter::empty()).unwrap();
    }
    w.finish().unwrap()
}

async fn create(client: &Client, topic: &str, partitions: u32) {
    client.create_topic(topic, TopicSettings { partitions: Some(partitions), ..Default::default() }).await.unwrap();
}

async fn produce(client: &Client, topic: &str, partition: Option<u32>, values: &[&str]) -> cairn_client::Produced {
    client.produce(topic, partition, &batch_of(values, None), Acks::Durable).await.unwrap().unwrap()
}

/// Every record of every partition of `topic`, per partition, in order.
async fn read_topic(client: &Client, topic: &str) -> Vec<Vec<Rec>> {
    let info = client.describe_topic(topic).await.unwrap();
    let mut out = Vec::new();
    for p in &info.partitions {
        let mut records = Vec::new();
        let mut offset = p.start_offset;
        while offset < p.end_offset {
            let fetch = client.fetch(topic, p.partition, offset, 1 << 20, Duration::ZERO).await.unwrap();
            for batch in &fetch.batches {
                for r in BatchView::parse(batch).unwrap().records().filter(|r| r.offset >= offset) {
                    records.push(Rec {
                        key: r.key.map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: String::from_utf8_lossy(r.value).into_owned(),
                        headers: r
                            .headers
                            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                            .collect(),
                    });
                }
            }
            offset = fetch.next_offset();
        }
        out.push(records);
    }
    out
}

async fn values(client: &Client, topic: &str) -> Vec<String> {
    read_topic(client, topic).await.into_iter().flatten().map(|r| r.value).collect()
}

/// Waits until `f` holds (derived topics work in the background).
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spec<'a>(topic: &'a str, plugin: &'a str, params: Vec<(&'a str, &'a str)>) -> AttachSpec<'a> {
    AttachSpec {
        name: None,
        topic,
        plugin,
        version: None,
        params,
        derived_to: None,
        from: None,
        fuel_per_batch: None,
        memory_bytes: None,
        max_failures: None,
    }
}

async fn attachment(client: &Client, plugin: &str, name: &str) -> AttachmentInfo {
    let info = client.describe_plugin(plugin).await.unwrap();
    info.attachments.into_iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no attachment {name}"))
}

/// A derived attachment has processed everything its source holds.
async fn caught_up(client: &Client, plugin: &str, name: &str, source: &str) -> bool {
    let a = attachment(client, plugin, name).await;
    let info = client.describe_topic(source).await.unwrap();
    info.partitions.iter().all(|p| a.position.iter().any(|&(q, o)| q == p.partition && o >= p.end_offset))
}

fn c2f(celsius: f64) -> String {
    format!("{:.1}", celsius * 9.0 / 5.0 + 32.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_filter_convert_route_and_reformat_through_the_cli_and_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    for (file, name) in [
        ("cairn_plugin_threshold", "threshold"),
        ("cairn_plugin_celsius_to_fahrenheit", "c2f"),
        ("cairn_plugin_alert_router", "alert-router"),
        ("cairn_plugin_cbor_to_json", "cbor-to-json"),
    ] {
        let (ok, out, err) = hub.cli(&["plugin", "upload", example(file).to_str().unwrap(), "--name", name], None);
        assert!(ok, "upload {name}: {err}");
        assert!(out.contains(&format!("uploaded {name}@1")), "{out}");
    }
    // Uploading the same bytes again is version 2, compiled once.
    let (ok, out, _) = hub
        .cli(&["plugin", "upload", example("cairn_plugin_threshold").to_str().unwrap(), "--name", "threshold"], None);
    assert!(ok && out.contains("threshold@2") && out.contains("already compiled"), "{out}");

    for (topic, partitions) in [("temps", "1"), ("celsius", "2"), ("readings", "1"), ("raw", "1")] {
        let (ok, _, err) = hub.cli(&["topic", "create", topic, "--partitions", partitions], None);
        assert!(ok, "{err}");
    }
    // Threshold on ingest: only readings at or above 20 are stored.
    let (ok, out, err) = hub.cli(&["plugin", "attach", "temps", "threshold@1", "--params", "min=20"], None);
    assert!(ok, "{err}");
    assert!(out.contains("temps.threshold = threshold@1 on temps (ingest) [min=20] running"), "{out}");
    let lines = ["19.5", "25", "12", "30.5"];
    let (ok, out, err) = hub.cli(&["produce", "temps", "--output", "json"], Some(&(lines.join("\n") + "\n")));
    assert!(ok, "{err}");
    // Every offset `produce` reports holds that line: none is made up for
    // a batch the plugin kept only some of.
    let client = Client::connect(&hub.addr).await.unwrap();
    let stored = client.fetch("temps", 0, 0, 1 << 20, Duration::ZERO).await.unwrap();
    let stored: Vec<(u64, Vec<u8>)> = stored.records().map(|r| (r.offset, r.value.to_vec())).collect();
    for ack in out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()) {
        let line = lines[ack["line"].as_u64().unwrap() as usize - 1];
        if let Some(offset) = ack["offset"].as_u64() {
            assert!(stored.contains(&(offset, line.as_bytes().to_vec())), "{ack} but stored {stored:?}");
        }
    }
    // Celsius → Fahrenheit as a derived topic, from the beginning.
    produce(&client, "celsius", Some(0), &["100", "-40"]).await;
    produce(&client, "celsius", Some(1), &["21.5"]).await;
    let (ok, _, err) = hub.cli(&["plugin", "attach", "celsius", "c2f", "--derived-to", "fahrenheit"], None);
    assert!(ok, "{err}");
    produce(&client, "celsius", Some(1), &["0"]).await;
    // Alert router on ingest: everything kept, readings over 30 also to `alerts`.
    let (ok, _, err) = hub.cli(&["plugin", "attach", "readings", "alert-router", "-p", "limit=30"], None);
    assert!(ok, "{err}");
    produce(&client, "readings", None, &["29", "31", "45.5"]).await;
    // CBOR → JSON as a derived topic.
    let (ok, _, err) = hub.cli(&["plugin", "attach", "raw", "cbor-to-json", "--derived-to", "json"], None);
    assert!(ok, "{err}");
    let cbor = serde_json::json!({"t": 21.5, "id": "room-1"});
    let cbor = serde_cbor_value(&cbor);
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    w.push_parts(Some(b"room-1"), &cbor, 1, std::iter::empty()).unwrap();
    client.produce("raw", None, &w.finish().unwrap(), Acks::Durable).await.unwrap();

    // An MQTT publisher goes through the same ingest filter.
    let mqtt = hub.mqtt_addr.clone().unwrap();
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    for reading in ["5", "22"] {
        let status = std::process::Command::new("mosquitto_pub")
            .args(["-h", host, "-p", port, "-t", "temps/room-2", "-m", reading, "-q", "1"])
            .status()
            .expect("mosquitto_pub (installed by scripts/test.sh)");
        assert!(status.success());
    }

    assert_eq!(values(&client, "temps").await, ["25", "30.5", "22"]);
    eventually("fahrenheit derived", Duration::from_secs(20), || async {
        client
            .describe_topic("fahrenheit")
            .await
            .is_ok_and(|t| t.partitions.iter().map(|p| p.end_offset).sum::<u64>() == 4)
    })
    .await;
    let f = read_topic(&client, "fahrenheit").await;
    let f: Vec<Vec<&str>> = f.iter().map(|p| p.iter().map(|r| r.value.as_str()).collect()).collect();
    assert_eq!(f, vec![vec!["212.0", "-40.0"], vec!["70.7", "32.0"]]);
    assert_eq!(values(&client, "readings").await, ["29", "31", "45.5"]);
    assert_eq!(values(&client, "alerts").await, ["31", "45.5"]);
    eventually("json derived", Duration::from_secs(20), || async {
        client.describe_topic("json").await.is_ok_and(|t| t.partitions[0].end_offset == 1)
    })
    .await;
    let json: serde_json::Value = serde_json::from_str(&values(&client, "json").await[0]).unwrap();
    assert_eq!(json, serde_json::json!({"t": 21.5, "id": "room-1"}));

    // Counters and status through `describe`.
    let (ok, out, _) = hub.cli(&["plugin", "describe", "threshold", "--output", "json"], None);
    assert!(ok);
    let described: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let a = &described["attachments"][0];
    assert_eq!((a["records_in"].as_u64(), a["records_out"].as_u64()), (Some(6), Some(3)), "{a}");
    assert_eq!(a["records_dropped"].as_u64(), Some(3));
    assert_eq!(described["versions"].as_array().unwrap().len(), 2);

    // A dry run shows what a plugin would do, writing nothing.
    let before = values(&client, "readings").await;
    let (ok, out, err) =
        hub.cli(&["plugin", "dry-run", "threshold", "--topic", "readings", "--last", "2", "-p", "min=40"], None);
    assert!(ok, "{err}");
    assert!(out.contains("(kept)\t-\t45.5") && out.contains("2 records in, 1 out"), "{out}");
    assert!(!out.contains("\t31"), "{out}");
    assert_eq!(values(&client, "readings").await, before);

    // Errors name what is wrong.
    let (ok, _, err) = hub.cli(&["plugin", "attach", "temps", "nope"], None);
    assert!(!ok && err.contains("no plugin named 'nope'"), "{err}");
    let (ok, _, err) = hub.cli(&["plugin", "attach", "temps", "threshold@9"], None);
    assert!(!ok && err.contains("no version 9"), "{err}");
    let (ok, _, err) = hub.cli(&["plugin", "attach", "temps", "threshold", "--name", "t2"], None);
    assert!(!ok && err.contains("refused its parameters") && err.contains("min"), "{err}");
    let (ok, _, err) = hub.cli(&["plugin", "attach", "missing-topic", "threshold", "-p", "min=1"], None);
    assert!(!ok && err.contains("missing-topic"), "{err}");

    // Detached: records are stored as sent again.
    let (ok, _, err) = hub.cli(&["plugin", "detach", "temps.threshold"], None);
    assert!(ok, "{err}");
    produce(&client, "temps", None, &["1"]).await;
    assert_eq!(values(&client, "temps").await, ["25", "30.5", "22", "1"]);
}

/// A CBOR encoding of a JSON value (maps with text keys, numbers, text).
fn serde_cbor_value(v: &serde_json::Value) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, major: u8, n: u64) {
        if n < 24 {
            out.push(major << 5 | n as u8);
        } else {
            out.push(major << 5 | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(m) => {
            put(&mut out, 5, m.len() as u64);
            for (k, v) in m {
                put(&mut out, 3, k.len() as u64);
                out.extend_from_slice(k.as_bytes());
                out.extend(serde_cbor_value(v));
            }
        }
        serde_json::Value::String(s) => {
            put(&mut out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        serde_json::Value::Number(n) => {
            out.push(0xfb);
            out.extend_from_slice(&n.as_f64().unwrap().to_be_bytes());
        }
        other => panic!("not needed here: {other}"),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keeps_idempotent_retries_single_and_answers_dropped_batches() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    create(&client, "t", 1).await;
    let wasm = std::fs::read(example("cairn_plugin_threshold")).unwrap();
    client.upload_plugin("threshold", &wasm).await.unwrap();
    client.attach(spec("t", "threshold", vec![("min", "10")])).await.unwrap();

    let pid = client.allocate_producer_id().await.unwrap();
    let idempotent = |values: &[&str], seq: i32| {
        let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(pid, seq);
        for v in values {
            w.push_parts(None, v.as_bytes(), 1, std::iter::empty()).unwrap();
        }
        w.finish().unwrap()
    };
    let first = idempotent(&["5", "15", "25"], 0);
    let a = client.produce("t", None, &first, Acks::Durable).await.unwrap().unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate, a.not_stored), (0, 1, false, 1));
    // The same batch again (a retry after a lost answer): not stored twice.
    let again = client.produce("t", None, &first, Acks::Durable).await.unwrap().unwrap();
    assert!(again.duplicate);
    // A batch the filter drops entirely still advances the sequence.
    let dropped = client.produce("t", None, &idempotent(&["1", "2"], 3), Acks::Durable).await.unwrap().unwrap();
    assert_eq!((dropped.not_stored, dropped.base_offset), (2, 2));
    let next = client.produce("t", None, &idempotent(&["50"], 5), Acks::Durable).await.unwrap().unwrap();
    assert_eq!((next.base_offset, next.duplicate), (2, false));
    // Skipping sequence numbers is still refused.
    let err = client.produce("t", None, &idempotent(&["60"], 9), Acks::Durable).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SequenceGap));
    assert_eq!(values(&client, "t").await, ["15", "25", "50"]);
}

// ---- hostile plugins -------------------------------------------------------

/// A core module with Cairn's world embedded whose `process` is `body`.
fn hostile(body: &str, pages: u32) -> Vec<u8> {
    let text = format!(
        r#"(module
            (memory (export "memory") {pages})
            (global $heap (mut i32) (i32.const 65536))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                (local $p i32)
                (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
                (global.set $heap (i32.add (local.get $p) (local.get 3)))
                (local.get $p))
            (func (export "init") (param i32 i32) (result i32) (i32.const 0))
            (func (export "process") (param $ptr i32) (param $len i32) (result i32)
                {body})
        )"#
    );
    let mut module = wat::parse_str(&text).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let package =
        resolve.push_file(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/wit/cairn.wit")).unwrap();
    let world = resolve.select_world(&[package], Some("plugin")).unwrap();
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    module
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_dead_lettered_and_paused_while_other_topics_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();

    // Wrong exports: refused at upload, with the reason.
    let not_a_plugin = wat::parse_str(r#"(module (func (export "run")))"#).unwrap();
    let err = client.upload_plugin("wrong", &not_a_plugin).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPlugin), "{err}");
    assert!(err.to_string().contains("not a Cairn plugin"), "{err}");
    let err = client.upload_plugin("garbage", b"\0asm garbage").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPlugin), "{err}");

    // A good plugin on another topic, to show it is unaffected.
    client.upload_plugin("threshold", &std::fs::read(example("cairn_plugin_threshold")).unwrap()).await.unwrap();
    create(&client, "good", 1).await;
    client.attach(spec("good", "threshold", vec![("min", "0")])).await.unwrap();

    // Each hostile module on its own topic, with what it does.
    let huge_len = 24 << 20;
    let cases: Vec<(&str, String, u32, Option<u64>, &str)> = vec![
        ("loop", "(loop $l (br $l)) (i32.const 0)".into(), 2, None, "CPU budget"),
        (
            "grow",
            "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable".into(),
            2,
            None,
            "memory past the limit",
        ),
        ("trap", "unreachable".into(), 2, None, "trapped"),
        (
            "huge",
            format!(
                "(i32.store (i32.const 1028) (i32.const 2048))
                 (i32.store (i32.const 1032) (i32.const 1))
                 (i32.store (i32.const 2060) (i32.const 4096))
                 (i32.store (i32.const 2064) (i32.const {huge_len}))
                 (i32.const 1024)"
            ),
            (huge_len / 65536 + 2) as u32,
            Some(64),
            "over the limit",
        ),
    ];
    for (name, body, pages, memory_mb, _) in &cases {
        client.upload_plugin(name, &hostile(body, *pages)).await.unwrap();
        create(&client, name, 1).await;
        let mut s = spec(name, name, vec![]);
        s.fuel_per_batch = Some(20_000_000);
        s.memory_bytes = Some(memory_mb.unwrap_or(8) << 20);
        s.max_failures = Some(2);
        client.attach(s).await.unwrap();
    }
    for round in 0..3 {
        for (name, ..) in &cases {
            // Acknowledged: the records are not lost, they are dead-lettered.
            let r = produce(&client, name, None, &[&format!("{round}")]).await;
            assert_eq!(r.not_stored, 1, "{name}");
        }
        let r = produce(&client, "good", None, &[&format!("{round}")]).await;
        assert_eq!(r.not_stored, 0);
    }
    assert_eq!(values(&client, "good").await, ["0", "1", "2"]);
    for (name, _, _, _, reason) in &cases {
        assert!(values(&client, name).await.is_empty(), "{name} stored something");
        let dead = read_topic(&client, &format!("{name}.dlq")).await.concat();
        assert_eq!(dead.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(), ["0", "1", "2"], "{name}");
        let why = |r: &Rec, h: &str| r.headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.clone());
        assert!(why(&dead[0], "cairn.dlq.reason").unwrap().contains(reason), "{name}: {:?}", dead[0]);
        assert_eq!(why(&dead[0], "cairn.dlq.attachment").as_deref(), Some(format!("{name}.{name}").as_str()));
        // Paused after two failures in a row; the third went straight to the DLQ.
        let a = attachment(&client, name, &format!("{name}.{name}")).await;
        assert_eq!(a.status, "paused", "{name}: {a:?}");
        assert_eq!((a.failures, a.dead_lettered), (2, 3), "{name}");
        assert!(a.last_error.unwrap().contains(reason), "{name}");
    }
    // Prometheus sees the same, per attachment.
    let samples = common::http::scrape(&hub, None);
    for (name, ..) in &cases {
        let who = [("plugin", *name), ("attachment", &format!("{name}.{name}")[..]), ("topic", *name)];
        let at = |metric: &str| common::http::must(&samples, metric, &who);
        assert_eq!(at("cairn_plugin_paused"), 1.0, "{name}");
        assert_eq!(at("cairn_plugin_failures_total"), 2.0, "{name}");
        assert_eq!(at("cairn_plugin_dead_lettered_records_total"), 3.0, "{name}");
    }
    let good = [("plugin", "threshold"), ("attachment", "good.threshold"), ("topic", "good")];
    assert_eq!(common::http::must(&samples, "cairn_plugin_paused", &good), 0.0);
    assert_eq!(common::http::must(&samples, "cairn_plugin_in_records_total", &good), 3.0);
    assert_eq!(common::http::must(&samples, "cairn_plugin_out_records_total", &good), 3.0);
    // Attaching again (same name) resumes it: with a budget the loop cannot
    // escape, it fails again, counted.
    let mut s = spec("loop", "loop", vec![]);
    s.fuel_per_batch = Some(1_000_000);
    s.max_failures = Some(2);
    assert_eq!(client.attach(s).await.unwrap().status, "running");
    produce(&client, "loop", None, &["again"]).await;
    assert_eq!(attachment(&client, "loop", "loop.loop").await.failures, 3);
    assert_eq!(values(&client, "good").await, ["0", "1", "2"]);
    assert!(hub_alive(&client).await);
}

async fn hub_alive(client: &Client) -> bool {
    client.list_topics().await.is_ok()
}

// ---- derived topics ----------------------------------------------------------

/// Produces `count` records (values `first..first+count`) to `topic` in
/// batches of 10 until done or the hub goes away; returns how many were
/// acknowledged.
async fn produce_numbers(addr: String, topic: &'static str, first: u64, count: u64) -> u64 {
    let Ok(client) = Client::connect(&addr).await else { return 0 };
    let mut acked = 0;
    while acked < count {
        let values: Vec<String> = (first + acked..first + (acked + 10).min(count)).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        match client.produce(topic, None, &batch_of(&refs, None), Acks::Durable).await {
            Ok(_) => acked += refs.len() as u64,
            Err(_) => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_topic_outputs_are_exactly_once_across_kill_9_of_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    {
        let client = Client::connect(&hub.addr).await.unwrap();
        create(&client, "src", 2).await;
        client
            .upload_plugin("c2f", &std::fs::read(example("cairn_plugin_celsius_to_fahrenheit")).unwrap())
            .await
            .unwrap();
        let mut s = spec("src", "c2f", vec![]);
        s.derived_to = Some("out");
        client.attach(s).await.unwrap();
    }
    // Produce while the derived topic runs, and kill -9 the hub mid-way, again and again.
    let mut next = 0;
    for round in 0..4 {
        if round > 0 {
            hub = Hub::start(dir.path(), &[]);
        }
        let producer = tokio::spawn(produce_numbers(hub.addr.clone(), "src", next, 1_000_000));
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(0..700))).await;
        hub.kill9();
        next += producer.await.unwrap() + 1_000_000; // unacknowledged values may be stored too; keep them apart
    }
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    eventually("derived caught up", Duration::from_secs(60), || caught_up(&client, "c2f", "src.c2f.out", "src")).await;
    let src = read_topic(&client, "src").await;
    let out = read_topic(&client, "out").await;
    let total: usize = src.iter().map(Vec::len).sum();
    assert!(total > 100, "the producer stored too little ({total}) for the test to mean anything");
    for (p, (s, o)) in src.iter().zip(&out).enumerate() {
        let expected: Vec<String> = s.iter().map(|r| c2f(r.value.parse().unwrap())).collect();
        let got: Vec<String> = o.iter().map(|r| r.value.clone()).collect();
        assert_eq!(got.len(), expected.len(), "partition {p}: outputs {} for {} inputs", got.len(), expected.len());
        assert_eq!(got, expected, "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_plugin_version_under_load_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    create(&client, "src", 2).await;
    // Version 1 converts; version 2 (another build under the same name) keeps values as they are.
    client.upload_plugin("conv", &std::fs::read(example("cairn_plugin_celsius_to_fahrenheit")).unwrap()).await.unwrap();
    client.upload_plugin("conv", &std::fs::read(example("cairn_plugin_threshold")).unwrap()).await.unwrap();
    let mut s = spec("src", "conv", vec![]);
    s.version = Some(1);
    s.derived_to = Some("out");
    s.name = Some("conv");
    client.attach(s.clone()).await.unwrap();
    let producer = tokio::spawn(produce_numbers(hub.addr.clone(), "src", 0, 20_000));
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.version = Some(2);
    s.params = vec![("min", "-1000000")];
    let swapped = client.attach(s).await.unwrap();
    assert_eq!((swapped.version, swapped.status.as_str()), (2, "running"));
    let produced = producer.await.unwrap();
    assert_eq!(produced, 20_000);
    eventually("derived caught up", Duration::from_secs(60), || caught_up(&client, "conv", "conv", "src")).await;
    let src = read_topic(&client, "src").await;
    let out = read_topic(&client, "out").await;
    let (mut v1, mut v2) = (0, 0);
    for (p, (s, o)) in src.iter().zip(&out).enumerate() {
        assert_eq!(o.len(), s.len(), "partition {p}: every record once");
        let mut swapped = false;
        for (i, (input, output)) in s.iter().zip(o).enumerate() {
            let converted = c2f(input.value.parse().unwrap());
            if output.value == input.value && output.value != converted {
                swapped = true;
                v2 += 1;
            } else {
                assert_eq!(output.value, converted, "partition {p} record {i}");
                assert!(!swapped, "partition {p} record {i}: version 1 again after version 2");
                v1 += 1;
            }
        }
    }
    assert!(v1 > 0 && v2 > 0, "the swap happened mid-stream: {v1} records by v1, {v2} by v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_from_earliest_reproduces_the_live_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    create(&client, "src", 3).await;
    client.upload_plugin("router", &std::fs::read(example("cairn_plugin_alert_router")).unwrap()).await.unwrap();
    let mut live = spec("src", "router", vec![("limit", "5000")]);
    live.derived_to = Some("live");
    client.attach(live).await.unwrap();
    assert_eq!(produce_numbers(hub.addr.clone(), "src", 0, 3_000).await, 3_000);
    let mut backfill = spec("src", "router", vec![("limit", "5000")]);
    backfill.derived_to = Some("backfill");
    backfill.from = Some(AttachFrom::Earliest);
    client.attach(backfill).await.unwrap();
    // And one from the end, which sees only what comes later.
    let mut later = spec("src", "router", vec![("limit", "5000")]);
    later.derived_to = Some("later");
    later.from = Some(AttachFrom::Latest);
    client.attach(later).await.unwrap();
    assert_eq!(produce_numbers(hub.addr.clone(), "src", 3_000, 3_000).await, 3_000);
    for name in ["src.router.live", "src.router.backfill", "src.router.later"] {
        eventually(name, Duration::from_secs(60), || caught_up(&client, "router", name, "src")).await;
    }
    let live = read_topic(&client, "live").await;
    let backfill = read_topic(&client, "backfill").await;
    assert_eq!(live.iter().map(Vec::len).sum::<usize>(), 6_000);
    assert_eq!(live, backfill);
    let later: Vec<u64> =
        read_topic(&client, "later").await.concat().iter().map(|r| r.value.parse().unwrap()).collect();
    assert_eq!(later.len(), 3_000);
    assert!(later.iter().all(|&v| v >= 3_000));
    // The emitted alerts (values over 5000) went to `alerts` from both.
    let alerts = values(&client, "alerts").await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for a in alerts {
        *counts.entry(a).or_default() += 1;
    }
    assert_eq!(counts.len(), 999);
    assert!(counts.values().all(|&n| n == 3), "each alert once per attachment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_plugin_builds_uploads_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("data"), &[]);
    let status = std::process::Command::new(common::cairn())
        .args(["plugin", "new", "my-filter"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    // Refuses to overwrite.
    let again = std::process::Command::new(common::cairn())
        .args(["plugin", "new", "my-filter"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // It carries the SDK it builds with, and no path into this source tree.
    let manifest = std::fs::read_to_string(dir.path().join("my-filter/Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"path = "cairn-sdk/cairn-plugin-sdk""#), "{manifest}");
    assert!(dir.path().join("my-filter/cairn-sdk/wit/cairn.wit").exists());
    let sdk = std::fs::read_to_string(dir.path().join("my-filter/cairn-sdk/cairn-plugin-sdk/Cargo.toml")).unwrap();
    assert!(sdk.contains(r#"path = "../cairn-proto""#) && !sdk.contains("workspace"), "{sdk}");
    let wasm = common::build_plugin_crate(&dir.path().join("my-filter"));
    let (ok, out, err) = hub.cli(&["plugin", "upload", wasm.to_str().unwrap()], None);
    assert!(ok && out.contains("uploaded my-filter@1"), "{out} {err}");
    let (ok, _, err) = hub.cli(&["topic", "create", "t"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["plugin", "attach", "t", "my-filter", "-p", "min=20"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["produce", "t"], Some("10\n20\n30\n"));
    assert!(ok, "{err}");
    let client = Client::connect(&hub.addr).await.unwrap();
    assert_eq!(values(&client, "t").await, ["20", "30"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_the_log_refuses_and_large_dead_letters_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Small batches, so dead letters (which gain headers) must be split.
    let hub = Hub::start(dir.path(), &["--max-batch-bytes", "4096"]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.upload_plugin("router", &std::fs::read(example("cairn_plugin_alert_router")).unwrap()).await.unwrap();
    client.upload_plugin("trap", &hostile("unreachable", 2)).await.unwrap();
    // `alerts` compacted: the router's unkeyed alerts would be refused there.
    client
        .create_topic("alerts", TopicSettings { cleanup_policy: Some("compact"), ..Default::default() })
        .await
        .unwrap();
    create(&client, "r", 1).await;
    client.attach(spec("r", "router", vec![("limit", "10")])).await.unwrap();
    let r = produce(&client, "r", None, &["5", "50"]).await;
    assert_eq!(r.not_stored, 2, "the whole batch went to the dead-letter topic");
    assert!(values(&client, "r").await.is_empty());
    let dead = read_topic(&client, "r.dlq").await.concat();
    assert_eq!(dead.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(), ["5", "50"]);
    let reason = &dead[0].headers.iter().find(|(n, _)| n == "cairn.dlq.reason").unwrap().1;
    assert!(reason.contains("refuses") && reason.contains("key"), "{reason}");
    assert_eq!(attachment(&client, "router", "r.router").await.failures, 1);

    // 150 small records fit one 4 KiB batch, but not with the dead-letter headers.
    create(&client, "t", 1).await;
    client.attach(spec("t", "trap", vec![])).await.unwrap();
    let values_sent: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = values_sent.iter().map(String::as_str).collect();
    assert_eq!(produce(&client, "t", None, &refs).await.not_stored, 150);
    let dlq = client.describe_topic("t.dlq").await.unwrap();
    assert_eq!(dlq.partitions[0].end_offset, 150);
    let fetched = client.fetch("t.dlq", 0, 0, 1 << 20, Duration::ZERO).await.unwrap();
    assert!(fetched.batches.len() > 1, "split into several batches under max_batch_bytes");
    assert_eq!(values(&client, "t.dlq").await, values_sent);
}

/// An API key made with `cairn auth key create` as `by`: (key, secret).
fn key(hub: &Hub, by: Option<&(String, String)>, principal: &str, admin: bool) -> (String, String) {
    let env: Vec<(&str, &str)> = by.map_or(vec![], |(k, s)| vec![("CAIRN_API_KEY", k), ("CAIRN_API_SECRET", s)]);
    let mut args = vec!["auth", "key", "create", "--principal", principal, "--output", "json"];
    if admin {
        args.push("--admin");
    }
    let (ok, out, err) = hub.cli_env(&env, &args, None);
    assert!(ok, "{err}");
    let made: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    (made["key"].as_str().unwrap().to_string(), made["secret"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_stay_within_the_operators_ceilings_and_route_only_where_their_principal_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[plugins]\nmax_upload_bytes = 4000000\nmax_versions = 2\n").unwrap();
    let hub = Hub::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let admin = key(&hub, None, "ops", true);
    let app = key(&hub, Some(&admin), "app", false);
    let as_admin = [("CAIRN_API_KEY", admin.0.as_str()), ("CAIRN_API_SECRET", admin.1.as_str())];
    let as_app = [("CAIRN_API_KEY", app.0.as_str()), ("CAIRN_API_SECRET", app.1.as_str())];
    let router = example("cairn_plugin_alert_router");
    let router = router.to_str().unwrap();

    // Ceilings: upload size, versions per plugin, fuel per attach.
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; 4_000_001]).unwrap();
    let (ok, _, err) = hub.cli_env(&as_admin, &["plugin", "upload", big.to_str().unwrap(), "--name", "big"], None);
    assert!(!ok && err.contains("max_upload_bytes = 4000000"), "{err}");
    for _ in 0..2 {
        let (ok, _, err) = hub.cli_env(&as_admin, &["plugin", "upload", router, "--name", "router"], None);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = hub.cli_env(&as_admin, &["plugin", "upload", router, "--name", "router"], None);
    assert!(!ok && err.contains("max_versions"), "{err}");
    let (ok, _, err) = hub.cli_env(&as_admin, &["topic", "create", "readings"], None);
    assert!(ok, "{err}");
    let attach = ["plugin", "attach", "readings", "router", "-p", "limit=30"];
    let mut greedy = attach.to_vec();
    greedy.extend(["--fuel", "1000000000000"]);
    let (ok, _, err) = hub.cli_env(&as_admin, &greedy, None);
    assert!(!ok && err.contains("max_fuel_per_batch"), "{err}");

    // `app` may attach the router to its topic, but not write `alerts`:
    // what the plugin routes there fails the batch (dead-lettered), nothing
    // reaches `alerts`.
    for rule in [
        &["--principal", "app", "--topic", "readings", "--operation", "all"][..],
        &["--principal", "app", "--plugin", "router", "--operation", "read"][..],
    ] {
        let mut args = vec!["acl", "add"];
        args.extend_from_slice(rule);
        let (ok, _, err) = hub.cli_env(&as_admin, &args, None);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = hub.cli_env(&as_app, &attach, None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli_env(&as_app, &["produce", "readings"], Some("50\n"));
    assert!(ok, "{err}");
    let admin_client = cairn_client::Client::connect_with(
        &hub.addr,
        &cairn_client::ConnectOptions {
            credentials: Some(cairn_client::Credentials { key: admin.0.clone(), secret: admin.1.clone() }),
            tls: None,
        },
    )
    .await
    .unwrap();
    let dead = values(&admin_client, "readings.dlq").await;
    assert_eq!(dead, ["50"], "the batch is dead-lettered");
    assert!(admin_client
        .describe_topic("alerts")
        .await
        .map_or(true, |t| t.partitions.iter().all(|p| p.end_offset == 0)));

    // Once `app` may write `alerts`, the plugin's alerts go there.
    let (ok, _, err) = hub.cli_env(
        &as_admin,
        &["acl", "add", "--principal", "app", "--topic", "alerts", "--operation", "write"],
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli_env(&as_app, &["produce", "readings"], Some("60\n"));
    assert!(ok, "{err}");
    assert_eq!(values(&admin_client, "alerts").await, ["60"]);
}
