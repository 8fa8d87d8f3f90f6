//! The dialects at the edge: parse the wire format, call the pipeline, write the answer.

pub mod admin;
pub mod anthropic;
pub mod exposure;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod responses;
pub mod responses_store;
pub mod spend;

use crate::app::{AppState, RequestCtx};
use crate::cache;
use crate::error::{Dialect, GatewayError};
use crate::ledger::cost::Tokens;
use crate::ledger::meter::{self, Meter, Served, StreamMeter};
use crate::limits::RateHeaders;
use crate::pipeline::{self, Call, Outcome, Payload};
use crate::providers::sse::{self, Taps};
use crate::routing::local_first::Route;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Reads the whole body, refusing more than `limit` bytes with a 413 in our error shape, and a
/// body slower than `request_body_timeout_s` with a 408.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return GatewayError::PayloadTooLarge { limit };
            }
            if let Some(t) = s.downcast_ref::<crate::server::body::BodyTimeout>() {
                return GatewayError::RequestTimeout { after: t.after };
            }
            src = s.source();
        }
        GatewayError::invalid(format!("could not read the request body: {e}"))
    })
}

/// Parses a JSON body; syntax errors say where, shape errors say which field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::MalformedJson(
            "the body is empty; expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => GatewayError::invalid(format!("Invalid request body: {e}")),
            _ => GatewayError::MalformedJson(e.to_string()),
        }
    })
}

pub async fn not_found(req: axum::extract::Request) -> Response {
    let path = req.uri().path();
    GatewayError::RouteNotFound(format!("Route not found: {} {path}", req.method()))
        .into_response_in(Dialect::of_path(path))
}

pub async fn method_not_allowed(req: axum::extract::Request) -> Response {
    let path = req.uri().path();
    GatewayError::MethodNotAllowed(format!("Method {} is not allowed on {path}", req.method()))
        .into_response_in(Dialect::of_path(path))
}

/// The shared path of every model call: authenticate, read and parse under the size limit, run the
/// pipeline, answer in `dialect` (errors included).
/// The caller as an edge wrapper authenticated it, in the request's extensions: [`handle`]
/// does not authenticate again (a client cannot set an extension).
#[derive(Clone)]
pub struct Authenticated(pub crate::auth::Caller);

