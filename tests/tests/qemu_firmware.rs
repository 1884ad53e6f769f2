//! The example firmware (firmware/qemu-lm3s6965) booted in qemu-system-arm:
//! the real TMP102 driver on a simulated I²C bus, the real publisher, UART0
//! connected to the hub's serial-over-TCP listener. The readings are read
//! back with `cairn consume`.
//!
//! `scripts/test.sh` installs QEMU and builds the firmware before the tests.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Hub;

fn firmware_elf() -> PathBuf {
    let elf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/qemu-lm3s6965/target/thumbv7m-none-eabi/release/qemu-temperature");
    assert!(elf.exists(), "{} is missing: run ./scripts/test.sh (it builds the example firmware)", elf.display());
    elf
}

/// What the simulated sensor reads for conversion `n` (as in
/// `sim_bus::reading`), as the driver reports it: milli-degrees Celsius.
fn expected_milli_celsius(n: u32) -> i32 {
    let raw = (n * 37 % 640) as i32 - 192;
    raw * 125 / 2
}

#[test]
fn firmware_in_qemu_publishes_readings_through_uart0_to_the_hub() {
    let elf = firmware_elf();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--serial-tcp-addr", "127.0.0.1:0"]);
    // The board has no clock: timestamps start at 0, so keep records forever.
    let (ok, _, err) = hub.cli(&["topic", "create", "temperature", "--retention-ms", "-1"], None);
    assert!(ok, "{err}");

    let serial = hub.serial_addr.clone().unwrap();
    let mut qemu = Command::new("qemu-system-arm")
        .args(["-machine", "lm3s6965evb", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-serial")
        .arg(format!("tcp:{serial}"))
        .arg("-kernel")
        .arg(&elf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-arm is installed (./scripts/test.sh installs it)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = qemu.kill();
            panic!("the firmware did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = qemu.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(status.success(), "firmware failed: {printed} {}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("published=200 acked=200"), "{printed}");

    let (ok, out, err) = hub.cli(&["consume", "temperature", "--from-beginning", "--output", "json"], None);
    assert!(ok, "{err}");
    let records: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 200);
    for (n, r) in records.iter().enumerate() {
        let n = n as u32;
        assert_eq!(r["key"], "lm3s6965-1");
        assert_eq!(r["offset"], u64::from(n));
        assert_eq!(r["timestamp"], i64::from(n) * 1000);
        assert_eq!(r["value"], expected_milli_celsius(n).to_string(), "reading {n}");
    }
    // Negative temperatures went through the driver and the wire intact.
    assert!(records.iter().any(|r| r["value"].as_str().unwrap().starts_with('-')));
}
