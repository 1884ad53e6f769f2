//! `cairn topic create|list|describe|delete|alter`.

use clap::{Args, Subcommand};
use serde_json::json;

use cairn_log::TopicInfo;
use cairn_proto::frame::TopicSettings;

use super::{AnyError, HubArgs, Output};

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List all topics.
    List,
    /// Show a topic's settings and each partition's offsets.
    Describe { name: String },
    /// Delete a topic and all its records.
    Delete { name: String },
    /// Change a topic's settings (partitions can only grow).
    Alter {
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Args, Debug)]
pub struct SettingsArgs {
    /// Number of partitions (default 1 on create).
    #[arg(long)]
    partitions: Option<u32>,
    /// Delete records older than this many milliseconds (-1: keep forever; default 7 days).
    #[arg(long, allow_hyphen_values = true)]
    retention_ms: Option<i64>,
    /// Keep at most this many bytes per partition (-1: unbounded, the default).
    #[arg(long, allow_hyphen_values = true)]
    retention_bytes: Option<i64>,
    /// delete (retention by age/size) or compact (last record per key).
    #[arg(long)]
    cleanup_policy: Option<String>,
    /// always (ack after fsync) or interval (ack before fsync; less SD-card wear).
    #[arg(long)]
    flush: Option<String>,
}

impl SettingsArgs {
    fn settings(&self) -> TopicSettings<'_> {
        TopicSettings {
            partitions: self.partitions,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            cleanup_policy: self.cleanup_policy.as_deref(),
            flush: self.flush.as_deref(),
        }
    }
}

pub async fn run(command: TopicCommand, hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    match command {
        TopicCommand::Create { name, settings } => {
            let info = client.create_topic(&name, settings.settings()).await?;
            print_topic(&info, hub.output, "created");
        }
        TopicCommand::Alter { name, settings } => {
            let info = client.alter_topic(&name, settings.settings()).await?;
            print_topic(&info, hub.output, "altered");
        }
        TopicCommand::Describe { name } => {
            let info = client.describe_topic(&name).await?;
            print_topic(&info, hub.output, "");
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            match hub.output {
                Output::Text => println!("deleted topic {name}"),
                Output::Json => println!("{}", json!({ "deleted": name })),
            }
        }
        TopicCommand::List => {
            for info in client.list_topics().await? {
                match hub.output {
                    Output::Text => {
                        let records: u64 = info.partitions.iter().map(|p| p.end_offset - p.start_offset).sum();
                        println!("{}\tpartitions={}\trecords={}", info.name, info.partitions.len(), records);
                    }
                    Output::Json => println!("{}", topic_json(&info)),
                }
            }
        }
    }
    Ok(())
}

fn topic_json(info: &TopicInfo) -> serde_json::Value {
    let c = &info.config;
    json!({
        "name": info.name,
        "partitions": info.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "start_offset": p.start_offset,
            "end_offset": p.end_offset,
            "bytes": p.bytes,
        })).collect::<Vec<_>>(),
        "retention_ms": c.retention_ms,
        "retention_bytes": c.retention_bytes,
        "cleanup_policy": c.cleanup_policy.as_str(),
        "flush": c.flush.as_str(),
    })
}

fn print_topic(info: &TopicInfo, output: Output, verb: &str) {
    match output {
        Output::Json => println!("{}", topic_json(info)),
        Output::Text => {
            if !verb.is_empty() {
                println!("{verb} topic {}", info.name);
            }
            let c = &info.config;
            println!(
                "topic {}: partitions={} retention.ms={} retention.bytes={} cleanup.policy={:?} flush={:?}",
                info.name,
                c.partitions,
                c.retention_ms.map_or("forever".into(), |v| v.to_string()),
                c.retention_bytes.map_or("unbounded".into(), |v| v.to_string()),
                c.cleanup_policy,
                c.flush,
            );
            for p in &info.partitions {
                println!(
                    "  partition {}\tstart={}\tend={}\tbytes={}",
                    p.partition, p.start_offset, p.end_offset, p.bytes
                );
            }
        }
    }
}
