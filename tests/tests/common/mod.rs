//! Starting the real `cairn` binary for end-to-end tests: on a free
//! loopback port, with its own data directory, killed when dropped.

#![allow(dead_code)]

pub mod certs;
pub mod http;
pub mod mosquitto;
pub mod mqtt_client;
pub mod proxy;
pub mod raw_mqtt;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cairn auth init` on a stopped hub's data directory: the admin key it
/// made offline, as (key id, secret).
pub fn auth_init(data: &Path) -> (String, String) {
    let out =
        Command::new(cairn()).args(["auth", "init", "--output", "json", "--data-dir"]).arg(data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (made["key"].as_str().unwrap().to_string(), made["secret"].as_str().unwrap().to_string())
}

/// The `cairn` binary built by `cargo test --workspace` (the `cairn` crate's
/// integration tests make cargo build it before any test runs), next to
/// this test's own executable in `target/<profile>/`.
pub fn cairn() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("cairn");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p cairn`) or run `./scripts/test.sh`",
        bin.display()
    );
    bin
}

/// A running `cairn serve`.
pub struct Hub {
    pub child: Child,
    pub addr: String,
    /// The serial-over-TCP listener's address, when started with one.
    pub serial_addr: Option<String>,
    /// The (first) MQTT listener's address.
    pub mqtt_addr: Option<String>,
    /// Every MQTT listener's address.
    pub mqtt_addrs: Vec<String>,
    /// The TLS listeners' addresses, when started with them.
    pub native_tls_addr: Option<String>,
    pub mqtt_tls_addr: Option<String>,
    /// The HTTP listener's address (status page, /metrics).
    pub http_addr: Option<String>,
    pub data: PathBuf,
    /// What the hub logged until it said it was running.
    pub startup_log: Vec<String>,
    /// Everything it logged after that, as it arrives.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hub {
    /// Starts `cairn serve` on 127.0.0.1 with a free port and waits until it
    /// says it is running.
    pub fn start(data: &Path, extra: &[&str]) -> Hub {
        Hub::start_with_env(data, extra, &[])
    }

    /// [`Hub::start`] with environment variables set for the hub process.
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Hub {
        let mut cmd = Command::new(cairn());
        cmd.envs(env.iter().copied());
        Hub::start_command(cmd, data, extra)
    }

    /// [`Hub::start`] with another `cairn` binary, run by `runner` (an
    /// emulator such as `qemu-aarch64 -L /usr/aarch64-linux-gnu`, or
    /// `setpriv --reuid=cairn …` to run it as another user).
    pub fn start_via(runner: &[&str], binary: &Path, data: &Path, extra: &[&str]) -> Hub {
        let mut cmd = Command::new(runner[0]);
        cmd.args(&runner[1..]).arg(binary);
        Hub::start_command(cmd, data, extra)
    }

