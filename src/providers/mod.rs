//! How to talk upstream: one pooled HTTP client and one [`WireFormat`] per wire.
//!
//! `openai` frames requests for the whole OpenAI-compatible family (OpenAI, Azure, vLLM, Ollama,
//! TGI, the OpenAI-compatible clouds); `anthropic` for the Messages API; `mock` answers
//! `mock_response` without a call. Each builds the upstream request from the call and turns the
//! answer (whole or streamed) into the client's dialect, so the pipeline never matches on wires.
//! A new client dialect adds its arms to each wire's `answer`/`stream`; a new wire adds an impl
//! and an arm in [`for_deployment`].

pub mod anthropic;
pub mod mock;
pub mod openai;
pub mod spec;
pub mod sse;

use crate::config::Deployment;
use crate::error::{Dialect, GatewayError};
use crate::pipeline::Call;
use crate::translate;
use bytes::Bytes;
use futures_util::Stream;
use std::borrow::Cow;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// An upstream body, chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// What one attempt sends.
pub enum Prepared<'d> {
    /// POST `body` to `url`; `forward_headers`: with the client's `anthropic-*` headers.
    Send {
        url: Cow<'d, str>,
        body: Bytes,
        forward_headers: bool,
    },
    /// An answer made here, in this wire's shape (the mock).
    Canned(Bytes),
}

/// One upstream wire format: how a call is framed for it, and how its answers reach the client.
pub trait WireFormat: Sync {
    fn prepare<'d>(&self, dep: &'d Deployment, call: &Call, dialect: Dialect) -> Result<Prepared<'d>, GatewayError>;
    /// A whole answer from `dep`, in the client's dialect.
    fn answer(&self, dep: &Deployment, body: Bytes, call: &Call, dialect: Dialect) -> Result<Bytes, GatewayError>;
    /// A streamed answer from `dep`, in the client's dialect, event by event.
    fn stream(&self, dep: &Deployment, upstream: ByteStream, call: &Call, dialect: Dialect) -> ByteStream;
}

/// A Responses request goes as sent to a deployment serving `/responses`; elsewhere it is
/// checked for what its chat form cannot carry, then translated by the wire.
fn responses_passthrough<'d>(dep: &'d Deployment, call: &Call) -> Result<Option<Prepared<'d>>, GatewayError> {
    let Some(native) = call.responses() else {
        return Ok(None);
    };
    if translate::responses::serves_responses(dep) {
        return Ok(Some(Prepared::Send {
            url: Cow::Owned(translate::responses::responses_url(dep)),
            body: translate::responses::passthrough_body(dep, native)?,
            forward_headers: false,
        }));
    }
    translate::responses::check_translatable(dep, native)?;
    Ok(None)
}

/// Whether `dep` answers a Responses request in the Responses shape itself.
fn responses_passed_through(dep: &Deployment, call: &Call) -> bool {
    call.responses().is_some() && translate::responses::serves_responses(dep)
}

/// A chat completion as a Responses object for the client's request.
fn chat_to_responses(body: &[u8], call: &Call, model: &str) -> Result<Bytes, GatewayError> {
    let native = call
        .responses()
        .ok_or_else(|| GatewayError::Internal("a Responses translation without its request".into()))?;
    translate::responses::response::body_from_chat(body, native, model)
}

/// The wire `dep` speaks.
pub fn for_deployment(dep: &Deployment) -> &'static dyn WireFormat {
    match dep.provider.spec().wire {
        spec::Wire::Anthropic => &anthropic::AnthropicWire,
        spec::Wire::OpenAi | spec::Wire::Azure => &openai::OpenAiWire,
    }
}

/// Whether `dep` can take an Anthropic body whole (its own wire, or `drop_params` to drop the rest).
pub fn carries_native(dep: &Deployment) -> bool {
    dep.provider.spec().wire == spec::Wire::Anthropic || dep.drop_params
}

