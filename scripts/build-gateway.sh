#!/usr/bin/env bash
# Builds the `cairn` binary that ships, for a gateway board or this machine:
#   aarch64-unknown-linux-gnu      Raspberry Pi 3/4/5 and Cortex-A53/A72 gateways (64-bit OS)
#   armv7-unknown-linux-gnueabihf  older 32-bit ARM gateways (Raspberry Pi OS 32-bit)
#   x86_64-unknown-linux-gnu       x86-64 gateways and servers (a native build)
# ARM builds use Debian's cross compilers for the C parts (installed when
# missing); every build links with rust-lld, which folds identical functions
# and packs relocations (measured in docs/BENCHMARKS.md). The Kafka client's TLS uses
# Debian's OpenSSL for the target (libssl-dev:ARCH, installed when missing;
# the binary then needs libssl3, which Debian keeps patched), or OpenSSL
# built from source and linked in with --vendored-openssl.
#
# Usage: scripts/build-gateway.sh TARGET [--no-plugins] [--no-kafka] [--vendored-openssl] [--deb]
#   --no-plugins        a hub without the WebAssembly plugin runtime (smaller; the
#                       only choice on armv7, where wasmtime has no compiler)
#   --no-kafka          without Kafka uplinks (no librdkafka, no OpenSSL)
#   --vendored-openssl  OpenSSL from source, linked in (no libssl3 needed on the box)
#   --deb               also the Debian package (cargo deb), in target/debian/
#   PROFILE=dist (default; docs/BENCHMARKS.md says why) or any cargo profile.
# Prints the binary's path and its size.
set -euo pipefail
cd "$(dirname "$0")/.."

USAGE="usage: scripts/build-gateway.sh aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf|x86_64-unknown-linux-gnu [--no-plugins] [--no-kafka] [--vendored-openssl] [--deb]"
TARGET="${1:?$USAGE}"
shift
PROFILE="${PROFILE:-dist}"
PLUGINS=1 KAFKA=1 VENDORED=0 DEB=0
for option in "$@"; do
    case "$option" in
        --no-plugins) PLUGINS=0 ;;
        --no-kafka) KAFKA=0 ;;
        --vendored-openssl) VENDORED=1 ;;
        --deb) DEB=1 ;;
        *) echo "error: unknown option $option (--no-plugins, --no-kafka, --vendored-openssl, --deb)" >&2; exit 2 ;;
    esac
done
FEATURES=()
if [ $PLUGINS = 1 ]; then FEATURES+=(wasm); fi
if [ $KAFKA = 1 ]; then FEATURES+=(kafka); fi
if [ $KAFKA = 1 ] && [ $VENDORED = 1 ]; then FEATURES+=(vendored-openssl); fi
FEATURES="$(IFS=,; echo "${FEATURES[*]}")"

case "$TARGET" in
    aarch64-unknown-linux-gnu) GNU=aarch64-linux-gnu; ARCH=arm64 ;;
    armv7-unknown-linux-gnueabihf) GNU=arm-linux-gnueabihf; ARCH=armhf ;;
    x86_64-unknown-linux-gnu) GNU=x86_64-linux-gnu; ARCH=amd64 ;;
    *) echo "error: unsupported target $TARGET (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf or x86_64-unknown-linux-gnu)" >&2; exit 2 ;;
esac
if [ "$TARGET" = armv7-unknown-linux-gnueabihf ] && [ $PLUGINS = 1 ]; then
    echo "error: plugins need wasmtime's Cranelift compiler, which has no 32-bit ARM backend: add --no-plugins" >&2
    exit 2
