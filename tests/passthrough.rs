//! Same-wire passthrough and cross-wire hygiene (issue 14, items 2, 3 and 5): what the upstream
//! receives, recorded by the mock, against what the client sent.

mod common;

use common::*;
use serde_json::{json, Map, Value};

fn cfg(oa: &MockUpstream, an: &MockUpstream, tail: &str) -> String {
    format!(
        "model_list:
  - model_name: claude-real
    litellm_params: {{model: anthropic/claude-opus-4-8, api_base: 'http://{an}', api_key: sk-ant-secret}}
  - model_name: claude-local
    litellm_params: {{model: anthropic/qwen3-coder, api_base: 'http://{an}', api_key: k}}
    model_info: {{max_output_tokens: 8192, local: true}}
  - model_name: qwen
    litellm_params: {{model: hosted_vllm/qwen, api_base: '{oa}', api_key: k}}
  - model_name: qwen-local
    litellm_params: {{model: hosted_vllm/qwen, api_base: '{oa}', api_key: k}}
    model_info: {{max_output_tokens: 4096}}
  - model_name: qwen-lenient
    litellm_params: {{model: hosted_vllm/qwen, api_base: '{oa}', api_key: k, drop_params: true}}
{tail}",
        oa = oa.base_url(),
        an = an.addr
    )
}

/// A Claude Code-like body: mid-conversation system message, signed thinking carried across a
/// tool-use continuation, cache_control on system/text/tool blocks, and newer top-level fields.
fn claude_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "max_tokens": 32000, "stream": stream,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc", "tags": ["team-a"]},
        "a_future_field": {"x": 1},
        "tools": [{"name": "Read", "description": "read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "read a.txt", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it.", "signature": "EqQBCkYIBxgCKkD"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.txt"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello", "is_error": false}]},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": "now summarise"}
        ]
    })
}

async fn post_messages(gw: &Gateway, body: &Value) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "mid-conversation-system-2026-04-07,interleaved-thinking-2025-05-14",
        )
        .json(body)
        .send()
        .await
        .unwrap()
}

fn without(v: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut m = v.as_object().unwrap().clone();
    for k in keys {
        m.remove(*k);
    }
    m
}

#[tokio::test]
async fn anthropic_clients_reach_anthropic_deployments_as_sent() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    for stream in [false, true] {
        let sent = claude_body("claude-real", stream);
        let r = post_messages(&gw, &sent).await;
        assert_eq!(r.status(), 200, "stream={stream}");
        let text = r.text().await.unwrap();
        let seen = an.requests().pop().unwrap();
        assert_eq!(seen.body["model"], "claude-opus-4-8");
        assert_eq!(seen.body["max_tokens"], 32000, "a cloud deployment is not clamped");
        // Of metadata only Anthropic's user_id goes; LiteLLM's tags are the gateway's.
        assert_eq!(seen.body["metadata"], json!({"user_id": "user_abc"}));
        assert_eq!(
            without(&seen.body, &["model", "metadata"]),
            without(&sent, &["model", "metadata"]),
            "stream={stream}"
        );
        assert_eq!(
            seen.headers["anthropic-beta"],
            "mid-conversation-system-2026-04-07,interleaved-thinking-2025-05-14"
        );
        // The answer is the upstream's, event for event.
        if stream {
            assert!(text.starts_with("event: message_start\n"), "{text}");
            assert!(text.contains("event: ping\n"));
            assert!(text.trim_end().ends_with("data: {\"type\":\"message_stop\"}"), "{text}");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["id"], "msg_mock");
            assert_eq!(v["model"], "claude-opus-4-8");
            assert_eq!(v["usage"]["cache_read_input_tokens"], 2);
        }
    }
}

