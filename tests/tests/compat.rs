//! A data directory written by an earlier Cairn opens with this one, with
//! every record, topic setting, committed group offset and retained MQTT
//! message intact, and takes new writes.
//!
//! `tests/fixtures/data-0.1.0/cairn.redb` was written by `cairn serve` of
//! commit 58d9d1e (the last release before the workspace was split into
//! crates), stopped with SIGTERM, after:
//!
//! ```text
//! cairn topic create readings --partitions 3
//! cairn topic create settings --partitions 1 --cleanup-policy compact --retention-ms -1
//! cairn produce readings --key-separator : < readings.txt      # 30 lines "room-N:value"
//! printf 'mode:v1\nmode:v2\nmode:v3\n' | cairn produce settings --key-separator :
//! echo interval:60 | cairn produce settings --key-separator :
//! cairn consume readings --group dashboard --max 12             # commits 12, 12, 6
//! mosquitto_pub -t sensors/room1/temp -m 21.5 -q 1
//! mosquitto_pub -t sensors/room2/temp -m 19.0 -q 1 -r
//! ```

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_client::{CleanupPolicy, Client};
use cairn_proto::frame::Acks;
use cairn_proto::{BatchWriter, OwnedRecord};
use common::Hub;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/data-0.1.0");

/// Every record of `topic`/`partition` as (offset, key, value).
async fn records(client: &Client, topic: &str, partition: u32) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let mut offset = client.describe_topic(topic).await.unwrap().partitions[partition as usize].start_offset;
    loop {
        let fetch = client.fetch(topic, partition, offset, 1 << 20, Duration::ZERO).await.unwrap();
        for r in fetch.records() {
            let key = String::from_utf8(r.key.unwrap_or_default().to_vec()).unwrap();
            out.push((r.offset, key, String::from_utf8(r.value.to_vec()).unwrap()));
        }
        let next = fetch.next_offset();
        if next >= fetch.end_offset || next == offset {
            return out;
        }
        offset = next;
    }
}

/// A copy of the fixture in a fresh directory (the hub writes to it).
fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(Path::new(FIXTURE).join("cairn.redb"), to.join("cairn.redb")).unwrap();
}

#[tokio::test]
async fn a_data_directory_of_the_previous_release_opens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_fixture(&data);
    let hub = Hub::start(&data, &[]);
    let client = Client::connect(&hub.addr).await.unwrap();

    // Topics and their settings.
    let topics: BTreeMap<String, _> =
        client.list_topics().await.unwrap().into_iter().map(|t| (t.name.clone(), t)).collect();
    for name in ["readings", "settings", "sensors", "__mqtt_retained"] {
        assert!(topics.contains_key(name), "topic {name} missing: {:?}", topics.keys());
    }
    assert_eq!(topics["readings"].config.partitions, 3);
    assert_eq!(topics["settings"].config.cleanup_policy, CleanupPolicy::Compact);
    assert_eq!(topics["settings"].config.retention_ms, None, "retention.ms=-1 (forever) kept");

    // Every produced line is there once, each key's records in order.
    let lines = std::fs::read_to_string(Path::new(FIXTURE).join("readings.txt")).unwrap();
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines.lines() {
        let (key, value) = line.split_once(':').unwrap();
        expected.entry(key.to_string()).or_default().push(value.to_string());
    }
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    let mut ends = Vec::new();
    for partition in 0..3 {
        let records = records(&client, "readings", partition).await;
        for (i, (offset, key, value)) in records.iter().enumerate() {
            assert_eq!(*offset, i as u64, "dense offsets from 0 in partition {partition}");
            assert_eq!(cairn_proto::partition_for_key(key.as_bytes(), 3), partition, "{key} in its hash partition");
            stored.entry(key.clone()).or_default().push(value.clone());
        }
        ends.push(records.len() as u64);
    }
    assert_eq!(stored, expected);

    // The group's committed offsets.
    let committed = client.fetch_committed("dashboard", "readings").await.unwrap();
    let committed: Vec<_> = committed.into_iter().map(|(p, o)| (p, o.unwrap_or(0))).collect();
    assert_eq!(committed.iter().map(|(_, o)| o).sum::<u64>(), 30, "{committed:?}");
    for (p, o) in &committed {
        assert_eq!(*o, ends[*p as usize], "dashboard read all of partition {p}");
    }

    // The compacted topic: the last value of each key.
    let mut last = HashMap::new();
    for (_, key, value) in records(&client, "settings", 0).await {
        last.insert(key, value);
    }
    assert_eq!(last.get("mode").map(String::as_str), Some("v3"));
    assert_eq!(last.get("interval").map(String::as_str), Some("60"));

    // MQTT: both messages are records; the retained one still reaches a
    // new subscriber.
    let sensors: Vec<_> = records(&client, "sensors", 0).await.into_iter().map(|(_, k, v)| (k, v)).collect();
    assert_eq!(
        sensors,
        [
            ("sensors/room1/temp".to_string(), "21.5".to_string()),
            ("sensors/room2/temp".to_string(), "19.0".to_string())
        ]
    );
    let mqtt = hub.mqtt_addr.clone().unwrap();
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    let out = Command::new("mosquitto_sub")
        .args(["-h", host, "-p", port, "-t", "sensors/#", "-C", "1", "-v", "-W", "10"])
        .output()
        .expect("mosquitto_sub (./scripts/test.sh installs mosquitto-clients)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sensors/room2/temp 19.0");

    // And the old file takes new records after the old ones.
    let mut writer = BatchWriter::new(Vec::new()).unwrap();
    writer.push_owned(&OwnedRecord::new(b"new".to_vec(), 1).with_key(b"room-0".to_vec())).unwrap();
    let partition = cairn_proto::partition_for_key(b"room-0", 3);
    let batch = writer.finish().unwrap();
    let produced = client.produce("readings", Some(partition), &batch, Acks::Durable).await.unwrap().unwrap();
    assert_eq!(produced.base_offset, ends[partition as usize]);
    let after = records(&client, "readings", partition).await;
    assert_eq!(after.last().map(|(_, k, v)| (k.as_str(), v.as_str())), Some(("room-0", "new")));
}
