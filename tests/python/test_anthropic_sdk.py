"""The official Anthropic Python SDK, unchanged, against the gateway's /v1/messages: served by an
OpenAI-shaped upstream (translated) and by an Anthropic-shaped one; and the OpenAI SDK against the
Anthropic-shaped upstream."""

import json

import anthropic
import openai
import pytest

from conftest import MASTER_KEY

OPENAI_BACKED = "claude-sonnet-4-5-20250929"
ANTHROPIC_BACKED = "claude-via-anthropic"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(gateway):
    # The SDK appends /v1/messages to the base URL, as Claude Code does with ANTHROPIC_BASE_URL.
    return anthropic.Anthropic(base_url=gateway.removesuffix("/v1"), api_key=MASTER_KEY, max_retries=0)


@pytest.mark.parametrize("model", [OPENAI_BACKED, ANTHROPIC_BACKED])
def test_message(client, model):
    m = client.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hello claude"}]
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text"
    assert m.content[0].text == "echo: hello claude"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


@pytest.mark.parametrize("model", [OPENAI_BACKED, ANTHROPIC_BACKED])
def test_stream(client, model):
    with client.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "stream these words"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream these words"
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", [OPENAI_BACKED, ANTHROPIC_BACKED])
def test_tools(client, model):
    m = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "what is the weather in Paris?"}],
    )
    assert m.stop_reason == "tool_use"
    block = next(b for b in m.content if b.type == "tool_use")
    assert block.name == "get_weather"
    assert block.input == {"city": "Paris"}
    # The tool result goes back, and the conversation continues.
    follow = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "what is the weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in m.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}, {"type": "text", "text": "thanks"}]},
        ],
    )
    assert follow.content[0].text == "echo: thanks"


@pytest.mark.parametrize("model", [OPENAI_BACKED, ANTHROPIC_BACKED])
def test_streamed_tool_use(client, model):
    with client.messages.stream(
        model=model, max_tokens=64, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        final = stream.get_final_message()
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_count_tokens(client):
    r = client.messages.count_tokens(model=OPENAI_BACKED, messages=[{"role": "user", "content": "count these tokens please"}])
    assert r.input_tokens > 0


def test_unknown_model_is_an_anthropic_error(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="claude-nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert "claude-nope" in e.value.body["error"]["message"]


def test_wrong_key_is_an_authentication_error(gateway):
    bad = anthropic.Anthropic(base_url=gateway.removesuffix("/v1"), api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=OPENAI_BACKED, max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_openai_sdk_against_the_anthropic_upstream(gateway):
    c = openai.OpenAI(base_url=gateway, api_key=MASTER_KEY, max_retries=0)
    r = c.chat.completions.create(model=ANTHROPIC_BACKED, messages=[{"role": "user", "content": "hi from openai"}])
    assert r.choices[0].message.content == "echo: hi from openai"
    chunks = list(
        c.chat.completions.create(
            model=ANTHROPIC_BACKED,
            stream=True,
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            messages=[{"role": "user", "content": "weather?"}],
        )
    )
    args = "".join(
        ch.choices[0].delta.tool_calls[0].function.arguments or ""
        for ch in chunks
        if ch.choices and ch.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"city": "Paris"}


# ---- Faithful passthrough and cross-wire hygiene (issue 14) ------------------------------------

BETAS = "mid-conversation-system-2026-04-07,interleaved-thinking-2025-05-14"
SIGNATURE = "EqQBCkYIBxgCKkDsignature"


def last_received(upstream, path):
    """The body the mock upstream last received on `path`."""
    import urllib.request

    with urllib.request.urlopen(f"{upstream}/__mock/requests") as r:
        recorded = json.load(r)
    return next(x for x in reversed(recorded) if x["path"] == path)


def conversation(first):
    """A tool-use continuation as Claude Code sends it: signed thinking before the tool call,
    cache_control breakpoints, and a system message in the middle of the conversation."""
    tool_use = next(b for b in first.content if b.type == "tool_use")
    return [
        {"role": "user", "content": [{"type": "text", "text": "what is the weather in Paris?", "cache_control": {"type": "ephemeral"}}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "The user wants the weather; call the tool.", "signature": SIGNATURE},
                {"type": "tool_use", "id": tool_use.id, "name": tool_use.name, "input": tool_use.input},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny", "is_error": False}]},
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "and tomorrow?"},
    ]


def ask(client, model, messages=None, stream=False):
    kwargs = dict(
        model=model,
        # The SDK refuses non-streamed calls it expects to take over 10 minutes (about 21k tokens).
        max_tokens=32000 if stream else 16000,
        system=[{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        tools=[dict(WEATHER_TOOL, cache_control={"type": "ephemeral"})],
        thinking={"type": "enabled", "budget_tokens": 2048},
        metadata={"user_id": "user_123"},
        messages=messages or [{"role": "user", "content": "what is the weather in Paris?"}],
        extra_headers={"anthropic-beta": BETAS},
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}, "output_config": {"effort": "medium"}},
    )
    if stream:
        with client.messages.stream(**kwargs) as s:
            return s.get_final_message()
    return client.messages.create(**kwargs)


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_and_cache_control_reach_an_anthropic_deployment_as_sent(client, upstream, stream):
    first = ask(client, ANTHROPIC_BACKED, stream=stream)
    assert first.stop_reason == "tool_use"
    messages = conversation(first)
    follow = ask(client, ANTHROPIC_BACKED, messages, stream=stream)
    assert follow.content[0].text == "echo: and tomorrow?"
    seen = last_received(upstream, "/v1/messages")
    body = seen["body"]
    assert body["model"] == "claude-sonnet-4-5-20250929"
    assert body["messages"] == messages, "the conversation goes upstream exactly as sent"
    assert body["messages"][1]["content"][0]["signature"] == SIGNATURE
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["context_management"] == {"edits": [{"type": "clear_tool_uses_20250919"}]}
    assert body["output_config"] == {"effort": "medium"}
    assert body["metadata"] == {"user_id": "user_123"}
    assert body["max_tokens"] == (32000 if stream else 16000)
    assert seen["headers"]["anthropic-beta"] == BETAS


@pytest.mark.parametrize("stream", [False, True])
def test_the_same_conversation_toward_an_openai_wire_deployment_leaks_nothing(client, upstream, stream):
    first = ask(client, OPENAI_BACKED, stream=stream)
    assert first.stop_reason == "tool_use"
    follow = ask(client, OPENAI_BACKED, conversation(first), stream=stream)
    assert follow.content[0].text == "echo: and tomorrow?"
    body = last_received(upstream, "/v1/chat/completions")["body"]
    raw = json.dumps(body)
    for anthropic_only in ["cache_control", "thinking", "signature", "context_management", "output_config", "metadata", "input_schema"]:
        assert anthropic_only not in raw, f"{anthropic_only} leaked: {raw}"
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "system", "user"]
    assert body["messages"][4]["content"] == "Answer in one word."
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["user"] == "user_123"


def test_a_server_tool_toward_an_openai_wire_deployment_is_refused_in_anthropic_shape(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(
            model=OPENAI_BACKED,
            max_tokens=64,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
            messages=[{"role": "user", "content": "search the news"}],
        )
    assert e.value.body["type"] == "error"
    assert "web_search_20250305" in e.value.body["error"]["message"]
