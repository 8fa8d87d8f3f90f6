//! The Anthropic dialect: `POST /v1/messages` and `/v1/messages/count_tokens`, what Claude Code
//! and the Anthropic SDKs call. Requests become canonical requests, so every router feature
//! (groups, aliases, wildcards, fallbacks, cooldowns, local-first) applies; answers come back in
//! Anthropic's shape whichever wire the deployment speaks, errors included.

use super::{handle, read_body};
use crate::app::AppState;
use crate::error::{Dialect, GatewayError};
use crate::pipeline::Call;
use crate::translate::anthropic::request_to_canonical;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn parse(bytes: &[u8]) -> Result<Value, GatewayError> {
    super::parse_json::<Value>(bytes)
}

pub async fn messages(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, req, Dialect::Anthropic, |bytes| {
        Ok(Call::Chat(request_to_canonical(parse(bytes)?)?))
    })
    .await
}

/// Token count estimate (4 characters a token over system, messages and tools), in Anthropic's
/// shape. An estimate is what every non-Anthropic upstream allows; Claude Code uses it to decide
/// when to compact, where an estimate is enough.
pub async fn count_tokens(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        state.auth.authenticate(&parts.headers).await?;
        let bytes = read_body(body, state.config.general.max_request_size_bytes).await?;
        let v = parse(&bytes)?;
        if !v.get("model").is_some_and(Value::is_string) {
            return Err(GatewayError::invalid_param("model", "model: field required"));
        }
        let Some(messages) = v.get("messages").filter(|m| m.is_array()) else {
            return Err(GatewayError::invalid_param(
                "messages",
                "messages: field required (a list)",
            ));
        };
        let mut chars = messages.to_string().len();
        for k in ["system", "tools"] {
            chars += v.get(k).map(|x| x.to_string().len()).unwrap_or(0);
        }
        Ok(json!({"input_tokens": chars / 4 + 1}))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response_in(Dialect::Anthropic),
    }
}
