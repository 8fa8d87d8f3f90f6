//! A request's flow, as one readable function, independent of HTTP:
//!
//! 1. resolve the model to its group (`routing::ModelMap`);
//! 2. keep the deployments that may serve now (`Router::eligible`: not cooling, healthy, fits)
//!    and pick one by the routing strategy (`routing::balance`);
//! 3. frame the body for its wire (`providers::WireFormat`: as sent when the client speaks that
//!    wire, translated otherwise) and send it under the deployment's timeout; a
//!    stream counts as started only once its first chunk arrived, so a stream that fails before
//!    that is retried like any other failure;
//! 4. on failure: record it (cooldowns), retry (another deployment at once when one is left,
//!    else the same after a backoff honouring `Retry-After`; none when every deployment is
//!    cooling) up to the retry policy, then move to the fallback groups. A stream that fails
//!    after its first chunk cannot fail over, but it is recorded the same way when it ends
//!    (`routing::report`), so the next requests avoid its deployment;
//! 5. hand back the body (whole, or as a relay stream) with what the response headers report.
//!
//! Limits, cache and the spend record slot in before step 1 and after step 5.

use crate::app::AppState;
use crate::config::{Deployment, Strategy};
use crate::error::{Dialect, ErrorClass, GatewayError};
use crate::providers::{sse, Prepared};
use crate::routing::local_first::{self, Route};
use crate::routing::report::Reporter;
use crate::routing::state::{InFlight, Probe};
use crate::routing::{balance, fallback, Group};
use crate::translate::responses;
use crate::types::{body_timeout, ChatRequest, Endpoint, PassthroughRequest, Usage};
use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One call to make: a chat request, or a completions/embeddings body passed through.
pub enum Call {
    Chat(ChatRequest),
    Passthrough(Endpoint, PassthroughRequest),
}

