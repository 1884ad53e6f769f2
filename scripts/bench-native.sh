#!/usr/bin/env bash
# Runs the native-protocol benchmarks against a fresh release hub on
# 127.0.0.1 and reports the hub's memory: idle RSS after start, and peak RSS
# (VmHWM) over the produce benchmarks. Usage: scripts/bench-native.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
cargo build --release -q -p cairn-hub --bin cairn
CAIRN=target/release/cairn
WORK="$(mktemp -d)"
HUB=""
trap 'kill "$HUB" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

source scripts/lib-hub.sh
start_hub
sleep 1
rss() { grep "$1" "/proc/$HUB/status" | awk '{print $2/1024 " MB"}'; }
echo "hub at $ADDR; idle RSS: $(rss VmRSS)"

echo "== batched produce"
"$CAIRN" bench produce --hub "$ADDR" --topic bench --records 2000000 --batch-records 1000 --producers 4 --in-flight 4 --runs "$RUNS"
echo "== 100 producers, one record in flight each"
"$CAIRN" bench produce --hub "$ADDR" --topic single --partitions 1 --records 300000 --batch-records 1 --producers 100 --in-flight 1 --runs "$RUNS"
echo "peak RSS during produce: $(rss VmHWM)"
echo "== catch-up consume of the batched topic"
"$CAIRN" bench consume --hub "$ADDR" --topic bench --runs "$RUNS"
echo "== end-to-end latency at 10,000 records/s"
"$CAIRN" bench e2e --hub "$ADDR" --rate 10000 --seconds 10 --runs "$RUNS"
echo "peak RSS overall: $(rss VmHWM); RSS now: $(rss VmRSS)"
