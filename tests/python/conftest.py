"""Starts a mock upstream and a gateway (the built binaries) on free loopback ports."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("SWITCHYARD_BIN_DIR", ROOT / "target" / "debug"))
MASTER_KEY = "sk-test-master-key"
# The mock upstream's base URL once the gateway fixture started it (for `upstream`).
STACK = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


# Processes run in a scratch directory: a gateway whose config names no database keeps its SQLite
# file in the working directory, which must not be the checkout.
SCRATCH = tempfile.mkdtemp(prefix="switchyard-pytest-")


def start(args, env=None):
    return subprocess.Popen(args, env=env, cwd=SCRATCH, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def gateway():
    """Yields the gateway's base URL (ending in /v1)."""
    mock_port, gw_port = free_port(), free_port()
    mock = start([str(BIN_DIR / "switchyard-mock"), "--port", str(mock_port), "--name", "up"])
    procs = [mock]
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        STACK["mock"] = f"http://127.0.0.1:{mock_port}"
        cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        cfg.write(
            f"""
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: os.environ/UPSTREAM_KEY
  - model_name: claude-sonnet-4-5-20250929
    litellm_params:
      model: hosted_vllm/qwen
      api_base: http://127.0.0.1:{mock_port}/v1
  - model_name: claude-via-anthropic
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: http://127.0.0.1:{mock_port}
      api_key: os.environ/UPSTREAM_KEY
  - model_name: text-embedding-3-small
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      mode: embedding
  - model_name: gpt-4o-responses
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      supports_responses_api: true
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""
        )
        cfg.close()
        env = dict(os.environ, UPSTREAM_KEY="sk-upstream", LITELLM_MASTER_KEY=MASTER_KEY)
        gw = start(
            [str(BIN_DIR / "switchyard"), "--config", cfg.name, "--host", "127.0.0.1", "--port", str(gw_port)],
            env,
        )
        procs.append(gw)
        wait_http(f"http://127.0.0.1:{gw_port}/health/liveliness")
        yield f"http://127.0.0.1:{gw_port}/v1"
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def upstream(gateway):
    """The mock upstream's base URL (its recorded requests at /__mock/requests)."""
    return STACK["mock"]
