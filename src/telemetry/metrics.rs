//! Prometheus metrics: every series the gateway exposes at `GET /metrics`, named here once.
//!
//! Two kinds of series:
//! - request-time: counted by [`Metrics`] as a [`RequestObserver`] when a request finishes
//!   (atomic counters and histograms only, on the request's task);
//! - scrape-time: read from the router, engine and GPU signals, the key directory and the ledger
//!   when `/metrics` is scraped ([`Metrics::render`]); nothing is polled for them.
//!
//! LiteLLM's names and label names are kept where LiteLLM has the series (counters carry the
//! `_total` suffix LiteLLM's Python client adds, so its dashboards' queries work unchanged);
//! ours are prefixed `switchyard_`. Label values are bounded: the key label is the SHA-256 of a
//! virtual key (empty for the master key), an unknown requested model is `other`, a routing
//! reason is reduced to its code.

use super::{Finished, RequestObserver};
use crate::app::AppState;
use crate::config::{Config, Deployment};
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_yaml::{Mapping, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// LiteLLM's caller labels, in this order on every family that carries them.
const CALLER: [&str; 6] = [
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "user",
];
/// LiteLLM's deployment labels.
const DEPLOYMENT: [&str; 4] = ["litellm_model_name", "model_id", "api_base", "api_provider"];

/// LiteLLM's latency buckets (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0,
    7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0,
];

/// The requested-model label of a name that is no configured group or alias (bounds cardinality).
const OTHER_MODEL: &str = "other";

/// Upstream errors' messages read `<deployment>: upstream ...` (see `GatewayError`'s Display);
/// the unit test below breaks if that wording changes.
const UPSTREAM_MARK: &str = ": upstream ";

/// `callbacks`, `success_callback`, `failure_callback` in `litellm_settings`: the value
/// `prometheus` switches LiteLLM's metrics on, and ours are always on.
const CALLBACK_KEYS: &[&str] = &["callbacks", "success_callback", "failure_callback"];
const PROMETHEUS_CALLBACK: &str = "prometheus";

/// Removes `prometheus` from the callback lists of `litellm_settings` (a key left empty is
/// removed), so accepting it never warns; other callbacks stay for their reader.
pub fn accept_prometheus_callbacks(litellm_settings: &mut Mapping) {
    for key in CALLBACK_KEYS {
        let empty = match litellm_settings.get_mut(*key) {
            Some(Value::String(s)) => s == PROMETHEUS_CALLBACK,
            Some(Value::Sequence(items)) => {
                items.retain(|v| v.as_str() != Some(PROMETHEUS_CALLBACK));
                items.is_empty()
            }
            _ => false,
        };
        if empty {
            litellm_settings.remove(*key);
        }
    }
}

fn names(fixed: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    fixed.iter().chain(extra).copied().collect()
}

/// A deployment's fixed label values.
struct DeploymentLabels {
    dep: Arc<Deployment>,
    provider: String,
}

impl DeploymentLabels {
    fn values(&self) -> [&str; 4] {
        [
            &self.dep.litellm_model,
            &self.dep.id,
            &self.dep.api_base,
            &self.provider,
        ]
    }

    fn with_group(&self) -> [&str; 5] {
        let [a, b, c, d] = self.values();
        [a, b, c, d, &self.dep.model_name]
    }
}

