//! `litellm_settings`, `router_settings` and `general_settings` as typed structs.

use super::fields::{scalar_string, Fields};
use super::interpolate::Env;
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::time::Duration;

/// LiteLLM's default request timeout (seconds).
const DEFAULT_REQUEST_TIMEOUT: f64 = 6000.0;
/// LiteLLM's default retry count (the OpenAI SDK's).
const DEFAULT_NUM_RETRIES: u32 = 2;
/// Default request body limit when `max_request_size_mb` is not set.
const DEFAULT_MAX_REQUEST_MB: f64 = 32.0;
/// LiteLLM's defaults for cooldown seconds and fallback depth.
const DEFAULT_COOLDOWN_SECS: f64 = 5.0;
const DEFAULT_MAX_FALLBACKS: usize = 5;
/// LiteLLM's default interval between background health checks (seconds).
const DEFAULT_HEALTH_CHECK_INTERVAL: f64 = 300.0;

/// `allowed_fails_policy` keys, as LiteLLM names them.
pub const ALLOWED_FAILS_KEYS: &[&str] = &[
    "BadRequestErrorAllowedFails",
    "AuthenticationErrorAllowedFails",
    "TimeoutErrorAllowedFails",
    "RateLimitErrorAllowedFails",
    "ContentPolicyViolationErrorAllowedFails",
    "InternalServerErrorAllowedFails",
    "ServiceUnavailableErrorAllowedFails",
    "BadGatewayErrorAllowedFails",
    "NotFoundErrorAllowedFails",
];

/// `retry_policy` keys, as LiteLLM names them.
pub const RETRY_POLICY_KEYS: &[&str] = &[
    "BadRequestErrorRetries",
    "AuthenticationErrorRetries",
    "TimeoutErrorRetries",
    "RateLimitErrorRetries",
    "ContentPolicyViolationErrorRetries",
    "InternalServerErrorRetries",
    "ServiceUnavailableErrorRetries",
    "NotFoundErrorRetries",
    "DefaultRetries",
];

/// A map of LiteLLM error-class keys to counts; unknown keys are errors.
fn count_map(f: &mut Fields, key: &str, known: &[&str]) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    let Some(m) = f.mapping(key) else { return out };
    let path = f.path_of(key);
    let mut inner = Fields::new(m, path, f.errors_mut());
    for k in known {
        if let Some(n) = inner.u64(k) {
            out.insert(k.to_string(), n as u32);
        }
    }
    let (unknown, _) = inner.rest();
    for p in unknown {
        f.errors_mut()
            .push((p, format!("unknown key; expected one of {}", known.join(", "))));
    }
    out
}

