#!/usr/bin/env bash
# Measures the release-profile choices for the binary that ships (the
# `dist` profile): size and throughput of the hub built with each variant
# below, all without plugins and Kafka (`--no-default-features`: the build
# LTO can finish in minutes; the variants' effect on size is the same kind
# with plugins). Throughput: a hub of each variant, fresh, takes the batched
# native produce (2 M × 100 B, 4 producers × 4 batches in flight) and 10
# MQTT publishers × 100 in flight (QoS 1), driven by one client binary (the
# baseline's) so only the hub differs; variants alternate run by run, so a
# slow moment of this shared machine falls on all of them.
# Usage: scripts/bench-profiles.sh [runs]   (docs/BENCHMARKS.md, "Release profile")
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
source scripts/lib-hub.sh
WORK="$(mktemp -d)"
HUB=""
trap 'kill $HUB 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# name: the dist profile's settings overridden (CARGO_PROFILE_DIST_*).
VARIANTS=(
    "dist:"
    "dist+fat-lto+1cgu:LTO=fat CODEGEN_UNITS=1"
    "dist+fat-lto+1cgu+abort:LTO=fat CODEGEN_UNITS=1 PANIC=abort"
    "dist+opt-s+fat-lto+1cgu:OPT_LEVEL=s LTO=fat CODEGEN_UNITS=1"
)
for variant in "${VARIANTS[@]}"; do
    name="${variant%%:*}"
    settings="${variant#*:}"
    env_args=()
    for s in $settings; do env_args+=("CARGO_PROFILE_DIST_$s"); done
    start=$(date +%s)
    env "${env_args[@]}" cargo build --locked -q --profile dist -p cairn --no-default-features
    cp target/dist/cairn "$WORK/cairn-$name"
    echo "$name: $(stat -c %s "$WORK/cairn-$name") bytes stripped, built in $(($(date +%s) - start)) s"
done

CLIENT="$WORK/cairn-dist"
for variant in "${VARIANTS[@]}"; do : >"$WORK/${variant%%:*}.native"; : >"$WORK/${variant%%:*}.mqtt"; done
for run in $(seq "$RUNS"); do
    for variant in "${VARIANTS[@]}"; do
        name="${variant%%:*}"
        CAIRN="$WORK/cairn-$name"
        rm -rf "$WORK/hub" "$WORK/hub.log"
        serve_hub hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 --http false
        HUB=$PID
        ADDR=$(listening hub "native protocol")
        MQTT=$(listening hub MQTT)
        native=$("$CLIENT" bench produce --hub "$ADDR" --topic bench --records 2000000 --batch-records 1000 \
            --producers 4 --in-flight 4 | sed -n 's/^run 1: *\([0-9]*\) rec\/s.*/\1/p')
        mqtt=$("$CLIENT" bench mqtt --broker "$MQTT" --publishers 10 --messages 20000 --qos 1 --in-flight 100 \
            | sed -n 's/^run 1:.* \([0-9]*\) msg\/s.*/\1/p')
        kill $HUB; wait $HUB 2>/dev/null || true; HUB=""
        echo "run $run $name: native $native rec/s, mqtt $mqtt msg/s"
        echo "$native" >>"$WORK/$name.native"; echo "$mqtt" >>"$WORK/$name.mqtt"
    done
done
base_native=$(median <"$WORK/dist.native"); base_mqtt=$(median <"$WORK/dist.mqtt")
echo "== medians of $RUNS runs (ratio to dist, same runs)"
for variant in "${VARIANTS[@]}"; do
    name="${variant%%:*}"
    n=$(median <"$WORK/$name.native"); m=$(median <"$WORK/$name.mqtt")
    printf '%-26s %10s bytes  native %8s rec/s (%.2f)  mqtt %8s msg/s (%.2f)\n' "$name" \
        "$(stat -c %s "$WORK/cairn-$name")" "$n" "$(awk -v a="$n" -v b="$base_native" 'BEGIN {print a/b}')" \
        "$m" "$(awk -v a="$m" -v b="$base_mqtt" 'BEGIN {print a/b}')"
done