fi
CROSS=1
if [ "$(uname -m)-linux-gnu" = "$GNU" ]; then CROSS=0; fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_install() {
    echo "installing $* (Debian packages)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ $CROSS = 1 ] && { ! command -v "$GNU-gcc" >/dev/null || ! command -v "$GNU-g++" >/dev/null; }; then
    apt_install "gcc-$GNU" "g++-$GNU"
fi
rustup target add "$TARGET" >/dev/null

VAR="$(tr 'a-z-' 'A-Z_' <<<"$TARGET")"
# The linker: rust-lld (as rustc uses on x86-64 by default), through gcc so
# that gcc still finds the target's C runtime. It folds identical functions
# (--icf=all), which GNU ld cannot, and packs the relocations the loader
# applies at start into a bitmap (DT_RELR, glibc 2.36 and later: Debian 12).
# RUSTFLAGS reach the target's code only, because --target is given (build
# scripts are left alone).
LLD_DIR="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld"
source scripts/lib-hub.sh
export RUSTFLAGS="-C link-arg=-fuse-ld=lld -C link-arg=-B$LLD_DIR $LINK_ICF $LINK_RELR"
if [ $CROSS = 1 ]; then
    # Cargo's and the cc crate's per-target variables: the cross gcc links
    # the binary and compiles the C parts (librdkafka, zstd, zlib, ring).
    export "CARGO_TARGET_${VAR}_LINKER=$GNU-gcc"
    export "CC_${TARGET//-/_}=$GNU-gcc" "CXX_${TARGET//-/_}=$GNU-g++" "AR_${TARGET//-/_}=$GNU-ar"
    # librdkafka's own configure script reads plain CC, CXX and AR, so those
    # name the cross tools too, and the build scripts that run here get the host's.
    export CC="$GNU-gcc" CXX="$GNU-g++" AR="$GNU-ar"
    export HOST_CC=gcc HOST_CXX=g++ HOST_AR=ar
    export CC_x86_64_unknown_linux_gnu=gcc CXX_x86_64_unknown_linux_gnu=g++ AR_x86_64_unknown_linux_gnu=ar
fi

# librdkafka's own configure builds it with -O2 and every function in one
# section per file, whatever the profile: -Os, and a section per function
# so that the linker drops the functions nothing calls (1.2 MB of the
# x86-64 build, docs/BENCHMARKS.md). The cc crate builds the other C parts
# (zstd, zlib, ring) with the profile's opt-level and its own sections.
# (librdkafka's build script does not watch CFLAGS: after changing them,
# `cargo clean -p rdkafka-sys --profile dist --target TARGET`.)
C_SIZE_FLAGS="-Os -ffunction-sections -fdata-sections"
export CFLAGS="${CFLAGS:+$CFLAGS }$C_SIZE_FLAGS"

if [ $KAFKA = 1 ] && [ $VENDORED = 0 ]; then
    # Debian's OpenSSL for the target, installed beside this machine's own
    # (multiarch: dpkg --add-architecture).
    if ! dpkg -s "libssl-dev:$ARCH" >/dev/null 2>&1; then
        if [ $CROSS = 1 ] && ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
            $SUDO dpkg --add-architecture "$ARCH"
        fi
        apt_install "libssl-dev:$ARCH"
    fi
    if [ $CROSS = 1 ]; then
        # Debian keeps two of OpenSSL's headers per architecture
        # (/usr/include/GNU/openssl) and the rest in /usr/include/openssl; a
        # cross gcc looks in neither, so the build gets one directory with
        # both, and the libraries' directory (openssl-sys reads the first
        # two variables, librdkafka's configure CFLAGS and LDFLAGS).
        INCLUDE="$PWD/target/$TARGET/openssl-include"
        rm -rf "$INCLUDE"
        mkdir -p "$INCLUDE/openssl"
        ln -s /usr/include/openssl/*.h "$INCLUDE/openssl/"
        ln -sf "/usr/include/$GNU/openssl/"*.h "$INCLUDE/openssl/"
        export "${VAR}_OPENSSL_INCLUDE_DIR=$INCLUDE" "${VAR}_OPENSSL_LIB_DIR=/usr/lib/$GNU"
        export CFLAGS="$CFLAGS -I$INCLUDE" LDFLAGS="-L/usr/lib/$GNU"
    fi
fi

echo "building cairn for $TARGET, profile $PROFILE, features: ${FEATURES:-none}"
cargo build --locked -p cairn --profile "$PROFILE" --target "$TARGET" --no-default-features --features "$FEATURES"

DIR="$PROFILE"
if [ "$PROFILE" = dev ]; then DIR=debug; fi
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/$DIR/cairn"
echo "$BIN: $(stat -c %s "$BIN") bytes"

if [ $DEB = 1 ]; then
    if ! cargo deb --version 2>/dev/null | grep -q "3.8.0"; then
        echo "installing cargo-deb 3.8.0"
        cargo install cargo-deb --version 3.8.0 --locked --quiet
    fi
    # The binary just built is packaged as is (--no-build); dpkg-shlibdeps
    # names the libraries it needs (libc6, libssl3) as dependencies.
    cargo deb -p cairn --profile "$PROFILE" --target "$TARGET" --no-build
fi