/// `[{group: [fallback, ...]}, ...]` (a single mapping is accepted too).
fn fallback_list(f: &mut Fields, key: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let Some(v) = f.take(key) else { return out };
    let maps: Vec<Value> = match v {
        Value::Sequence(s) => s,
        m @ Value::Mapping(_) => vec![m],
        other => {
            f.error(
                key,
                format!(
                    "expected a list of {{model_group: [fallbacks]}}, found {}",
                    super::source::kind(&other)
                ),
            );
            return out;
        }
    };
    for (i, item) in maps.into_iter().enumerate() {
        let Value::Mapping(m) = item else {
            f.error(&format!("{key}[{i}]"), "expected {model_group: [fallbacks]}");
            continue;
        };
        for (k, v) in m {
            let Some(group) = scalar_string(&k) else {
                continue;
            };
            let targets = match v {
                Value::Sequence(s) => s.iter().filter_map(scalar_string).collect(),
                Value::String(s) => vec![s],
                _ => {
                    f.error(&format!("{key}[{i}].{group}"), "expected a list of model groups");
                    continue;
                }
            };
            out.push((group, targets));
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct LitellmSettings {
    /// Router keys LiteLLM also accepts here (`fallbacks`, `cooldown_time`, ...);
    /// `router_settings` wins where both are set.
    pub router_keys: Mapping,
    pub drop_params: bool,
    pub num_retries: u32,
    pub request_timeout: Duration,
    pub json_logs: bool,
    /// The response cache (`cache: true` and `cache_params`).
    pub cache: Option<super::cache::CacheSettings>,
    /// `success_callback` / `failure_callback` / `callbacks`: generic webhooks.
    pub callbacks: super::alerting::Callbacks,
    /// `require_auth_for_metrics_endpoint`: `/metrics` answers only the master key.
    pub require_auth_for_metrics: bool,
    /// Keys read by later stages (cache, callbacks, fallbacks), kept as written.
    pub rest: Mapping,
}

#[derive(Debug, Clone)]
pub struct Alias {
    pub target: String,
    pub hidden: bool,
}

#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub routing_strategy: Strategy,
    pub model_group_alias: HashMap<String, Alias>,
    pub num_retries: u32,
    pub timeout: Duration,
    pub stream_timeout: Option<Duration>,
    /// Seconds a failing deployment sits out (LiteLLM's default 5).
    pub cooldown_time: Duration,
    pub disable_cooldowns: bool,
    /// `None` = LiteLLM's default policy (see `routing::cooldown`).
    pub allowed_fails: Option<u32>,
    pub allowed_fails_policy: HashMap<String, u32>,
    pub retry_policy: HashMap<String, u32>,
    /// Minimum wait before retrying the same deployment.
    pub retry_after: Duration,
    pub fallbacks: Vec<(String, Vec<String>)>,
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
    pub default_fallbacks: Vec<String>,
    pub max_fallbacks: usize,
    pub enable_pre_call_checks: bool,
    /// latency-based-routing: pick among deployments within (1 + buffer) x the lowest latency.
    pub lowest_latency_buffer: f64,
    pub local_first: LocalFirstSettings,
    /// Keys read by the router's later stages, kept as written.
    pub rest: Mapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    SimpleShuffle,
    LeastBusy,
    LatencyBased,
    UsageBased,
    CostBased,
    /// switchyard's own: local deployments while they have room, else the cloud.
    LocalFirst,
}

/// `router_settings.local_first`: when a local deployment counts as saturated.
///
/// Engine signals (queue, KV cache, TTFT, GPU hazards) enter "saturated" at the `*_enter`
/// value and leave it only below the `*_leave` value and after `min_dwell_ms`, so routing does not
/// flap on noisy gauges. Our own in-flight count against the engine's slots is exact and applies
/// at once, both ways.
#[derive(Debug, Clone)]
pub struct LocalFirstSettings {
    pub queue_enter: f64,
    pub queue_leave: f64,
    pub kv_enter: f64,
    pub kv_leave: f64,
    pub ttft_enter_ms: f64,
    pub ttft_leave_ms: f64,
    pub min_dwell_ms: u64,
    /// Prompt estimate + max_tokens above this goes to the cloud ("cheap" requests stay local).
    pub cheap_max_tokens: u64,
    /// Concurrent requests a local engine takes when it does not say (Ollama's default is 1);
    /// `model_info.max_parallel` sets it per deployment.
    pub default_parallel: u64,
    /// Requests allowed to wait beyond an engine's slots before escalating: worth it while a
    /// slot frees up sooner than the cloud answers (0 = escalate as soon as the slots are full).
    pub max_local_queue: u64,
    /// A reading older than this counts as unknown.
    pub stale_after_ms: u64,
    pub engine_poll_ms: u64,
    pub gpu_poll_ms: u64,
    pub max_gpu_temp_c: u32,
    /// VRAM held by processes other than the engine that makes the GPU count as contended.
    pub max_foreign_vram_mb: Option<u64>,
    /// `false`: never send a request to a cloud deployment (a local-only gateway).
    pub allow_cloud: bool,
}

impl Default for LocalFirstSettings {
    fn default() -> Self {
        LocalFirstSettings {
            queue_enter: 4.0,
            queue_leave: 1.0,
            kv_enter: 0.90,
            kv_leave: 0.75,
            ttft_enter_ms: 3000.0,
            ttft_leave_ms: 1500.0,
            min_dwell_ms: 2000,
            cheap_max_tokens: 32768,
            default_parallel: 1,
            max_local_queue: 0,
            stale_after_ms: 1000,
            engine_poll_ms: 200,
            gpu_poll_ms: 1000,
            max_gpu_temp_c: 90,
            max_foreign_vram_mb: None,
            allow_cloud: true,
        }
    }
}

fn local_first(f: &mut Fields, warnings: &mut Vec<String>) -> LocalFirstSettings {
    let mut s = LocalFirstSettings::default();
    let Some(m) = f.mapping("local_first") else { return s };
    let path = f.path_of("local_first");
    let mut l = Fields::new(m, path, f.errors_mut());
    let ratio = |l: &mut Fields, k: &str, d: f64| {
        let v = l.non_negative(k).unwrap_or(d);
        if v > 1.0 {
            l.error(k, format!("is a fraction of the KV cache between 0 and 1, found {v}"));
        }
        v
    };
    s.queue_enter = l.non_negative("queue_enter").unwrap_or(s.queue_enter);
    s.queue_leave = l.non_negative("queue_leave").unwrap_or(s.queue_leave);
    s.kv_enter = ratio(&mut l, "kv_enter", s.kv_enter);
    s.kv_leave = ratio(&mut l, "kv_leave", s.kv_leave);
    s.ttft_enter_ms = l.non_negative("ttft_enter_ms").unwrap_or(s.ttft_enter_ms);
    s.ttft_leave_ms = l.non_negative("ttft_leave_ms").unwrap_or(s.ttft_leave_ms);
    s.min_dwell_ms = l.u64("min_dwell_ms").unwrap_or(s.min_dwell_ms);
    s.cheap_max_tokens = l.u64("cheap_max_tokens").unwrap_or(s.cheap_max_tokens);
    s.default_parallel = l.u64("default_parallel").unwrap_or(s.default_parallel).max(1);
    s.max_local_queue = l.u64("max_local_queue").unwrap_or(s.max_local_queue);
    s.stale_after_ms = l.u64("stale_after_ms").unwrap_or(s.stale_after_ms);
    s.engine_poll_ms = l.u64("engine_poll_ms").unwrap_or(s.engine_poll_ms).max(10);
    s.gpu_poll_ms = l.u64("gpu_poll_ms").unwrap_or(s.gpu_poll_ms).max(100);
    s.max_gpu_temp_c = l.u64("max_gpu_temp_c").map(|t| t as u32).unwrap_or(s.max_gpu_temp_c);
    s.max_foreign_vram_mb = l.u64("max_foreign_vram_mb");
    s.allow_cloud = l.bool("allow_cloud").unwrap_or(true);
    for (lo, hi, name) in [
        (s.queue_leave, s.queue_enter, "queue"),
        (s.kv_leave, s.kv_enter, "kv"),
        (s.ttft_leave_ms, s.ttft_enter_ms, "ttft"),
    ] {
        if lo > hi {
            l.error(
                &format!("{name}_leave"),
                format!("must not exceed {name}_enter ({lo} > {hi})"),
            );
        }
    }
    let (paths, _) = l.rest();
    for p in paths {
        warnings.push(format!("{p}: unknown local_first setting; ignored"));
    }
    s
}

#[derive(Debug, Clone)]
pub struct GeneralSettings {
    pub master_key: Option<String>,
    pub max_request_size_bytes: usize,
    pub background_health_checks: bool,
    pub health_check_interval: Duration,
    /// Keys, teams, users and the spend ledger; `None` leaves virtual keys off (the CLI then uses
    /// a SQLite file, see `cli::serve`).
    pub database: Option<crate::store::Database>,
    /// `disable_database: true`: no keys and no ledger, not even the default SQLite file (a
    /// stateless proxy behind the master key, e.g. on a read-only filesystem).
    pub database_disabled: bool,
    pub ledger: crate::ledger::writer::LedgerSettings,
    /// The hourly price of the GPU box: local requests are charged their share of it.
    pub gpu_cost_per_hour: Option<f64>,
    /// `alerting: ["slack"]` and its companions; `None` when alerting is off.
    pub alerting: Option<super::alerting::AlertSettings>,
    /// Serve `/metrics` on this port (same host as the main listener) instead of the main port.
    pub metrics_port: Option<u16>,
    /// Listener timeouts, the per-address connection cap and the shutdown grace.
    pub server: super::server::ServerSettings,
    /// `public_metrics: true`: `/metrics` stays open without the master key even on a public
    /// address (the explicit opt-out of `api::metrics`'s default).
    pub public_metrics: bool,
    /// Browser origins allowed to call the gateway (`cors_allow_origins`, or LiteLLM's
    /// `LITELLM_CORS_ORIGINS`); empty = no CORS headers at all (LiteLLM defaults to `*`).
    pub cors_allow_origins: Vec<String>,
    /// The address the gateway listens on, set by the CLI (not a config key); `None` (a library
    /// caller that did not say) counts as loopback. Decides `/metrics`' default.
    pub listen_host: Option<String>,
    /// Stored Responses API objects (`store: true`, `previous_response_id`).
    pub responses_store: ResponsesStoreSettings,
    pub rest: Mapping,
}

/// OpenAI keeps stored responses 30 days.
const DEFAULT_RESPONSES_TTL: Duration = Duration::from_secs(30 * 86_400);

/// `responses_store_ttl`, `responses_store_max_mb`, `disable_responses_store`.
#[derive(Debug, Clone)]
pub struct ResponsesStoreSettings {
    /// `disable_responses_store: true`: nothing is stored, `previous_response_id` is refused.
    pub disabled: bool,
    /// How long a stored response stays readable (seconds, or `30d`, `12h`, ...).
    pub ttl: Duration,
    /// The largest row (conversation + output + response object) that is stored.
    pub max_bytes: usize,
}

impl Default for ResponsesStoreSettings {
    fn default() -> Self {
        ResponsesStoreSettings {
            disabled: false,
            ttl: DEFAULT_RESPONSES_TTL,
            max_bytes: (DEFAULT_MAX_REQUEST_MB * 1024.0 * 1024.0) as usize,
        }
    }
}

fn responses_store(f: &mut Fields) -> ResponsesStoreSettings {
    let mut s = ResponsesStoreSettings {
        disabled: f.bool("disable_responses_store").unwrap_or(false),
        ..Default::default()
    };
    match f.take("responses_store_ttl") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_f64().filter(|x| *x > 0.0 && x.is_finite()) {
            Some(x) => s.ttl = Duration::from_secs_f64(x),
            None => f.error(
                "responses_store_ttl",
                format!("must be a positive number of seconds, found {n:?}"),
            ),
        },
        Some(Value::String(t)) => match crate::limits::duration::parse_ms(&t) {
            Some(ms) => s.ttl = Duration::from_millis(ms as u64),
            None => f.error(
                "responses_store_ttl",
                format!("{t:?} is not a duration: seconds, or like 30s, 30m, 12h, 30d, 1w, 1mo"),
            ),
        },
        Some(other) => f.error(
            "responses_store_ttl",
            format!(
                "expected seconds or a duration like 30d, found {}",
                super::source::kind(&other)
            ),
        ),
    }
    if let Some(mb) = f.non_negative("responses_store_max_mb") {
        s.max_bytes = ((mb * 1024.0 * 1024.0) as usize).max(1024);
    }
    s
}

impl GeneralSettings {
    /// Whether the main listener may be reached from other hosts.
    pub fn listens_beyond_loopback(&self) -> bool {
        self.listen_host
            .as_deref()
            .is_some_and(|h| !crate::api::exposure::is_loopback_host(h))
    }
}

/// `cors_allow_origins` (a list, or a comma-separated string as LiteLLM's env var): each `*` or
/// `scheme://host[:port]`, which is what a browser sends in `Origin`.
fn cors_origins(f: &mut Fields, env: &dyn Env) -> Vec<String> {
    let path = f.path_of("cors_allow_origins");
    let given = f
        .string_list("cors_allow_origins")
        .or_else(|| env.get("LITELLM_CORS_ORIGINS").map(|v| vec![v]))
        .unwrap_or_default();
    let mut out = Vec::new();
    for o in given
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let valid = o == "*"
            || url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
            });
        if valid {
            out.push(o.to_ascii_lowercase());
        } else {
            f.errors_mut().push((
                path.clone(),
                format!("{o:?} is not an origin; expected \"*\" or scheme://host[:port], e.g. https://app.example.com"),
            ));
        }
    }
    out
}

