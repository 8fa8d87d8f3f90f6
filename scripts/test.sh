#!/usr/bin/env bash
# The whole test suite: formatting and lints, the Rust unit and black-box tests, then the
# official OpenAI Python SDK against the built gateway (installed into ./.venv from PyPI), the real
# Claude Code and Codex CLIs (from npm, pinned), the README's Python recipes, and the Dockerfile,
# compose file and shipping scripts linted.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo build (binaries for the SDK tests)"
cargo build --bins --quiet
# Services: the Postgres suite runs when 127.0.0.1:5432 answers (the `test` database, user
# postgres), the Redis suite when 127.0.0.1:6379 does; with CI=true both are required.
PG_URL=${SWITCHYARD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
skipped=()
if reachable 127.0.0.1 5432; then
  export SWITCHYARD_TEST_DATABASE_URL=$PG_URL
else
  skipped+=("Postgres (127.0.0.1:5432 unreachable)")
fi
if reachable 127.0.0.1 6379; then
  export SWITCHYARD_TEST_REDIS_URL=${SWITCHYARD_TEST_REDIS_URL:-redis://127.0.0.1:6379}
else
  skipped+=("Redis (127.0.0.1:6379 unreachable)")
fi
if [ "${CI:-}" = "true" ]; then
  if [ ${#skipped[@]} -gt 0 ]; then
    printf 'CI requires the services: %s\n' "${skipped[@]}" >&2
    exit 1
  fi
  export SWITCHYARD_REQUIRE_POSTGRES=1 SWITCHYARD_REQUIRE_REDIS=1
fi

echo "== cargo test"
cargo test --all-targets

# CI also builds what ships (the release binary: LTO, stripped) and checks every example config
# with it; locally this is left out because the release build takes minutes.
if [ "${CI:-}" = "true" ]; then
  echo "== release build and switchyard check on config/"
  cargo build --release --locked --quiet --bin switchyard
  ls -l target/release/switchyard
  for f in config/*.yaml; do
    target/release/switchyard check --config "$f" >/dev/null
    echo "ok $f"
  done
fi

echo "== npm linters (dclint for docker-compose.gpu.yml)"
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/lint --silent --no-audit --no-fund
elif [ "${CI:-}" = "true" ]; then
  echo "CI requires npm (for dclint)" >&2
  exit 1
else
  skipped+=("dclint (npm not installed)")
fi

# The real clients (Claude Code, Codex CLI), pinned by tests/clients/package-lock.json, installed
# once per lockfile into ~/.cache/switchyard/clients/<its hash> (about 800 MB; warm runs skip npm).
echo "== real clients (npm ci into the cache when the lockfile changed)"
if command -v npm >/dev/null 2>&1; then
  lock_hash=$(sha256sum tests/clients/package-lock.json | cut -c1-16)
  clients_dir="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/clients/$lock_hash"
  if [ ! -f "$clients_dir/.installed" ]; then
    mkdir -p "$clients_dir"
    cp tests/clients/package.json tests/clients/package-lock.json "$clients_dir/"
    # --include=optional: the native linux-x64 binaries are optional dependencies.
    npm ci --prefix "$clients_dir" --include=optional --silent --no-audit --no-fund
    touch "$clients_dir/.installed"
  fi
  export SWITCHYARD_CLIENTS_BIN="$clients_dir/node_modules/.bin"
elif [ "${CI:-}" = "true" ]; then
  echo "CI requires npm (for the Claude Code and Codex CLI tests)" >&2
  exit 1
else
  skipped+=("real clients (npm not installed)")
fi
if [ "${CI:-}" = "true" ]; then
  export SWITCHYARD_REQUIRE_CLIENTS=1
fi

echo "== Python SDK tests, real clients, README recipes, deployment-file lints"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SWITCHYARD_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest -q tests/python

if [ ${#skipped[@]} -gt 0 ]; then
  printf '== SKIPPED suites: %s\n' "${skipped[@]}"
else
  echo "== all suites ran (Postgres and Redis reachable)"
fi
