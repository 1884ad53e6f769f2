//! The mixed-load crash audit, 3 rounds (the 20-round run is
//! `scripts/chaos.sh`; what it checks is in `src/bin/chaos.rs` and
//! docs/RELIABILITY.md): the real hub under native, MQTT, plugin and group
//! load at once, killed with -9 three times, then audited.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn three_kill_9_rounds_under_mixed_load_lose_and_duplicate_nothing() {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-unknown-unknown/release");
    assert!(
        plugins.join("cairn_plugin_threshold.wasm").exists(),
        "the example plugins are missing: run scripts/build-plugins.sh first"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .arg(common::cairn())
        .arg(&plugins)
        .arg("3")
        .output()
        .expect("run the chaos audit");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "the audit failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
}
