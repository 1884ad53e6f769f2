#!/usr/bin/env bash
# WebAssembly plugin benchmarks (docs/BENCHMARKS.md), release build, on
# 127.0.0.1:
# 1. the plugin stage alone: `cairn bench plugin` (threshold example, 100 B
#    records in batches of 1,000), which also times compile and cached load;
# 2. durable produce to a topic with the threshold filter attached on ingest
#    against a topic without, alternating, same hub, same run;
# 3. upload (compile) time over the protocol, and the restart of a hub whose
#    attachment loads from the compile cache.
# Usage: scripts/bench-plugins.sh [runs] [records]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
RECORDS="${2:-2000000}"
cargo build --release -q -p cairn-hub --bin cairn
./scripts/build-plugins.sh >/dev/null
CAIRN=target/release/cairn
PLUGIN=target/wasm32-unknown-unknown/release/cairn_plugin_threshold.wasm
WORK="$(mktemp -d)"
HUB=""
trap 'kill "$HUB" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

source scripts/lib-hub.sh
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== plugin stage alone (threshold, min=20: half kept)"
"$CAIRN" bench plugin --plugin "$PLUGIN" --param min=20 --records 5000000 --batch 1000 --runs "$RUNS"

start_hub
echo "hub at $ADDR"
echo "== upload (compile in the hub)"
"$CAIRN" plugin upload "$PLUGIN" --name threshold --hub "$ADDR"

echo "== durable produce, $RECORDS records of 100 B in batches of 1,000, 4 producers x 4 in flight"
echo "   plain: no plugin; keep-half: threshold min=20 over readings 21.5,19.0 in turn;"
echo "   keep-all: threshold min=20 over readings of 21.5 (the filter drops nothing)"
for run in $(seq 1 "$RUNS"); do
    for kind in plain keep-half keep-all; do
        topic="$kind-$run"
        "$CAIRN" topic create "$topic" --partitions 4 --hub "$ADDR" >/dev/null
        if [ "$kind" != plain ]; then
            "$CAIRN" plugin attach "$topic" threshold -p min=20 --hub "$ADDR" >/dev/null
        fi
        readings=21.5,19.0
        [ "$kind" = keep-all ] && readings=21.5
        rate=$("$CAIRN" bench produce --hub "$ADDR" --topic "$topic" --partitions 4 --records "$RECORDS" \
            --readings "$readings" --batch-records 1000 --producers 4 --in-flight 4 |
            grep -o '^run 1: [0-9]*' | awk '{print $3}')
        echo "run $run $topic: $rate rec/s"
        echo "$rate" >>"$WORK/$kind"
    done
done
plain=$(median <"$WORK/plain")
half=$(median <"$WORK/keep-half")
all=$(median <"$WORK/keep-all")
ratio() { awk "BEGIN {printf \"%.2f\", $1 / $2}"; }
echo "median without plugin: $plain rec/s"
echo "median with the ingest filter keeping half: $half rec/s; ratio $(ratio "$half" "$plain")"
echo "median with the ingest filter keeping all: $all rec/s; ratio $(ratio "$all" "$plain")"
"$CAIRN" plugin describe threshold --hub "$ADDR" >"$WORK/describe.txt"
head -4 "$WORK/describe.txt"

echo "== restart: attachments restored from the compile cache"
kill -TERM "$HUB"
wait "$HUB" || true
start_hub
sed 's/\x1b\[[0-9;]*m//g' "$WORK/hub.log" | grep -E "log opened|attachment restored" | head -4 || true