pub struct Metrics {
    registry: Registry,
    // request-time
    proxy_requests: IntCounterVec,
    proxy_failed: IntCounterVec,
    requests: IntCounterVec,
    llm_api_failed: IntCounterVec,
    input_tokens: IntCounterVec,
    output_tokens: IntCounterVec,
    total_tokens: IntCounterVec,
    spend: CounterVec,
    total_latency: HistogramVec,
    llm_api_latency: HistogramVec,
    ttft: HistogramVec,
    cache_hits: IntCounterVec,
    route_decisions: IntCounterVec,
    cloud_equivalent: CounterVec,
    savings: CounterVec,
    // scrape-time
    deployment_state: GaugeVec,
    cooled_down: IntCounterVec,
    deployment_success: IntCounterVec,
    deployment_failure: IntCounterVec,
    deployment_total: IntCounterVec,
    in_flight: GaugeVec,
    cooldown_remaining: GaugeVec,
    saturated: GaugeVec,
    engine_up: GaugeVec,
    engine_waiting: GaugeVec,
    engine_running: GaugeVec,
    engine_kv: GaugeVec,
    engine_age: GaugeVec,
    gpu_util: GaugeVec,
    gpu_mem_used: GaugeVec,
    gpu_mem_total: GaugeVec,
    gpu_temp: GaugeVec,
    gpu_power: GaugeVec,
    key_remaining: GaugeVec,
    key_max: GaugeVec,
    team_remaining: GaugeVec,
    team_max: GaugeVec,
    ledger_rows: IntCounterVec,
    ledger_failures: IntCounterVec,
    ledger_backlog: GaugeVec,
    ledger_spill: GaugeVec,
    // fixed facts
    deployments: Vec<DeploymentLabels>,
    /// Group names and aliases: the requested-model label values allowed for unserved requests.
    known_models: HashSet<String>,
    /// One scrape at a time: scrape-time series are reset and refilled.
    scrape: Mutex<()>,
}

/// Registers families on one registry; the first error is kept (names and labels are fixed, so
/// an error is a bug, caught at start by every test that builds a gateway).
struct Builder {
    registry: Registry,
    error: Option<prometheus::Error>,
}

impl Builder {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&mut self, c: prometheus::Result<C>) -> Option<C> {
        match c {
            Ok(c) => {
                if let Err(e) = self.registry.register(Box::new(c.clone())) {
                    self.error.get_or_insert(e);
                }
                Some(c)
            }
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn usd(&mut self, name: &str, help: &str, labels: &[&str]) -> Option<CounterVec> {
        self.add(CounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> Option<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), labels))
    }

    fn histogram(&mut self, name: &str, help: &str, labels: &[&str]) -> Option<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        self.add(HistogramVec::new(opts, labels))
    }
}

