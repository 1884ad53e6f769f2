#!/usr/bin/env bash
# What authentication and access rules cost (docs/BENCHMARKS.md): two release
# hubs side by side, one open (no API key) and one where the benchmark
# authenticates as a non-admin principal whose few ACL rules are checked on
# every request, publish and subscribe. Runs alternate between them, so a
# slow moment of this shared machine shows in both; medians and the ratio
# secured/open are printed.
# Usage: scripts/bench-auth.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
source scripts/lib-hub.sh
ensure_cairn
WORK="$(mktemp -d)"
OPEN="" SECURED=""
trap 'kill $OPEN $SECURED 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# serve NAME: a hub with its data in $WORK/NAME; sets PID, NATIVE, MQTT.
serve() {
    serve_hub "$1" --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0
    NATIVE=$(listening "$1" "native protocol"); MQTT=$(listening "$1" MQTT)
}

serve open; OPEN=$PID; OPEN_NATIVE=$NATIVE; OPEN_MQTT=$MQTT
# The secured hub: an admin key made offline, then a bench principal with
# the rules a real deployment would have (its own, and others').
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
admin=$("$CAIRN" auth init --data-dir "$WORK/secured" --output json)
export CAIRN_API_KEY=$(echo "$admin" | field key) CAIRN_API_SECRET=$(echo "$admin" | field secret)
serve secured; SECURED=$PID; SECURED_NATIVE=$NATIVE; SECURED_MQTT=$MQTT
made=$("$CAIRN" auth key create --hub "$SECURED_NATIVE" --principal bench --output json)
BENCH_KEY=$(echo "$made" | field key); BENCH_SECRET=$(echo "$made" | field secret)
acl() { "$CAIRN" acl add --hub "$SECURED_NATIVE" "$@" >/dev/null; }
acl --principal dashboard --topic '*' --operation read
acl --principal '*' --topic 'devices/%u/#' --operation write
acl --principal '*' --topic 'cmd/%u' --operation read
acl --principal bench --topic bench --pattern-type prefix --operation all
acl --principal bench --topic 'bench/#' --operation write
unset CAIRN_API_KEY CAIRN_API_SECRET
echo "open hub: native $OPEN_NATIVE, MQTT $OPEN_MQTT; secured hub: native $SECURED_NATIVE, MQTT $SECURED_MQTT (5 rules)"

# compare NAME FIELD OPEN_CMD... -- SECURED_CMD...: alternates the two, takes
# field FIELD of each "run 1:" line, prints the medians and the ratio.
compare() {
    local name=$1 field=$2; shift 2
    local open=() secured=() seen=0
    for arg in "$@"; do
        if [ "$arg" = "--" ]; then seen=1; continue; fi
        if [ $seen = 0 ]; then open+=("$arg"); else secured+=("$arg"); fi
    done
    : >"$WORK/o.txt"; : >"$WORK/s.txt"
    one() { # one open or secured run, recorded
        local out
        if [ "$1" = open ]; then out=$("${open[@]}" | sed -n 's/^run 1: //p'); else out=$("${secured[@]}" | sed -n 's/^run 1: //p'); fi
        echo "  $1 run $2: $out"
        echo "$out" | awk -v f="$field" '{print $f}' >>"$WORK/${1:0:1}.txt"
    }
    for run in $(seq "$RUNS"); do
        # Which goes first alternates, so neither always runs on a warmer
        # (or busier) machine.
        if [ $((run % 2)) = 1 ]; then one open "$run"; one secured "$run"; else one secured "$run"; one open "$run"; fi
    done
    o=$(median <"$WORK/o.txt"); s=$(median <"$WORK/s.txt")
    echo "$name: open median $o, secured median $s, ratio secured/open $(awk -v o="$o" -v s="$s" 'BEGIN {printf "%.3f", s/o}')"
}

echo "== cairn bench produce: 4 producers, 1000-record batches"
compare "batched produce (records/s)" 1 \
    "$CAIRN" bench produce --hub "$OPEN_NATIVE" --records 1000000 -- \
    "$CAIRN" bench produce --hub "$SECURED_NATIVE" --api-key "$BENCH_KEY" --api-secret "$BENCH_SECRET" --records 1000000
echo "== cairn bench produce: 100 producers, one record per request, one in flight"
compare "one-record produce (records/s)" 1 \
    "$CAIRN" bench produce --hub "$OPEN_NATIVE" --topic single --partitions 1 --records 200000 --batch-records 1 \
        --producers 100 --in-flight 1 -- \
    "$CAIRN" bench produce --hub "$SECURED_NATIVE" --api-key "$BENCH_KEY" --api-secret "$BENCH_SECRET" \
        --topic bench-single --partitions 1 --records 200000 --batch-records 1 --producers 100 --in-flight 1
echo "== cairn bench mqtt: 10 QoS 1 publishers, 100 in flight each"
compare "MQTT QoS 1 (msg/s)" 7 \
    "$CAIRN" bench mqtt --broker "$OPEN_MQTT" --publishers 10 --messages 30000 --qos 1 -- \
    "$CAIRN" bench mqtt --broker "$SECURED_MQTT" --username "$BENCH_KEY" --password "$BENCH_SECRET" \
        --publishers 10 --messages 30000 --qos 1