/// Keys that configure the router but that LiteLLM also reads from `litellm_settings`.
const ROUTER_KEYS_IN_LITELLM: &[&str] = &[
    "fallbacks",
    "default_fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "disable_cooldowns",
    "retry_policy",
    "retry_after",
    "max_fallbacks",
    "enable_pre_call_checks",
];

/// Strategies LiteLLM documents; a value outside this list is an error.
pub const ROUTING_STRATEGIES: &[&str] = &[
    "local-first",
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
    "cost-based-routing",
    "provider-budget-routing",
];

fn not_implemented(paths: Vec<String>, warnings: &mut Vec<String>) {
    for p in paths {
        warnings.push(format!("{p}: accepted but not implemented yet; ignored"));
    }
}

pub fn litellm(
    mut map: Mapping,
    env: &dyn Env,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> LitellmSettings {
    crate::telemetry::metrics::accept_prometheus_callbacks(&mut map);
    let mut f = Fields::new(map, "litellm_settings", errs);
    let mut router_keys = Mapping::new();
    for k in ROUTER_KEYS_IN_LITELLM {
        if let Some(v) = f.take(k) {
            router_keys.insert(Value::String(k.to_string()), v);
        }
    }
    let drop_params = f.bool("drop_params").unwrap_or(false);
    let num_retries = f.u64("num_retries").map(|n| n as u32).unwrap_or(DEFAULT_NUM_RETRIES);
    let request_timeout = f
        .seconds("request_timeout")
        .unwrap_or(Duration::from_secs_f64(DEFAULT_REQUEST_TIMEOUT));
    let json_logs = f.bool("json_logs").unwrap_or(false);
    let cache = super::cache::parse(&mut f, env, warnings);
    let require_auth_for_metrics = f.bool("require_auth_for_metrics_endpoint").unwrap_or(false);
    // LiteLLM's debug switches have no meaning here: log levels come from RUST_LOG.
    if f.take("set_verbose").is_some() {
        warnings.push("litellm_settings.set_verbose: ignored; set RUST_LOG=debug for verbose logs".into());
    }
    // Prompts and completions are never logged nor sent to callbacks: `true` is what we do.
    if f.bool("turn_off_message_logging") == Some(false) {
        warnings.push(
            "litellm_settings.turn_off_message_logging: prompts and completions are never logged; ignored".into(),
        );
    }
    let callbacks = super::alerting::callbacks(&mut f, env, warnings);
    let (paths, rest) = f.rest();
    not_implemented(paths, warnings);
    LitellmSettings {
        router_keys,
        drop_params,
        num_retries,
        request_timeout,
        json_logs,
        cache,
        callbacks,
        require_auth_for_metrics,
        rest,
    }
}

pub fn router(
    map: Mapping,
    litellm: &LitellmSettings,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> RouterSettings {
    // litellm_settings' router keys count where router_settings does not set them.
    let mut map = map;
    for (k, v) in &litellm.router_keys {
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone());
        }
    }
    let mut f = Fields::new(map, "router_settings", errs);
    let routing_strategy = match f.string("routing_strategy").as_deref() {
        None | Some("simple-shuffle") => Strategy::SimpleShuffle,
        Some("least-busy") => Strategy::LeastBusy,
        Some("latency-based-routing") => Strategy::LatencyBased,
        Some("usage-based-routing") | Some("usage-based-routing-v2") => Strategy::UsageBased,
        Some("cost-based-routing") => Strategy::CostBased,
        Some("local-first") => Strategy::LocalFirst,
        Some(s @ "provider-budget-routing") => {
            warnings.push(format!(
                "router_settings.routing_strategy: {s:?} is not implemented yet; using simple-shuffle"
            ));
            Strategy::SimpleShuffle
        }
        Some(s) => {
            let s = s.to_string();
            f.error(
                "routing_strategy",
                format!(
                    "unknown strategy {s:?}; expected one of {}",
                    ROUTING_STRATEGIES.join(", ")
                ),
            );
            Strategy::SimpleShuffle
        }
    };
    let mut model_group_alias = HashMap::new();
    if let Some(m) = f.mapping("model_group_alias") {
        for (k, v) in m {
            let Some(name) = scalar_string(&k) else {
                continue;
            };
            let path = f.path_of(&format!("model_group_alias.{name}"));
            match v {
                Value::String(target) => {
                    model_group_alias.insert(name, Alias { target, hidden: false });
                }
                Value::Mapping(inner) => {
                    let target = inner.get("model").and_then(scalar_string);
                    let hidden = matches!(inner.get("hidden"), Some(Value::Bool(true)));
                    match target {
                        Some(target) => {
                            model_group_alias.insert(name, Alias { target, hidden });
                        }
                        None => warnings.push(format!("{path}: has no `model`; alias ignored")),
                    }
                }
                // LiteLLM accepts only a name or {model, hidden}; a list loads there and does
                // nothing, so it is a warning here too, not a failure.
                _ => warnings.push(format!(
                    "{path}: expected a model group name or {{model, hidden}}; alias ignored"
                )),
            }
        }
    }
    let num_retries = f.u64("num_retries").map(|n| n as u32).unwrap_or(litellm.num_retries);
    let timeout = f.seconds("timeout").unwrap_or(litellm.request_timeout);
    let stream_timeout = f.seconds("stream_timeout");
    let cooldown_time = Duration::from_secs_f64(f.non_negative("cooldown_time").unwrap_or(DEFAULT_COOLDOWN_SECS));
    let disable_cooldowns = f.bool("disable_cooldowns").unwrap_or(false);
    let allowed_fails = f.u64("allowed_fails").map(|n| n as u32);
    let allowed_fails_policy = count_map(&mut f, "allowed_fails_policy", ALLOWED_FAILS_KEYS);
    let retry_policy = count_map(&mut f, "retry_policy", RETRY_POLICY_KEYS);
    let retry_after = Duration::from_secs_f64(f.non_negative("retry_after").unwrap_or(0.0));
    let fallbacks = fallback_list(&mut f, "fallbacks");
    let context_window_fallbacks = fallback_list(&mut f, "context_window_fallbacks");
    let content_policy_fallbacks = fallback_list(&mut f, "content_policy_fallbacks");
    let default_fallbacks = f.string_list("default_fallbacks").unwrap_or_default();
    let max_fallbacks = f
        .u64("max_fallbacks")
        .map(|n| n as usize)
        .unwrap_or(DEFAULT_MAX_FALLBACKS);
    let enable_pre_call_checks = f.bool("enable_pre_call_checks").unwrap_or(false);
    let mut lowest_latency_buffer = 0.0;
    if let Some(args) = f.mapping("routing_strategy_args") {
        let mut a = Fields::new(args, f.path_of("routing_strategy_args"), f.errors_mut());
        lowest_latency_buffer = a.non_negative("lowest_latency_buffer").unwrap_or(0.0);
        a.take("ttl");
        a.take("max_latency_list_size");
        let (paths, _) = a.rest();
        not_implemented(paths, warnings);
    }
    let local_first = local_first(&mut f, warnings);
    let (paths, rest) = f.rest();
    not_implemented(paths, warnings);
    RouterSettings {
        routing_strategy,
        model_group_alias,
        num_retries,
        timeout,
        stream_timeout,
        cooldown_time,
        disable_cooldowns,
        allowed_fails,
        allowed_fails_policy,
        retry_policy,
        retry_after,
        fallbacks,
        context_window_fallbacks,
        content_policy_fallbacks,
        default_fallbacks,
        max_fallbacks,
        enable_pre_call_checks,
        lowest_latency_buffer,
        local_first,
        rest,
    }
}

