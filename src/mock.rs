//! An OpenAI-shaped upstream of our own, for tests and benchmarks: chat (streaming and not),
//! completions, embeddings and models, with injectable status, latency, hangs and stream cuts.
//!
//! Behaviour is set from a test with [`MockUpstream::set`], or over HTTP with
//! `POST /__mock/behaviour` (a [`Behaviour`] as JSON) for scripts in other languages.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    /// Answer every call with this error status (until `fail_times` runs out, if set).
    pub status: Option<u16>,
    /// Only the next N calls fail with `status`; later calls succeed.
    pub fail_times: Option<u32>,
    pub error_message: Option<String>,
    pub retry_after: Option<u64>,
    /// Wait before the response head.
    pub latency_ms: u64,
    /// Never answer.
    pub hang: bool,
    /// Number of content chunks in a stream (default 3).
    pub chunks: Option<usize>,
    pub chunk_delay_ms: u64,
    /// Break the connection after this many content chunks.
    pub cut_after: Option<usize>,
    /// Stop sending (but keep the connection open) after this many chunks.
    pub stall_after: Option<usize>,
    /// End the stream cleanly after this many chunks but without `[DONE]`.
    pub end_without_done_after: Option<usize>,
    /// After this many chunks send an error event, then `[DONE]` (as vLLM does when it fails
    /// mid-stream).
    pub error_event_after: Option<usize>,
    /// Fixed reply text; by default the reply echoes the last user message.
    pub reply: Option<String>,
    /// Keep the last requests for inspection (bounded).
    pub record: Option<bool>,
    /// Prometheus text served at `GET /metrics` (404 when unset, unless `capacity` is set).
    pub metrics: Option<String>,
    /// JSON served at `GET /api/ps` (Ollama); 404 when unset.
    pub api_ps: Option<Value>,
    /// Number of slots listed at `GET /slots` (llama-server); 404 when unset.
    pub slots: Option<usize>,
    /// An engine of this many concurrent requests: more wait in a queue, and `/metrics` reports
    /// running and waiting counts (`engine`: "vllm", the default, or "llamacpp").
    pub capacity: Option<usize>,
    /// With `capacity`: time each request holds its slot.
    pub service_ms: u64,
    pub engine: Option<String>,
    /// A scripted two-turn exchange for real clients: while the request offers a tool of this
    /// name and carries no tool result yet, the reply is a call to it; after that, `reply`.
    pub tool_call: Option<ScriptedCall>,
}

/// The tool call [`Behaviour::tool_call`] answers turn 1 with, shaped for the wire that asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScriptedCall {
    pub name: String,
    /// The call's arguments (an object), e.g. `{"file_path": "/tmp/x/notes.txt"}`.
    pub arguments: Value,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

const MAX_RECORDED: usize = 1000;

#[derive(Default)]
struct MockState {
    behaviour: Mutex<Behaviour>,
    /// (capacity, its semaphore) while `capacity` is set.
    engine: Mutex<Option<(usize, Arc<tokio::sync::Semaphore>)>>,
    running: AtomicU64,
    waiting: AtomicU64,
    recorded: Mutex<Vec<Recorded>>,
    hits: AtomicU64,
    name: String,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on `listener` with TCP_NODELAY on each connection: without it a stream's small
/// events wait on Nagle's algorithm and the peer's delayed ACK (~40 ms each at concurrency).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

impl MockUpstream {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_named("mock", "127.0.0.1:0".parse().expect("literal address")).await
    }

    pub async fn start_named(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState {
            name: name.to_string(),
            ..Default::default()
        });
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = serve(listener, app).await;
        });
        Ok(MockUpstream { addr, state, task })
    }

    /// `http://127.0.0.1:PORT/v1`, what a config's `api_base` names.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, b: Behaviour) {
        *lock(&self.state.behaviour) = b;
    }

    /// Calls received on the API routes (not counting `/__mock`).
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.recorded).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn router_standalone(name: &str, b: Behaviour) -> Router {
    let state = Arc::new(MockState {
        name: name.to_string(),
        behaviour: Mutex::new(b),
        ..Default::default()
    });
    router(state)
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/responses", post(responses))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        // `DELETE /__mock/requests` forgets what was recorded; other routes are recorded, then 404.
        .route("/__mock/requests", axum::routing::delete(forget))
        .fallback(unrouted)
        .route("/api/ps", get(api_ps))
        .route("/slots", get(slots))
        .route("/__mock/behaviour", post(set_behaviour))
        .route("/__mock/stats", get(stats))
        .route("/__mock/requests", get(recorded))
        .with_state(state)
}

