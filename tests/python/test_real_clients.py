"""The real Claude Code and Codex CLIs, pinned in tests/clients/package-lock.json, driven through the
gateway in front of the scripted mock upstream, on an OpenAI-wire (hosted_vllm/) and an
Anthropic-wire (anthropic/) deployment.

scripts/test.sh installs the clients with `npm ci` into ~/.cache/switchyard/clients/<lockfile hash>
and exports SWITCHYARD_CLIENTS_BIN; without them these tests skip, unless SWITCHYARD_REQUIRE_CLIENTS=1
(CI), where a missing client fails.

The first request bodies each client sends (straight to the mock, no gateway between) are scrubbed
of machine-specific values and compared with tests/fixtures/clients/, which the Rust fixture tests
(tests/client_fixtures.rs) send through the gateway; SWITCHYARD_RECORD_FIXTURES=1 rewrites them.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN_DIR, MASTER_KEY, ROOT, free_port, start, wait_http

CLAUDE_VERSION = "2.1.332"
CODEX_VERSION = "0.171.0"
FIXTURES = ROOT / "tests" / "fixtures" / "clients"
CLIENT_TIMEOUT = 120  # seconds a client run may take before the test fails (a bound, not a measure)


def clients_bin() -> Path | None:
    """Where `claude` and `codex` are: $SWITCHYARD_CLIENTS_BIN, else the cache scripts/test.sh fills."""
    if os.environ.get("SWITCHYARD_CLIENTS_BIN"):
        return Path(os.environ["SWITCHYARD_CLIENTS_BIN"])
    lock = (ROOT / "tests" / "clients" / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = hashlib.sha256(lock).hexdigest()[:16]
    candidate = cache / "switchyard" / "clients" / key / "node_modules" / ".bin"
    return candidate if (candidate / "claude").exists() else None


BIN = clients_bin()
if BIN is None or not (BIN / "claude").exists() or not (BIN / "codex").exists():
    if os.environ.get("SWITCHYARD_REQUIRE_CLIENTS") == "1":
        raise RuntimeError(f"the pinned clients are required but not installed (looked in {BIN})")
    pytest.skip("Claude Code / Codex not installed (scripts/test.sh installs them with npm)", allow_module_level=True)


# --- the scripted upstream and the gateways --------------------------------------------------------


class Mock:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def _call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def script(self, reply: str, tool_call: dict | None = None) -> None:
        """Sets what the upstream answers and forgets what it has recorded."""
        self._call("POST", "/__mock/behaviour", {"reply": reply, "tool_call": tool_call, "record": True})
        self._call("DELETE", "/__mock/requests")

    def requests(self) -> list[dict]:
        return self._call("GET", "/__mock/requests")


WIRES = {
    # OpenAI chat wire: a local engine's deployment (the mock's /v1/chat/completions).
    "chat": "model: hosted_vllm/qwen\n      api_base: http://127.0.0.1:{port}/v1",
    # Anthropic wire: the mock's /v1/messages.
    "anthropic": "model: anthropic/claude-sonnet-4-5-20250929\n      api_base: http://127.0.0.1:{port}\n"
    "      api_key: os.environ/UPSTREAM_KEY",
}
UPSTREAM_PATH = {"chat": "/v1/chat/completions", "anthropic": "/v1/messages"}


# A virtual key per gateway (made in `stack`): the tool round trips and Codex call with it, the
# plain Claude Code runs with the master key, as the README's recipe does.
VIRTUAL_KEYS: dict[str, str] = {}


def generate_key(base: str) -> str:
    req = urllib.request.Request(base + "/key/generate", data=b"{}", method="POST")
    req.add_header("content-type", "application/json")
    req.add_header("authorization", f"Bearer {MASTER_KEY}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["key"]


@pytest.fixture(scope="module")
def stack():
    """One mock and one gateway per wire for all the client tests. Every Claude model name goes to
    the `target` group by a `claude-*` alias; Codex names `target` itself. `drop_params`, because
    Codex offers hosted tools (web_search) that only the Responses wire can carry."""
    mock_port = free_port()
    db_dir = tempfile.mkdtemp()
    procs = [start([str(BIN_DIR / "switchyard-mock"), "--port", str(mock_port), "--name", "up"])]
    gateways = {}
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        for wire, params in WIRES.items():
            port = free_port()
            cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            cfg.write(
                f"""
model_list:
  - model_name: target
    litellm_params:
      {params.format(port=mock_port)}
router_settings:
  model_group_alias:
    "claude-*": target
