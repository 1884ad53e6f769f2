//! The Debian package (`cargo deb`, hub/cli/debian/), installed on this
//! machine with dpkg as an operator would: files where Debian puts them, a
//! `cairn` system user, the data in /var/lib/cairn, a systemd unit that
//! `systemd-analyze verify` accepts. systemd is not running here, so the
//! unit's ExecStart line is run as its User=; then an upgrade keeps the
//! log and the operator's edit of the config, and a purge removes them.
//!
//! A plugin crate scaffolded by the installed binary builds: the scaffold
//! carries the SDK, nothing points into a source tree.
//!
//! It packages the `cairn` binary the tests run (the debug build), with
//! cargo-deb (installed by scripts/test.sh), and needs root (dpkg).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_client::Client;
use common::Hub;

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Packages the test build of `cairn` as version `version` into `dir`.
fn build_deb(dir: &Path, version: &str) -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    common::cairn(); // the binary exists (it is what is packaged)
    let out = Command::new(env!("CARGO"))
        .args(["deb", "-p", "cairn", "--no-build", "--profile", "dev", "--fast", "-q", "--deb-version", version])
        .arg("-o")
        .arg(dir)
        .current_dir(&workspace)
        .output()
        .expect("cargo deb");
    assert!(
        out.status.success(),
        "cargo deb failed (cargo-deb is installed by scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    PathBuf::from(path)
}

/// Purges the package however the test ends: this machine is left as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "cairn"]).output();
    }
}

fn uid_of(user: &str) -> u32 {
    let out = run("id", &["-u", user]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The unit's `ExecStart=` line, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("the unit has ExecStart=");
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs the unit's ExecStart line as its User=, as systemd would (same
/// binary, same arguments, same user), on free loopback ports.
fn start_as_service(exec: &[String]) -> Hub {
    assert_eq!(exec[..2], ["/usr/bin/cairn".to_string(), "serve".to_string()], "{exec:?}");
    let extra: Vec<&str> = exec[2..].iter().map(String::as_str).collect();
    let runner = ["setpriv", "--reuid=cairn", "--regid=cairn", "--init-groups", "--"];
    Hub::start_via(&runner, Path::new("/usr/bin/cairn"), Path::new("/var/lib/cairn"), &extra)
}

async fn values(hub: &Hub, topic: &str) -> Vec<String> {
    common::values(&Client::connect(&hub.addr).await.unwrap(), topic).await
}

/// `cairn plugin new` from the installed binary, then a WebAssembly build:
/// nothing in the crate points into a source tree.
fn scaffold_and_build_a_plugin(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out =
        Command::new("/usr/bin/cairn").args(["plugin", "new", "packaged-filter"]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let crate_dir = dir.join("packaged-filter");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let mut pending = vec![crate_dir.clone()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(workspace.to_str().unwrap()), "{} names the source tree", path.display());
        }
    }
    common::build_plugin_crate(&crate_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_runs_as_its_user_upgrades_keeping_data_and_config_and_purges() {
    let me = run("id", &["-u"]);
    assert_eq!(String::from_utf8_lossy(&me.stdout).trim(), "0", "dpkg -i needs root (CI runs as root)");
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (build_deb(dir.path(), "0.1.0-1"), build_deb(dir.path(), "0.1.0-2"));
    let _ = Command::new("dpkg").args(["--purge", "cairn"]).output(); // a leftover of an interrupted run
    let _installed = Installed;
    run("dpkg", &["-i", v1.to_str().unwrap()]);

    // Where Debian puts things, owned by whom it should be.
    let cairn_uid = uid_of("cairn");
    assert!(cairn_uid > 0 && cairn_uid < 1000, "cairn is a system user (uid {cairn_uid})");
    let data = std::fs::metadata("/var/lib/cairn").unwrap();
    assert_eq!((data.uid(), data.mode() & 0o777), (cairn_uid, 0o750), "/var/lib/cairn: the service's own");
    let config = std::fs::metadata("/etc/cairn/cairn.toml").unwrap();
    assert_eq!((config.uid(), config.mode() & 0o777), (0, 0o640), "the config: root's, readable by the service");
    let conffiles = run("dpkg-query", &["-W", "-f=${Conffiles}", "cairn"]);
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains("/etc/cairn/cairn.toml"), "a conffile");
    let unit_path = ["/lib/systemd/system/cairn.service", "/usr/lib/systemd/system/cairn.service"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("the package installs cairn.service");
    let unit = std::fs::read_to_string(unit_path).unwrap();
    for hardening in ["ProtectSystem=strict", "StateDirectory=cairn", "NoNewPrivileges=yes", "PrivateTmp=yes"] {
        assert!(unit.contains(hardening), "the unit sets {hardening}");
    }
    run("systemd-analyze", &["verify", unit_path]);
    run("/usr/bin/cairn", &["--version"]);

    // A plugin author with only the package: the scaffold carries its SDK.
    scaffold_and_build_a_plugin(&dir.path().join("author"));

    // The service, as systemd would start it: writes its log as `cairn`.
    let exec = exec_start(&unit);
    let mut hub = start_as_service(&exec);
    let (ok, _, err) = hub.cli(&["topic", "create", "readings"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = hub.cli(&["produce", "readings"], Some("21.5\n"));
    assert!(ok, "{err}");
    assert_eq!(values(&hub, "readings").await, ["21.5"]);
    assert!(hub.terminate(), "SIGTERM: a clean exit");
    let db = std::fs::read_dir("/var/lib/cairn").unwrap().next().expect("the log is in /var/lib/cairn").unwrap();
    assert_eq!(db.metadata().unwrap().uid(), cairn_uid, "written by the service user");

    // The operator edits the config; an upgrade keeps the edit and the log.
    let edited = std::fs::read_to_string("/etc/cairn/cairn.toml").unwrap() + "# edited by the operator\n";
    std::fs::write("/etc/cairn/cairn.toml", &edited).unwrap();
    run("dpkg", &["-i", v2.to_str().unwrap()]);
    let version = run("dpkg-query", &["-W", "-f=${Version}", "cairn"]);
    assert_eq!(String::from_utf8_lossy(&version.stdout), "0.1.0-2");
    assert_eq!(std::fs::read_to_string("/etc/cairn/cairn.toml").unwrap(), edited, "the upgrade kept the edit");
    let mut hub = start_as_service(&exec);
    assert_eq!(values(&hub, "readings").await, ["21.5"], "the upgrade kept the log");
    assert!(hub.terminate());

    // Removing keeps the log and the config; purging deletes them and the user.
    run("dpkg", &["--remove", "cairn"]);
    assert!(!Path::new("/usr/bin/cairn").exists());
    assert!(Path::new("/var/lib/cairn").exists() && Path::new("/etc/cairn/cairn.toml").exists());
    let purge = run("dpkg", &["--purge", "cairn"]);
    let said = String::from_utf8_lossy(&purge.stdout).into_owned() + &String::from_utf8_lossy(&purge.stderr);
    assert!(!Path::new("/var/lib/cairn").exists() && !Path::new("/etc/cairn/cairn.toml").exists(), "{said}");
    assert!(!Command::new("id").arg("cairn").output().unwrap().status.success(), "the user is gone: {said}");
}
