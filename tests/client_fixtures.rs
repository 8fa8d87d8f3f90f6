//! The first request bodies the pinned Claude Code and Codex CLIs send (recorded by
//! tests/python/test_real_clients.py into tests/fixtures/clients/, scrubbed of machine-specific
//! values), sent through the gateway to each wire: accepted, and what reaches the upstream is
//! checked against issue 14 (same-wire passthrough; across wires, translate what maps and leak
//! nothing that belongs to the other dialect).

mod common;

use common::*;
use serde_json::{json, Value};

const CLAUDE_CODE: &str = include_str!("fixtures/clients/claude-code-2.1.332-messages.json");
const CODEX: &str = include_str!("fixtures/clients/codex-0.171.0-responses.json");

/// The recorded body of a fixture file (`{"path": ..., "body": ...}`).
fn body(fixture: &str) -> Value {
    let v: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    v["body"].clone()
}

/// One gateway: `target` on the given wire (`params`, `model_info`), every `claude-*` name aliased
/// to it (as config/claude-code.yaml does).
async fn gateway(params: &str, settings: &str) -> Gateway {
    gateway_with(params, "{max_output_tokens: 8192}", settings).await
}

async fn gateway_with(params: &str, model_info: &str, settings: &str) -> Gateway {
    spawn(&format!(
        "model_list:
  - model_name: target
    litellm_params: {params}
    model_info: {model_info}
router_settings:
  model_group_alias: {{\"claude-*\": target}}
{settings}",
    ))
    .await
}

fn chat_wire(up: &MockUpstream) -> String {
    format!("{{model: hosted_vllm/qwen, api_base: '{}'}}", up.base_url())
}

fn anthropic_wire(up: &MockUpstream) -> String {
    format!(
        "{{model: anthropic/claude-sonnet-4-5-20250929, api_base: 'http://{}', api_key: sk-ant-upstream}}",
        up.addr
    )
}

fn openai_wire(up: &MockUpstream) -> String {
    format!(
        "{{model: openai/gpt-5.1-codex, api_base: '{}', api_key: sk-upstream}}",
        up.base_url()
    )
}

/// Sends `body` as the client does; returns the status and the whole (streamed) answer.
async fn send(gw: &Gateway, path: &str, body: &Value) -> (u16, String) {
    let mut req = gw.client.post(gw.url(path)).json(body);
    if path.starts_with("/v1/messages") {
        req = req.header("anthropic-version", "2023-06-01").header(
            "anthropic-beta",
            "claude-code-20250219,mid-conversation-system-2026-04-07",
        );
    }
    let r = req.send().await.expect("gateway reachable");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// The one body the upstream received on `path`.
fn upstream_body(up: &MockUpstream, path: &str) -> Value {
    let seen: Vec<_> = up.requests().into_iter().filter(|r| r.path == path).collect();
    assert_eq!(seen.len(), 1, "the upstream saw {} requests on {path}", seen.len());
    seen[0].body.clone()
}

/// Every object key anywhere in `v`.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

fn has_key(v: &Value, key: &str) -> bool {
    let mut all = Vec::new();
    keys(v, &mut all);
    all.iter().any(|k| k == key)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// --- Claude Code (Anthropic Messages in) -------------------------------------------------------

#[tokio::test]
async fn claude_code_body_reaches_an_anthropic_deployment_unchanged_but_for_the_model() {
    let up = MockUpstream::start().await.unwrap();
    // No max_output_tokens here: a limit would clamp max_tokens (a deployment on loopback counts as local).
    let gw = gateway_with(&anthropic_wire(&up), "{}", "").await;
    let sent = body(CLAUDE_CODE);
    let (status, answer) = send(&gw, "/v1/messages?beta=true", &sent).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("message_stop"), "{answer}");
    let got = upstream_body(&up, "/v1/messages");
    let mut expected = sent.clone();
    expected["model"] = json!("claude-sonnet-4-5-20250929");
    // Same wire: the mid-conversation system turn, cache_control, thinking, context_management,
    // output_config and metadata all arrive as Claude Code wrote them.
    assert_eq!(got, expected);
}

#[tokio::test]
async fn claude_code_body_translates_to_the_chat_wire_without_anthropic_fields() {
    let up = MockUpstream::start().await.unwrap();
    let gw = gateway(&chat_wire(&up), "").await;
    let (status, answer) = send(&gw, "/v1/messages?beta=true", &body(CLAUDE_CODE)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("message_stop"), "{answer}");
    let got = upstream_body(&up, "/v1/chat/completions");
    assert_eq!(got["model"], "qwen");
    let messages = got["messages"].as_array().expect("messages");
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    // The top-level system blocks first (one message or several), then the user turn, then Claude
    // Code's mid-conversation system turn (its environment block) as a system message in its place.
    let n = roles.len();
    assert!(
        n >= 3 && roles[0] == "system" && roles[n - 2..] == ["user", "system"],
        "{roles:?}"
    );
    assert!(text_of(&messages[0]["content"]).contains("Claude Agent SDK"));
    assert!(text_of(&messages[n - 2]["content"]).contains("Hello there"));
    assert!(text_of(&messages[n - 1]["content"]).contains("# Environment"));
    for field in [
        "context_management",
        "output_config",
        "thinking",
        "cache_control",
        "input_schema",
    ] {
        assert!(!has_key(&got, field), "{field} leaked to the chat wire: {got}");
    }
    let tools: Vec<&str> = got["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(tools.contains(&"Read") && tools.contains(&"Bash"), "{tools:?}");
    // Claude Code asks for 128k output tokens; a local deployment serves at most its own limit.
    let max = got["max_tokens"]
        .as_u64()
        .or_else(|| got["max_completion_tokens"].as_u64())
        .expect("a max_tokens");
    assert!(max <= 8192, "max_tokens {max} not clamped to the deployment's 8192");
}

// --- Codex CLI (OpenAI Responses in) -------------------------------------------------------------

#[tokio::test]
async fn codex_body_translates_to_the_chat_wire_under_drop_params() {
    let up = MockUpstream::start().await.unwrap();
    let gw = gateway(&chat_wire(&up), "litellm_settings: {drop_params: true}").await;
    let (status, answer) = send(&gw, "/v1/responses", &body(CODEX)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("response.completed"), "{answer}");
    let got = upstream_body(&up, "/v1/chat/completions");
    assert_eq!(got["model"], "qwen");
    let messages = got["messages"].as_array().expect("messages");
    // Codex's developer messages (its instructions) come first, as system messages.
    assert!(
        matches!(messages[0]["role"].as_str(), Some("system" | "developer")),
        "{got}"
    );
    assert!(text_of(&messages[0]["content"]).contains("Codex CLI"));
    let last = messages.last().expect("a message");
    assert_eq!(last["role"], "user");
    assert!(text_of(&last["content"]).contains("Hello there"));
    for field in [
        "client_metadata",
        "include",
        "store",
        "prompt_cache_key",
        "input",
        "reasoning",
    ] {
        assert!(got.get(field).is_none(), "{field} leaked to the chat wire: {got}");
    }
    let tools = got["tools"].as_array().expect("tools");
    assert!(tools.iter().all(|t| t["type"] == "function"), "{tools:?}");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert!(names.contains(&"exec_command"), "{names:?}");
    // Hosted tools the engine cannot run (web_search, the multi_agent namespace) were dropped.
    assert!(
        !names.contains(&"multi_agent_v1") && !got.to_string().contains("web_search"),
        "{names:?}"
    );
}

#[tokio::test]
async fn codex_body_without_drop_params_names_the_tool_the_chat_wire_cannot_carry() {
    let up = MockUpstream::start().await.unwrap();
    let gw = gateway(&chat_wire(&up), "").await;
    let (status, answer) = send(&gw, "/v1/responses", &body(CODEX)).await;
    assert_eq!(status, 400, "{answer}");
    let err: Value = serde_json::from_str(&answer).expect("an OpenAI error body");
    let message = err["error"]["message"].as_str().expect("error.message");
    assert!(
        message.contains("web_search") || message.contains("namespace"),
        "{message}"
    );
    assert_eq!(up.hits(), 0, "nothing reaches the upstream");
}

#[tokio::test]
async fn codex_body_translates_to_the_anthropic_wire_under_drop_params() {
    let up = MockUpstream::start().await.unwrap();
    let gw = gateway(&anthropic_wire(&up), "litellm_settings: {drop_params: true}").await;
    let (status, answer) = send(&gw, "/v1/responses", &body(CODEX)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("response.completed"), "{answer}");
    let got = upstream_body(&up, "/v1/messages");
    assert_eq!(got["model"], "claude-sonnet-4-5-20250929");
    assert!(
        text_of(&got["system"]).contains("Codex CLI"),
        "developer text becomes system: {got}"
    );
    let messages = got["messages"].as_array().expect("messages");
    assert!(messages.iter().all(|m| m["role"] == "user" || m["role"] == "assistant"));
    assert!(text_of(&messages[messages.len() - 1]["content"]).contains("Hello there"));
    assert!(
        got["max_tokens"].as_u64().is_some_and(|m| m > 0),
        "Anthropic requires max_tokens"
    );
    for field in [
        "client_metadata",
        "include",
        "store",
        "prompt_cache_key",
        "input",
        "parallel_tool_calls",
    ] {
        assert!(got.get(field).is_none(), "{field} leaked to the Anthropic wire: {got}");
    }
    let tools = got["tools"].as_array().expect("tools");
    let exec = tools
        .iter()
        .find(|t| t["name"] == "exec_command")
        .expect("exec_command offered");
    assert!(exec["input_schema"]["properties"]["cmd"].is_object(), "{exec}");
    assert!(!got.to_string().contains("web_search"), "{got}");
}

#[tokio::test]
async fn codex_body_reaches_an_openai_deployment_unchanged_but_for_the_model() {
    let up = MockUpstream::start().await.unwrap();
    // A loopback openai/ deployment counts as a local chat engine unless it says it serves Responses.
    let gw = gateway_with(&openai_wire(&up), "{supports_responses_api: true}", "").await;
    let sent = body(CODEX);
    let (status, answer) = send(&gw, "/v1/responses", &sent).await;
    assert_eq!(status, 200, "{answer}");
    let got = upstream_body(&up, "/v1/responses");
    let mut expected = sent.clone();
    expected["model"] = json!("gpt-5.1-codex");
    assert_eq!(got, expected);
}
