#!/usr/bin/env bash
# MQTT loads of a device fleet (docs/BENCHMARKS.md, "MQTT: device fleets"),
# all on loopback, measured by the same client (`cairn bench mqtt`), runs
# alternating between the brokers:
#  1. 100 QoS 1 publishers with one message in flight each (each waits for
#     its PUBACK, as most device libraries do): Cairn against Mosquitto
#     (no persistence: it PUBACKs before anything reaches a disk);
#  2. fan-out: one QoS 1 publisher to 100 subscribers of bench/#, every
#     subscriber's count checked against what was sent;
#  3. 10 publishers x 100 in flight: Cairn against Mosquitto and rumqttd 0.20
#     (an in-memory Rust broker), same run;
#  4. a shared subscription: one QoS 1 publisher to 10 members of
#     $share/<group>/bench/#, each message checked to reach one of them;
#  5. 10,000 idle connections: RSS per connection, and the CPU the broker
#     uses over 5 s while they idle, Cairn and Mosquitto.
# Loads 1 and 3 also run against a second Cairn hub whose `bench` topic has
# `flush = interval` (PUBACK after the commit, fsync at most once a second):
# the same hub without the fsync in each acknowledgement, which shows what the
# disk costs. Each run also reads the broker's CPU time (utime + stime from
# /proc) and reports it per message: on this 2-core machine the load
# generator and the broker share the cores, so CPU per message sets the rate.
# rumqttd is built into target/bench-tools on first use (`cargo install
# rumqttd`, without --locked: its locked `metrics` does not build on current
# rustc).
# Usage: scripts/bench-mqtt-fleet.sh [runs=3]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
source scripts/lib-hub.sh
ensure_cairn
RUMQTTD=target/bench-tools/bin/rumqttd
if [ ! -x "$RUMQTTD" ]; then
    echo "building rumqttd 0.20 into target/bench-tools (once)..."
    cargo install -q rumqttd --version "^0.20" --root target/bench-tools
fi
work=$(mktemp -d)
WORK=$work
mosq="" hub="" rumq="" holder="" interval=""
trap 'kill $mosq $hub $rumq $interval $holder 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
MOSQ_PORT=18840
CAIRN_PORT=18841
RUMQ_PORT=18842
INTERVAL_PORT=18843
INTERVAL_NATIVE=18844
start_mosquitto $MOSQ_PORT
mosq=$MOSQ
serve_hub hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:$CAIRN_PORT
hub=$PID
serve_hub interval --native-addr 127.0.0.1:$INTERVAL_NATIVE --mqtt-addr 127.0.0.1:$INTERVAL_PORT
interval=$PID
"$CAIRN" topic create bench --flush interval --hub 127.0.0.1:$INTERVAL_NATIVE >/dev/null
cat >"$work/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$RUMQ_PORT"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
"$RUMQTTD" --config "$work/rumqttd.toml" -q >"$work/rumqttd.log" 2>&1 &
rumq=$!
sleep 1

# The broker each name stands for: its port and process.
port_of() { case $1 in cairn) echo $CAIRN_PORT ;; interval) echo $INTERVAL_PORT ;; mosquitto) echo $MOSQ_PORT ;; rumqttd) echo $RUMQ_PORT ;; esac; }
pid_of() { case $1 in cairn) echo "$hub" ;; interval) echo "$interval" ;; mosquitto) echo "$mosq" ;; rumqttd) echo "$rumq" ;; esac; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# bench NAME MESSAGES ARGS...: one run of `cairn bench mqtt` against broker
# NAME; the figure it prints last (msg/s) goes to $work/NAME.txt, and the
# broker's CPU time over the run per message (µs; MESSAGES is how many the
# load moves) to $work/NAME.cpu.
bench() {
    local name=$1 messages=$2 pid before after; shift 2
    pid=$(pid_of "$name")
    before=$(cpu_ticks "$pid")
    "$CAIRN" bench mqtt --broker 127.0.0.1:"$(port_of "$name")" "$@" >"$work/out.txt"
    after=$(cpu_ticks "$pid")
    grep -q MISSING "$work/out.txt" && { echo "$name: a subscriber missed messages:" >&2; cat "$work/out.txt" >&2; exit 1; }
    awk '/^median delivered/ {d=$3} /^median:/ {m=$2} END {print (d != "" ? d : m)}' "$work/out.txt" >>"$work/$name.txt"
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$messages" 'BEGIN {printf "%.1f\n", t / hz * 1e6 / n}' >>"$work/$name.cpu"
}

