//! Anthropic Messages <-> canonical (OpenAI chat) translation.
//!
//! Mapping: `system` <-> a leading system message; text blocks <-> text content; images (base64 and
//! URL) <-> `image_url` parts (data URLs for base64); `tool_use` blocks <-> assistant `tool_calls`;
//! `tool_result` blocks <-> `tool` messages; `tools`/`tool_choice` (`any` <-> `required`);
//! `stop_sequences` <-> `stop`; stop reasons `end_turn`<->`stop`, `max_tokens`<->`length`,
//! `tool_use`<->`tool_calls`; usage including cache reads; thinking in answers <-> `reasoning_content`.
//! The request side of an Anthropic client is in [`wire`] (typed, kept whole for passthrough).
//! Toward Anthropic from a chat client, every system message (wherever it stands) joins the
//! top-level `system`: Anthropic takes mid-conversation system messages only under a beta that a
//! chat client cannot have asked for.

pub mod wire;

use super::EventTranslator;
use crate::config::Deployment;
use crate::error::GatewayError;
use crate::types::ChatRequest;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Anthropic requires `max_tokens`; this is used when a canonical request leaves it out.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A string, or the text blocks of a block list joined by newlines.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub fn stop_to_anthropic(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

pub fn stop_to_openai(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// A Messages API body as the canonical request (the body itself kept beside it).
pub fn request_to_canonical(body: Value) -> Result<ChatRequest, GatewayError> {
    wire::parse(body)
}

// ---- OpenAI response -> Anthropic ---------------------------------------------------------------

fn usage_to_anthropic(u: &Value) -> Value {
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let prompt = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "output_tokens": u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

fn msg_id(openai_id: Option<&str>) -> String {
    format!(
        "msg_{}",
        openai_id.unwrap_or("switchyard").trim_start_matches("chatcmpl-")
    )
}

/// An upstream body that is not JSON is the upstream's fault (502, retried elsewhere, counted
/// against the deployment), not ours. The caller names the deployment, which is not known here.
fn unreadable(e: serde_json::Error) -> GatewayError {
    GatewayError::UpstreamProtocol {
        deployment: String::new(),
        detail: format!("unreadable JSON: {e}"),
    }
}

/// A chat completion as a Messages response for `model` (the name the client asked for).
pub fn response_from_openai(body: &[u8], model: &str) -> Result<Bytes, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(unreadable)?;
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    let text = text_of(msg.get("content").unwrap_or(&Value::Null));
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for tc in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let args = tc
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": tc.get("id").cloned().unwrap_or(Value::Null),
            "name": tc.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": serde_json::from_str::<Value>(args).unwrap_or(json!({})),
        }));
    }
    let out = json!({
        "id": msg_id(v["id"].as_str()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_to_anthropic(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": usage_to_anthropic(&v["usage"]),
    });
    Ok(Bytes::from(out.to_string()))
}

#[derive(PartialEq)]
enum Block {
    None,
    Text,
    Thinking,
    Tool,
}

/// OpenAI chunks -> Anthropic events, relayed as they arrive.
pub struct OpenAiToAnthropic {
    model: String,
    started: bool,
    block: Block,
    index: i64,
    stop_reason: &'static str,
    usage: Value,
}

impl OpenAiToAnthropic {
    pub fn new(model: &str) -> Self {
        OpenAiToAnthropic {
            model: model.into(),
            started: false,
            block: Block::None,
            index: -1,
            stop_reason: "end_turn",
            usage: json!({}),
        }
    }

    fn emit(out: &mut String, kind: &str, data: Value) {
        out.push_str("event: ");
        out.push_str(kind);
        out.push_str("\ndata: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    }

    fn open(&mut self, out: &mut String, kind: Block, start: Value) {
        self.close(out);
        self.index += 1;
        self.block = kind;
        Self::emit(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": start}),
        );
    }

    fn close(&mut self, out: &mut String) {
        if self.block != Block::None {
            Self::emit(
                out,
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            );
            self.block = Block::None;
        }
    }
}

impl EventTranslator for OpenAiToAnthropic {
    fn on_event(&mut self, _event: Option<&str>, data: &str, out: &mut String) {
        if data.trim() == "[DONE]" {
            if !self.started {
                return;
            }
            self.close(out);
            let usage = usage_to_anthropic(&self.usage);
            Self::emit(
                out,
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": null}, "usage": {"output_tokens": usage["output_tokens"], "input_tokens": usage["input_tokens"], "cache_read_input_tokens": usage["cache_read_input_tokens"]}}),
            );
            Self::emit(out, "message_stop", json!({"type": "message_stop"}));
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(err) = v.get("error") {
            let e = json!({"type": "error", "error": {"type": "api_error", "message": err.get("message").cloned().unwrap_or(err.clone())}});
            Self::emit(out, "error", e);
            return;
        }
        if !self.started {
            self.started = true;
            Self::emit(
                out,
                "message_start",
                json!({"type": "message_start", "message": {
                "id": msg_id(v["id"].as_str()), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            );
            Self::emit(out, "ping", json!({"type": "ping"}));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = u.clone();
        }
        let Some(choice) = v["choices"].get(0) else { return };
        let delta = &choice["delta"];
        if let Some(r) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            if self.block != Block::Thinking {
                self.open(out, Block::Thinking, json!({"type": "thinking", "thinking": ""}));
            }
            Self::emit(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "thinking_delta", "thinking": r}}),
            );
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            if self.block != Block::Text {
                self.open(out, Block::Text, json!({"type": "text", "text": ""}));
            }
            Self::emit(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": t}}),
            );
        }
        for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if let Some(id) = tc.get("id").and_then(Value::as_str) {
                let name = tc.pointer("/function/name").cloned().unwrap_or(Value::Null);
                self.open(
                    out,
                    Block::Tool,
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                );
            }
            if let Some(args) = tc
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                Self::emit(
                    out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "input_json_delta", "partial_json": args}}),
                );
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = stop_to_anthropic(f);
        }
    }
}

