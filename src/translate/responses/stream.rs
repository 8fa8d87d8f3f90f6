//! Chat completion chunks as the Responses event stream, event by event:
//!
//! `response.created`, `response.in_progress`, then per output item `response.output_item.added`,
//! its deltas (`response.output_text.delta` inside a content part,
//! `response.function_call_arguments.delta`, `response.reasoning_summary_text.delta`), their
//! `.done` events and `response.output_item.done`; at `[DONE]` `response.completed` (or
//! `response.incomplete` after `finish_reason: length`) with usage. An upstream error event
//! becomes `error` and `response.failed`. Every event carries its `sequence_number`.
//!
//! Cost per chunk: a chunk is read into borrowed typed fields (`Chunk`; another shape falls
//! back to a `Value`, read leniently), and events are written straight into the output buffer
//! (`json`); the request-echo fields of the response object are encoded once per stream.

use super::json::{push_str, push_u64, Text};
use super::request::Native;
use super::response::{
    new_id, now_secs, separate, status_of, write_function_call_item, write_message_item, write_reasoning_item, Echo,
    Object, Usage,
};
use crate::translate::EventTranslator;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

/// Hears the final response object of a stream that completed (seam: respstore).
pub type OnComplete = Box<dyn FnOnce(&Value) + Send>;

struct Call {
    chat_index: u64,
    output_index: usize,
    id: String,
    call_id: String,
    name: String,
    args: String,
}

/// A chat chunk's fields, borrowed from the event's data.
#[derive(Deserialize)]
struct Chunk<'a> {
    /// Whether an `error` key is there at all (an upstream error event).
    #[serde(default, deserialize_with = "present")]
    error: bool,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

pub struct ChatToResponses {
    native: Arc<Native>,
    echo: Option<Echo>,
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    finished: bool,
    /// Items done, in output order, encoded and comma-separated.
    output: String,
    next_index: usize,
    text: Option<(usize, String, String)>,
    reasoning: Option<(usize, String, String)>,
    calls: Vec<Call>,
    finish: Option<String>,
    usage: Option<Usage>,
    on_complete: Option<OnComplete>,
    /// Scratch for the response object.
    scratch: String,
}

impl ChatToResponses {
    pub fn new(native: Arc<Native>, model: &str, on_complete: Option<OnComplete>) -> Self {
        ChatToResponses {
            native,
            echo: None,
            id: new_id("resp"),
            model: model.to_string(),
            created_at: now_secs(),
            seq: 0,
            started: false,
            finished: false,
            output: String::new(),
            next_index: 0,
            text: None,
            reasoning: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            on_complete,
            scratch: String::new(),
        }
    }

    /// Opens an event: `event: {kind}` and its data up to the first field's comma.
    fn open(out: &mut String, kind: &str) {
        out.push_str("event: ");
        out.push_str(kind);
        out.push_str("\ndata: {\"type\":\"");
        out.push_str(kind);
        out.push('"');
    }

    /// Closes an event with its `sequence_number`.
    fn close(&mut self, out: &mut String) {
        out.push_str(",\"sequence_number\":");
        push_u64(out, self.seq);
        out.push_str("}\n\n");
        self.seq += 1;
    }

    /// `,"output_index":N`
    fn index(out: &mut String, idx: usize) {
        out.push_str(",\"output_index\":");
        push_u64(out, idx as u64);
    }

    /// An event built as a `Value` (the rare ones: errors).
    fn emit(&mut self, out: &mut String, kind: &str, mut data: Value) {
        data["type"] = Value::from(kind);
        data["sequence_number"] = Value::from(self.seq);
        self.seq += 1;
        let _ = write!(out, "event: {kind}\ndata: {data}\n\n");
    }

    /// `,"item_id":"..","output_index":N`
    fn item_ref(out: &mut String, id: &str, idx: usize) {
        out.push_str(",\"item_id\":");
        push_str(out, id);
        Self::index(out, idx);
    }

    /// The response object with this status into `self.scratch`.
    fn write_response(&mut self, status: &str, incomplete: Option<&str>, error: Option<&str>) {
        let echo = self.echo.get_or_insert_with(|| Echo::new(&self.native));
        self.scratch.clear();
        Object {
            id: &self.id,
            created_at: self.created_at,
            model: &self.model,
            status,
            incomplete,
            error,
            output: &self.output,
            usage: self.usage,
            echo,
        }
        .write(&mut self.scratch);
    }

    /// An event whose payload is the response object in `self.scratch`.
    fn emit_response(&mut self, out: &mut String, kind: &str) {
        Self::open(out, kind);
        out.push_str(",\"response\":");
        out.push_str(&self.scratch);
        self.close(out);
    }

