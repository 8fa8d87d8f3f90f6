//! The Anthropic Messages API through the gateway, against OpenAI-shaped and Anthropic-shaped
//! upstreams of our own, and the OpenAI API against an Anthropic upstream.

mod common;

use common::*;
use serde_json::{json, Value};

fn cfg(openai_up: &MockUpstream, anthropic_up: &MockUpstream, tail: &str) -> String {
    format!(
        "model_list:
  - model_name: claude-sonnet-4-5-20250929
    litellm_params: {{model: hosted_vllm/qwen, api_base: '{oa}', api_key: k}}
  - model_name: claude-real
    litellm_params: {{model: anthropic/claude-sonnet-4-5-20250929, api_base: 'http://{an}', api_key: sk-ant-secret}}
  - model_name: gpt-via-claude
    litellm_params: {{model: anthropic/claude-3-5-haiku-latest, api_base: 'http://{an}/v1', api_key: sk-ant-secret}}
{tail}",
        oa = openai_up.base_url(),
        an = anthropic_up.addr
    )
}

async fn messages(gw: &Gateway, body: Value) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "tools-2024-05-16")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|ev| {
            let kind = ev.lines().find_map(|l| l.strip_prefix("event: "))?.to_string();
            let data = ev.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((kind, serde_json::from_str(data).ok()?))
        })
        .collect()
}