// ---- canonical -> Anthropic request (outbound) --------------------------------------------------

fn block_from_part(p: &Value) -> Option<Value> {
    match p.get("type").and_then(Value::as_str) {
        Some("text") => {
            Some(json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::String(String::new()))}))
        }
        Some("image_url") => {
            let url = p.pointer("/image_url/url").and_then(Value::as_str)?;
            if let Some(rest) = url.strip_prefix("data:") {
                let (media, data) = rest.split_once(";base64,")?;
                Some(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}))
            } else {
                Some(json!({"type": "image", "source": {"type": "url", "url": url}}))
            }
        }
        _ => None,
    }
}

fn content_blocks(content: &Option<Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(parts)) => parts.iter().filter_map(block_from_part).collect(),
        _ => vec![],
    }
}

/// Pushes `blocks` as a message of `role`, merging with the previous one of the same role
/// (Anthropic wants user and assistant turns to alternate).
fn push_turn(out: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last["role"] == role {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.append(&mut blocks);
                return;
            }
        }
    }
    out.push(json!({"role": role, "content": blocks}));
}

/// The Messages API body for `dep` from a canonical request.
pub fn request_from_canonical(dep: &Deployment, req: &ChatRequest) -> Result<Bytes, GatewayError> {
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m.role.as_str() {
            "system" | "developer" => system.push(text_of(m.content.as_ref().unwrap_or(&Value::Null))),
            "user" => push_turn(&mut messages, "user", content_blocks(&m.content)),
            "assistant" => {
                let mut blocks = Vec::new();
                if let Some(r) = m.extra.get("reasoning_content").and_then(Value::as_str) {
                    let _ = r; // Anthropic needs the signature to accept earlier thinking; it is not kept.
                }
                blocks.extend(content_blocks(&m.content));
                for tc in m
                    .extra
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = tc
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": tc.get("id").cloned().unwrap_or(Value::Null),
                        "name": tc.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": serde_json::from_str::<Value>(args).unwrap_or(json!({})),
                    }));
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => push_turn(
                &mut messages,
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.extra.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": text_of(m.content.as_ref().unwrap_or(&Value::Null)),
                })],
            ),
            other => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("message role {other:?} cannot be sent to Anthropic"),
                ))
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(dep.model.clone()));
    body.insert("messages".into(), Value::Array(messages));
    let max_tokens = req
        .max_tokens
        .or(req.max_completion_tokens)
        .or_else(|| dep.defaults.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let max_tokens = crate::providers::clamp_max_tokens(dep, max_tokens);
    body.insert("max_tokens".into(), max_tokens.into());
    if !system.is_empty() {
        body.insert("system".into(), Value::String(system.join("\n\n")));
    }
    if req.stream == Some(true) {
        body.insert("stream".into(), Value::Bool(true));
    }
    let get = |k: &str| req.extra.get(k).or_else(|| dep.defaults.get(k));
    for k in ["temperature", "top_p", "top_k", "thinking"] {
        if let Some(v) = get(k) {
            body.insert(k.into(), v.clone());
        }
    }
    match get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(Value::Array(tools)) = get("tools") {
        let t: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                json!({"name": f.get("name"), "description": f.get("description").cloned().unwrap_or(Value::String(String::new())), "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))})
            })
            .collect();
        body.insert("tools".into(), Value::Array(t));
    }
    if let Some(tc) = get("tool_choice") {
        let mut choice = match tc {
            Value::String(s) if s == "required" => json!({"type": "any"}),
            Value::String(s) if s == "none" => json!({"type": "none"}),
            Value::Object(o) => {
                json!({"type": "tool", "name": o.get("function").and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null)})
            }
            _ => json!({"type": "auto"}),
        };
        if get("parallel_tool_calls") == Some(&Value::Bool(false)) {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        body.insert("tool_choice".into(), choice);
    }
    if let Some(Value::String(u)) = get("user") {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    serde_json::to_vec(&Value::Object(body))
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

// ---- Anthropic response -> OpenAI (outbound) ----------------------------------------------------

fn usage_to_openai(u: &Value) -> Value {
    let input = u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0);
    let cache_read = u.get("cache_read_input_tokens").and_then(Value::as_u64).unwrap_or(0);
    let cache_write = u
        .get("cache_creation_input_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let output = u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
    let prompt = input + cache_read + cache_write;
    json!({"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
           "prompt_tokens_details": {"cached_tokens": cache_read}})
}

/// A Messages response as a chat completion.
pub fn response_to_openai(body: &[u8]) -> Result<Bytes, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(unreadable)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for b in v["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => reasoning.push_str(b["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b["input"].to_string()}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let out = json!({
        "id": v["id"], "object": "chat.completion", "created": now_secs(), "model": v["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": stop_to_openai(v["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": usage_to_openai(&v["usage"]),
    });
    Ok(Bytes::from(out.to_string()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Anthropic events -> OpenAI chunks, relayed as they arrive.
pub struct AnthropicToOpenAi {
    id: String,
    model: String,
    created: u64,
    tool_index: i64,
    include_usage: bool,
    input_usage: Value,
}

impl AnthropicToOpenAi {
    pub fn new(include_usage: bool) -> Self {
        AnthropicToOpenAi {
            id: String::new(),
            model: String::new(),
            created: now_secs(),
            tool_index: -1,
            include_usage,
            input_usage: json!({}),
        }
    }

    fn chunk(&self, out: &mut String, delta: Value, finish: Value, usage: Option<Value>) {
        let mut c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        out.push_str("data: ");
        out.push_str(&c.to_string());
        out.push_str("\n\n");
    }
}

impl EventTranslator for AnthropicToOpenAi {
    fn on_event(&mut self, event: Option<&str>, data: &str, out: &mut String) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let kind = event.or_else(|| v["type"].as_str()).unwrap_or("");
        match kind {
            "message_start" => {
                self.id = v
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.model = v
                    .pointer("/message/model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.input_usage = v.pointer("/message/usage").cloned().unwrap_or(json!({}));
                self.chunk(out, json!({"role": "assistant", "content": ""}), Value::Null, None);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                if b["type"] == "tool_use" {
                    self.tool_index += 1;
                    self.chunk(out, json!({"tool_calls": [{"index": self.tool_index, "id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": ""}}]}), Value::Null, None);
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => self.chunk(out, json!({"content": d["text"]}), Value::Null, None),
                    Some("thinking_delta") => self.chunk(out, json!({"reasoning_content": d["thinking"]}), Value::Null, None),
                    Some("input_json_delta") => self.chunk(out, json!({"tool_calls": [{"index": self.tool_index, "function": {"arguments": d["partial_json"]}}]}), Value::Null, None),
                    _ => {}
                }
            }
            "message_delta" => {
                let finish = stop_to_openai(
                    v.pointer("/delta/stop_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("end_turn"),
                );
                self.chunk(out, json!({}), Value::String(finish.into()), None);
                if self.include_usage {
                    let mut u = self.input_usage.clone();
                    if let (Some(o), Some(m)) = (u.as_object_mut(), v.get("usage").and_then(Value::as_object)) {
                        for (k, x) in m {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                    let mut c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": []});
                    c["usage"] = usage_to_openai(&u);
                    out.push_str(&format!("data: {c}\n\n"));
                }
            }
            "message_stop" => out.push_str("data: [DONE]\n\n"),
            "error" => {
                let e = json!({"error": {"message": v.pointer("/error/message").cloned().unwrap_or(Value::Null), "type": v.pointer("/error/type").cloned().unwrap_or(Value::Null), "code": "502"}});
                out.push_str(&format!("data: {e}\n\n"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::SseSplitter;

    fn run(t: &mut impl EventTranslator, sse: &str, chunk: usize) -> String {
        // Fed in small pieces, as a network would split it.
        let mut split = SseSplitter::default();
        let mut out = String::new();
        for piece in sse.as_bytes().chunks(chunk) {
            for (e, d) in split.push(piece) {
                t.on_event(e.as_deref(), &d, &mut out);
            }
        }
        out
    }

    fn parse(out: &str) -> Vec<Value> {
        out.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn recorded_openai_tool_stream_becomes_anthropic_events() {
        let fixture = include_str!("../../../tests/fixtures/anthropic/openai_tool_stream.sse");
        let out = run(&mut OpenAiToAnthropic::new("claude-sonnet-4-5"), fixture, 37);
        let evs = parse(&out);
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(evs[0]["message"]["model"], "claude-sonnet-4-5");
        assert_eq!(evs[3]["delta"], json!({"type": "text_delta", "text": "Let me check."}));
        assert_eq!(
            evs[5]["content_block"],
            json!({"type": "tool_use", "id": "chatcmpl-tool-abc", "name": "get_weather", "input": {}})
        );
        assert_eq!(evs[5]["index"], 1);
        let args: String = evs.iter().filter_map(|e| e["delta"]["partial_json"].as_str()).collect();
        assert_eq!(args, "{\"city\": \"Paris\"}");
        assert_eq!(evs[9]["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            evs[9]["usage"],
            json!({"output_tokens": 18, "input_tokens": 20, "cache_read_input_tokens": 100})
        );
    }

    #[test]
    fn recorded_anthropic_tool_stream_becomes_openai_chunks() {
        let fixture = include_str!("../../../tests/fixtures/anthropic/anthropic_tool_stream.sse");
        let out = run(&mut AnthropicToOpenAi::new(true), fixture, 53);
        assert!(out.ends_with("data: [DONE]\n\n"));
        let chunks = parse(&out);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(chunks.iter().all(|c| c["id"] == "msg_01XYZ"));
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Okay, let me check.");
        let start = chunks
            .iter()
            .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
            .unwrap();
        assert_eq!(
            start["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        let args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, "{\"city\": \"Paris\"}");
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
        let usage = chunks.iter().find(|c| c["usage"].is_object()).unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 572);
        assert_eq!(usage["usage"]["completion_tokens"], 89);
        assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    }

    #[test]
    fn requests_round_trip_through_the_canonical_form() {
        let req = request_to_canonical(json!({
            "model": "claude-x", "max_tokens": 100, "system": "sys", "stop_sequences": ["S"],
            "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "t", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "calling"}, {"type": "tool_use", "id": "tu1", "name": "t", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "done"}], "is_error": true}]}
            ]
        }))
        .unwrap();
        assert_eq!(
            req.extra["tool_choice"],
            json!({"type": "function", "function": {"name": "t"}})
        );
        assert_eq!(req.extra["parallel_tool_calls"], false);
        let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: anthropic/claude-3-5-haiku-latest, api_key: k}\n";
        let dir = std::env::temp_dir().join(format!("sy-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let cfg = crate::config::Config::load_with_env(&path, &std::collections::HashMap::new()).unwrap();
        let back: Value = serde_json::from_slice(&request_from_canonical(&cfg.deployments[0], &req).unwrap()).unwrap();
        assert_eq!(back["system"], "sys");
        assert_eq!(back["max_tokens"], 100);
        assert_eq!(back["stop_sequences"], json!(["S"]));
        assert_eq!(
            back["tool_choice"],
            json!({"type": "tool", "name": "t", "disable_parallel_tool_use": true})
        );
        assert_eq!(back["tools"][0]["input_schema"], json!({"type": "object"}));
        let m = back["messages"].as_array().unwrap();
        assert_eq!(
            m[0]["content"][1],
            json!({"type": "image", "source": {"type": "url", "url": "https://x/y.png"}})
        );
        assert_eq!(
            m[1]["content"][1],
            json!({"type": "tool_use", "id": "tu1", "name": "t", "input": {"a": 1}})
        );
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "tu1", "content": "Error: done"})
        );
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn stop_reasons_map_both_ways() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
        ] {
            assert_eq!(stop_to_openai(a), o);
            assert_eq!(stop_to_anthropic(o), a);
        }
    }
}