impl Metrics {
    pub fn new(config: &Config) -> Result<Metrics, crate::error::GatewayError> {
        let mut b = Builder {
            registry: Registry::new(),
            error: None,
        };
        let rm = "requested_model";
        let dep_group = names(&DEPLOYMENT, &[rm]);
        let engine = names(&DEPLOYMENT, &[rm, "engine"]);
        let gpu = ["gpu", "name"];
        let m = (|| {
            Some(Metrics {
                proxy_requests: b.counter(
                    "litellm_proxy_total_requests_metric_total",
                    "Requests made to the proxy, by status code",
                    &names(&CALLER, &[rm, "status_code"]),
                )?,
                proxy_failed: b.counter(
                    "litellm_proxy_failed_requests_metric_total",
                    "Failed requests (status >= 400), refusals included",
                    &names(&CALLER, &[rm, "exception_status", "exception_class"]),
                )?,
                requests: b.counter(
                    "litellm_requests_metric_total",
                    "LLM calls: requests served by a deployment or failed at one",
                    &names(&CALLER, &["model"]),
                )?,
                llm_api_failed: b.counter(
                    "litellm_llm_api_failed_requests_metric_total",
                    "Requests that failed at the upstream (after retries and fallbacks)",
                    &names(&CALLER, &["model"]),
                )?,
                input_tokens: b.counter(
                    "litellm_input_tokens_metric_total",
                    "Prompt tokens",
                    &names(&CALLER, &["model", rm]),
                )?,
                output_tokens: b.counter(
                    "litellm_output_tokens_metric_total",
                    "Completion tokens",
                    &names(&CALLER, &["model", rm]),
                )?,
                total_tokens: b.counter(
                    "litellm_total_tokens_metric_total",
                    "Prompt + completion tokens",
                    &names(&CALLER, &["model", rm]),
                )?,
                spend: b.usd(
                    "litellm_spend_metric_total",
                    "USD charged (local requests: their share of gpu_cost_per_hour)",
                    &names(&CALLER, &["model"]),
                )?,
                total_latency: b.histogram(
                    "litellm_request_total_latency_metric",
                    "Seconds from arrival to the response's end (a stream's last byte)",
                    &names(&CALLER, &[rm, "model"]),
                )?,
                llm_api_latency: b.histogram(
                    "litellm_llm_api_latency_metric",
                    "Seconds of served requests, arrival to end (the gateway's own share is sub-millisecond)",
                    &names(&CALLER, &[rm, "model"]),
                )?,
                ttft: b.histogram(
                    "litellm_llm_api_time_to_first_token_metric",
                    "Seconds to a stream's first chunk",
                    &names(&CALLER, &["model"]),
                )?,
                cache_hits: b.counter(
                    "litellm_cache_hits_metric_total",
                    "Requests answered from the response cache",
                    &names(&CALLER, &["model"]),
                )?,
                route_decisions: b.counter(
                    "switchyard_route_decisions_total",
                    "Finished requests by route (local, cloud, none) and the router's reason code",
                    &[rm, "route", "reason"],
                )?,
                cloud_equivalent: b.usd(
                    "switchyard_cloud_equivalent_spend_total",
                    "USD the served requests would have cost at the group's cloud price",
                    &[rm, "route"],
                )?,
                savings: b.usd(
                    "switchyard_savings_total",
                    "USD saved by serving locally: cloud equivalent minus spend of local requests",
                    &[rm],
                )?,
                deployment_state: b.gauge(
                    "litellm_deployment_state",
                    "0 healthy, 1 partial outage (failures this minute), 2 complete outage (cooling down or failing health checks)",
                    &DEPLOYMENT,
                )?,
                cooled_down: b.counter(
                    "litellm_deployment_cooled_down_total",
                    "Times the deployment was put in cooldown",
                    &DEPLOYMENT,
                )?,
                deployment_success: b.counter(
                    "litellm_deployment_success_responses_total",
                    "Attempts the deployment answered (retries counted per attempt)",
                    &dep_group,
                )?,
                deployment_failure: b.counter(
                    "litellm_deployment_failure_responses_total",
                    "Attempts that failed at the deployment",
                    &dep_group,
                )?,
                deployment_total: b.counter(
                    "litellm_deployment_total_requests_total",
                    "Attempts finished at the deployment (success + failure)",
                    &dep_group,
                )?,
                in_flight: b.gauge(
                    "switchyard_deployment_in_flight",
                    "Requests dispatched to the deployment and not finished (streams until their end)",
                    &dep_group,
                )?,
                cooldown_remaining: b.gauge(
                    "switchyard_deployment_cooldown_remaining_seconds",
                    "Seconds until a cooling deployment is used again (0 when not cooling)",
                    &dep_group,
                )?,
                saturated: b.gauge(
                    "switchyard_deployment_saturated",
                    "1 while local-first counts the local deployment as saturated (hysteresis state)",
                    &dep_group,
                )?,
                engine_up: b.gauge(
                    "switchyard_engine_up",
                    "1 when the local engine's last poll answered",
                    &engine,
                )?,
                engine_waiting: b.gauge(
                    "switchyard_engine_queue_depth",
                    "Requests waiting in the engine's queue (last reading)",
                    &engine,
                )?,
                engine_running: b.gauge(
                    "switchyard_engine_running",
                    "Requests the engine is running (last reading)",
                    &engine,
                )?,
                engine_kv: b.gauge(
                    "switchyard_engine_kv_cache_usage_ratio",
                    "Fraction of the engine's KV cache in use, 0..1 (vLLM)",
                    &engine,
                )?,
                engine_age: b.gauge(
                    "switchyard_engine_reading_age_seconds",
                    "Age of the engine's last reading",
                    &engine,
                )?,
                gpu_util: b.gauge(
                    "switchyard_gpu_utilization_percent",
                    "GPU utilisation (NVML)",
                    &gpu,
                )?,
                gpu_mem_used: b.gauge("switchyard_gpu_memory_used_bytes", "GPU memory used (NVML)", &gpu)?,
                gpu_mem_total: b.gauge("switchyard_gpu_memory_total_bytes", "GPU memory total (NVML)", &gpu)?,
                gpu_temp: b.gauge(
                    "switchyard_gpu_temperature_celsius",
                    "GPU temperature (NVML)",
                    &gpu,
                )?,
                gpu_power: b.gauge("switchyard_gpu_power_watts", "GPU power draw (NVML)", &gpu)?,
                key_remaining: b.gauge(
                    "litellm_remaining_api_key_budget_metric",
                    "max_budget minus spend of virtual keys with a budget (keys in the cache)",
                    &["hashed_api_key", "api_key_alias"],
                )?,
                key_max: b.gauge(
                    "litellm_api_key_max_budget_metric",
                    "max_budget of virtual keys with a budget (keys in the cache)",
                    &["hashed_api_key", "api_key_alias"],
                )?,
                team_remaining: b.gauge(
                    "litellm_remaining_team_budget_metric",
                    "max_budget minus spend of teams with a budget (teams in the cache)",
                    &["team", "team_alias"],
                )?,
                team_max: b.gauge(
                    "litellm_team_max_budget_metric",
                    "max_budget of teams with a budget (teams in the cache)",
                    &["team", "team_alias"],
                )?,
                ledger_rows: b.counter(
                    "switchyard_ledger_rows_total",
                    "Spend rows by outcome: written to the database, spilled to disk, refused by the database (kept in the spill file), dropped",
                    &["outcome"],
                )?,
                ledger_failures: b.counter(
                    "switchyard_ledger_write_failures_total",
                    "Failed database writes of the spend ledger",
                    &[],
                )?,
                ledger_backlog: b.gauge(
                    "switchyard_ledger_backlog_rows",
                    "Spend rows waiting to be written",
                    &[],
                )?,
                ledger_spill: b.gauge(
                    "switchyard_ledger_spill_rows",
                    "Spend rows in the spill file, waiting to be written back (above 0 with the database up: rows it refused)",
                    &[],
                )?,
                deployments: config
                    .deployments
                    .iter()
                    .map(|d| DeploymentLabels {
                        dep: d.clone(),
                        provider: d.provider.spec().prefix.trim_end_matches('/').to_string(),
                    })
                    .collect(),
                known_models: config
                    .deployments
                    .iter()
                    .map(|d| d.model_name.clone())
                    .chain(config.router.model_group_alias.keys().cloned())
                    .collect(),
                scrape: Mutex::new(()),
                registry: b.registry.clone(),
            })
        })();
        match (m, b.error) {
            (Some(m), None) => Ok(m),
            (_, e) => Err(crate::error::GatewayError::Internal(format!(
                "metrics: {}",
                e.map(|e| e.to_string()).unwrap_or_default()
            ))),
        }
    }

