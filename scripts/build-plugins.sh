#!/usr/bin/env bash
# Builds the example plugins in plugins/examples/ as WebAssembly core modules
# for wasm32-unknown-unknown (no WASI: the hub grants none), into
# target/wasm32-unknown-unknown/release/<crate>.wasm. Each carries
# wit-bindgen's component-type metadata; the hub turns it into a component
# when it loads it (hub/server/src/wasm/). hub/server/tests/wasm.rs and `cairn bench plugin`
# load these files.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null

# No debug info in the .wasm (the release profile keeps it for the hub).
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --locked --release --target wasm32-unknown-unknown \
    -p cairn-plugin-threshold \
    -p cairn-plugin-celsius-to-fahrenheit \
    -p cairn-plugin-alert-router \
    -p cairn-plugin-cbor-to-json

ls -l target/wasm32-unknown-unknown/release/*.wasm
