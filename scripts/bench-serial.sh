#!/usr/bin/env bash
# Serial-line benchmark of the device SDK (docs/BENCHMARKS.md): starts a hub
# with a serial-over-TCP listener on loopback, then runs the publisher over a
# link paced like a 115200-baud UART. Usage: scripts/bench-serial.sh [baud] [readings] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p cairn --bin cairn -p cairn-e2e --bin serial_link_bench
data=$(mktemp -d)
log=$(mktemp)
trap 'kill $hub 2>/dev/null || true; wait $hub 2>/dev/null || true; rm -rf "$data" "$log"' EXIT
RUST_LOG=info NO_COLOR=1 target/release/cairn serve --data-dir "$data" \
    --native-addr 127.0.0.1:0 --mqtt false --serial-tcp-addr 127.0.0.1:0 2>"$log" &
hub=$!
for _ in $(seq 100); do grep -q "cairn is running" "$log" && break; sleep 0.1; done
native=$(grep -o 'native protocol listening addr=[0-9.:]*' "$log" | sed 's/.*addr=//')
serial=$(grep -o 'serial-over-TCP listening addr=[0-9.:]*' "$log" | sed 's/.*addr=//')
target/release/cairn topic create readings --partitions 1 --hub "$native" >/dev/null
target/release/serial_link_bench "$serial" readings "${1:-115200}" "${2:-5000}" "${3:-3}"
