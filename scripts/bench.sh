#!/usr/bin/env bash
# Benchmarks switchyard against an instant mock upstream, on loopback only.
#
#   scripts/bench.sh                 # 5 s per run
#   BENCH_SECS=3 scripts/bench.sh    # shorter runs
#   BENCH_LITELLM=1 scripts/bench.sh # also the LiteLLM proxy, if .bench/litellm-venv has it
#
# Measures: startup time to the first served chat completion, idle RSS, direct-to-mock vs
# through-switchyard throughput and latency (non-streaming at concurrency 1/16/64, streaming
# TTFT at concurrency 1), and RSS after the load. Prints a Markdown table and writes the raw
# results to target/bench/results.json.
#
# The core runs use `disable_database` (no keys, no ledger). The ledger section then runs the same
# requests with a virtual key (budget, rpm/tpm/parallel limits) and every request written to the
# spend ledger, on SQLite and, when reachable, Postgres (a scratch schema, dropped afterwards).
#
# Env: BENCH_SECS (5), BENCH_WARMUP (1), BENCH_CONCURRENCY ("1 16 64"), BENCH_THREADS (1, the
# load generator's threads), BENCH_NO_BUILD=1 (use the binaries as they are), BENCH_LEDGER (1),
# BENCH_ROUTER (1), BENCH_METRICS (1: p99 with /metrics scraped every 100 ms during the load, at
# BENCH_METRICS_CONCURRENCY, 16, in BENCH_METRICS_PASSES pairs, 3),
# BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test; needs psql for the scratch schema).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECS=${BENCH_SECS:-5}
WARMUP=${BENCH_WARMUP:-1}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64"}
THREADS=${BENCH_THREADS:-1}
BIN=$ROOT/target/release
OUTDIR=$ROOT/target/bench
RESULTS=$OUTDIR/results.json