    fn start(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        // One encoding of the response object for both events.
        self.write_response("in_progress", None, None);
        out.reserve(2 * self.scratch.len() + 160);
        self.emit_response(out, "response.created");
        self.emit_response(out, "response.in_progress");
    }

    /// Appends an item to the response's `output` and sends `response.output_item.done`.
    fn item_done(&mut self, out: &mut String, idx: usize, start: usize) {
        Self::open(out, "response.output_item.done");
        Self::index(out, idx);
        out.push_str(",\"item\":");
        out.push_str(&self.output[start..]);
        self.close(out);
    }

    fn close_reasoning(&mut self, out: &mut String) {
        let Some((idx, id, text)) = self.reasoning.take() else {
            return;
        };
        Self::open(out, "response.reasoning_summary_text.done");
        Self::item_ref(out, &id, idx);
        out.push_str(",\"summary_index\":0,\"text\":");
        push_str(out, &text);
        self.close(out);
        Self::open(out, "response.reasoning_summary_part.done");
        Self::item_ref(out, &id, idx);
        out.push_str(",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":");
        push_str(out, &text);
        out.push('}');
        self.close(out);
        separate(&mut self.output);
        let start = self.output.len();
        write_reasoning_item(&mut self.output, &id, &text);
        self.item_done(out, idx, start);
    }

    fn close_text(&mut self, out: &mut String) {
        let Some((idx, id, text)) = self.text.take() else {
            return;
        };
        Self::open(out, "response.output_text.done");
        Self::item_ref(out, &id, idx);
        out.push_str(",\"content_index\":0,\"text\":");
        push_str(out, &text);
        out.push_str(",\"logprobs\":[]");
        self.close(out);
        Self::open(out, "response.content_part.done");
        Self::item_ref(out, &id, idx);
        out.push_str(",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":");
        push_str(out, &text);
        out.push_str(",\"annotations\":[],\"logprobs\":[]}");
        self.close(out);
        separate(&mut self.output);
        let start = self.output.len();
        write_message_item(&mut self.output, &id, &text, "completed");
        self.item_done(out, idx, start);
    }

    fn close_calls(&mut self, out: &mut String) {
        for c in std::mem::take(&mut self.calls) {
            let args = if c.args.is_empty() { "{}" } else { c.args.as_str() };
            Self::open(out, "response.function_call_arguments.done");
            Self::item_ref(out, &c.id, c.output_index);
            out.push_str(",\"name\":");
            push_str(out, &c.name);
            out.push_str(",\"arguments\":");
            push_str(out, args);
            self.close(out);
            separate(&mut self.output);
            let start = self.output.len();
            write_function_call_item(&mut self.output, &c.id, &c.call_id, &c.name, args, "completed");
            self.item_done(out, c.output_index, start);
        }
    }

    fn reasoning_delta(&mut self, out: &mut String, delta: &str) {
        if self.reasoning.is_none() {
            self.close_text(out);
            let (idx, id) = (self.next_index, new_id("rs"));
            self.next_index += 1;
            Self::open(out, "response.output_item.added");
            Self::index(out, idx);
            out.push_str(",\"item\":{\"id\":");
            push_str(out, &id);
            out.push_str(",\"type\":\"reasoning\",\"summary\":[]}");
            self.close(out);
            Self::open(out, "response.reasoning_summary_part.added");
            Self::item_ref(out, &id, idx);
            out.push_str(",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}");
            self.close(out);
            self.reasoning = Some((idx, id, String::new()));
        }
        if let Some((idx, id, text)) = self.reasoning.as_mut() {
            text.push_str(delta);
            Self::open(out, "response.reasoning_summary_text.delta");
            Self::item_ref(out, id, *idx);
            out.push_str(",\"summary_index\":0,\"delta\":");
            push_str(out, delta);
            self.close(out);
        }
    }

    fn text_delta(&mut self, out: &mut String, delta: &str) {
        if self.text.is_none() {
            self.close_reasoning(out);
            let (idx, id) = (self.next_index, new_id("msg"));
            self.next_index += 1;
            Self::open(out, "response.output_item.added");
            Self::index(out, idx);
            out.push_str(",\"item\":");
            write_message_item_open(out, &id);
            self.close(out);
            Self::open(out, "response.content_part.added");
            Self::item_ref(out, &id, idx);
            out.push_str(",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}");
            self.close(out);
            self.text = Some((idx, id, String::new()));
        }
        if let Some((idx, id, text)) = self.text.as_mut() {
            text.push_str(delta);
            Self::open(out, "response.output_text.delta");
            Self::item_ref(out, id, *idx);
            out.push_str(",\"content_index\":0,\"delta\":");
            push_str(out, delta);
            out.push_str(",\"logprobs\":[]");
            self.close(out);
        }
    }

    fn tool_delta(&mut self, out: &mut String, tc: &Value) {
        let chat_index = tc["index"].as_u64().unwrap_or(self.calls.len() as u64);
        if !self.calls.iter().any(|c| c.chat_index == chat_index) {
            self.close_reasoning(out);
            self.close_text(out);
            let (idx, id) = (self.next_index, new_id("fc"));
            self.next_index += 1;
            let call_id = tc["id"].as_str().map_or_else(|| new_id("call"), str::to_string);
            let name = tc["function"]["name"].as_str().unwrap_or_default().to_string();
            Self::open(out, "response.output_item.added");
            Self::index(out, idx);
            out.push_str(",\"item\":");
            write_function_call_item(out, &id, &call_id, &name, "", "in_progress");
            self.close(out);
            self.calls.push(Call {
                chat_index,
                output_index: idx,
                id,
                call_id,
                name,
                args: String::new(),
            });
        }
        let Some(args) = tc["function"]["arguments"].as_str().filter(|a| !a.is_empty()) else {
            return;
        };
        let Some(pos) = self.calls.iter().position(|c| c.chat_index == chat_index) else {
            return;
        };
        let c = &mut self.calls[pos];
        c.args.push_str(args);
        Self::open(out, "response.function_call_arguments.delta");
        Self::item_ref(out, &c.id, c.output_index);
        out.push_str(",\"delta\":");
        push_str(out, args);
        self.close(out);
    }

    fn complete(&mut self, out: &mut String) {
        self.start(out);
        self.close_reasoning(out);
        self.close_text(out);
        self.close_calls(out);
        let (status, incomplete) = status_of(self.finish.as_deref());
        self.write_response(status, incomplete, None);
        out.reserve(self.scratch.len() + 96);
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit_response(out, kind);
        self.finished = true;
        if let Some(f) = self.on_complete.take() {
            if let Ok(r) = serde_json::from_str::<Value>(&self.scratch) {
                f(&r);
            }
        }
    }

    fn fail(&mut self, out: &mut String, err: &Value) {
        self.start(out);
        let e = err.get("error").unwrap_or(err);
        let message = e["message"]
            .as_str()
            .unwrap_or("the upstream failed mid-stream")
            .to_string();
        let code = e["code"].clone();
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": e["param"].clone()}),
        );
        self.write_response("failed", None, Some(&message));
        self.emit_response(out, "response.failed");
        self.finished = true;
    }

    /// The chunk's model, usage, deltas and finish reason, however they were read.
    fn on_chunk(&mut self, out: &mut String, c: Parts<'_>) {
        if let Some(m) = c.model.filter(|m| !m.is_empty()) {
            if !self.started {
                self.model = m.to_string();
            }
        }
        self.start(out);
        if let Some(u) = c.usage {
            self.usage = Some(u);
        }
        if !c.has_choice {
            return;
        }
        if let Some(r) = c.reasoning.filter(|r| !r.is_empty()) {
            self.reasoning_delta(out, r);
        }
        if let Some(t) = c.content.filter(|t| !t.is_empty()) {
            self.text_delta(out, t);
        }
        if let Some(calls) = c.tool_calls.and_then(Value::as_array) {
            for tc in calls {
                self.tool_delta(out, tc);
            }
        }
        if let Some(f) = c.finish {
            self.finish = Some(f.to_string());
        }
    }

    /// A chunk that did not fit `Chunk` (a field of another type): read from a `Value`.
    fn on_value(&mut self, out: &mut String, v: &Value) {
        if v.get("error").is_some() {
            self.fail(out, v);
            return;
        }
        let choice = v.pointer("/choices/0");
        let delta = choice.map(|c| &c["delta"]);
        let parts = Parts {
            model: v["model"].as_str(),
            usage: v.get("usage").filter(|u| u.is_object()).map(Usage::from_chat),
            has_choice: choice.is_some(),
            reasoning: delta
                .and_then(|d| d.get("reasoning_content").or_else(|| d.get("reasoning")))
                .and_then(Value::as_str),
            content: delta.and_then(|d| d["content"].as_str()),
            tool_calls: delta.map(|d| &d["tool_calls"]),
            finish: choice.and_then(|c| c["finish_reason"].as_str()),
        };
        self.on_chunk(out, parts);
    }
}

/// `{"id":..,"type":"message","status":"in_progress","role":"assistant","content":[]}`
fn write_message_item_open(out: &mut String, id: &str) {
    out.push_str("{\"id\":");
    push_str(out, id);
    out.push_str(",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}");
}

/// What `on_chunk` reads of a chunk.
struct Parts<'a> {
    model: Option<&'a str>,
    usage: Option<Usage>,
    has_choice: bool,
    reasoning: Option<&'a str>,
    content: Option<&'a str>,
    tool_calls: Option<&'a Value>,
    finish: Option<&'a str>,
}

