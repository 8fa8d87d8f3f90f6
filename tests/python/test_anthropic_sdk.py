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