# report LABEL NAME...: runs, median and broker CPU per message (median) of
# each; then the ratio of each Cairn hub (cairn, interval) to each of the
# other brokers.
report() {
    local label=$1; shift
    local line="$label:" name ref
    declare -A med
    for name in "$@"; do
        med[$name]=$(median <"$work/$name.txt")
        line="$line $name runs [$(paste -sd' ' "$work/$name.txt")] median ${med[$name]}, CPU $(median <"$work/$name.cpu") µs/msg |"
    done
    for name in cairn interval; do
        [ -n "${med[$name]:-}" ] || continue
        for ref in "$@"; do
            case $ref in cairn | interval) continue ;; esac
            line="$line $name/$ref $(awk -v c="${med[$name]}" -v m="${med[$ref]}" 'BEGIN {printf "%.2f", c/m}') |"
        done
    done
    echo "$line"
    for name in "$@"; do : >"$work/$name.txt"; : >"$work/$name.cpu"; done
}

one_in_flight=(--publishers 100 --messages 1000 --qos 1 --in-flight 1)
for _ in $(seq "$runs"); do
    for broker in mosquitto cairn interval; do bench $broker 100000 "${one_in_flight[@]}"; done
done
report "100 publishers, QoS 1, one in flight each (msg/s)" cairn interval mosquitto

fan_out=(--publishers 1 --subscribers 100 --messages 2000 --qos 1)
for _ in $(seq "$runs"); do
    for broker in mosquitto cairn; do bench $broker 200000 "${fan_out[@]}"; done
done
report "fan-out, 1 publisher to 100 subscribers, QoS 1 (delivered msg/s, every subscriber got all 2,000)" cairn mosquitto

windowed=(--publishers 10 --messages 20000 --qos 1 --in-flight 100)
for _ in $(seq "$runs"); do
    for broker in mosquitto rumqttd cairn interval; do bench $broker 200000 "${windowed[@]}"; done
done
report "10 publishers x 100 in flight, QoS 1 (msg/s)" cairn interval mosquitto rumqttd

# A fresh group each run: a group's committed position outlives its members.
for run in $(seq "$runs"); do
    for broker in mosquitto cairn; do
        bench $broker 20000 --publishers 1 --subscribers 10 --shared "fleet$run" --messages 20000 --qos 1
    done
done
report "shared subscription, 1 publisher to 10 members, QoS 1 (delivered msg/s, each message to one member)" cairn mosquitto

# 10,000 idle connections: the RSS each broker grows by, per connection, and
# the CPU it uses while they idle (clock ticks of 10 ms over 5 s).
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for broker in cairn mosquitto; do
    if [ $broker = cairn ]; then pid=$hub port=$CAIRN_PORT; else pid=$mosq port=$MOSQ_PORT; fi
    before=$(rss "$pid")
    "$CAIRN" bench mqtt --broker 127.0.0.1:$port --connections 10000 --hold-secs 35 >/dev/null &
    holder=$!
    for _ in $(seq 1 40); do
        sleep 0.5
        [ "$(ss -Htn state established "( sport = :$port )" | wc -l)" -ge 10000 ] && break
    done
    sleep 2
    during=$(rss "$pid")
    ticks=$(cpu_ticks "$pid"); sleep 5; ticks=$(( $(cpu_ticks "$pid") - ticks ))
    echo "$broker: RSS $before KiB before, $during KiB with 10,000 idle connections:" \
         "$(awk -v a="$before" -v b="$during" 'BEGIN {printf "%.1f", (b - a) / 10000}') KiB per connection;" \
         "$(awk -v t="$ticks" 'BEGIN {printf "%.1f", t / 5}') % of a core while they idle"
    kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true; holder=""
    sleep 2
done
