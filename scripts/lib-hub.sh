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
