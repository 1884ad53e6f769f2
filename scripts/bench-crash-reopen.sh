#!/usr/bin/env bash
# Measures how long the log takes to reopen after a `kill -9` with ~10 million
# records stored. Usage: scripts/bench-crash-reopen.sh [true|false] (quick_repair).
# Writes 10M records with `cairn bench storage`, SIGKILLs it during its
# single-record phase, then starts `cairn serve` on the file and prints the
# "log opened ... elapsed_ms" line.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK_REPAIR="${1:-false}"
source scripts/lib-hub.sh
# CAIRN=path runs another build (e.g. an older one, for an A/B comparison).
ensure_cairn
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bench" "$WORK/data"

"$CAIRN" bench storage --dir "$WORK/bench" --records 10000000 --runs 1 --single-secs 60 \
    --quick-repair "$QUICK_REPAIR" >/dev/null 2>&1 &
PID=$!
# Wait for the batched phase to finish: the "single" topic starts growing then.
for _ in $(seq 1 120); do
    sleep 1
    SIZE=$(stat -c %s "$WORK/bench/bench.redb" 2>/dev/null || echo 0)
    if [ "$SIZE" -gt 1100000000 ]; then break; fi
done
sleep 3
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
mv "$WORK/bench/bench.redb" "$WORK/data/cairn.redb"
sync

RUST_LOG=info "$CAIRN" serve --data-dir "$WORK/data" --mqtt false 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 1 120); do
    sleep 0.5
    if grep -q "cairn is running" "$WORK/serve.log"; then break; fi
done
kill -TERM "$SERVE"
wait "$SERVE" || true
grep -E "log opened|topic=|repair|not closed cleanly" "$WORK/serve.log" | sed 's/\x1b\[[0-9;]*m//g'
