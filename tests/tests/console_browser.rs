//! The status page in a real browser: Debian's chromium driven through
//! chromedriver by Selenium (tests/console_browser.py) against the real
//! `cairn serve`. The page loads with no console errors, the lag it shows
//! per partition is `cairn group describe`'s, and a record published over
//! MQTT shows up in the live tail within 2 s.
//!
//! `CAIRN_SCREENSHOT=docs/console.png cargo test -p cairn-e2e --test
//! console_browser` also saves the screenshot the docs show.

mod common;

use std::process::Command;

use common::Hub;

#[test]
fn status_page_shows_lag_and_a_live_tail_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    assert!(hub.cli(&["topic", "create", "sensors", "--partitions", "2"], None).0);
    let input: String = (0..40).map(|i| format!("sensors/room{}:{{\"celsius\":{}.5}}\n", i % 4, 18 + i % 7)).collect();
    let (ok, _, err) = hub.cli(&["produce", "sensors", "--key-separator", ":"], Some(&input));
    assert!(ok, "{err}");
    // A group that read some and left (idle), as the page must show it.
    let (ok, _, err) =
        hub.cli(&["consume", "sensors", "--group", "dashboard", "--from-beginning", "--max", "15"], None);
    assert!(ok, "{err}");
    let (ok, out, err) = hub.cli(&["group", "describe", "dashboard", "--output", "json"], None);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let lags: Vec<serde_json::Value> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!({"group": "dashboard", "topic": p["topic"], "partition": p["partition"], "lag": p["lag"]}))
        .collect();
    assert_eq!(lags.iter().map(|l| l["lag"].as_u64().unwrap()).sum::<u64>(), 25);

    let url = format!("http://{}/", hub.http_addr.as_ref().unwrap());
    let port = hub.mqtt_addr.as_ref().unwrap().rsplit(':').next().unwrap().to_string();
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/console_browser.py")).args([
        &url,
        &port,
        "sensors",
        &serde_json::Value::from(lags).to_string(),
    ]);
    if let Ok(path) = std::env::var("CAIRN_SCREENSHOT") {
        cmd.arg(path);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "browser check failed: {}", String::from_utf8_lossy(&out.stderr));
    let measured: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("status page: {measured}");
    // One document, nothing else fetched at load, well under 200 KB.
    assert!(measured["bytes"].as_u64().unwrap() < 200 * 1024, "{measured}");
    let resources = measured["resources"].as_array().unwrap();
    assert!(resources.iter().all(|r| r.as_str().unwrap().starts_with(&url)), "only the hub itself: {measured}");
}
