# Shared by the benchmark scripts: starts a release `cairn serve` on a free
# loopback port with its data in $WORK/data and sets HUB (pid) and ADDR.
# Extra arguments go to `serve`. Needs CAIRN and WORK set.
start_hub() {
    rm -f "$WORK/hub.log"
    NO_COLOR=1 RUST_LOG=info "$CAIRN" serve --data-dir "$WORK/data" --native-addr 127.0.0.1:0 --mqtt false "$@" \
        2>"$WORK/hub.log" &
    HUB=$!
    for _ in $(seq 1 300); do
        grep -q "cairn is running" "$WORK/hub.log" 2>/dev/null && break
        sleep 0.1
    done
    ADDR=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/hub.log" | grep -o 'addr=[0-9.:]*' | head -1 | cut -d= -f2)
}

# Installs Mosquitto (the reference broker of the benchmarks) if missing and
# sets MOSQUITTO to its path.
ensure_mosquitto() {
    if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
        local sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
    fi
    MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
}

# Starts Mosquitto on 127.0.0.1:$1 with its defaults (no persistence: it
# PUBACKs before anything reaches a disk); sets MOSQ (pid). Needs WORK set.
start_mosquitto() {
    ensure_mosquitto
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$1" >"$WORK/mosquitto.conf"
    "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    MOSQ=$!
}
