//! The OpenAI wire: request bodies for every OpenAI-compatible deployment.
//!
//! A body is the client's request with the deployment's upstream model id, its configured
//! defaults under the client's own values, the gateway's own fields removed, and, under
//! `drop_params`, the parameters the provider is known to reject removed.

use super::spec::Provider;
use crate::config::Deployment;
use crate::error::GatewayError;
use crate::types::{ChatRequest, PassthroughRequest, GATEWAY_FIELDS};
use bytes::Bytes;
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
        ],
        Mistral => &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "user",
            "service_tier",
            "store",
        ],
        DeepSeek => &["logit_bias", "n", "service_tier", "store", "user"],
        Gemini => &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "user",
            "service_tier",
            "store",
            "frequency_penalty",
            "presence_penalty",
        ],
        HuggingFace => &[
            "logit_bias",
            "user",
            "service_tier",
            "store",
            "parallel_tool_calls",
        ],
        Xai | Perplexity | Cerebras => &["logit_bias", "service_tier", "store"],
        _ => &[],
    }
}

fn clean(dep: &Deployment, extra: &mut Map<String, Value>) {
    for f in GATEWAY_FIELDS {
        extra.remove(*f);
    }
    for (k, v) in &dep.defaults {
        if !extra.contains_key(k) {
            extra.insert(k.clone(), v.clone());
        }
    }
    for p in &dep.additional_drop_params {
        extra.remove(p);
    }
    if dep.drop_params {
        for p in unsupported(dep.provider) {
            extra.remove(*p);
        }
    }
}

fn to_bytes<T: serde::Serialize>(v: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the upstream request: {e}")))
}

/// The `/chat/completions` body for `dep`.
pub fn chat_body(dep: &Deployment, req: &ChatRequest) -> Result<Bytes, GatewayError> {
    let mut req = req.clone();
    req.model.clone_from(&dep.model);
    // Typed fields take their deployment default only when the client left them out.
    if req.max_tokens.is_none() {
        req.max_tokens = dep.defaults.get("max_tokens").and_then(Value::as_u64);
    }
    if req.max_completion_tokens.is_none() {
        req.max_completion_tokens = dep
            .defaults
            .get("max_completion_tokens")
            .and_then(Value::as_u64);
    }
    clean(dep, &mut req.extra);
    for typed in [
        "max_tokens",
        "max_completion_tokens",
        "messages",
        "model",
        "stream",
        "stream_options",
    ] {
        req.extra.remove(typed);
    }
    if req.stream != Some(true) {
        req.stream_options = None;
    }
    if dep.drop_params && unsupported(dep.provider).contains(&"max_completion_tokens") {
        req.max_completion_tokens = None;
    }
    to_bytes(&req)
}

/// The `/completions` or `/embeddings` body for `dep`.
pub fn passthrough_body(dep: &Deployment, req: &PassthroughRequest) -> Result<Bytes, GatewayError> {
    let mut req = req.clone();
    req.model.clone_from(&dep.model);
    clean(dep, &mut req.extra);
    req.extra.remove("model");
    req.extra.remove("stream");
    to_bytes(&req)
}