async fn set_behaviour(State(st): State<Arc<MockState>>, Json(b): Json<Behaviour>) -> StatusCode {
    *lock(&st.behaviour) = b;
    StatusCode::NO_CONTENT
}

async fn metrics(State(st): State<Arc<MockState>>) -> Response {
    let b = lock(&st.behaviour).clone();
    if let Some(text) = b.metrics {
        return text.into_response();
    }
    if b.capacity.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (run, wait) = (st.running.load(Ordering::Relaxed), st.waiting.load(Ordering::Relaxed));
    let text = match b.engine.as_deref() {
        Some("llamacpp") => format!("llamacpp:requests_processing {run}\nllamacpp:requests_deferred {wait}\n"),
        _ => format!(
            "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"m\"}} {run}\nvllm:num_requests_waiting{{model_name=\"m\"}} {wait}\nvllm:kv_cache_usage_perc{{model_name=\"m\"}} 0.1\n"
        ),
    };
    text.into_response()
}

async fn api_ps(State(st): State<Arc<MockState>>) -> Response {
    match lock(&st.behaviour).api_ps.clone() {
        Some(v) => Json(v).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn slots(State(st): State<Arc<MockState>>) -> Response {
    match lock(&st.behaviour).slots {
        Some(n) => Json(
            (0..n)
                .map(|i| json!({"id": i, "is_processing": false}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The recorded requests, oldest first: path, the `anthropic-*` headers (never credentials) and
/// the body, for scripts that check what an upstream received.
async fn recorded(State(st): State<Arc<MockState>>) -> Json<Value> {
    let rec = lock(&st.recorded);
    let list: Vec<Value> = rec
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("anthropic-"))
                .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.to_str().ok()?.to_string()))))
                .collect();
            json!({"path": r.path, "headers": headers, "body": r.body})
        })
        .collect();
    Json(Value::Array(list))
}

async fn stats(State(st): State<Arc<MockState>>) -> Json<Value> {
    Json(json!({"name": st.name, "hits": st.hits.load(Ordering::Relaxed)}))
}

async fn forget(State(st): State<Arc<MockState>>) -> StatusCode {
    lock(&st.recorded).clear();
    StatusCode::NO_CONTENT
}

/// Any other route: recorded (so a client's first call to an API the mock lacks can still be
/// captured), then 404.
async fn unrouted(State(st): State<Arc<MockState>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let record = lock(&st.behaviour).record.unwrap_or(true);
    if let (true, Ok(parsed)) = (record, serde_json::from_slice::<Value>(&body)) {
        let mut rec = lock(&st.recorded);
        if rec.len() >= MAX_RECORDED {
            rec.remove(0);
        }
        rec.push(Recorded {
            path: uri.path().to_string(),
            headers,
            body: parsed,
        });
    }
    StatusCode::NOT_FOUND.into_response()
}

async fn models(State(st): State<Arc<MockState>>) -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": format!("{}-model", st.name), "object": "model", "created": 0, "owned_by": "mock"}]}),
    )
}

/// Common preamble: count, record, and decide whether to fail, hang or wait.
async fn prelude(st: &MockState, path: &str, headers: HeaderMap, body: &Bytes) -> Result<(Behaviour, Value), Response> {
    st.hits.fetch_add(1, Ordering::Relaxed);
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err((
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": format!("mock: bad JSON: {e}"), "type": "invalid_request_error"}})),
            )
                .into_response())
        }
    };
    let b = {
        let mut guard = lock(&st.behaviour);
        let snapshot = guard.clone();
        if snapshot.status.is_some() {
            if let Some(n) = guard.fail_times.as_mut() {
                if *n == 0 {
                    guard.status = None;
                } else {
                    *n -= 1;
                }
            }
        }
        snapshot
    };
    if b.record.unwrap_or(true) {
        let mut rec = lock(&st.recorded);
        if rec.len() >= MAX_RECORDED {
            rec.remove(0);
        }
        rec.push(Recorded {
            path: path.to_string(),
            headers,
            body: parsed.clone(),
        });
    }
    if b.hang {
        std::future::pending::<()>().await;
    }
    if let Some(cap) = b.capacity {
        let sem = {
            let mut e = lock(&st.engine);
            match &*e {
                Some((c, s)) if *c == cap => s.clone(),
                _ => {
                    let s = Arc::new(tokio::sync::Semaphore::new(cap.max(1)));
                    *e = Some((cap, s.clone()));
                    s
                }
            }
        };
        st.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = sem.acquire_owned().await;
        st.waiting.fetch_sub(1, Ordering::Relaxed);
        st.running.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(b.service_ms)).await;
        st.running.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    }
    if b.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.latency_ms)).await;
    }
    let failing = b.status.is_some() && b.fail_times != Some(0);
    if let (true, Some(status)) = (failing, b.status) {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let msg = b
            .error_message
            .clone()
            .unwrap_or_else(|| format!("mock {} failure", st.name));
        let mut resp = (
            code,
            Json(json!({"error": {"message": msg, "type": "mock_error", "param": null, "code": status.to_string()}})),
        )
            .into_response();
        if let Some(ra) = b.retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.to_string().parse().expect("digits"));
        }
        return Err(resp);
    }
    Ok((b, parsed))
}

