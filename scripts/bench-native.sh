#!/usr/bin/env bash
# Runs the native-protocol benchmarks against a fresh release hub on
# 127.0.0.1 and reports the hub's memory: idle RSS after start, and peak RSS
# (VmHWM) over the produce benchmarks. The 100-producer load also runs
# against Mosquitto (no persistence) as a reference, alternating run by run
# with Cairn, so a slow moment of this shared machine shows in both (it is
# installed from Debian's packages if missing). The end-to-end runs also
# report the commits (mostly the disk's fsync) slower than 5/20/100 ms.
# Usage: scripts/bench-native.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
source scripts/lib-hub.sh
ensure_mosquitto
# CAIRN=path runs another build (e.g. an older one, for an A/B comparison).
ensure_cairn
WORK="$(mktemp -d)"
HUB="" MOSQ=""
trap 'kill $HUB $MOSQ 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_hub
sleep 1
rss() { grep "$1" "/proc/$HUB/status" | awk '{print $2/1024 " MB"}'; }
echo "hub at $ADDR; idle RSS: $(rss VmRSS)"

echo "== batched produce"
"$CAIRN" bench produce --hub "$ADDR" --topic bench --records 2000000 --batch-records 1000 --producers 4 --in-flight 4 --runs "$RUNS"
echo "== 100 producers, one record in flight each; reference: Mosquitto, 100 QoS 1 publishers, one in flight each"
MOSQ_PORT=18830
start_mosquitto $MOSQ_PORT
: >"$WORK/c.txt"; : >"$WORK/m.txt"
for run in $(seq "$RUNS"); do
    out=$("$CAIRN" bench produce --hub "$ADDR" --topic single --partitions 1 --records 300000 --batch-records 1 \
        --producers 100 --in-flight 1 | sed -n "s/^run 1:/cairn run $run:/p")
    echo "$out"; echo "$out" | awk '{print $4}' >>"$WORK/c.txt"
    out=$("$CAIRN" bench mqtt --broker 127.0.0.1:$MOSQ_PORT --publishers 100 --messages 3000 --qos 1 --in-flight 1 \
        | sed -n "s/^run 1:/mosquitto run $run:/p")
    echo "$out"; echo "$out" | awk '{print $10}' >>"$WORK/m.txt"
done
c=$(median <"$WORK/c.txt"); m=$(median <"$WORK/m.txt")
echo "cairn (acks=durable) runs [$(paste -sd' ' "$WORK/c.txt")] median $c rec/s |" \
     "mosquitto (no disk) runs [$(paste -sd' ' "$WORK/m.txt")] median $m msg/s |" \
     "ratio cairn/mosquitto $(awk -v c="$c" -v m="$m" 'BEGIN {printf "%.2f", c/m}')"
kill $MOSQ 2>/dev/null || true; wait $MOSQ 2>/dev/null || true; MOSQ=""
echo "peak RSS during produce: $(rss VmHWM)"
echo "== catch-up consume of the batched topic"
"$CAIRN" bench consume --hub "$ADDR" --topic bench --runs "$RUNS"
echo "== end-to-end latency at 10,000 records/s; per run, the commits (mostly fsync) slower than 5/20/100 ms"
slow_commits() { "$CAIRN" metrics --hub "$ADDR" | awk '/^log_commits_over_/ {print $2}' | paste -sd' '; }
: >"$WORK/e.txt"
for run in $(seq "$RUNS"); do
    before=$(slow_commits)
    "$CAIRN" bench e2e --hub "$ADDR" --rate 10000 --seconds 10 | sed -n "s/^run 1:/run $run:/p" | tee -a "$WORK/e.txt"
    after=$(slow_commits)
    echo "  commits over 5/20/100 ms during run $run: $(echo "$before $after" | awk '{print $4-$1, $5-$2, $6-$3}')"
done
p50=$(grep -o 'p50 [0-9.]*' "$WORK/e.txt" | awk '{print $2}' | median)
p99=$(grep -o 'p99 [0-9.]*' "$WORK/e.txt" | awk '{print $2}' | median)
echo "median of $RUNS runs: p50 $p50 ms, p99 $p99 ms"
echo "peak RSS overall: $(rss VmHWM); RSS now: $(rss VmRSS)"
