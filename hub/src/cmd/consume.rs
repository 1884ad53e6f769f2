//! `cairn consume`: print records of a topic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;

use cairn_hub::client::{Client, ClientError, GroupConsumer, StartFrom};

use super::{show, AnyError, HubArgs, Output};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// Start at the oldest stored record (default: only new records).
    #[arg(long, conflicts_with_all = ["offset", "since"])]
    from_beginning: bool,
    /// Start at this offset (with --partition).
    #[arg(long, requires = "partition", conflicts_with = "since")]
    offset: Option<u64>,
    /// Start at the first record at or after this time: milliseconds since
    /// the epoch, or an age such as 30s, 10m, 2h, 1d.
    #[arg(long)]
    since: Option<String>,
    /// Keep waiting for new records instead of exiting when caught up.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Consume as a member of this group: the hub assigns partitions, and
    /// progress is committed (after printing) and resumed from.
    #[arg(long, short = 'g', conflicts_with_all = ["partition", "offset", "since"])]
    group: Option<String>,
    /// With --group: how long the hub waits for a silent member before
    /// giving its partitions to others.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
}

/// Parses `--since`: epoch milliseconds, or an age relative to now.
pub(crate) fn since_ms(s: &str) -> Result<i64, AnyError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    // Split off the last character (not byte: the input may be any text).
    let unit_at = s.char_indices().last().map_or(0, |(i, _)| i);
    let (num, unit) = s.split_at(unit_at);
    let n: i64 =
        num.parse().map_err(|_| format!("--since {s:?}: expected epoch ms or an age like 30s, 10m, 2h, 1d"))?;
    let per_unit: i64 = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("--since {s:?}: unit must be s, m, h or d").into()),
    };
    let ms = n.checked_mul(per_unit).ok_or_else(|| format!("--since {s:?}: too far back"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Ok(now.saturating_sub(ms))
}

struct Line {
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

fn print(line: &Line, output: Output) {
    match output {
        Output::Text => println!("{}", show(&line.value)),
        Output::Json => println!(
            "{}",
            json!({
                "partition": line.partition,
                "offset": line.offset,
                "timestamp": line.timestamp,
                "key": line.key.as_deref().map(show),
                "value": show(&line.value),
            })
        ),
    }
}

/// Group mode: poll, print, commit, until caught up (or forever with --follow).
async fn run_group(client: Client, args: &ConsumeArgs, group: &str, output: Output) -> Result<(), AnyError> {
    let start = if args.from_beginning { StartFrom::Earliest } else { StartFrom::Latest };
    let session = Duration::from_millis(args.session_timeout_ms);
    let mut consumer = GroupConsumer::join(client, group, &[args.topic.as_str()], session, start).await?;
    let mut printed = 0u64;
    loop {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        if records.is_empty() && !args.follow {
            break;
        }
        for r in records {
            if args.max.is_some_and(|m| printed >= m) {
                break;
            }
            let line =
                Line { partition: r.partition, offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value };
            print(&line, output);
            printed += 1;
        }
        // Flush what was printed before committing it: at-least-once.
        use std::io::Write;
        std::io::stdout().flush()?;
        consumer.commit().await?;
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
    }
    consumer.leave().await?;
    Ok(())
}

pub async fn run(args: ConsumeArgs, hub: HubArgs) -> Result<(), AnyError> {
    let client = Client::connect(&hub.hub).await?;
    if let Some(group) = &args.group {
        return run_group(client, &args, group, hub.output).await;
    }
    let info = client.describe_topic(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p as usize >= info.partitions.len() => {
            return Err(format!("topic '{}' has no partition {p} (it has {})", args.topic, info.partitions.len()).into())
        }
        Some(p) => vec![p],
        None => (0..info.partitions.len() as u32).collect(),
    };
    let by_time = match &args.since {
        Some(s) => Some(client.offsets_for_time(&args.topic, since_ms(s)?).await?),
        None => None,
    };
    let (tx, mut rx) = mpsc::channel::<Result<Line, ClientError>>(1024);
    for &p in &partitions {
        let part = info.partitions[p as usize];
        let start = if let Some(o) = args.offset {
            o
        } else if let Some(times) = &by_time {
            times.iter().find(|(q, _)| *q == p).and_then(|(_, o)| *o).unwrap_or(part.end_offset)
        } else if args.from_beginning {
            part.start_offset
        } else {
            part.end_offset
        };
        let (client, tx, topic, follow) = (client.clone(), tx.clone(), args.topic.clone(), args.follow);
        tokio::spawn(async move {
            let mut offset = start;
            loop {
                let wait = if follow { Duration::from_secs(5) } else { Duration::ZERO };
                let fetch = match client.fetch(&topic, p, offset, 1024 * 1024, wait).await {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for r in fetch.records() {
                    let line = Line {
                        partition: p,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.to_vec(),
                    };
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
                offset = fetch.next_offset();
                if !follow && offset >= fetch.end_offset {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut printed = 0u64;
    while let Some(line) = rx.recv().await {
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
        let line = line?;
        print(&line, hub.output);
        printed += 1;
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::since_ms;

    #[test]
    fn since_accepts_ages_and_refuses_garbage_without_panicking() {
        assert_eq!(since_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(since_ms("10m").unwrap() > 0);
        for bad in ["", "é", "10é", "m", "10x", "99999999999999999d"] {
            assert!(since_ms(bad).is_err(), "{bad:?}");
        }
    }
}
