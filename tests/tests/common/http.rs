//! The hub's HTTP listener from tests: GET with `ureq`, and `/metrics`
//! scraped and parsed by the Prometheus client library's OpenMetrics
//! parser (tests/prom_parse.py), which rejects anything malformed.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Hub;

/// GET `path` from the hub's HTTP listener: (status, body).
pub fn get(hub: &Hub, path: &str, auth: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let url = format!("http://{}{path}", hub.http_addr.as_ref().expect("the hub logged its HTTP address"));
    let mut request = agent.get(&url);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// One sample of the exposition.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    /// The family (a counter's name without `_total`, a histogram's
    /// without `_bucket`, …); `name` is empty for a family with no sample.
    pub family: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: serde_json::Value,
}

/// Scrapes `/metrics` and parses it with the Prometheus client library's
/// OpenMetrics parser (which rejects anything malformed).
pub fn scrape(hub: &Hub, auth: Option<&str>) -> Vec<Sample> {
    let (status, text) = get(hub, "/metrics", auth);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    let mut parser = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    parser.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(out.status.success(), "the Prometheus parser rejected /metrics: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The value of the sample named `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .and_then(|s| s.value.as_f64())
}

pub fn must(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}