impl EventTranslator for ChatToResponses {
    fn on_event(&mut self, _event: Option<&str>, data: &str, out: &mut String) {
        if self.finished {
            return;
        }
        if data.trim() == "[DONE]" {
            self.complete(out);
            return;
        }
        // Room for this chunk's events (a delta and its event's framing), grown once.
        out.reserve(data.len() + 256);
        let chunk = match serde_json::from_str::<Chunk>(data) {
            Ok(c) if !c.error => c,
            _ => {
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    self.on_value(out, &v);
                }
                return;
            }
        };
        let usage = chunk.usage.and_then(Usage::from_raw);
        let choice = chunk.choices.and_then(|cs| cs.into_iter().next());
        let has_choice = choice.is_some();
        let (delta, finish) = match choice {
            Some(c) => (c.delta, c.finish_reason.map(Text::cow)),
            None => (None, None),
        };
        let (mut reasoning, mut content, mut tool_calls) = (None, None, None);
        if let Some(d) = delta {
            reasoning = d.reasoning_content.or(d.reasoning).map(Text::cow);
            content = d.content.map(Text::cow);
            tool_calls = d
                .tool_calls
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
        }
        let model: Option<Cow<str>> = chunk.model.map(Text::cow);
        self.on_chunk(
            out,
            Parts {
                model: model.as_deref(),
                usage,
                has_choice,
                reasoning: reasoning.as_deref(),
                content: content.as_deref(),
                tool_calls: tool_calls.as_ref(),
                finish: finish.as_deref(),
            },
        );
    }
}

