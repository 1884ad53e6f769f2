#!/usr/bin/env bash
# MQTT over TLS against plain MQTT on one release hub (docs/BENCHMARKS.md):
# the same QoS 1 load on its plain and its TLS listener, alternating run by
# run; medians and the ratio TLS/plain. The certificate (ECDSA P-256, from a
# throwaway CA) is made with openssl, installed from Debian's packages if
# missing.
# Usage: scripts/bench-tls.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
source scripts/lib-hub.sh
if ! command -v openssl >/dev/null; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi
ensure_cairn
WORK="$(mktemp -d)"
HUB=""
trap 'kill $HUB 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

cd "$WORK"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=bench CA" -days 2 -out ca.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
openssl req -new -key server.key -subj "/CN=gateway" -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \
    -out server.pem 2>/dev/null
cd - >/dev/null

serve_hub hub --native-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 --mqtt-tls-addr 127.0.0.1:0 \
    --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key"
HUB=$PID
PLAIN=$(listening hub MQTT); TLS=$(listening hub "MQTT over TLS")
echo "hub: MQTT $PLAIN, MQTT over TLS $TLS"

# load NAME ARGS...: RUNS alternating runs of plain and TLS with these
# bench mqtt arguments; medians and ratio of msg/s.
load() {
    local name=$1; shift
    : >"$WORK/p.txt"; : >"$WORK/t.txt"
    for run in $(seq "$RUNS"); do
        p=$("$CAIRN" bench mqtt --broker "$PLAIN" "$@" | sed -n 's/^run 1: //p'); echo "  plain run $run: $p"
        echo "$p" | awk '{print $7}' >>"$WORK/p.txt"
        t=$("$CAIRN" bench mqtt --broker "$TLS" --tls-ca "$WORK/ca.pem" "$@" | sed -n 's/^run 1: //p')
        echo "  tls run $run: $t"
        echo "$t" | awk '{print $7}' >>"$WORK/t.txt"
    done
    p=$(median <"$WORK/p.txt"); t=$(median <"$WORK/t.txt")
    echo "$name: plain median $p msg/s, TLS median $t msg/s, ratio TLS/plain $(awk -v p="$p" -v t="$t" 'BEGIN {printf "%.3f", t/p}')"
}

echo "== 10 QoS 1 publishers, 100 in flight each, 100-byte messages"
load "windowed QoS 1" --publishers 10 --messages 10000 --qos 1
echo "== 100 QoS 1 publishers, one in flight each"
load "one in flight QoS 1" --publishers 100 --messages 2000 --qos 1 --in-flight 1