/// A completion budget as a local deployment can take it: at most its
/// `model_info.max_output_tokens` (clients like Claude Code ask for 32k-64k, more than a local
/// engine's context leaves). Cloud deployments, and local ones that do not say, get `n` as asked.
pub fn clamp_max_tokens(dep: &Deployment, n: u64) -> u64 {
    match dep.model_info.max_output_tokens {
        Some(cap) if dep.is_local() => n.min(cap),
        _ => n,
    }
}

/// The one HTTP client every upstream call goes through: pooled, keep-alive, no global timeout
/// (each call sets its own from the deployment).
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
}

/// An upstream answer whose status was a success; the body is still unread.
pub struct Reply {
    pub response: reqwest::Response,
    /// From sending the request to receiving the response head.
    pub head_time: Duration,
}

impl Upstream {
    pub fn new() -> Result<Self, GatewayError> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GatewayError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Upstream { client })
    }

    /// POSTs `body` to `url` on behalf of `dep`. The response head must arrive within
    /// `head_timeout`; a non-2xx status becomes [`GatewayError::Upstream`] with its message.
    pub async fn post(
        &self,
        dep: &Deployment,
        url: &str,
        body: Bytes,
        head_timeout: Duration,
        request_id: &str,
        forward: &[(http::HeaderName, http::HeaderValue)],
    ) -> Result<Reply, GatewayError> {
        let mut req = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", request_id)
            .body(body);
        for (name, value) in &dep.headers {
            req = req.header(name, value);
        }
        if !forward.is_empty() {
            // Replaces the deployment's value for the same header (e.g. anthropic-version).
            req = req.headers(forward.iter().cloned().collect());
        }
        let started = Instant::now();
        let response = match tokio::time::timeout(head_timeout, req.send()).await {
            Err(_) => {
                return Err(GatewayError::UpstreamTimeout {
                    deployment: dep.label(),
                    after: head_timeout,
                })
            }
            Ok(Err(e)) => return Err(transport_error(dep, e, head_timeout)),
            Ok(Ok(r)) => r,
        };
        let head_time = started.elapsed();
        let status = response.status();
        if status.is_success() {
            return Ok(Reply { response, head_time });
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        // Error bodies are small; bound the wait for them all the same.
        let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(upstream_error(dep, status.as_u16(), &body, retry_after))
    }
}

/// Maps a transport failure to unreachable/timeout, naming the deployment, never its key.
pub fn transport_error(dep: &Deployment, e: reqwest::Error, after: Duration) -> GatewayError {
    if e.is_timeout() {
        return GatewayError::UpstreamTimeout {
            deployment: dep.label(),
            after,
        };
    }
    // reqwest's Display stops at "error sending request"; the cause says what happened.
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    GatewayError::UpstreamUnreachable {
        deployment: dep.label(),
        detail: strip_url(&detail),
    }
}

/// reqwest puts the URL into messages; a URL may carry a key in its query (Azure, Gemini).
fn strip_url(s: &str) -> String {
    match s.find(" for url (") {
        Some(i) => {
            let rest = &s[i..];
            let end = rest.find(')').map(|j| i + j + 1).unwrap_or(s.len());
            format!("{}{}", &s[..i], &s[end..])
        }
        None => s.to_string(),
    }
}

/// Builds the relayed error from an upstream status and body (OpenAI's shape, or any JSON with
/// a message, or plain text).
pub fn upstream_error(dep: &Deployment, status: u16, body: &[u8], retry_after: Option<Duration>) -> GatewayError {
    let mut message = None;
    let mut error_type = None;
    let mut param = None;
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let err = v.get("error").unwrap_or(&v);
        message = err
            .get("message")
            .or_else(|| err.get("detail"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .map(|m| match m {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .or_else(|| err.as_str().map(str::to_string));
        error_type = err.get("type").and_then(|t| t.as_str()).map(str::to_string);
        param = err.get("param").and_then(|t| t.as_str()).map(str::to_string);
    }
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_string()
        } else {
            text.chars().take(2000).collect()
        }
    });
    GatewayError::Upstream {
        deployment: dep.label(),
        status,
        message,
        error_type,
        param,
        retry_after,
    }
}
