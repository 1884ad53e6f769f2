//! `cairn plugin upload|list|describe|attach|detach|dry-run|new`: manage
//! WebAssembly plugins on a running hub (docs/plugins.md).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use cairn_client::{AttachFrom, AttachSpec, AttachmentInfo, PluginInfo};
use cairn_proto::BatchView;

use super::{show, AnyError, HubArgs, Output};

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Upload a plugin (.wasm: a component, or a core module built with the
    /// cairn-plugin-sdk) as the next version of NAME.
    Upload {
        file: PathBuf,
        /// Plugin name (default: the file name without .wasm).
        #[arg(long)]
        name: Option<String>,
    },
    /// List plugins, their versions and attachments.
    List,
    /// Show a plugin's versions and its attachments with their status and
    /// counters (batches, records in/out/dropped, dead-lettered, fuel, last error).
    Describe { name: String },
    /// Attach PLUGIN[@VERSION] to TOPIC: on ingest (before the write) or,
    /// with --derived-to, as a derived topic. Attaching again under the same
    /// name swaps the version and parameters in place (and resumes a paused
    /// attachment).
    Attach(AttachArgs),
    /// Remove an attachment (a derived topic keeps what it wrote).
    Detach { name: String },
    /// Show what a plugin would do to the last records of a topic, without
    /// attaching it or writing anything.
    DryRun(DryRunArgs),
    /// Create a new plugin crate (Cargo.toml, src/lib.rs) in ./NAME, with
    /// the plugin SDK of this cairn in NAME/cairn-sdk/ (it builds anywhere).
    New {
        name: String,
        /// Depend on this cairn-plugin-sdk crate instead (a Cairn source
        /// checkout's plugins/sdk) of writing the bundled SDK.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    topic: String,
    /// PLUGIN or PLUGIN@VERSION (default: the latest version).
    plugin: String,
    /// Plugin parameters, name=value (repeatable).
    #[arg(long = "params", short = 'p', num_args = 1.., value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Write to this derived topic instead of filtering on ingest.
    #[arg(long)]
    derived_to: Option<String>,
    /// Where a derived topic starts: earliest (backfill), latest, an offset,
    /// or a time (epoch ms, a UTC time like 2026-12-04T08:00:00Z, or an age
    /// like 10m, 2h, as `time:…`) [default: earliest].
    #[arg(long, requires = "derived_to")]
    from: Option<String>,
    /// Attachment name [default: TOPIC.PLUGIN, or TOPIC.PLUGIN.OUTPUT].
    #[arg(long)]
    name: Option<String>,
    /// CPU budget of one batch, in fuel units (about one per instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap of one plugin instance, in MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Failed batches in a row after which the attachment pauses (0: never).
    #[arg(long)]
    max_failures: Option<u32>,
}

#[derive(Args, Debug)]
pub struct DryRunArgs {
    /// PLUGIN or PLUGIN@VERSION.
    plugin: String,
    #[arg(long)]
    topic: String,
    /// Records from the end of each partition.
    #[arg(long, default_value_t = 100)]
    last: u32,
    /// Plugin parameters, name=value (repeatable).
    #[arg(long = "params", short = 'p', num_args = 1.., value_parser = parse_param)]
    params: Vec<(String, String)>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("'{s}' is not name=value"))
}

/// `name@3` → ("name", Some(3)).
fn plugin_version(s: &str) -> Result<(&str, Option<u32>), AnyError> {
    match s.split_once('@') {
        None => Ok((s, None)),
        Some((name, v)) => {
            let v = v.parse().map_err(|_| format!("'{s}': the version after '@' must be a number"))?;
            Ok((name, Some(v)))
        }
    }
}

fn start_from(s: &str) -> Result<AttachFrom, AnyError> {
    Ok(match s {
        "earliest" | "beginning" => AttachFrom::Earliest,
        "latest" | "end" => AttachFrom::Latest,
        _ => match s.strip_prefix("time:") {
            Some(t) => AttachFrom::Time(super::consume::since_ms(t)?),
            None => AttachFrom::Offset(s.parse().map_err(|_| {
                format!(
                    "--from {s:?}: expected earliest, latest, an offset, or time:<epoch ms, UTC time or age like 10m>"
                )
            })?),
        },
    })
}

