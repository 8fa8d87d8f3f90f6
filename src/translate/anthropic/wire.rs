//! The Anthropic Messages request as typed wire structs, and its canonical (OpenAI chat) form.
//!
//! The typed structs validate what the gateway reads, with Anthropic-style paths in the errors
//! (`messages.1.content.0: ...`); every field they do not model is kept (`extra`), and the body
//! itself is kept whole beside the canonical request ([`Native`]) so that an `anthropic/`
//! deployment receives it as sent (same-wire passthrough).
//!
//! Toward the OpenAI wire only what maps is translated. Anthropic-only hints (`cache_control`,
//! `thinking`, `context_management`, `output_config`, `service_tier`, unknown fields) are dropped;
//! what would change the answer if dropped (server tools, `mcp_servers`, `container`, PDF
//! documents, server-tool history) is listed in [`Native::unportable`]: the OpenAI wire refuses
//! it with a 400, or drops it with a warning under `drop_params`.

use crate::error::GatewayError;
use crate::types::{ChatRequest, Message, StreamOptions, GATEWAY_FIELDS};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The client's Messages body, kept for an `anthropic/` deployment, with what the OpenAI wire
/// cannot express.
#[derive(Debug, Clone)]
pub struct Native {
    pub body: Map<String, Value>,
    /// What the canonical form lost that matters (e.g. `tools.1 (web_search_20250305)`).
    pub unportable: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// A system message inside `messages` (beta `mid-conversation-system-2026-04-07`).
    System,
}

/// A block's `type` and its other fields, as far as the gateway reads them.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: Value,
    },
    Document {
        source: Value,
        #[serde(default)]
        title: Option<String>,
    },
    SearchResult {
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        source: Option<String>,
        #[serde(default)]
        content: Vec<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Value>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    /// Server tools' calls and results (`server_tool_use`, `web_search_tool_result`, ...),
    /// `container_upload`, and block types newer than this gateway.
    #[serde(other)]
    Other,
}

/// A tool: a custom one (`input_schema`), or one Anthropic defines (`type` with a date:
/// `web_search_20250305`, `bash_20250124`, ...).
#[derive(Debug, Deserialize)]
struct Tool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

/// Fields that would change the answer if an OpenAI-wire deployment ignored them.
const UNPORTABLE_FIELDS: &[&str] = &["mcp_servers", "container"];

/// Reads `v` as `T` without taking it: the body is kept whole for passthrough, not copied.
fn field<T: serde::de::DeserializeOwned>(path: &str, v: &Value) -> Result<T, GatewayError> {
    T::deserialize(v).map_err(|e| GatewayError::invalid_param(path, format!("{path}: {e}")))
}

