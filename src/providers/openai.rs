//! The OpenAI wire: request bodies for every OpenAI-compatible deployment.
//!
//! A body is the client's request with the deployment's upstream model id, its configured
//! defaults under the client's own values, the gateway's own fields removed, and, under
//! `drop_params`, the parameters the provider is known to reject removed.

use super::spec::Provider;
use crate::config::Deployment;
use crate::error::GatewayError;
use crate::types::{ChatRequest, Message, PassthroughRequest, StreamOptions, GATEWAY_FIELDS};
use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// OpenAI parameters each provider's OpenAI-compatible endpoint rejects or ignores badly.
fn unsupported(provider: Provider) -> &'static [&'static str] {
    use Provider::*;
    match provider {
        Ollama | OllamaChat => &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "n",
            "user",
            "tool_choice",
            "parallel_tool_calls",
            "service_tier",
            "store",
        ],
        Groq => &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "service_tier",
            "store",
            "top_k",
        ],
        // Anthropic's top_k has no OpenAI counterpart; local engines (vLLM, llama.cpp) take it.
        OpenAi | Azure | AzureAi | TextCompletionOpenAi | OpenRouter | DashScope | NvidiaNim => &["top_k"],
        Mistral => &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "user",
            "service_tier",
            "store",
            "top_k",
        ],
        DeepSeek => &["logit_bias", "n", "service_tier", "store", "user", "top_k"],
        Gemini => &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "user",
            "service_tier",
            "store",
            "frequency_penalty",
            "presence_penalty",
            "top_k",
        ],
        HuggingFace => &["logit_bias", "user", "service_tier", "store", "parallel_tool_calls"],
        Xai | Perplexity | Cerebras => &["logit_bias", "service_tier", "store"],
        _ => &[],
    }
}

/// Fields the typed request structs carry themselves; never taken from `extra` or defaults.
const TYPED: &[&str] = &[
    // Anthropic's extended-thinking switch: a hint no OpenAI-wire model takes; dropped.
    "thinking",
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
];

/// The client's extra fields plus the deployment's defaults, filtered while serialising so the
/// request (messages, tools) is never copied.
struct Extra<'a> {
    dep: &'a Deployment,
    own: &'a Map<String, Value>,
}

impl Extra<'_> {
    fn keep(&self, k: &str) -> bool {
        let dropped = self.dep.additional_drop_params.iter().any(|p| p == k)
            || (self.dep.drop_params && unsupported(self.dep.provider).contains(&k));
        !(TYPED.contains(&k) || GATEWAY_FIELDS.contains(&k) || dropped)
    }
}

impl Serialize for Extra<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.own {
            if self.keep(k) {
                m.serialize_entry(k, v)?;
            }
        }
        for (k, v) in &self.dep.defaults {
            if !self.own.contains_key(k) && self.keep(k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
struct ChatOut<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<&'a StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    extra: Extra<'a>,
}

#[derive(Serialize)]
struct PassthroughOut<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(flatten)]
    extra: Extra<'a>,
}

fn to_bytes<T: Serialize>(v: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the upstream request: {e}")))
}

/// The `/chat/completions` body for `dep`.
pub fn chat_body(dep: &Deployment, req: &ChatRequest) -> Result<Bytes, GatewayError> {
    let default_u64 = |k: &str| dep.defaults.get(k).and_then(Value::as_u64);
    let dropped = |k: &str| dep.drop_params && unsupported(dep.provider).contains(&k);
    let out = ChatOut {
        model: &dep.model,
        messages: &req.messages,
        stream: req.stream,
        // OpenAI refuses stream_options on a request that does not stream.
        stream_options: req.stream_options.as_ref().filter(|_| req.stream == Some(true)),
        max_tokens: req
            .max_tokens
            .or_else(|| default_u64("max_tokens"))
            .map(|m| clamp_max_tokens(dep, m)),
        max_completion_tokens: req
            .max_completion_tokens
            .or_else(|| default_u64("max_completion_tokens"))
            .filter(|_| !dropped("max_completion_tokens")),
        extra: Extra { dep, own: &req.extra },
    };
    to_bytes(&out)
}

/// A local engine refuses a completion budget above what it serves (clients such as Codex and
/// Claude Code ask for 32k-64k): capped at `model_info.max_output_tokens` there.
pub fn clamp_max_tokens(dep: &Deployment, asked: u64) -> u64 {
    match dep.model_info.max_output_tokens {
        Some(cap) if dep.is_local() && asked > cap => cap,
        _ => asked,
    }
}

/// The `/completions` or `/embeddings` body for `dep`.
pub fn passthrough_body(dep: &Deployment, req: &PassthroughRequest) -> Result<Bytes, GatewayError> {
    to_bytes(&PassthroughOut {
        model: &dep.model,
        stream: req.stream,
        extra: Extra { dep, own: &req.extra },
    })
}
