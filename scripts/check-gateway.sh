#!/usr/bin/env bash
# End-to-end check of a running gateway: health, the model list, one chat call, one streamed call.
#
#   scripts/check-gateway.sh [URL] [KEY]     # defaults: http://127.0.0.1:4000, $SWITCHYARD_MASTER_KEY
#   MODEL=chat scripts/check-gateway.sh ...   # the model to call (default: the first one listed)
#
# Prints `PASS name` or `FAIL name: why` per check; exits 1 when any check failed.
set -uo pipefail

URL=${1:-http://127.0.0.1:4000}
URL=${URL%/}
URL=${URL%/v1}
KEY=${2:-${SWITCHYARD_MASTER_KEY:-${LITELLM_MASTER_KEY:-}}}
TIMEOUT=${CHECK_TIMEOUT:-60}
failed=0

pass() { echo "PASS $1"; }
fail() {
  echo "FAIL $1: $2"
  failed=1
}

# A JSON path lookup with jq when installed, else python3; prints nothing when absent.
json() {
  if command -v jq >/dev/null 2>&1; then
    jq -r "$1 // empty" 2>/dev/null
  else
    python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].lstrip(".").replace("[", ".").replace("]", "").split("."):
        v = v[int(k)] if k.isdigit() else v[k]
    print(v if v is not None else "")
except Exception:
    pass' "$1"
  fi
}

# request METHOD PATH [BODY]: sets $status and $body.
request() {
  local out
  local args=(-sS -m "$TIMEOUT" -X "$1" -w '\n%{http_code}' -H 'content-type: application/json')
  [ -n "$KEY" ] && args+=(-H "Authorization: Bearer $KEY")
  [ $# -ge 3 ] && args+=(-d "$3")
  if ! out=$(curl "${args[@]}" "$URL$2" 2>&1); then
    status=000
    body=${out%$'\n'*}
    return
  fi
  status=${out##*$'\n'}
  body=${out%$'\n'*}
}

short() { printf '%s' "$1" | tr '\n' ' ' | cut -c1-300; }

request GET /health/liveliness
if [ "$status" = 200 ]; then pass health; else fail health "HTTP $status $(short "$body")"; fi

request GET /v1/models
MODEL=${MODEL:-}
if [ "$status" != 200 ]; then
  fail models "HTTP $status $(short "$body")"
else
  first=$(printf '%s' "$body" | json '.data[0].id')
  if [ -z "$first" ]; then
    fail models "no model listed: $(short "$body")"
  else
    pass models
    MODEL=${MODEL:-$first}
  fi
fi

if [ -z "$MODEL" ]; then
  fail chat "no model to call (set MODEL)"
  fail stream "no model to call (set MODEL)"
  exit 1
fi

payload() {
  printf '{"model": "%s", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16, "stream": %s}' \
    "$MODEL" "$1"
}

request POST /v1/chat/completions "$(payload false)"
content=$(printf '%s' "$body" | json '.choices[0].message.content')
if [ "$status" != 200 ]; then
  fail chat "HTTP $status $(short "$body")"
elif [ -z "$content" ]; then
  fail chat "no choices[0].message.content: $(short "$body")"
else
  pass chat
fi

request POST /v1/chat/completions "$(payload true)"
if [ "$status" != 200 ]; then
  fail stream "HTTP $status $(short "$body")"
elif ! printf '%s' "$body" | grep -q '^data: {'; then
  fail stream "no SSE data events: $(short "$body")"
elif ! printf '%s' "$body" | grep -q '^data: \[DONE\]'; then
  fail stream "stream ended without data: [DONE]"
elif printf '%s' "$body" | grep -q '"error"'; then
  fail stream "error event: $(short "$(printf '%s' "$body" | grep '"error"')")"
else
  pass stream
fi

if [ "$failed" = 0 ]; then echo "all checks passed ($URL, model $MODEL)"; fi
exit "$failed"
