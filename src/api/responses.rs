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
    // The response store (`api::responses_store::around`) replaces a `previous_response_id` by
    // its conversation and remembers the answer when `store`; with the store off the id goes
    // upstream as sent to a deployment serving Responses, and gets a clear 400 elsewhere
    // (`translate::responses::check_translatable`).
    super::responses_store::around(&state, req, |mut req| {
        let parsed = super::responses_store::take_parsed(&mut req);
        handle(&state, req, Dialect::Responses, move |bytes| {
            let body: Map<String, Value> = match parsed {
                Some(body) => body,
                None => parse_json(bytes)?,
            };
            Ok(Call::Chat(responses::to_canonical(body)?))
        })
    })
    .await
}
