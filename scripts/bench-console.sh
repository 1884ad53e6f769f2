#!/usr/bin/env bash
# What watching the hub costs (docs/BENCHMARKS.md, "Observability"): one
# release hub; each load runs without observers and with them, alternating,
# on the same hub. The observers are what Prometheus and an open status page
# ask of the hub: a scrape of /metrics every second, and the page's own
# requests (/api/overview every 2 s, and a live tail of the topic under load
# read over server-sent events). They run as curl loops rather than a
# browser, so the measurement is the hub's cost, not a browser's on the same
# two cores. Then the page's first load in headless chromium (time to the
# load event, bytes transferred), median of several loads.
# Usage: scripts/bench-console.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
source scripts/lib-hub.sh
ensure_cairn
WORK="$(mktemp -d)"
HUB="" OBSERVERS=()
stop_observers() { for p in "${OBSERVERS[@]}"; do kill "$p" 2>/dev/null || true; done; OBSERVERS=(); }
trap 'stop_observers; kill $HUB 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

serve_hub data --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 --http-addr 127.0.0.1:0
HUB=$PID
NATIVE=$(listening data "native protocol"); MQTT=$(listening data MQTT); HTTP=$(listening data HTTP)
echo "hub: native $NATIVE, MQTT $MQTT, HTTP $HTTP"
"$CAIRN" topic create bench --hub "$NATIVE" --partitions 4 >/dev/null

# The observers of one "with" run: a Prometheus-like scraper (1/s), and an
# open status page (overview every 2 s, live tail of `bench`).
start_observers() {
    (while true; do curl -s -o /dev/null "http://$HTTP/metrics"; sleep 1; done) &
    OBSERVERS+=($!)
    (while true; do curl -s -o /dev/null "http://$HTTP/api/overview"; sleep 2; done) &
    OBSERVERS+=($!)
    curl -s -N -o "$WORK/tail.txt" "http://$HTTP/api/tail?topic=bench" &
    OBSERVERS+=($!)
    sleep 1
}

# compare NAME FIELD CMD...: alternates runs without and with observers,
# takes field FIELD of each "run 1:" line, prints the medians and the ratio.
compare() {
    local name=$1 field=$2; shift 2
    : >"$WORK/without.txt"; : >"$WORK/with.txt"
    one() {
        local out
        if [ "$1" = with ]; then start_observers; fi
        out=$("${cmd[@]}" | sed -n 's/^run 1: //p')
        if [ "$1" = with ]; then stop_observers; fi
        echo "  $1 run $2: $out"
        echo "$out" | awk -v f="$field" '{print $f}' >>"$WORK/$1.txt"
    }
    cmd=("$@")
    for run in $(seq "$RUNS"); do
        if [ $((run % 2)) = 1 ]; then one without "$run"; one with "$run"; else one with "$run"; one without "$run"; fi
    done
    local a b
    a=$(median <"$WORK/without.txt"); b=$(median <"$WORK/with.txt")
    echo "$name: without median $a, with median $b, ratio with/without $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b/a}')"
}

# Runs of a few seconds, so each sees several scrapes and overview polls.
echo "== cairn bench produce: 4 producers, 1000-record batches, 8M records"
compare "batched produce (records/s)" 1 "$CAIRN" bench produce --hub "$NATIVE" --records 8000000
echo "== cairn bench mqtt: 10 QoS 1 publishers, 100 in flight each, 1M messages"
compare "MQTT QoS 1 (msg/s)" 7 "$CAIRN" bench mqtt --broker "$MQTT" --publishers 10 --messages 100000 --qos 1
echo "tail lines received in the last 'with' run: $(grep -c '^data:' "$WORK/tail.txt" || true)"

echo "== the status page's first load in headless chromium ($RUNS loads)"
python3 tests/console_browser.py --load "http://$HTTP/" "$RUNS"
