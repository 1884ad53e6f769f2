#!/usr/bin/env bash
# Cross-builds the `cairn` binary for a gateway board:
#   aarch64-unknown-linux-gnu      Raspberry Pi 3/4/5 and Cortex-A53/A72 gateways (64-bit OS)
#   armv7-unknown-linux-gnueabihf  older 32-bit ARM gateways (Raspberry Pi OS 32-bit)
# with Debian's cross compilers as linkers and C compilers (installed when
# missing), OpenSSL built from source for the target (the Kafka client's
# TLS), and the Rust target added with rustup.
#
# Usage: scripts/build-gateway.sh TARGET [--no-plugins] [--no-kafka]
#   --no-plugins  a hub without the WebAssembly plugin runtime (smaller; the
#                 only choice on armv7, where wasmtime has no compiler)
#   --no-kafka    without Kafka uplinks (no librdkafka, no OpenSSL)
#   PROFILE=dist (default; docs/BENCHMARKS.md says why) or any cargo profile.
# Prints the binary's path and its size.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${1:?usage: scripts/build-gateway.sh aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [--no-plugins] [--no-kafka]}"
shift
PROFILE="${PROFILE:-dist}"
FEATURES=(wasm kafka vendored-openssl)
for option in "$@"; do
    case "$option" in
        --no-plugins) FEATURES=("${FEATURES[@]/wasm}") ;;
        --no-kafka) FEATURES=("${FEATURES[@]/kafka}"); FEATURES=("${FEATURES[@]/vendored-openssl}") ;;
        *) echo "error: unknown option $option (--no-plugins, --no-kafka)" >&2; exit 2 ;;
    esac
done
FEATURES="$(echo "${FEATURES[*]}" | xargs | tr ' ' ',')"
if [ "$TARGET" = armv7-unknown-linux-gnueabihf ] && [[ ",$FEATURES," == *,wasm,* ]]; then
    echo "error: plugins need wasmtime's Cranelift compiler, which has no 32-bit ARM backend: add --no-plugins" >&2
    exit 2
fi

case "$TARGET" in
    aarch64-unknown-linux-gnu) GNU=aarch64-linux-gnu; PKGS="gcc-aarch64-linux-gnu g++-aarch64-linux-gnu" ;;
    armv7-unknown-linux-gnueabihf) GNU=arm-linux-gnueabihf; PKGS="gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf" ;;
    *) echo "error: unsupported target $TARGET (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
esac

if ! command -v "$GNU-gcc" >/dev/null || ! command -v "$GNU-g++" >/dev/null; then
    echo "installing $PKGS (Debian's cross compilers)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi
rustup target add "$TARGET" >/dev/null

# Cargo's and the cc crate's per-target variables: the cross gcc links the
# binary and compiles the C parts (librdkafka, OpenSSL, zstd, zlib, ring).
VAR="$(tr 'a-z-' 'A-Z_' <<<"$TARGET")"
export "CARGO_TARGET_${VAR}_LINKER=$GNU-gcc"
export "CC_${TARGET//-/_}=$GNU-gcc" "CXX_${TARGET//-/_}=$GNU-g++" "AR_${TARGET//-/_}=$GNU-ar"
# librdkafka's own configure script reads plain CC, CXX and AR, so those
# name the cross tools too, and the build scripts that run here get the host's.
export CC="$GNU-gcc" CXX="$GNU-g++" AR="$GNU-ar"
export HOST_CC=gcc HOST_CXX=g++ HOST_AR=ar
export CC_x86_64_unknown_linux_gnu=gcc CXX_x86_64_unknown_linux_gnu=g++ AR_x86_64_unknown_linux_gnu=ar

# OpenSSL (vendored-openssl, for the Kafka client) is built from source for
# the target: no OpenSSL for the target is installed here.
echo "building cairn for $TARGET, profile $PROFILE, features: ${FEATURES:-none}"
cargo build --locked -p cairn --profile "$PROFILE" --target "$TARGET" --no-default-features --features "$FEATURES"

DIR="$PROFILE"
if [ "$PROFILE" = dev ]; then DIR=debug; fi
BIN="target/$TARGET/$DIR/cairn"
echo "$BIN: $(stat -c %s "$BIN") bytes"
