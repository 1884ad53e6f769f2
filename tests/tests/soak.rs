//! The soak, short (the 10-minute run with 1,000 devices is
//! `scripts/soak.sh`; what it checks is in `src/bin/soak.rs` and
//! docs/RELIABILITY.md): 50 MQTT devices at one reading a second, 3
//! subscribers and a consumer group for 10 s; nothing lost, and the samples
//! written.

mod common;

use std::process::Command;

#[test]
fn a_short_soak_loses_nothing_and_samples_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("soak.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .arg(common::cairn())
        .args(["50", "3", "10", "5"])
        .arg(&csv)
        .output()
        .expect("run the soak");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the soak failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
    let samples = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<f64>> =
        samples.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 2, "{samples}");
    for row in &rows {
        assert_eq!(row.len(), 8, "{samples}");
        assert!(row[1] > 1.0 && row[2] > 50.0, "RSS and open files (each device a socket): {samples}");
        assert!(row[3] > 0.0 && row[4] >= row[3], "published, and delivered to 3 subscribers: {samples}");
    }
}
