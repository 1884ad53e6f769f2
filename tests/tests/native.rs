//! The native protocol end to end: the real `cairn serve` on a free loopback
//! port, driven by the CLI and by the Rust client.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientError};
use cairn_proto::frame::{self, Acks, ErrorCode, Request, RequestBody, Response, ResponseBody, TopicSettings};
use cairn_proto::{BatchWriter, OwnedRecord};
use common::Hub;

/// Real timestamps: old ones would be deleted by the topics' default retention.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn batch(values: &[&str]) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for v in values {
        w.push_owned(&OwnedRecord::new(v.as_bytes().to_vec(), now_ms())).unwrap();
    }
    w.finish().unwrap()
}

fn settings(partitions: u32) -> TopicSettings<'static> {
    TopicSettings { partitions: Some(partitions), ..TopicSettings::default() }
}

async fn all_values(client: &Client, topic: &str, partition: u32) -> Vec<(u64, String)> {
    let f = client.fetch(topic, partition, 0, 16 << 20, Duration::ZERO).await.unwrap();
    f.records().map(|r| (r.offset, String::from_utf8_lossy(r.value).into_owned())).collect()
}

#[test]
fn cli_produce_then_consume() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (ok, out, err) = hub.cli(&["topic", "create", "readings", "--partitions", "2"], None);
    assert!(ok, "{err}");
    assert!(out.contains("created topic readings"), "{out}");
    let (ok, _, err) = hub.cli(&["produce", "readings", "--key", "room-1"], Some("20.5\n21.0\n21.5\n"));
    assert!(ok, "{err}");
    let (ok, out, err) = hub.cli(&["consume", "readings", "--from-beginning"], None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["20.5", "21.0", "21.5"]);
    let (ok, out, _) = hub.cli(&["consume", "readings", "--from-beginning", "--output", "json", "--max", "1"], None);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["key"].as_str(), v["value"].as_str(), v["offset"].as_u64()), (Some("room-1"), Some("20.5"), Some(0)));
    let (ok, out, _) = hub.cli(&["topic", "describe", "readings", "--output", "json"], None);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let ends: u64 = v["partitions"].as_array().unwrap().iter().map(|p| p["end_offset"].as_u64().unwrap()).sum();
    assert_eq!(ends, 3);
    let (ok, _, err) = hub.cli(&["consume", "nope", "--from-beginning"], None);
    assert!(!ok && err.contains("unknown topic 'nope'"), "{err}");
}

/// `cairn produce` cuts its batches to the hub's max_batch_bytes (lines
/// that would not fit together still all arrive), and skips a line that is
/// not a record, or too large for any batch, naming it, without losing the
/// lines around it.
#[tokio::test]
async fn cli_produce_cuts_batches_to_the_hub_limit_and_skips_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--max-batch-bytes", "20000"]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    // 100 lines of 1000 bytes: 100 kB, five times the limit.
    let mut input: Vec<String> = (0..100).map(|i| format!("{{\"value\":\"{i:03}{}\"}}", "x".repeat(997))).collect();
    input.insert(10, "not json".into());
    input.insert(50, format!("{{\"value\":\"{}\"}}", "y".repeat(30_000)));
    let (ok, _, err) = hub.cli(&["produce", "t", "--json"], Some(&(input.join("\n") + "\n")));
    assert!(!ok, "bad lines make the command fail");
    assert!(err.contains("line 11 skipped: not JSON"), "{err}");
    assert!(err.contains("line 51 skipped") && err.contains("max_batch_bytes"), "{err}");
    assert!(err.contains("produced 100 records"), "{err}");
    let stored: Vec<String> = all_values(&client, "t", 0).await.into_iter().map(|(_, v)| v[..3].to_string()).collect();
    let expected: Vec<String> = (0..100).map(|i| format!("{i:03}")).collect();
    assert_eq!(stored, expected);
}

/// A stream that pauses (a sensor, a person typing) is sent when it pauses,
/// not when a batch is full or the input ends.
#[tokio::test]
async fn cli_produce_sends_a_paused_stream_without_waiting_for_more() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    let mut producer = std::process::Command::new(common::cairn())
        .args(["produce", "t", "--hub", &hub.addr])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    stdin.flush().unwrap();
    // The line is stored while standard input stays open.
    let started = Instant::now();
    let fetched = client.fetch("t", 0, 0, 1 << 20, Duration::from_secs(10)).await.unwrap();
    let values: Vec<&[u8]> = fetched.records().map(|r| r.value).collect();
    assert_eq!(values, [b"first"]);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    stdin.write_all(b"second\n").unwrap();
    drop(stdin);
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(all_values(&client, "t", 0).await, vec![(0, "first".into()), (1, "second".into())]);
}