#[tokio::test]
async fn local_deployments_get_max_tokens_clamped() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = post_messages(&gw, &claude_body("claude-local", false)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = an.requests().pop().unwrap();
    assert_eq!(seen.body["max_tokens"], 8192);
    assert_eq!(seen.body["thinking"]["budget_tokens"], 4000);

    // The OpenAI wire, both budget fields; the mock on loopback is local.
    let r = gw
        .chat(json!({"model": "qwen-local", "max_tokens": 64000, "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(oa.requests().pop().unwrap().body["max_tokens"], 4096);
    let r = gw
        .chat(json!({"model": "qwen-local", "max_completion_tokens": 100, "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        oa.requests().pop().unwrap().body["max_completion_tokens"],
        100,
        "under the cap: as asked"
    );
    // No max_output_tokens: left as is.
    let r = gw
        .chat(json!({"model": "qwen", "max_tokens": 64000, "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(oa.requests().pop().unwrap().body["max_tokens"], 64000);
}

#[tokio::test]
async fn chat_clients_reach_openai_deployments_as_sent() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    for stream in [false, true] {
        let sent = json!({
            "model": "qwen", "stream": stream, "temperature": 0.3, "seed": 7, "logprobs": true,
            "response_format": {"type": "json_object"}, "reasoning_effort": "low", "a_future_field": [1, 2],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [{"role": "developer", "content": "be terse"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"},
                         {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
        });
        let r = gw.chat(sent.clone()).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let seen = oa.requests().pop().unwrap();
        assert_eq!(seen.body["model"], "qwen");
        // Streams ask the upstream for usage (metered; the usage chunk is not shown to a client
        // that did not ask for it): the one documented addition.
        let mut got = without(&seen.body, &["model"]);
        if stream {
            assert_eq!(got.remove("stream_options"), Some(json!({"include_usage": true})));
            assert!(!text.contains("\"usage\""), "{text}");
        }
        assert_eq!(got, without(&sent, &["model"]), "stream={stream}");
    }
}

#[tokio::test]
async fn anthropic_only_content_never_reaches_the_openai_wire() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    for stream in [false, true] {
        let r = post_messages(&gw, &claude_body("qwen", stream)).await;
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
        let seen = oa.requests().pop().unwrap();
        let raw = seen.body.to_string();
        for k in [
            "cache_control",
            "thinking",
            "context_management",
            "output_config",
            "a_future_field",
            "signature",
            "redacted",
            "metadata",
            "tags",
        ] {
            assert!(!raw.contains(k), "{k} leaked: {raw}");
        }
        let roles: Vec<&str> = seen.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "system", "user"]);
        assert_eq!(seen.body["messages"][4]["content"], "The user switched to plan mode.");
        assert_eq!(seen.body["user"], "user_abc");
        assert_eq!(seen.body["max_tokens"], 32000);
    }

    // A server tool cannot run on a local engine: 400 in Anthropic's shape, naming it ...
    let mut body = claude_body("qwen", false);
    body["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 2}));
    let before = oa.requests().len();
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("web_search_20250305"),
        "{e}"
    );
    assert_eq!(oa.requests().len(), before, "nothing was sent");
    // ... or dropped under drop_params.
    body["model"] = json!("qwen-lenient");
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 200);
    let seen = oa.requests().pop().unwrap();
    assert_eq!(seen.body["tools"].as_array().unwrap().len(), 1);
    assert_eq!(seen.body["tools"][0]["function"]["name"], "Read");
}

#[tokio::test]
async fn chat_clients_toward_anthropic_merge_system_messages() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = gw
        .chat(json!({"model": "claude-real", "context_management": null, "messages": [
            {"role": "system", "content": "first"}, {"role": "user", "content": "a"}, {"role": "system", "content": "second"}, {"role": "user", "content": "b"}]}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = an.requests().pop().unwrap();
    assert_eq!(seen.body["system"], "first\n\nsecond");
    let roles: Vec<&str> = seen.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user"]);
}

#[tokio::test]
async fn bad_messages_get_anthropic_errors_with_paths() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    for (body, needle) in [
        (
            json!({"model": "claude-real", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
            "messages.0.role",
        ),
        (
            json!({"model": "claude-real", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}]}),
            "messages.0.content.0",
        ),
        (
            json!({"model": "claude-real", "max_tokens": 5, "messages": [{"role": "user", "content": 3}]}),
            "messages.0.content",
        ),
        (
            json!({"model": "claude-real", "max_tokens": 5, "stream": "yes", "messages": []}),
            "stream",
        ),
    ] {
        let r = post_messages(&gw, &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["type"], "error");
        assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{e}");
    }
    assert!(an.requests().is_empty());
}

/// The sum of a Prometheus counter's samples whose labels contain `label`.
fn counter(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn passed_through_answers_are_still_metered() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "litellm_settings:\n  callbacks: [prometheus]\n")).await;
    let r = post_messages(&gw, &claude_body("claude-real", true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    // What the upstream reported: input in message_start (plus its cache reads), output at the end.
    let evs: Vec<Value> = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let input = evs[0]["message"]["usage"]["input_tokens"].as_f64().unwrap()
        + evs[0]["message"]["usage"]["cache_read_input_tokens"].as_f64().unwrap();
    let output = evs
        .iter()
        .rev()
        .find_map(|e| e["usage"]["output_tokens"].as_f64())
        .unwrap();
    // A stream is metered as it ends; bounded wait for that.
    let mut scraped = String::new();
    for _ in 0..100 {
        scraped = gw
            .client
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if counter(&scraped, "litellm_output_tokens_metric_total", "claude-real") > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        counter(&scraped, "litellm_input_tokens_metric_total", "claude-real"),
        input,
        "{scraped}"
    );
    assert_eq!(
        counter(&scraped, "litellm_output_tokens_metric_total", "claude-real"),
        output
    );
}

#[test]
fn clamp_applies_to_local_deployments_that_declare_a_cap() {
    let yaml = "model_list:
  - {model_name: a, litellm_params: {model: hosted_vllm/q, api_base: 'http://127.0.0.1:9/v1'}, model_info: {max_output_tokens: 100}}
  - {model_name: b, litellm_params: {model: hosted_vllm/q, api_base: 'http://127.0.0.1:9/v1'}}
  - {model_name: c, litellm_params: {model: openai/gpt-5, api_key: k}, model_info: {max_output_tokens: 100}}
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = switchyard::config::Config::load_with_env(&path, &std::collections::HashMap::new()).unwrap();
    let clamp = |i: usize, n| switchyard::providers::clamp_max_tokens(&cfg.deployments[i], n);
    assert_eq!(clamp(0, 64000), 100);
    assert_eq!(clamp(0, 50), 50);
    assert_eq!(clamp(1, 64000), 64000, "local without a cap: as asked");
    assert_eq!(clamp(2, 64000), 64000, "cloud: as asked");
}

#[tokio::test]
async fn a_claude_wildcard_passes_each_name_on_as_sent() {
    // The README's "all on Anthropic" recipe: whatever id Claude Code sends reaches Anthropic as is.
    let an = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: \"claude-*\"\n    litellm_params: {{model: \"anthropic/claude-*\", api_base: 'http://{}', api_key: k}}\n",
        an.addr
    );
    let gw = spawn(&yaml).await;
    for name in ["claude-opus-4-8", "claude-sonnet-4-5-20250929", "claude-haiku-4-5"] {
        let r = post_messages(&gw, &claude_body(name, true)).await;
        assert_eq!(r.status(), 200, "{name}");
        let _ = r.text().await.unwrap();
        assert_eq!(an.requests().pop().unwrap().body["model"], name);
    }
}

#[tokio::test]
async fn a_server_tool_in_a_mixed_group_goes_to_the_deployment_that_can_run_it() {
    // Claude Code's local-first group: a local engine and Anthropic. A web_search request cannot
    // go to the engine, so it goes to Anthropic instead of failing; plain requests still reach both.
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let yaml = format!(
        "model_list:
  - model_name: claude-code
    litellm_params: {{model: hosted_vllm/qwen, api_base: '{}'}}
  - model_name: claude-code
    litellm_params: {{model: anthropic/claude-opus-4-8, api_base: 'http://{}', api_key: k}}
",
        oa.base_url(),
        an.addr
    );
    let gw = spawn(&yaml).await;
    let mut body = claude_body("claude-code", false);
    body["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "web_search_20250305", "name": "web_search"}));
    for _ in 0..6 {
        let r = post_messages(&gw, &body).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    assert_eq!(an.requests().len(), 6);
    assert!(oa.requests().is_empty());
    assert_eq!(an.requests()[0].body["tools"][1]["type"], "web_search_20250305");
}

#[tokio::test]
async fn every_anthropic_beta_header_is_forwarded() {
    let (oa, an) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = spawn(&cfg(&oa, &an, "")).await;
    let r = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "mid-conversation-system-2026-04-07")
        .header("anthropic-beta", "some-future-beta-2027-01-01")
        .json(&json!({"model": "claude-real", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = an.requests().pop().unwrap();
    let betas: Vec<&str> = seen
        .headers
        .get_all("anthropic-beta")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        betas,
        ["mid-conversation-system-2026-04-07", "some-future-beta-2027-01-01"]
    );
}
