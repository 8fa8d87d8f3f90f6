#!/usr/bin/env bash
# The local-first simulation: a local engine of our own whose latency grows with its queue
# (capacity K concurrent, each request holding a slot for SERVICE_MS; it queues without limit
# and never errors, like llama-server) and a cloud upstream with a fixed latency, priced as
# GPT-4o. The same bursty workload goes through four policies:
#   local only | cloud only | failover only (LiteLLM's: cloud only on errors) | local-first
# Loopback only; bounded (3 bursts of 12 + 10 single requests per policy); stops by itself.
#
#   scripts/simulate.sh              # builds release binaries first
#   SIM_NO_BUILD=1 scripts/simulate.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
K=${SIM_CAPACITY:-2}
SERVICE_MS=${SIM_SERVICE_MS:-400}
CLOUD_MS=${SIM_CLOUD_MS:-400}
BIN=$ROOT/target/release
command -v jq >/dev/null || { echo "simulate.sh needs jq" >&2; exit 1; }
command -v curl >/dev/null || { echo "simulate.sh needs curl" >&2; exit 1; }
[[ "${SIM_NO_BUILD:-0}" == 1 ]] || cargo build --release --bins >&2

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-sim.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
port() { "$BIN/switchyard-bench" --free-port; }
wait_up() { for _ in $(seq 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "$1 never came up" >&2; exit 1; }

LOCAL=$(port); CLOUD=$(port)
"$BIN/switchyard-mock" --port "$LOCAL" --name local --no-record >"$TMP/local.log" 2>&1 & PIDS+=($!)
"$BIN/switchyard-mock" --port "$CLOUD" --name cloud --no-record >"$TMP/cloud.log" 2>&1 & PIDS+=($!)
wait_up "http://127.0.0.1:$LOCAL/v1/models"; wait_up "http://127.0.0.1:$CLOUD/v1/models"
curl -fsS -X POST "http://127.0.0.1:$LOCAL/__mock/behaviour" -H 'content-type: application/json' \
  -d "{\"capacity\": $K, \"service_ms\": $SERVICE_MS, \"engine\": \"llamacpp\", \"slots\": $K, \"record\": false}"
curl -fsS -X POST "http://127.0.0.1:$CLOUD/__mock/behaviour" -H 'content-type: application/json' \
  -d "{\"latency_ms\": $CLOUD_MS, \"record\": false}"

local_dep="  - model_name: sim
    litellm_params: {model: openai/local-model, api_base: 'http://127.0.0.1:$LOCAL/v1', api_key: none, timeout: 120}
    model_info: {local: true, engine: llamacpp}"
cloud_dep() { echo "  - model_name: $1
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:$CLOUD/v1', api_key: sk-cloud}
    model_info: {local: false}"; }

printf 'model_list:\n%s\n' "$local_dep" >"$TMP/local-only.yaml"
printf 'model_list:\n%s\n' "$(cloud_dep sim)" >"$TMP/cloud-only.yaml"
printf 'model_list:\n%s\n%s\nrouter_settings:\n  fallbacks: [{sim: [sim-cloud]}]\n' "$local_dep" "$(cloud_dep sim-cloud)" >"$TMP/failover-only.yaml"
printf 'model_list:\n%s\n%s\nrouter_settings:\n  routing_strategy: local-first\n  local_first: {engine_poll_ms: 50, max_local_queue: 2}\n' \
  "$local_dep" "$(cloud_dep sim)" >"$TMP/local-first.yaml"

RESULTS=$ROOT/target/bench/simulation.json
mkdir -p "$(dirname "$RESULTS")"
: >"$TMP/results.jsonl"
for policy in local-only cloud-only failover-only local-first; do
  GW=$(port)
  "$BIN/switchyard" --config "$TMP/$policy.yaml" --port "$GW" >"$TMP/$policy.log" 2>&1 & GWPID=$!; PIDS+=($GWPID)
  wait_up "http://127.0.0.1:$GW/health/liveliness"
  echo "  $policy ..." >&2
  "$BIN/switchyard-sim" --url "http://127.0.0.1:$GW/v1/chat/completions" \
      --local-metrics "http://127.0.0.1:$LOCAL/metrics" --capacity "$K" \
    | jq -c --arg p "$policy" '{policy: $p} + .' >>"$TMP/results.jsonl"
  kill "$GWPID" 2>/dev/null || true
done
jq -s '.' "$TMP/results.jsonl" >"$RESULTS"

echo
echo "Local engine: $K slots x ${SERVICE_MS} ms, queues without limit; cloud: ${CLOUD_MS} ms, GPT-4o prices."
echo "Workload: 3 bursts of 12 concurrent requests 3 s apart, then 10 single requests."
echo
echo "| policy | served local / cloud | errors | p50 ms | p99 ms | burst p90 ms | cloud cost vs cloud-only | local busy in bursts | singles served locally |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
jq -r '(map(select(.policy == "cloud-only")) | .[0].cloud_cost_usd) as $full
  | .[] | "| \(.policy) | \(.served_local) / \(.served_cloud) | \(.errors) | \(.p50_ms | round) | \(.p99_ms | round) | \(.burst_p90_ms | round) | \(if $full > 0 then (.cloud_cost_usd / $full * 100 | round | tostring) + "%" else "-" end) | \(.local_utilisation_in_bursts * 100 | round)% | \(.singles_local)/\(.singles) |"' "$RESULTS"
echo
echo "raw results: target/bench/simulation.json"
