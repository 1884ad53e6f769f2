//! `cairn consume`: print records of a topic.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;

use cairn_client::{Client, ClientError, ConsumedRecord, GroupConsumer, StartFrom};

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
    /// the epoch, a UTC time such as 2026-12-04T08:00:00Z, or an age such as
    /// 30s, 10m, 2h, 1d.
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

/// Parses `--since`: epoch milliseconds, a UTC date and time
/// (`2026-12-04T08:00:00Z`, `2026-12-04 08:00:00`), or an age relative to
/// now (`30s`, `10m`, `2h`, `1d`, `1h 30m`).
pub(crate) fn since_ms(s: &str) -> Result<i64, AnyError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let expected = "expected epoch ms, a UTC time like 2026-12-04T08:00:00Z, or an age like 30s, 10m, 2h, 1d";
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(at) => at,
        // Something like a date gets the date's complaint.
        Err(e) if s.len() >= 10 && s.as_bytes()[4] == b'-' => {
            return Err(format!("--since {s:?}: {e}; {expected}").into())
        }
        Err(_) => {
            let age = humantime::parse_duration(s).map_err(|e| format!("--since {s:?}: {e}; {expected}"))?;
            SystemTime::now().checked_sub(age).ok_or_else(|| format!("--since {s:?}: too far back"))?
        }
    };
    // humantime's times are never before 1970.
    Ok(at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

struct Line {
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl From<&ConsumedRecord> for Line {
    fn from(r: &ConsumedRecord) -> Self {
        Line {
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        }
    }
}

fn print(out: &mut impl Write, line: &Line, output: Output) -> std::io::Result<()> {
    match output {
        Output::Text => writeln!(out, "{}", show(&line.value)),
        Output::Json => {
            let mut doc = json!({
                "partition": line.partition,
                "offset": line.offset,
                "timestamp": line.timestamp,
                "key": line.key.as_deref().map(show),
                "value": show(&line.value),
            });
            // Headers only when there are some: [[name, value], …] in record
            // order (a name may repeat).
            if !line.headers.is_empty() {
                let headers: Vec<_> = line.headers.iter().map(|(n, v)| json!([n, show(v)])).collect();
                doc["headers"] = json!(headers);
            }
            writeln!(out, "{doc}")
        }
    }
}

/// How long a `--follow` consumer keeps trying to reach a hub that went
/// away (a restart takes a second or two) before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// Connects again after `lost`, every 500 ms for up to [`RECONNECT_FOR`].
async fn reconnect(hub: &HubArgs, lost: &ClientError) -> Result<Client, ClientError> {
    tracing::warn!(error = %lost, "lost the hub at {}; reconnecting", hub.hub);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match hub.connect().await {
            Ok(client) => return Ok(client),
            Err(e) if started.elapsed() >= RECONNECT_FOR => return Err(e),
            Err(_) => {}
        }
    }
}

/// Joins again, as the same member, after `lost` on a new connection,
/// trying for up to [`RECONNECT_FOR`] (a hub still draining, or down again,
/// refuses).
async fn rejoin(hub: &HubArgs, lost: ClientError, consumer: &mut GroupConsumer) -> Result<(), ClientError> {
    let started = Instant::now();
    let mut lost = lost;
    loop {
        let client = reconnect(hub, &lost).await?;
        match consumer.rejoin(client).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retriable() && started.elapsed() < RECONNECT_FOR => lost = e,
            Err(e) => return Err(e),
        }
    }
}

/// Group mode: poll, print, commit, until caught up (or forever with
/// --follow, through hub restarts).
async fn run_group(client: Client, hub: &HubArgs, args: &ConsumeArgs, group: &str) -> Result<(), AnyError> {
    let output = hub.output;
    let start = if args.from_beginning { StartFrom::Earliest } else { StartFrom::Latest };
    let session = Duration::from_millis(args.session_timeout_ms);
    // Ctrl-C or SIGTERM leaves the group, so the partitions move to the
    // other members at once instead of after the session timeout (caught
    // from before the join on).
    let stop = crate::shutdown_signal()?;
    tokio::pin!(stop);
    let topics = [args.topic.as_str()];
    let mut consumer = GroupConsumer::join(client, group, &topics, session, start).await?;
    let mut printed = 0u64;
    loop {
        // Only the wait for records is cut short by a signal: stopping then
        // loses nothing (what the poll had not returned is read again from
        // the last commit), while a print and its commit always finish.
        let polled = tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => records,
            () = &mut stop => break,
        };
        let step = match polled {
            Ok(records) if records.is_empty() && !args.follow => break,
            Ok(records) => print_and_commit(&mut consumer, &records, args, output, &mut printed).await,
            Err(e) => Err(StepError::Hub(e)),
        };
        match step {
            Ok(true) => {}
            Ok(false) => break,
            // Join again on a new connection; the group resumes from its
            // last commit (a poll printed but not committed is read again).
            Err(StepError::Hub(e)) if args.follow && e.is_retriable() => {
                tokio::select! {
                    rejoined = rejoin(hub, e, &mut consumer) => rejoined?,
                    () = &mut stop => return Ok(()),
                }
            }
            Err(StepError::Hub(e)) => return Err(e.into()),
            Err(StepError::Output(e)) if output_closed(&e) => break,
            Err(StepError::Output(e)) => return Err(e.into()),
        }
    }
    consumer.leave().await?;
    Ok(())
}

