//! `cairn produce`: one record per line of standard input.

use std::io::Write;
use std::time::Duration;

use super::now_ms;

use clap::Args;
use futures::stream::{FuturesOrdered, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use cairn_client::{ClientError, Producer, ProducerConfig, RecordAck};
use cairn_proto::frame::Acks;
use cairn_proto::OwnedRecord;

use super::{AnyError, HubArgs, Output};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic to write to.
    topic: String,
    /// Key of every record (records with one key stay in order on one partition).
    #[arg(long)]
    key: Option<String>,
    /// Split each line at the first occurrence of this separator into key and value.
    #[arg(long, conflicts_with = "key")]
    key_separator: Option<String>,
    /// Write to this partition instead of choosing by key / sticky.
    #[arg(long)]
    partition: Option<u32>,
    /// Read each line as JSON {"key": ..., "value": ..., "timestamp": ms} (key and timestamp optional).
    #[arg(long)]
    json: bool,
    /// durable: each record is acknowledged once on disk, and retried through
    /// a lost connection without being stored twice; none: records are sent
    /// once and not waited for.
    #[arg(long, default_value = "durable", value_parser = ["durable", "none"])]
    acks: String,
    /// A partition's batch is sent once it holds this many bytes (at most the
    /// hub's max_batch_bytes).
    #[arg(long, default_value_t = ProducerConfig::default().batch_bytes)]
    batch_bytes: usize,
    /// Longest a line waits for more lines to share its batch: when the input
    /// pauses (a live stream, a person typing) what was read is sent.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// With acks=durable: attempts per batch, 200 ms apart, through a lost
    /// connection or a restarting hub (the default rides out two minutes).
    #[arg(long, default_value_t = 600)]
    retries: u32,
}

/// Most bytes of records sent and not yet acknowledged; reading stdin waits
/// beyond, so a fast input and a slow hub do not fill the memory.
const MAX_UNACKED_BYTES: usize = 32 * 1024 * 1024;

/// What a record in flight costs besides its bytes (the record, its ack
/// channel, its place in the queues), counted against `MAX_UNACKED_BYTES`
/// so that many tiny lines are bounded too.
const RECORD_OVERHEAD: usize = 128;

/// A line as a record. Plain lines may hold any bytes; JSON lines must be
/// UTF-8, as JSON is.
fn parse_line(args: &ProduceArgs, line: &[u8]) -> Result<OwnedRecord, AnyError> {
    let shown = || String::from_utf8_lossy(line).into_owned();
    if args.json {
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e}): {}", shown()))?;
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let value = v.get("value").map(text).ok_or_else(|| format!("JSON has no \"value\": {}", shown()))?;
        let mut record = OwnedRecord::new(value, v.get("timestamp").and_then(|t| t.as_i64()).unwrap_or_else(now_ms));
        if let Some(k) = v.get("key").filter(|k| !k.is_null()) {
            record = record.with_key(text(k));
        }
        return Ok(record);
    }
    let mut record = OwnedRecord::new(line.to_vec(), now_ms());
    if let Some(sep) = args.key_separator.as_deref().map(str::as_bytes).filter(|s| !s.is_empty()) {
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            record = OwnedRecord::new(line[at + sep.len()..].to_vec(), record.timestamp).with_key(line[..at].to_vec());
        }
    } else if let Some(k) = &args.key {
        record = record.with_key(k.as_bytes().to_vec());
    }
    Ok(record)
}

/// What became of the lines read.
#[derive(Default)]
struct Tally {
    stored: u64,
    /// Not records, or too large for any batch: never sent.
    skipped: u64,
    /// Sent, and failed (after the producer's retries).
    failed: u64,
}

