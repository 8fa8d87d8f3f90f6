#!/usr/bin/env bash
# The Responses path's cost against the chat path, at concurrency 1, on loopback against the
# instant mock: gateway CPU per request (the sum of its threads' run time,
# /proc/PID/task/*/schedstat, over the measured requests) and p50 / p99 latency, for chat,
# Responses translated to the chat wire, Responses passed through, and both streamed (the mock's
# 3-chunk stream). Several builds can be compared in alternating rounds against one mock:
#
#   scripts/bench-responses.sh                                   # target/release, built first
#   BENCH_BINS="/tmp/before target/release" BENCH_ROUNDS=3 BENCH_NO_BUILD=1 scripts/bench-responses.sh
#
# With BENCH_STORE=1 the gateway has the response store on (SQLite in a temporary directory) and
# the rows are the Responses ones, stored (no `store` field: OpenAI's default) and `store: false`.
#
# Env: BENCH_REQUESTS (5000 per row), BENCH_ROUNDS (2), BENCH_BINS (target/release), BENCH_STORE (0).
# The load generator is the last build's `switchyard-bench`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${BENCH_REQUESTS:-5000}
ROUNDS=${BENCH_ROUNDS:-2}
BINS=${BENCH_BINS:-$ROOT/target/release}
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    cargo build --release --bins >&2
fi
FIRST=${BINS%% *}
LAST=${BINS##* }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench-resp.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
bench() { "$LAST/switchyard-bench" --threads 1 "$@"; }
MOCK_PORT=$(bench --free-port)
"$FIRST/switchyard-mock" --port "$MOCK_PORT" --name bench --latency-ms 0 --no-record >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
bench --wait-ready --url "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" --ready-timeout 10 >/dev/null
cat >"$TMP/config.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:$MOCK_PORT/v1
      api_key: sk-bench
  - model_name: bench-responses
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:$MOCK_PORT/v1
      api_key: sk-bench
    model_info:
      supports_responses_api: true
general_settings:
YAML
if [[ "${BENCH_STORE:-0}" == 1 ]]; then
    printf '  database_path: %s/store.db\n' "$TMP" >>"$TMP/config.yaml"
else
    printf '  disable_database: true\n' >>"$TMP/config.yaml"
fi
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d", s}'; }
row() { # row BIN GW_PID NAME URL [args]
    local bin=$1 pid=$2 name=$3 url=$4 t0 t1 out
    shift 4
    bench --url "$url" --duration 1 --warmup 0 --requests 300 --json "$@" >/dev/null
    t0=$(cpu_ns "$pid")
    out=$(bench --url "$url" --duration 600 --warmup 0 --requests "$N" --json "$@")
    t1=$(cpu_ns "$pid")
    echo "$out" | jq -r --arg b "$bin" --arg n "$name" --argjson ns "$((t1 - t0))" \
        '"\($b)\t\($n)\tcpu \(($ns / 1000 / .answered) | floor) us\tp50 \(.p50_us) us\tp99 \(.p99_us) us\terrors \(.errors)"'
}
for round in $(seq "$ROUNDS"); do
    for bin in $BINS; do
        port=$(bench --free-port)
        "$bin/switchyard" --config "$TMP/config.yaml" --port "$port" >"$TMP/gw.log" 2>&1 &
        gw=$!
        PIDS+=("$gw")
        base="http://127.0.0.1:$port/v1"
        bench --wait-ready --url "$base/chat/completions" --ready-timeout 30 >/dev/null
        if [[ "${BENCH_STORE:-0}" == 1 ]]; then
            row "$bin" "$gw" chat "$base/chat/completions"
            row "$bin" "$gw" responses-stored "$base/responses" --responses
            row "$bin" "$gw" responses-store-false "$base/responses" --responses --no-store
            row "$bin" "$gw" stream-responses-stored "$base/responses" --responses --stream
            row "$bin" "$gw" stream-responses-store-false "$base/responses" --responses --stream --no-store
        else
            row "$bin" "$gw" chat "$base/chat/completions"
            row "$bin" "$gw" responses "$base/responses" --responses
            row "$bin" "$gw" responses-passthrough "$base/responses" --responses --model bench-responses
            row "$bin" "$gw" stream-chat "$base/chat/completions" --stream
            row "$bin" "$gw" stream-responses "$base/responses" --responses --stream
        fi
        kill "$gw"
        wait "$gw" 2>/dev/null || true
    done
done
