//! Chat completion chunks as the Responses event stream, event by event:
//!
//! `response.created`, `response.in_progress`, then per output item `response.output_item.added`,
//! its deltas (`response.output_text.delta` inside a content part,
//! `response.function_call_arguments.delta`, `response.reasoning_summary_text.delta`), their
//! `.done` events and `response.output_item.done`; at `[DONE]` `response.completed` (or
//! `response.incomplete` after `finish_reason: length`) with usage. An upstream error event
//! becomes `error` and `response.failed`. Every event carries its `sequence_number`.

use super::request::Native;
use super::response::{envelope, function_call_item, message_item, new_id, now_secs, reasoning_item, status_of, usage};
use crate::translate::EventTranslator;
use serde_json::{json, Value};
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

pub struct ChatToResponses {
    native: Arc<Native>,
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    finished: bool,
    /// Items done, in output order.
    output: Vec<Value>,
    next_index: usize,
    text: Option<(usize, String, String)>,
    reasoning: Option<(usize, String, String)>,
    calls: Vec<Call>,
    finish: Option<String>,
    usage: Option<Value>,
    on_complete: Option<OnComplete>,
}

impl ChatToResponses {
    pub fn new(native: Arc<Native>, model: &str, on_complete: Option<OnComplete>) -> Self {
        ChatToResponses {
            native,
            id: new_id("resp"),
            model: model.to_string(),
            created_at: now_secs(),
            seq: 0,
            started: false,
            finished: false,
            output: Vec::new(),
            next_index: 0,
            text: None,
            reasoning: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            on_complete,
        }
    }

    fn emit(&mut self, out: &mut String, kind: &str, mut data: Value) {
        data["type"] = Value::from(kind);
        data["sequence_number"] = Value::from(self.seq);
        self.seq += 1;
        let _ = write!(out, "event: {kind}\ndata: {data}\n\n");
    }

    /// An event whose payload is the response object, already encoded.
    fn emit_response(&mut self, out: &mut String, kind: &str, response: &str) {
        let seq = self.seq;
        self.seq += 1;
        let _ = write!(
            out,
            "event: {kind}\ndata: {{\"type\":\"{kind}\",\"response\":{response},\"sequence_number\":{seq}}}\n\n"
        );
    }

    fn response(&self, status: &str) -> Value {
        let mut r = envelope(&self.native, &self.id, self.created_at, &self.model, status);
        r.insert("output".into(), Value::Array(self.output.clone()));
        Value::Object(r)
    }

    fn start(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.response("in_progress");
        // One encoding of the response object for both events.
        let r = r.to_string();
        self.emit_response(out, "response.created", &r);
        self.emit_response(out, "response.in_progress", &r);
    }

    fn close_reasoning(&mut self, out: &mut String) {
        let Some((idx, id, text)) = self.reasoning.take() else {
            return;
        };
        let base = json!({"item_id": id, "output_index": idx, "summary_index": 0});
        let mut d = base.clone();
        d["text"] = Value::from(text.as_str());
        self.emit(out, "response.reasoning_summary_text.done", d);
        let mut d = base;
        d["part"] = json!({"type": "summary_text", "text": text});
        self.emit(out, "response.reasoning_summary_part.done", d);
        let item = reasoning_item(&id, &text);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": idx, "item": item}),
        );
        self.output.push(item);
    }

    fn close_text(&mut self, out: &mut String) {
        let Some((idx, id, text)) = self.text.take() else {
            return;
        };
        let base = json!({"item_id": id, "output_index": idx, "content_index": 0});
        let mut d = base.clone();
        d["text"] = Value::from(text.as_str());
        d["logprobs"] = json!([]);
        self.emit(out, "response.output_text.done", d);
        let mut d = base;
        d["part"] = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        self.emit(out, "response.content_part.done", d);
        let item = message_item(&id, &text, "completed");
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": idx, "item": item}),
        );
        self.output.push(item);
    }

    fn close_calls(&mut self, out: &mut String) {
        for c in std::mem::take(&mut self.calls) {
            let args = if c.args.is_empty() { "{}".to_string() } else { c.args };
            self.emit(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": c.id, "output_index": c.output_index, "name": c.name, "arguments": args}),
            );
            let item = function_call_item(&c.id, &c.call_id, &c.name, &args, "completed");
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": c.output_index, "item": item}),
            );
            self.output.push(item);
        }
    }

    fn reasoning_delta(&mut self, out: &mut String, delta: &str) {
        if self.reasoning.is_none() {
            self.close_text(out);
            let (idx, id) = (self.next_index, new_id("rs"));
            self.next_index += 1;
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": idx, "item": {"id": id, "type": "reasoning", "summary": []}}),
            );
            self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": idx, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            );
            self.reasoning = Some((idx, id, String::new()));
        }
        if let Some((idx, id, text)) = self.reasoning.as_mut() {
            text.push_str(delta);
            let d = json!({"item_id": id, "output_index": idx, "summary_index": 0, "delta": delta});
            self.emit(out, "response.reasoning_summary_text.delta", d);
        }
    }

    fn text_delta(&mut self, out: &mut String, delta: &str) {
        if self.text.is_none() {
            self.close_reasoning(out);
            let (idx, id) = (self.next_index, new_id("msg"));
            self.next_index += 1;
            let item =
                json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": idx, "item": item}),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": idx, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            );
            self.text = Some((idx, id, String::new()));
        }
        if let Some((idx, id, text)) = self.text.as_mut() {
            text.push_str(delta);
            // The per-chunk event, written directly: no `Value` built per token.
            let (idx, seq) = (*idx, self.seq);
            self.seq += 1;
            let delta = Value::from(delta);
            let _ = write!(
                out,
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"item_id\":\"{id}\",\"output_index\":{idx},\"content_index\":0,\"delta\":{delta},\"logprobs\":[],\"sequence_number\":{seq}}}\n\n"
            );
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
            let item = function_call_item(&id, &call_id, &name, "", "in_progress");
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": idx, "item": item}),
            );
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
        self.calls[pos].args.push_str(args);
        let (id, idx) = (self.calls[pos].id.clone(), self.calls[pos].output_index);
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": idx, "delta": args}),
        );
    }

    fn complete(&mut self, out: &mut String) {
        self.start(out);
        self.close_reasoning(out);
        self.close_text(out);
        self.close_calls(out);
        let (status, incomplete) = status_of(self.finish.as_deref());
        let mut r = self.response(status);
        r["incomplete_details"] = incomplete;
        if let Some(u) = &self.usage {
            r["usage"] = usage(u);
        }
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit_response(out, kind, &r.to_string());
        self.finished = true;
        if let Some(f) = self.on_complete.take() {
            f(&r);
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
        let mut r = self.response("failed");
        r["error"] = json!({"code": "server_error", "message": message});
        self.emit_response(out, "response.failed", &r.to_string());
        self.finished = true;
    }
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
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if v.get("error").is_some() {
            self.fail(out, &v);
            return;
        }
        if let Some(m) = v["model"].as_str().filter(|m| !m.is_empty()) {
            if !self.started {
                self.model = m.to_string();
            }
        }
        self.start(out);
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.pointer("/choices/0") else { return };
        let delta = &choice["delta"];
        if let Some(r) = delta
            .get("reasoning_content")
            .or_else(|| delta.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            self.reasoning_delta(out, r);
        }
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text_delta(out, t);
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for tc in calls {
                self.tool_delta(out, tc);
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_string());
        }
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