    /// Runs `cmd serve …` (`cmd` names the binary) and waits until it says it is running.
    fn start_command(mut cmd: Command, data: &Path, extra: &[&str]) -> Hub {
        cmd.arg("serve");
        if !extra.contains(&"--native-addr") {
            cmd.args(["--native-addr", "127.0.0.1:0"]);
        }
        // Never the default 0.0.0.0:1883: tests run side by side.
        if !extra.contains(&"--mqtt-addr") {
            cmd.args(["--mqtt-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--http-addr") && !extra.contains(&"--http") {
            cmd.args(["--http-addr", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cairn serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = Instant::now();
        let mut addr = None;
        let mut serial_addr = None;
        let mut mqtt_addrs = Vec::new();
        let (mut native_tls_addr, mut mqtt_tls_addr) = (None, None);
        let mut http_addr = None;
        let mut seen = Vec::new();
        while started.elapsed() < Duration::from_secs(30) {
            let Some(Ok(line)) = lines.next() else { break };
            let line = strip_ansi(&line);
            if let Some(rest) = line.split("addr=").nth(1) {
                let value = Some(rest.split_whitespace().next().unwrap().to_string());
                if line.contains("native protocol listening") {
                    addr = value;
                } else if line.contains("serial-over-TCP listening") {
                    serial_addr = value;
                } else if line.contains("MQTT listening") {
                    mqtt_addrs.extend(value);
                } else if line.contains("native protocol over TLS listening") {
                    native_tls_addr = value;
                } else if line.contains("MQTT over TLS listening") {
                    mqtt_tls_addr = value;
                } else if line.contains("HTTP listening") {
                    http_addr = value;
                }
            }
            let running = line.contains("cairn is running");
            seen.push(line);
            if running {
                // Keep draining stderr so the hub never blocks on a full
                // pipe, keeping the lines for tests that read the log.
                let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let keep = log.clone();
                std::thread::spawn(move || {
                    for line in lines.by_ref().map_while(Result::ok) {
                        keep.lock().unwrap().push(line);
                    }
                });
                let addr = addr.expect("the hub logged its native address");
                let mqtt_addr = mqtt_addrs.first().cloned();
                return Hub {
                    child,
                    addr,
                    serial_addr,
                    mqtt_addr,
                    mqtt_addrs,
                    native_tls_addr,
                    mqtt_tls_addr,
                    http_addr,
                    data: data.to_path_buf(),
                    startup_log: seen,
                    log,
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("cairn serve did not start: {seen:#?}");
    }

    /// Starts `cairn serve` with `toml` as its config file (written to
    /// `dir/cairn.toml`) and its data in `dir/data`.
    pub fn start_with_config(dir: &Path, toml: &str) -> Hub {
        let config = dir.join("cairn.toml");
        std::fs::write(&config, toml).unwrap();
        Hub::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
    }

    /// `cairn uplink describe NAME --output json`.
    pub fn uplink(&self, name: &str) -> serde_json::Value {
        let (ok, out, err) = self.cli(&["uplink", "describe", name, "--output", "json"], None);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// [`Hub::uplink`] once `ready` holds, or as it is after `within`.
    pub fn uplink_when(
        &self,
        name: &str,
        within: Duration,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let status = self.uplink(name);
            if ready(&status) || started.elapsed() > within {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, like a power cut for the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes with its connections open, as a hung
    /// hub (or a peer gone without a reset) looks to its clients.
    pub fn pause(&self) {
        self.signal("-STOP");
        // The stop is asynchronous: a thread running on another core goes on
        // until the kernel interrupts it (on a busy virtual machine, long
        // enough to answer one more request). Wait until every thread is
        // stopped.
        let started = Instant::now();
        while !self.stopped() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(self.stopped(), "the hub did not stop within 5 s of SIGSTOP");
    }

    /// Whether every thread of the hub is stopped (state T in /proc).
    fn stopped(&self) -> bool {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else { return false };
        threads.flatten().all(|thread| {
            let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    }

    /// SIGCONT after [`Hub::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn signal(&self, which: &str) {
        let status = Command::new("kill").arg(which).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {which} failed");
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if started.elapsed() > Duration::from_secs(20) {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a `cairn` client command against this hub; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        self.cli_env(&[], args, stdin)
    }

    /// [`Hub::cli`] with environment variables set (`CAIRN_API_KEY`, …).
    pub fn cli_env(&self, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new(cairn());
        cmd.envs(env.iter().copied());
        cmd.args(args).args(["--hub", &self.addr]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The values of partition 0 of `topic`, as text, from the start.
pub async fn values(client: &cairn_client::Client, topic: &str) -> Vec<String> {
    let fetched = client.fetch(topic, 0, 0, 1 << 20, Duration::ZERO).await.unwrap();
    fetched.records().map(|r| String::from_utf8_lossy(r.value).into_owned()).collect()
}

/// Builds a plugin crate made by `cairn plugin new` as scripts/build-plugins.sh
/// builds the examples, into the workspace's target directory with the
/// workspace's lock file, offline (the SDK's dependencies are reused, so it is
/// quick); returns the `.wasm`, deleted first so an older build cannot pass.
pub fn build_plugin_crate(crate_dir: &Path) -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(workspace.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let target = workspace.join("target");
    let lib = crate_dir.file_name().unwrap().to_string_lossy().replace('-', "_");
    let wasm = target.join(format!("wasm32-unknown-unknown/release/{lib}.wasm"));
    let _ = std::fs::remove_file(&wasm);
    let build = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--release", "--target", "wasm32-unknown-unknown"])
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .current_dir(crate_dir)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    assert!(wasm.exists(), "{} was built", wasm.display());
    wasm
}
