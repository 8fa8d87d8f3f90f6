//! The OpenAI Responses API (`POST /v1/responses`) against every wire:
//!
//! - toward a chat-completions deployment (vLLM, llama-server, Ollama, TGI, ...) the request
//!   becomes the canonical chat request (`request`), the answer a Responses object
//!   (`response`) or event stream (`stream`);
//! - toward an `anthropic/` deployment the chat request goes on through the Anthropic
//!   translator, and the answer comes back Anthropic -> chat -> Responses;
//! - toward a deployment that serves Responses itself (`serves_responses`) the body goes
//!   upstream as sent (`passthrough_body`) and the answer comes back as sent.

pub mod json;
pub mod request;
pub mod response;
pub mod stream;

pub use request::{to_canonical, Native};

use crate::config::Deployment;
use crate::error::GatewayError;
use crate::providers::spec::{Provider, Wire};
use crate::types::GATEWAY_FIELDS;
use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Whether `dep` serves `/responses` itself: `model_info.supports_responses_api` when set (the
/// key LiteLLM's model map uses), else OpenAI and Azure deployments that are not local (an
/// `openai/` deployment on a loopback or private address is an OpenAI-compatible engine, which
/// serves chat completions).
pub fn serves_responses(dep: &Deployment) -> bool {
    if let Some(b) = dep
        .model_info
        .extra
        .get("supports_responses_api")
        .and_then(Value::as_bool)
    {
        return b && matches!(dep.provider.spec().wire, Wire::OpenAi | Wire::Azure);
    }
    matches!(dep.provider, Provider::OpenAi | Provider::Azure) && !dep.is_local()
}

/// `{api_base}/responses` (Azure: `{api_base}/openai/v1/responses`).
pub fn responses_url(dep: &Deployment) -> String {
    match dep.provider.spec().wire {
        Wire::Azure => format!("{}/openai/v1/responses", dep.api_base),
        _ => format!("{}/responses", dep.api_base),
    }
}

/// The client's body with the deployment's model id; the gateway's own fields removed, except
/// `metadata`, which is a Responses field (OpenAI keeps it with the response).
struct PassthroughOut<'a> {
    dep: &'a Deployment,
    native: &'a Native,
}

impl Serialize for PassthroughOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in &self.native.body {
            let k = k.as_str();
            if k == "model" {
                m.serialize_entry(k, &self.dep.model)?;
            } else if k == "metadata" || !GATEWAY_FIELDS.contains(&k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

pub fn passthrough_body(dep: &Deployment, native: &Native) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(&PassthroughOut { dep, native })
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("cannot encode the upstream request: {e}")))
}

/// What a translated (not passed-through) request cannot carry toward `dep`: a clear 400, or,
/// under `drop_params`, a warning for hosted tools.
pub fn check_translatable(dep: &Deployment, native: &Native) -> Result<(), GatewayError> {
    if native.body.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(GatewayError::invalid_param(
            "previous_response_id",
            format!(
                "previous_response_id needs the gateway's response store or a deployment serving the Responses API; {} does not serve it",
                dep.label()
            ),
        ));
    }
    if let Some((param, why)) = &native.untranslatable {
        return Err(GatewayError::invalid_param(
            param,
            format!("{why}; {} does not", dep.label()),
        ));
    }
    if let Some(kind) = native.hosted_tools.first() {
        if dep.drop_params {
            tracing::warn!(deployment = %dep.label(), tools = ?native.hosted_tools, "hosted tools dropped (drop_params): the deployment does not serve the Responses API");
        } else {
            return Err(GatewayError::invalid_param(
                "tools",
                format!(
                    "tools of type '{kind}' run on a deployment serving the Responses API; {} does not (set drop_params to drop them)",
                    dep.label()
                ),
            ));
        }
    }
    Ok(())
}