pub async fn handle(
    state: &AppState,
    req: Request,
    dialect: Dialect,
    parse: impl FnOnce(&[u8]) -> Result<Call, GatewayError>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(ctx) = parts.extensions.get::<RequestCtx>().cloned() else {
        return GatewayError::Internal("request context missing".into()).into_response_in(dialect);
    };
    let mut metered: Option<(Meter, bool)> = None;
    let mut rate: Option<RateHeaders> = None;
    // Set once the meter has shown the failure to the observers (their line replaces ours).
    let mut observed = false;
    let mut cached: Option<CachePlan> = None;
    let mut hit = false;
    let result = async {
        // A wrapper that authenticated already (the response store's) hands its caller on.
        let caller = match parts.extensions.get::<Authenticated>() {
            Some(a) => a.0.clone(),
            None => state.auth.authenticate(&parts.headers).await?,
        };
        let bytes = read_body(body, state.config.general.max_request_size_bytes).await?;
        let mut call = parse(&bytes)?;
        if call_model_is_empty(&call) {
            return Err(GatewayError::invalid_param(
                "model",
                "`model` must name a model; call /v1/models to list them",
            ));
        }
        let gate = match caller.key() {
            Some(key) => {
                let mut resets = Vec::new();
                let gate = crate::auth::admit(key, crate::store::now_ms(), &state.router.clock, &mut resets);
                if let Some(ledger) = &state.ledger {
                    resets.into_iter().for_each(|r| ledger.reset(r));
                }
                match gate {
                    Ok(gate) => {
                        rate = Some(gate.admission.headers.clone());
                        Some(gate)
                    }
                    // A refusal says which limit, in the same headers.
                    Err(refusal) => {
                        rate = Some(refusal.headers);
                        return Err(refusal.error);
                    }
                }
            }
            None => None,
        };
        // Planned before the usage request below changes the call.
        cached = cache_plan(state, &call, dialect, &parts.headers, gate.as_ref());
        let strip_usage = ask_for_usage(&mut call) && dialect == Dialect::OpenAi;
        let meter = Some(Meter {
            ledger: state.ledger.clone(),
            observers: state.observers.clone(),
            costs: state.costs.clone(),
            gate: None,
            request_id: ctx.id.to_string(),
            call_type: call.call_type(dialect),
            stream: call.is_stream(),
            tags: call.tags(),
            started: ctx.started,
            started_unix_ms: crate::store::now_ms() - ctx.started.elapsed().as_millis() as i64,
            estimated_prompt: call.estimated_tokens(),
        });
        let model = call.model().to_string();
        if let (Some(plan), Some(cache)) = (cached.as_ref().filter(|p| p.controls.read), &state.cache) {
            if let Some(entry) = cache.get(&plan.key, plan.controls.max_age).await {
                if let Some(mut m) = meter {
                    m.gate = gate;
                    let served = Served {
                        deployment: None,
                        model_group: entry.model_group.clone(),
                        route: "cache",
                        status: 200,
                        ttft_ms: Some(ctx.started.elapsed().as_secs_f64() * 1000.0),
                        error: None,
                        reason: None,
                        cache_hit: true,
                    };
                    m.finish(served, entry.tokens);
                }
                return Ok(Answer::Cached(entry));
            }
        }
        let out = {
            let rctx = pipeline::RequestCtx {
                request_id: &ctx.id,
                dialect,
                forward_headers: forwarded(&parts.headers, dialect),
                allow_cloud: state.config.router.local_first.allow_cloud && caller.allow_cloud(),
                gate: gate.as_ref(),
            };
            // Past the shutdown grace the wait on the upstream (or a retry's backoff) ends here;
            // the error is metered like any other.
            tokio::select! {
                out = pipeline::run(state, call, &rctx) => out,
                _ = state.shutdown.cancelled() => Err(state.shutdown.error()),
            }
        };
        let meter = meter.map(|mut m| {
            m.gate = gate;
            m
        });
        match out {
            Ok(o) => {
                metered = meter.map(|m| (m, strip_usage));
                Ok(Answer::Served(o))
            }
            Err(e) => {
                if let Some(m) = meter {
                    let served = Served {
                        deployment: None,
                        model_group: model,
                        route: "none",
                        status: e.status().as_u16(),
                        ttft_ms: None,
                        error: Some(e.to_string()),
                        reason: None,
                        cache_hit: false,
                    };
                    m.finish(served, Tokens::default());
                    observed = true;
                }
                Err(e)
            }
        }
    }
    .await;
    let mut resp = match result {
        Ok(Answer::Served(mut outcome)) => {
            // A stream's meter, cache capture and shutdown cut read the events the relay frames.
            let mut taps = Taps::default();
            if let Some((meter, strip)) = metered {
                outcome = meter_outcome(outcome, meter, strip, dialect, &mut taps);
            }
            if let (Some(plan), Some(cache)) = (cached.as_ref().filter(|p| p.controls.write), &state.cache) {
                outcome = store_in_cache(outcome, cache, plan, &mut taps);
            }
            if let Payload::Stream(body) = outcome.payload {
                // A stream cut at shutdown is neither cached nor left unmetered.
                taps.shutdown = Some(state.shutdown.clone());
                outcome.payload = Payload::Stream(sse::attach(body, outcome.fault.as_ref(), taps, dialect));
            }
            respond(outcome, &ctx)
        }
        Ok(Answer::Cached(entry)) => {
            hit = true;
            respond_cached(&entry, &ctx)
        }
        Err(err) => {
            if !observed {
                tracing::info!(request_id = %ctx.id, status = err.status().as_u16(), error = %err, "request refused");
                state.metrics.refused(err.status().as_u16());
            }
            err.into_response_in(dialect)
        }
    };
    if let Some(r) = rate {
        rate_headers(resp.headers_mut(), &r);
    }
    if let Some(plan) = &cached {
        let ok = resp.status() == StatusCode::OK;
        let h = resp.headers_mut();
        let state = if !ok {
            None
        } else if hit {
            Some("hit")
        } else if plan.controls.read || plan.controls.write {
            Some("miss")
        } else {
            Some("bypass")
        };
        if let Some(s) = state {
            h.insert("x-switchyard-cache", HeaderValue::from_static(s));
            insert(h, "x-litellm-cache-key", &plan.key);
        }
    }
    resp
}

/// What a model call answered with: a pipeline outcome, or a cached response.
enum Answer {
    Served(Outcome),
    Cached(Arc<cache::Entry>),
}

/// A cacheable request's key and what it allows.
struct CachePlan {
    key: String,
    controls: cache::key::Controls,
}

/// `None` when there is no cache, the call type is not cached, the model is unknown (the
/// pipeline says why), or the caller may not use the model: no cached answer may reach it.
fn cache_plan(
    state: &AppState,
    call: &Call,
    dialect: Dialect,
    headers: &HeaderMap,
    gate: Option<&crate::auth::Gate>,
) -> Option<CachePlan> {
    let cache = state.cache.as_ref()?;
    if !cache.caches(call.call_type(dialect)) {
        return None;
    }
    let group = state.models.resolve(call.model(), call.endpoint()).ok()?;
    if gate.is_some_and(|g| !g.allows_model(call.model(), &group.name)) {
        return None;
    }
    Some(CachePlan {
        key: cache::key::of(cache.settings.namespace.as_deref(), dialect, &group.name, call),
        controls: cache::key::controls(call.extra(), headers, cache.settings.default_off),
    })
}