pub async fn run(args: ProduceArgs, hub: HubArgs) -> Result<(), AnyError> {
    // The client library's producer batches per partition, lingers, and
    // retries idempotently; this command feeds it lines and reports acks.
    let config = ProducerConfig {
        linger: Duration::from_millis(args.linger_ms),
        batch_bytes: args.batch_bytes.max(1),
        acks: if args.acks == "none" { Acks::None } else { Acks::Durable },
        retries: args.retries,
        retry_backoff: Duration::from_millis(200),
        request_timeout: hub.request_timeout,
        connect: hub.options()?,
    };
    let producer = Producer::connect(&hub.hub, config).await?;
    // An unknown topic or partition fails before any line is read.
    producer.check_partition(&args.topic, args.partition).await?;
    // Ctrl-C or SIGTERM stops reading; what was read is still sent and
    // reported, as at the end of the input.
    let stop = crate::shutdown_signal()?;
    tokio::pin!(stop);
    // Lines as bytes: a record may be any bytes but a newline.
    let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut unacked = FuturesOrdered::new();
    let mut unacked_bytes = 0usize;
    let mut tally = Tally::default();
    let mut line_no = 0u64;
    loop {
        // Report acks as they come while reading on (both are cancel safe).
        tokio::select! {
            () = &mut stop => break,
            Some((n, len, result)) = unacked.next(), if !unacked.is_empty() => {
                unacked_bytes -= len;
                report(n, result, hub.output, &mut tally);
            }
            line = lines.next_segment(), if unacked_bytes < MAX_UNACKED_BYTES => {
                let Some(mut line) = line? else { break };
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                line_no += 1;
                if line.is_empty() {
                    continue;
                }
                // One bad line does not stop a stream: say which it was,
                // send the rest, and fail at the end.
                let mut skip = |why: &dyn std::fmt::Display| {
                    eprintln!("error: line {line_no} skipped: {why}");
                    tally.skipped += 1;
                };
                let record = match parse_line(&args, &line) {
                    Ok(record) => record,
                    Err(e) => {
                        skip(&e);
                        continue;
                    }
                };
                match producer.send_to(&args.topic, args.partition, record).await {
                    Ok(ack) => {
                        let len = line.len() + RECORD_OVERHEAD;
                        unacked_bytes += len;
                        unacked.push_back(async move { (line_no, len, ack.await) });
                    }
                    // Too large for any batch the hub accepts.
                    Err(ClientError::Refused(message)) => skip(&message),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    // Send what lingers; each record's own ack says how it went. A (second)
    // Ctrl-C stops waiting for a hub that does not answer.
    let interrupt = crate::shutdown_signal()?;
    let drained = async {
        let _ = producer.flush().await;
        while let Some((n, _, result)) = unacked.next().await {
            report(n, result, hub.output, &mut tally);
        }
    };
    tokio::select! {
        () = drained => {}
        () = interrupt => {
            return Err(format!("interrupted: {} record(s) not acknowledged", unacked.len()).into());
        }
    }
    if hub.output == Output::Text {
        let n = tally.stored;
        let verb = if args.acks == "none" { "sent" } else { "produced" };
        eprintln!("{verb} {n} record{} to {}", if n == 1 { "" } else { "s" }, args.topic);
    }
    if tally.skipped + tally.failed > 0 {
        return Err(format!("{} line(s) skipped, {} not stored (see above)", tally.skipped, tally.failed).into());
    }
    Ok(())
}

/// Counts one record's outcome; prints it with `--output json`, and a
/// failure always.
fn report(line: u64, result: Result<RecordAck, ClientError>, output: Output, tally: &mut Tally) {
    match result {
        Ok(ack) => {
            tally.stored += 1;
            if output == Output::Json {
                // The acks are for the reader; with nobody reading (`| head`)
                // the records still go to the hub.
                let ack = json!({"line": line, "partition": ack.partition, "offset": ack.offset});
                let _ = writeln!(std::io::stdout(), "{ack}");
            }
        }
        Err(e) => {
            eprintln!("error: line {line} not stored: {e}");
            tally.failed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProduceArgs,
    }

    #[test]
    fn lines_may_hold_any_bytes_but_json_must_be_json() {
        let args = Cli::parse_from(["produce", "t", "--key-separator", "::"]).args;
        let record = parse_line(&args, b"\xffk::v\xfe::w").unwrap();
        assert_eq!((record.key.as_deref(), record.value.as_slice()), (Some(&b"\xffk"[..]), &b"v\xfe::w"[..]));
        let record = parse_line(&args, b"no separator").unwrap();
        assert_eq!((record.key, record.value.as_slice()), (None, &b"no separator"[..]));
        let args = Cli::parse_from(["produce", "t", "--json"]).args;
        let err = parse_line(&args, b"{\"value\": \"\xff\"}").unwrap_err().to_string();
        assert!(err.starts_with("not JSON"), "{err}");
        let record = parse_line(&args, br#"{"key": "k", "value": {"t": 1}, "timestamp": 5}"#).unwrap();
        assert_eq!(
            (record.key.as_deref(), record.value.as_slice(), record.timestamp),
            (Some(&b"k"[..]), &br#"{"t":1}"#[..], 5)
        );
    }
}