fn reply_text(b: &Behaviour, req: &Value) -> String {
    if let Some(r) = &b.reply {
        return r.clone();
    }
    let last_user = req["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .or_else(|| req["prompt"].as_str().map(str::to_string))
        .unwrap_or_default();
    format!("echo: {last_user}")
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count().max(1) as u64
}

fn prompt_tokens(req: &Value) -> u64 {
    let text = req
        .get("messages")
        .or_else(|| req.get("prompt"))
        .or_else(|| req.get("input"))
        .map(|v| v.to_string())
        .unwrap_or_default();
    words(&text)
}

async fn chat(State(st): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (b, req) = match prelude(&st, "/v1/chat/completions", headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = reply_text(&b, &req);
    let model = req["model"].as_str().unwrap_or("mock").to_string();
    let (pt, ct) = (prompt_tokens(&req), words(&text));
    if let Some((name, args)) = scripted_call(&b, &req, "function").or_else(|| wants_tool(&req, "function")) {
        return openai_tool_call(&req, &model, &name, &args);
    }
    if req["stream"] == true {
        let include_usage = req["stream_options"]["include_usage"] == true;
        return stream(b, text, move |i, piece, last| {
            if last {
                let mut v = vec![
                    json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                ];
                if include_usage {
                    v.push(json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}));
                }
                return v;
            }
            let delta = if i == 0 {
                json!({"role": "assistant", "content": piece})
            } else {
                json!({"content": piece})
            };
            vec![
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
            ]
        });
    }
    Json(json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    }))
    .into_response()
}

