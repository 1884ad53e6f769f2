#!/usr/bin/env bash
# Builds the footprint probes (firmware/qemu-lm3s6965/src/bin/footprint_*.rs)
# for thumbv7em-none-eabihf with opt-level "z" and checks the device SDK's
# budget (docs/BENCHMARKS.md): publisher + framing + proto at most 12 KiB of
# flash and 2 KiB of static RAM besides the outbox, and no panic path linked
# in. Needs arm-none-eabi-size/nm (Debian binutils-arm-none-eabi).
set -euo pipefail
cd "$(dirname "$0")/../firmware/qemu-lm3s6965"
cargo build --locked --release --target thumbv7em-none-eabihf --bin footprint-publisher --bin footprint-baseline
dir=target/thumbv7em-none-eabihf/release
read -r ptext _ pbss _ < <(arm-none-eabi-size "$dir/footprint-publisher" | tail -1)
read -r btext _ bbss _ < <(arm-none-eabi-size "$dir/footprint-baseline" | tail -1)
# The probe's outbox: 32 readings of 40 bytes (value 24 B, length, i64 timestamp).
outbox=$((32 * 40))
flash=$((ptext - btext))
ram=$((pbss - bbss - outbox))
echo "device SDK footprint (thumbv7em-none-eabihf, opt-level z): flash $flash B, static RAM $ram B + outbox $outbox B"
status=0
if [ "$flash" -gt 12288 ]; then echo "error: the SDK's flash is over 12 KiB" >&2; status=1; fi
if [ "$ram" -gt 2048 ]; then echo "error: the SDK's static RAM is over 2 KiB besides the outbox" >&2; status=1; fi
if arm-none-eabi-nm -C "$dir/footprint-publisher" | grep -qi "panic"; then
    echo "error: a panic path is linked into the publisher:" >&2
    arm-none-eabi-nm -C "$dir/footprint-publisher" | grep -i panic >&2
    status=1
fi
exit $status