    /// The text exposition of every series, scrape-time ones read now.
    /// A request refused before its body was read (a missing or wrong key, a body over the
    /// limit): no caller, no model; counted so that refusals, brute-force attempts included,
    /// show in the failure series.
    pub fn refused(&self, status: u16) {
        let status_s = status.to_string();
        let caller = ["", "", "", "", "", ""];
        let [c0, c1, c2, c3, c4, c5] = caller;
        inc(&self.proxy_requests, &[c0, c1, c2, c3, c4, c5, "", &status_s], 1);
        let l = [c0, c1, c2, c3, c4, c5, "", &status_s, exception_class(status)];
        inc(&self.proxy_failed, &l, 1);
    }

    pub fn render(&self, state: &AppState) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.read_deployments(state);
        self.read_gpus(state);
        self.read_budgets(state);
        self.read_ledger(state);
        let mut out = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        out
    }

    fn read_deployments(&self, state: &AppState) {
        let now = state.router.now_ms();
        for g in [
            &self.deployment_state,
            &self.in_flight,
            &self.cooldown_remaining,
            &self.saturated,
            &self.engine_up,
            &self.engine_waiting,
            &self.engine_running,
            &self.engine_kv,
            &self.engine_age,
        ] {
            g.reset();
        }
        for d in &self.deployments {
            let s = state.router.state(&d.dep);
            let cooling_ms = s.cooled_until_ms.load(Relaxed).saturating_sub(now);
            let outage = if cooling_ms > 0 || !s.is_healthy() {
                2.0
            } else if s.failures_this_minute(now) > 0 {
                1.0
            } else {
                0.0
            };
            set(&self.deployment_state, &d.values(), outage);
            let (ok, failed, cooldowns) = s.totals();
            count_to(&self.cooled_down, &d.values(), cooldowns);
            let l = d.with_group();
            count_to(&self.deployment_success, &l, ok);
            count_to(&self.deployment_failure, &l, failed);
            count_to(&self.deployment_total, &l, ok + failed);
            set(&self.in_flight, &l, s.in_flight.load(Relaxed).max(0) as f64);
            set(&self.cooldown_remaining, &l, cooling_ms as f64 / 1000.0);
            let Some(engine) = state.signals.as_ref().and_then(|sig| sig.engine(d.dep.index)) else {
                continue;
            };
            set(&self.saturated, &l, f64::from(u8::from(s.saturated.load(Relaxed))));
            let snap = engine.snapshot();
            let kind = format!("{:?}", engine.kind()).to_ascii_lowercase();
            let [a, b, c, e, g] = l;
            let el = [a, b, c, e, g, kind.as_str()];
            set(&self.engine_up, &el, f64::from(u8::from(snap.up)));
            if snap.at_ms > 0 {
                set(&self.engine_age, &el, now.saturating_sub(snap.at_ms) as f64 / 1000.0);
            }
            for (gauge, v) in [
                (&self.engine_waiting, snap.waiting),
                (&self.engine_running, snap.running),
                (&self.engine_kv, snap.kv_usage),
            ] {
                if let Some(v) = v {
                    set(gauge, &el, v);
                }
            }
        }
    }

    fn read_gpus(&self, state: &AppState) {
        for g in [
            &self.gpu_util,
            &self.gpu_mem_used,
            &self.gpu_mem_total,
            &self.gpu_temp,
            &self.gpu_power,
        ] {
            g.reset();
        }
        let Some(sig) = &state.signals else { return };
        const MIB: f64 = 1024.0 * 1024.0;
        for g in sig.gpu().gpus {
            let index = g.index.to_string();
            let l = [index.as_str(), g.name.as_str()];
            set(&self.gpu_util, &l, f64::from(g.utilization_pct));
            set(&self.gpu_mem_used, &l, g.memory_used_mb as f64 * MIB);
            set(&self.gpu_mem_total, &l, g.memory_total_mb as f64 * MIB);
            set(&self.gpu_temp, &l, f64::from(g.temperature_c));
            set(&self.gpu_power, &l, g.power_w);
        }
    }

    fn read_budgets(&self, state: &AppState) {
        for g in [&self.key_remaining, &self.key_max, &self.team_remaining, &self.team_max] {
            g.reset();
        }
        let Some(dir) = &state.auth.directory else { return };
        for k in dir.cached_keys() {
            if let Some(max) = k.account.with_limits(|l| l.max_budget) {
                let l = [k.token.as_str(), k.key_alias.as_deref().unwrap_or("")];
                set(&self.key_max, &l, max);
                set(&self.key_remaining, &l, max - k.account.spend());
            }
        }
        for t in dir.cached_teams() {
            if let Some(max) = t.with_limits(|l| l.max_budget) {
                let l = [t.id.as_str(), ""];
                set(&self.team_max, &l, max);
                set(&self.team_remaining, &l, max - t.spend());
            }
        }
    }

    fn read_ledger(&self, state: &AppState) {
        let Some(ledger) = &state.ledger else { return };
        let s = &ledger.stats;
        for (outcome, n) in [
            ("written", &s.written),
            ("spilled", &s.spilled),
            ("refused", &s.refused),
            ("dropped", &s.dropped),
        ] {
            count_to(&self.ledger_rows, &[outcome], n.load(Relaxed));
        }
        count_to(&self.ledger_failures, &[], s.failures.load(Relaxed));
        set(&self.ledger_backlog, &[], s.backlog.load(Relaxed) as f64);
        set(&self.ledger_spill, &[], s.spill_rows.load(Relaxed) as f64);
    }
}

