//! LiteLLM's `mock_response`: a canned answer made here in the OpenAI wire's shape, then turned
//! into the client's dialect exactly as an OpenAI-wire upstream's answer would be.

use super::openai::{chat_answer, chat_stream};
use super::{ByteStream, Prepared, WireFormat};
use crate::config::Deployment;
use crate::error::{Dialect, GatewayError};
use crate::pipeline::Call;
use bytes::Bytes;
use serde_json::json;

pub struct Mock<'a> {
    pub text: &'a str,
}

impl WireFormat for Mock<'_> {
    fn prepare<'d>(&self, dep: &'d Deployment, call: &Call, _dialect: Dialect) -> Result<Prepared<'d>, GatewayError> {
        Ok(Prepared::Canned(canned(dep, call, self.text)))
    }

    fn answer(&self, dep: &Deployment, body: Bytes, call: &Call, dialect: Dialect) -> Result<Bytes, GatewayError> {
        chat_answer(body, call, dialect, &dep.model)
    }

    fn stream(&self, dep: &Deployment, upstream: ByteStream, call: &Call, dialect: Dialect) -> ByteStream {
        chat_stream(upstream, call, dialect, &dep.model)
    }
}

fn canned(dep: &Deployment, call: &Call, text: &str) -> Bytes {
    let model = dep.model.as_str();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tokens = (text.len() / 4) as u64 + 1;
    let chat = matches!(call, Call::Chat(_));
    if call.is_stream() {
        let (object, first) = if chat {
            (
                "chat.completion.chunk",
                json!({"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}),
            )
        } else {
            (
                "text_completion",
                json!({"index": 0, "text": text, "finish_reason": null}),
            )
        };
        let last = if chat {
            json!({"index": 0, "delta": {}, "finish_reason": "stop"})
        } else {
            json!({"index": 0, "text": "", "finish_reason": "stop"})
        };
        let mut out = String::new();
        for choice in [first, last] {
            let ev = json!({"id": "chatcmpl-mock", "object": object, "created": created, "model": model, "choices": [choice]});
            out.push_str(&format!("data: {ev}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
        Bytes::from(out)
    } else {
        let prompt = call.estimated_tokens();
        let usage = json!({"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens});
        let body = if chat {
            json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage})
        } else {
            json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": usage})
        };
        Bytes::from(body.to_string())
    }
}
