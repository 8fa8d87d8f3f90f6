#!/usr/bin/env bash
# The whole test suite: formatting and lints, the Rust unit and black-box tests, then the
# official OpenAI Python SDK against the built gateway (installed into ./.venv from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo build (binaries for the SDK tests)"
cargo build --bins --quiet
echo "== cargo test"
cargo test --all-targets

echo "== Python SDK tests"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SWITCHYARD_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest -q tests/python
