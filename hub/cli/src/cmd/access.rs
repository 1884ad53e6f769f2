//! `cairn auth …` and `cairn acl …`: API keys and access rules, in the
//! spirit of Confluent's `api-key` and Kafka's `kafka-acls` (docs/security.md).

use std::path::PathBuf;

use cairn_client::{AclEntry, AclRule, Operation, PatternKind, ResourceKind};
use cairn_log::{Log, LogOptions};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{AnyError, HubArgs, Output};

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Create the first admin key in a data directory while the hub is
    /// stopped (also the way back in after losing every admin secret).
    /// On a running hub, use `cairn auth key create --admin`.
    Init {
        /// The hub's data directory.
        #[arg(long, env = "CAIRN_DATA_DIR", default_value = "cairn-data")]
        data_dir: PathBuf,
        /// The admin principal's name.
        #[arg(long, default_value = "admin")]
        principal: String,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Create, list and revoke API keys on a running hub (admin).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
        #[command(flatten)]
        hub: HubArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make an API key. Its secret is printed once and never stored: keep it.
    Create {
        /// Who the key acts as: the name ACL rules grant to (`%u` in patterns).
        #[arg(long)]
        principal: String,
        /// May do everything (manage keys and ACLs, every topic).
        #[arg(long)]
        admin: bool,
        /// A note for `key list` (what device or service holds it).
        #[arg(long)]
        description: Option<String>,
    },
    /// List API keys (never their secrets).
    List,
    /// Delete a key: its next request fails and its connections close.
    Revoke { key: String },
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Allow a principal some operations on resources matching a pattern.
    Add(AclArgs),
    /// List rules.
    List {
        /// Only this principal's rules.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Remove a rule by id (from `acl list`).
    Remove { id: u64 },
}

#[derive(Args, Debug)]
pub struct AclArgs {
    /// Who the rule is for (a key's principal), or `*` for everyone
    /// authenticated (`anonymous` for clients without a key when the hub
    /// allows them).
    #[arg(long)]
    principal: String,
    /// Operations to allow, comma-separated: read, write, create, delete,
    /// alter, describe, all.
    #[arg(long = "operation", value_delimiter = ',', required = true)]
    operations: Vec<Operation>,
    /// Topics named by this pattern (`*`: all). Over MQTT the pattern is
    /// matched against the MQTT topic, over the native protocol against the
    /// Cairn topic. `%u` is the principal, `%c` the MQTT client id.
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// Consumer groups named by this pattern.
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// Plugins named by this pattern.
    #[arg(long, group = "resource")]
    plugin: Option<String>,
    /// The hub itself: metrics (describe), keys and ACLs (alter).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// How the pattern matches: literal, prefix or filter (MQTT topic
    /// filter). Default: filter if the pattern has `+` or `#`, else literal.
    #[arg(long)]
    pattern_type: Option<PatternKind>,
}

impl AclArgs {
    fn rule(self) -> Result<AclRule, AnyError> {
        let (resource, pattern) = match (self.topic, self.group, self.plugin, self.cluster) {
            (Some(p), None, None, false) => (ResourceKind::Topic, p),
            (None, Some(p), None, false) => (ResourceKind::Group, p),
            (None, None, Some(p), false) => (ResourceKind::Plugin, p),
            (None, None, None, true) => (ResourceKind::Cluster, String::new()),
            _ => return Err("name one resource: --topic, --group, --plugin or --cluster".into()),
        };
        let pattern_kind = self.pattern_type.unwrap_or(if pattern.contains(['+', '#']) {
            PatternKind::Filter
        } else {
            PatternKind::Literal
        });
        Ok(AclRule { principal: self.principal, resource, pattern_kind, pattern, operations: self.operations })
    }
}

pub async fn run_auth(command: AuthCommand) -> Result<(), AnyError> {
    match command {
        AuthCommand::Init { data_dir, principal, hub } => init(&data_dir, &principal, hub.output).await,
        AuthCommand::Key { command, hub } => key(command, hub).await,
    }
}

async fn init(data_dir: &std::path::Path, principal: &str, output: Output) -> Result<(), AnyError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let path = data_dir.join("cairn.redb");
    let log = Log::open(&path, LogOptions::default()).map_err(|e| {
        format!(
            "cannot open the log at {}: {e}\n(if the hub is running, use `cairn auth key create --admin` against it instead)",
            path.display()
        )
    })?;
    let made = cairn_hub::auth::init_admin_key(&log, principal).await;
    log.close().await?;
    let (key, secret) = made?;
    print_new_key(&key, &secret, principal, output);
    Ok(())
}

fn print_new_key(key: &str, secret: &str, principal: &str, output: Output) {
    match output {
        Output::Json => println!("{}", json!({ "key": key, "secret": secret, "principal": principal })),
        Output::Text => {
            println!("key:       {key}");
            println!("secret:    {secret}");
            println!("principal: {principal}");
            eprintln!("The secret is shown this once and is not stored; keep it somewhere safe.");
        }
    }
}

async fn key(command: KeyCommand, hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    match command {
        KeyCommand::Create { principal, admin, description } => {
            let made = client.create_api_key(&principal, admin, description.as_deref()).await?;
            print_new_key(&made.key, &made.secret, &made.principal, hub.output);
        }
        KeyCommand::List => {
            for k in client.list_api_keys().await? {
                match hub.output {
                    Output::Json => println!(
                        "{}",
                        json!({ "key": k.key, "principal": k.principal, "admin": k.admin,
                                "description": k.description, "created_ms": k.created_ms })
                    ),
                    Output::Text => println!(
                        "{}  principal={}{}  {}",
                        k.key,
                        k.principal,
                        if k.admin { " admin" } else { "" },
                        k.description
                    ),
                }
            }
        }
        KeyCommand::Revoke { key } => {
            client.revoke_api_key(&key).await?;
            if hub.output == Output::Text {
                println!("revoked {key}");
            }
        }
    }
    Ok(())
}

pub async fn run_acl(command: AclCommand, hub: HubArgs) -> Result<(), AnyError> {
    let client = hub.connect().await?;
    match command {
        AclCommand::Add(args) => {
            let rule = args.rule()?;
            let id = client.add_acl(rule.clone()).await?;
            print_rule(&AclEntry { id, rule }, hub.output);
        }
        AclCommand::List { principal } => {
            for entry in client.list_acls(principal.as_deref()).await? {
                print_rule(&entry, hub.output);
            }
        }
        AclCommand::Remove { id } => {
            client.remove_acl(id).await?;
            if hub.output == Output::Text {
                println!("removed rule {id}");
            }
        }
    }
    Ok(())
}

fn print_rule(entry: &AclEntry, output: Output) {
    let r = &entry.rule;
    let ops: Vec<&str> = r.operations.iter().map(|o| o.name()).collect();
    match output {
        Output::Json => println!(
            "{}",
            json!({ "id": entry.id, "principal": r.principal, "resource": r.resource.name(),
                    "pattern_type": r.pattern_kind.name(), "pattern": r.pattern, "operations": ops })
        ),
        Output::Text => println!(
            "{:>4}  {}  {} {} {:?}  {}",
            entry.id,
            r.principal,
            r.resource,
            r.pattern_kind,
            r.pattern,
            ops.join(",")
        ),
    }
}
