//! The hub cross-built for a 64-bit ARM gateway (aarch64, as on a Raspberry
//! Pi 4/5), run where it will run: under `qemu-aarch64` (Debian's
//! qemu-user, which runs one Linux ARM program on this machine). It starts,
//! stores an MQTT publish and a native produce, runs a WebAssembly plugin
//! (compiled by wasmtime's aarch64 backend), and stops cleanly on SIGTERM.
//!
//! The binary is `target/aarch64-unknown-linux-gnu/gateway-test/cairn`,
//! built by `scripts/test.sh` with `PROFILE=gateway-test
//! scripts/build-gateway.sh aarch64-unknown-linux-gnu --no-kafka`;
//! `CAIRN_AARCH64_BIN` names another (the `dist` build, to measure it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_client::Client;
use common::{values, Hub};

fn aarch64_binary() -> PathBuf {
    let bin = std::env::var_os("CAIRN_AARCH64_BIN").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/aarch64-unknown-linux-gnu/gateway-test/cairn")
    });
    assert!(
        bin.exists(),
        "{} is missing: build it with `PROFILE=gateway-test scripts/build-gateway.sh aarch64-unknown-linux-gnu --no-kafka` \
         (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// ELF's machine field (bytes 18–19, little-endian): 0xB7 is AArch64.
fn elf_machine(path: &Path) -> u16 {
    use std::io::Read;
    let mut bytes = [0u8; 20];
    std::fs::File::open(path).unwrap().read_exact(&mut bytes).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is an ELF file", path.display());
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// Resident memory of a process, from /proc, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aarch64_build_serves_mqtt_native_and_a_plugin_under_qemu() {
    let bin = aarch64_binary();
    assert_eq!(elf_machine(&bin), 0xB7, "{} is an aarch64 binary", bin.display());
    assert!(
        Command::new("qemu-aarch64").arg("--version").output().is_ok_and(|o| o.status.success()),
        "qemu-aarch64 is missing: install Debian's qemu-user (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    // -L: where the ARM C library and dynamic loader are (Debian's
    // libc6-arm64-cross, installed with the cross compiler). The loader
    // must load that C library, not the one of libc6:arm64 (installed with
    // libssl-dev:arm64 for a build with Kafka, and named in this machine's
    // ld.so.cache): a loader and libc of different builds hang at start.
    // Other ARM libraries (libssl3) are still found where Debian puts them.
    let runner = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-E", "LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib"];
    let mut hub = Hub::start_via(&runner, &bin, dir.path(), &[]);
    // Idle, as an operator would see it on the box (here the emulator's own
    // memory is included, so the real figure is lower).
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("idle RSS of the aarch64 hub under qemu-aarch64: {} KiB", rss_kib(hub.child.id()));

    // An MQTT publish (Debian's mosquitto_pub, QoS 1: acknowledged once stored).
    let mqtt_port = hub.mqtt_addr.clone().unwrap().rsplit(':').next().unwrap().to_string();
    let published = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port, "-q", "1", "-t", "sensors/t1", "-m", "21.5"])
        .output()
        .expect("mosquitto_pub (mosquitto-clients) is installed");
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    // A native produce with the x86-64 `cairn` client: the same bytes on both architectures.
    let (ok, _, err) = hub.cli(&["topic", "create", "readings"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["produce", "readings"], Some("1\n2\n3\n"));
    assert!(ok, "{err}");

    // A plugin, compiled on the ARM side: threshold keeps readings of 20 and over.
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-unknown-unknown/release/cairn_plugin_threshold.wasm");
    assert!(wasm.exists(), "{} is missing: run scripts/build-plugins.sh first", wasm.display());
    let (ok, out, err) = hub.cli(&["plugin", "upload", wasm.to_str().unwrap(), "--name", "threshold"], None);
    assert!(ok && out.contains("threshold@1"), "{out}{err}");
    let (ok, _, err) = hub.cli(&["topic", "create", "temps"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["plugin", "attach", "temps", "threshold@1", "--params", "min=20"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["produce", "temps"], Some("19.5\n25\n12\n30.5\n"));
    assert!(ok, "{err}");

    let client = Client::connect(&hub.addr).await.unwrap();
    assert_eq!(values(&client, "sensors").await, ["21.5"], "the MQTT publish is stored");
    assert_eq!(values(&client, "readings").await, ["1", "2", "3"], "the native produce is stored");
    assert_eq!(values(&client, "temps").await, ["25", "30.5"], "the plugin filtered on ingest");
    drop(client);

    assert!(hub.terminate(), "SIGTERM: a clean exit (status 0)");
    // Its last lines are still being read from the pipe.
    let said_stopped = || hub.log.lock().unwrap().iter().any(|l| l.contains("stopped"));
    let waited = std::time::Instant::now();
    while !said_stopped() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(said_stopped(), "the hub said it stopped: {:#?}", hub.log.lock().unwrap());
}
