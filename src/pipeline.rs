//! A request's flow, as one readable function, independent of HTTP:
//!
//! 1. resolve the model to its group (`routing`);
//! 2. pick a deployment (`routing::balance`), frame the body for its wire (`providers`);
//! 3. send it with the deployment's timeout; on a retryable failure try another deployment at
//!    once, or the same one after a backoff (honouring `Retry-After`), up to `num_retries`;
//! 4. hand back the body (whole, or as a relay stream) with what the response headers report.
//!
//! Limits, cache and the spend record slot in before step 1 and after step 4.

use crate::app::AppState;
use crate::config::Deployment;
use crate::error::{Dialect, GatewayError};
use crate::providers::{openai, sse};
use crate::routing::balance;
use crate::types::{body_timeout, ChatRequest, Endpoint, PassthroughRequest};
use axum::body::Body;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// One call to make: a chat request, or a completions/embeddings body passed through.
pub enum Call {
    Chat(ChatRequest),
    Passthrough(Endpoint, PassthroughRequest),
}

impl Call {
    fn model(&self) -> &str {
        match self {
            Call::Chat(r) => &r.model,
            Call::Passthrough(_, r) => &r.model,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Call::Chat(_) => Endpoint::Chat,
            Call::Passthrough(e, _) => *e,
        }
    }

    pub fn is_stream(&self) -> bool {
        match self {
            Call::Chat(r) => r.stream == Some(true),
            Call::Passthrough(_, r) => r.stream == Some(true),
        }
    }

    fn extra(&self) -> &serde_json::Map<String, serde_json::Value> {
        match self {
            Call::Chat(r) => &r.extra,
            Call::Passthrough(_, r) => &r.extra,
        }
    }

    fn body_for<'d>(&self, dep: &'d Deployment) -> Result<(Bytes, &'d str), GatewayError> {
        match self {
            Call::Chat(r) => Ok((openai::chat_body(dep, r)?, dep.chat_url.as_str())),
            Call::Passthrough(Endpoint::Embeddings, r) => Ok((
                openai::passthrough_body(dep, r)?,
                dep.embeddings_url.as_str(),
            )),
            Call::Passthrough(_, r) => Ok((
                openai::passthrough_body(dep, r)?,
                dep.completions_url.as_str(),
            )),
        }
    }
}

pub enum Payload {
    Full(Bytes),
    Stream(Body),
}

/// What the edge needs to answer.
pub struct Outcome {
    pub deployment: Arc<Deployment>,
    pub payload: Payload,
    /// Time spent waiting on the upstream (head, plus body when not streaming).
    pub upstream_time: Duration,
    pub retries: u32,
    pub content_type: Option<http::HeaderValue>,
}

const INITIAL_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);

pub async fn run(
    state: &AppState,
    call: Call,
    request_id: &str,
    dialect: Dialect,
) -> Result<Outcome, GatewayError> {
    let group = state.models.resolve(call.model(), call.endpoint())?.clone();
    let stream = call.is_stream();
    let requested_timeout = body_timeout(call.extra());
    let router = &state.config.router;
    let num_retries = call
        .extra()
        .get("num_retries")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(router.num_retries as u64) as u32;

    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    let mut upstream_time = Duration::ZERO;
    loop {
        let fresh = balance::pick(&group.deployments, &tried);
        let same_again = fresh.is_none();
        let dep = match fresh {
            Some(d) => d,
            // Every deployment was tried: retry within the group from the start.
            None => match balance::pick(&group.deployments, &[]) {
                Some(d) => d,
                None => {
                    return Err(GatewayError::ModelUnavailable {
                        model: group.name.clone(),
                        reason: "the group has no deployments".into(),
                    })
                }
            },
        };
        let timeout = requested_timeout
            .or(if stream {
                dep.stream_timeout.or(router.stream_timeout)
            } else {
                None
            })
            .or(dep.timeout)
            .unwrap_or(router.timeout);
        let (body, url) = call.body_for(&dep)?;
        let attempt = attempt(state, &dep, url, body, timeout, stream, request_id, dialect).await;
        match attempt {
            Ok(mut outcome) => {
                outcome.upstream_time += upstream_time;
                outcome.retries = retries;
                return Ok(outcome);
            }
            Err((err, spent)) => {
                upstream_time += spent;
                let allowed = dep.num_retries.map(|n| n as u32).unwrap_or(num_retries);
                if !err.retryable() || retries >= allowed {
                    return Err(err);
                }
                tracing::debug!(request_id, deployment = %dep.label(), error = %err, "retrying");
                retries += 1;
                if same_again {
                    let backoff = INITIAL_RETRY_DELAY
                        .saturating_mul(1 << (retries - 1).min(8))
                        .min(MAX_RETRY_DELAY);
                    let wait = err.retry_after().map_or(backoff, |ra| ra.max(backoff));
                    if wait > MAX_RETRY_DELAY * 4 {
                        return Err(err);
                    }
                    tokio::time::sleep(wait).await;
                    tried.clear();
                }
                tried.push(dep.index);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    state: &AppState,
    dep: &Arc<Deployment>,
    url: &str,
    body: Bytes,
    timeout: Duration,
    stream: bool,
    request_id: &str,
    dialect: Dialect,
) -> Result<Outcome, (GatewayError, Duration)> {
    let started = std::time::Instant::now();
    let reply = state
        .upstream
        .post(dep, url, body, timeout, request_id)
        .await
        .map_err(|e| (e, started.elapsed()))?;
    let content_type = reply
        .response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .cloned();
    let payload = if stream {
        let relay = sse::relay(
            reply.response.bytes_stream(),
            timeout,
            dep.label(),
            dialect,
            None,
        );
        Payload::Stream(Body::from_stream(relay))
    } else {
        let remaining = timeout.saturating_sub(reply.head_time);
        match tokio::time::timeout(remaining, reply.response.bytes()).await {
            Ok(Ok(b)) => Payload::Full(b),
            Ok(Err(e)) => {
                return Err((
                    crate::providers::transport_error(dep, e, timeout),
                    started.elapsed(),
                ))
            }
            Err(_) => {
                return Err((
                    GatewayError::UpstreamTimeout {
                        deployment: dep.label(),
                        after: timeout,
                    },
                    started.elapsed(),
                ))
            }
        }
    };
    Ok(Outcome {
        deployment: dep.clone(),
        payload,
        upstream_time: started.elapsed(),
        retries: 0,
        content_type,
    })
}
