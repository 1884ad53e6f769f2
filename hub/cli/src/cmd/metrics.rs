//! `cairn metrics`: the running hub's traffic counters.

use serde_json::json;

use super::{AnyError, HubArgs, Output};

pub async fn run(hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    let counters = client.metrics().await?;
    match hub.output {
        Output::Text => {
            for (name, value) in counters {
                println!("{name}\t{value}");
            }
        }
        Output::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                counters.into_iter().map(|(name, value)| (name, json!(value))).collect();
            println!("{}", serde_json::Value::Object(map));
        }
    }
    Ok(())
}
