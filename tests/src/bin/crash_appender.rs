//! Appends to a log as fast as it can from several tasks and prints one line
//! per acknowledged batch, flushed before the next append starts:
//!
//! `ACK <partition> <base offset> <last offset> <task> <first counter> <count>`
//!
//! The crash test kills this process with SIGKILL at a random moment and then
//! checks that every printed batch is in the log. Usage:
//! `crash_appender <db path> <run id> [quick-repair]`. Stops by itself after
//! 60 s.

use std::io::Write;
use std::time::{Duration, Instant};

use cairn_log::{Log, LogError, LogOptions, TopicConfig};
use cairn_proto::{BatchWriter, OwnedRecord};

pub const TOPIC: &str = "crash";
pub const PARTITIONS: u32 = 3;
const TASKS: u32 = 8;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(run)) = (args.next(), args.next()) else {
        eprintln!("usage: crash_appender <db path> <run id> [quick-repair]");
        std::process::exit(2);
    };
    let quick_repair = args.next().is_some_and(|a| a == "quick-repair");
    let options = LogOptions { retention_check_interval: None, quick_repair, ..LogOptions::default() };
    let log = Log::open(&path, options).expect("open log");
    match log.create_topic(TOPIC, TopicConfig::with_partitions(PARTITIONS)).await {
        Ok(_) | Err(LogError::TopicExists(_)) => {}
        Err(e) => panic!("create topic: {e}"),
    }
    let (lines, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let deadline = Instant::now() + Duration::from_secs(60);
    for task in 0..TASKS {
        let (log, lines, run) = (log.clone(), lines.clone(), run.clone());
        tokio::spawn(async move {
            let partition = task % PARTITIONS;
            let mut counter = 0u64;
            while Instant::now() < deadline {
                let count = 1 + (counter % 17) as usize;
                let mut w = BatchWriter::new(Vec::new()).unwrap();
                for c in counter..counter + count as u64 {
                    let value = format!("{run}-t{task}-n{c}");
                    w.push_owned(&OwnedRecord::new(value.into_bytes(), 1_700_000_000_000)).unwrap();
                }
                let ack = log.append(TOPIC, partition, w.finish().unwrap()).await.expect("append");
                let line =
                    format!("ACK {partition} {} {} {task} {counter} {count}\n", ack.base_offset, ack.last_offset);
                if lines.send(line).is_err() {
                    return;
                }
                counter += count as u64;
            }
        });
    }
    drop(lines);
    // One printer so lines never interleave; each is flushed at once so the
    // test sees every ack that happened before the kill.
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        out.write_all(line.as_bytes()).expect("stdout");
        out.flush().expect("stdout");
    }
}
