//! `cairn produce`: one record per line of standard input.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use cairn_hub::client::Client;
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
    /// Most records sent in one batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parse_line(args: &ProduceArgs, line: &str) -> Result<OwnedRecord, AnyError> {
    if args.json {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("line is not JSON ({e}): {line}"))?;
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let value = v.get("value").map(text).ok_or_else(|| format!("JSON line has no \"value\": {line}"))?;
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

pub async fn run(args: ProduceArgs, hub: HubArgs) -> Result<(), AnyError> {
    let client = Client::connect(&hub.hub).await?;
    let partitions = client.describe_topic(&args.topic).await?.partitions.len() as u32;
    let acks = if args.acks == "none" { Acks::None } else { Acks::Durable };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: Vec<OwnedRecord> = Vec::new();
    let mut total = 0u64;
    loop {
        let line = lines.next_line().await?;
        if let Some(line) = &line {
            if !line.is_empty() {
                pending.push(parse_line(&args, line)?);
            }
        }
        if pending.len() >= args.batch.max(1) || (line.is_none() && !pending.is_empty()) {
            total += send(&client, &args, partitions, acks, std::mem::take(&mut pending), hub.output).await?;
        }
        if line.is_none() {
            break;
        }
    }
    if hub.output == Output::Text {
        eprintln!("produced {total} records to {}", args.topic);
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
