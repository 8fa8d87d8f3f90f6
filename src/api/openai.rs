//! The OpenAI dialect: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.
//! Handlers stay thin: authenticate, read and parse, call the pipeline, write headers.

use super::{handle, parse_json};
use crate::app::AppState;
use crate::error::{Dialect, GatewayError};
use crate::pipeline::Call;
use crate::types::{ChatRequest, Endpoint, PassthroughRequest};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use std::sync::Arc;

pub async fn chat_completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, Dialect::OpenAi, |bytes| {
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
    handle(&state, req, Dialect::OpenAi, |bytes| {
        Ok(Call::Passthrough(
            Endpoint::Completions,
            parse_json::<PassthroughRequest>(bytes)?,
        ))
    })
    .await
}

pub async fn embeddings(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, Dialect::OpenAi, |bytes| {
        Ok(Call::Passthrough(
            Endpoint::Embeddings,
            parse_json::<PassthroughRequest>(bytes)?,
        ))
    })
    .await
}

fn model_object(id: &str, created: u64) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": "openai"})
}

pub async fn list_models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let caller = match state.auth.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // A virtual key sees the models it may call.
    let data: Vec<_> = state
        .models
        .public_names()
        .iter()
        .filter(|n| caller.key().is_none_or(|k| k.allows_model(n, n)))
        .map(|n| model_object(n, state.started_unix))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

pub async fn get_model(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = state.auth.authenticate(&headers).await {
        return e.into_response();
    }
    if state.models.public_names().iter().any(|n| n == &id) {
        Json(model_object(&id, state.started_unix)).into_response()
    } else {
        GatewayError::ModelNotFound(id).into_response()
    }
}
