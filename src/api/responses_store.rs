//! Stored responses at the edge: `GET` / `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`, and [`around`], which wraps `POST /v1/responses`:
//! [`history`] before the pipeline (`previous_response_id` becomes the conversation it names)
//! and [`remember`] after it (`store`, true unless the client says false, as OpenAI). The two
//! seams are public for a handler that wants to call them itself.
//!
//! A virtual key reads and deletes only the responses it stored; the master key (and an open
//! loopback gateway) reads all. Another key's response answers exactly as a missing one, so a
//! key cannot learn which ids exist.

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Dialect, GatewayError};
use crate::store::responses::{ResponseStore, StoredResponse, ADMIN_OWNER};
use axum::extract::{Path, Query, Request, State};
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
    responses.remember(row(responses, caller, id, model, input_items, response));
}

fn row(
    responses: &ResponseStore,
    caller: &Caller,
    id: &str,
    model: &str,
    input_items: Vec<Value>,
    response: &Value,
) -> StoredResponse {
    let now = crate::store::now_ms();
    let ttl_ms = i64::try_from(responses.ttl().as_millis()).unwrap_or(i64::MAX);
    StoredResponse {
        id: id.to_string(),
        owner: owner(caller).to_string(),
        model: model.to_string(),
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
        previous_response_id: response["previous_response_id"].as_str().map(str::to_string),
        input: input_items,
        output: response["output"].as_array().cloned().unwrap_or_default(),
        response: response.clone(),
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

/// `POST /v1/responses` around `serve` (the handler proper): with the store on, a
/// `previous_response_id` is replaced by the conversation it names (so every deployment, whatever
/// its wire, sees the whole conversation and the upstream never sees the gateway's ids; the body
/// is otherwise untouched, `store` included, so passthrough stays faithful), and unless `store`
/// is false a successful answer (the JSON object, or a stream's `response.completed` /
/// `response.incomplete` event) is remembered. With the store off the body goes to `serve` as
/// sent.
pub async fn around<F, Fut>(state: &AppState, req: Request, serve: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    if state.responses.is_none() {
        return serve(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let prepared = async {
        let caller = state.auth.authenticate(&parts.headers).await?;
        let bytes = super::read_body(body, state.config.general.max_request_size_bytes).await?;
        let turn = Turn::prepare(state, &caller, &bytes).await?;
        Ok::<_, GatewayError>((caller, bytes, turn))
    }
    .await;
    let (caller, bytes, mut turn) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response_in(Dialect::Responses),
    };
    let bytes = match &turn.rewritten {
        Some(b) => {
            parts.headers.insert(http::header::CONTENT_LENGTH, b.len().into());
            b.clone()
        }
        None => bytes,
    };
    parts.extensions.insert(super::Authenticated(caller.clone()));
    if let Some(body) = turn.parsed.take() {
        // The handler takes the body as parsed here rather than parsing it again.
        parts.extensions.insert(ParsedBody(body));
    }
    let resp = serve(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    if !turn.store || resp.status() != http::StatusCode::OK {
        return resp;
    }
    turn.remember_from(state, caller, resp).await
}

/// A `POST /v1/responses` body the store has parsed already (a JSON object, `previous_response_id`
/// not rewritten): the handler takes it from the request's extensions instead of parsing the bytes
/// again ([`take_parsed`]).
#[derive(Clone)]
pub struct ParsedBody(pub serde_json::Map<String, Value>);

/// The body `around` parsed, if it did.
pub fn take_parsed(req: &mut Request) -> Option<serde_json::Map<String, Value>> {
    req.extensions_mut().remove::<ParsedBody>().map(|p| p.0)
}

/// One `POST /v1/responses` as the store sees it.
struct Turn {
    store: bool,
    model: String,
    /// The conversation up to and including this turn's input.
    conversation: Vec<Value>,
    /// The `previous_response_id` replaced by its conversation (echoed on the stored object).
    previous: Option<String>,
    /// The body to serve when it had to change.
    rewritten: Option<bytes::Bytes>,
    /// The body as parsed, for the handler, when it was served unchanged.
    parsed: Option<serde_json::Map<String, Value>>,
}

impl Turn {
    /// Reads what the store needs from the body, parsed once for the store and the handler; a
    /// body that is not a JSON object is left to the handler to judge.
    async fn prepare(state: &AppState, caller: &Caller, bytes: &[u8]) -> Result<Turn, GatewayError> {
        let untouched = Turn {
            store: false,
            model: String::new(),
            conversation: Vec::new(),
            previous: None,
            rewritten: None,
            parsed: None,
        };
        let Ok(mut body) = serde_json::from_slice::<serde_json::Map<String, Value>>(bytes) else {
            return Ok(untouched);
        };
        let requested = match body.get("store") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "store",
                    "Invalid type for 'store': expected a boolean.",
                ))
            }
        };
        let previous = match body.get("previous_response_id") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "previous_response_id",
                    "Invalid type for 'previous_response_id': expected a non-empty string.",
                ))
            }
        };
        let store = stores(state, requested);
        if !store && previous.is_none() {
            // Codex's case (`store: false`): nothing to remember, nothing to rewrite.
            return Ok(Turn {
                parsed: Some(body),
                ..untouched
            });
        }
        let input = match body.get("input") {
            Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
            Some(Value::Array(items)) => items.clone(),
            // Anything else is refused by the handler in its own words.
            _ => Vec::new(),
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (conversation, rewritten, parsed) = match &previous {
            None => (input, None, Some(body)),
            Some(id) => {
                let mut conversation = history(state, caller, id).await?;
                conversation.extend(input);
                body.remove("previous_response_id");
                body.insert("input".into(), Value::Array(conversation.clone()));
                let bytes = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
                // Served as bytes, so the handler judges the rewritten body (its size included).
                (conversation, Some(bytes.into()), None)
            }
        };
        Ok(Turn {
            store,
            model,
            conversation,
            previous,
            rewritten,
            parsed,
        })
    }

    /// The stored (and, for a JSON answer, returned) object: as answered, with the
    /// `previous_response_id` the client sent and `store: true` (omitted `store` means true).
    fn finish(&self, response: &mut Value) {
        let Some(obj) = response.as_object_mut() else {
            return;
        };
        if let Some(prev) = &self.previous {
            obj.insert("previous_response_id".into(), prev.clone().into());
        }
        obj.insert("store".into(), true.into());
    }

    fn remember(self, state: &AppState, caller: &Caller, response: &Value) {
        match response["id"].as_str() {
            Some(id) => remember(state, caller, id, &self.model, self.conversation, response),
            None => tracing::warn!("a Responses answer without an id is not stored"),
        }
    }

    /// Remembers the answer in `resp` and hands `resp` on: a JSON body is read whole (it is in
    /// memory already), a stream is watched for its last event as it passes.
    async fn remember_from(self, state: &AppState, caller: Caller, resp: Response) -> Response {
        let is_json = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let (mut parts, body) = resp.into_parts();
        if is_json {
            let bytes = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(b) => b,
                Err(e) => {
                    return GatewayError::Internal(format!("reading the answer: {e}"))
                        .into_response_in(Dialect::Responses)
                }
            };
            let Ok(mut response) = serde_json::from_slice::<Value>(&bytes) else {
                return Response::from_parts(parts, axum::body::Body::from(bytes));
            };
            self.finish(&mut response);
            self.remember(state, &caller, &response);
            let out = serde_json::to_vec(&response).map(bytes::Bytes::from).unwrap_or(bytes);
            parts.headers.insert(http::header::CONTENT_LENGTH, out.len().into());
            return Response::from_parts(parts, axum::body::Body::from(out));
        }
        let Some(responses) = state.responses.clone() else {
            return Response::from_parts(parts, body);
        };
        let mut tap = FinalEvent::default();
        let mut pending = Some((self, caller, responses));
        let stream = futures_util::StreamExt::map(body.into_data_stream(), move |chunk| {
            if let (Ok(bytes), Some(_)) = (&chunk, &pending) {
                if let Some(mut response) = tap.feed(bytes) {
                    if let Some((turn, caller, responses)) = pending.take() {
                        turn.finish(&mut response);
                        turn.remember_with(&responses, &caller, &response);
                    }
                }
            }
            chunk
        });
        Response::from_parts(parts, axum::body::Body::from_stream(stream))
    }

    /// As `remember`, from a stream (which no longer holds the state).
    fn remember_with(self, responses: &Arc<ResponseStore>, caller: &Caller, response: &Value) {
        let Some(id) = response["id"].as_str() else {
            tracing::warn!("a Responses stream's final object has no id: not stored");
            return;
        };
        responses.remember(row(responses, caller, id, &self.model, self.conversation, response));
    }
}