command -v jq >/dev/null || { echo "bench.sh needs jq" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench.sh needs curl" >&2; exit 1; }

if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    echo "building release binaries..." >&2
    cargo build --release --bins >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
PIDS=()
PG_SCHEMA=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$PG_SCHEMA" ]]; then
        psql -q "$PG_URL" -c "DROP SCHEMA $PG_SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUTDIR"

bench() { "$BIN/switchyard-bench" --threads "$THREADS" "$@"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
alive() {
    kill -0 "$1" 2>/dev/null || { echo "$2 exited; its log:" >&2; cat "$3" >&2; exit 1; }
}

# --- the upstream: an instant mock -------------------------------------------------------------
MOCK_PORT=$(bench --free-port)
"$BIN/switchyard-mock" --port "$MOCK_PORT" --name bench --latency-ms 0 --no-record \
    >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
MOCK_PID=$!
MOCK_URL="http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
bench --wait-ready --url "$MOCK_URL" --ready-timeout 10 >/dev/null || {
    alive "$MOCK_PID" mock "$TMP/mock.log"
    exit 1
}

cat >"$TMP/config.yaml" <<EOF
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
EOF
cp "$TMP/config.yaml" "$TMP/model-list.yaml"
printf 'general_settings:\n  disable_database: true\n' >>"$TMP/config.yaml"

# --- the gateway: startup time to the first served request, then idle RSS ---------------------
GW_PORT=$(bench --free-port)
GW_URL="http://127.0.0.1:$GW_PORT/v1/chat/completions"
T0=$(date +%s%N)
"$BIN/switchyard" --config "$TMP/config.yaml" --port "$GW_PORT" >"$TMP/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
STARTUP_MS=$(bench --wait-ready --url "$GW_URL" --since-ns "$T0" --ready-timeout 30) || {
    alive "$GW_PID" switchyard "$TMP/gateway.log"
    echo "switchyard never answered 200; its log:" >&2
    cat "$TMP/gateway.log" >&2
    exit 1
}
sleep 0.2
IDLE_RSS_KB=$(rss_kb "$GW_PID")
echo "switchyard: first 200 after ${STARTUP_MS} ms, idle RSS $(mb "$IDLE_RSS_KB") MB" >&2

# --- the runs -----------------------------------------------------------------------------------
RUNS="$TMP/runs.jsonl"
: >"$RUNS"
run() { # run SCENARIO TARGET URL [bench args...]
    local scenario=$1 target=$2 url=$3
    shift 3
    echo "  $scenario -> $target ..." >&2
    local out
    out=$(bench --url "$url" --duration "$SECS" --warmup "$WARMUP" --json "$@")
    echo "$out" | jq -c --arg s "$scenario" --arg t "$target" '{scenario: $s, target: $t} + .' \
        >>"$RUNS"
    local errors
    errors=$(echo "$out" | jq .errors)
    [[ "$errors" == 0 ]] || echo "  WARNING: $scenario -> $target: $errors errors" >&2
}

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run_cpu PID SCENARIO TARGET URL [args...]: `run`, plus the gateway's CPU microseconds per
# answered request (warm-up included): its cost independent of the load generator's limits.
run_cpu() {
    local pid=$1 t0 t1 hz last
    shift
    t0=$(cpu_ticks "$pid")
    run "$@"
    t1=$(cpu_ticks "$pid")
    hz=$(getconf CLK_TCK)
    last=$(tail -n 1 "$RUNS")
    sed -i '$ d' "$RUNS"
    echo "$last" | jq -c --argjson t "$((t1 - t0))" --argjson hz "$hz" \
        '. + {cpu_us_per_request: (if .answered > 0 then ($t * 1000000 / $hz / .answered | round) else null end)}' >>"$RUNS"
}

for c in $CONCURRENCY; do
    run "c$c" direct "$MOCK_URL" --concurrency "$c"
    alive "$GW_PID" switchyard "$TMP/gateway.log"
    run_cpu "$GW_PID" "c$c" switchyard "$GW_URL" --concurrency "$c"
done
run stream-c1 direct "$MOCK_URL" --concurrency 1 --stream
run stream-c1 switchyard "$GW_URL" --concurrency 1 --stream
# The Anthropic Messages path: the same body is a valid Messages request; the gateway translates it
# to the OpenAI wire and the answer back.
MSG_URL="${GW_URL%/chat/completions}/messages"
run c1 messages "$MSG_URL" --concurrency 1
run stream-c1 messages "$MSG_URL" --concurrency 1 --stream
# The Responses path: translated to the chat wire and back, and passed through as sent to a
# deployment serving /responses (the mock's, shaped as OpenAI's).
RESP_URL="${GW_URL%/chat/completions}/responses"
run c1 responses "$RESP_URL" --concurrency 1 --responses
run stream-c1 responses "$RESP_URL" --concurrency 1 --stream --responses
run c1 responses-passthrough "$RESP_URL" --concurrency 1 --responses --model bench-responses
alive "$GW_PID" switchyard "$TMP/gateway.log"
AFTER_RSS_KB=$(rss_kb "$GW_PID")

# --- keys, limits and the ledger ------------------------------------------------------------------
# The same requests with a virtual key whose limits are checked on every request (a budget, rpm, tpm
# and parallel limits far above the load, so none refuses) and a ledger row written per request.
# After the load, the ledger has 2 s (two flush intervals) to catch up: rows counted through
# /savings against the requests the gateway answered show whether it sustains the rate.
LEDGER="$TMP/ledger.jsonl"
: >"$LEDGER"
MASTER=sk-bench-master-key
ledger_run() { # ledger_run NAME "general_settings lines"
    local name=$1 db=$2 port url pid key answered rows spill
    { cat "$TMP/model-list.yaml"; printf 'general_settings:\n  master_key: %s\n  spend_logs_spill_path: %s\n%s' \
        "$MASTER" "$TMP/spill-$name.jsonl" "$db"; } >"$TMP/ledger-$name.yaml"
    port=$(bench --free-port)
    url="http://127.0.0.1:$port/v1/chat/completions"
    "$BIN/switchyard" --config "$TMP/ledger-$name.yaml" --port "$port" >"$TMP/gw-ledger-$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    bench --wait-ready --url "$url" --api-key "$MASTER" --ready-timeout 30 >/dev/null || {
        alive "$pid" switchyard "$TMP/gw-ledger-$name.log"
        exit 1
    }
    key=$(curl -sf -H "Authorization: Bearer $MASTER" -H 'content-type: application/json' \
        -d '{"key_alias": "bench", "max_budget": 1000000, "rpm_limit": 100000000, "tpm_limit": 10000000000, "max_parallel_requests": 10000}' \
        "http://127.0.0.1:$port/key/generate" | jq -r .key)
    [[ "$key" == sk-* ]] || { echo "key/generate failed on $name" >&2; exit 1; }
    answered=1 # the wait-ready request
    for c in 1 64; do
        run "c$c" "ledger-$name" "$url" --concurrency "$c" --api-key "$key"
        answered=$((answered + $(tail -n 1 "$RUNS" | jq .answered)))
    done
    sleep 2
    rows=$(curl -sf -H "Authorization: Bearer $MASTER" "http://127.0.0.1:$port/savings" |
        jq '[.requests_by_route[]] | add // 0')
    spill=$([[ -s "$TMP/spill-$name.jsonl" ]] && wc -l <"$TMP/spill-$name.jsonl" || echo 0)
    jq -n -c --arg n "$name" --argjson a "$answered" --argjson r "$rows" --argjson s "$spill" \
        '{name: $n, answered: $a, rows: $r, spilled: $s}' >>"$LEDGER"
    echo "  ledger-$name: $rows rows for $answered requests, $spill spilled" >&2
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cp "$TMP/gw-ledger-$name.log" "$OUTDIR/gateway-ledger-$name.log"
    grep -E 'dropped|spilled|failed' "$TMP/gw-ledger-$name.log" | head -n 5 >&2 || true
}
if [[ "${BENCH_LEDGER:-1}" == 1 ]]; then
    ledger_run sqlite "  database_path: $TMP/bench.db
"
    PG_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    if ! command -v psql >/dev/null; then
        echo "ledger on Postgres skipped: psql (for the scratch schema) is not installed" >&2
    elif ! psql -q "$PG_URL" -c "CREATE SCHEMA switchyard_bench_$$" >/dev/null 2>&1; then
        echo "ledger on Postgres skipped: $PG_URL is not reachable" >&2
    else
        PG_SCHEMA=switchyard_bench_$$
        sep='?'; [[ "$PG_URL" == *\?* ]] && sep='&'
        ledger_run postgres "  database_url: \"$PG_URL${sep}options=-c%20search_path%3D$PG_SCHEMA\"
"
    fi
fi

# --- the response cache: every request a hit ------------------------------------------------------
# The same request each time, so after the first one every answer comes from the in-process cache.
if [[ "${BENCH_CACHE:-1}" == 1 ]]; then
    { cat "$TMP/model-list.yaml"; printf 'litellm_settings:\n  cache: true\ngeneral_settings:\n  disable_database: true\n'; } \
        >"$TMP/cache.yaml"
    CA_PORT=$(bench --free-port)
    CA_URL="http://127.0.0.1:$CA_PORT/v1/chat/completions"
    "$BIN/switchyard" --config "$TMP/cache.yaml" --port "$CA_PORT" >"$TMP/gw-cache.log" 2>&1 &
    CA_PID=$!
    PIDS+=("$CA_PID")
    bench --wait-ready --url "$CA_URL" --ready-timeout 30 >/dev/null
    # The load generator's body, sent twice: the second answer must come from the cache.
    CA_BODY='{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
    curl -sf -o /dev/null -H 'content-type: application/json' -d "$CA_BODY" "$CA_URL"
    curl -sf -o /dev/null -D - -H 'content-type: application/json' -d "$CA_BODY" "$CA_URL" |
        grep -qi 'x-switchyard-cache: hit' || echo "  WARNING: the cache bench request is not a hit" >&2
    for c in 1 16; do
        run_cpu "$CA_PID" "c$c" cache-hit "$CA_URL" --concurrency "$c"
    done
    kill "$CA_PID" 2>/dev/null || true
fi

# --- the router: a group of 4 deployments under simple-shuffle and least-busy --------------------
# Same mock behind four entries, so only the router's choice differs from the single-deployment run.
if [[ "${BENCH_ROUTER:-1}" == 1 ]]; then
    for strategy in simple-shuffle least-busy; do
        {
            echo "model_list:"
            for i in 1 2 3 4; do
                printf '  - model_name: bench\n    litellm_params:\n      model: openai/bench-%s\n      api_base: http://127.0.0.1:%s/v1\n      api_key: sk-bench\n' "$i" "$MOCK_PORT"
            done
            printf 'router_settings:\n  routing_strategy: %s\n' "$strategy"
        } >"$TMP/group-$strategy.yaml"
        RT_PORT=$(bench --free-port)
        RT_URL="http://127.0.0.1:$RT_PORT/v1/chat/completions"
        "$BIN/switchyard" --config "$TMP/group-$strategy.yaml" --port "$RT_PORT" >"$TMP/gw-$strategy.log" 2>&1 &
        RT_PID=$!
        PIDS+=("$RT_PID")
        bench --wait-ready --url "$RT_URL" --ready-timeout 30 >/dev/null
        run c1 "group4-$strategy" "$RT_URL" --concurrency 1
        run c64 "group4-$strategy" "$RT_URL" --concurrency 64
        kill "$RT_PID" 2>/dev/null || true
    done
fi

# --- /metrics scraped during load -----------------------------------------------------------------
# The core gateway again at one concurrency, with and without /metrics scraped every 100 ms (150
# times Prometheus' default rate) by one curl process on one kept-alive connection, as Prometheus
# scrapes. Off and on runs alternate so drift of the shared cores hits both sides; the table
# compares the mean p99s and shows the spread of the runs without scraping (the noise floor).
if [[ "${BENCH_METRICS:-1}" == 1 ]]; then
    MC=${BENCH_METRICS_CONCURRENCY:-16}
    METRICS_URL="http://127.0.0.1:$GW_PORT/metrics"
    curl -sf -o /dev/null "$METRICS_URL" || { echo "GET /metrics failed" >&2; exit 1; }
    # Enough URLs for one run at 10 per second; curl stops at the end or when killed.
    for _ in $(seq $(((SECS + WARMUP + 2) * 10))); do
        printf 'url = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' "$METRICS_URL"
    done >"$TMP/scrape.curl"
    SCRAPES="$TMP/scrapes"
    : >"$SCRAPES"
    for _ in $(seq "${BENCH_METRICS_PASSES:-3}"); do
        run "c$MC" metrics-off "$GW_URL" --concurrency "$MC"
        # Line-buffered, so the scrapes answered are counted when the scraper is stopped.
        stdbuf -oL curl -s --rate 10/s -K "$TMP/scrape.curl" >>"$SCRAPES" &
        SCRAPER=$!
        PIDS+=("$SCRAPER")
        run "c$MC" metrics-on "$GW_URL" --concurrency "$MC"
        kill "$SCRAPER" 2>/dev/null || true
        wait "$SCRAPER" 2>/dev/null || true
    done
    METRICS_SCRAPES=$(grep -c '^200$' "$SCRAPES" || true)
    echo "  /metrics answered 200 to $METRICS_SCRAPES scrapes during the metrics-on runs" >&2
    alive "$GW_PID" switchyard "$TMP/gateway.log"
fi

# --- optional: the LiteLLM proxy, the same way ---------------------------------------------------
# Only runs with BENCH_LITELLM=1 and an already installed .bench/litellm-venv/bin/litellm (this
# script never installs it).
LITELLM_JSON=null
if [[ "${BENCH_LITELLM:-0}" == 1 ]]; then
    LITELLM=$ROOT/.bench/litellm-venv/bin/litellm
    if [[ ! -x "$LITELLM" ]]; then
        echo "BENCH_LITELLM=1 but $LITELLM is absent: skipping LiteLLM" >&2
    else
        LL_PORT=$(bench --free-port)
        LL_URL="http://127.0.0.1:$LL_PORT/v1/chat/completions"
        T0=$(date +%s%N)
        "$LITELLM" --config "$TMP/config.yaml" --host 127.0.0.1 --port "$LL_PORT" \
            >"$TMP/litellm.log" 2>&1 &
        LL_PID=$!
        PIDS+=("$LL_PID")
        if LL_STARTUP_MS=$(bench --wait-ready --url "$LL_URL" --since-ns "$T0" --ready-timeout 180); then
            sleep 0.2
            LL_IDLE_KB=$(rss_kb "$LL_PID")
            for c in $CONCURRENCY; do
                run "c$c" litellm "$LL_URL" --concurrency "$c"
            done
            run stream-c1 litellm "$LL_URL" --concurrency 1 --stream
            LL_AFTER_KB=$(rss_kb "$LL_PID" || echo 0)
            LITELLM_JSON=$(jq -n --argjson s "$LL_STARTUP_MS" --argjson i "$LL_IDLE_KB" \
                --argjson a "${LL_AFTER_KB:-0}" \
                '{startup_ms: $s, idle_rss_kb: $i, rss_after_load_kb: $a,
                  note: "RSS of the main litellm process only"}')
        else
            echo "LiteLLM never answered 200; see its log:" >&2
            tail -n 40 "$TMP/litellm.log" >&2
        fi
    fi
fi

# --- results --------------------------------------------------------------------------------------
jq -s --argjson startup "$STARTUP_MS" --argjson idle "$IDLE_RSS_KB" --argjson after "$AFTER_RSS_KB" \
    --argjson litellm "$LITELLM_JSON" --argjson secs "$SECS" --argjson warmup "$WARMUP" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(uname -srm)" \
    --slurpfile ledger "$LEDGER" \
    --argjson scrapes "${METRICS_SCRAPES:-0}" \
    --argjson cores "$(nproc)" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo -)" \
    '{date: $date, host: $host, cores: $cores, commit: $commit, secs: $secs, warmup: $warmup,
      switchyard: {startup_ms: $startup, idle_rss_kb: $idle, rss_after_load_kb: $after},
      litellm: $litellm, ledger: $ledger, metrics_scrapes: $scrapes, runs: .}' "$RUNS" >"$RESULTS"

