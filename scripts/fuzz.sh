#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders that read outside input
# (tests/fuzz: native frames and request bodies, record batches checked and
# resealed, serial COBS frames, device responses, MQTT packets of both
# versions, plugin output batches, the config file). Installs the nightly
# toolchain and cargo-fuzz when missing, then runs each target for SECONDS
# (default 30: the CI smoke run) from its checked-in seed corpus. A crash
# stops the script with the input that caused it (tests/fuzz/artifacts/);
# every crash found becomes a regression test.
# FUZZ_RUNS=N also stops a target after N executions (the long runs of
# docs/RELIABILITY.md: FUZZ_RUNS=10000000 scripts/fuzz.sh 1800).
# Usage: scripts/fuzz.sh [seconds per target] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
shift || true

rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

FUZZ=(cargo +nightly fuzz)
DIR=(--fuzz-dir tests/fuzz)
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <("${FUZZ[@]}" list "${DIR[@]}" | grep -v "^make-seeds$")
fi
# Fuzzing adds what it finds to a copy, so the checked-in corpora stay small
# (merge new finds by hand with `cargo fuzz cmin`).
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$WORK/$target"
    echo "== $target: ${SECONDS_PER_TARGET} s"
    if ! "${FUZZ[@]}" run "${DIR[@]}" "$target" "$WORK/$target" "tests/fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -runs="${FUZZ_RUNS:--1}" -print_final_stats=1 \
        >"$WORK/$target.log" 2>&1; then
        tail -n 40 "$WORK/$target.log" >&2
        echo "error: $target crashed; the input is in tests/fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^Done [0-9]+ runs" "$WORK/$target.log" || true
done