fn image_part(source: &Value) -> Option<Value> {
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str)?
        ),
        Some("url") => source.get("url").and_then(Value::as_str)?.to_string(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn text_part(text: String) -> Value {
    json!({"type": "text", "text": text})
}

/// A Messages API body: validated, as the canonical request, with the body kept as sent.
pub fn parse(body: Value) -> Result<ChatRequest, GatewayError> {
    let Value::Object(b) = body else {
        return Err(GatewayError::invalid("the request body must be a JSON object"));
    };
    let mut unportable = Vec::new();
    let model = match b.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(GatewayError::invalid_param("model", "model: field required")),
    };
    let max_tokens = match b.get("max_tokens") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| GatewayError::invalid_param("max_tokens", "max_tokens: must be a positive integer"))?,
        None => return Err(GatewayError::invalid_param("max_tokens", "max_tokens: field required")),
    };
    let Some(Value::Array(in_messages)) = b.get("messages") else {
        return Err(GatewayError::invalid_param(
            "messages",
            "messages: field required (a list)",
        ));
    };
    let mut messages = Vec::new();
    match b.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => {
            let text = match system {
                Value::String(s) => s.clone(),
                Value::Array(_) => super::text_of(system),
                _ => {
                    return Err(GatewayError::invalid_param(
                        "system",
                        "system: must be a string or a list of text blocks",
                    ))
                }
            };
            if !text.is_empty() {
                messages.push(Message {
                    role: "system".into(),
                    content: Some(Value::String(text)),
                    extra: Map::new(),
                });
            }
        }
    }
    for (i, m) in in_messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(GatewayError::invalid_param(
                "messages",
                format!("messages.{i}: must be an object"),
            ));
        };
        let role: Role = field(&format!("messages.{i}.role"), m.get("role").unwrap_or(&Value::Null))?;
        let raw = match m.get("content") {
            Some(Value::String(s)) => {
                let role = match role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::System => "system",
                };
                messages.push(Message {
                    role: role.into(),
                    content: Some(Value::String(s.clone())),
                    extra: Map::new(),
                });
                continue;
            }
            Some(Value::Array(raw)) => raw,
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("messages.{i}.content: must be a string or a list of blocks"),
                ))
            }
            None => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("messages.{i}.content: field required"),
                ))
            }
        };
        let mut parts: Vec<Value> = Vec::new();
        let mut tool_calls: Vec<Value> = Vec::new();
        for (j, raw) in raw.iter().enumerate() {
            let path = format!("messages.{i}.content.{j}");
            let kind = raw.get("type").and_then(Value::as_str).unwrap_or("").to_string();
            if kind.is_empty() {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("{path}.type: field required"),
                ));
            }
            match field::<Block>(&path, raw)? {
                Block::Text { text } => parts.push(text_part(text)),
                Block::Image { source } => match image_part(&source) {
                    Some(p) => parts.push(p),
                    None => unportable.push(format!("{path} (image from a {} source)", source["type"])),
                },
                Block::Document { source, title } => match source.get("type").and_then(Value::as_str) {
                    // Plain text and content documents read the same as text.
                    Some("text") | Some("content") => {
                        let body = match source.get("type").and_then(Value::as_str) {
                            Some("text") => source.get("data").and_then(Value::as_str).unwrap_or("").to_string(),
                            _ => super::text_of(source.get("content").unwrap_or(&Value::Null)),
                        };
                        parts.push(text_part(match title {
                            Some(t) => format!("{t}\n\n{body}"),
                            None => body,
                        }))
                    }
                    _ => unportable.push(format!("{path} (a {} document)", source["type"])),
                },
                Block::SearchResult { title, source, content } => {
                    let head = [title, source].into_iter().flatten().collect::<Vec<_>>().join("\n");
                    let body = super::text_of(&Value::Array(content));
                    parts.push(text_part(format!("{head}\n\n{body}")));
                }
                Block::ToolUse { id, name, input } => tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": if input.is_null() { "{}".to_string() } else { input.to_string() },
                    },
                })),
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    let mut text = super::text_of(content.as_ref().unwrap_or(&Value::Null));
                    if is_error == Some(true) {
                        text = format!("Error: {text}");
                    }
                    let mut extra = Map::new();
                    extra.insert("tool_call_id".into(), Value::String(tool_use_id));
                    messages.push(Message {
                        role: "tool".into(),
                        content: Some(Value::String(text)),
                        extra,
                    });
                }
                // Signed thinking only means something to the model that wrote it.
                Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
                Block::Other => unportable.push(format!("{path} ({kind})")),
            }
        }
        if parts.is_empty() && tool_calls.is_empty() {
            continue;
        }
        let all_text = parts.iter().all(|p| p["type"] == "text");
        let content = if role != Role::User || all_text {
            let t: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            if t.is_empty() && !tool_calls.is_empty() {
                None
            } else {
                Some(Value::String(t.join("\n")))
            }
        } else {
            Some(Value::Array(parts))
        };
        let mut extra = Map::new();
        if !tool_calls.is_empty() {
            extra.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        let role = match role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        };
        messages.push(Message {
            role: role.into(),
            content,
            extra,
        });
    }
    let mut extra = Map::new();
    if let Some(s) = b.get("stop_sequences") {
        let s: Vec<String> = field("stop_sequences", s)?;
        extra.insert("stop".into(), json!(s));
    }
    for k in ["temperature", "top_p", "top_k"] {
        if let Some(v) = b.get(k) {
            if !v.is_number() && !v.is_null() {
                return Err(GatewayError::invalid_param(k, format!("{k}: must be a number")));
            }
            extra.insert(k.into(), v.clone());
        }
    }
    if let Some(tools) = b.get("tools") {
        let Value::Array(tools) = tools else {
            return Err(GatewayError::invalid_param("tools", "tools: must be a list"));
        };
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let path = format!("tools.{i}");
            let t: Tool = field(&path, t)?;
            match (&t.kind, t.input_schema) {
                (None, Some(schema)) => out.push(function(t.name, t.description, schema)),
                (Some(k), Some(schema)) if k == "custom" => out.push(function(t.name, t.description, schema)),
                (None, None) => {
                    return Err(GatewayError::invalid_param(
                        "tools",
                        format!("{path}.input_schema: field required"),
                    ))
                }
                (kind, _) => unportable.push(format!(
                    "{path} ({}: a tool Anthropic runs or defines)",
                    kind.as_deref().unwrap_or("custom")
                )),
            }
        }
        if !out.is_empty() {
            extra.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(tc) = b.get("tool_choice") {
        let (choice, no_parallel) = match field::<ToolChoice>("tool_choice", tc)? {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            } => (json!("auto"), disable_parallel_tool_use),
            ToolChoice::Any {
                disable_parallel_tool_use,
            } => (json!("required"), disable_parallel_tool_use),
            ToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (
                json!({"type": "function", "function": {"name": name}}),
                disable_parallel_tool_use,
            ),
            ToolChoice::None => (json!("none"), None),
        };
        // A choice without tools (all of them server tools) means nothing to the other wire.
        if extra.contains_key("tools") {
            extra.insert("tool_choice".into(), choice);
            if no_parallel == Some(true) {
                extra.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }
    if let Some(meta) = b.get("metadata") {
        if !meta.is_object() && !meta.is_null() {
            return Err(GatewayError::invalid_param("metadata", "metadata: must be an object"));
        }
        if let Some(user) = meta.get("user_id").filter(|u| u.is_string()).cloned() {
            extra.insert("user".into(), user);
        }
        // Kept for the gateway (tags); never sent on the OpenAI wire.
        extra.insert("metadata".into(), meta.clone());
    }
    let stream = match b.get("stream") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(s)) => Some(*s),
        Some(_) => return Err(GatewayError::invalid_param("stream", "stream: must be a boolean")),
    };
    for k in UNPORTABLE_FIELDS {
        if b.contains_key(*k) {
            unportable.push((*k).to_string());
        }
    }
    // The gateway's own controls (fallbacks, num_retries, mock_response, ...) pass as in OpenAI;
    // every other field is Anthropic's (or newer than us) and stays in the native body only.
    for (k, v) in &b {
        if k != "metadata" && GATEWAY_FIELDS.contains(&k.as_str()) {
            extra.insert(k.clone(), v.clone());
        }
    }
    Ok(ChatRequest {
        model,
        messages,
        stream_options: (stream == Some(true)).then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        stream,
        max_tokens: Some(max_tokens),
        max_completion_tokens: None,
        extra,
        native: Some(crate::types::Native::Anthropic(std::sync::Arc::new(Native {
            body: b,
            unportable,
        }))),
    })
}

