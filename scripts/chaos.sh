#!/usr/bin/env bash
# The mixed-load crash audit (docs/RELIABILITY.md): the real hub under
# idempotent native producers (one into a topic with an ingest plugin, one
# into the source of a derived topic), MQTT QoS 1 and QoS 2 publishers and a
# native consumer group, all at once, killed with -9 at random moments
# ROUNDS times and restarted; then every acknowledged record is audited
# (exactly once, in order per key), the derived topic (one output per source
# record), and the group's offsets after each restart (never ahead of what
# its member processed). Exits non-zero with what was wrong.
# Usage: scripts/chaos.sh [ROUNDS]   (default 20; CI runs 3 in tests/chaos.rs)
# The hub's log goes to target/chaos-hub.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-20}"

cargo build --locked -p cairn
cargo build --locked -p cairn-e2e --bin chaos
./scripts/build-plugins.sh >/dev/null
rm -f target/chaos-hub.log
CHAOS_HUB_LOG=target/chaos-hub.log target/debug/chaos target/debug/cairn target/wasm32-unknown-unknown/release "$ROUNDS"
