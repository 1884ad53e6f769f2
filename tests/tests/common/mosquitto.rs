//! Debian's Mosquitto as the other broker of a test: the upstream of an
//! uplink, or the broker that bridges to the hub.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's Mosquitto on 127.0.0.1:`port`, persisting its sessions in `dir`
/// (so a subscriber's session survives a restart), with no queue limit (so
/// it never drops what the test counts).
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    conf: PathBuf,
}

impl Mosquitto {
    pub fn start(dir: &Path, port: u16) -> Mosquitto {
        Mosquitto::start_with(dir, port, "")
    }

    /// With `extra` lines in its config (after the listener's).
    pub fn start_with(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{extra}allow_anonymous true\nuser root\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 0\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = spawn_mosquitto(&conf);
        wait_for_port(port);
        Mosquitto { child, port, conf }
    }

    /// SIGTERM: Mosquitto saves its sessions and exits.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.child = spawn_mosquitto(&self.conf);
        wait_for_port(self.port);
    }
}

fn spawn_mosquitto(conf: &Path) -> Child {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists());
    let bin = bin.expect("mosquitto is missing: run ./scripts/test.sh, which installs it");
    Command::new(bin).arg("-c").arg(conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
