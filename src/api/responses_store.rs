//! Stored responses at the edge: `GET` / `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`, and the two calls `POST /v1/responses` makes:
//! [`history`] before the pipeline (`previous_response_id`) and [`remember`] after it
//! (`store`, true unless the client says false, as OpenAI).
//!
//! A virtual key reads and deletes only the responses it stored; the master key (and an open
//! loopback gateway) reads all. Another key's response answers exactly as a missing one, so a
//! key cannot learn which ids exist.

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Dialect, GatewayError};
use crate::store::responses::{StoredResponse, ADMIN_OWNER};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Whether a `POST /v1/responses` with `store` as the client sent it is stored: omitted means
/// true (OpenAI's default), and nothing is stored without a database or with
/// `disable_responses_store`. The handler reports the answer as the Response object's `store`.
pub fn stores(state: &AppState, requested: Option<bool>) -> bool {
    requested.unwrap_or(true) && state.responses.is_some()
}

/// The owner written on a row this caller stores.
fn owner(caller: &Caller) -> &str {
    match caller.key() {
        Some(k) => &k.token,
        None => ADMIN_OWNER,
    }
}

/// The owner a read by this caller is limited to; `None`: every row (the admin).
fn reader(caller: &Caller) -> Option<&str> {
    caller.key().map(|k| k.token.as_str())
}

fn unavailable(e: crate::store::StoreError) -> GatewayError {
    tracing::warn!(error = %e, "stored responses: database call failed");
    GatewayError::StoreUnavailable(e.to_string())
}

/// The conversation `previous_response_id` continues: its input items (every earlier turn
/// included), then its output items. The new turn's request is this followed by its own input
/// (`instructions` are not carried over, as OpenAI). An id that is unknown, expired or another
/// key's is a 400 on `previous_response_id`, as is any id when nothing is stored.
pub async fn history(
    state: &AppState,
    caller: &Caller,
    previous_response_id: &str,
) -> Result<Vec<Value>, GatewayError> {
    let Some(responses) = &state.responses else {
        return Err(GatewayError::invalid_param(
            "previous_response_id",
            format!(
                "previous_response_id '{previous_response_id}' cannot be served: this gateway stores no responses \
                 (no database, or general_settings.disable_responses_store). Send the whole conversation as `input`."
            ),
        ));
    };
    match responses.get(previous_response_id, reader(caller)).await {
        Ok(Some(row)) => Ok(row.history()),
        Ok(None) => Err(GatewayError::PreviousResponseNotFound(previous_response_id.to_string())),
        Err(e) => Err(unavailable(e)),
    }
}

/// Stores a finished response in the background (never delays the answer). `input_items` is
/// the whole conversation up to this turn: [`history`]'s items, then this turn's input as items
/// (a string input as one user message). The output items are `response["output"]`. A row over
/// `responses_store_max_mb`, or a write that keeps failing, is logged and counted.
pub fn remember(state: &AppState, caller: &Caller, id: &str, model: &str, input_items: Vec<Value>, response: &Value) {
    let Some(responses) = &state.responses else {
        return;
    };
    let now = crate::store::now_ms();
    let ttl_ms = i64::try_from(responses.ttl().as_millis()).unwrap_or(i64::MAX);
    let row = StoredResponse {
        id: id.to_string(),
        owner: owner(caller).to_string(),
        model: model.to_string(),
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
        previous_response_id: response["previous_response_id"].as_str().map(str::to_string),
        input: input_items,
        output: response["output"].as_array().cloned().unwrap_or_default(),
        response: response.clone(),
    };
    if let Err(e) = responses.remember(row) {
        tracing::warn!(response_id = %id, "response not stored: {e}");
    }
}

/// Authenticates and finds the store, or the error to answer with.
async fn open<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Caller, &'a crate::store::responses::ResponseStore), GatewayError> {
    let caller = state.auth.authenticate(headers).await?;
    match &state.responses {
        Some(r) => Ok((caller, r)),
        None => Err(GatewayError::ResponseNotFound(id.to_string())),
    }
}

async fn find(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Arc<StoredResponse>, GatewayError> {
    let (caller, responses) = open(state, headers, id).await?;
    responses
        .get(id, reader(&caller))
        .await
        .map_err(unavailable)?
        .ok_or_else(|| GatewayError::ResponseNotFound(id.to_string()))
}

fn answer(result: Result<Value, GatewayError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response_in(Dialect::Responses),
    }
}

