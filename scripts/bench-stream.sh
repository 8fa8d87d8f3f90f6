#!/usr/bin/env bash
# The gateway's CPU per streamed chunk, on loopback against the instant mock upstream.
#
#   scripts/bench-stream.sh                       # release build, then measure
#   BENCH_NO_BUILD=1 BENCH_BIN=dir scripts/bench-stream.sh   # binaries as they are, from dir
#
# For each scenario it sends BENCH_REQUESTS requests (after 100 for warm-up) and reads the
# gateway process's CPU time (the sum of its threads' run time from /proc/PID/task/*/schedstat,
# nanoseconds, so repeatable where wall time on a shared machine is not). Scenarios: a plain
# (non-streaming) chat request; chat streams of 16 and 64 content chunks relayed as they are; the
# same streams asked on /v1/messages (translated to Anthropic events). The mock sends each event
# BENCH_CHUNK_DELAY_MS (1) after the last, so each reaches the gateway as a read of its own (as a
# model's tokens do); 0 lets them coalesce. Per chunk = (CPU of the 64-chunk stream - CPU of the
# 16-chunk stream) / 48: the request's fixed cost cancels out. A 1-chunk stream (two upstream
# writes: the content, then the finish, usage and `[DONE]`) against the plain request shows what a
# stream costs besides its chunks. The user-space share of each figure
# comes from the threads' utime against stime (/proc/PID/task/*/stat, clock ticks): what is not
# user space is the kernel's (the socket calls; on loopback a write delivers to the reader too).
#
# Env: BENCH_REQUESTS (1000), BENCH_CONCURRENCY (8), BENCH_CHUNK_DELAY_MS (1), BENCH_BIN
# (target/release), BENCH_NO_BUILD=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${BENCH_BIN:-$ROOT/target/release}
REQS=${BENCH_REQUESTS:-1000}
CONC=${BENCH_CONCURRENCY:-8}
DELAY=${BENCH_CHUNK_DELAY_MS:-1}
command -v jq >/dev/null || { echo "bench-stream.sh needs jq" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench-stream.sh needs curl" >&2; exit 1; }
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    cargo build --release --bins >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench-stream.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench() { "$BIN/switchyard-bench" --threads 1 "$@"; }
MOCK_PORT=$(bench --free-port)
"$BIN/switchyard-mock" --port "$MOCK_PORT" --name bench --latency-ms 0 --no-record >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
bench --wait-ready --url "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" --ready-timeout 10 >/dev/null

cat >"$TMP/config.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:$MOCK_PORT/v1
      api_key: sk-bench
general_settings:
  disable_database: true
YAML
GW_PORT=$(bench --free-port)
"$BIN/switchyard" --config "$TMP/config.yaml" --port "$GW_PORT" >"$TMP/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
GW="http://127.0.0.1:$GW_PORT/v1"
bench --wait-ready --url "$GW/chat/completions" --ready-timeout 30 >/dev/null

# The gateway's CPU so far, in nanoseconds.
cpu_ns() { cat /proc/"$GW_PID"/task/*/schedstat | awk '{s += $1} END {printf "%d", s}'; }
# The gateway's user and kernel clock ticks so far, "utime stime" (fields 14 and 15 after the
# command name, which may hold spaces).
ticks() { sed 's/.*) //' /proc/"$GW_PID"/task/*/stat | awk '{u += $12; k += $13} END {printf "%d %d", u, k}'; }

# 64 words: each content chunk carries a word or more.
REPLY=$(printf 'word%d ' $(seq 1 64))
# measure CHUNKS URL [bench args]: prints the gateway's CPU µs per answered request and, after a
# space, the part of it spent in user space.
measure() {
    local chunks=$1 url=$2
    shift 2
    curl -sf -X POST "http://127.0.0.1:$MOCK_PORT/__mock/behaviour" -H 'content-type: application/json' \
        -d "{\"chunks\": $chunks, \"chunk_delay_ms\": $DELAY, \"reply\": \"$REPLY\", \"record\": false}" >/dev/null
    bench --url "$url" --concurrency "$CONC" --warmup 0 --duration 600 --requests 100 --json "$@" >/dev/null
    local t0 t1 k0 k1 out
    k0=$(ticks)
    t0=$(cpu_ns)
    out=$(bench --url "$url" --concurrency "$CONC" --warmup 0 --duration 600 --requests "$REQS" --json "$@")
    t1=$(cpu_ns)
    k1=$(ticks)
    [[ $(echo "$out" | jq .errors) == 0 ]] || echo "WARNING: errors: $out" >&2
    local n
    n=$(echo "$out" | jq .answered)
    awk -v ns="$((t1 - t0))" -v n="$n" -v a="$k0" -v b="$k1" 'BEGIN {
        split(a, x, " "); split(b, y, " "); u = y[1] - x[1]; k = y[2] - x[2]
        all = ns / 1000 / n; share = (u + k > 0) ? u / (u + k) : 0
        printf "%.1f %.1f\n", all, all * share }'
}

read -r plain plain_u < <(measure 16 "$GW/chat/completions")
read -r c1 c1_u < <(measure 1 "$GW/chat/completions" --stream)
read -r c16 c16_u < <(measure 16 "$GW/chat/completions" --stream)
read -r c64 c64_u < <(measure 64 "$GW/chat/completions" --stream)
read -r m16 m16_u < <(measure 16 "$GW/messages" --stream)
read -r m64 m64_u < <(measure 64 "$GW/messages" --stream)
per() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 48 }'; }
echo "| scenario | gateway CPU per request µs (user space) | per streamed chunk µs (user space) |"
echo "|---|---:|---:|"
echo "| plain chat request | $plain ($plain_u) | - |"
echo "| chat stream, 1 chunk | $c1 ($c1_u) | |"
echo "| chat stream, 16 chunks | $c16 ($c16_u) | |"
echo "| chat stream, 64 chunks | $c64 ($c64_u) | $(per "$c16" "$c64") ($(per "$c16_u" "$c64_u")) |"
echo "| /v1/messages stream (translated), 16 chunks | $m16 ($m16_u) | |"
echo "| /v1/messages stream (translated), 64 chunks | $m64 ($m64_u) | $(per "$m16" "$m64") ($(per "$m16_u" "$m64_u")) |"
echo "(requests $REQS per row, concurrency $CONC, chunk delay $DELAY ms)"
