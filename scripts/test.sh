#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests
# need first (so far only the Rust toolchain the machine already has), then
# `cargo test`. Later parts add their prerequisites here (rustup targets for
# plugins and firmware, mosquitto-clients, qemu-system-arm).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi

# The end-to-end tests in tests/ start the `cairn` binary: build it (and the
# crash-test helper) first, so they never run a stale one.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
