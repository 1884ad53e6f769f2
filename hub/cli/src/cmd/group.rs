//! `cairn group list|describe`.

use clap::Subcommand;
use serde_json::json;

use super::{AnyError, HubArgs, Output};

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups (live ones and those with committed offsets).
    List,
    /// Show a group's members, and per partition the committed offset, end offset and lag.
    Describe { group: String },
}

pub async fn run(command: GroupCommand, hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    match command {
        GroupCommand::List => {
            for (group, members, generation) in client.list_groups().await? {
                match hub.output {
                    Output::Text => println!("{group}\tmembers={members}\tgeneration={generation}"),
                    Output::Json => {
                        println!("{}", json!({"group": group, "members": members, "generation": generation}))
                    }
                }
            }
        }
        GroupCommand::Describe { group } => {
            let state = client.describe_group(&group).await?;
            match hub.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "group": state.group,
                        "generation": state.generation,
                        "members": state.members.iter().map(|(m, a)| json!({"member_id": m, "assignment": a})).collect::<Vec<_>>(),
                        "partitions": state.partitions.iter().map(|p| json!({
                            "topic": p.topic, "partition": p.partition, "committed": p.committed,
                            "end_offset": p.end_offset, "lag": p.lag, "owner": p.owner,
                        })).collect::<Vec<_>>(),
                    })
                ),
                Output::Text => {
                    println!("group {} generation {} members {}", state.group, state.generation, state.members.len());
                    println!("TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tOWNER");
                    for p in &state.partitions {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            p.topic,
                            p.partition,
                            p.committed.map_or("-".into(), |c| c.to_string()),
                            p.end_offset,
                            p.lag,
                            p.owner.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
