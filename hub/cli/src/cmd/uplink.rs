//! `cairn uplink list|describe|pause|resume`: the hub's uplinks (declared
//! under `[[uplink]]` in its config), their state and backlog.

use cairn_client::UplinkInfo;
use clap::Subcommand;

use super::{AnyError, HubArgs, Output};

#[derive(Subcommand, Debug)]
pub enum UplinkCommand {
    /// One line per uplink: state, backlog, records sent.
    List,
    /// An uplink's state, upstream, topics, backlog (records and age of the
    /// oldest), counters and last error.
    Describe { name: String },
    /// Stop sending; records wait in the log (until `resume` or a restart of the hub).
    Pause { name: String },
    /// Start sending again after `pause`.
    Resume { name: String },
    /// Declare an uplink at runtime from a TOML file ("-": standard input)
    /// with the keys of an `[[uplink]]` table (docs/uplinks.md); the hub
    /// stores it and starts it, and keeps it across restarts.
    Add { file: String },
    /// Stop and forget an uplink declared with `add` (its progress, consumer
    /// group `__uplink.<name>`, is kept: added again, it resumes).
    Remove { name: String },
}

pub async fn run(command: UplinkCommand, hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    match command {
        UplinkCommand::List => {
            for u in client.list_uplinks().await? {
                match hub.output {
                    Output::Json => println!("{}", serde_json::to_string(&u)?),
                    Output::Text => println!(
                        "{}\t{}\tstate={}\tbacklog={}\tsent={}",
                        u.name, u.kind, u.state, u.backlog_records, u.records_sent
                    ),
                }
            }
        }
        UplinkCommand::Describe { name } => {
            let uplinks = client.list_uplinks().await?;
            let Some(u) = uplinks.into_iter().find(|u| u.name == name) else {
                return Err(format!("no uplink is named '{name}' (see `cairn uplink list`)").into());
            };
            match hub.output {
                Output::Json => println!("{}", serde_json::to_string(&u)?),
                Output::Text => describe(&u),
            }
        }
        UplinkCommand::Pause { name } => {
            client.pause_uplink(&name, true).await?;
            println!("uplink {name} paused");
        }
        UplinkCommand::Resume { name } => {
            client.pause_uplink(&name, false).await?;
            println!("uplink {name} resumed");
        }
        UplinkCommand::Add { file } => {
            let settings = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file}: {e}"))?
            };
            let u = client.add_uplink(&settings).await?;
            match hub.output {
                Output::Json => println!("{}", serde_json::to_string(&u)?),
                Output::Text => println!("uplink {} added ({} to {})", u.name, u.kind, u.upstream),
            }
        }
        UplinkCommand::Remove { name } => {
            client.remove_uplink(&name).await?;
            println!("uplink {name} removed");
        }
    }
    Ok(())
}

fn describe(u: &UplinkInfo) {
    println!("uplink {} ({}) to {}: {}", u.name, u.kind, u.upstream, u.state);
    println!("topics\t{}", u.topics.join(", "));
    let age = u.oldest_unsent_age_ms.map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
    println!("backlog\t{} records (~{} bytes), oldest {age}", u.backlog_records, u.backlog_bytes);
    println!(
        "sent\t{} records, {} bytes; {} records/s over the last 10 s",
        u.records_sent, u.bytes_sent, u.records_per_sec
    );
    println!("resent\t{} (after link failures; the upstream may hold them twice)", u.records_resent);
    println!("skipped\t{}", u.records_skipped);
    println!("received\t{} (from upstream subscriptions)", u.records_received);
    println!("connects\t{}\tfailures\t{}", u.connects, u.link_failures);
    println!("last error\t{}", u.last_error.as_deref().unwrap_or("-"));
}