/// Two translators in a row: `A`'s output events are `B`'s input (Anthropic -> chat -> Responses).
pub struct Chain<A, B> {
    pub first: A,
    pub second: B,
    buf: String,
    split: crate::translate::SseSplitter,
}

impl<A: EventTranslator, B: EventTranslator> Chain<A, B> {
    pub fn new(first: A, second: B) -> Self {
        Chain {
            first,
            second,
            buf: String::new(),
            split: crate::translate::SseSplitter::default(),
        }
    }
}

impl<A: EventTranslator, B: EventTranslator> EventTranslator for Chain<A, B> {
    fn on_event(&mut self, event: Option<&str>, data: &str, out: &mut String) {
        self.buf.clear();
        self.first.on_event(event, data, &mut self.buf);
        if self.buf.is_empty() {
            return;
        }
        for (e, d) in self.split.push(self.buf.as_bytes()) {
            self.second.on_event(e.as_deref(), &d, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sse: &[&str]) -> Vec<Value> {
        let mut t = ChatToResponses::new(Arc::new(Native::default()), "m", None);
        let mut out = String::new();
        for d in sse {
            t.on_event(None, d, &mut out);
        }
        crate::translate::SseSplitter::default()
            .push(out.as_bytes())
            .into_iter()
            .map(|(e, d)| {
                let v: Value = serde_json::from_str(&d).unwrap();
                assert_eq!(Some(v["type"].as_str().unwrap()), e.as_deref());
                v
            })
            .collect()
    }

    #[test]
    fn text_then_tool_call_then_completed() {
        let ev = run(&[
            r#"{"model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            "[DONE]",
        ]);
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seqs: Vec<u64> = ev.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..ev.len() as u64).collect::<Vec<_>>());
        let done = &ev.last().unwrap()["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["usage"]["total_tokens"], 7);
        assert_eq!(done["model"], "up");
    }

    /// A chunk of an unusual shape (here `reasoning` as an object) is read leniently, and
    /// escaped text comes out as sent.
    #[test]
    fn unusual_chunks_are_read_leniently() {
        let ev = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"a\"b\n","reasoning":{"odd":1}}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"c\u00e9"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            "[DONE]",
        ]);
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        let done = &last["response"];
        assert_eq!(done["output"].as_array().unwrap().len(), 1, "{done}");
        assert_eq!(done["output"][0]["content"][0]["text"], "a\"b\ncé");
        assert_eq!(done["usage"]["total_tokens"], 3);
        assert_eq!(done["usage"]["input_tokens"], 1);
    }

    #[test]
    fn length_is_incomplete_and_errors_fail() {
        let ev = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}]}"#,
            "[DONE]",
        ]);
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
        let ev = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
            r#"{"error":{"message":"boom"}}"#,
        ]);
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(&kinds[kinds.len() - 2..], ["error", "response.failed"]);
    }
}