async fn completions(State(st): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (b, req) = match prelude(&st, "/v1/completions", headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = reply_text(&b, &req);
    let model = req["model"].as_str().unwrap_or("mock").to_string();
    let (pt, ct) = (prompt_tokens(&req), words(&text));
    if req["stream"] == true {
        return stream(b, text, move |_, piece, last| {
            let finish = if last { json!("stop") } else { Value::Null };
            vec![
                json!({"id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model, "choices": [{"index": 0, "text": if last { "" } else { piece }, "finish_reason": finish, "logprobs": null}]}),
            ]
        });
    }
    Json(json!({
        "id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    }))
    .into_response()
}

async fn embeddings(State(st): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, req) = match prelude(&st, "/v1/embeddings", headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &req["input"] {
        Value::Array(a) => a.iter().map(|v| v.to_string()).collect(),
        other => vec![other.to_string()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let seed = s.bytes().fold(7u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
            let v: Vec<f64> = (0..8)
                .map(|k| ((seed.rotate_left(k * 4) % 1000) as f64) / 1000.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let pt = prompt_tokens(&req);
    Json(json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": pt, "total_tokens": pt}})).into_response()
}

/// An SSE response: `make(i, piece, last)` builds the events for content piece `i`.
fn stream(b: Behaviour, text: String, make: impl Fn(usize, &str, bool) -> Vec<Value> + Send + 'static) -> Response {
    let n = b.chunks.unwrap_or(3).max(1);
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let per = words.len().div_ceil(n).max(1);
    let pieces: Vec<String> = (0..n)
        .map(|i| words.iter().skip(i * per).take(per).copied().collect::<String>())
        .collect();
    let delay = Duration::from_millis(b.chunk_delay_ms);
    let s = async_stream(
        pieces,
        delay,
        [
            b.cut_after,
            b.end_without_done_after,
            b.stall_after,
            b.error_event_after,
        ],
        make,
    );
    let mut resp = Response::new(Body::from_stream(s));
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("static"));
    resp
}

fn async_stream(
    pieces: Vec<String>,
    delay: Duration,
    [cut_after, end_early, stall_after, error_after]: [Option<usize>; 4],
    make: impl Fn(usize, &str, bool) -> Vec<Value> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let n = pieces.len();
    futures_util::stream::unfold(0usize, move |i| {
        let piece = pieces.get(i).cloned();
        let events = if i < n {
            make(i, piece.as_deref().unwrap_or(""), false)
        } else {
            make(i, "", true)
        };
        async move {
            if i > n {
                return None;
            }
            if cut_after == Some(i) {
                if i > 0 {
                    // Let the events before the cut reach the wire: hyper drops what it still
                    // buffers when a body fails, which would make this a cut before the first byte.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return Some((Err(std::io::Error::other("mock: connection cut")), i + n + 2));
            }
            if end_early == Some(i) {
                return None;
            }
            if error_after == Some(i) {
                let ev = json!({"error": {"message": "mock: the engine failed mid-stream", "type": "server_error", "code": 500}});
                return Some((Ok(Bytes::from(format!("data: {ev}\n\ndata: [DONE]\n\n"))), n + 1));
            }
            if stall_after == Some(i) {
                std::future::pending::<()>().await;
            }
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut out = String::new();
            for e in events {
                out.push_str("data: ");
                out.push_str(&e.to_string());
                out.push_str("\n\n");
            }
            if i == n {
                out.push_str("data: [DONE]\n\n");
            }
            Some((Ok(Bytes::from(out)), i + 1))
        }
    })
}

/// When the request offers tools and the last user turn mentions "weather", the mock calls the
/// first tool with `{"city": "Paris"}`, as a model would.
fn wants_tool(req: &Value, style: &str) -> Option<(String, String)> {
    let tools = req["tools"].as_array().filter(|t| !t.is_empty())?;
    let messages = req["messages"].as_array()?;
    // After a tool's result the model answers instead of calling again.
    if messages
        .last()
        .is_some_and(|m| m["role"] == "tool" || m["content"].to_string().contains("tool_result"))
    {
        return None;
    }
    let last = messages.iter().rev().find(|m| m["role"] == "user")?;
    if !last["content"].to_string().contains("weather") {
        return None;
    }
    let name = match style {
        "function" => tools[0]["function"]["name"].as_str(),
        _ => tools[0]["name"].as_str(),
    }?;
    Some((name.to_string(), "{\"city\": \"Paris\"}".to_string()))
}

/// [`Behaviour::tool_call`] when it applies: the tool is offered (chat `function.name`, or a
/// top-level `name` as on the Anthropic and Responses wires) and no tool result is in the
/// conversation yet.
pub fn scripted_call(b: &Behaviour, req: &Value, style: &str) -> Option<(String, String)> {
    let call = b.tool_call.as_ref()?;
    let offered = req["tools"].as_array()?.iter().any(|t| {
        let name = match style {
            "function" => &t["function"]["name"],
            _ => &t["name"],
        };
        name == call.name.as_str()
    });
    (offered && !has_tool_result(req)).then(|| (call.name.clone(), call.arguments.to_string()))
}

/// A tool's output anywhere in the conversation: a chat `tool` message, an Anthropic
/// `tool_result` block, or a Responses `function_call_output` / `custom_tool_call_output` item.
pub fn has_tool_result(req: &Value) -> bool {
    let in_messages = req["messages"].as_array().is_some_and(|ms| {
        ms.iter().any(|m| {
            m["role"] == "tool"
                || m["content"]
                    .as_array()
                    .is_some_and(|bs| bs.iter().any(|b| b["type"] == "tool_result"))
        })
    });
    let in_input = req["input"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|i| i["type"].as_str().is_some_and(|t| t.ends_with("_call_output")))
    });
    in_messages || in_input
}

fn openai_tool_call(req: &Value, model: &str, name: &str, args: &str) -> Response {
    let call = json!({"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": args}});
    if req["stream"] == true {
        let (a, b) = args.split_at(args.len() / 2);
        let events = [
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": ""}}]}, "finish_reason": null}]}),
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": a}}]}, "finish_reason": null}]}),
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": b}}]}, "finish_reason": null}]}),
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}),
        ];
        let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        out.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], out).into_response();
    }
    Json(json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}))
    .into_response()
}

/// The Anthropic Messages API, as an Anthropic-shaped upstream: echo, streaming, tool use.
async fn anthropic_messages(State(st): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (b, req) = match prelude(&st, "/v1/messages", headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = req["model"].as_str().unwrap_or("mock").to_string();
    let last_user = req["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|x| x["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .unwrap_or_default();
    let text = b.reply.clone().unwrap_or_else(|| format!("echo: {last_user}"));
    let tool = scripted_call(&b, &req, "anthropic").or_else(|| wants_tool(&req, "anthropic"));
    let usage_in = prompt_tokens(&req);
    let ev = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    if req["stream"] == true {
        let mut out = ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": usage_in, "output_tokens": 1, "cache_read_input_tokens": 2}}}),
        );
        out.push_str(&ev("ping", json!({"type": "ping"})));
        let stop = if let Some((name, args)) = &tool {
            out.push_str(&ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {}}})));
            let (a, c) = args.split_at(args.len() / 2);
            for part in [a, c] {
                out.push_str(&ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}})));
            }
            "tool_use"
        } else {
            out.push_str(&ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for w in text.split_inclusive(' ') {
                out.push_str(&ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
                ));
            }
            "end_turn"
        };
        out.push_str(&ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        out.push_str(&ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": words(&text)}})));
        out.push_str(&ev("message_stop", json!({"type": "message_stop"})));
        return ([("content-type", "text/event-stream")], out).into_response();
    }
    let (content, stop) = match tool {
        Some((name, args)) => (
            json!([{"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": serde_json::from_str::<Value>(&args).unwrap_or_default()}]),
            "tool_use",
        ),
        None => (json!([{"type": "text", "text": text}]), "end_turn"),
    };
    Json(json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": usage_in, "output_tokens": words(&text), "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0}}))
    .into_response()
}

