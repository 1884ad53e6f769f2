#!/usr/bin/env bash
# Uplink forwarding rate against the same client library producing the same
# records directly, side by side, to a local Mosquitto and a local Kafka-API
# broker (Tansu); and the hub's RSS while it catches up (docs/BENCHMARKS.md,
# "Uplinks").
#
#   scripts/bench-uplink.sh [RECORDS] [RUNS]     (defaults: 1000000, 3)
#
# Each run, for each upstream:
# - direct: one client sending RECORDS records of 100 bytes with the
#   uplink's window: `cairn bench mqtt` (rumqttc, QoS 1, 1,000 in flight,
#   the MQTT link's window) or `cairn bench kafka` (librdkafka, idempotent,
#   runs of BATCH records awaited whole, as the Kafka link sends);
# - uplink: RECORDS records of 100 bytes produced into topic `sensors` of a
#   fresh hub with no uplink yet (a backlog, as after an outage), then the
#   hub restarted with the `[[uplink]]`: records/s from the restart until
#   `cairn uplink describe` reports an empty backlog; the hub's peak RSS.
# Mosquitto runs without persistence, Tansu in memory; neither has readers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-hub.sh

RECORDS=${1:-1000000}
RUNS=${2:-3}
# The uplinks' run (batch_records, their default), and the direct clients'
# window: the same as the uplink's (an MQTT link keeps at most 1,000 in flight).
BATCH=${BATCH:-5000}
MQTT_WINDOW=$((BATCH < 1000 ? BATCH : 1000))
WORK=$(mktemp -d)
MOSQ_PORT=$((20000 + RANDOM % 10000))
KAFKA_PORT=$((MOSQ_PORT + 1))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

ensure_cairn
start_mosquitto $MOSQ_PORT
start_tansu $KAFKA_PORT direct up.sensors

# uplink_run KIND: one catch-up of RECORDS records; appends records/s to
# $WORK/uplink-KIND.txt and the peak RSS (MiB) to $WORK/rss-KIND.txt.
uplink_run() {
    local kind=$1
    rm -rf "$WORK/data"
    start_hub
    "$CAIRN" bench produce --hub "$ADDR" --topic sensors --partitions 4 --records "$RECORDS" --value-bytes 100 \
        >/dev/null
    kill -TERM $HUB; wait $HUB || true
    if [ "$kind" = mqtt ]; then
        printf '[[uplink]]\nname = "cloud"\nkind = "mqtt"\ntopics = ["sensors"]\nhost = "127.0.0.1"\nport = %s\nremote_topic = "up/{topic}/{partition}"\nbatch_records = %s\n' \
            $MOSQ_PORT "$BATCH" >"$WORK/uplink.toml"
    else
        printf '[[uplink]]\nname = "cloud"\nkind = "kafka"\ntopics = ["sensors"]\nbootstrap_servers = "127.0.0.1:%s"\nremote_topic = "up.{topic}"\nbatch_records = %s\n' \
            $KAFKA_PORT "$BATCH" >"$WORK/uplink.toml"
    fi
    start_hub --config "$WORK/uplink.toml"
    local started peak=0 rss backlog ended
    started=$(date +%s.%N)
    while :; do
        rss=$(awk '/VmRSS/ {print $2}' /proc/$HUB/status)
        [ "$rss" -gt "$peak" ] && peak=$rss
        backlog=$("$CAIRN" uplink describe cloud --hub "$ADDR" --output json \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["backlog_records"])')
        [ "$backlog" = 0 ] && break
        sleep 0.2
    done
    ended=$(date +%s.%N)
    kill -TERM $HUB; wait $HUB || true
    echo "$RECORDS $started $ended" | awk '{printf "%.0f\n", $1 / ($3 - $2)}' >>"$WORK/uplink-$kind.txt"
    echo $((peak / 1024)) >>"$WORK/rss-$kind.txt"
}

for run in $(seq 1 "$RUNS"); do
    "$CAIRN" bench mqtt --broker 127.0.0.1:$MOSQ_PORT --publishers 1 --messages "$RECORDS" --payload-bytes 100 \
        --qos 1 --in-flight "$MQTT_WINDOW" | awk '/^median:/ {print $2}' >>"$WORK/direct-mqtt.txt"
    uplink_run mqtt
    "$CAIRN" bench kafka --bootstrap-servers 127.0.0.1:$KAFKA_PORT --topic direct --records "$RECORDS" \
        --value-bytes 100 --in-flight "$BATCH" | awk '/^median:/ {print $2}' >>"$WORK/direct-kafka.txt"
    uplink_run kafka
done

echo "records=$RECORDS runs=$RUNS (medians; each run's figures in brackets)"
for kind in mqtt kafka; do
    d=$(median <"$WORK/direct-$kind.txt"); u=$(median <"$WORK/uplink-$kind.txt"); r=$(median <"$WORK/rss-$kind.txt")
    echo "$kind: direct [$(paste -sd' ' "$WORK/direct-$kind.txt")] $d/s | uplink catch-up [$(paste -sd' ' "$WORK/uplink-$kind.txt")] $u/s" \
         "| ratio $(awk -v u="$u" -v d="$d" 'BEGIN {printf "%.2f", u/d}') | hub peak RSS [$(paste -sd' ' "$WORK/rss-$kind.txt")] MiB"
done
