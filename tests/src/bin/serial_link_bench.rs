//! How much of a serial line's rate carries readings: the device SDK's
//! publisher (serial framing) on a link paced like a UART at `--baud`
//! (8N1: 10 bits per byte), to a running hub's serial-over-TCP listener.
//!
//! Prints, per run: readings/s, line utilisation (bytes the device wrote /
//! what the line can carry in the elapsed time) and the share of the line
//! that is reading records (record bytes as stored / line capacity).
//!
//! usage: serial_link_bench <serial-addr> <topic> [baud=115200] [readings=5000] [runs=3]

use std::time::Instant;

use cairn_e2e::StdLink;
use cairn_firmware::{Config, Framing, FullPolicy, Publisher};
use cairn_proto::{BatchWriter, Record};

const KEY: &[u8] = b"dev-1";

/// Bytes one reading's record takes inside a batch (the stored form).
fn record_len(value: &[u8]) -> usize {
    let one = |n: usize| {
        let mut w = BatchWriter::new(Vec::new()).unwrap();
        for _ in 0..n {
            w.push(&Record::new(value, 1_700_000_000_000).with_key(KEY)).unwrap();
        }
        w.finish().unwrap().len()
    };
    one(2) - one(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!("usage: serial_link_bench <serial-addr> <topic> [baud=115200] [readings=5000] [runs=3]");
        std::process::exit(2);
    }
    let (addr, topic) = (&args[1], &args[2]);
    let baud: u32 = args.get(3).map_or(115_200, |s| s.parse().expect("baud"));
    let readings: u32 = args.get(4).map_or(5000, |s| s.parse().expect("readings"));
    let runs: u32 = args.get(5).map_or(3, |s| s.parse().expect("runs"));
    // Batches are streamed from the outbox: their size costs no RAM, only
    // latency. Smaller batches spend more of the line on framing.
    // The outbox holds at least two batches, so one is on the wire while
    // the previous one's acknowledgement comes back.
    bench::<64>(addr, topic, baud, readings, runs, 16);
    bench::<128>(addr, topic, baud, readings, runs, 32);
    bench::<128>(addr, topic, baud, readings, runs, 64);
    bench::<256>(addr, topic, baud, readings, runs, 128);
}

/// Runs with batches of up to `batch` readings and an outbox of `N`.
fn bench<const N: usize>(addr: &str, topic: &str, baud: u32, readings: u32, runs: u32, batch: u16) {
    println!("batches of up to {batch} readings, outbox of {N}:");
    let capacity = f64::from(baud) / 10.0;
    let mut shares = Vec::new();
    for run in 1..=runs {
        let config = Config {
            topic,
            partition: 0,
            key: Some(KEY),
            framing: Framing::Serial,
            policy: FullPolicy::RefuseNew,
            max_batch_readings: batch,
            credentials: None,
        };
        let link = StdLink::connect(addr).expect("connect to the serial listener").paced(baud);
        let mut publisher: Publisher<'_, StdLink, N> = Publisher::new(link, config).unwrap();
        let start = Instant::now();
        let mut next = 0u32;
        let mut record_bytes = 0usize;
        while next < readings || publisher.pending() > 0 {
            // A sensor sampled as fast as the line takes it: 8-byte values.
            while next < readings {
                let value = format!("{:+08.3}", f64::from(next % 4000) / 100.0 - 10.0);
                if publisher.publish(value.as_bytes(), 1_700_000_000_000 + i64::from(next)).is_err() {
                    break;
                }
                record_bytes += record_len(value.as_bytes());
                next += 1;
            }
            publisher.poll().expect("link");
        }
        let secs = start.elapsed().as_secs_f64();
        let c = publisher.counters();
        assert_eq!(c.acked, readings, "{c:?}");
        let written = publisher.destroy().written();
        let utilisation = written as f64 / (secs * capacity);
        let share = record_bytes as f64 / (secs * capacity);
        println!(
            "run {run}: {readings} readings in {secs:.2} s = {:.0} readings/s; line utilisation {:.1}%; reading records {:.1}% of the line rate ({baud} baud)",
            f64::from(readings) / secs,
            utilisation * 100.0,
            share * 100.0
        );
        shares.push(share);
    }
    shares.sort_by(f64::total_cmp);
    println!("median share of the line rate carrying reading records: {:.1}%", shares[shares.len() / 2] * 100.0);
}
