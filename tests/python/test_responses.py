"""The OpenAI Responses API through the gateway with unchanged clients: the official SDK
(`client.responses.create`, the strict `client.responses.stream` helper), the OpenAI Agents SDK's
default model, and LangChain's `ChatOpenAI(use_responses_api=True)`. Each test checks the answer
and what the mock upstream received (`/__mock/requests`).

Deployments (conftest.py): `gpt-4o` is an OpenAI-compatible engine on loopback (chat wire, so the
request is translated), `gpt-4o-responses` serves Responses itself (passthrough),
`claude-via-anthropic` speaks the Anthropic wire."""

import json
import urllib.request

import openai
import pytest

from conftest import MASTER_KEY

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway, api_key=MASTER_KEY, max_retries=0)


def recorded(upstream):
    with urllib.request.urlopen(f"{upstream}/__mock/requests", timeout=5) as r:
        return json.load(r)


def last_body(upstream, path):
    bodies = [r["body"] for r in recorded(upstream) if r["path"] == path]
    assert bodies, f"the upstream received nothing on {path}"
    return bodies[-1]


def test_create_from_a_chat_upstream(client, upstream):
    r = client.responses.create(
        model="gpt-4o", instructions="Be brief.", input="hello responses", max_output_tokens=300, store=False
    )
    assert r.object == "response"
    assert r.status == "completed"
    assert r.output_text == "echo: hello responses"
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello responses"},
    ]
    assert sent["max_tokens"] == 300
    assert "input" not in sent and "store" not in sent


def test_create_streaming(client, upstream):
    stream = client.responses.create(model="gpt-4o", input="stream these words", stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.content_part.added" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: stream these words"
    final = events[-1].response
    assert final.output_text == text
    assert final.usage.output_tokens > 0
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["stream"] is True


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-responses", "claude-via-anthropic"])
def test_stream_helper_parses_every_event(client, upstream, model):
    with client.responses.stream(model=model, input=f"helper for {model}") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == f"echo: helper for {model}"
    assert final.output_text == f"echo: helper for {model}"
    assert final.status == "completed"


def test_function_tool_round_trip(client, upstream):
    first = client.responses.create(model="gpt-4o", input="what is the weather in Paris?", tools=[WEATHER_TOOL])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    second = client.responses.create(
        model="gpt-4o",
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "what is the weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
        ],
    )
    assert second.output_text == "echo: what is the weather in Paris?"
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert sent["messages"][2] == {"role": "tool", "content": "sunny, 21C", "tool_call_id": call.call_id}


def test_text_format_json_schema(client, upstream):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": False}
    r = client.responses.create(
        model="gpt-4o",
        input="answer in JSON",
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
    )
    assert r.output_text == "echo: answer in JSON"
    assert r.text.format.type == "json_schema"
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


def test_passthrough_sends_the_body_as_is(client, upstream):
    r = client.responses.create(
        model="gpt-4o-responses",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "as sent"}]}],
        tools=[{"type": "web_search"}, WEATHER_TOOL],
        include=["reasoning.encrypted_content"],
        store=False,
        metadata={"k": "v"},
    )
    assert r.output_text == "echo: as sent"
    sent = last_body(upstream, "/v1/responses")
    assert sent == {
        "model": "gpt-4o",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "as sent"}]}],
        "tools": [{"type": "web_search"}, WEATHER_TOOL],
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "metadata": {"k": "v"},
    }


def test_hosted_tools_toward_a_chat_engine_are_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-4o", input="search", tools=[{"type": "web_search"}])
    assert e.value.status_code == 400
    assert e.value.body["param"] == "tools"
    assert "web_search" in e.value.body["message"]


def test_unknown_item_type_is_a_400_naming_the_param(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-4o", input=[{"type": "telepathy", "content": "x"}])
    assert e.value.body["param"] == "input[0]"


def test_agents_sdk_default_model_with_a_tool(gateway, upstream):
    agents = pytest.importorskip("agents")
    from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

    set_tracing_disabled(True)
    set_default_openai_client(openai.AsyncOpenAI(base_url=gateway, api_key=MASTER_KEY, max_retries=0))
    called = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return f"sunny in {city}"

    agent = Agent(name="weather", instructions="Answer about the weather.", model="gpt-4o", tools=[get_weather])
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert called == ["Paris"]
    assert result.final_output == "echo: What is the weather in Paris?"
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["messages"][0] == {"role": "system", "content": "Answer about the weather."}
    tool_msgs = [m for m in sent["messages"] if m["role"] == "tool"]
    assert tool_msgs and tool_msgs[0]["content"] == "sunny in Paris"
    assert agents.__name__ == "agents"


def test_langchain_use_responses_api(gateway, upstream):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-4o", base_url=gateway, api_key=MASTER_KEY, use_responses_api=True, max_retries=0)
    msg = llm.invoke("hello langchain")
    text = msg.text if isinstance(msg.text, str) else msg.text()
    assert text == "echo: hello langchain"
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["messages"][-1] == {"role": "user", "content": "hello langchain"}
    chunks = list(llm.stream("stream langchain"))
    streamed = "".join(c.text if isinstance(c.text, str) else c.text() for c in chunks)
    assert streamed == "echo: stream langchain"
