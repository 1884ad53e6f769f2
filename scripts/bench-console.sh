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
#        scripts/bench-console.sh --gateway [loads]
# --gateway measures only the page's first load, served by the aarch64
# gateway build (scripts/build-gateway.sh; built when missing) under
# qemu-aarch64, and by this machine's build in the same run for reference.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib-hub.sh
WORK="$(mktemp -d)"
HUB="" OBSERVERS=()
stop_observers() { for p in "${OBSERVERS[@]}"; do kill "$p" 2>/dev/null || true; done; OBSERVERS=(); }
trap 'stop_observers; kill $HUB 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ "${1:-}" = --gateway ]; then
    LOADS="${2:-7}"
    ARM=target/aarch64-unknown-linux-gnu/dist/cairn
    if [ ! -x "$ARM" ]; then scripts/build-gateway.sh aarch64-unknown-linux-gnu; fi
    if ! command -v qemu-aarch64 >/dev/null; then
        echo "error: qemu-aarch64 is missing: install Debian's qemu-user (scripts/test.sh does)" >&2
        exit 1
    fi
    ensure_cairn
    # Both hubs hold the same data: a 4-partition topic with 20,000
    # records and a consumer group part-way through, so the page has
    # topics, sizes and lag to show. The client is this machine's build.
    PIDS=()
    for hub in aarch64 native; do
        if [ $hub = aarch64 ]; then
            HUB_BIN=$ARM HUB_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib"
        else
            HUB_BIN="" HUB_RUNNER=""
        fi
        serve_hub $hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 --http-addr 127.0.0.1:0
        PIDS+=("$PID")
        HUB="${PIDS[*]}"
        native=$(listening $hub "native protocol")
        "$CAIRN" topic create sensors --hub "$native" --partitions 4 >/dev/null
        "$CAIRN" bench produce --hub "$native" --topic sensors --records 20000 >/dev/null
        "$CAIRN" consume sensors --hub "$native" --group dashboard --from-beginning --max 5000 >/dev/null
    done
    for hub in aarch64 native; do
        echo "== $hub hub: the status page's first load in headless chromium ($LOADS loads)"
        python3 tests/console_browser.py --load "http://$(listening $hub HTTP)/" "$LOADS"
    done
    # The hub's share of a load: the page and the overview it then asks
    # for, fetched by curl, alternating between the hubs.
    for path in / /api/overview; do
        for hub in aarch64 native; do : >"$WORK/$hub.times"; done
        for _ in $(seq 20); do
            for hub in aarch64 native; do
                curl -s -o /dev/null -w '%{time_total}\n' "http://$(listening $hub HTTP)$path" >>"$WORK/$hub.times"
            done
        done
        for hub in aarch64 native; do
            echo "$hub hub: GET $path median $(median <"$WORK/$hub.times" | awk '{printf "%.1f", $1 * 1000}') ms (20 requests)"
        done
    done
    exit 0
fi

RUNS="${1:-5}"
ensure_cairn

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