fn set(g: &GaugeVec, labels: &[&str], v: f64) {
    if let Ok(g) = g.get_metric_with_label_values(labels) {
        g.set(v);
    }
}

/// Brings a scrape-time counter up to a monotonic source's total.
fn count_to(c: &IntCounterVec, labels: &[&str], total: u64) {
    if let Ok(c) = c.get_metric_with_label_values(labels) {
        c.inc_by(total.saturating_sub(c.get()));
    }
}

fn inc(c: &IntCounterVec, labels: &[&str], by: u64) {
    if let Ok(c) = c.get_metric_with_label_values(labels) {
        c.inc_by(by);
    }
}

fn add_usd(c: &CounterVec, labels: &[&str], usd: f64) {
    // Counters only grow; a non-finite price never reaches them.
    if usd > 0.0 && usd.is_finite() {
        if let Ok(c) = c.get_metric_with_label_values(labels) {
            c.inc_by(usd);
        }
    }
}

fn observe(h: &HistogramVec, labels: &[&str], seconds: f64) {
    if seconds.is_finite() && seconds >= 0.0 {
        if let Ok(h) = h.get_metric_with_label_values(labels) {
            h.observe(seconds);
        }
    }
}

/// The router's reason reduced to its code: `queue_depth=7>=4;kv_cache=...` -> `queue_depth`.
pub fn reason_code(reason: &str) -> &str {
    let end = reason.find([':', '=', ';', ',']).unwrap_or(reason.len());
    &reason[..end]
}