pub async fn run(command: PluginCommand, hub: HubArgs) -> Result<(), AnyError> {
    if let PluginCommand::New { name, sdk } = &command {
        return scaffold(name, sdk.as_deref());
    }
    let client = hub.connect().await?;
    match command {
        PluginCommand::Upload { file, name } => {
            let wasm = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let name = match name {
                Some(n) => n,
                None => {
                    file.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).ok_or("give the plugin a --name")?
                }
            };
            let up = client.upload_plugin(&name, &wasm).await?;
            match hub.output {
                Output::Json => println!(
                    "{}",
                    json!({"name": up.name, "version": up.version, "hash": up.hash,
                           "compile_us": up.compile_us, "from_cache": up.from_cache})
                ),
                Output::Text => println!(
                    "uploaded {}@{} ({} bytes, sha256 {}; {})",
                    up.name,
                    up.version,
                    wasm.len(),
                    up.hash,
                    if up.from_cache {
                        "already compiled".to_string()
                    } else {
                        format!("compiled in {:.1} ms", up.compile_us as f64 / 1e3)
                    }
                ),
            }
        }
        PluginCommand::List => {
            let plugins = client.list_plugins().await?;
            for p in &plugins {
                print_plugin(p, hub.output, false)?;
            }
            if plugins.is_empty() && hub.output == Output::Text {
                println!("no plugins (upload one with: cairn plugin upload <file.wasm>)");
            }
        }
        PluginCommand::Describe { name } => print_plugin(&client.describe_plugin(&name).await?, hub.output, true)?,
        PluginCommand::Attach(a) => {
            let (plugin, version) = plugin_version(&a.plugin)?;
            let from = a.from.as_deref().map(start_from).transpose()?;
            let spec = AttachSpec {
                name: a.name.as_deref(),
                topic: &a.topic,
                plugin,
                version,
                params: a.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                derived_to: a.derived_to.as_deref(),
                from,
                fuel_per_batch: a.fuel,
                memory_bytes: a.memory_mb.map(|mb| mb << 20),
                max_failures: a.max_failures,
            };
            let info = client.attach(spec).await?;
            match hub.output {
                Output::Json => println!("{}", serde_json::to_string(&info)?),
                Output::Text => println!("attached: {}", attachment_line(&info)),
            }
        }
        PluginCommand::Detach { name } => {
            client.detach(&name).await?;
            if hub.output == Output::Text {
                println!("detached {name}");
            } else {
                println!("{}", json!({"detached": name}));
            }
        }
        PluginCommand::DryRun(d) => {
            let (plugin, version) = plugin_version(&d.plugin)?;
            let params: Vec<(&str, &str)> = d.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let run = client.dry_run(plugin, version, &params, &d.topic, d.last).await?;
            let mut out_count = 0;
            for (topic, batch) in &run.outputs {
                let view = BatchView::parse(batch).map_err(|e| format!("the hub sent an invalid batch: {e}"))?;
                let to = topic.as_deref().unwrap_or("(kept)");
                for r in view.records() {
                    out_count += 1;
                    let key = r.key.map(show);
                    match hub.output {
                        Output::Json => println!(
                            "{}",
                            json!({"to": topic, "key": key, "value": show(r.value), "timestamp": r.timestamp})
                        ),
                        Output::Text => {
                            println!("{to}\t{}\t{}", key.as_deref().unwrap_or("-"), show(r.value))
                        }
                    }
                }
            }
            match hub.output {
                Output::Json => {
                    println!("{}", json!({"records_in": run.records_in, "records_out": out_count, "error": run.error}))
                }
                Output::Text => {
                    println!("dry run: {} records in, {} out (nothing was written)", run.records_in, out_count);
                    if let Some(e) = &run.error {
                        println!("the plugin failed: {e}");
                    }
                }
            }
        }
        PluginCommand::New { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn print_plugin(p: &PluginInfo, output: Output, full: bool) -> Result<(), AnyError> {
    if output == Output::Json {
        println!("{}", serde_json::to_string(p)?);
        return Ok(());
    }
    let latest = p.versions.last().map_or(0, |v| v.version);
    println!("{}: {} version(s), latest {latest}, {} attachment(s)", p.name, p.versions.len(), p.attachments.len());
    if full {
        for v in &p.versions {
            println!("  version {}: {} bytes, sha256 {}, uploaded at {} ms", v.version, v.bytes, v.hash, v.uploaded_ms);
        }
    }
    for a in &p.attachments {
        println!("  {}", attachment_line(a));
        if full {
            println!(
                "    batches {} | records in {} out {} dropped {} | dead-lettered {} (to {}) | failures {} | fuel {}",
                a.batches,
                a.records_in,
                a.records_out,
                a.records_dropped,
                a.dead_lettered,
                a.dead_letter_topic,
                a.failures,
                a.fuel_used
            );
            if let Some(e) = &a.last_error {
                println!("    last error: {e}");
            }
            if !a.position.is_empty() {
                let pos: Vec<String> = a.position.iter().map(|(p, o)| format!("{p}:{o}")).collect();
                println!("    position (partition:next offset): {}", pos.join(" "));
            }
        }
    }
    Ok(())
}

fn attachment_line(a: &AttachmentInfo) -> String {
    let place = match &a.derived_to {
        Some(out) => format!("{} -> {out}", a.topic),
        None => format!("{} (ingest)", a.topic),
    };
    let params: Vec<String> = a.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let status = match &a.status_reason {
        Some(why) => format!("{}: {why}", a.status),
        None => a.status.clone(),
    };
    format!("{} = {}@{} on {place} [{}] {status}", a.name, a.plugin, a.version, params.join(" "))
}

/// The plugin SDK this binary was built with, bundled by build.rs.
mod sdk_bundle {
    include!(concat!(env!("OUT_DIR"), "/sdk_bundle.rs"));
}

/// Where the new crate's SDK is, bundled within it.
const BUNDLED_SDK_DIR: &str = "cairn-sdk";

/// Writes a new plugin crate: a threshold-style filter to edit, depending on
/// the SDK at `sdk` or (by default) on a copy of the bundled one.
fn scaffold(name: &str, sdk: Option<&std::path::Path>) -> Result<(), AnyError> {
    let dir = PathBuf::from(name);
    if dir.exists() {
        return Err(format!("{} already exists; choose another name", dir.display()).into());
    }
    let crate_name = dir.file_name().map(|n| n.to_string_lossy().to_string()).ok_or("give the plugin a name")?;
    let sdk_path = match sdk {
        Some(sdk) => std::fs::canonicalize(sdk)
            .map_err(|e| format!("the plugin SDK is not at {} ({e}); pass --sdk <path to plugins/sdk>", sdk.display()))?
            .display()
            .to_string(),
        None => format!("{BUNDLED_SDK_DIR}/cairn-plugin-sdk"),
    };
    std::fs::create_dir_all(dir.join("src"))?;
    if sdk.is_none() {
        for (path, contents) in sdk_bundle::FILES {
            let file = dir.join(BUNDLED_SDK_DIR).join(path);
            std::fs::create_dir_all(file.parent().expect("a bundled file is in a directory"))?;
            std::fs::write(file, contents)?;
        }
    }
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2021"

# Build: cargo build --release --target wasm32-unknown-unknown
# Upload: cairn plugin upload target/wasm32-unknown-unknown/release/{lib}.wasm --name {crate_name}
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
cairn-plugin-sdk = {{ path = "{sdk_path}" }}

# Its own workspace, not a member of any around it.
[workspace]
"#,
            lib = crate_name.replace('-', "_"),
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), SCAFFOLD_LIB)?;
    println!("created plugin crate {} (edit src/lib.rs, then see Cargo.toml for build and upload)", dir.display());
    Ok(())
}

const SCAFFOLD_LIB: &str = r#"//! A Cairn plugin: keeps the readings at or above the parameter `min`.

use cairn_plugin_sdk::{Output, Params, Plugin, Record};

pub struct Filter {
    min: f64,
}

impl Plugin for Filter {
    fn new(params: &Params) -> Result<Self, String> {
        Ok(Filter { min: params.parse("min")? })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), String> {
        if record.number()? >= self.min {
            out.keep(record)?;
        }
        Ok(()) // a record not kept is dropped
    }
}

cairn_plugin_sdk::export_plugin!(Filter);

#[cfg(test)]
mod tests {
    use cairn_plugin_sdk::testing::{batch, records};
    use cairn_plugin_sdk::run_batch;

    use super::Filter;

    #[test]
    fn keeps_readings_at_or_above_min() {
        let mut plugin = Filter { min: 20.0 };
        let outputs = run_batch(&mut plugin, &batch(&[(None, b"19.5", 1), (None, b"25", 2)])).unwrap();
        let kept = records(&outputs[0].1);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].value, b"25");
    }
}
"#;
