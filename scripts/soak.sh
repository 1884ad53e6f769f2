#!/usr/bin/env bash
# The soak (docs/RELIABILITY.md): the real hub with CLIENTS MQTT devices each
# publishing one reading a second (QoS 1), SUBSCRIBERS subscribers to all of
# them and a native consumer group, for SECONDS; RSS, open files, publish →
# subscriber latency (p50, p99) and commit latency (p99) sampled every
# SAMPLE seconds into target/soak.csv, then drawn into target/soak.svg
# (matplotlib, installed from PyPI when missing). Fails if any acknowledged
# message did not reach every subscriber and the group.
# Usage: scripts/soak.sh [SECONDS=600] [CLIENTS=1000] [SUBSCRIBERS=10] [SAMPLE=60]
# Needs about 3 open files per device: raise `ulimit -n` for big runs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL="${1:-600}"
CLIENTS="${2:-1000}"
SUBSCRIBERS="${3:-10}"
SAMPLE="${4:-60}"

cargo build --locked -p cairn
cargo build --locked -p cairn-e2e --bin soak
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "installing matplotlib (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.6,<4'
fi
target/debug/soak target/debug/cairn "$CLIENTS" "$SUBSCRIBERS" "$SECONDS_TOTAL" "$SAMPLE" target/soak.csv
python3 scripts/soak_plot.py target/soak.csv target/soak.svg \
    "$CLIENTS devices at 1 msg/s, $SUBSCRIBERS subscribers, a consumer group"
echo "samples: target/soak.csv, plot: target/soak.svg"