/// `GET /v1/responses/{id}`: the Response object as it was answered.
pub async fn get_response(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    answer(find(&state, &headers, &id).await.map(|row| row.response.clone()))
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete_response(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (caller, responses) = open(&state, &headers, &id).await?;
        if responses.delete(&id, reader(&caller)).await.map_err(unavailable)? {
            Ok(json!({"id": id, "object": "response", "deleted": true}))
        } else {
            Err(GatewayError::ResponseNotFound(id.clone()))
        }
    }
    .await;
    answer(result)
}

/// The most items one page lists, and the default (OpenAI's).
const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 20;

/// `GET /v1/responses/{id}/input_items?limit=&order=&after=`: the conversation's input items
/// as an OpenAI list (`order` defaults to `desc`, newest first, as OpenAI).
pub async fn input_items(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let page = Page::parse(&query)?;
        let row = find(&state, &headers, &id).await?;
        page.list(&row)
    }
    .await;
    answer(result)
}

struct Page {
    limit: usize,
    ascending: bool,
    after: Option<String>,
}

impl Page {
    fn parse(q: &HashMap<String, String>) -> Result<Page, GatewayError> {
        let limit = match q.get("limit") {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(GatewayError::invalid_param(
                        "limit",
                        format!("limit must be an integer from 1 to {MAX_LIMIT}, found {s:?}"),
                    ))
                }
            },
        };
        let ascending = match q.get("order").map(String::as_str) {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => {
                return Err(GatewayError::invalid_param(
                    "order",
                    format!("order must be 'asc' or 'desc', found {o:?}"),
                ))
            }
        };
        Ok(Page {
            limit,
            ascending,
            after: q.get("after").cloned(),
        })
    }

    fn list(&self, row: &StoredResponse) -> Result<Value, GatewayError> {
        let mut items: Vec<Value> = row
            .input
            .iter()
            .enumerate()
            .map(|(i, item)| as_listed(&row.id, i, item))
            .collect();
        if !self.ascending {
            items.reverse();
        }
        let start = match &self.after {
            None => 0,
            Some(after) => {
                items
                    .iter()
                    .position(|it| it["id"].as_str() == Some(after.as_str()))
                    .ok_or_else(|| {
                        GatewayError::invalid_param(
                            "after",
                            format!("No input item with id '{after}' in response '{}'.", row.id),
                        )
                    })?
                    + 1
            }
        };
        let rest = items.get(start..).unwrap_or_default();
        let page: Vec<Value> = rest.iter().take(self.limit).cloned().collect();
        Ok(json!({
            "object": "list",
            "data": page,
            "first_id": page.first().map(|it| it["id"].clone()),
            "last_id": page.last().map(|it| it["id"].clone()),
            "has_more": rest.len() > page.len(),
        }))
    }
}

/// An input item as OpenAI lists it: with an `id` (a stable one made up when the client sent
/// none), and a bare `{role, content}` message as a `message` item whose string content is one
/// text part.
fn as_listed(response_id: &str, index: usize, item: &Value) -> Value {
    let mut it = item.clone();
    let Some(obj) = it.as_object_mut() else {
        return json!({"id": format!("item_{response_id}_{index}"), "type": "unknown", "value": item});
    };
    if obj.get("type").is_none() && obj.contains_key("role") {
        obj.insert("type".into(), "message".into());
    }
    let is_message = obj.get("type").and_then(Value::as_str) == Some("message");
    if is_message {
        if let Some(Value::String(text)) = obj.get("content") {
            let kind = if obj.get("role").and_then(Value::as_str) == Some("assistant") {
                "output_text"
            } else {
                "input_text"
            };
            let part = json!([{"type": kind, "text": text}]);
            obj.insert("content".into(), part);
        }
    }
    if !obj.get("id").is_some_and(Value::is_string) {
        let prefix = if is_message { "msg" } else { "item" };
        let stem = response_id.strip_prefix("resp_").unwrap_or(response_id);
        obj.insert("id".into(), format!("{prefix}_{stem}_{index}").into());
    }
    it
}
