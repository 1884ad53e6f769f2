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

cargo test --workspace --locked "$@"
