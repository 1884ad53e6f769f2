//! A `cairn serve` process on fixed loopback ports, for the long-running
//! audits (`src/bin/chaos.rs`, `src/bin/soak.rs`): it can be killed and
//! started again on the same ports and data, and its log goes to a file.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The hub under test: always the same ports and data directory.
pub struct HubProcess {
    pub cairn: PathBuf,
    pub data: PathBuf,
    pub native: String,
    pub mqtt: String,
    pub http: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl HubProcess {
    /// Picks free ports; `start` runs it.
    pub fn new(cairn: PathBuf, data: PathBuf, log: PathBuf) -> HubProcess {
        HubProcess { cairn, data, native: free_port(), mqtt: free_port(), http: free_port(), log, child: None }
    }

    /// Starts `cairn serve` and waits until its native and MQTT ports answer.
    pub fn start(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).expect("hub log file");
        let child = Command::new(&self.cairn)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--native-addr", &self.native, "--mqtt-addr", &self.mqtt, "--http-addr", &self.http])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start cairn serve");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(&self.native).is_err() || TcpStream::connect(&self.mqtt).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the hub did not start in 60 s (see {:?})", self.log);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The MQTT port.
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("host:port")
    }

    /// SIGKILL: a power cut, as far as the process can tell.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the hub");
            child.wait().expect("reap the hub");
        }
    }

    /// Runs a `cairn` client command against the hub; panics if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cairn).args(args).args(["--hub", &self.native]).output().expect("run cairn");
        assert!(out.status.success(), "cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().to_string()
}
