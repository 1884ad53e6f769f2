#!/usr/bin/env bash
# Measures the release-profile choices for the binary that ships (the
# `dist` profile, as scripts/build-gateway.sh builds it): size and
# throughput of the hub built with each variant below, all without plugins
# and Kafka (`--no-default-features`: the build LTO can finish in minutes;
# the variants' effect on size is the same kind with plugins). Throughput: a
# hub of each variant, fresh, takes the batched native produce (2 M × 100 B,
# 4 producers × 4 batches in flight) and 10 MQTT publishers × 100 in flight
# (QoS 1), driven by one client binary (the first variant's) so only the
# hub differs; variants alternate run by run, so a slow moment of this
# shared machine falls on all of them. Ratios are to the first variant.
# Usage: scripts/bench-profiles.sh [runs]   (docs/BENCHMARKS.md, "Release profile")
#   PICK="opt-s opt-z" runs some of the variants below (default: all); the
#   first one picked is the reference.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
source scripts/lib-hub.sh
WORK="$(mktemp -d)"
HUB=""
trap 'kill $HUB 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
TARGET=x86_64-unknown-linux-gnu

# name: the dist profile's settings overridden (CARGO_PROFILE_DIST_*), and
# the link options scripts/build-gateway.sh passes (rust-lld is already the
# linker here): ICF=1 folds identical functions, RELR=1 packs relocations.
ALL_VARIANTS=(
    "strip-only:OPT_LEVEL=3 LTO=false CODEGEN_UNITS=16"
    "fat-lto+1cgu:OPT_LEVEL=3 LTO=fat CODEGEN_UNITS=1"
    "fat-lto+1cgu+abort:OPT_LEVEL=3 LTO=fat CODEGEN_UNITS=1 PANIC=abort"
    "opt-s:OPT_LEVEL=s LTO=fat CODEGEN_UNITS=1"
    "opt-z:OPT_LEVEL=z LTO=fat CODEGEN_UNITS=1"
    "opt-s+icf:OPT_LEVEL=s LTO=fat CODEGEN_UNITS=1 ICF=1"
    "opt-s+icf+relr:OPT_LEVEL=s LTO=fat CODEGEN_UNITS=1 ICF=1 RELR=1"
)
VARIANTS=()
for variant in "${ALL_VARIANTS[@]}"; do
    if [ -z "${PICK:-}" ] || [[ " $PICK " == *" ${variant%%:*} "* ]]; then
        VARIANTS+=("$variant")
    fi
done
for variant in "${VARIANTS[@]}"; do
    name="${variant%%:*}"
    settings="${variant#*:}"
    env_args=("RUSTFLAGS=")
    for s in $settings; do
        case "$s" in
            ICF=1) env_args[0]+=" $LINK_ICF" ;;
            RELR=1) env_args[0]+=" $LINK_RELR" ;;
            *) env_args+=("CARGO_PROFILE_DIST_$s") ;;
        esac
    done
    start=$(date +%s)
    # --target: RUSTFLAGS then reach only the hub, not build scripts, so
    # the variants share those.
    env "${env_args[@]}" cargo build --locked -q --profile dist -p cairn --no-default-features --target "$TARGET"
    cp "target/$TARGET/dist/cairn" "$WORK/cairn-$name"
    echo "$name: $(stat -c %s "$WORK/cairn-$name") bytes stripped, built in $(($(date +%s) - start)) s"
done

FIRST="${VARIANTS[0]%%:*}"
CLIENT="$WORK/cairn-$FIRST"
for variant in "${VARIANTS[@]}"; do : >"$WORK/${variant%%:*}.native"; : >"$WORK/${variant%%:*}.mqtt"; done
for run in $(seq "$RUNS"); do
    for variant in "${VARIANTS[@]}"; do
        name="${variant%%:*}"
        CAIRN="$WORK/cairn-$name"
        hub_loads "$CLIENT"
        native=$NATIVE_RATE mqtt=$MQTT_RATE
        echo "run $run $name: native $native rec/s, mqtt $mqtt msg/s"
        echo "$native" >>"$WORK/$name.native"; echo "$mqtt" >>"$WORK/$name.mqtt"
    done
done
base_native=$(median <"$WORK/$FIRST.native"); base_mqtt=$(median <"$WORK/$FIRST.mqtt")
echo "== medians of $RUNS runs (ratio to $FIRST, same runs)"
for variant in "${VARIANTS[@]}"; do
    name="${variant%%:*}"
    n=$(median <"$WORK/$name.native"); m=$(median <"$WORK/$name.mqtt")
    printf '%-26s %10s bytes  native %8s rec/s (%.2f)  mqtt %8s msg/s (%.2f)\n' "$name" \
        "$(stat -c %s "$WORK/cairn-$name")" "$n" "$(awk -v a="$n" -v b="$base_native" 'BEGIN {print a/b}')" \
        "$m" "$(awk -v a="$m" -v b="$base_mqtt" 'BEGIN {print a/b}')"
done
