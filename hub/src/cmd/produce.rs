//! `cairn produce`: one record per line of standard input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use cairn_hub::client::Client;
use cairn_proto::batch::HEADER_LEN;
use cairn_proto::frame::Acks;
use cairn_proto::{partition_for_key, BatchWriter, OwnedRecord};

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
    /// durable: wait until each batch is on disk; none: do not wait.
    #[arg(long, default_value = "durable", value_parser = ["durable", "none"])]
    acks: String,
    /// Most records sent in one batch (batches also stay within the hub's
    /// max_batch_bytes).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Longest a line waits for more lines to share its batch: when the input
    /// pauses (a live stream, a person typing) what was read is sent.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parse_line(args: &ProduceArgs, line: &str) -> Result<OwnedRecord, AnyError> {
    if args.json {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let value = v.get("value").map(text).ok_or_else(|| format!("JSON has no \"value\": {line}"))?;
        let mut record = OwnedRecord::new(value, v.get("timestamp").and_then(|t| t.as_i64()).unwrap_or_else(now_ms));
        if let Some(k) = v.get("key").filter(|k| !k.is_null()) {
            record = record.with_key(text(k));
        }
        return Ok(record);
    }
    let mut record = OwnedRecord::new(line.as_bytes().to_vec(), now_ms());
    if let Some(sep) = &args.key_separator {
        if let Some((k, v)) = line.split_once(sep.as_str()) {
            record = OwnedRecord::new(v.as_bytes().to_vec(), record.timestamp).with_key(k.as_bytes().to_vec());
        }
    } else if let Some(k) = &args.key {
        record = record.with_key(k.as_bytes().to_vec());
    }
    Ok(record)
}

/// What reading standard input gave.
enum Input {
    Line(String),
    /// No line within the linger.
    Paused,
    End,
}

/// Records read but not sent yet, and the most bytes they take in a batch.
#[derive(Default)]
struct Pending {
    records: Vec<OwnedRecord>,
    bytes: usize,
}

impl Pending {
    fn take(&mut self) -> Vec<OwnedRecord> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }
}

pub async fn run(args: ProduceArgs, hub: HubArgs) -> Result<(), AnyError> {
    let client = Client::connect(&hub.hub).await?;
    let partitions = client.describe_topic(&args.topic).await?.partitions.len() as u32;
    // Batches are cut to the hub's limit, so long lines never make one too
    // large; a line too large for any batch is skipped and named.
    let max_batch = client.hello("cairn produce").await?.max_batch_bytes as usize;
    let room = max_batch.saturating_sub(HEADER_LEN);
    let acks = if args.acks == "none" { Acks::None } else { Acks::Durable };
    let linger = Duration::from_millis(args.linger_ms);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = Pending::default();
    let (mut total, mut line_no, mut skipped) = (0u64, 0u64, 0u64);
    loop {
        // While records wait, wait for the next line only as long as the
        // linger (`next_line` is cancel safe: a timeout loses nothing).
        let next = if pending.records.is_empty() {
            Some(lines.next_line().await?)
        } else {
            tokio::time::timeout(linger, lines.next_line()).await.ok().transpose()?
        };
        let input = match next {
            Some(Some(line)) => Input::Line(line),
            Some(None) => Input::End,
            None => Input::Paused,
        };
        let Input::Line(line) = input else {
            if !pending.records.is_empty() {
                total += send(&client, &args, partitions, acks, pending.take(), hub.output).await?;
            }
            if matches!(input, Input::End) {
                break;
            }
            continue;
        };
        line_no += 1;
        if line.is_empty() {
            continue;
        }
        let record = match parse_line(&args, &line) {
            Ok(record) if record.max_encoded_len() <= room => record,
            Ok(record) => {
                let size = record.max_encoded_len();
                eprintln!("error: line {line_no} skipped: its record of up to {size} bytes does not fit in a batch of {max_batch} bytes (the hub's max_batch_bytes)");
                skipped += 1;
                continue;
            }
            // One bad line does not stop a stream: say which it was, send
            // the rest, and fail at the end.
            Err(e) => {
                eprintln!("error: line {line_no} skipped: {e}");
                skipped += 1;
                continue;
            }
        };
        let size = record.max_encoded_len();
        if pending.bytes + size > room {
            total += send(&client, &args, partitions, acks, pending.take(), hub.output).await?;
        }
        pending.records.push(record);
        pending.bytes += size;
        if pending.records.len() >= args.batch.max(1) {
            total += send(&client, &args, partitions, acks, pending.take(), hub.output).await?;
        }
    }
    if hub.output == Output::Text {
        eprintln!("produced {total} record{} to {}", if total == 1 { "" } else { "s" }, args.topic);
    }
    if skipped > 0 {
        return Err(format!("{skipped} line{} skipped (see above)", if skipped == 1 { "" } else { "s" }).into());
    }
    Ok(())
}

/// Sends records, one batch per partition they map to, in input order.
async fn send(
    client: &Client,
    args: &ProduceArgs,
    partitions: u32,
    acks: Acks,
    records: Vec<OwnedRecord>,
    output: Output,
) -> Result<u64, AnyError> {
    let mut groups: Vec<(Option<u32>, Vec<OwnedRecord>)> = Vec::new();
    for r in records {
        let p = args.partition.or_else(|| r.key.as_ref().map(|k| partition_for_key(k, partitions)));
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, g)) => g.push(r),
            None => groups.push((p, vec![r])),
        }
    }
    let mut sent = 0;
    for (partition, group) in groups {
        let mut w = BatchWriter::new(Vec::new())?;
        for r in &group {
            w.push_owned(r)?;
        }
        let batch = w.finish()?;
        let ack = client.produce(&args.topic, partition, &batch, acks).await?;
        sent += group.len() as u64;
        if let (Some(a), Output::Json) = (ack, output) {
            println!(
                "{}",
                json!({"partition": a.partition, "base_offset": a.base_offset, "last_offset": a.last_offset, "duplicate": a.duplicate})
            );
        }
    }
    Ok(sent)
}
