"""The official OpenAI Python SDK, unchanged, as the client of the gateway."""

import openai
import pytest

from conftest import MASTER_KEY


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway, api_key=MASTER_KEY, max_retries=0)


def test_chat(client):
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello sdk"}])
    assert r.choices[0].message.content == "echo: hello sdk"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_with_raw_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "sdk-req-1"}
    )
    assert raw.headers["x-request-id"] == "sdk-req-1"
    assert len(raw.headers["x-litellm-model-id"]) == 64
    assert raw.parse().choices[0].message.content == "echo: hi"


def test_streaming_chat(client):
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "stream these words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == "echo: stream these words please"
    assert usage is not None and usage.completion_tokens > 0


def test_completions(client):
    r = client.completions.create(model="gpt-4o", prompt="complete me")
    assert r.choices[0].text == "echo: complete me"


def test_embeddings(client):
    r = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    assert len(r.data) == 3
    assert all(len(d.embedding) == 8 for d in r.data)


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["gpt-4o", "claude-sonnet-4-5-20250929", "claude-via-anthropic", "text-embedding-3-small", "gpt-4o-responses"]
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"


def test_unknown_model_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-5-nope", messages=[{"role": "user", "content": "x"}])
    assert "Invalid model name passed in model=gpt-5-nope" in str(e.value)
    assert "gpt-4o" in str(e.value)


def test_wrong_key_is_unauthorized(gateway):
    bad = openai.OpenAI(base_url=gateway, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_missing_model_retrieve_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("does-not-exist")
