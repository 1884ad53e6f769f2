//! A real full disk: the data directory on a small tmpfs (root mounts one
//! here; where that is impossible the test says so loudly and skips). Produces
//! fail with a clear "disk full" over the native protocol and MQTT (5: PUBACK
//! 0x97, with a reason string unless the client asked for none; 3.1.1: the
//! connection closes), nothing acknowledged is lost, reads
//! go on, writes resume without a restart once space is freed, and the file
//! opens cleanly afterwards; a refused MQTT QoS 2 message leaves no packet
//! id behind. Both ways a disk fills: caught by the hub's own guard
//! (`min_free_disk_bytes`), and redb's commit failing with ENOSPC.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_client::{Client, ClientError};
use cairn_proto::frame::{Acks, ErrorCode, TopicSettings};
use cairn_proto::BatchWriter;
use common::raw_mqtt::RawMqtt;
use common::Hub;
use rumqttc::v5::mqttbytes::v5;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying why) where this process cannot mount one.
    fn mount(megabytes: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                eprintln!("SKIPPED: cannot mount a tmpfs for the full-disk test (needs root): {why}");
                None
            }
            Err(err) => {
                eprintln!("SKIPPED: cannot run mount for the full-disk test: {err}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn batch(count: usize, value_bytes: usize, first: usize) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for i in first..first + count {
        let value = format!("{:0width$}", i % 10usize.pow(value_bytes.min(18) as u32), width = value_bytes);
        w.push_parts(None, value.as_bytes(), 1_700_000_000_000, std::iter::empty()).unwrap();
    }
    w.finish().unwrap()
}

/// Produces to `topic` until the hub says the disk is full, in 100-record
/// batches of 500-byte values, then in single 1-byte records (so that even
/// a small message no longer fits); returns the records acknowledged and
/// the refusal's message.
async fn fill(client: &Client, topic: &str) -> (u64, String) {
    let mut acked = 0;
    for (records, value_bytes) in [(100, 500), (1, 1)] {
        let mut refused = None;
        for _ in 0..2_000 {
            match client.produce(topic, Some(0), &batch(records, value_bytes, acked as usize), Acks::Durable).await {
                Ok(Some(p)) => acked += p.last_offset + 1 - p.base_offset,
                Ok(None) => panic!("no acknowledgement"),
                Err(ClientError::Server { code: ErrorCode::DiskFull, message }) => {
                    refused = Some(message);
                    break;
                }
                Err(err) => panic!("a produce on a filling disk failed otherwise: {err}"),
            }
        }
        let Some(message) = refused else { panic!("2,000 batches fit on a 24 MB disk?") };
        if value_bytes == 1 {
            return (acked, message);
        }
    }
    unreachable!()
}

/// Every record of partition 0 of `topic`, counted by reading it all.
async fn count(client: &Client, topic: &str) -> u64 {
    let (mut offset, mut n) = (0, 0);
    loop {
        let f = client.fetch(topic, 0, offset, 1 << 20, Duration::ZERO).await.unwrap();
        n += f.records().count() as u64;
        let next = f.next_offset();
        if next == f.end_offset || next == offset {
            return n;
        }
        offset = next;
    }
}

/// The PUBACK of an MQTT 5 QoS 1 publish on the full disk, from a client
/// that set Request Problem Information to this.
fn refused_publish(hub: &Hub, problem_info: Option<u8>) -> v5::PubAck {
    let mut raw = RawMqtt::dial(hub.mqtt_addr.as_deref().unwrap());
    let properties = v5::ConnectProperties { request_problem_info: problem_info, ..Default::default() };
    let connect =
        v5::Connect { keep_alive: 30, client_id: String::new(), clean_start: true, properties: Some(properties) };
    raw.send5(v5::Packet::Connect(connect, None, None));
    assert!(matches!(raw.read5(), Some(v5::Packet::ConnAck(_))));
    let mut publish = v5::Publish::new("readings/a", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, "x", None);
    publish.pkid = 1;
    raw.send5(v5::Packet::Publish(publish));
    match raw.read5() {
        Some(v5::Packet::PubAck(ack)) => ack,
        other => panic!("no PUBACK: {other:?}"),
    }
}

fn mqtt_port(hub: &Hub) -> String {
    hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap().to_string()
}

