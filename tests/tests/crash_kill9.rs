//! Durability under a real `kill -9`: a child process appends under load and
//! prints each acknowledged batch; we SIGKILL it at a random moment, reopen
//! the database, and check that every acknowledged record is there, at its
//! offset, with no gaps. Ten kills in a row on the same database, so recovery
//! also has to survive being interrupted again. Every other run commits with
//! redb's quick repair on, so both ways of reopening after a crash (the full
//! walk, the default, and the saved allocator state) are checked, each after
//! the other.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_log::{Log, LogOptions};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 3;

struct Ack {
    base: u64,
    last: u64,
    task: u32,
    first: u64,
    count: u64,
}

fn parse(line: &str) -> Option<(u32, Ack)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 7 || f[0] != "ACK" {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    Some((n(1)? as u32, Ack { base: n(2)?, last: n(3)?, task: n(4)? as u32, first: n(5)?, count: n(6)? }))
}

#[test]
fn acknowledged_records_survive_kill_9_ten_times() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.redb");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut total_acked = 0u64;
    // Everything acknowledged in any run, by partition: (base, run, ack).
    let mut acked: BTreeMap<u32, Vec<(String, Ack)>> = BTreeMap::new();

    for run in 0..10 {
        let run_id = format!("r{run}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_appender"))
            .arg(&db)
            .arg(&run_id)
            .args((run % 2 == 1).then_some("quick-repair"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crash_appender");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

        // Kill after a random number of acks (and at least some), or after
        // 20 s if the child is too slow to get there.
        let kill_after = fastrand::u64(5..400);
        let started = Instant::now();
        let mut seen = 0;
        while seen < kill_after && started.elapsed() < Duration::from_secs(20) {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some((p, ack)) = parse(&line) {
                        acked.entry(p).or_default().push((run_id.clone(), ack));
                        seen += 1;
                    }
                }
                _ => break,
            }
        }
        // A random extra moment, so the kill does not always land right
        // after a print.
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..3000)));
        child.kill().expect("SIGKILL the appender"); // Child::kill sends SIGKILL on Unix
                                                     // Whatever it printed before dying counts as acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some((p, ack)) = parse(&line) {
                acked.entry(p).or_default().push((run_id.clone(), ack));
                seen += 1;
            }
        }
        child.wait().unwrap();
        assert!(seen > 0, "run {run}: the child acknowledged nothing");
        total_acked += seen;

        // Reopen (redb recovers from the crash) and check everything.
        runtime.block_on(async {
            let log = Log::open(&db, LogOptions { retention_check_interval: None, ..LogOptions::default() })
                .unwrap_or_else(|e| panic!("run {run}: reopen after kill -9 failed: {e}"));
            for p in 0..PARTITIONS {
                let stored = log.read_records(TOPIC, p, 0, usize::MAX).unwrap();
                let end = log.offsets(TOPIC, p).unwrap().end;
                // Dense: offsets 0..end, no gaps, nothing past the end.
                assert_eq!(stored.len() as u64, end, "run {run} partition {p}: gap in offsets");
                for (i, r) in stored.iter().enumerate() {
                    assert_eq!(r.offset, i as u64, "run {run} partition {p}");
                }
                // Every acknowledged record is stored where its ack said.
                for (run_id, ack) in acked.get(&p).map(|v| v.as_slice()).unwrap_or(&[]) {
                    assert_eq!(ack.last - ack.base + 1, ack.count);
                    assert!(ack.last < end, "run {run}: acked offset {} lost (end {end})", ack.last);
                    for i in 0..ack.count {
                        let value = String::from_utf8_lossy(&stored[(ack.base + i) as usize].record.value).into_owned();
                        let expected = format!("{run_id}-t{}-n{}", ack.task, ack.first + i);
                        assert_eq!(value, expected, "run {run} partition {p} offset {}", ack.base + i);
                    }
                }
            }
            log.close().await.unwrap();
        });
    }
    assert!(total_acked >= 10);
}

/// A derived topic's outputs and its source position are one transaction:
/// killed at random moments, the deriver resumes from the committed position
/// and the output holds every source record's output exactly once, in order.
#[test]
fn derived_outputs_are_exactly_once_across_kill_9() {
    const SOURCE: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("derive.redb");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let check = |label: &str| -> u64 {
        runtime.block_on(async {
            let log = Log::open(&db, LogOptions { retention_check_interval: None, ..LogOptions::default() })
                .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
            let committed = log.committed_offsets("derive.out", "src").unwrap().first().map_or(0, |(_, o)| *o);
            let out = log.read_records("out", 0, 0, usize::MAX).unwrap();
            // One output per source record below the committed position, and
            // none past it: outputs and position moved together.
            assert_eq!(out.len() as u64, committed, "{label}: outputs vs committed position");
            for (i, r) in out.iter().enumerate() {
                assert_eq!(r.record.value, format!("out-v{i}").into_bytes(), "{label}: output {i}");
            }
            log.close().await.unwrap();
            committed
        })
    };
    for (kills, run) in (0..200).enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_deriver"))
            .arg(&db)
            .arg(SOURCE.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crash_deriver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = fastrand::u64(1..30);
        let mut seen = 0;
        let mut finished = true;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.starts_with("COMMITTED ") {
                seen += 1;
                if seen >= kill_after {
                    finished = false;
                    break;
                }
            }
        }
        if finished {
            // Ran to the end of the source without being killed.
            child.wait().unwrap();
            let committed = check(&format!("run {run} (finished)"));
            assert_eq!(committed, SOURCE);
            assert!(kills >= 3, "only {kills} kills before the deriver finished");
            return;
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..3000)));
        child.kill().expect("SIGKILL the deriver");
        child.wait().unwrap();
        check(&format!("run {run} (killed)"));
    }
    panic!("the deriver did not finish the source in 200 runs");
}
