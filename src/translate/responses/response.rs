//! A chat completion as a Responses object (`object: "response"`), field names as OpenAI's
//! `openai.types.responses.Response`.

use super::request::Native;
use crate::error::GatewayError;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// A fresh id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`, `rs`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", crate::types::time_ordered_id().simple())
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The response object's fields that echo the request, with OpenAI's defaults.
pub fn envelope(native: &Native, id: &str, created_at: u64, model: &str, status: &str) -> Map<String, Value> {
    let b = &native.body;
    let get = |k: &str, default: Value| b.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    m.insert("object".into(), "response".into());
    m.insert("created_at".into(), created_at.into());
    m.insert("status".into(), status.into());
    m.insert("background".into(), false.into());
    m.insert("error".into(), Value::Null);
    m.insert("incomplete_details".into(), Value::Null);
    m.insert("instructions".into(), get("instructions", Value::Null));
    m.insert("max_output_tokens".into(), get("max_output_tokens", Value::Null));
    m.insert("model".into(), model.into());
    m.insert("output".into(), json!([]));
    m.insert("parallel_tool_calls".into(), get("parallel_tool_calls", true.into()));
    m.insert("previous_response_id".into(), get("previous_response_id", Value::Null));
    m.insert(
        "reasoning".into(),
        get("reasoning", json!({"effort": null, "summary": null})),
    );
    m.insert("store".into(), get("store", false.into()));
    m.insert("temperature".into(), get("temperature", 1.0.into()));
    m.insert("text".into(), get("text", json!({"format": {"type": "text"}})));
    m.insert("tool_choice".into(), get("tool_choice", "auto".into()));
    m.insert("tools".into(), get("tools", json!([])));
    m.insert("top_p".into(), get("top_p", 1.0.into()));
    m.insert("truncation".into(), get("truncation", "disabled".into()));
    m.insert("usage".into(), Value::Null);
    m.insert("user".into(), get("user", Value::Null));
    m.insert("metadata".into(), get("metadata", json!({})));
    m
}

/// Chat usage (`prompt_tokens`, ...) as Responses usage (`input_tokens`, ...).
pub fn usage(u: &Value) -> Value {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/prompt_tokens"), n("/completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output),
    })
}

/// `finish_reason: length` (or a content filter) ends a response as `incomplete`.
pub fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

pub fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
}

pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

pub fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
}

fn unreadable(e: serde_json::Error) -> GatewayError {
    GatewayError::UpstreamProtocol {
        deployment: String::new(),
        detail: format!("the upstream's chat completion could not be read: {e}"),
    }
}

/// A whole chat completion as a Responses object.
pub fn from_chat(body: &[u8], native: &Native, model: &str) -> Result<Value, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(unreadable)?;
    let choice = v.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let msg = &choice["message"];
    let mut output = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .or_else(|| msg.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(reasoning_item(&new_id("rs"), r));
    }
    let text = match &msg["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    };
    let calls = msg["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !text.is_empty() || calls.is_empty() {
        output.push(message_item(&new_id("msg"), &text, "completed"));
    }
    for c in calls {
        let call_id = c["id"].as_str().unwrap_or_default();
        let f = &c["function"];
        output.push(function_call_item(
            &new_id("fc"),
            call_id,
            f["name"].as_str().unwrap_or_default(),
            f["arguments"].as_str().unwrap_or("{}"),
            "completed",
        ));
    }
    let (status, incomplete) = status_of(choice["finish_reason"].as_str());
    let created = v["created"].as_u64().filter(|c| *c > 0).unwrap_or_else(now_secs);
    let model = v["model"].as_str().unwrap_or(model);
    let mut r = envelope(native, &new_id("resp"), created, model, status);
    r.insert("incomplete_details".into(), incomplete);
    r.insert("output".into(), Value::Array(output));
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        r.insert("usage".into(), usage(u));
    }
    Ok(Value::Object(r))
}

/// `from_chat`, encoded.
pub fn body_from_chat(body: &[u8], native: &Native, model: &str) -> Result<Bytes, GatewayError> {
    let r = from_chat(body, native, model)?;
    serde_json::to_vec(&r)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(e.to_string()))
}