/// Picks a stream's final `response.completed` (or `response.incomplete`) object out of the SSE
/// bytes going by, framed by the shared parser (`crate::sse::Framer`: events are slices of the
/// chunk, only an event split across chunks is held); only the final event is parsed.
#[derive(Default)]
struct FinalEvent {
    framer: crate::sse::Framer,
}

impl FinalEvent {
    fn feed(&mut self, chunk: &[u8]) -> Option<Value> {
        let mut found = None;
        self.framer.push(chunk, |ev| {
            if found.is_none() {
                found = final_object(ev.data);
            }
        });
        found
    }
}

/// The `response` of one event's data if it is the stream's final object.
fn final_object(data: &[u8]) -> Option<Value> {
    let finder = |n: &str| memchr::memmem::find(data, n.as_bytes()).is_some();
    if !finder("\"response.completed\"") && !finder("\"response.incomplete\"") {
        return None;
    }
    let mut v: Value = serde_json::from_slice(data).ok()?;
    match v["type"].as_str() {
        Some("response.completed" | "response.incomplete") => Some(v["response"].take()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\"}}\n\n\
        event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"response.completed\"}\n\n\
        event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"output\":[]}}\n\n";

    /// The final object is found however the bytes are cut, and only once a blank line ends it.
    #[test]
    fn the_final_event_is_found_across_any_chunking() {
        for size in 1..STREAM.len() {
            let mut tap = FinalEvent::default();
            let found: Vec<Value> = STREAM.as_bytes().chunks(size).filter_map(|c| tap.feed(c)).collect();
            assert_eq!(found, vec![json!({"id": "r1", "output": []})], "chunks of {size}");
        }
        let crlf = STREAM.replace('\n', "\r\n");
        let mut tap = FinalEvent::default();
        let found: Vec<Value> = crlf.as_bytes().chunks(7).filter_map(|c| tap.feed(c)).collect();
        assert_eq!(found.len(), 1, "CRLF lines");
        let mut tap = FinalEvent::default();
        assert_eq!(tap.feed(&STREAM.as_bytes()[..STREAM.len() - 2]), None, "not yet ended");
    }

    #[test]
    fn listed_items_get_ids_and_message_shape() {
        let item = as_listed("resp_x", 2, &json!({"role": "assistant", "content": "hi"}));
        assert_eq!(
            item,
            json!({"id": "msg_x_2", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]})
        );
        let call = json!({"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"});
        assert_eq!(
            as_listed("resp_x", 0, &call),
            call,
            "an item with an id is listed as stored"
        );
    }
}