/// Nobody reads standard output any more (`| head`): stop quietly, as
/// other command-line tools do.
fn output_closed(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Why a group's print-and-commit step failed: the hub (which a follower
/// may reconnect to) or standard output (closed, say, by `| head`).
enum StepError {
    Hub(ClientError),
    Output(std::io::Error),
}

impl From<ClientError> for StepError {
    fn from(e: ClientError) -> Self {
        StepError::Hub(e)
    }
}

/// Prints one poll's records (up to --max) and commits them. Returns
/// whether to go on.
async fn print_and_commit(
    consumer: &mut GroupConsumer,
    records: &[ConsumedRecord],
    args: &ConsumeArgs,
    output: Output,
    printed: &mut u64,
) -> Result<bool, StepError> {
    // With --max, print only what is still wanted of this poll.
    let wanted = args.max.map_or(records.len(), |m| records.len().min((m - *printed) as usize));
    let mut out = std::io::stdout().lock();
    for r in &records[..wanted] {
        print(&mut out, &Line::from(r), output).map_err(StepError::Output)?;
    }
    // Flush what was printed before committing it: at-least-once.
    out.flush().map_err(StepError::Output)?;
    drop(out);
    *printed += wanted as u64;
    if wanted < records.len() {
        // Commit only through the last record printed: the group's next
        // reader starts at the first one not printed.
        if let Some(last) = wanted.checked_sub(1).map(|i| &records[i]) {
            consumer.commit_through(last).await?;
        }
    } else {
        consumer.commit().await?;
    }
    Ok(args.max.is_none_or(|m| *printed < m))
}

pub async fn run(args: ConsumeArgs, hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    if let Some(group) = &args.group {
        return run_group(client, &hub, &args, group).await;
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
        let (mut client, tx, topic, follow) = (client.clone(), tx.clone(), args.topic.clone(), args.follow);
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut offset = start;
            loop {
                let wait = if follow { Duration::from_secs(5) } else { Duration::ZERO };
                let fetch = match client.fetch(&topic, p, offset, 1024 * 1024, wait).await {
                    Ok(f) => f,
                    // Following rides out a hub restart: go on at `offset`.
                    Err(e) if follow && e.is_retriable() => match reconnect(&hub, &e).await {
                        Ok(fresh) => {
                            client = fresh;
                            continue;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    },
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
                        headers: r.headers.clone().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
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
        match print(&mut std::io::stdout().lock(), &line, hub.output) {
            Ok(()) => {}
            Err(e) if output_closed(&e) => break,
            Err(e) => return Err(e.into()),
        }
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
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn since_accepts_times_and_ages_and_refuses_garbage_without_panicking() {
        assert_eq!(since_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(since_ms("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(since_ms("2023-11-14 22:13:20.5").unwrap(), 1_700_000_000_500);
        let err = since_ms("2023-13-14T22:13:20Z").unwrap_err().to_string();
        assert!(err.contains("out of range"), "the date's complaint, not the age's: {err}");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let ten_minutes_ago = since_ms("10m").unwrap();
        assert!((now - 600_000 - ten_minutes_ago).abs() < 5_000, "{ten_minutes_ago} vs now {now}");
        assert!(since_ms("1h 30m").unwrap() < since_ms("1h").unwrap());
        for bad in ["", "é", "10é", "m", "10x", "2023-13-01T00:00:00Z", "99999999999999999999d"] {
            let err = since_ms(bad).unwrap_err().to_string();
            assert!(err.starts_with("--since"), "{bad:?}: {err}");
        }
    }
}
