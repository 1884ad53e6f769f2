//! A browser dashboard, for real: MQTT.js (the JavaScript MQTT client,
//! its browser bundle) in Debian's chromium, driven by Selenium
//! (tests/mqtt_browser.py), against the real `cairn serve`'s MQTT over
//! WebSocket listener, while a device publishes over TCP with paho-mqtt.
//! The page gets the retained status, every reading in order and exactly
//! once, and its own MQTT 5 command back with its properties; a 3.1.1
//! client in the page is served too.
//!
//! `./scripts/test.sh` installs MQTT.js (tests/js, pinned by its
//! package-lock.json), chromium, chromedriver, selenium and paho-mqtt.

mod common;

use std::process::Command;

use common::Hub;
use serde_json::Value;

#[test]
fn mqtt_js_in_chromium_serves_a_dashboard_over_websocket() {
    let mqtt_js = concat!(env!("CARGO_MANIFEST_DIR"), "/js/node_modules/mqtt/dist/mqtt.min.js");
    assert!(std::path::Path::new(mqtt_js).exists(), "{mqtt_js} missing: ./scripts/test.sh installs MQTT.js");
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--mqtt-ws-addr", "127.0.0.1:0"]);
    let line =
        hub.startup_log.iter().find(|l| l.contains("MQTT over WebSocket listening")).expect("a WebSocket listener");
    let ws_port = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap().rsplit(':').next().unwrap();
    let tcp_port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap();

    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/mqtt_browser.py"))
        .args([ws_port, tcp_port, mqtt_js])
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