/// `cairn produce` rides out a hub killed with `kill -9` and restarted
/// while lines are still coming: every line is stored, once.
#[tokio::test]
async fn cli_produce_survives_a_hub_restart_without_storing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut hub = Hub::start(dir.path(), &["--native-addr", &addr]);
    Client::connect(&addr).await.unwrap().create_topic("t", settings(2)).await.unwrap();
    let mut producer = std::process::Command::new(common::cairn())
        .args(["produce", "t", "--key-separator", ":", "--hub", &addr])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    let write = |stdin: &mut std::process::ChildStdin, from: usize, to: usize| {
        for i in from..to {
            writeln!(stdin, "k{}:v{i}", i % 5).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    write(&mut stdin, 0, 300);
    hub.kill9();
    // Lines keep coming while the hub is down.
    write(&mut stdin, 300, 400);
    let _hub = Hub::start(dir.path(), &["--native-addr", &addr]);
    write(&mut stdin, 400, 600);
    drop(stdin);
    let out = producer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("produced 600 records"), "{stderr}");
    let client = Client::connect(&addr).await.unwrap();
    let mut stored: Vec<String> = Vec::new();
    for p in 0..2 {
        stored.extend(all_values(&client, "t", p).await.into_iter().map(|(_, v)| v));
    }
    stored.sort_by_key(|v| v[1..].parse::<usize>().unwrap());
    let expected: Vec<String> = (0..600).map(|i| format!("v{i}")).collect();
    assert_eq!(stored, expected, "each line stored once");
}

/// Ctrl-C on `cairn produce` stops reading, sends what it read, reports
/// and exits cleanly.
#[tokio::test]
async fn cli_produce_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    let mut producer = std::process::Command::new(common::cairn())
        .args(["produce", "t", "--hub", &hub.addr])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    stdin.write_all(b"a\nb\nc\n").unwrap();
    stdin.flush().unwrap();
    // Stored means read, and read means the signal handler is in place.
    let fetched = client.fetch("t", 0, 0, 1 << 20, Duration::from_secs(10)).await.unwrap();
    let mut stored = fetched.records().count();
    while stored < 3 {
        let more = client.fetch("t", 0, stored as u64, 1 << 20, Duration::from_secs(10)).await.unwrap();
        assert!(more.records().count() > 0, "the lines were not stored");
        stored += more.records().count();
    }
    let interrupted = std::process::Command::new("kill").args(["-INT", &producer.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let out = producer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("produced 3 records"), "{:?}: {stderr}", out.status);
    drop(stdin);
}

/// `--output json` reports each line's partition and offset; with
/// `--acks none` lines are sent without waiting, so there is no offset.
#[tokio::test]
async fn cli_produce_reports_each_line_and_sends_without_acks() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(2)).await.unwrap();
    let (ok, out, err) = hub.cli(&["produce", "t", "--partition", "1", "--output", "json"], Some("a\n\nb\n"));
    assert!(ok, "{err}");
    let acks: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let acks: Vec<_> =
        acks.iter().map(|a| (a["line"].as_u64(), a["partition"].as_u64(), a["offset"].as_u64())).collect();
    assert_eq!(acks, [(Some(1), Some(1), Some(0)), (Some(3), Some(1), Some(1))]);
    let (ok, out, err) =
        hub.cli(&["produce", "t", "--partition", "1", "--acks", "none", "--output", "json"], Some("c\n"));
    assert!(ok, "{err}");
    let ack: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(ack["offset"].is_null(), "{ack}");
    // Stored all the same, shortly after.
    let fetched = client.fetch("t", 1, 2, 1 << 20, Duration::from_secs(10)).await.unwrap();
    assert_eq!(fetched.records().map(|r| r.value.to_vec()).collect::<Vec<_>>(), [b"c".to_vec()]);
    let (ok, _, err) = hub.cli(&["produce", "t", "--partition", "2"], Some("d\n"));
    assert!(!ok && err.contains("has no partition 2"), "{err}");
}

