//! The OpenAI dialect: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.
//! Handlers stay thin: authenticate, read and parse, call the pipeline, write headers.

use super::{parse_json, read_body};
use crate::app::{AppState, RequestCtx};
use crate::error::{Dialect, GatewayError};
use crate::pipeline::{self, Call, Outcome, Payload};
use crate::types::{ChatRequest, Endpoint, PassthroughRequest};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

pub async fn chat_completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, |bytes| {
        let chat: ChatRequest = parse_json(bytes)?;
        if chat.messages.is_empty() {
            return Err(GatewayError::invalid_param(
                "messages",
                "`messages` must contain at least one message",
            ));
        }
        Ok(Call::Chat(chat))
    })
    .await
}

pub async fn completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, |bytes| {
        Ok(Call::Passthrough(
            Endpoint::Completions,
            parse_json::<PassthroughRequest>(bytes)?,
        ))
    })
    .await
}

pub async fn embeddings(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, |bytes| {
        Ok(Call::Passthrough(
            Endpoint::Embeddings,
            parse_json::<PassthroughRequest>(bytes)?,
        ))
    })
    .await
}

async fn handle(state: &AppState, req: Request, parse: impl FnOnce(&[u8]) -> Result<Call, GatewayError>) -> Response {
    let (parts, body) = req.into_parts();
    let Some(ctx) = parts.extensions.get::<RequestCtx>().cloned() else {
        return GatewayError::Internal("request context missing".into()).into_response();
    };
    let result = async {
        let caller = state.auth.authenticate(&parts.headers)?;
        let bytes = read_body(body, state.config.general.max_request_size_bytes).await?;
        let call = parse(&bytes)?;
        if call_model_is_empty(&call) {
            return Err(GatewayError::invalid_param(
                "model",
                "`model` must name a model; call /v1/models to list them",
            ));
        }
        let rctx = pipeline::RequestCtx {
            request_id: &ctx.id,
            dialect: Dialect::OpenAi,
            allow_cloud: state.config.router.local_first.allow_cloud && caller.allow_cloud(),
        };
        pipeline::run(state, call, &rctx).await
    }
    .await;
    match result {
        Ok(outcome) => respond(outcome, &ctx),
        Err(err) => {
            tracing::info!(request_id = %ctx.id, status = err.status().as_u16(), error = %err, "request failed");
            err.into_response_in(Dialect::OpenAi)
        }
    }
}

fn call_model_is_empty(call: &Call) -> bool {
    match call {
        Call::Chat(r) => r.model.trim().is_empty(),
        Call::Passthrough(_, r) => r.model.trim().is_empty(),
    }
}

/// The upstream's body with the gateway's headers.
pub fn respond(outcome: Outcome, ctx: &RequestCtx) -> Response {
    let dep = &outcome.deployment;
    let streaming = matches!(outcome.payload, Payload::Stream(_));
    let mut resp = match outcome.payload {
        Payload::Full(b) => Response::new(Body::from(b)),
        Payload::Stream(body) => Response::new(body),
    };
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    let content_type = if streaming {
        HeaderValue::from_static("text/event-stream")
    } else {
        outcome
            .content_type
            .unwrap_or_else(|| HeaderValue::from_static("application/json"))
    };
    h.insert(http::header::CONTENT_TYPE, content_type);
    if streaming {
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    insert(h, "x-litellm-model-id", &dep.id);
    let route = outcome
        .route
        .unwrap_or_else(|| crate::routing::local_first::Route::of(dep));
    h.insert("x-switchyard-route", HeaderValue::from_static(route.as_str()));
    if let Some(reason) = &outcome.reason {
        insert(h, "x-switchyard-reason", reason);
    }
    insert(h, "x-litellm-model-group", &dep.model_name);
    insert(h, "x-litellm-model-api-base", &dep.api_base);
    insert(h, "x-litellm-attempted-retries", &outcome.retries.to_string());
    insert(h, "x-litellm-attempted-fallbacks", &outcome.fallbacks.to_string());
    let total = ctx.started.elapsed();
    let overhead = total.saturating_sub(outcome.upstream_time);
    insert(
        h,
        "x-litellm-overhead-duration-ms",
        &format!("{:.3}", overhead.as_secs_f64() * 1000.0),
    );
    insert(
        h,
        "x-litellm-response-duration-ms",
        &format!("{:.3}", total.as_secs_f64() * 1000.0),
    );
    resp
}

fn insert(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn model_object(id: &str, created: u64) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": "openai"})
}

pub async fn list_models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.auth.authenticate(&headers) {
        return e.into_response();
    }
    let data: Vec<_> = state
        .models
        .public_names()
        .iter()
        .map(|n| model_object(n, state.started_unix))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

pub async fn get_model(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = state.auth.authenticate(&headers) {
        return e.into_response();
    }
    if state.models.public_names().iter().any(|n| n == &id) {
        Json(model_object(&id, state.started_unix)).into_response()
    } else {
        GatewayError::ModelNotFound(id).into_response()
    }
}