litellm_settings:
  drop_params: true
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  database_path: {db_dir}/{wire}.db
"""
            )
            cfg.close()
            env = dict(os.environ, UPSTREAM_KEY="sk-upstream", LITELLM_MASTER_KEY=MASTER_KEY)
            procs.append(
                start([str(BIN_DIR / "switchyard"), "--config", cfg.name, "--host", "127.0.0.1", "--port", str(port)], env)
            )
            wait_http(f"http://127.0.0.1:{port}/health/liveliness")
            gateways[wire] = f"http://127.0.0.1:{port}"
            VIRTUAL_KEYS[wire] = generate_key(gateways[wire])
        yield Mock(mock_port), gateways
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(db_dir, ignore_errors=True)


# --- running the clients ---------------------------------------------------------------------------


def quiet_env(home: Path) -> dict:
    """A clean environment: a temp HOME, no telemetry, update checks or error reports."""
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "TERM", "SYSTEMROOT") if k in os.environ}
    return dict(
        keep,
        HOME=str(home),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_MAX_RETRIES="1",
        NO_COLOR="1",
    )


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(
        args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLIENT_TIMEOUT
    )
    print(f"$ {' '.join(args)}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr[-4000:]}")
    return p


def claude(base_url: str, tmp: Path, prompt: str, *extra: str, api_key: str | None = None) -> subprocess.CompletedProcess:
    """`claude -p`; with the master key as a bearer token (ANTHROPIC_AUTH_TOKEN), or `api_key` as
    `x-api-key` (ANTHROPIC_API_KEY)."""
    home, work = tmp / "home", tmp / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    env = quiet_env(home)
    env.update(ANTHROPIC_BASE_URL=base_url)
    if api_key:
        env.update(ANTHROPIC_API_KEY=api_key)
    else:
        env.update(ANTHROPIC_AUTH_TOKEN=MASTER_KEY)
    return run([str(BIN / "claude"), "-p", prompt, *extra], env, work)


def codex(base_url: str, tmp: Path, prompt: str, *extra: str, api_key: str = MASTER_KEY) -> subprocess.CompletedProcess:
    home, work = tmp / "codex-home", tmp / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f"""model = "target"
model_provider = "switchyard"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[model_providers.switchyard]
name = "switchyard"
base_url = "{base_url}/v1"
env_key = "SWITCHYARD_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""
    )
    env = quiet_env(tmp / "home")
    env.update(CODEX_HOME=str(home), SWITCHYARD_API_KEY=api_key)
    # No sandbox: bubblewrap cannot make namespaces in this container; the command is a fixed
    # `echo` in a temp directory, scripted by our own upstream.
    args = [str(BIN / "codex"), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", *extra]
    return run([*args, prompt], env, work)


def tool_outputs(wire: str, body: dict) -> list[str]:
    """The tool results in an upstream request body, as text."""
    if wire == "chat":
        return [json.dumps(m.get("content")) for m in body.get("messages", []) if m.get("role") == "tool"]
    return [
        json.dumps(b.get("content"))
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]


def upstream_calls(mock: Mock, wire: str) -> list[dict]:
    return [r["body"] for r in mock.requests() if r["path"] == UPSTREAM_PATH[wire]]


# --- Claude Code -----------------------------------------------------------------------------------

# Current models (the default, `sonnet`) put `{"role": "system"}` turns inside `messages`; a model of
# the 4.5 generation does not, so it is the path that worked before issue 14.
LEGACY = "claude-sonnet-4-5-20250929"


@pytest.mark.parametrize("wire", ["chat", "anthropic"])
@pytest.mark.parametrize("model", [None, "sonnet", LEGACY], ids=["default-model", "sonnet", "sonnet-4-5"])
def test_claude_code_answers(stack, tmp_path, wire, model):
    mock, gw = stack
    mock.script("plain answer from the scripted upstream")
    p = claude(gw[wire], tmp_path, "say hi", *(["--model", model] if model else []))
    assert p.returncode == 0, p.stderr
    assert "plain answer from the scripted upstream" in p.stdout
    calls = upstream_calls(mock, wire)
    assert calls, "the upstream saw no request"
    assert any("say hi" in json.dumps(c.get("messages")) for c in calls)


@pytest.mark.parametrize("wire", ["chat", "anthropic"])
@pytest.mark.parametrize("model", [None, LEGACY], ids=["default-model", "sonnet-4-5"])
def test_claude_code_tool_round_trip(stack, tmp_path, wire, model):
    mock, gw = stack
    notes = tmp_path / "work" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("the secret word is pomegranate-7\n")
    mock.script("The file holds the word pomegranate.", {"name": "Read", "arguments": {"file_path": str(notes)}})
    model_args = ["--model", model] if model else []
    p = claude(
        gw[wire], tmp_path, "What does notes.txt say?", "--allowedTools", "Read", *model_args, api_key=VIRTUAL_KEYS[wire]
    )
    assert p.returncode == 0, p.stderr
    assert "The file holds the word pomegranate." in p.stdout
    calls = upstream_calls(mock, wire)
    assert len(calls) >= 2, calls
    # Turn 2 carries the file as Claude Code's Read tool returned it: the tool really ran.
    assert any("pomegranate-7" in out for c in calls for out in tool_outputs(wire, c))


# --- Codex CLI (needs POST /v1/responses: the `responses` branch) ---------------------------------


@pytest.mark.parametrize("wire", ["chat", "anthropic"])
def test_codex_answers(stack, tmp_path, wire):
    mock, gw = stack
    mock.script("codex plain answer")
    p = codex(gw[wire], tmp_path, "say hi", api_key=VIRTUAL_KEYS[wire])
    assert p.returncode == 0, p.stderr
    assert "codex plain answer" in p.stdout
    assert any("say hi" in json.dumps(c) for c in upstream_calls(mock, wire))


@pytest.mark.parametrize("wire", ["chat", "anthropic"])
def test_codex_shell_tool_round_trip(stack, tmp_path, wire):
    mock, gw = stack
    mock.script("The command printed the answer.", {"name": "exec_command", "arguments": {"cmd": "echo switchyard-$((6*7))"}})
    p = codex(gw[wire], tmp_path, "Run a command for me.", api_key=VIRTUAL_KEYS[wire])
    assert p.returncode == 0, p.stderr
    assert "The command printed the answer." in p.stdout
    calls = upstream_calls(mock, wire)
    assert len(calls) >= 2, calls
    # The shell expanded $((6*7)): Codex ran the command and sent its output back.
    assert any("switchyard-42" in out for c in calls for out in tool_outputs(wire, c))


# --- recorded first request bodies -----------------------------------------------------------------

# Ids are often prefixed (`msg_<uuid>`), so no \b before them.
UUID = re.compile(r"(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f])")
HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32,64}(?![0-9a-f])")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
OS_VERSION = re.compile(r"(OS Version: )[^\n]*")
TIMEZONE = re.compile(r"(<timezone>)[^<]*(</timezone>)")


