//! Every `cairn` command answers `--help` with its usage, and a wrong
//! command or flag is a clear error with a nonzero exit.
//!
//! Being an integration test of the `cairn` package, this file also makes
//! `cargo test --workspace` build the `cairn` binary itself, which the
//! end-to-end tests in `tests/` start.

use std::process::Command;

fn cairn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).output().expect("run cairn")
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["topic"],
        &["topic", "create"],
        &["topic", "list"],
        &["produce"],
        &["consume"],
        &["group"],
        &["group", "describe"],
        &["metrics"],
        &["plugin"],
        &["plugin", "upload"],
        &["plugin", "attach"],
        &["bench"],
        &["bench", "storage"],
        &["bench", "produce"],
        &["bench", "consume"],
        &["bench", "e2e"],
        &["bench", "mqtt"],
        &["bench", "plugin"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = cairn(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("Usage: cairn"), "cairn {args:?} printed no usage:\n{stdout}");
    }
}

#[test]
fn unknown_commands_and_flags_are_errors() {
    for args in [&["frobnicate"][..], &["serve", "--no-such-flag"]] {
        let out = cairn(args);
        assert!(!out.status.success(), "cairn {args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error:"), "cairn {args:?}: {stderr}");
    }
}