pub fn general(
    map: Mapping,
    env: &dyn Env,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> GeneralSettings {
    let mut f = Fields::new(map, "general_settings", errs);
    let master_key = f
        .string("master_key")
        .or_else(|| env.get("SWITCHYARD_MASTER_KEY"))
        .or_else(|| env.get("LITELLM_MASTER_KEY"))
        .filter(|k| !k.is_empty());
    let mb = f.non_negative("max_request_size_mb").unwrap_or(DEFAULT_MAX_REQUEST_MB);
    let max_request_size_bytes = ((mb * 1024.0 * 1024.0) as usize).max(1024);
    let background_health_checks = f.bool("background_health_checks").unwrap_or(false);
    let health_check_interval = f
        .seconds("health_check_interval")
        .unwrap_or(Duration::from_secs_f64(DEFAULT_HEALTH_CHECK_INTERVAL));
    let database_disabled = f.bool("disable_database").unwrap_or(false);
    let database = database(&mut f, env).filter(|_| !database_disabled);
    let mut ledger = crate::ledger::writer::LedgerSettings::default();
    if let Some(n) = f.u64("spend_logs_batch_size") {
        ledger.batch_size = (n as usize).clamp(1, 10_000);
    }
    if let Some(d) = f.seconds("spend_logs_flush_interval") {
        ledger.flush_interval = d.max(Duration::from_millis(10));
    }
    if let Some(n) = f.u64("spend_logs_buffer_rows") {
        ledger.buffer_rows = (n as usize).max(100);
    }
    // A healthy writer drains at `batch_size`; a smaller buffer would spill without an outage.
    ledger.buffer_rows = ledger.buffer_rows.max(ledger.batch_size * 2);
    ledger.spill_path = f.string("spend_logs_spill_path").map(Into::into);
    ledger.data_dir = data_dir(&mut f, env);
    if let Some(mb) = f.non_negative("spend_logs_spill_max_mb") {
        ledger.spill_max_bytes = (mb * 1024.0 * 1024.0) as u64;
    }
    ledger.rows_enabled = !f.bool("disable_spend_logs").unwrap_or(false);
    let gpu_cost_per_hour = f.non_negative("gpu_cost_per_hour");
    let alerting = super::alerting::alerting(&mut f, env, warnings);
    let metrics_port = f.u64("metrics_port").and_then(|p| match u16::try_from(p) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            f.error(
                "metrics_port",
                format!("expected a port number between 1 and 65535, found {p}"),
            );
            None
        }
    });
    let server = super::server::parse(&mut f);
    let public_metrics = f.bool("public_metrics").unwrap_or(false);
    let cors_allow_origins = cors_origins(&mut f, env);
    let responses_store = responses_store(&mut f);
    let (paths, rest) = f.rest();
    not_implemented(paths, warnings);
    GeneralSettings {
        master_key,
        max_request_size_bytes,
        background_health_checks,
        health_check_interval,
        database,
        database_disabled,
        ledger,
        gpu_cost_per_hour,
        alerting,
        metrics_port,
        server,
        public_metrics,
        cors_allow_origins,
        listen_host: None,
        responses_store,
        rest,
    }
}