def scrub(value, paths: dict[str, str]):
    """Machine-specific values (temp paths, ids, dates, the kernel) replaced by fixed ones."""
    if isinstance(value, dict):
        return {k: scrub(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, paths) for v in value]
    if not isinstance(value, str):
        return value
    for real, fixed in paths.items():
        value = value.replace(real, fixed)
    value = UUID.sub("00000000-0000-0000-0000-000000000000", value)
    value = HEX_ID.sub(lambda m: "0" * len(m.group()), value)
    value = DATE.sub("2026-01-01", value)
    value = OS_VERSION.sub(r"\1Linux", value)
    return TIMEZONE.sub(r"\1UTC\2", value)


def shape(body: dict) -> dict:
    """What must not drift while the client version is pinned: fields, roles and tool names."""
    turns = body.get("messages") or body.get("input") or []
    return {
        "fields": sorted(body),
        "turns": [t.get("role") or t.get("type") for t in turns],
        "tools": [t.get("name") or t.get("type") for t in body.get("tools", [])],
    }


def first_body(mock: Mock, path: str) -> dict:
    bodies = [r["body"] for r in mock.requests() if r["path"] == path and r["body"].get("tools")]
    assert bodies, f"the client sent nothing with tools to {path}"
    return bodies[0]


@pytest.mark.parametrize(
    "client,fixture",
    [
        ("claude", f"claude-code-{CLAUDE_VERSION}-messages.json"),
        ("codex", f"codex-{CODEX_VERSION}-responses.json"),
    ],
)
def test_first_request_body_matches_the_fixture(stack, tmp_path, client, fixture):
    mock, _ = stack
    mock.script("recorded")
    # Straight to the mock: the body as the client wrote it. The mock answers Codex's
    # /v1/responses with 404 until it serves that API; the body is recorded either way.
    if client == "claude":
        claude(mock.base, tmp_path, "Hello there")
        body, path = first_body(mock, "/v1/messages"), "/v1/messages"
    else:
        codex(mock.base, tmp_path, "Hello there")
        body, path = first_body(mock, "/v1/responses"), "/v1/responses"
    work = str(tmp_path / "work")
    paths = {
        work: "/home/user/project",
        # Claude Code names its per-project folders after the path, every other character a dash.
        re.sub(r"[^A-Za-z0-9]", "-", work): "-home-user-project",
        str(tmp_path / "codex-home"): "/home/user/.codex",
        str(tmp_path / "home"): "/home/user",
        str(tmp_path): "/home/user/tmp",
    }
    body = scrub(body, paths)
    target = FIXTURES / fixture
    if os.environ.get("SWITCHYARD_RECORD_FIXTURES") == "1":
        FIXTURES.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"path": path, "body": body}, indent=1, ensure_ascii=False) + "\n")
    recorded = json.loads(target.read_text())
    assert recorded["path"] == path
    assert shape(body) == shape(recorded["body"]), (
        f"{client} now sends a differently shaped body than {target.name}: "
        "rerun with SWITCHYARD_RECORD_FIXTURES=1 after a version bump"
    )