/// `POST /v1/responses`, as OpenAI serves it: the echo reply (or a call of the first function
/// tool when the input mentions "weather" and holds no `function_call_output` yet), whole or as
/// the Responses event stream. The answer is built as a chat completion and shaped by the
/// gateway's own Responses translator, so it has OpenAI's event order and fields.
async fn responses(State(st): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    use crate::translate::responses::{response, stream::ChatToResponses, Native};
    use crate::translate::EventTranslator;
    let (b, req) = match prelude(&st, "/v1/responses", headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = req["model"].as_str().unwrap_or("mock").to_string();
    let input = &req["input"];
    let last_user = match input {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|i| i["role"] == "user")
            .map(|i| match &i["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                _ => String::new(),
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let text = b.reply.clone().unwrap_or_else(|| format!("echo: {last_user}"));
    let answered = input
        .as_array()
        .is_some_and(|i| i.iter().any(|x| x["type"] == "function_call_output"));
    let tool = req["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["type"] == "function"))
        .and_then(|t| t["name"].as_str())
        .filter(|_| !answered && input.to_string().contains("weather"));
    let (pt, ct) = (words(&input.to_string()), words(&text));
    let usage = json!({"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct});
    let native = Native {
        body: req.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    let (message, finish) = match tool {
        Some(name) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": "{\"city\": \"Paris\"}"}}]}),
            "tool_calls",
        ),
        None => (json!({"role": "assistant", "content": text}), "stop"),
    };
    if req["stream"] == true {
        let mut chunks = Vec::new();
        match tool {
            Some(name) => {
                chunks.push(json!({"model": model, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_mock_1", "function": {"name": name, "arguments": "{\"city\": "}}]}}]}));
                chunks.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}}]}));
            }
            None => {
                for piece in text.split_inclusive(' ') {
                    chunks.push(json!({"model": model, "choices": [{"index": 0, "delta": {"content": piece}}]}));
                }
            }
        }
        chunks.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}));
        let mut t = ChatToResponses::new(Arc::new(native), &model, None);
        let mut out = String::new();
        for c in &chunks {
            t.on_event(None, &c.to_string(), &mut out);
        }
        t.on_event(None, "[DONE]", &mut out);
        return ([("content-type", "text/event-stream")], out).into_response();
    }
    let chat = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
    match response::from_chat(chat.to_string().as_bytes(), &native, &model) {
        Ok(r) => Json(r).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
