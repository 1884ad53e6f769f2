#!/usr/bin/env bash
# MQTT benchmark (docs/BENCHMARKS.md): Cairn and Mosquitto on loopback, same
# machine, same load, measured by the same client (`cairn bench mqtt`), runs
# alternating between the two. Mosquitto runs with its defaults (no
# persistence: it PUBACKs before anything reaches a disk); Cairn PUBACKs after
# the fsync. Also: RSS of Cairn holding 1,000 idle connections.
# Usage: scripts/bench-mqtt.sh [runs=3] [messages_total=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
total=${2:-100000}
source scripts/lib-hub.sh
# CAIRN=path runs another build (e.g. an older one, for an A/B comparison).
ensure_cairn
work=$(mktemp -d)
WORK=$work
mosq="" hub=""
trap 'kill $mosq $hub 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
MOSQ_PORT=18830
CAIRN_PORT=18831
start_mosquitto $MOSQ_PORT
mosq=$MOSQ
NO_COLOR=1 RUST_LOG=warn "$CAIRN" serve --data-dir "$work/data" --native-addr 127.0.0.1:0 \
    --mqtt-addr 127.0.0.1:$CAIRN_PORT 2>"$work/cairn.log" &
hub=$!
sleep 1

for publishers in 10 100; do
    per=$((total / publishers))
    for qos in 1 0; do
        : >"$work/m.txt"; : >"$work/c.txt"
        for run in $(seq "$runs"); do
            "$CAIRN" bench mqtt --broker 127.0.0.1:$MOSQ_PORT --publishers $publishers --messages $per --qos $qos \
                | awk '/^median/ {print $2}' >>"$work/m.txt"
            "$CAIRN" bench mqtt --broker 127.0.0.1:$CAIRN_PORT --publishers $publishers --messages $per --qos $qos \
                | awk '/^median/ {print $2}' >>"$work/c.txt"
        done
        m=$(median <"$work/m.txt"); c=$(median <"$work/c.txt")
        echo "publishers=$publishers qos=$qos: mosquitto runs [$(paste -sd' ' "$work/m.txt")] median $m msg/s |" \
             "cairn runs [$(paste -sd' ' "$work/c.txt")] median $c msg/s | ratio cairn/mosquitto $(awk -v c="$c" -v m="$m" 'BEGIN {printf "%.2f", c/m}')"
    done
done

# Fan-out: 10 publishers, 4 subscribers to bench/# that each must receive
# every message; the figure is the rate at which the subscribers received.
for qos in 1 0; do
    : >"$work/m.txt"; : >"$work/c.txt"
    for run in $(seq "$runs"); do
        "$CAIRN" bench mqtt --broker 127.0.0.1:$MOSQ_PORT --publishers 10 --subscribers 4 \
            --messages $((total / 40)) --qos $qos | awk '/^median delivered/ {print $3}' >>"$work/m.txt"
        "$CAIRN" bench mqtt --broker 127.0.0.1:$CAIRN_PORT --publishers 10 --subscribers 4 \
            --messages $((total / 40)) --qos $qos | awk '/^median delivered/ {print $3}' >>"$work/c.txt"
    done
    m=$(median <"$work/m.txt"); c=$(median <"$work/c.txt")
    echo "fan-out publishers=10 subscribers=4 qos=$qos delivered: mosquitto runs [$(paste -sd' ' "$work/m.txt")] median $m msg/s |" \
         "cairn runs [$(paste -sd' ' "$work/c.txt")] median $c msg/s | ratio cairn/mosquitto $(awk -v c="$c" -v m="$m" 'BEGIN {printf "%.2f", c/m}')"
done

echo "cairn RSS after the runs above: $(awk '/VmRSS/ {print $2, $3}' /proc/$hub/status)"
# A fresh hub, as a gateway starts: RSS idle, then holding 1,000 clients.
kill $hub; wait $hub 2>/dev/null || true
NO_COLOR=1 RUST_LOG=warn "$CAIRN" serve --data-dir "$work/data2" --native-addr 127.0.0.1:0 \
    --mqtt-addr 127.0.0.1:$CAIRN_PORT 2>"$work/cairn2.log" &
hub=$!
sleep 1
echo "fresh cairn RSS, idle: $(awk '/VmRSS/ {print $2, $3}' /proc/$hub/status)"
"$CAIRN" bench mqtt --broker 127.0.0.1:$CAIRN_PORT --connections 1000 --hold-secs 6 &
holder=$!
sleep 5
echo "fresh cairn RSS with 1,000 idle MQTT connections: $(awk '/VmRSS/ {print $2, $3}' /proc/$hub/status)"
wait $holder