fn function(name: String, description: Option<String>, schema: Value) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": description.unwrap_or_default(),
        "parameters": schema,
    }})
}

/// The body for an `anthropic/` deployment: the client's, with the deployment's model, the
/// gateway's own fields removed (of `metadata`, only Anthropic's `user_id` is kept: LiteLLM's
/// `tags` and the like would be refused), and `max_tokens` clamped for a local deployment.
pub fn passthrough_body(dep: &crate::config::Deployment, native: &Native) -> Result<bytes::Bytes, GatewayError> {
    let mut body = Map::with_capacity(native.body.len());
    for (k, v) in &native.body {
        match k.as_str() {
            "model" => {
                body.insert(k.clone(), Value::String(dep.model.clone()));
            }
            "metadata" => {
                if let Some(u) = v.get("user_id") {
                    body.insert(k.clone(), json!({"user_id": u}));
                }
            }
            "max_tokens" => {
                let n = v.as_u64().map(|n| crate::providers::clamp_max_tokens(dep, n));
                body.insert(k.clone(), n.map_or_else(|| v.clone(), Value::from));
            }
            _ if GATEWAY_FIELDS.contains(&k.as_str()) => {}
            _ if dep.additional_drop_params.iter().any(|p| p == k) => {}
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::to_vec(&body)
        .map(bytes::Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the upstream request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(r: &ChatRequest) -> &Native {
        match &r.native {
            Some(crate::types::Native::Anthropic(n)) => n,
            _ => panic!("no native body"),
        }
    }

    #[test]
    fn a_system_message_inside_messages_stays_in_place() {
        let r = parse(json!({"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "top", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "mid"}, {"role": "user", "content": [{"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]}]}))
        .unwrap();
        let roles: Vec<&str> = r.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "system", "user"]);
        assert_eq!(r.messages[2].content, Some(json!("mid")));
        assert_eq!(r.messages[3].content, Some(json!("b")));
        assert!(native(&r).unportable.is_empty());
    }

    #[test]
    fn anthropic_only_fields_stay_out_of_the_canonical_request() {
        let r = parse(json!({"model": "m", "max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 2000},
            "context_management": {"edits": []}, "output_config": {"effort": "high"}, "service_tier": "auto",
            "some_future_field": 1, "metadata": {"user_id": "u1", "tags": ["t"]}, "num_retries": 2,
            "messages": [{"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "xx"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": true}]}]}))
        .unwrap();
        for k in [
            "thinking",
            "context_management",
            "output_config",
            "service_tier",
            "some_future_field",
        ] {
            assert!(!r.extra.contains_key(k), "{k} leaked");
        }
        assert_eq!(r.extra["user"], "u1");
        assert_eq!(r.extra["num_retries"], 2);
        assert!(r.messages[1].extra.get("reasoning_content").is_none());
        assert_eq!(
            r.messages[1].extra["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(r.messages[2].content, Some(json!("Error: boom")));
        assert_eq!(native(&r).body["some_future_field"], 1);
    }

    #[test]
    fn server_tools_and_documents_are_listed_as_unportable() {
        let r = parse(json!({"model": "m", "max_tokens": 10, "mcp_servers": [],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc body"}, "title": "T"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
                {"type": "search_result", "source": "https://x", "title": "X", "content": [{"type": "text", "text": "found"}]}]}]}))
        .unwrap();
        let u = &native(&r).unportable;
        assert_eq!(u.len(), 3, "{u:?}");
        assert!(u[0].contains("messages.0.content.1"));
        assert!(u[1].contains("web_search_20250305"));
        assert_eq!(u[2], "mcp_servers");
        assert_eq!(r.extra["tools"].as_array().unwrap().len(), 1);
        let parts = r.messages[0].content.as_ref().unwrap();
        assert_eq!(parts, &json!("T\n\ndoc body\nX\nhttps://x\n\nfound"));
    }

    #[test]
    fn bad_input_names_the_place() {
        let e =
            parse(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "tool", "content": "x"}]})).unwrap_err();
        assert!(e.to_string().contains("messages.0.role"), "{e}");
        let e = parse(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": 1}]}]})).unwrap_err();
        assert!(e.to_string().contains("messages.0.content.0"), "{e}");
        let e =
            parse(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"text": "x"}]}]}))
                .unwrap_err();
        assert!(e.to_string().contains("messages.0.content.0.type"), "{e}");
        let e = parse(json!({"model": "m", "max_tokens": 10, "tools": [{"name": "f"}], "messages": []})).unwrap_err();
        assert!(e.to_string().contains("tools.0.input_schema"), "{e}");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    }
}
