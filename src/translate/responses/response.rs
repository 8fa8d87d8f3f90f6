//! A chat completion as a Responses object (`object: "response"`), field names as OpenAI's
//! `openai.types.responses.Response`.
//!
//! The object is written straight into a string (`Object::write`): the answer's parts borrowed
//! from the chat completion, the fields echoing the request encoded once (`Echo`). No `Value`
//! tree is built for it on the request path.

use super::json::{push_str, push_u64, push_value, Text};
use super::request::Native;
use crate::error::GatewayError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A fresh id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`, `rs`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", crate::types::time_ordered_id().simple())
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The response object's fields that echo the request, with OpenAI's defaults, encoded once
/// (`"instructions":...,"metadata":{}`, no braces): a stream writes them three times.
pub struct Echo(String);

impl Echo {
    pub fn new(native: &Native) -> Echo {
        const FIELDS: [(&str, &str); 14] = [
            ("instructions", "null"),
            ("max_output_tokens", "null"),
            ("parallel_tool_calls", "true"),
            ("previous_response_id", "null"),
            ("reasoning", r#"{"effort":null,"summary":null}"#),
            ("store", "false"),
            ("temperature", "1.0"),
            ("text", r#"{"format":{"type":"text"}}"#),
            ("tool_choice", r#""auto""#),
            ("tools", "[]"),
            ("top_p", "1.0"),
            ("truncation", r#""disabled""#),
            ("user", "null"),
            ("metadata", "{}"),
        ];
        // The body's few keys matched against the fields, not a map lookup for each field.
        let mut given: [Option<&Value>; FIELDS.len()] = [None; FIELDS.len()];
        for (k, v) in native.body.iter().filter(|(_, v)| !v.is_null()) {
            if let Some(i) = FIELDS.iter().position(|(f, _)| *f == k.as_str()) {
                given[i] = Some(v);
            }
        }
        let mut s = String::with_capacity(320);
        for (i, ((k, default), v)) in FIELDS.iter().zip(given).enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('"');
            s.push_str(k);
            s.push_str("\":");
            match v {
                Some(v) => push_value(&mut s, v),
                None => s.push_str(default),
            }
        }
        Echo(s)
    }
}

/// Responses usage (`input_tokens`, ...) from chat usage (`prompt_tokens`, ...).
#[derive(Clone, Copy, Default)]
pub struct Usage {
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
    total: u64,
}

impl Usage {
    /// From a chat `usage` object; a missing or non-integer count is 0.
    pub fn from_chat(u: &Value) -> Usage {
        // `get` chains, not `Value::pointer`, which allocates for each step of its path.
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let nested = |outer: &str, k: &str| n(u.get(outer).and_then(|d| d.get(k)));
        let (input, output) = (n(u.get("prompt_tokens")), n(u.get("completion_tokens")));
        Usage {
            input,
            cached: nested("prompt_tokens_details", "cached_tokens"),
            output,
            reasoning: nested("completion_tokens_details", "reasoning_tokens"),
            total: u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output),
        }
    }

    /// From the raw chat `usage`, when it is an object.
    pub fn from_raw(raw: &RawValue) -> Option<Usage> {
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(v) if v.is_object() => Some(Usage::from_chat(&v)),
            _ => None,
        }
    }

    fn write(&self, out: &mut String) {
        out.push_str("{\"input_tokens\":");
        push_u64(out, self.input);
        out.push_str(",\"input_tokens_details\":{\"cached_tokens\":");
        push_u64(out, self.cached);
        out.push_str("},\"output_tokens\":");
        push_u64(out, self.output);
        out.push_str(",\"output_tokens_details\":{\"reasoning_tokens\":");
        push_u64(out, self.reasoning);
        out.push_str("},\"total_tokens\":");
        push_u64(out, self.total);
        out.push('}');
    }
}

/// `finish_reason: length` (or a content filter) ends a response as `incomplete`, with this
/// `incomplete_details.reason`.
pub fn status_of(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// One response object: `output` is its items, already encoded and comma-separated.
pub struct Object<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub model: &'a str,
    pub status: &'a str,
    pub incomplete: Option<&'a str>,
    /// A failed response's message (`error: {code: "server_error", message}`).
    pub error: Option<&'a str>,
    pub output: &'a str,
    pub usage: Option<Usage>,
    pub echo: &'a Echo,
}

impl Object<'_> {
    pub fn write(&self, out: &mut String) {
        out.push_str("{\"id\":");
        push_str(out, self.id);
        out.push_str(",\"object\":\"response\",\"created_at\":");
        push_u64(out, self.created_at);
        out.push_str(",\"status\":\"");
        out.push_str(self.status);
        out.push_str("\",\"background\":false,\"error\":");
        match self.error {
            Some(m) => {
                out.push_str("{\"code\":\"server_error\",\"message\":");
                push_str(out, m);
                out.push('}');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"incomplete_details\":");
        match self.incomplete {
            Some(r) => {
                out.push_str("{\"reason\":\"");
                out.push_str(r);
                out.push_str("\"}");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"model\":");
        push_str(out, self.model);
        out.push_str(",\"output\":[");
        out.push_str(self.output);
        out.push_str("],\"usage\":");
        match &self.usage {
            Some(u) => u.write(out),
            None => out.push_str("null"),
        }
        out.push(',');
        out.push_str(&self.echo.0);
        out.push('}');
    }
}

/// Appends `,` unless `out` is empty: items into an `output` list.
pub fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push(',');
    }
}

pub fn write_reasoning_item(out: &mut String, id: &str, text: &str) {
    out.push_str("{\"id\":");
    push_str(out, id);
    out.push_str(",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":");
    push_str(out, text);
    out.push_str("}]}");
}

pub fn write_message_item(out: &mut String, id: &str, text: &str, status: &str) {
    out.push_str("{\"id\":");
    push_str(out, id);
    out.push_str(",\"type\":\"message\",\"status\":\"");
    out.push_str(status);
    out.push_str("\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":");
    push_str(out, text);
    out.push_str(",\"annotations\":[],\"logprobs\":[]}]}");
}

pub fn write_function_call_item(out: &mut String, id: &str, call_id: &str, name: &str, arguments: &str, status: &str) {
    out.push_str("{\"id\":");
    push_str(out, id);
    out.push_str(",\"type\":\"function_call\",\"status\":\"");
    out.push_str(status);
    out.push_str("\",\"call_id\":");
    push_str(out, call_id);
    out.push_str(",\"name\":");
    push_str(out, name);
    out.push_str(",\"arguments\":");
    push_str(out, arguments);
    out.push('}');
}

fn unreadable(e: serde_json::Error) -> GatewayError {
    GatewayError::UpstreamProtocol {
        deployment: String::new(),
        detail: format!("the upstream's chat completion could not be read: {e}"),
    }
}

/// What of a chat completion the Responses object carries, borrowed where the JSON allows.
#[derive(Default)]
struct Answer<'a> {
    reasoning: Option<Cow<'a, str>>,
    text: Cow<'a, str>,
    /// (call_id, name, arguments)
    calls: Vec<(Cow<'a, str>, Cow<'a, str>, Cow<'a, str>)>,
    finish: Option<Cow<'a, str>>,
    created: Option<u64>,
    model: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

/// The chat completion's fields, typed and borrowed; a body of another shape falls back to
/// `Answer::from_value`, which reads it leniently.
#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<CompletionChoice<'a>>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CompletionChoice<'a> {
    #[serde(default, borrow)]
    message: Option<CompletionMessage<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct CompletionMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
}

impl<'a> Answer<'a> {
    fn from_typed(c: Completion<'a>) -> Answer<'a> {
        let mut a = Answer {
            created: c.created,
            model: c.model.map(Text::cow),
            usage: c.usage.and_then(Usage::from_raw),
            ..Answer::default()
        };
        let Some(choice) = c.choices.and_then(|cs| cs.into_iter().next()) else {
            return a;
        };
        a.finish = choice.finish_reason.map(Text::cow);
        let Some(m) = choice.message else { return a };
        a.reasoning = m.reasoning_content.or(m.reasoning).map(Text::cow);
        a.text = m.content.map(Text::cow).unwrap_or_default();
        for c in m.tool_calls.unwrap_or_default() {
            let (name, arguments) = match c.function {
                Some(f) => (
                    f.name.map(Text::cow).unwrap_or_default(),
                    f.arguments.map_or(Cow::Borrowed("{}"), Text::cow),
                ),
                None => (Cow::Borrowed(""), Cow::Borrowed("{}")),
            };
            a.calls.push((c.id.map(Text::cow).unwrap_or_default(), name, arguments));
        }
        a
    }

    fn from_value(v: &'a Value) -> Answer<'a> {
        let s = |v: &'a Value| v.as_str().map(Cow::Borrowed);
        let choice = v.pointer("/choices/0").unwrap_or(&Value::Null);
        let msg = &choice["message"];
        let text = match &msg["content"] {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            Value::Array(parts) => Cow::Owned(parts.iter().filter_map(|p| p["text"].as_str()).collect()),
            _ => Cow::Borrowed(""),
        };
        let calls = msg["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default();
        Answer {
            reasoning: s(msg
                .get("reasoning_content")
                .or_else(|| msg.get("reasoning"))
                .unwrap_or(&Value::Null)),
            text,
            calls: calls
                .iter()
                .map(|c| {
                    let f = &c["function"];
                    (
                        s(&c["id"]).unwrap_or_default(),
                        s(&f["name"]).unwrap_or_default(),
                        s(&f["arguments"]).unwrap_or(Cow::Borrowed("{}")),
                    )
                })
                .collect(),
            finish: s(&choice["finish_reason"]),
            created: v["created"].as_u64(),
            model: s(&v["model"]),
            usage: v.get("usage").filter(|u| u.is_object()).map(Usage::from_chat),
        }
    }
}

/// A whole chat completion as a Responses object, encoded.
pub fn body_from_chat(body: &[u8], native: &Native, model: &str) -> Result<Bytes, GatewayError> {
    let value;
    let answer = match serde_json::from_slice::<Completion>(body) {
        Ok(c) => Answer::from_typed(c),
        Err(_) => {
            value = serde_json::from_slice::<Value>(body).map_err(unreadable)?;
            Answer::from_value(&value)
        }
    };
    let mut output = String::with_capacity(answer.text.len() + 256);
    if let Some(r) = answer.reasoning.as_deref().filter(|r| !r.is_empty()) {
        write_reasoning_item(&mut output, &new_id("rs"), r);
    }
    if !answer.text.is_empty() || answer.calls.is_empty() {
        separate(&mut output);
        write_message_item(&mut output, &new_id("msg"), &answer.text, "completed");
    }
    for (call_id, name, arguments) in &answer.calls {
        separate(&mut output);
        write_function_call_item(&mut output, &new_id("fc"), call_id, name, arguments, "completed");
    }
    let (status, incomplete) = status_of(answer.finish.as_deref());
    let echo = Echo::new(native);
    let mut out = String::with_capacity(output.len() + 640);
    Object {
        id: &new_id("resp"),
        created_at: answer.created.filter(|c| *c > 0).unwrap_or_else(now_secs),
        model: answer.model.as_deref().unwrap_or(model),
        status,
        incomplete,
        error: None,
        output: &output,
        usage: answer.usage,
        echo: &echo,
    }
    .write(&mut out);
    Ok(Bytes::from(out))
}

/// `body_from_chat`, as a `Value` (the mock upstream's `/v1/responses`).
pub fn from_chat(body: &[u8], native: &Native, model: &str) -> Result<Value, GatewayError> {
    let encoded = body_from_chat(body, native, model)?;
    serde_json::from_slice(&encoded).map_err(|e| GatewayError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are fresh per call; everything else is compared.
    fn without_ids(mut v: Value) -> Value {
        v["id"] = Value::Null;
        for item in v["output"].as_array_mut().into_iter().flatten() {
            item["id"] = Value::Null;
        }
        v
    }

    /// The typed read and the lenient `Value` read (a content given as parts) write the same
    /// object, and it is valid JSON with the chat completion's facts and OpenAI's defaults.
    #[test]
    fn typed_and_lenient_reads_write_the_same_object() {
        let typed = br#"{"created":5,"model":"up","choices":[{"message":{"content":"he said \"hi\"\n","tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":3}}"#;
        let parts = br#"{"created":5,"model":"up","choices":[{"message":{"content":[{"type":"text","text":"he said \"hi\"\n"}],"tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":3}}"#;
        let native = Native::default();
        let a = from_chat(typed, &native, "asked").unwrap();
        let b = from_chat(parts, &native, "asked").unwrap();
        assert_eq!(without_ids(a.clone()), without_ids(b));
        assert_eq!(a["object"], "response");
        assert_eq!(a["created_at"], 5);
        assert_eq!(a["model"], "up");
        assert_eq!(a["status"], "incomplete");
        assert_eq!(a["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(a["output"][0]["content"][0]["text"], "he said \"hi\"\n");
        assert_eq!(a["output"][1]["call_id"], "c1");
        assert_eq!(a["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(a["usage"]["total_tokens"], 5);
        assert_eq!(a["temperature"], 1.0);
        assert_eq!(a["tools"], serde_json::json!([]));
        assert!(a["id"].as_str().unwrap().starts_with("resp_"));
    }

    #[test]
    fn the_request_is_echoed() {
        let body = serde_json::json!({"instructions": "be brief", "temperature": 0.2, "store": true, "metadata": {"k": "v"}, "tools": null});
        let native = Native {
            body: body.as_object().cloned().unwrap(),
            ..Native::default()
        };
        let r = from_chat(br#"{"choices":[{"message":{"content":"x"}}]}"#, &native, "m").unwrap();
        assert_eq!(r["instructions"], "be brief");
        assert_eq!(r["temperature"], 0.2);
        assert_eq!(r["store"], true);
        assert_eq!(r["metadata"]["k"], "v");
        assert_eq!(r["tools"], serde_json::json!([]), "null takes the default");
        assert_eq!(r["model"], "m");
        assert_eq!(r["status"], "completed");
        assert!(r["usage"].is_null());
    }
}