/// `cairn consume --since` starts each partition at the first record at or
/// after a time: given as an age or as a UTC time.
#[tokio::test]
async fn cli_consume_since_a_time_or_an_age() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(2)).await.unwrap();
    let minutes_ago = |m: i64| now_ms() - m * 60_000;
    for (partition, value, at) in [(0, "50m", minutes_ago(50)), (1, "20m", minutes_ago(20)), (0, "5m", minutes_ago(5))]
    {
        let mut w = BatchWriter::new(Vec::new()).unwrap();
        w.push_owned(&OwnedRecord::new(value.as_bytes().to_vec(), at)).unwrap();
        client.produce("t", Some(partition), &w.finish().unwrap(), Acks::Durable).await.unwrap().unwrap();
    }
    let utc = |ms: i64| {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
        humantime::format_rfc3339_seconds(at).to_string()
    };
    let thirty_min_ago = utc(minutes_ago(30));
    for (since, expected) in [
        ("1h", vec!["20m", "50m", "5m"]),
        ("30m", vec!["20m", "5m"]),
        (thirty_min_ago.as_str(), vec!["20m", "5m"]),
        (&utc(minutes_ago(10)).replace('T', " ").replace('Z', ""), vec!["5m"]),
        ("1m", vec![]),
    ] {
        let (ok, out, err) = hub.cli(&["consume", "t", "--since", since], None);
        assert!(ok, "--since {since}: {err}");
        let mut got: Vec<&str> = out.lines().collect();
        got.sort();
        assert_eq!(got, expected, "--since {since}");
    }
    let (ok, _, err) = hub.cli(&["consume", "t", "--since", "yesterday"], None);
    assert!(!ok && err.contains("--since \"yesterday\"") && err.contains("2026-12-04T08:00:00Z"), "{err}");
}

#[tokio::test]
async fn client_produce_fetch_and_admin() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(3)).await.unwrap();
    let err = client.create_topic("t", settings(3)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicExists));

    let a = client.produce("t", Some(1), &batch(&["a", "b"]), Acks::Durable).await.unwrap().unwrap();
    let b = client.produce("t", Some(1), &batch(&["c"]), Acks::Durable).await.unwrap().unwrap();
    assert_eq!((a.partition, a.base_offset, a.last_offset, b.base_offset), (1, 0, 1, 2));
    assert_eq!(all_values(&client, "t", 1).await, vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);

    // Pipelined produces on one connection keep their order.
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            let b = batch(&[&format!("p{i}")]);
            async move { client.produce("t", Some(2), &b, Acks::Durable).await }
        })
        .collect();
    for (i, r) in futures::future::join_all(sends).await.into_iter().enumerate() {
        assert_eq!(r.unwrap().unwrap().base_offset, i as u64);
    }

    let altered = client.alter_topic("t", settings(4)).await.unwrap();
    assert_eq!(altered.partitions.len(), 4);
    let offsets = client.offsets_for_time("t", 0).await.unwrap();
    assert_eq!(offsets.len(), 4);
    assert_eq!(offsets[1], (1, Some(0)));
    assert_eq!(offsets[3], (3, None));
    assert_ne!(client.allocate_producer_id().await.unwrap(), client.allocate_producer_id().await.unwrap());
    client.delete_topic("t").await.unwrap();
    assert!(client.list_topics().await.unwrap().is_empty());
}

#[tokio::test]
async fn long_poll_wakes_within_milliseconds_of_a_produce() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            let f = client.fetch("t", 0, 0, 1 << 20, Duration::from_secs(20)).await.unwrap();
            (f.records().count(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let producer = Client::connect(&hub.addr).await.unwrap();
    producer.produce("t", Some(0), &batch(&["wake"]), Acks::Durable).await.unwrap();
    let acked = Instant::now();
    let (count, woke) = waiter.await.unwrap();
    assert_eq!(count, 1);
    let delay = woke.saturating_duration_since(acked);
    assert!(delay < Duration::from_millis(200), "fetch answered {delay:?} after the ack");
}

#[tokio::test]
async fn idempotent_retry_after_a_dropped_connection_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let first = Client::connect(&hub.addr).await.unwrap();
    first.create_topic("t", settings(1)).await.unwrap();
    let pid = first.allocate_producer_id().await.unwrap();
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(pid, 0);
    w.push_owned(&OwnedRecord::new(b"once".to_vec(), now_ms())).unwrap();
    let idem = w.finish().unwrap();
    let original = first.produce("t", None, &idem, Acks::Durable).await.unwrap().unwrap();
    drop(first); // the connection goes away as if the ack had been lost

    let second = Client::connect(&hub.addr).await.unwrap();
    let retry = second.produce("t", None, &idem, Acks::Durable).await.unwrap().unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, original.base_offset);
    assert_eq!(all_values(&second, "t", 0).await, vec![(0, "once".into())]);
}

