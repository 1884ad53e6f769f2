#!/usr/bin/env bash
# Compares finished builds of `cairn` that carry everything (plugins and
# Kafka), e.g. the `dist` build before and after a size change
# (docs/BENCHMARKS.md, "Release profile and binary sizes"). Where
# scripts/bench-profiles.sh builds its variants without plugins and Kafka,
# this takes the binaries as they ship and also measures the parts those
# bring: a plugin's compile time and records/s (`cairn bench plugin`, the
# threshold example) and librdkafka producing to a local Kafka-API broker
# (`cairn bench kafka` to Tansu, in memory).
#
# Each run, for each build in turn (the order reversed every other run): a
# fresh hub of that build takes the loads of bench-profiles.sh (hub_loads in
# lib-hub.sh), driven by the first build's client so only the hub differs;
# then the build's own plugin and Kafka benchmarks. Medians of RUNS runs,
# ratios to the first build.
# Usage: scripts/bench-builds.sh RUNS CAIRN_BINARY...   (the first is the reference)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:?usage: scripts/bench-builds.sh RUNS CAIRN_BINARY...}"
shift
[ $# -ge 1 ] || { echo "usage: scripts/bench-builds.sh RUNS CAIRN_BINARY..." >&2; exit 2; }
BUILDS=("$@")
source scripts/lib-hub.sh
WORK="$(mktemp -d)"
HUB="" TANSU_PID=""
trap 'kill $HUB $TANSU_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

PLUGIN=target/wasm32-unknown-unknown/release/cairn_plugin_threshold.wasm
if [ ! -f "$PLUGIN" ]; then ./scripts/build-plugins.sh >/dev/null; fi
KAFKA_PORT=$((20000 + RANDOM % 10000))
start_tansu $KAFKA_PORT direct

CLIENT="${BUILDS[0]}"
LOADS=(native mqtt plugin compile kafka)
for i in "${!BUILDS[@]}"; do
    [ -x "${BUILDS[$i]}" ] || { echo "error: ${BUILDS[$i]} is not an executable" >&2; exit 2; }
    for command in plugin kafka; do
        if ! "${BUILDS[$i]}" bench "$command" --help >/dev/null 2>&1; then
            echo "error: ${BUILDS[$i]} has no \`cairn bench $command\`: compare builds with plugins and Kafka" >&2
            exit 2
        fi
    done
    for load in "${LOADS[@]}"; do : >"$WORK/$i.$load"; done
done
for run in $(seq "$RUNS"); do
    # Odd runs take the builds in the order given, even runs in reverse, so
    # that going first or last is not counted for one build.
    ORDER=("${!BUILDS[@]}")
    if [ $((run % 2)) = 0 ]; then mapfile -t ORDER < <(printf '%s\n' "${ORDER[@]}" | tac); fi
    for i in "${ORDER[@]}"; do
        CAIRN="${BUILDS[$i]}"
        hub_loads "$CLIENT"
        echo "$NATIVE_RATE" >>"$WORK/$i.native"; echo "$MQTT_RATE" >>"$WORK/$i.mqtt"
        # One plugin run: its compile (no cache) and its records/s.
        "$CAIRN" bench plugin --plugin "$PLUGIN" --records 2000000 --runs 1 2>/dev/null >"$WORK/plugin.txt"
        sed -n 's/^run 1:.* = \([0-9]*\) rec\/s.*/\1/p' "$WORK/plugin.txt" >>"$WORK/$i.plugin"
        sed -n 's/^run 1:.*compile \([0-9.]*\) ms.*/\1/p' "$WORK/plugin.txt" >>"$WORK/$i.compile"
        "$CAIRN" bench kafka --bootstrap-servers 127.0.0.1:$KAFKA_PORT --topic direct --records 500000 \
            --value-bytes 100 --runs 1 2>/dev/null | awk '/^median:/ {print $2}' >>"$WORK/$i.kafka"
        echo "run $run ${BUILDS[$i]}: native $(tail -1 "$WORK/$i.native") rec/s, mqtt $(tail -1 "$WORK/$i.mqtt") msg/s," \
            "plugin $(tail -1 "$WORK/$i.plugin") rec/s, compile $(tail -1 "$WORK/$i.compile") ms," \
            "kafka $(tail -1 "$WORK/$i.kafka") rec/s"
    done
done

echo "== medians of $RUNS runs (ratio to ${BUILDS[0]}, same runs)"
for i in "${!BUILDS[@]}"; do
    line="$(printf '%-40s %10s bytes' "${BUILDS[$i]}" "$(stat -c %s "${BUILDS[$i]}")")"
    for load in "${LOADS[@]}"; do
        m=$(median <"$WORK/$i.$load"); base=$(median <"$WORK/0.$load")
        line+="$(printf '  %s %s (%.2f)' "$load" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN {print a/b}')")"
    done
    echo "$line"
done
echo "(compile: ms, lower is better; the others: per second, higher is better)"