# The Markdown table, from the results file.
jq -r '
  def ms: if . == null then "-" else (. / 1000 * 100 | round / 100 | tostring) end;
  def sgn: if . == null then "-" elif . >= 0 then "+" + (. | ms) else (. | ms) end;
  def sub(a; b): if a == null or b == null then null else a - b end;
  . as $r
  | ($r.runs | map(select(.target == "direct"))) as $d
  | ($r.runs | map(select(.target == "switchyard"))) as $s
  | ($r.runs | map(select(.target == "litellm"))) as $l
  | "",
    "| scenario | direct rps | switchyard rps | direct p50/p99 ms | switchyard p50/p99 ms | added p50 / added p99 ms |",
    "|---|---:|---:|---:|---:|---:|",
    ( $d[] as $x
      | ($s | map(select(.scenario == $x.scenario)) | .[0]) as $y
      | "| \($x.scenario) | \($x.rps) | \($y.rps) | \($x.p50_us | ms) / \($x.p99_us | ms) | \($y.p50_us | ms) / \($y.p99_us | ms) | \(sub($y.p50_us; $x.p50_us) | sgn) / \(sub($y.p99_us; $x.p99_us) | sgn) |"
    ),
    "",
    ( ($d | map(select(.stream)) | .[0]) as $x
      | ($s | map(select(.stream)) | .[0]) as $y
      | "- streaming c1 TTFT: direct \($x.ttft_p50_us | ms) / \($x.ttft_p99_us | ms) ms, switchyard \($y.ttft_p50_us | ms) / \($y.ttft_p99_us | ms) ms, added TTFT p50 \(sub($y.ttft_p50_us; $x.ttft_p50_us) | sgn) ms / p99 \(sub($y.ttft_p99_us; $x.ttft_p99_us) | sgn) ms"
    ),
    "- startup to first served request: \($r.switchyard.startup_ms) ms",
    "- idle RSS: \($r.switchyard.idle_rss_kb / 1024 * 10 | round / 10) MB",
    "- RSS after load: \($r.switchyard.rss_after_load_kb / 1024 * 10 | round / 10) MB",
    "- errors: \([$r.runs[].errors] | add)",
    ( if ($l | length) > 0 then
        "",
        "LiteLLM (optional section): startup \($r.litellm.startup_ms) ms, idle RSS \($r.litellm.idle_rss_kb / 1024 * 10 | round / 10) MB, RSS after load \($r.litellm.rss_after_load_kb / 1024 * 10 | round / 10) MB",
        "",
        "| scenario | litellm rps | litellm p50/p99 ms | added p50 / added p99 ms vs direct |",
        "|---|---:|---:|---:|",
        ( $l[] as $y
          | ($d | map(select(.scenario == $y.scenario)) | .[0]) as $x
          | "| \($y.scenario) | \($y.rps) | \($y.p50_us | ms) / \($y.p99_us | ms) | \(sub($y.p50_us; $x.p50_us) | sgn) / \(sub($y.p99_us; $x.p99_us) | sgn) |"
        )
      else empty end ),
    "",
    "",
    ( ($s | map(select(.scenario == "c1")) | .[0]) as $o
      | ($r.runs | map(select(.target == "messages" and .scenario == "c1")) | .[0]) as $m
      | ($s | map(select(.scenario == "stream-c1")) | .[0]) as $os
      | ($r.runs | map(select(.target == "messages" and .scenario == "stream-c1")) | .[0]) as $ms
      | if $m == null then empty else
        "- Anthropic /v1/messages over the OpenAI wire, c1: p50/p99 \($m.p50_us | ms) / \($m.p99_us | ms) ms vs OpenAI path \($o.p50_us | ms) / \($o.p99_us | ms) ms (translation adds \(sub($m.p50_us; $o.p50_us) | sgn) / \(sub($m.p99_us; $o.p99_us) | sgn) ms); streaming TTFT \($ms.ttft_p50_us | ms) / \($ms.ttft_p99_us | ms) ms vs \($os.ttft_p50_us | ms) / \($os.ttft_p99_us | ms) ms"
        end ),
    ( ($s | map(select(.scenario == "c1")) | .[0]) as $o
      | ($r.runs | map(select(.target == "responses" and .scenario == "c1")) | .[0]) as $m
      | ($r.runs | map(select(.target == "responses-passthrough" and .scenario == "c1")) | .[0]) as $p
      | ($s | map(select(.scenario == "stream-c1")) | .[0]) as $os
      | ($r.runs | map(select(.target == "responses" and .scenario == "stream-c1")) | .[0]) as $ms
      | if $m == null then empty else
        "- OpenAI /v1/responses over the chat wire, c1: p50/p99 \($m.p50_us | ms) / \($m.p99_us | ms) ms vs chat path \($o.p50_us | ms) / \($o.p99_us | ms) ms (translation adds \(sub($m.p50_us; $o.p50_us) | sgn) / \(sub($m.p99_us; $o.p99_us) | sgn) ms); passed through to a Responses deployment \($p.p50_us | ms) / \($p.p99_us | ms) ms; streaming TTFT \($ms.ttft_p50_us | ms) / \($ms.ttft_p99_us | ms) ms vs \($os.ttft_p50_us | ms) / \($os.ttft_p99_us | ms) ms"
        end ),
    "",
    ( ($r.runs | map(select(.target == "cache-hit"))) as $ch
      | if ($ch | length) > 0 then
        "Response cache, every request a hit (ratio = cache-hit rps / rps of the same concurrency):",
        "",
        "| concurrency | hit rps | hit p50/p99 ms | vs switchyard to instant upstream | vs direct to instant upstream | gateway CPU per request: hit / forwarded |",
        "|---:|---:|---:|---:|---:|---:|",
        ( $ch[] as $h
          | ($s | map(select(.scenario == $h.scenario)) | first) as $o
          | ($d | map(select(.scenario == $h.scenario)) | first) as $x
          | "| \($h.concurrency) | \($h.rps | floor) | \($h.p50_us | ms) / \($h.p99_us | ms) | \(if $o then ($h.rps / $o.rps * 100 | round / 100 | tostring) + "x" else "-" end) | \(if $x then ($h.rps / $x.rps * 100 | round / 100 | tostring) + "x" else "-" end) | \($h.cpu_us_per_request // "-") / \($o.cpu_us_per_request // "-") µs |" ),
        ""
      else empty end ),
    ( if ($r.ledger | length) > 0 then
        "Keys, limits and the ledger (added = minus the core switchyard run of the same concurrency):",
        "",
        "| ledger | concurrency | rps | p50/p99 ms | added p50 / added p99 ms | rows written / requests answered (2 s after the load) | spilled |",
        "|---|---:|---:|---:|---:|---:|---:|",
        ( $r.ledger[] as $l
          | $r.runs | map(select(.target == "ledger-" + $l.name)) | .[] as $g
          | ($s | map(select(.scenario == $g.scenario)) | first) as $o
          | "| \($l.name) | \($g.concurrency) | \($g.rps | floor) | \($g.p50_us | ms) / \($g.p99_us | ms) | \(sub($g.p50_us; $o.p50_us) | sgn) / \(sub($g.p99_us; $o.p99_us) | sgn) | \($l.rows) / \($l.answered) | \($l.spilled) |" ),
        ""
      else empty end ),
    "Router, group of 4 deployments (added = minus the direct run of the same concurrency):",
    "",
    "| strategy | concurrency | rps | p50/p99 ms | added p50 / added p99 ms |",
    "|---|---:|---:|---:|---:|",
    ( $r.runs | map(select(.target | startswith("group4-"))) | .[] as $g
      | ($d | map(select(.scenario == $g.scenario)) | first) as $dd
      | "| \($g.target | ltrimstr("group4-")) | \($g.concurrency) | \($g.rps | floor) | \($g.p50_us | ms) / \($g.p99_us | ms) | \(sub($g.p50_us; $dd.p50_us) | sgn) / \(sub($g.p99_us; $dd.p99_us) | sgn) |" ),
    "",
    ( ($r.runs | map(select(.target == "metrics-off"))) as $off
      | ($r.runs | map(select(.target == "metrics-on"))) as $on
      | if ($on | length) == 0 then empty else
          ($off | map(.p99_us) | add / length) as $p0
          | ($on | map(.p99_us) | add / length) as $p1
          | "- /metrics scraped every 100 ms during \($on[0].scenario) (\($r.metrics_scrapes) scrapes, \($on | length) runs each way): mean p99 \($p1 | ms) ms vs \($p0 | ms) ms without (\((($p1 - $p0) / $p0 * 1000 | round) / 10 | if . >= 0 then "+" + tostring else tostring end)%), runs without scraping \($off | map(.p99_us) | min | ms) .. \($off | map(.p99_us) | max | ms) ms; rps \($on | map(.rps) | add / length | floor) vs \($off | map(.rps) | add / length | floor)",
            ""
        end ),
    "\($r.secs) s per run after \($r.warmup) s warm-up, \($r.cores) cores shared by load generator, mock and gateway; raw results: target/bench/results.json"
' "$RESULTS"

if grep -qiE 'error|panic' "$TMP/gateway.log"; then
    echo >&2
    echo "gateway log has errors (first lines):" >&2
    grep -iE 'error|panic' "$TMP/gateway.log" | head -n 10 >&2
fi