#[tokio::test]
async fn durable_acks_survive_kill_9_of_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(2)).await.unwrap();
    // Producers keep sending while the hub is killed under them.
    let mut tasks = Vec::new();
    for p in 0..2u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000u32 {
                let value = format!("p{p}-{i}");
                match client.produce("t", Some(p), &batch(&[&value]), Acks::Durable).await {
                    Ok(Some(a)) => acked.push((a.base_offset, value)),
                    _ => break,
                }
            }
            (p, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    hub.kill9();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    assert!(acked.iter().map(|(_, a)| a.len()).sum::<usize>() > 0, "nothing was acknowledged before the kill");

    let mut hub = Hub::start(dir.path(), &[]);
    // The reopen walked the file (quick_repair is off by default) and said so.
    let repaired = |hub: &Hub| hub.startup_log.iter().any(|l| l.contains("not closed cleanly"));
    assert!(repaired(&hub), "no repair logged after kill -9: {:#?}", hub.startup_log);
    let client = Client::connect(&hub.addr).await.unwrap();
    for (p, acks) in acked {
        let stored = all_values(&client, "t", p).await;
        for (offset, value) in acks {
            assert_eq!(stored.get(offset as usize), Some(&(offset, value.clone())), "acked {value} lost");
        }
    }
    // After a clean shutdown there is nothing to repair.
    assert!(hub.terminate(), "the hub did not shut down cleanly");
    let hub = Hub::start(dir.path(), &[]);
    assert!(!repaired(&hub), "repair logged after a clean shutdown: {:#?}", hub.startup_log);
}

/// Sends raw bytes on a fresh connection and returns what the hub answered
/// before closing (or after `wait`).
fn raw_exchange(addr: &str, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

fn first_error(answer: &[u8]) -> (u32, ErrorCode, String) {
    assert!(answer.len() > 4, "no answer: {answer:?}");
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    let resp: Response<'_> = frame::decode(&answer[4..4 + len]).unwrap();
    match resp.body {
        ResponseBody::Error { code, message } => (resp.id, code, message.to_string()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_hub_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--max-frame-bytes", "65536"]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    client.produce("t", Some(0), &batch(&["kept"]), Acks::Durable).await.unwrap();

    // Random bytes: a malformed frame, answered and closed.
    let mut garbage = vec![0, 0, 0, 16];
    garbage.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let (_, code, message) = first_error(&raw_exchange(&hub.addr, &garbage, Duration::from_secs(5)));
    assert_eq!(code, ErrorCode::MalformedRequest, "{message}");

    // An oversized frame: refused with the limit named, before its payload.
    let (_, code, message) = first_error(&raw_exchange(&hub.addr, &[0, 16, 0, 0, 1, 2, 3], Duration::from_secs(5)));
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert!(message.contains("65536"), "{message}");

    // A truncated frame followed by a hang-up: nothing to answer, nothing breaks.
    let _ = raw_exchange(&hub.addr, &[0, 0, 0, 50, 1, 2], Duration::from_millis(200));

    // An unknown request type with a valid id: an error for that id, and the
    // connection stays usable.
    #[derive(serde::Serialize)]
    struct Unknown {
        id: u32,
        body: &'static str,
    }
    let mut bytes = Vec::new();
    frame::encode(&Unknown { id: 42, body: "teleport" }, &mut bytes);
    frame::encode(&Request { id: 43, body: RequestBody::ListTopics }, &mut bytes);
    let answer = raw_exchange(&hub.addr, &bytes, Duration::from_millis(500));
    let (id, code, _) = first_error(&answer);
    assert_eq!((id, code), (42, ErrorCode::UnknownRequest));
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    let second: Response<'_> = frame::decode(&answer[8 + len..]).unwrap();
    assert_eq!(second.id, 43);
    assert!(matches!(second.body, ResponseBody::Topics { .. }));

    // Fetches out of range name the valid range; a bad batch is refused.
    let err = client.fetch("t", 0, 7, 1024, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
    assert!(err.to_string().contains("valid offsets are 0..=1"), "{err}");
    let err = client.produce("t", Some(0), b"not a batch at all, just text", Acks::Durable).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidBatch), "{err}");
    let err = client.produce("missing", None, &batch(&["x"]), Acks::Durable).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::UnknownTopic, .. }), "{err}");

    // Through all of it the hub kept serving, and kept what it had acknowledged.
    let again = Client::connect(&hub.addr).await.unwrap();
    assert_eq!(all_values(&again, "t", 0).await, vec![(0, "kept".into())]);
}

