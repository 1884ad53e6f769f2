#!/usr/bin/env bash
# WebAssembly plugin benchmarks (docs/BENCHMARKS.md), release build, on
# 127.0.0.1:
# 1. the plugin stage alone: `cairn bench plugin` (threshold example, 100 B
#    records in batches of 1,000), which also times compile and cached load;
# 2. durable produce to a topic with the threshold filter attached on ingest
#    (keeping half of the readings, and keeping all of them) against a topic
#    without, one after the other on a fresh hub per run;
# 3. upload (compile) time over the protocol, and the restart of a hub whose
#    attachment loads from the compile cache.
# Usage: scripts/bench-plugins.sh [runs] [records]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
RECORDS="${2:-2000000}"
source scripts/lib-hub.sh
# CAIRN=path runs another build (e.g. an older one, for an A/B comparison).
ensure_cairn
./scripts/build-plugins.sh >/dev/null
PLUGIN=target/wasm32-unknown-unknown/release/cairn_plugin_threshold.wasm
WORK="$(mktemp -d)"
HUB=""
trap 'kill "$HUB" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT


echo "== plugin stage alone (threshold, min=20: half kept)"
"$CAIRN" bench plugin --plugin "$PLUGIN" --param min=20 --records 5000000 --batch 1000 --runs "$RUNS"

echo "== durable produce, $RECORDS records of 100 B in batches of 1,000, 4 producers x 4 in flight"
echo "   plain: no plugin; keep-half: threshold min=20 over readings 21.5,19.0 in turn;"
echo "   keep-all: threshold min=20 over readings of 21.5 (the filter drops nothing)."
echo "   Each run on a fresh hub (an ever larger database slows later runs), the"
echo "   order rotating; ratios are taken within a run, and their medians reported."
for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/data"
    start_hub
    if [ "$run" = 1 ]; then
        echo "== upload (compile in the hub)"
        "$CAIRN" plugin upload "$PLUGIN" --name threshold --hub "$ADDR"
    else
        "$CAIRN" plugin upload "$PLUGIN" --name threshold --hub "$ADDR" >/dev/null
    fi
    # The order rotates from run to run, so no kind always meets the
    # emptiest database.
    kinds=(plain keep-half keep-all)
    for i in 0 1 2; do
        kind=${kinds[$(((i + run - 1) % 3))]}
        "$CAIRN" topic create "$kind" --partitions 4 --hub "$ADDR" >/dev/null
        if [ "$kind" != plain ]; then
            "$CAIRN" plugin attach "$kind" threshold -p min=20 --hub "$ADDR" >/dev/null
        fi
        readings=21.5,19.0
        [ "$kind" = keep-all ] && readings=21.5
        rate=$("$CAIRN" bench produce --hub "$ADDR" --topic "$kind" --partitions 4 --records "$RECORDS" \
            --readings "$readings" --batch-records 1000 --producers 4 --in-flight 4 |
            grep -o '^run 1: [0-9]*' | awk '{print $3}')
        eval "rate_${kind//-/_}=$rate"
    done
    half=$(awk "BEGIN {printf \"%.2f\", $rate_keep_half / $rate_plain}")
    all=$(awk "BEGIN {printf \"%.2f\", $rate_keep_all / $rate_plain}")
    echo "run $run: plain $rate_plain rec/s | keep-half $rate_keep_half rec/s (x$half) | keep-all $rate_keep_all rec/s (x$all)"
    echo "$rate_plain" >>"$WORK/plain"
    echo "$half" >>"$WORK/half"
    echo "$all" >>"$WORK/all"
    if [ "$run" != "$RUNS" ]; then
        kill -TERM "$HUB"
        wait "$HUB" || true
    fi
done
echo "median without plugin: $(median <"$WORK/plain") rec/s"
echo "median ratio with the ingest filter keeping half: $(median <"$WORK/half")"
echo "median ratio with the ingest filter keeping all: $(median <"$WORK/all")"
"$CAIRN" plugin describe threshold --hub "$ADDR" >"$WORK/describe.txt"
head -4 "$WORK/describe.txt"

echo "== restart: attachments restored from the compile cache"
kill -TERM "$HUB"
wait "$HUB" || true
start_hub
sed 's/\x1b\[[0-9;]*m//g' "$WORK/hub.log" | grep -E "log opened|attachment restored" | head -4 || true