#[tokio::test]
async fn messages_to_an_openai_upstream_translate_both_ways() {
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = messages(
        &gw,
        json!({
            "model": "claude-sonnet-4-5-20250929", "max_tokens": 256, "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}, {"type": "text", "text": "and now?"}]}
            ]
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["type"], "message");
    assert_eq!(b["role"], "assistant");
    assert_eq!(b["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(b["content"][0], json!({"type": "text", "text": "echo: and now?"}));
    assert_eq!(b["stop_reason"], "end_turn");
    assert!(b["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = &oa.requests()[0].body;
    assert_eq!(sent["model"], "qwen");
    assert_eq!(sent["max_tokens"], 256);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["top_k"], 5, "a local engine takes top_k");
    let m = sent["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "42"})
    );
    assert_eq!(m[4], json!({"role": "user", "content": "and now?"}));
}

#[tokio::test]
async fn streamed_tool_use_from_an_openai_upstream() {
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = messages(
        &gw,
        json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "stream": true,
               "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
               "tool_choice": {"type": "any"},
               "messages": [{"role": "user", "content": "what is the weather?"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let evs = events(&r.text().await.unwrap());
    let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        evs[2].1["content_block"],
        json!({"type": "tool_use", "id": "call_mock_1", "name": "get_weather", "input": {}})
    );
    let args: String = evs
        .iter()
        .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris"}));
    assert_eq!(evs[6].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs[6].1["usage"]["output_tokens"], 7);
    let sent = &oa.requests()[0].body;
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn openai_clients_reach_an_anthropic_upstream() {
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = gw
        .chat(json!({"model": "gpt-via-claude", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello anthropic"}], "stop": "X"}))
        .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["choices"][0]["message"]["content"], "echo: hello anthropic");
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        b["usage"]["prompt_tokens"],
        b["usage"]["total_tokens"].as_u64().unwrap() - b["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let seen = &an.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "sk-ant-secret");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body["system"], "sys");
    assert_eq!(
        seen.body["max_tokens"], 4096,
        "Anthropic needs max_tokens; a default is supplied"
    );
    assert_eq!(seen.body["stop_sequences"], json!(["X"]));
    assert_eq!(seen.body["model"], "claude-3-5-haiku-latest");

    // Streaming, with a tool call, back as OpenAI chunks.
    let r = gw
        .chat(json!({"model": "gpt-via-claude", "stream": true, "stream_options": {"include_usage": true},
                     "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
                     "messages": [{"role": "user", "content": "weather please"}]}))
        .await;
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data.iter().filter_map(|d| serde_json::from_str(d).ok()).collect();
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris"}));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(
        chunks.iter().any(|c| c["usage"]["prompt_tokens"].as_u64().is_some()),
        "{text}"
    );
}

#[tokio::test]
async fn messages_to_an_anthropic_upstream_forward_its_headers() {
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = messages(&gw, json!({"model": "claude-real", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi there"}]})).await;
    let evs = events(&r.text().await.unwrap());
    let text: String = evs.iter().filter_map(|(_, v)| v["delta"]["text"].as_str()).collect();
    assert_eq!(text, "echo: hi there");
    assert_eq!(evs.last().unwrap().0, "message_stop");
    let seen = &an.requests()[0];
    assert_eq!(seen.headers["anthropic-beta"], "tools-2024-05-16");
    assert_eq!(seen.headers["anthropic-version"].to_str().unwrap(), "2023-06-01");
}

#[tokio::test]
async fn errors_come_in_anthropic_shape() {
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(&oa, &an, "general_settings:\n  master_key: sk-master\n")).await;
    let r = gw
        .client
        .post(gw.url("/v1/messages"))
        .json(&json!({"model": "x", "max_tokens": 1, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["type"], "error");
    assert_eq!(b["error"]["type"], "authentication_error");
    let r = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-master")
        .json(&json!({"model": "claude-nope", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert!(b["error"]["message"].as_str().unwrap().contains("claude-nope"));
    let r = gw
        .client
        .post(gw.url("/v1/messages"))
        .bearer_auth("sk-master")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "error");
    let r = gw
        .client
        .post(gw.url("/v1/messages/count_tokens"))
        .bearer_auth("sk-master")
        .json(&json!({"model": "claude-real", "messages": [{"role": "user", "content": "hello world, count me"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.unwrap()["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn router_features_apply_to_messages() {
    // A failing OpenAI-wire group falls back to the Anthropic one; the client sees Anthropic's shape.
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    oa.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let gw = spawn(&cfg(
        &oa,
        &an,
        "router_settings:\n  num_retries: 0\n  fallbacks: [{claude-sonnet-4-5-20250929: [claude-real]}]\n",
    ))
    .await;
    let r = messages(&gw, json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 10, "messages": [{"role": "user", "content": "fall"}]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-attempted-fallbacks"], "1");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["content"][0]["text"], "echo: fall");

    // A stream cut mid-way ends with an Anthropic error event.
    let oa2 = MockUpstream::start().await.unwrap();
    oa2.set(Behaviour {
        chunks: Some(4),
        cut_after: Some(2),
        chunk_delay_ms: 30,
        ..Default::default()
    });
    let gw = spawn(&cfg(&oa2, &an, "router_settings:\n  num_retries: 0\n")).await;
    let r = messages(&gw, json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "a b c d e"}]})).await;
    let evs = events(&r.text().await.unwrap());
    assert_eq!(evs.last().unwrap().0, "error");
    assert_eq!(evs.last().unwrap().1["type"], "error");
    assert!(!evs.iter().any(|(k, _)| k == "message_stop"));
}

#[tokio::test]
async fn claude_code_model_names_map_through_an_alias_pattern() {
    let oa = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: claude-code\n    litellm_params: {{model: hosted_vllm/qwen-coder, api_base: '{}'}}\nrouter_settings:\n  model_group_alias:\n    \"claude-*\": claude-code\n",
        oa.base_url()
    );
    let gw = spawn(&yaml).await;
    for name in [
        "claude-sonnet-4-5-20250929",
        "claude-3-5-haiku-latest",
        "claude-opus-4-1",
    ] {
        let r = messages(
            &gw,
            json!({"model": name, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["x-litellm-model-group"], "claude-code");
        assert_eq!(
            r.json::<Value>().await.unwrap()["model"],
            name,
            "the answer names the model asked for"
        );
    }
    assert!(oa.requests().iter().all(|r| r.body["model"] == "qwen-coder"));
    let r = messages(
        &gw,
        json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
}