#[tokio::test]
async fn producer_batches_records_and_acks_each_at_its_offset() {
    use cairn_client::{Producer, ProducerConfig};
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let admin = Client::connect(&hub.addr).await.unwrap();
    admin.create_topic("t", settings(4)).await.unwrap();
    let producer = Producer::connect(&hub.addr, ProducerConfig::default()).await.unwrap();
    let mut acks = Vec::new();
    for i in 0..5000 {
        let record =
            OwnedRecord::new(format!("v{i}").into_bytes(), now_ms()).with_key(format!("k{}", i % 50).into_bytes());
        acks.push((i, producer.send("t", record).await.unwrap()));
    }
    producer.flush().await.unwrap();
    let mut by_partition: std::collections::HashMap<u32, Vec<(u64, String)>> = Default::default();
    for (i, ack) in acks {
        let ack = ack.await.unwrap();
        let offset = ack.offset.expect("acks=durable gives offsets");
        by_partition.entry(ack.partition).or_default().push((offset, format!("v{i}")));
    }
    let mut batches = 0;
    for (p, mut expected) in by_partition {
        expected.sort();
        assert_eq!(all_values(&admin, "t", p).await, expected, "partition {p}");
        batches += admin.fetch("t", p, 0, 16 << 20, Duration::ZERO).await.unwrap().batches.len();
    }
    assert!(batches < 100, "5000 records went out in {batches} batches: no batching");
}

#[tokio::test]
async fn producer_retries_through_a_hub_kill_without_storing_twice() {
    use cairn_client::{Producer, ProducerConfig};
    let dir = tempfile::tempdir().unwrap();
    // A fixed port so the restarted hub is found at the same address.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut hub = Hub::start(dir.path(), &["--native-addr", &addr]);
    Client::connect(&addr).await.unwrap().create_topic("t", settings(2)).await.unwrap();
    let config = ProducerConfig {
        linger: Duration::from_millis(2),
        retry_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let producer = Producer::connect(&addr, config).await.unwrap();

    // v0..v2999 under 7 keys, a 5 ms pause every 20 records.
    let sending = send_in_background(&producer, 3000, 7, 20, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sending.is_finished(), "the hub must die while records are still being sent");
    hub.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _hub = Hub::start(dir.path(), &["--native-addr", &addr]);
    let acked = tokio::time::timeout(Duration::from_secs(60), sending).await.unwrap().unwrap();
    assert_eq!(acked, 3000, "every record was eventually acknowledged");

    let client = Client::connect(&addr).await.unwrap();
    assert_stored_once(&client, "t", 2, 3000).await;
}

/// Sends `v0`..`v{n-1}` (keys `k{i % keys}`) to topic `t` from a task,
/// pausing `pause` after every `every` records; the task returns how many
/// were acknowledged.
fn send_in_background(
    producer: &cairn_client::Producer,
    n: usize,
    keys: usize,
    every: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<usize> {
    let producer = producer.clone();
    tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..n {
            let record = OwnedRecord::new(format!("v{i}").into_bytes(), now_ms())
                .with_key(format!("k{}", i % keys).into_bytes());
            acks.push(producer.send("t", record).await.unwrap());
            if i % every == 0 {
                tokio::time::sleep(pause).await;
            }
        }
        let mut acked = 0;
        for a in acks {
            if a.await.is_ok() {
                acked += 1;
            }
        }
        acked
    })
}

/// Every one of `v0`..`v{n-1}` is stored in `topic` exactly once.
async fn assert_stored_once(client: &Client, topic: &str, partitions: u32, n: usize) {
    let mut seen = std::collections::HashSet::new();
    for p in 0..partitions {
        for (_, v) in all_values(client, topic, p).await {
            assert!(seen.insert(v.clone()), "{v} stored twice");
        }
    }
    assert_eq!(seen.len(), n);
}