impl Call {
    pub fn model(&self) -> &str {
        match self {
            Call::Chat(r) => &r.model,
            Call::Passthrough(_, r) => &r.model,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
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

    pub fn extra(&self) -> &serde_json::Map<String, Value> {
        match self {
            Call::Chat(r) => &r.extra,
            Call::Passthrough(_, r) => &r.extra,
        }
    }

    /// The completion budget the client asked for (0 when it did not say).
    fn max_tokens(&self) -> u64 {
        match self {
            Call::Chat(r) => r.max_tokens.or(r.max_completion_tokens).unwrap_or(0),
            Call::Passthrough(_, r) => r.extra.get("max_tokens").and_then(Value::as_u64).unwrap_or(0),
        }
    }

    /// A rough prompt size (4 characters a token) for context-window and tpm checks.
    pub fn estimated_tokens(&self) -> u64 {
        let chars: usize = match self {
            Call::Chat(r) => r
                .messages
                .iter()
                .map(|m| match &m.content {
                    Some(Value::String(s)) => s.len(),
                    Some(other) => other.to_string().len(),
                    None => 0,
                } + 16)
                .sum(),
            Call::Passthrough(_, r) => r.extra.get("prompt").or_else(|| r.extra.get("input")).map_or(0, |v| v.to_string().len()),
        };
        (chars / 4) as u64 + 1
    }

    /// The client's Responses body, for a `/v1/responses` request.
    pub fn responses(&self) -> Option<&Arc<responses::Native>> {
        match self {
            Call::Chat(ChatRequest {
                native: Some(crate::types::Native::Responses(n)),
                ..
            }) => Some(n),
            _ => None,
        }
    }

    /// LiteLLM's `call_type` for the ledger.
    pub fn call_type(&self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (Call::Chat(_), Dialect::Anthropic) => "anthropic_messages",
            (Call::Chat(_), Dialect::Responses) => "aresponses",
            (Call::Chat(_), _) => "acompletion",
            (Call::Passthrough(Endpoint::Embeddings, _), _) => "aembedding",
            (Call::Passthrough(_, _), _) => "atext_completion",
        }
    }

    /// Whether the client's body holds what only its own wire can carry (see
    /// `translate::anthropic::wire::Native::unportable`).
    pub fn needs_its_own_wire(&self) -> bool {
        matches!(self, Call::Chat(ChatRequest { native: Some(crate::types::Native::Anthropic(n)), .. }) if !n.unportable.is_empty())
    }

    /// Request tags: `metadata.tags` (LiteLLM) or a top-level `tags`.
    pub fn tags(&self) -> Vec<String> {
        let extra = self.extra();
        extra
            .get("metadata")
            .and_then(|m| m.get("tags"))
            .or_else(|| extra.get("tags"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
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
    /// Time spent waiting on upstreams (heads, plus bodies when not streaming).
    pub upstream_time: Duration,
    pub retries: u32,
    pub fallbacks: u32,
    pub content_type: Option<http::HeaderValue>,
    /// Where it was served and, under local-first, why there.
    pub route: Option<Route>,
    pub reason: Option<String>,
    /// For a relayed stream: filled if it fails after its first chunk (the spend row's status).
    pub fault: Option<sse::Fault>,
}

const INITIAL_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);

/// Per-request routing options read from the body (LiteLLM's extras).
struct Options {
    num_retries: Option<u32>,
    fallbacks: Option<Vec<String>>,
    disable_fallbacks: bool,
    mock_response: Option<String>,
    mock_fail_first_group: bool,
}

impl Options {
    fn from(extra: &serde_json::Map<String, Value>) -> Self {
        let fallbacks = extra.get("fallbacks").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().or_else(|| v.get("model").and_then(Value::as_str)))
                .map(str::to_string)
                .collect()
        });
        Options {
            num_retries: extra.get("num_retries").and_then(Value::as_u64).map(|n| n as u32),
            fallbacks,
            disable_fallbacks: extra.get("disable_fallbacks").and_then(Value::as_bool).unwrap_or(false),
            mock_response: extra.get("mock_response").and_then(Value::as_str).map(str::to_string),
            mock_fail_first_group: extra
                .get("mock_testing_fallbacks")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

struct Tally {
    retries: u32,
    upstream_time: Duration,
}

/// Who is asking and how to answer: what every attempt of one request shares.
pub struct RequestCtx<'a> {
    pub request_id: &'a str,
    pub dialect: Dialect,
    /// Client headers meant for an Anthropic upstream (`anthropic-version`, `anthropic-beta`).
    pub forward_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `false` for a local-only caller: no cloud deployment, even on escalation or fallback.
    pub allow_cloud: bool,
    /// A virtual key's admission: its models, and its budgets checked before each paid attempt.
    pub gate: Option<&'a crate::auth::Gate>,
}

struct Req<'a> {
    call: &'a Call,
    opts: &'a Options,
    ctx: &'a RequestCtx<'a>,
}

pub async fn run(state: &AppState, call: Call, ctx: &RequestCtx<'_>) -> Result<Outcome, GatewayError> {
    let request_id = ctx.request_id;
    let endpoint = call.endpoint();
    let first = state.models.resolve(call.model(), endpoint)?;
    if let Some(g) = ctx.gate {
        if !g.allows_model(call.model(), &first.name) {
            return Err(g.model_denied(call.model()));
        }
    }
    let opts = Options::from(call.extra());
    let settings = &state.config.router;
    let mut tally = Tally {
        retries: 0,
        upstream_time: Duration::ZERO,
    };
    let req = Req {
        call: &call,
        opts: &opts,
        ctx,
    };
    // local-first serves a saturated local group anyway unless there is somewhere else to go.
    let has_fallbacks = !opts.disable_fallbacks
        && opts.fallbacks.as_ref().map_or_else(
            || !fallback::targets(settings, &first.name, ErrorClass::ServiceUnavailable).is_empty(),
            |f| !f.is_empty(),
        );

    let mut err = match try_group(
        state,
        &req,
        &first,
        &mut tally,
        opts.mock_fail_first_group,
        has_fallbacks,
    )
    .await
    {
        Ok(o) => return Ok(finish(o, &tally, 0)),
        Err(e) => e,
    };
    if opts.disable_fallbacks {
        return Err(err);
    }
    // Fallbacks: client-blamed failures (a bad parameter) would fail anywhere, except the two
    // that another model may well accept.
    let class = err.class();
    let worth_it = err.blame() != crate::error::Blame::Client
        || matches!(
            class,
            ErrorClass::ContextWindowExceeded | ErrorClass::ContentPolicyViolation
        );
    if !worth_it {
        return Err(err);
    }
    let targets = opts
        .fallbacks
        .clone()
        .unwrap_or_else(|| fallback::targets(settings, &first.name, class));
    let mut used = 0u32;
    for target in targets
        .iter()
        .filter(|t| **t != first.name)
        .take(settings.max_fallbacks)
    {
        let Some(group) = state.models.group(target) else {
            tracing::warn!(request_id, fallback = %target, "fallback names an unknown model group; skipped");
            continue;
        };
        if ctx.gate.is_some_and(|g| !g.allows_model(target, &group.name)) {
            tracing::debug!(request_id, fallback = %target, "the key may not use this fallback; skipped");
            continue;
        }
        used += 1;
        tracing::info!(request_id, from = %first.name, to = %group.name, error = %err, "falling back");
        match try_group(state, &req, &group, &mut tally, false, false).await {
            Ok(o) => return Ok(finish(o, &tally, used)),
            Err(e) => err = e,
        }
    }
    Err(err)
}

fn finish(mut o: Outcome, tally: &Tally, fallbacks: u32) -> Outcome {
    o.retries = tally.retries;
    o.upstream_time = tally.upstream_time;
    o.fallbacks = fallbacks;
    o
}

/// Tries one model group with retries; the error is the last attempt's.
async fn try_group(
    state: &AppState,
    req: &Req<'_>,
    group: &Arc<Group>,
    tally: &mut Tally,
    mock_fail: bool,
    has_fallbacks: bool,
) -> Result<Outcome, GatewayError> {
    let (call, opts, request_id, dialect) = (req.call, req.opts, req.ctx.request_id, req.ctx.dialect);
    let settings = &state.config.router;
    let router = &state.router;
    let est_tokens = call.estimated_tokens();
    let size_tokens = est_tokens + call.max_tokens();
    let mut tried: Vec<usize> = Vec::new();
    let mut retries_here = 0u32;
    let mut last_failure: Option<String> = None;
    loop {
        let eligible = router.eligible(settings, group, &tried, est_tokens)?;
        let mut candidates = eligible.candidates;
        // A request only some wires can carry (an Anthropic server tool) goes to a deployment
        // that can, when the group has one; else the wire's own refusal says why.
        if call.needs_its_own_wire() && candidates.iter().any(|(d, _)| crate::providers::carries_native(d)) {
            candidates.retain(|(d, _)| crate::providers::carries_native(d));
        }
        if !req.ctx.allow_cloud {
            candidates.retain(|(d, _)| d.is_local());
            if candidates.is_empty() {
                return Err(GatewayError::LocalOnly {
                    model: group.name.clone(),
                });
            }
        }
        // A budget closes the paid deployments whose estimate no longer fits; free ones
        // (decided by price, not address) may still serve.
        if let Some(gate) = req.ctx.gate {
            let mut refused = None;
            candidates.retain(|(d, _)| {
                state.costs.is_free(d)
                    || match gate.admission.fits(estimate(state, d, est_tokens, call)) {
                        Ok(()) => true,
                        Err(over) => {
                            refused.get_or_insert(over);
                            false
                        }
                    }
            });
            if let (true, Some(over)) = (candidates.is_empty(), refused) {
                return Err(over.refuse());
            }
        }
        let now = router.now_ms();
        let (dep, route, reason) = match (&state.signals, settings.routing_strategy) {
            (Some(signals), Strategy::LocalFirst) => {
                match local_first::choose(&settings.local_first, signals, &candidates, size_tokens, now) {
                    Ok(c) => {
                        // After a failure the reason is the failure, not the absence of a local.
                        let reason = match (c.route, &last_failure) {
                            (Route::Cloud, Some(f)) => f.clone(),
                            _ => c.reason,
                        };
                        (c.candidate.0.clone(), c.route, Some(reason))
                    }
                    Err(sat) if has_fallbacks => {
                        return Err(GatewayError::LocalSaturated {
                            model: group.name.clone(),
                            reason: sat.reason,
                        })
                    }
                    Err(sat) => {
                        // Nowhere else to go: queue on the least busy local deployment.
                        let c = candidates
                            .iter()
                            .min_by_key(|(_, s)| s.in_flight.load(std::sync::atomic::Ordering::Relaxed))
                            .copied()
                            .ok_or_else(|| GatewayError::LocalSaturated {
                                model: group.name.clone(),
                                reason: sat.reason.clone(),
                            })?;
                        (
                            c.0.clone(),
                            Route::Local,
                            Some(format!("saturated_no_cloud:{}", sat.reason)),
                        )
                    }
                }
            }
            _ => {
                let (d, _) = balance::pick(
                    settings.routing_strategy,
                    settings.lowest_latency_buffer,
                    &candidates,
                    now,
                )
                .ok_or_else(|| GatewayError::ModelUnavailable {
                    model: group.name.clone(),
                    reason: "the group has no deployments".into(),
                })?;
                (d.clone(), Route::of(d), None)
            }
        };
        let dep_state = Arc::clone(router.state(&dep));
        drop(candidates);
        // Every paid attempt reserves its estimate first; a failed one gives it back when `hold`
        // drops below, a served one keeps it until the request is charged.
        let hold = match req.ctx.gate {
            Some(gate) if !state.costs.is_free(&dep) => {
                Some(gate.admission.reserve(estimate(state, &dep, est_tokens, call))?)
            }
            _ => None,
        };

        dep_state.start(router.now_ms(), est_tokens);
        let guard = InFlight(dep_state.clone());
        // A half-open deployment lets one request through at a time: this one, if it claims it.
        let probe = dep_state.begin_probe(router.now_ms());
        // Held until the attempt's verdict is recorded (a committed stream takes it along).
        let mut report = Some((
            Reporter::new(
                state.config.clone(),
                router.clock.clone(),
                state.hooks.clone(),
                dep.clone(),
                dep_state.clone(),
                group.deployments.len(),
            ),
            probe,
        ));
        let started = Instant::now();
        let result = if mock_fail {
            Err(GatewayError::Upstream {
                deployment: dep.label(),
                status: 500,
                message: "mock_testing_fallbacks: this deployment was made to fail".into(),
                error_type: None,
                param: None,
                retry_after: None,
            })
        } else if let Some(text) = opts.mock_response.as_ref().or(dep.mock_response.as_ref()) {
            mock_outcome(&dep, call, text, dialect)
        } else {
            attempt(state, req, &dep, guard, &mut report).await
        };
        let spent = started.elapsed();
        tally.upstream_time += spent;
        let err = match result {
            Ok(mut outcome) => {
                // A relayed stream reports how it went when it ends; anything else has ended.
                if outcome.fault.is_none() {
                    dep_state.succeeded(router.now_ms());
                }
                dep_state.record_latency(spent.as_micros() as u64);
                outcome.route = Some(route);
                outcome.reason = reason;
                if let Some(h) = hold {
                    h.keep();
                }
                return Ok(outcome);
            }
            Err(e) => e,
        };
        drop(hold);
        if matches!(err, GatewayError::UpstreamTimeout { .. }) {
            // A timeout is the worst latency there is (LiteLLM records a 1000 s penalty).
            dep_state.record_latency(spent.as_micros().max(1_000_000) as u64 * 10);
        }
        if let Some((reporter, probe)) = report.take() {
            reporter.failure(&err);
            drop(probe);
        }
        tried.push(dep.index);
        last_failure = Some(format!("{}_failed={}", route.as_str(), err.status().as_u16()));

        let class = err.class();
        let allowed = opts
            .num_retries
            .or_else(|| settings.retry_policy.get(class.retry_policy_key()).copied())
            .or_else(|| settings.retry_policy.get("DefaultRetries").copied())
            .or(dep.num_retries.map(|n| n as u32))
            .unwrap_or(settings.num_retries);
        // LiteLLM goes straight to fallbacks for these.
        let skip = !err.retryable()
            || fallback::has_specific(settings, &group.name, class)
            || class == ErrorClass::NotFound
            || (class == ErrorClass::Authentication && group.deployments.len() == 1)
            || mock_fail;
        if skip || retries_here >= allowed {
            return Err(err);
        }
        retries_here += 1;
        tally.retries += 1;
        tracing::debug!(request_id, deployment = %dep.label(), error = %err, "retrying");
        // Immediate when another deployment is ready; else back off before the same ones again.
        // With every deployment cooling (this failure may have opened the last breaker) there is
        // nothing to wait for: this error goes on to the fallbacks, or to the client.
        let another = match router.eligible(settings, group, &tried, est_tokens) {
            Ok(e) => e.fresh,
            Err(_) => return Err(err),
        };
        if !another {
            let backoff = INITIAL_RETRY_DELAY
                .saturating_mul(1 << (retries_here - 1).min(8))
                .min(MAX_RETRY_DELAY);
            let wait = err
                .retry_after()
                .map_or(backoff, |ra| ra.max(backoff))
                .max(settings.retry_after);
            if wait > MAX_RETRY_DELAY * 4 {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
            tried.clear();
        }
    }
}

/// The USD a paid attempt on `dep` reserves: the prompt estimate and the completion cap at its
/// price.
fn estimate(state: &AppState, dep: &Deployment, prompt: u64, call: &Call) -> f64 {
    let out = crate::ledger::cost::output_estimate(dep, call.max_tokens());
    state.costs.estimate(dep, prompt, out)
}

/// One try on `dep`. A whole answer is read here; a stream is handed on after its first chunk,
/// with `guard` and `report` (how it ended goes to the deployment's record, then the probe, if
/// any, is released).
async fn attempt(
    state: &AppState,
    req: &Req<'_>,
    dep: &Arc<Deployment>,
    guard: InFlight,
    report: &mut Option<(Reporter, Option<Probe>)>,
) -> Result<Outcome, GatewayError> {
    let (call, ctx) = (req.call, req.ctx);
    let (request_id, dialect) = (ctx.request_id, ctx.dialect);
    let settings = &state.config.router;
    let stream = call.is_stream();
    let timeout = body_timeout(call.extra())
        .or(if stream {
            dep.stream_timeout.or(settings.stream_timeout)
        } else {
            None
        })
        .or(dep.timeout)
        .unwrap_or(settings.timeout);
    let wire = crate::providers::for_deployment(dep);
    let (url, body, forward_headers) = match wire.prepare(dep, call, dialect)? {
        Prepared::Send {
            url,
            body,
            forward_headers,
        } => (url, body, forward_headers),
        Prepared::Canned(_) => return Err(GatewayError::Internal("a wire made its own answer".into())),
    };
    let started = Instant::now();
    let forward: &[(http::HeaderName, http::HeaderValue)] = if forward_headers { &ctx.forward_headers } else { &[] };
    let reply = state
        .upstream
        .post(dep, &url, body, timeout, request_id, forward)
        .await?;
    let content_type = reply.response.headers().get(http::header::CONTENT_TYPE).cloned();
    let (payload, fault) = if stream {
        // The stream is committed only once its first chunk is here: until then, a failure can
        // still go to another deployment without the client seeing anything.
        let mut upstream = wire.stream(dep, Box::pin(reply.response.bytes_stream()), call, dialect);
        let remaining = timeout.saturating_sub(started.elapsed());
        let first = match tokio::time::timeout(remaining, upstream.next()).await {
            Err(_) => {
                return Err(GatewayError::UpstreamTimeout {
                    deployment: dep.label(),
                    after: timeout,
                })
            }
            Ok(None) => {
                return Err(GatewayError::UpstreamProtocol {
                    deployment: dep.label(),
                    detail: "the stream closed before its first event".into(),
                })
            }
            Ok(Some(Err(e))) => return Err(crate::providers::transport_error(dep, e, timeout)),
            Ok(Some(Ok(chunk))) => {
                state
                    .router
                    .state(dep)
                    .record_ttft(started.elapsed().as_micros() as u64);
                chunk
            }
        };
        let rest = futures_util::stream::once(async move { Ok(first) }).chain(upstream);
        let fault = sse::Fault::default();
        let slot = fault.clone();
        let report = report.take();
        let on_end: sse::OnEnd = Box::new(move |end| {
            if let sse::End::Failed(e) = end {
                slot.set(e);
            }
            if let Some((reporter, probe)) = report {
                match end {
                    sse::End::Failed(e) => {
                        reporter.failure(e);
                    }
                    // A client that left proves nothing against the deployment, which was
                    // streaming.
                    sse::End::Finished | sse::End::ClientGone => reporter.success(),
                }
                drop(probe);
            }
            drop(guard);
        });
        let relay = sse::relay(rest, timeout, dep.label(), dialect, Some(on_end)).watched_by(fault.clone());
        (Payload::Stream(Body::from_stream(relay)), Some(fault))
    } else {
        let remaining = timeout.saturating_sub(reply.head_time);
        let bytes = match tokio::time::timeout(remaining, reply.response.bytes()).await {
            Ok(Ok(b)) => wire.answer(dep, b, call, dialect).map_err(|e| match e {
                // The translator does not know which deployment answered.
                GatewayError::UpstreamProtocol { detail, .. } => GatewayError::UpstreamProtocol {
                    deployment: dep.label(),
                    detail,
                },
                other => other,
            })?,
            Ok(Err(e)) => return Err(crate::providers::transport_error(dep, e, timeout)),
            Err(_) => {
                return Err(GatewayError::UpstreamTimeout {
                    deployment: dep.label(),
                    after: timeout,
                })
            }
        };
        if state.config.router.routing_strategy == Strategy::UsageBased {
            if let Some(u) = usage_of(&bytes) {
                state
                    .router
                    .state(dep)
                    .add_tokens(state.router.now_ms(), u.completion_tokens);
            }
        }
        drop(guard);
        (Payload::Full(bytes), None)
    };
    Ok(Outcome {
        deployment: dep.clone(),
        payload,
        upstream_time: started.elapsed(),
        retries: 0,
        fallbacks: 0,
        route: None,
        reason: None,
        content_type,
        fault,
    })
}

fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// LiteLLM's `mock_response`: a canned answer in the endpoint's shape, no upstream call.
fn mock_outcome(dep: &Arc<Deployment>, call: &Call, text: &str, dialect: Dialect) -> Result<Outcome, GatewayError> {
    use crate::providers::{mock::Mock, WireFormat};
    let mock = Mock { text };
    let Prepared::Canned(canned) = mock.prepare(dep, call, dialect)? else {
        return Err(GatewayError::Internal("the mock made a request".into()));
    };
    let payload = if call.is_stream() {
        let once = futures_util::stream::once(async move { Ok::<_, reqwest::Error>(canned) });
        Payload::Stream(Body::from_stream(mock.stream(dep, Box::pin(once), call, dialect)))
    } else {
        Payload::Full(mock.answer(dep, canned, call, dialect)?)
    };
    Ok(Outcome {
        deployment: dep.clone(),
        payload,
        upstream_time: Duration::ZERO,
        retries: 0,
        fallbacks: 0,
        route: None,
        reason: None,
        content_type: None,
        fault: None,
    })
}