/// `data_dir` (or `SWITCHYARD_DATA_DIR`), else `$XDG_STATE_HOME/switchyard`, else
/// `$HOME/.local/state/switchyard`, else `/var/lib/switchyard`: where state that is not in the
/// database lives (a Postgres gateway's spill file), never the directory the process started in.
fn data_dir(f: &mut Fields<'_>, env: &dyn Env) -> std::path::PathBuf {
    let set = |v: Option<String>| v.filter(|s| !s.is_empty());
    if let Some(dir) = set(f.string("data_dir")).or_else(|| set(env.get("SWITCHYARD_DATA_DIR"))) {
        return dir.into();
    }
    if let Some(state) = set(env.get("XDG_STATE_HOME")) {
        return std::path::Path::new(&state).join("switchyard");
    }
    if let Some(home) = set(env.get("HOME")) {
        return std::path::Path::new(&home).join(".local/state/switchyard");
    }
    crate::ledger::writer::DEFAULT_DATA_DIR.into()
}

/// `database_url` (or `DATABASE_URL`): Postgres, or `sqlite:PATH`; `database_path` (or
/// `SWITCHYARD_DB_PATH`): a SQLite file.
fn database(f: &mut Fields<'_>, env: &dyn Env) -> Option<crate::store::Database> {
    use crate::store::Database;
    let url_path = f.path_of("database_url");
    if let Some(url) = f
        .string("database_url")
        .or_else(|| env.get("DATABASE_URL"))
        .filter(|u| !u.is_empty())
    {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(Database::Postgres(url));
        }
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            return Some(Database::Sqlite(path.to_string()));
        }
        f.errors_mut().push((
            url_path,
            "expected a postgres:// (or postgresql://) URL, or sqlite:PATH".into(),
        ));
        return None;
    }
    f.string("database_path")
        .or_else(|| env.get("SWITCHYARD_DB_PATH"))
        .filter(|p| !p.is_empty())
        .map(Database::Sqlite)
}
