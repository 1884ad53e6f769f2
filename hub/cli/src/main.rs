//! The `cairn` command: `cairn serve` runs the hub, the other subcommands
//! are tools around it.

mod bench;
mod cmd;
mod config;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::bench::command::BenchCommand;
use crate::serve::ServeArgs;
use cmd::HubArgs;

/// Cairn: an event hub for the edge. Keeps every sensor event in a durable,
/// partitioned log.
#[derive(Parser)]
#[command(name = "cairn", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: open the log in the data directory and serve the native
    /// protocol until Ctrl-C or SIGTERM (retention runs in the background).
    Serve(ServeArgs),
    /// Manage topics on a running hub.
    Topic {
        #[command(subcommand)]
        command: cmd::topic::TopicCommand,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Write records to a topic, one per line of standard input (any bytes;
    /// with --output json, one {"line", "partition", "offset"} per record
    /// stored).
    Produce {
        #[command(flatten)]
        args: cmd::produce::ProduceArgs,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Print records of a topic.
    Consume {
        #[command(flatten)]
        args: cmd::consume::ConsumeArgs,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Show a running hub's traffic counters (serial frames in and skipped, …).
    Metrics {
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Inspect consumer groups on a running hub.
    Group {
        #[command(subcommand)]
        command: cmd::group::GroupCommand,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Manage WebAssembly plugins on a running hub: upload, attach to topics
    /// (on ingest or as derived topics), swap versions, dry-run.
    Plugin {
        #[command(subcommand)]
        command: cmd::plugin::PluginCommand,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Uplinks to an upstream broker (declared under [[uplink]] in the hub's
    /// config): state, backlog, pause and resume.
    Uplink {
        #[command(subcommand)]
        command: cmd::uplink::UplinkCommand,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// API keys: create the first admin key, create, list and revoke keys.
    #[command(subcommand)]
    Auth(cmd::access::AuthCommand),
    /// Access rules: which principal may do what to which topics, groups,
    /// plugins.
    Acl {
        #[command(subcommand)]
        command: cmd::access::AclCommand,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Measure Cairn on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Which log lines are written: `RUST_LOG` as a level, or a level per
/// target (`cairn_hub=debug,info`), and `info` without it. tracing's
/// per-target filter rather than its `EnvFilter`, whose span and field
/// matching brings a regex engine (370 KB of binary). A `RUST_LOG` it
/// cannot read is reported, not silently ignored.
fn log_filter() -> Targets {
    let default = Targets::new().with_default(tracing::Level::INFO);
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse().unwrap_or_else(|err| {
            eprintln!("warning: RUST_LOG={spec:?} ignored ({err}); it takes e.g. `debug` or `cairn_hub=debug,info`");
            default
        }),
        _ => default,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(log_filter())
        .init();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        // Before the runtime's threads exist (docs/mqtt.md, "Memory").
        cairn_hub::memory::limit_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Topic { command, hub } => cmd::topic::run(command, hub).await,
            Command::Produce { args, hub } => cmd::produce::run(args, hub).await,
            Command::Consume { args, hub } => cmd::consume::run(args, hub).await,
            Command::Group { command, hub } => cmd::group::run(command, hub).await,
            Command::Metrics { hub } => cmd::metrics::run(hub).await,
            Command::Plugin { command, hub } => cmd::plugin::run(command, hub).await,
            Command::Uplink { command, hub } => cmd::uplink::run(command, hub).await,
            Command::Auth(command) => cmd::access::run_auth(command).await,
            Command::Acl { command, hub } => cmd::access::run_acl(command, hub).await,
            Command::Bench(command) => bench::command::run(command).await,
        }
    });
    // Do not wait for blocked reads of standard input (`cairn produce` after
    // Ctrl-C) on the way out: everything to finish was awaited above.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Any error of a command, printed as `error: …` before exiting with 1.
pub(crate) type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Registers for SIGINT and SIGTERM now (so a signal arriving right after
/// startup is not lost to the default action) and returns a future that
/// resolves on the first of them.
pub(crate) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
