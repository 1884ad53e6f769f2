#!/usr/bin/env bash
# The 100-producer load (one 100-byte record in flight each, acks=durable)
# against a fresh log and against one already holding PREFILL records, with
# quick_repair off and on, alternated run by run (fresh hub each run). Prints
# records/s, the bytes the hub wrote to disk per record (/proc/<pid>/io) and
# the log writer thread's CPU per record (/proc/<pid>/task/*/stat).
# Usage: scripts/bench-grown-log.sh [runs] [prefill records]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
PREFILL="${2:-12000000}"
source scripts/lib-hub.sh
# CAIRN=path runs another build (e.g. an older one, for an A/B comparison).
ensure_cairn
HUB=""
WORK=""
trap 'kill "$HUB" 2>/dev/null || true; wait 2>/dev/null || true; [ -z "$WORK" ] || rm -rf "$WORK"' EXIT

writer_ticks() {
    for t in /proc/"$HUB"/task/*; do
        if [ "$(cat "$t/comm")" = cairn-log-write ]; then awk '{print $14 + $15}' "$t/stat"; fi
    done
}

one_run() { # quick_repair prefill
    WORK="$(mktemp -d)"
    CAIRN_QUICK_REPAIR="$1" start_hub
    if [ "$2" -gt 0 ]; then
        "$CAIRN" bench produce --hub "$ADDR" --topic fill --records "$2" --batch-records 1000 \
            --producers 4 --in-flight 4 --runs 1 >/dev/null
    fi
    local size w0 t0 rate w1 t1
    size=$(du -sh "$WORK/data" | cut -f1)
    w0=$(awk '/^write_bytes/ {print $2}' /proc/"$HUB"/io)
    t0=$(writer_ticks)
    rate=$("$CAIRN" bench produce --hub "$ADDR" --topic single --partitions 1 --records 100000 \
        --batch-records 1 --producers 100 --in-flight 1 --runs 1 | grep -o 'run 1: [0-9]* rec/s' | cut -d' ' -f3)
    w1=$(awk '/^write_bytes/ {print $2}' /proc/"$HUB"/io)
    t1=$(writer_ticks)
    # Ticks are 10 ms: 10,000 µs per tick over 100,000 records.
    printf "quick_repair=%-5s log=%-5s %6s rec/s  %5s B written/record  writer %s µs/record\n" \
        "$1" "$size" "$rate" "$(((w1 - w0) / 100000))" "$(echo "scale=1; ($t1 - $t0) / 10" | bc)"
    kill "$HUB"
    wait "$HUB" 2>/dev/null || true
    rm -rf "$WORK"
    WORK=""
}

for _ in $(seq 1 "$RUNS"); do
    for prefill in 0 "$PREFILL"; do
        for qr in false true; do one_run "$qr" "$prefill"; done
    done
done