/// A hub that stops answering but keeps its connections open (here: a
/// SIGSTOPped process) makes requests fail after the request timeout, and
/// only then: a long-poll fetch may take its own wait on top.
#[tokio::test]
async fn requests_to_a_frozen_hub_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let timeout = Duration::from_secs(1);
    // Set-up under the default timeout: a slow disk must not fail it.
    Client::connect(&hub.addr).await.unwrap().create_topic("t", settings(1)).await.unwrap();
    let client = Client::connect(&hub.addr).await.unwrap().with_request_timeout(timeout);

    // A healthy hub holding a fetch for 1 s is not a timeout.
    let started = Instant::now();
    let fetched = client.fetch("t", 0, 0, 1 << 20, Duration::from_secs(1)).await.unwrap();
    assert!(fetched.batches.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900), "the fetch waited {:?}", started.elapsed());

    hub.pause();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.describe_topic("t").await })
    };
    let started = Instant::now();
    let err = client.list_topics().await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, ClientError::TimedOut(_)), "{err:?}");
    assert!(err.is_retriable());
    assert!(err.to_string().contains("did not answer within 1000 ms"), "{err}");
    assert!(waited >= timeout && waited < Duration::from_secs(6), "timed out after {waited:?}");
    // The connection is given up: what was in flight ends too, and later
    // calls on it fail at once.
    let other = tokio::time::timeout(Duration::from_secs(5), in_flight).await.unwrap().unwrap();
    assert!(other.as_ref().is_err_and(ClientError::is_retriable), "{other:?}");
    let started = Instant::now();
    assert!(matches!(client.list_topics().await, Err(ClientError::Closed)));
    assert!(started.elapsed() < Duration::from_millis(200));

    // The CLI says so, within its --request-timeout.
    let started = Instant::now();
    let (ok, _, err) = hub.cli(&["topic", "list", "--request-timeout", "500ms"], None);
    assert!(!ok);
    assert!(err.contains("did not answer within 500 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "the CLI took {:?}", started.elapsed());
    let (ok, _, err) = hub.cli(&["topic", "list", "--request-timeout", "0s"], None);
    assert!(!ok && err.contains("must be more than zero"), "{err}");

    hub.resume();
    let fresh = Client::connect(&hub.addr).await.unwrap();
    assert_eq!(fresh.list_topics().await.unwrap().len(), 1);
}

/// A producer whose hub freezes for longer than the request timeout gives
/// up the connection, sends the same batch again on a new one, and once the
/// hub runs again every record is stored exactly once, although the hub
/// then finds the first attempts still waiting in the old connections.
#[tokio::test]
async fn producer_rides_out_a_frozen_hub_without_storing_twice() {
    use cairn_client::{Producer, ProducerConfig};
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    Client::connect(&hub.addr).await.unwrap().create_topic("t", settings(2)).await.unwrap();
    let config = ProducerConfig {
        linger: Duration::from_millis(2),
        retries: 100,
        retry_backoff: Duration::from_millis(100),
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let producer = Producer::connect(&hub.addr, config).await.unwrap();
    let admin = Client::connect(&hub.addr).await.unwrap();
    let connections = || async { admin.metrics().await.unwrap().into_iter().find(|(n, _)| n == "native_connections") };
    let before = connections().await.expect("a native_connections counter").1;
    // v0..v599 under 5 keys, 2 ms apart.
    let sending = send_in_background(&producer, 600, 5, 1, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.pause();
    // Several request timeouts pass: each attempt times out and reconnects.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(!sending.is_finished(), "records were still waiting while the hub was frozen");
    hub.resume();
    let acked = tokio::time::timeout(Duration::from_secs(60), sending).await.unwrap().unwrap();
    assert_eq!(acked, 600, "every record was eventually acknowledged");
    let after = connections().await.unwrap().1;
    assert!(after > before, "the producer gave up its connection and made new ones ({before} -> {after})");

    assert_stored_once(&admin, "t", 2, 600).await;
}

/// The page cache (most of the hub's memory under load) is 16 MiB unless
/// set, by flag or environment.
#[test]
fn serve_sizes_the_page_cache_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let opened = |hub: &Hub| hub.startup_log.iter().find(|l| l.contains("log opened")).cloned().unwrap_or_default();
    let hub = Hub::start(&dir.path().join("a"), &[]);
    assert!(opened(&hub).contains("cache_bytes=16777216"), "{:?}", hub.startup_log);
    let hub = Hub::start(&dir.path().join("b"), &["--cache-bytes", "4194304"]);
    assert!(opened(&hub).contains("cache_bytes=4194304"), "{:?}", hub.startup_log);
}

#[tokio::test]
async fn serve_reads_a_toml_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[native]\nmax_frame_bytes = 4096\n").unwrap();
    let hub = Hub::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let (_, code, message) = first_error(&raw_exchange(&hub.addr, &[0, 0, 0x20, 0], Duration::from_secs(5)));
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert!(message.contains("4096"), "{message}");

    std::fs::write(&config, "[native]\nmax_frame_byte = 4096\n").unwrap();
    let out = std::process::Command::new(common::cairn())
        .args([
            "serve",
            "--native-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_frame_byte"), "a typo is named");
}

#[tokio::test]
async fn connections_over_the_limit_are_told_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--max-connections", "2"]);
    let a = Client::connect(&hub.addr).await.unwrap();
    let b = Client::connect(&hub.addr).await.unwrap();
    a.list_topics().await.unwrap();
    b.list_topics().await.unwrap();
    let (_, code, message) = first_error(&raw_exchange(&hub.addr, &[], Duration::from_secs(5)));
    assert_eq!(code, ErrorCode::TooManyConnections);
    assert!(message.contains("max_connections = 2"), "{message}");
    // A slot frees up when a client leaves.
    drop(a);
    let started = Instant::now();
    loop {
        let c = Client::connect(&hub.addr).await.unwrap();
        if c.list_topics().await.is_ok() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn hello_reports_version_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--max-frame-bytes", "100000", "--max-batch-bytes", "50000"]);
    let mut bytes = Vec::new();
    frame::encode(&Request { id: 9, body: RequestBody::Hello { client: "test", version: 1 } }, &mut bytes);
    let answer = raw_exchange(&hub.addr, &bytes, Duration::from_millis(500));
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    let resp: Response<'_> = frame::decode(&answer[4..4 + len]).unwrap();
    assert_eq!(resp.id, 9);
    match resp.body {
        ResponseBody::Hello { version, max_frame_bytes, max_batch_bytes, server, auth_required } => {
            assert_eq!((version, max_frame_bytes, max_batch_bytes), (1, 100_000, 50_000));
            assert!(!auth_required, "no API key exists");
            assert!(server.starts_with("cairn "), "{server}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn group_consumer_auto_commit_and_retention_range_errors() {
    use cairn_client::{GroupConsumer, StartFrom};
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--retention-check-secs", "1"]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    for i in 0..3 {
        client.produce("t", Some(0), &batch(&[&format!("r{i}")]), Acks::Durable).await.unwrap();
    }
    let mut consumer = GroupConsumer::join(client.clone(), "auto", &["t"], Duration::from_secs(5), StartFrom::Earliest)
        .await
        .unwrap()
        .with_auto_commit(true);
    let mut got = 0;
    while got < 3 {
        got += consumer.poll(Duration::from_secs(2)).await.unwrap().len();
    }
    // Before the next poll only the starting point is committed (so a
    // partition moving now would not skip anything); the next poll commits
    // what the previous one returned.
    assert_eq!(client.fetch_committed("auto", "t").await.unwrap()[0], (0, Some(0)));
    let _ = consumer.poll(Duration::from_millis(100)).await.unwrap();
    assert_eq!(client.fetch_committed("auto", "t").await.unwrap()[0], (0, Some(3)));
    consumer.leave().await.unwrap();

    // Retention by size removes the oldest batches; fetching below the new
    // start is an error naming the valid range.
    let one = batch(&["r0"]).len() as i64;
    let settings = TopicSettings { retention_bytes: Some(one), retention_ms: Some(-1), ..TopicSettings::default() };
    client.alter_topic("t", settings).await.unwrap();
    let started = Instant::now();
    let err = loop {
        match client.fetch("t", 0, 0, 1024, Duration::ZERO).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(started.elapsed() < Duration::from_secs(10), "retention never ran");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
    assert!(err.to_string().contains("valid offsets are 2..=3"), "{err}");
}

#[tokio::test]
async fn sigterm_answers_in_flight_produces_before_closing() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(1)).await.unwrap();
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let client = client.clone();
            let b = batch(&[&format!("s{i}")]);
            tokio::spawn(async move { (i, client.produce("t", Some(0), &b, Acks::Durable).await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(hub.terminate(), "graceful shutdown exits 0");
    let mut acked = Vec::new();
    for s in sends {
        let (i, result) = s.await.unwrap();
        match result {
            Ok(Some(a)) => acked.push((a.base_offset, format!("s{i}"))),
            Ok(None) => unreachable!("durable acks always answer"),
            Err(e) => assert!(
                matches!(e, ClientError::Closed | ClientError::Server { code: ErrorCode::ShuttingDown, .. }),
                "{e}"
            ),
        }
    }
    assert!(!acked.is_empty(), "requests sent before SIGTERM were answered");
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    let stored = all_values(&client, "t", 0).await;
    for (offset, value) in acked {
        assert_eq!(stored.get(offset as usize), Some(&(offset, value.clone())), "acked {value} lost");
    }
}

#[tokio::test]
async fn the_hub_partitions_batches_by_key_when_no_partition_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("t", settings(8)).await.unwrap();
    let keyed = |keys: &[&str]| {
        let mut w = BatchWriter::new(Vec::new()).unwrap();
        for k in keys {
            w.push_owned(&OwnedRecord::new(b"v".to_vec(), now_ms()).with_key(k.as_bytes().to_vec())).unwrap();
        }
        w.finish().unwrap()
    };
    let ack = client.produce("t", None, &keyed(&["room-1", "room-1"]), Acks::Durable).await.unwrap().unwrap();
    assert_eq!(ack.partition, cairn_proto::partition_for_key(b"room-1", 8));
    // Keys that land in different partitions cannot share a batch.
    let (a, b) = (0..100)
        .map(|i| format!("k{i}"))
        .find_map(|k| {
            let p = cairn_proto::partition_for_key(k.as_bytes(), 8);
            (p != ack.partition).then_some(k)
        })
        .map(|k| ("room-1".to_string(), k))
        .unwrap();
    let err = client.produce("t", None, &keyed(&[&a, &b]), Acks::Durable).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidBatch), "{err}");
    assert!(err.to_string().contains("name the partition"), "{err}");
}

/// `metrics` reports the log's group commit: concurrent single-record
/// producers are acknowledged in fewer commits than batches.
#[tokio::test]
async fn metrics_count_commits_and_the_batches_they_fold_together() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let admin = Client::connect(&hub.addr).await.unwrap();
    admin.create_topic("m", settings(1)).await.unwrap();
    let counter = |counters: &[(String, u64)], name: &str| {
        counters.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} in {counters:?}")).1
    };
    let before = admin.metrics().await.unwrap();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for p in 0..20 {
        let client = Client::connect(&hub.addr).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let value = format!("p{p}-{i}");
                client.produce("m", Some(0), &batch(&[&value]), Acks::Durable).await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = admin.metrics().await.unwrap();
    let batches = counter(&after, "log_batches_appended") - counter(&before, "log_batches_appended");
    let commits = counter(&after, "log_commits") - counter(&before, "log_commits");
    assert_eq!(batches, 500, "every acknowledged batch counted once");
    assert!(commits >= 25, "at least one commit per round of producers: {commits}");
    assert!(commits < batches, "20 producers at once never shared a commit: {commits} commits for {batches} batches");

    // Commit time: some was spent, never more than the time that passed.
    let spent = counter(&after, "log_commit_us") - counter(&before, "log_commit_us");
    assert!(spent > 0 && spent <= started.elapsed().as_micros() as u64, "{spent} µs committing");
    let slow: Vec<u64> = ["log_commits_over_5ms", "log_commits_over_20ms", "log_commits_over_100ms"]
        .iter()
        .map(|name| counter(&after, name))
        .collect();
    assert!(slow[0] >= slow[1] && slow[1] >= slow[2] && slow[0] <= counter(&after, "log_commits"), "{slow:?}");
}

/// `cairn bench produce|consume|e2e` against a real hub: each run's report
/// (as JSON) says what it did, the topic holds exactly what was produced,
/// and several runs end with their medians.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_commands_report_what_they_did() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let json_lines = |stdout: &str| -> Vec<serde_json::Value> {
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    };

    // 3 producers x 10 batches of 100 records per run, two runs.
    let args = ["bench", "produce", "--topic", "b", "--partitions", "2", "--records", "3000"];
    let more = ["--batch-records", "100", "--producers", "3", "--in-flight", "2", "--runs", "2", "--output", "json"];
    let (ok, out, err) = hub.cli(&[&args[..], &more[..]].concat(), None);
    assert!(ok, "{err}");
    let docs = json_lines(&out);
    assert_eq!(docs.len(), 3, "two runs and the medians: {out}");
    for (i, run) in docs[..2].iter().enumerate() {
        assert_eq!(run["run"], i + 1);
        assert_eq!(run["records"], 3000);
        assert_eq!(run["ack_latency"]["samples"], 30, "one acknowledgement per batch");
        assert!(run["records_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(docs[2]["runs"], 2);
    assert!(docs[2]["median"]["records_per_sec"].as_f64().unwrap() > 0.0);

    let client = Client::connect(&hub.addr).await.unwrap();
    let stored: u64 = client.describe_topic("b").await.unwrap().partitions.iter().map(|p| p.end_offset).sum();
    assert_eq!(stored, 6000, "every produced record stored once");

    // Catch-up reads see all of it, every run.
    let (ok, out, err) = hub.cli(&["bench", "consume", "--topic", "b", "--runs", "2", "--output", "json"], None);
    assert!(ok, "{err}");
    let docs = json_lines(&out);
    assert_eq!(docs.len(), 3, "{out}");
    assert_eq!(docs[0]["records"], 6000);
    assert_eq!(docs[1]["records"], 6000);

    // The text form ends with the median line.
    let (ok, out, err) = hub.cli(&["bench", "consume", "--topic", "b", "--runs", "2"], None);
    assert!(ok, "{err}");
    assert!(out.lines().last().unwrap().starts_with("median of 2 runs: "), "{out}");
    assert!(out.lines().last().unwrap().ends_with(" rec/s"), "{out}");

    // End to end: every record sent is received, each with a latency.
    let args = ["bench", "e2e", "--topic", "e", "--rate", "200", "--seconds", "1", "--output", "json"];
    let (ok, out, err) = hub.cli(&args, None);
    assert!(ok, "{err}");
    let docs = json_lines(&out);
    assert_eq!(docs.len(), 1, "one run, no medians: {out}");
    let sent = docs[0]["sent"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(docs[0]["received"], sent);
    assert_eq!(docs[0]["latency"]["samples"], sent);
}
