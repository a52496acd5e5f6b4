#!/usr/bin/env bash
# Side by side, in one run on this machine: `pulse serve` over HTTP (embedded SQLite log,
# fsync always) — batch publish, single-event POSTs, publish → WebSocket latency, idle
# memory — then NATS JetStream (file stream, publish with acks) and Redis Streams (XADD)
# on the local servers (127.0.0.1:4222, 127.0.0.1:6379). Each step is bounded by SECS.
# Prints JSON lines; bench/results/http.md records a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${SECS:-10}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
REDIS_PORT="${REDIS_PORT:-6379}"

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p pulse-cli >&2
    (cd bench/http && cargo build --release >&2)
fi
PULSE=target/release/pulse
GEN=bench/http/target/release/pulse-http-bench

DATA="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
RUST_LOG=warn "$PULSE" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" 2>"$DATA.log" &
PID=$!
KEY="pulsebench:$$"
cleanup() {
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    redis-cli -p "$REDIS_PORT" DEL "$KEY" >/dev/null 2>&1 || true
    rm -rf "$DATA" "$DATA.log"
}
trap cleanup EXIT
for _ in $(seq 1 200); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.05; done

echo "{\"machine\":\"$(nproc) cores\",\"load_average\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"date\":\"$(date -u +%FT%TZ)\"}"
sleep 2
echo "{\"mode\":\"idle_rss\",\"rss_kb\":$(awk '/VmRSS/{print $2}' /proc/$PID/status)}"
"$GEN" batch "$BASE" "$SECS" 4 1000
"$GEN" single "$BASE" "$SECS" 64
"$GEN" ws "$BASE" "$SECS" 10000 10
"$GEN" ws "$BASE" "$SECS" 10000 1
echo "{\"mode\":\"rss_after_load\",\"rss_kb\":$(awk '/VmRSS/{print $2}' /proc/$PID/status)}"

"$GEN" nats "$NATS_URL" "$SECS" 256

PAYLOAD='{"specversion":"1.0","id":"x","source":"bench","type":"health.reading.heart_rate","subject":"user-1","datacontenttype":"application/json","data":{"value":70}}'
for pipeline in 1 16; do
    n=$((pipeline == 1 ? 200000 : 1000000))
    rps="$(redis-benchmark -p "$REDIS_PORT" -c 50 -n "$n" -P "$pipeline" -q XADD "$KEY" '*' data "$PAYLOAD" \
        | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)"
    echo "{\"mode\":\"redis_xadd\",\"clients\":50,\"pipeline\":$pipeline,\"messages_per_s\":$rps,\"appendonly\":\"$(redis-cli -p "$REDIS_PORT" config get appendonly | tail -1)\",\"appendfsync\":\"$(redis-cli -p "$REDIS_PORT" config get appendfsync | tail -1)\"}"
    redis-cli -p "$REDIS_PORT" DEL "$KEY" >/dev/null
done