/// Stores a full answer now, a stream once it has ended properly.
fn store_in_cache(
    mut outcome: Outcome,
    cache: &Arc<cache::ResponseCache>,
    plan: &CachePlan,
    taps: &mut Taps,
) -> Outcome {
    let ttl = plan.controls.ttl.unwrap_or(cache.settings.ttl);
    let entry = |body: Bytes, stream: bool, tokens: Tokens, content_type: Option<String>| cache::Entry {
        body,
        stream,
        content_type,
        model_group: outcome.deployment.model_name.clone(),
        tokens,
        created_ms: crate::store::now_ms(),
        ttl,
    };
    outcome.payload = match outcome.payload {
        Payload::Full(b) => {
            let content_type = outcome
                .content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let tokens = meter::from_body(&b).unwrap_or_default();
            cache.put(plan.key.clone(), entry(b.clone(), false, tokens, content_type));
            Payload::Full(b)
        }
        Payload::Stream(body) => {
            let (cache, key) = (cache.clone(), plan.key.clone());
            let template = entry(Bytes::new(), true, Tokens::default(), None);
            let limit = cache.settings.max_entry_bytes;
            taps.capture = Some(cache::capture::Capture::new(limit, move |body, metered| {
                // The meter read the usage as the stream passed; without one, read it here.
                let tokens = metered.unwrap_or_else(|| meter::from_sse(&body));
                cache.put(
                    key,
                    cache::Entry {
                        body,
                        tokens,
                        ..template
                    },
                );
            }));
            Payload::Stream(body)
        }
    };
    outcome
}

/// A cached response, as the first client received it.
fn respond_cached(entry: &cache::Entry, ctx: &RequestCtx) -> Response {
    let mut resp = Response::new(Body::from(entry.body.clone()));
    let h = resp.headers_mut();
    let content_type = match (&entry.content_type, entry.stream) {
        (_, true) => HeaderValue::from_static("text/event-stream"),
        (Some(ct), false) => HeaderValue::from_str(ct).unwrap_or(HeaderValue::from_static("application/json")),
        (None, false) => HeaderValue::from_static("application/json"),
    };
    h.insert(http::header::CONTENT_TYPE, content_type);
    if entry.stream {
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    h.insert("x-switchyard-route", HeaderValue::from_static("cache"));
    insert(h, "x-litellm-model-group", &entry.model_group);
    insert(
        h,
        "x-litellm-response-duration-ms",
        &format!("{:.3}", ctx.started.elapsed().as_secs_f64() * 1000.0),
    );
    resp
}

/// Asks a streaming chat upstream for its usage (exact stream costs); whether the client did not
/// ask itself, so the usage event is the gateway's to keep.
fn ask_for_usage(call: &mut Call) -> bool {
    let Call::Chat(r) = call else { return false };
    if r.stream != Some(true) {
        return false;
    }
    let opts = r.stream_options.get_or_insert_with(Default::default);
    if opts.include_usage == Some(true) {
        return false;
    }
    opts.include_usage = Some(true);
    true
}

/// Meters a served request: at once for a full body, at the stream's end for a stream.
fn meter_outcome(mut outcome: Outcome, meter: Meter, strip: bool, dialect: Dialect, taps: &mut Taps) -> Outcome {
    let dep = outcome.deployment.clone();
    let served = Served {
        model_group: dep.model_name.clone(),
        route: outcome.route.unwrap_or_else(|| Route::of(&dep)).as_str(),
        deployment: Some(dep),
        status: 200,
        ttft_ms: None,
        error: None,
        reason: outcome.reason.clone(),
        cache_hit: false,
    };
    outcome.payload = match outcome.payload {
        Payload::Full(b) => {
            let tokens = meter::from_body(&b).unwrap_or(Tokens {
                prompt: meter.estimated_prompt,
                ..Default::default()
            });
            meter.finish(served, tokens);
            Payload::Full(b)
        }
        Payload::Stream(body) => {
            taps.meter = Some(StreamMeter::new(meter, served, dialect, strip));
            Payload::Stream(body)
        }
    };
    outcome
}

fn rate_headers(h: &mut HeaderMap, r: &RateHeaders) {
    let pairs = [
        ("x-ratelimit-limit-requests", r.limit_requests),
        ("x-ratelimit-remaining-requests", r.remaining_requests),
        ("x-ratelimit-limit-tokens", r.limit_tokens),
        ("x-ratelimit-remaining-tokens", r.remaining_tokens),
    ];
    let mut any = false;
    for (name, v) in pairs {
        if let Some(v) = v {
            h.insert(name, HeaderValue::from(v));
            any = true;
        }
    }
    if any {
        h.insert("x-ratelimit-reset-requests", HeaderValue::from(r.reset_secs));
    }
    if r.limit_tokens.is_some() {
        h.insert("x-ratelimit-reset-tokens", HeaderValue::from(r.reset_tokens_secs));
    }
}

/// Client headers an Anthropic upstream should see.
fn forwarded(headers: &HeaderMap, dialect: Dialect) -> Vec<(http::HeaderName, HeaderValue)> {
    if dialect != Dialect::Anthropic {
        return Vec::new();
    }
    // Every value: a client may send `anthropic-beta` once per beta instead of comma-joined.
    ["anthropic-version", "anthropic-beta"]
        .iter()
        .flat_map(|n| {
            headers
                .get_all(*n)
                .iter()
                .map(|v| (http::HeaderName::from_static(n), v.clone()))
        })
        .collect()
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
