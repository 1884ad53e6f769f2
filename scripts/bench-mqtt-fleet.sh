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
#  4. 10,000 idle connections: RSS per connection, Cairn and Mosquitto.
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
mosq="" hub="" rumq="" holder=""
trap 'kill $mosq $hub $rumq $holder 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
MOSQ_PORT=18840
CAIRN_PORT=18841
RUMQ_PORT=18842
start_mosquitto $MOSQ_PORT
mosq=$MOSQ
serve_hub hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:$CAIRN_PORT
hub=$PID
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

# bench NAME PORT ARGS...: one run of `cairn bench mqtt` against PORT; the
# figure it prints last (msg/s) goes to $work/NAME.txt.
bench() {
    local name=$1 port=$2; shift 2
    "$CAIRN" bench mqtt --broker 127.0.0.1:$port "$@" >"$work/out.txt"
    grep -q MISSING "$work/out.txt" && { echo "$name: a subscriber missed messages:" >&2; cat "$work/out.txt" >&2; exit 1; }
    awk '/^median delivered/ {d=$3} /^median:/ {m=$2} END {print (d != "" ? d : m)}' "$work/out.txt" >>"$work/$name.txt"
}

report() { # LABEL NAME...: runs and median of each, ratios of Cairn to the others
    local label=$1; shift
    local line="$label:" c m
    c=$(median <"$work/cairn.txt")
    for name in "$@"; do
        m=$(median <"$work/$name.txt")
        line="$line $name runs [$(paste -sd' ' "$work/$name.txt")] median $m |"
        [ "$name" = cairn ] || line="$line cairn/$name $(awk -v c="$c" -v m="$m" 'BEGIN {printf "%.2f", c/m}') |"
    done
    echo "$line"
    for name in "$@"; do : >"$work/$name.txt"; done
}

one_in_flight=(--publishers 100 --messages 1000 --qos 1 --in-flight 1)
for _ in $(seq "$runs"); do
    bench mosquitto $MOSQ_PORT "${one_in_flight[@]}"
    bench cairn $CAIRN_PORT "${one_in_flight[@]}"
done
report "100 publishers, QoS 1, one in flight each (msg/s)" cairn mosquitto

fan_out=(--publishers 1 --subscribers 100 --messages 2000 --qos 1)
for _ in $(seq "$runs"); do
    bench mosquitto $MOSQ_PORT "${fan_out[@]}"
    bench cairn $CAIRN_PORT "${fan_out[@]}"
done
report "fan-out, 1 publisher to 100 subscribers, QoS 1 (delivered msg/s, every subscriber got all 2,000)" cairn mosquitto

windowed=(--publishers 10 --messages 20000 --qos 1 --in-flight 100)
for _ in $(seq "$runs"); do
    bench mosquitto $MOSQ_PORT "${windowed[@]}"
    bench rumqttd $RUMQ_PORT "${windowed[@]}"
    bench cairn $CAIRN_PORT "${windowed[@]}"
done
report "10 publishers x 100 in flight, QoS 1 (msg/s)" cairn mosquitto rumqttd

# 10,000 idle connections: the RSS each broker grows by, per connection.
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for broker in cairn mosquitto; do
    if [ $broker = cairn ]; then pid=$hub port=$CAIRN_PORT; else pid=$mosq port=$MOSQ_PORT; fi
    before=$(rss "$pid")
    "$CAIRN" bench mqtt --broker 127.0.0.1:$port --connections 10000 --hold-secs 25 >/dev/null &
    holder=$!
    for _ in $(seq 1 40); do
        sleep 0.5
        [ "$(ss -Htn state established "( sport = :$port )" | wc -l)" -ge 10000 ] && break
    done
    sleep 2
    during=$(rss "$pid")
    echo "$broker: RSS $before KiB before, $during KiB with 10,000 idle connections:" \
         "$(awk -v a="$before" -v b="$during" 'BEGIN {printf "%.1f", (b - a) / 10000}') KiB per connection"
    kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true; holder=""
    sleep 2
done
