//! The OpenAI Responses dialect: `POST /v1/responses`, what Codex CLI, the Agents SDK and
//! `client.responses.create` call. The request becomes the canonical chat request (its body kept
//! for deployments that serve Responses themselves), so every router feature applies; answers
//! come back as Responses objects or event streams whichever wire the deployment speaks.

use super::{handle, parse_json};
use crate::app::AppState;
use crate::error::Dialect;
use crate::pipeline::Call;
use crate::translate::responses;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value};
use std::sync::Arc;

pub async fn create(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, Dialect::Responses, |bytes| {
        let body: Map<String, Value> = parse_json(bytes)?;
        // seam: respstore — with `previous_response_id` (and the store enabled), prepend
        // `history(state, caller, id)` to `input` here. Until then the id goes upstream as sent
        // to a deployment serving Responses, and gets a clear 400 elsewhere
        // (`translate::responses::check_translatable`).
        Ok(Call::Chat(responses::to_canonical(body)?))
    })
    .await
}

/// seam: respstore — called with the request's input items and the final Responses object of a
/// completed answer (whole, or the `response.completed` event's of a stream) when `store` is
/// true. A no-op until `api::responses_store::remember` is wired here.
pub fn remember(_state: &AppState, _items: Vec<Value>, _response: &Value) {}