/// Stops the hub gracefully and starts it again on the same data: it must
/// open cleanly (no crash recovery) with `topic` holding `records`.
async fn restarts_cleanly(mut hub: Hub, data: &Path, extra: &[&str], topic: &str, records: u64) {
    assert!(hub.terminate(), "the hub stopped on SIGTERM");
    let hub = Hub::start(data, extra);
    let dirty: Vec<&String> = hub.startup_log.iter().filter(|l| l.contains("not closed cleanly")).collect();
    assert!(dirty.is_empty(), "the log did not close cleanly: {dirty:?}");
    let client = Client::connect(&hub.addr).await.unwrap();
    assert_eq!(count(&client, topic).await, records);
}

/// The hub's guard keeps this much free (`--min-free-disk-bytes`).
const GUARDED: [&str; 2] = ["--min-free-disk-bytes", "4194304"];

/// A hub on a fresh 24 MB tmpfs with its disk guard on, and topics "bulk"
/// (to fill it) and "readings"; None where no tmpfs can be mounted.
async fn guarded_hub() -> Option<(Tmpfs, PathBuf, Hub, Client)> {
    let disk = Tmpfs::mount(24)?;
    let data: PathBuf = disk.path().join("data");
    let hub = Hub::start(&data, &GUARDED);
    let client = Client::connect(&hub.addr).await.unwrap();
    for topic in ["bulk", "readings"] {
        client.create_topic(topic, TopicSettings { partitions: Some(1), ..Default::default() }).await.unwrap();
    }
    Some((disk, data, hub, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_clearly_loses_nothing_and_recovers_without_a_restart() {
    let Some((_disk, data, hub, client)) = guarded_hub().await else { return };
    let extra = GUARDED;

    let (acked, message) = fill(&client, "bulk").await;
    assert!(acked > 10_000, "most of the disk was used first: {acked} records");
    assert!(message.contains("disk full") && message.contains("min_free_disk_bytes"), "{message}");
    // Nothing acknowledged is lost, and reads go on.
    assert_eq!(client.describe_topic("bulk").await.unwrap().partitions[0].end_offset, acked);
    assert_eq!(count(&client, "bulk").await, acked);

    // MQTT 5 is told (PUBACK 0x97 with a reason); 3.1.1 is disconnected.
    let v5 = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port(&hub), "-V", "5", "-q", "1", "-d", "-t", "readings/a", "-m", "x"])
        .args(["-i", "full-v5"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&v5.stdout);
    assert!(said.contains("received PUBACK (Mid: 1, RC:151)"), "{said}");
    // The reason string goes only to a client that did not ask for none
    // (Request Problem Information 0, MQTT-3.1.2-29).
    for (problem_info, told) in [(None, true), (Some(1), true), (Some(0), false)] {
        let puback = refused_publish(&hub, problem_info);
        assert_eq!(puback.reason, v5::PubAckReason::QuotaExceeded);
        let said = puback.properties.and_then(|p| p.reason_string);
        let why = format!("Request Problem Information {problem_info:?}: {said:?}");
        assert_eq!(said.as_deref().is_some_and(|s| s.starts_with("disk full")), told, "{why}");
        assert!(told || said.is_none(), "{why}");
    }
    let v311 = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port(&hub), "-V", "311", "-q", "1", "-t", "readings/a", "-m", "x"])
        .output()
        .unwrap();
    assert!(!v311.status.success(), "3.1.1 publish on a full disk must not succeed");
    let readings = client.describe_topic("readings").await.unwrap().partitions[0].end_offset;
    let samples = common::http::scrape(&hub, None);
    assert!(common::http::must(&samples, "cairn_log_disk_full_refusals_total", &[]) >= 3.0);

    // A topic deleted frees room inside the log's file: writes resume, no
    // restart.
    client.delete_topic("bulk").await.unwrap();
    let p = client.produce("readings", Some(0), &batch(10, 100, 0), Acks::Durable).await.unwrap().unwrap();
    assert_eq!(p.last_offset + 1, readings + 10);
    restarts_cleanly(hub, &data, &extra, "readings", readings + 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_message_refused_for_a_full_disk_does_not_hold_its_packet_id_across_a_restart() {
    use rumqttc::v5::mqttbytes::QoS;

    let Some((_disk, data, hub, client)) = guarded_hub().await else { return };
    // A persistent MQTT 5 session; its QoS 2 message 9 meets a full disk.
    let connect = |hub: &Hub, clean_start| {
        let mut raw = RawMqtt::dial(hub.mqtt_addr.as_deref().unwrap());
        let properties = v5::ConnectProperties { session_expiry_interval: Some(600), ..Default::default() };
        let connect =
            v5::Connect { keep_alive: 30, client_id: "keeper".into(), clean_start, properties: Some(properties) };
        raw.send5(v5::Packet::Connect(connect, None, None));
        assert!(matches!(raw.read5(), Some(v5::Packet::ConnAck(_))));
        raw
    };
    // One QoS 2 exchange: PUBLISH (id `pkid`), and if it is stored, PUBREL
    // and PUBCOMP. Returns the PUBREC's reason.
    let exchange = |raw: &mut RawMqtt, pkid: u16, payload: &str| {
        let mut publish = v5::Publish::new("readings/a", QoS::ExactlyOnce, payload.to_string(), None);
        publish.pkid = pkid;
        raw.send5(v5::Packet::Publish(publish));
        let reason = match raw.read5() {
            Some(v5::Packet::PubRec(rec)) => rec.reason,
            other => panic!("no PUBREC: {other:?}"),
        };
        if reason == v5::PubRecReason::Success {
            raw.send5(v5::Packet::PubRel(v5::PubRel::new(pkid, None)));
            assert!(matches!(raw.read5(), Some(v5::Packet::PubComp(c)) if c.pkid == pkid));
        }
        reason
    };
    let mut raw = connect(&hub, true);
    fill(&client, "bulk").await;
    assert_eq!(exchange(&mut raw, 9, "refused"), v5::PubRecReason::QuotaExceeded);
    // Room again. The next exchange stores the session (with the ids it
    // holds) twice; then the hub dies before the client leaves.
    client.delete_topic("bulk").await.unwrap();
    assert_eq!(exchange(&mut raw, 10, "between"), v5::PubRecReason::Success);
    let mut hub = hub;
    hub.kill9();

    // After the restart, a new message with id 9 is stored, not taken for
    // a retransmission of the refused one.
    let hub = Hub::start(&data, &GUARDED);
    let client = Client::connect(&hub.addr).await.unwrap();
    let mut raw = connect(&hub, false);
    assert_eq!(exchange(&mut raw, 9, "stored"), v5::PubRecReason::Success);
    let f = client.fetch("readings", 0, 0, 1 << 20, Duration::ZERO).await.unwrap();
    let values: Vec<&[u8]> = f.records().map(|r| r.value).collect();
    assert_eq!(values, [&b"between"[..], &b"stored"[..]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_failing_for_lack_of_space_is_survived_in_place() {
    let Some(disk) = Tmpfs::mount(24) else { return };
    let data: PathBuf = disk.path().join("data");
    // The hub's guard off: redb's commit meets ENOSPC, and the log reopens
    // itself after it.
    let extra = ["--min-free-disk-bytes", "0"];
    let hub = Hub::start(&data, &extra);
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 6 << 20]).unwrap();
    let client = Client::connect(&hub.addr).await.unwrap();
    client.create_topic("bulk", TopicSettings { partitions: Some(1), ..Default::default() }).await.unwrap();

    let (acked, message) = fill(&client, "bulk").await;
    assert!(message.contains("disk full") && message.contains("No space left on device"), "{message}");
    assert_eq!(count(&client, "bulk").await, acked, "every acknowledged record, and only those");
    assert!(
        hub.log.lock().unwrap().iter().any(|l| l.contains("log reopened")),
        "the log reopened itself after the failed commit"
    );
    let samples = common::http::scrape(&hub, None);
    assert!(common::http::must(&samples, "cairn_log_reopens_total", &[]) >= 1.0);

    // Space freed outside the log: writes resume without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let p = client.produce("bulk", Some(0), &batch(10, 100, 0), Acks::Durable).await.unwrap().unwrap();
    assert_eq!(p.base_offset, acked);
    restarts_cleanly(hub, &data, &extra, "bulk", acked + 10).await;
}
