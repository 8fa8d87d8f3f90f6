"""Fuzzes every operation of the gateway's own /openapi.json with schemathesis.

The real binaries run on loopback (a mock upstream and a gateway with a master key and a SQLite
file), like conftest.py's. Each operation gets a bounded number of schema-valid and schema-invalid
requests (FUZZ_EXAMPLES each, 20 by default) within FUZZ_SECONDS overall (120 by default). Every
answer must have a status the description declares, no 5xx other than the declared upstream and
database ones, a JSON error body in the route's dialect, and the log must show no panic.
"""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from conftest import BIN_DIR, MASTER_KEY, free_port, start, wait_http

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
SECONDS = float(os.environ.get("FUZZ_SECONDS", "120"))
# 5xx an operation may answer: upstream failures on model calls, the database on admin routes.
ALLOWED_5XX = {500, 502, 503, 504}


@pytest.fixture(scope="module")
def fuzz_gateway():
    """Yields (base URL, path of the gateway's log)."""
    mock_port, gw_port = free_port(), free_port()
    work = tempfile.TemporaryDirectory()
    log_path = Path(work.name) / "gateway.log"
    mock = start([str(BIN_DIR / "switchyard-mock"), "--port", str(mock_port), "--name", "up"])
    procs = [mock]
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        cfg = Path(work.name) / "config.yaml"
        cfg.write_text(
            f"""
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: sk-upstream
  - model_name: claude-via-anthropic
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: http://127.0.0.1:{mock_port}
      api_key: sk-upstream
general_settings:
  master_key: {MASTER_KEY}
  database_path: {work.name}/switchyard.db
  max_request_size_mb: 1
"""
        )
        log = open(log_path, "wb")
        gw = subprocess.Popen(
            [str(BIN_DIR / "switchyard"), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(gw_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, RUST_BACKTRACE="1"),
        )
        procs.append(gw)
        wait_http(f"http://127.0.0.1:{gw_port}/health/liveliness")
        yield f"http://127.0.0.1:{gw_port}", log_path
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        work.cleanup()


def header(resp: schemathesis.Response, name: str) -> str:
    """A response header (schemathesis keeps each as a list)."""
    for k, v in resp.headers.items():
        if k.lower() == name:
            return v[0] if isinstance(v, list) else v
    return ""


def check_response(spec: dict, method: str, path: str, resp: schemathesis.Response) -> None:
    op = spec["paths"][path][method.lower()]
    declared = {int(s) for s in op["responses"]}
    where = f"{method} {path} -> {resp.status_code}: {resp.content[:300]!r}"
    assert resp.status_code in declared, f"undeclared status: {where}"
    if resp.status_code >= 500:
        assert resp.status_code in ALLOWED_5XX, f"server error: {where}"
    if resp.status_code < 400:
        return
    assert header(resp, "content-type").startswith("application/json"), f"not JSON: {where}"
    body = json.loads(resp.content)
    if path.startswith("/v1/messages"):
        assert body.get("type") == "error", f"not Anthropic's shape: {where}"
        assert isinstance(body["error"]["type"], str) and body["error"]["message"], where
    else:
        err = body.get("error")
        assert isinstance(err, dict), f"not OpenAI's shape: {where}"
        assert err.get("message") and isinstance(err.get("type"), str), where
        # The status as text, or OpenAI's own code (model_not_found, context_length_exceeded);
        # null where OpenAI's own answer has none (a stored response that is not found).
        stored_404 = resp.status_code == 404 and "/responses/" in path
        assert (isinstance(err.get("code"), str) and err["code"]) or (stored_404 and err.get("code") is None), where


def test_every_operation_survives_fuzzing(fuzz_gateway):
    base, log_path = fuzz_gateway
    spec = requests.get(f"{base}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    deadline = time.monotonic() + SECONDS
    session = requests.Session()
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    calls = 0
    statuses: dict[int, int] = {}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == sum(len(v) for v in spec["paths"].values())
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case):
                nonlocal calls
                if time.monotonic() > deadline:
                    return
                resp = case.call(base_url=base, session=session, headers=headers, timeout=15)
                calls += 1
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                check_response(spec, operation.method.upper(), operation.path, resp)

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing of this operation can be made invalid (no body, no parameters).
                assert mode == GenerationMode.NEGATIVE, f"{operation.method} {operation.path}"
    print(f"fuzz: {calls} requests over {len(operations)} operations; statuses {sorted(statuses.items())}")
    log = log_path.read_text(errors="replace")
    assert "panicked" not in log, log[-4000:]
    assert calls > len(operations), f"only {calls} requests were made"