/// LiteLLM's exception class for an HTTP status (OpenAI SDK names).
fn exception_class(status: u16) -> &'static str {
    match status {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 | 504 => "Timeout",
        413 => "RequestTooLargeError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        502 => "BadGatewayError",
        503 => "ServiceUnavailableError",
        500..=599 => "InternalServerError",
        _ => "APIError",
    }
}

/// Whether a failed request's error came from the upstream (not a refusal by the gateway).
fn upstream_failure(error: Option<&str>) -> bool {
    error.is_some_and(|e| e.contains(UPSTREAM_MARK))
}

impl RequestObserver for Metrics {
    fn request_done(&self, done: &Finished<'_>) {
        let r = done.row;
        let caller = [
            "",
            r.api_key.as_deref().unwrap_or(""),
            r.key_alias.as_deref().unwrap_or(""),
            r.team_id.as_deref().unwrap_or(""),
            "",
            r.user_id.as_deref().unwrap_or(""),
        ];
        let [c0, c1, c2, c3, c4, c5] = caller;
        let served = r.model_id.is_some();
        let requested = if served || self.known_models.contains(&r.model_group) {
            r.model_group.as_str()
        } else {
            OTHER_MODEL
        };
        let model = r.model.as_deref().unwrap_or("");
        let status = u16::try_from(r.status).unwrap_or(0);
        let status_s = status.to_string();
        let failed = status >= 400;
        let upstream_failed = failed && upstream_failure(done.error);

        inc(&self.proxy_requests, &[c0, c1, c2, c3, c4, c5, requested, &status_s], 1);
        if failed {
            let l = [c0, c1, c2, c3, c4, c5, requested, &status_s, exception_class(status)];
            inc(&self.proxy_failed, &l, 1);
        }
        let with_model = [c0, c1, c2, c3, c4, c5, model];
        if served || upstream_failed {
            inc(&self.requests, &with_model, 1);
        }
        if upstream_failed {
            inc(&self.llm_api_failed, &with_model, 1);
        }
        let route = r.route.as_str();
        let reason = done.reason.map(reason_code).filter(|c| !c.is_empty()).unwrap_or("none");
        inc(&self.route_decisions, &[requested, route, reason], 1);
        let latency = r.latency_ms / 1000.0;
        let with_requested = [c0, c1, c2, c3, c4, c5, requested, model];
        observe(&self.total_latency, &with_requested, latency);
        // A cache hit has no deployment: it is counted here, not as an LLM call below.
        if r.cache_hit {
            inc(&self.cache_hits, &with_model, 1);
        }
        if !served {
            return;
        }
        let tokens = [c0, c1, c2, c3, c4, c5, model, requested];
        let (prompt, completion) = (r.prompt_tokens.max(0) as u64, r.completion_tokens.max(0) as u64);
        inc(&self.input_tokens, &tokens, prompt);
        inc(&self.output_tokens, &tokens, completion);
        inc(&self.total_tokens, &tokens, prompt + completion);
        add_usd(&self.spend, &with_model, r.spend);
        observe(&self.llm_api_latency, &with_requested, latency);
        if let Some(ttft) = r.ttft_ms {
            observe(&self.ttft, &with_model, ttft / 1000.0);
        }
        add_usd(&self.cloud_equivalent, &[requested, route], r.cloud_equivalent);
        if route == "local" {
            add_usd(&self.savings, &[requested], r.cloud_equivalent - r.spend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GatewayError;
    use std::time::Duration;

    #[test]
    fn reason_codes_are_bounded() {
        assert_eq!(reason_code("queue_depth=7>=4;kv_cache=0.95>=0.90"), "queue_depth");
        assert_eq!(reason_code("saturated_no_cloud:in_flight=2>=2"), "saturated_no_cloud");
        assert_eq!(reason_code("local_ok"), "local_ok");
        assert_eq!(reason_code("engine_down=connection refused"), "engine_down");
    }

    #[test]
    fn upstream_errors_are_told_from_refusals() {
        let d = || "chat/up".to_string();
        let upstream = [
            GatewayError::Upstream {
                deployment: d(),
                status: 500,
                message: "boom".into(),
                error_type: None,
                param: None,
                retry_after: None,
            },
            GatewayError::UpstreamUnreachable {
                deployment: d(),
                detail: "refused".into(),
            },
            GatewayError::UpstreamTimeout {
                deployment: d(),
                after: Duration::from_secs(1),
            },
            GatewayError::UpstreamProtocol {
                deployment: d(),
                detail: "bad".into(),
            },
        ];
        for e in upstream {
            assert!(upstream_failure(Some(&e.to_string())), "{e}");
        }
        let refusals = [
            GatewayError::BudgetExceeded {
                message: "Budget has been exceeded".into(),
            },
            GatewayError::ModelAccessDenied("key not allowed to access model".into()),
            GatewayError::Unauthorized("no key".into()),
        ];
        for e in refusals {
            assert!(!upstream_failure(Some(&e.to_string())), "{e}");
        }
    }

    #[test]
    fn prometheus_callbacks_are_accepted_and_others_kept() {
        let mut m: Mapping = serde_yaml::from_str(
            "callbacks: [prometheus]\nsuccess_callback: [prometheus, langfuse]\nfailure_callback: prometheus\n",
        )
        .unwrap();
        accept_prometheus_callbacks(&mut m);
        assert!(!m.contains_key("callbacks"));
        assert!(!m.contains_key("failure_callback"));
        assert_eq!(
            m.get("success_callback").unwrap(),
            &serde_yaml::from_str::<Value>("[langfuse]").unwrap()
        );
    }
}
