#!/usr/bin/env bash
# Commands to a fleet (docs/BENCHMARKS.md, "MQTT: commands to a fleet"): N
# idle devices each subscribed to its own command topic (`cmd/<i>`, QoS 1),
# then 1,000 QoS 1 commands to one of them (`mosquitto_pub -l`); the
# broker's CPU (utime + stime from /proc) over the commands, per command,
# Cairn and Mosquitto alternating, fresh brokers each run. A subscriber of
# `cmd/7` checks that every command arrived.
# Usage: scripts/bench-mqtt-commands.sh [runs=3] [devices=2000]
# FILTER='cmd/{i}/#' subscribes the devices as Tasmota does ({i}: the
# device's number; the commands go to cmd/7 either way).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
devices=${2:-2000}
commands=1000
filter=${FILTER:-'cmd/{i}'}
source scripts/lib-hub.sh
ensure_cairn
work=$(mktemp -d)
WORK=$work
broker="" holder=""
trap 'kill $broker $holder 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"
PORT=18846
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {
    local name=$1
    rm -rf "$work/hub" "$work/hub.log"
    if [ "$name" = cairn ]; then
        serve_hub hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:$PORT --http false
        broker=$PID
    else
        start_mosquitto $PORT
        broker=$MOSQ
    fi
    # The command topic exists before the devices subscribe.
    mosquitto_pub -h 127.0.0.1 -p $PORT -q 1 -t cmd/none -m first
    "$CAIRN" bench mqtt --broker 127.0.0.1:$PORT --connections "$devices" --hold-secs 120 \
        --subscribe "$filter" >/dev/null &
    holder=$!
    for _ in $(seq 1 200); do
        sleep 0.5
        [ "$(ss -Htn state established "( sport = :$PORT )" | wc -l)" -ge "$devices" ] && break
    done
    mosquitto_sub -h 127.0.0.1 -p $PORT -q 1 -t cmd/7 -C $commands -W 60 >"$work/got" &
    local sub=$! before after start end
    sleep 2
    before=$(cpu_ticks "$broker"); start=$(date +%s%N)
    seq $commands | mosquitto_pub -h 127.0.0.1 -p $PORT -q 1 -t cmd/7 -l
    wait $sub || true
    end=$(date +%s%N); after=$(cpu_ticks "$broker")
    local got; got=$(wc -l <"$work/got")
    echo "$name: $devices devices, $commands commands to one in $(( (end - start) / 1000000 )) ms;" \
        "broker CPU $(( (after - before) * 10 )) ms," \
        "$(awk -v t=$((after - before)) -v n=$commands 'BEGIN {printf "%.1f", t * 10000 / n}') µs per command;" \
        "the device's subscriber got $got"
    [ "$got" = "$commands" ] || echo "MISSING: $((commands - got)) commands did not arrive"
    kill $holder $broker 2>/dev/null || true; wait $holder $broker 2>/dev/null || true; holder="" broker=""
    sleep 1
}

for _ in $(seq "$runs"); do
    run cairn
    run mosquitto
done
