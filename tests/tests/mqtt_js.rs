//! MQTT.js, the JavaScript MQTT client, against the real `cairn serve`:
//! - a browser dashboard, for real: its browser bundle in Debian's
//!   chromium, driven by Selenium (tests/mqtt_browser.py), over the MQTT
//!   over WebSocket listener, while a device publishes over TCP with
//!   paho-mqtt. The page gets the retained status, every reading in order
//!   and exactly once, and its own MQTT 5 command back with its
//!   properties; a 3.1.1 client in the page is served too;
//! - in Node.js, as Node-RED uses it (tests/mqtt_node.js): a persistent
//!   MQTT 5 session resumed with the QoS 2 messages sent while it was away,
//!   topic aliases both ways.
//!
//! `./scripts/test.sh` installs MQTT.js (tests/js, pinned by its
//! package-lock.json), chromium, chromedriver, selenium and paho-mqtt;
//! Node.js is the machine's.

mod common;

use std::process::Command;

use common::Hub;
use serde_json::Value;

/// MQTT.js's browser bundle, installed by `./scripts/test.sh`.
const MQTT_JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/js/node_modules/mqtt/dist/mqtt.min.js");

fn mqtt_js_installed() {
    assert!(std::path::Path::new(MQTT_JS).exists(), "{MQTT_JS} missing: ./scripts/test.sh installs MQTT.js");
}

#[test]
fn mqtt_js_in_chromium_serves_a_dashboard_over_websocket() {
    mqtt_js_installed();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--mqtt-ws-addr", "127.0.0.1:0"]);
    let line =
        hub.startup_log.iter().find(|l| l.contains("MQTT over WebSocket listening")).expect("a WebSocket listener");
    let ws_port = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap().rsplit(':').next().unwrap();
    let tcp_port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap();

    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/mqtt_browser.py"))
        .args([ws_port, tcp_port, MQTT_JS])
        .output()
        .unwrap();
    assert!(out.status.success(), "browser check failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["state"], "commanded", "the hub acknowledged the page's QoS 1 command: {seen}");
    assert_eq!(seen["granted5"], serde_json::json!([1]), "{seen}");

    let v5 = seen["v5"].as_array().unwrap();
    let topics = |topic: &str| v5.iter().filter(move |m| m["topic"] == topic).collect::<Vec<_>>();
    // The retained status, flagged as retained (MQTT-3.3.1-8).
    let status = topics("dash/status");
    assert_eq!(status.len(), 1, "{seen}");
    assert_eq!((&status[0]["payload"], &status[0]["retain"]), (&Value::from("online"), &Value::from(true)));
    // Every reading, in order, once, live (retain flag clear).
    let readings: Vec<&str> = topics("dash/reading").iter().map(|m| m["payload"].as_str().unwrap()).collect();
    let sent: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    assert_eq!(readings, sent, "{seen}");
    assert!(topics("dash/reading").iter().all(|m| m["retain"] == false && m["qos"] == 1));
    // The command back with its MQTT 5 properties (request/response).
    let command = topics("dash/cmd");
    assert_eq!(command.len(), 1, "{seen}");
    let properties = &command[0]["properties"];
    assert_eq!(properties["userProperties"], serde_json::json!({"who": "browser"}), "{seen}");
    assert_eq!(properties["responseTopic"], "dash/reply");
    assert_eq!(properties["correlationData"], "req-7");
    assert_eq!(properties["contentType"], "application/json");
    // The 3.1.1 client in the page, subscribed at QoS 0, got readings at QoS 0.
    let v4 = seen["v4"].as_array().unwrap();
    assert!(!v4.is_empty() && v4.iter().all(|m| m["topic"] == "dash/reading" && m["qos"] == 0), "{seen}");
}

#[test]
fn mqtt_js_in_node_resumes_a_session_with_qos_2_and_topic_aliases_both_ways() {
    mqtt_js_installed();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let tcp_port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap();
    let out = Command::new("node").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/mqtt_node.js")).arg(tcp_port).output();
    let out = out.expect("node (Node.js) runs the MQTT.js client");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said} {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(seen["first_session_present"], false, "{seen}");
    assert_eq!(seen["granted"], serde_json::json!([2]), "{seen}");
    assert_eq!(seen["connack_topic_alias_max"], 16, "the publisher may use aliases: {seen}");
    assert_eq!(seen["second_session_present"], true, "{seen}");

    let received = seen["received"].as_array().unwrap();
    let got = |qos: u64, topic: &str| -> Vec<String> {
        received.iter().filter(|m| m["qos"] == qos && m["topic"] == topic).map(|m| m["payload"].to_string()).collect()
    };
    // What came while it was away, at QoS 2, in order, once; then live
    // QoS 1 ones. Every message reached the application with its topic.
    let away: Vec<String> = (0..50).map(|i| format!("\"a{i}\"")).collect();
    let live: Vec<String> = (0..20).map(|i| format!("\"l{i}\"")).collect();
    assert_eq!(got(2, "node/away"), away, "{seen}");
    assert_eq!(got(1, "node/live"), live, "{seen}");
    assert_eq!(received.len(), 70, "{seen}");
    // The hub named later live messages by alias alone, and MQTT.js
    // resolved them; QoS 2 ones always carry their topic.
    assert!(received.iter().any(|m| m["named"] == false && m["alias"].is_u64()), "no alias used: {seen}");
    assert!(received.iter().filter(|m| m["qos"] == 2).all(|m| m["named"] == true), "{seen}");
}
