"""Stored responses through the official OpenAI SDK: `client.responses.create` with
`previous_response_id` (non-streamed and streamed), `client.responses.retrieve`,
`client.responses.input_items.list` and `client.responses.delete`, against a gateway with its own
SQLite file in front of the project's mock upstream (chat wire: the conversation is rebuilt by the
gateway). The mock's recorded request shows what the upstream received."""

import json
import os
import subprocess
import tempfile
import urllib.request

import openai
import pytest

from conftest import BIN_DIR, MASTER_KEY, free_port, start, wait_http


@pytest.fixture(scope="module")
def stack():
    """(gateway base URL ending in /v1, mock base URL)."""
    mock_port, gw_port = free_port(), free_port()
    tmp = tempfile.TemporaryDirectory()
    procs = [start([str(BIN_DIR / "switchyard-mock"), "--port", str(mock_port), "--name", "up"])]
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        cfg = os.path.join(tmp.name, "config.yaml")
        with open(cfg, "w") as f:
            f.write(
                f"""
model_list:
  - model_name: local
    litellm_params:
      model: hosted_vllm/qwen
      api_base: http://127.0.0.1:{mock_port}/v1
general_settings:
  master_key: {MASTER_KEY}
  database_path: {tmp.name}/switchyard.db
  responses_store_ttl: 1d
"""
            )
        procs.append(
            start(
                [str(BIN_DIR / "switchyard"), "--config", cfg, "--host", "127.0.0.1", "--port", str(gw_port)],
                dict(os.environ),
            )
        )
        wait_http(f"http://127.0.0.1:{gw_port}/health/liveliness")
        yield f"http://127.0.0.1:{gw_port}/v1", f"http://127.0.0.1:{mock_port}"
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        tmp.cleanup()


def last_upstream_messages(mock_url):
    """(role, text) of each message in the last request the mock received."""
    with urllib.request.urlopen(f"{mock_url}/__mock/requests", timeout=5) as r:
        recorded = json.load(r)
    body = recorded[-1]["body"]
    out = []
    for m in body["messages"]:
        c = m["content"]
        text = c if isinstance(c, str) else "".join(p.get("text", "") for p in c)
        out.append((m["role"], text))
    return out


def test_a_chain_by_previous_response_id_then_retrieve_list_and_delete(stack):
    base, mock = stack
    client = openai.OpenAI(base_url=base, api_key=MASTER_KEY)

    first = client.responses.create(model="local", input="my name is Ada")
    assert first.store is True
    second = client.responses.create(model="local", input="what is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert last_upstream_messages(mock) == [
        ("user", "my name is Ada"),
        ("assistant", first.output_text),
        ("user", "what is my name?"),
    ]

    with client.responses.stream(model="local", input="and now?", previous_response_id=second.id) as s:
        for _ in s:
            pass
        third = s.get_final_response()
    assert len(last_upstream_messages(mock)) == 5

    got = client.responses.retrieve(third.id)
    assert got.id == third.id
    assert got.output_text == third.output_text
    assert got.previous_response_id == second.id

    # The whole conversation, in order: turn 1, its answer, turn 2, its answer, turn 3.
    items = client.responses.input_items.list(third.id, order="asc")
    texts = [i.content[0].text for i in items.data]
    assert texts == ["my name is Ada", first.output_text, "what is my name?", second.output_text, "and now?"]
    assert [i.role for i in items.data] == ["user", "assistant", "user", "assistant", "user"]

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(first.id)
    assert e.value.body["message"] == f"Response with id '{first.id}' not found."
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="local", input="x", previous_response_id=first.id)
    assert e.value.body["param"] == "previous_response_id"


def test_store_false_is_not_kept(stack):
    base, _ = stack
    client = openai.OpenAI(base_url=base, api_key=MASTER_KEY)
    r = client.responses.create(model="local", input="forget me", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
