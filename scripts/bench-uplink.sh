#!/usr/bin/env bash
# Uplink forwarding throughput against the same client library publishing
# directly, side by side, and catch-up of a backlog (docs/BENCHMARKS.md,
# "Uplinks").
#
#   scripts/bench-uplink.sh [RECORDS] [RUNS]     (defaults: 1000000, 3)
#
# Each run:
# - direct: `cairn bench mqtt`, one rumqttc publisher with 500 QoS 1 messages
#   in flight (the uplink's default run), RECORDS messages of 100 bytes to a
#   local Mosquitto: messages/s until the last PUBACK;
# - uplink: RECORDS records of 100 bytes produced into topic `sensors` of a
#   fresh hub with its uplink not yet configured (a backlog, as after an
#   outage), then the hub restarted with an `[[uplink]]` to the same
#   Mosquitto: records/s from the restart until `cairn uplink describe`
#   reports an empty backlog, and the hub's peak RSS meanwhile.
# Mosquitto runs without persistence and without subscribers in both.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-hub.sh

RECORDS=${1:-1000000}
RUNS=${2:-3}
WORK=$(mktemp -d)
MOSQ_PORT=$((20000 + RANDOM % 10000))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

ensure_cairn
start_mosquitto $MOSQ_PORT

for run in $(seq 1 "$RUNS"); do
    "$CAIRN" bench mqtt --broker 127.0.0.1:$MOSQ_PORT --publishers 1 --messages "$RECORDS" --payload-bytes 100 \
        --qos 1 --in-flight 500 | awk '/^median:/ {print $2}' >>"$WORK/direct.txt"

    rm -rf "$WORK/data"
    start_hub
    "$CAIRN" bench produce --hub "$ADDR" --topic sensors --partitions 4 --records "$RECORDS" --value-bytes 100 \
        >"$WORK/produce-$run.txt"
    kill -TERM $HUB; wait $HUB || true

    cat >"$WORK/uplink.toml" <<TOML
[[uplink]]
name = "cloud"
kind = "mqtt"
topics = ["sensors"]
host = "127.0.0.1"
port = $MOSQ_PORT
remote_topic = "site/{topic}/{partition}"
TOML
    start_hub --config "$WORK/uplink.toml"
    started=$(date +%s.%N)
    peak=0
    while :; do
        rss=$(awk '/VmRSS/ {print $2}' /proc/$HUB/status)
        [ "$rss" -gt "$peak" ] && peak=$rss
        backlog=$("$CAIRN" uplink describe cloud --hub "$ADDR" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backlog_records"])')
        [ "$backlog" = 0 ] && break
        sleep 0.2
    done
    ended=$(date +%s.%N)
    kill -TERM $HUB; wait $HUB || true
    echo "$RECORDS $started $ended" | awk '{printf "%.0f\n", $1 / ($3 - $2)}' >>"$WORK/uplink.txt"
    echo $((peak / 1024)) >>"$WORK/rss.txt"
done

d=$(median <"$WORK/direct.txt"); u=$(median <"$WORK/uplink.txt"); r=$(median <"$WORK/rss.txt")
echo "records=$RECORDS runs=$RUNS"
echo "direct (rumqttc, 500 in flight): runs [$(paste -sd' ' "$WORK/direct.txt")] median $d msg/s"
echo "uplink catch-up:                 runs [$(paste -sd' ' "$WORK/uplink.txt")] median $u records/s"
echo "ratio uplink/direct $(awk -v u="$u" -v d="$d" 'BEGIN {printf "%.2f", u/d}'); hub peak RSS while catching up: runs [$(paste -sd' ' "$WORK/rss.txt")] MiB, median $r MiB"
