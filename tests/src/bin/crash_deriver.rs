//! Derives topic `out` from topic `src` the way a derived-topic attachment
//! will: read from the group's committed offset, transform, then store the
//! outputs and the new source position in one transaction. Prints
//! `COMMITTED <offset>` after each transaction; exits when `src` is done.
//!
//! The crash test SIGKILLs it at random moments and checks that `out` holds
//! each source record's output exactly once. Usage:
//! `crash_deriver <db path> <source records>`. Stops by itself after 60 s.

use std::io::Write;
use std::time::{Duration, Instant};

use cairn_log::{Log, LogError, LogOptions, OffsetCommit, TopicConfig};
use cairn_proto::{BatchWriter, OwnedRecord};

const GROUP: &str = "derive.out";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(Ok(total))) = (args.next(), args.next().map(|n| n.parse::<u64>())) else {
        eprintln!("usage: crash_deriver <db path> <source records>");
        std::process::exit(2);
    };
    let log =
        Log::open(&path, LogOptions { retention_check_interval: None, ..LogOptions::default() }).expect("open log");
    for topic in ["src", "out"] {
        match log.create_topic(topic, TopicConfig::default()).await {
            Ok(_) | Err(LogError::TopicExists(_)) => {}
            Err(e) => panic!("create topic: {e}"),
        }
    }
    // The source, written once.
    while log.offsets("src", 0).unwrap().end < total {
        let from = log.offsets("src", 0).unwrap().end;
        let mut w = BatchWriter::new(Vec::new()).unwrap();
        for i in from..total.min(from + 1000) {
            w.push_owned(&OwnedRecord::new(format!("v{i}").into_bytes(), 1)).unwrap();
        }
        log.append("src", 0, w.finish().unwrap()).await.expect("append source");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = std::io::stdout().lock();
    while Instant::now() < deadline {
        let position = log.committed_offsets(GROUP, "src").unwrap().first().map_or(0, |(_, o)| *o);
        if position >= total {
            break;
        }
        // A varying step, so transactions end at many different offsets.
        let step = 1 + (position % 37) as usize;
        let records = log.read_records("src", 0, position, 64 * 1024).unwrap();
        let mut w = BatchWriter::new(Vec::new()).unwrap();
        let mut next = position;
        for r in records.iter().filter(|r| r.offset >= position).take(step) {
            let value = format!("out-{}", String::from_utf8_lossy(&r.record.value));
            w.push_owned(&OwnedRecord::new(value.into_bytes(), r.record.timestamp)).unwrap();
            next = r.offset + 1;
        }
        let commit = OffsetCommit { group: GROUP, topic: "src", offsets: &[(0, next)] };
        log.append_transaction(vec![("out".into(), 0, w.finish().unwrap())], Some(commit)).await.expect("transaction");
        writeln!(out, "COMMITTED {next}").expect("stdout");
        out.flush().expect("stdout");
    }
}
