//! The real `cairn` binary: help on every command, `serve` on a fresh data
//! directory with graceful shutdown on SIGTERM, and a clear error when the
//! data directory is unusable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cairn;

#[test]
fn every_command_has_help() {
    let commands: [&[&str]; 9] = [
        &["--help"],
        &["serve", "--help"],
        &["bench", "--help"],
        &["bench", "storage", "--help"],
        &["bench", "produce", "--help"],
        &["bench", "consume", "--help"],
        &["bench", "e2e", "--help"],
        &["bench", "mqtt", "--help"],
        &["bench", "plugin", "--help"],
    ];
    for args in commands {
        let out = Command::new(cairn()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: cairn"), "{args:?}: {text}");
    }
    let out = Command::new(cairn()).arg("no-such-command").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

/// `cairn bench storage --output json`: one JSON document per run, then the
/// medians, each with the records the run stored.
#[test]
fn bench_storage_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "storage", "--records", "2000", "--batch-records", "100", "--appenders", "4"];
    let more = ["--single-secs", "1", "--runs", "2", "--output", "json", "--dir"];
    let out = Command::new(cairn()).args(args).args(more).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(docs.len(), 3, "two runs and the medians: {stdout}");
    for (i, run) in docs[..2].iter().enumerate() {
        assert_eq!(run["run"], i + 1);
        assert!(run["records_stored"].as_u64().unwrap() >= 2000, "{run}");
        assert!(run["batched_records_per_sec"].as_f64().unwrap() > 0.0, "{run}");
    }
    assert_eq!(docs[2]["runs"], 2);
    assert!(docs[2]["median"]["single_records_per_sec"].as_f64().unwrap() > 0.0, "{}", docs[2]);
}

/// Starts `cairn serve`, waits for it to say it is running, and returns it
/// with the lines it printed. Callers kill or stop and then wait for it.
fn start_serve(data: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(cairn())
        .args(["serve", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let Some(Ok(line)) = lines.next() else { break };
        let running = line.contains("cairn is running");
        seen.push(line);
        if running {
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (child, seen);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cairn serve did not start: {seen:#?}");
}

#[test]
fn serve_opens_the_log_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, _) = start_serve(&data);
    assert!(data.join("cairn.redb").exists(), "the log is created in the data directory");

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "cairn did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");

    // The database was closed cleanly: a second hub opens it at once.
    let (mut again, _) = start_serve(&data);
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn serve_refuses_an_unusable_data_dir_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(cairn())
        .args(["serve", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create data directory"), "{err}");
}

#[test]
fn a_second_hub_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = start_serve(dir.path());
    let out = Command::new(cairn())
        .args(["serve", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already open in another process"), "{err}");
}
