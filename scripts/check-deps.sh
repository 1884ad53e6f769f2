#!/usr/bin/env bash
# Checks that each crate's dependencies say what its role is (run by
# scripts/test.sh, so it stays true):
# - cairn-proto, the wire format, needs no runtime (the MQTT codec, on
#   rumqttc, only with its `mqtt` feature);
# - cairn-client, what a Rust application depends on, pulls in none of the
#   hub's server-side stack (plugin runtime, storage, MQTT, CLI, serial);
# - cairn-hub without default features builds without the plugin runtime.
# - `cairn` without default features (the small gateway build) has neither
#   the plugin runtime nor librdkafka and OpenSSL;
# - cairn-config, the config file, is plain data and checks: no runtime, no
#   storage, no network (it is fuzzed on its own, tests/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
# $1: the crate, $2: extra cargo tree flags, rest: crates that must be absent.
check() {
    local crate="$1" flags="$2"
    shift 2
    local tree
    tree="$(cargo tree --locked -p "$crate" $flags -e normal --prefix none --format '{p}')"
    for banned in "$@"; do
        if grep -Eq "^${banned}( |$)" <<<"$tree"; then
            echo "error: $crate ${flags:+($flags) }depends on $banned:" >&2
            cargo tree --locked -p "$crate" $flags -e normal -i "$banned" >&2 || true
            fail=1
        fi
    done
    echo "$crate ${flags:+($flags) }: $(awk '{print $1}' <<<"$tree" | sort -u | wc -l) crates, none of: $*"
}

check cairn-proto "" rumqttc tokio redb
check cairn-client "" wasmtime cranelift-codegen wit-component redb rumqttc clap tokio-serial toml tempfile
check cairn-log "" wasmtime cranelift-codegen rumqttc clap tokio-serial
check cairn-hub "--no-default-features" wasmtime cranelift-codegen wit-component
check cairn-config "" tokio redb rumqttc rdkafka rustls clap wasmtime
check cairn-uplink "" wasmtime cranelift-codegen wit-component clap tokio-serial
check cairn "--no-default-features" wasmtime cranelift-codegen rdkafka-sys openssl-sys
exit $fail
