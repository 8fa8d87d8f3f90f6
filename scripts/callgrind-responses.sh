#!/usr/bin/env bash
# Instructions the gateway executes per request (valgrind callgrind), for the rows of
# scripts/bench-responses.sh: a count that repeats to within a fraction of a percent, where CPU
# time on a shared machine does not. Needs valgrind; the gateway runs under it, so it is slow
# (200 requests a row after 50 to warm up, instrumentation on only for the 200).
#
#   scripts/callgrind-responses.sh [BIN_DIR]          # default target/release (not rebuilt)
#
# Prints `ROW INSTRUCTIONS/request`; the profiles stay in target/callgrind/ for callgrind_annotate
# (a release build has no symbols unless built with CARGO_PROFILE_RELEASE_STRIP=none).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$(cd "${1:-$ROOT/target/release}" && pwd)
OUT=$ROOT/target/callgrind
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "callgrind-responses.sh needs valgrind" >&2; exit 1; }
B=$BIN/switchyard-bench
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
MP=$($B --free-port)
"$BIN/switchyard-mock" --port "$MP" --name bench --latency-ms 0 --no-record >/dev/null 2>&1 &
PIDS+=($!)
$B --wait-ready --url "http://127.0.0.1:$MP/v1/chat/completions" >/dev/null
cat >"$OUT/config.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$MP/v1", api_key: sk-bench}
  - model_name: bench-responses
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$MP/v1", api_key: sk-bench}
    model_info: {supports_responses_api: true}
general_settings:
  disable_database: true
YAML
row() { # row NAME PATH [bench args]
    local name=$1 path=$2 port gw ir
    shift 2
    port=$($B --free-port)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$name.out" \
        "$BIN/switchyard" --config "$OUT/config.yaml" --port "$port" >/dev/null 2>&1 &
    gw=$!
    $B --wait-ready --url "http://127.0.0.1:$port/v1/chat/completions" --ready-timeout 120 >/dev/null
    $B --url "http://127.0.0.1:$port/v1/$path" --requests 50 --duration 300 --warmup 0 "$@" >/dev/null
    callgrind_control -i on "$gw" >/dev/null 2>&1
    $B --url "http://127.0.0.1:$port/v1/$path" --requests 200 --duration 300 --warmup 0 "$@" >/dev/null
    callgrind_control -i off "$gw" >/dev/null 2>&1
    kill "$gw"
    wait "$gw" 2>/dev/null || true
    ir=$(callgrind_annotate "$OUT/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$name $((ir / 200))"
}
row chat chat/completions
row responses responses --responses
row responses-passthrough responses --responses --model bench-responses
row stream-chat chat/completions --stream
row stream-responses responses --responses --stream
