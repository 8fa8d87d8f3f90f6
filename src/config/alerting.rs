//! Callbacks (`litellm_settings.success_callback` / `failure_callback` / `callbacks`) and alerting
//! (`general_settings.alerting`, `alert_types`, `alerting_threshold`, `alert_to_webhook_url`,
//! `alerting_args`), read into typed settings.

use super::fields::{scalar_string, Fields};
use super::interpolate::Env;
use serde_yaml::Value;
use std::collections::HashMap;
use std::time::Duration;

/// A URL that receives a JSON POST, with extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Generic webhooks for finished requests.
#[derive(Debug, Clone, Default)]
pub struct Callbacks {
    pub success: Vec<Webhook>,
    pub failure: Vec<Webhook>,
}

impl Callbacks {
    pub fn is_empty(&self) -> bool {
        self.success.is_empty() && self.failure.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertType {
    /// A key, team or user crossing 80% and 100% of its `max_budget`.
    Budget,
    /// A deployment entering cooldown.
    Cooldown,
    /// A local deployment saturated for longer than `local_saturation_seconds`.
    LocalSaturation,
    /// Failed requests over a sliding window above a rate.
    ErrorRate,
    /// A request slower than `alerting_threshold`.
    Slow,
}

impl AlertType {
    pub const ALL: [AlertType; 5] = [
        AlertType::Budget,
        AlertType::Cooldown,
        AlertType::LocalSaturation,
        AlertType::ErrorRate,
        AlertType::Slow,
    ];

    /// The name in `alert_types` (LiteLLM's where it has one).
    pub fn name(self) -> &'static str {
        match self {
            AlertType::Budget => "budget_alerts",
            AlertType::Cooldown => "cooldown_deployment",
            AlertType::LocalSaturation => "local_saturation",
            AlertType::ErrorRate => "error_rate",
            AlertType::Slow => "llm_too_slow",
        }
    }

    fn parse(s: &str) -> Option<AlertType> {
        AlertType::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// LiteLLM alert types we accept but do not send.
const UNSUPPORTED_ALERT_TYPES: &[&str] = &[
    "llm_exceptions",
    "llm_requests_hanging",
    "db_exceptions",
    "daily_reports",
    "spend_reports",
    "fallback_reports",
    "outage_alerts",
    "region_outage_alerts",
    "failed_tracking_spend",
    "new_model_added",
    "new_virtual_key_created",
    "virtual_key_created",
    "virtual_key_updated",
    "virtual_key_deleted",
    "new_team_created",
    "team_created",
    "team_updated",
    "team_deleted",
    "new_internal_user_created",
    "internal_user_created",
    "internal_user_updated",
    "internal_user_deleted",
    "end_user_created",
];

/// LiteLLM's `alerting_args` we accept but do not use.
const UNSUPPORTED_ALERTING_ARGS: &[&str] = &[
    "daily_report_frequency",
    "report_check_interval",
    "budget_alert_ttl",
    "outage_alert_ttl",
    "region_outage_alert_ttl",
    "minor_outage_alert_threshold",
    "major_outage_alert_threshold",
    "max_outage_alert_list_size",
    "log_to_console",
];

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub types: Vec<AlertType>,
    /// Where each enabled type is posted (`alert_to_webhook_url`, else `SLACK_WEBHOOK_URL`).
    pub urls: HashMap<AlertType, Vec<String>>,
    /// `alerting_threshold`: a request slower than this is an `llm_too_slow` alert.
    pub slow_request: Duration,
    pub local_saturation: Duration,
    /// Failed share of requests (status >= 500) that counts as a spike ...
    pub error_rate: f64,
    /// ... once at least this many requests arrived in the window.
    pub error_min_requests: u64,
    pub error_window: Duration,
    /// One message per subject (a key's budget, a deployment, ...) within this window.
    pub repeat_after: Duration,
}

/// LiteLLM's default slow-request threshold (seconds).
const DEFAULT_SLOW_SECS: f64 = 300.0;
const DEFAULT_SATURATION_SECS: f64 = 300.0;
const DEFAULT_ERROR_RATE: f64 = 0.5;
const DEFAULT_ERROR_MIN_REQUESTS: u64 = 20;
const DEFAULT_ERROR_WINDOW_SECS: f64 = 60.0;
const DEFAULT_REPEAT_SECS: f64 = 600.0;
/// The sliding error window is counted in one-second buckets; this bounds their number.
pub const MAX_ERROR_WINDOW_SECS: u64 = 3600;

/// `success_callback`, `failure_callback` and `callbacks` (both) from `litellm_settings`.
pub fn callbacks(f: &mut Fields, env: &dyn Env, warnings: &mut Vec<String>) -> Callbacks {
    let mut out = Callbacks::default();
    for (key, success, failure) in [
        ("success_callback", true, false),
        ("failure_callback", false, true),
        ("callbacks", true, true),
    ] {
        let path = f.path_of(key);
        for name in name_list(f, key) {
            let Some(hook) = webhook(&name, &path, env, warnings) else {
                continue;
            };
            if success && !out.success.contains(&hook) {
                out.success.push(hook.clone());
            }
            if failure && !out.failure.contains(&hook) {
                out.failure.push(hook);
            }
        }
    }
    out
}

/// A list of names; a single string counts as a list of one.
fn name_list(f: &mut Fields, key: &str) -> Vec<String> {
    match f.take(key) {
        None => vec![],
        Some(Value::Sequence(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match scalar_string(item) {
                    Some(s) => out.push(s),
                    None => f.error(&format!("{key}[{i}]"), "expected a callback name or URL"),
                }
            }
            out
        }
        Some(v) => match scalar_string(&v) {
            Some(s) => vec![s],
            None => {
                f.error(key, "expected a list of callback names or URLs");
                vec![]
            }
        },
    }
}

fn webhook(name: &str, path: &str, env: &dyn Env, warnings: &mut Vec<String>) -> Option<Webhook> {
    if name.starts_with("http://") || name.starts_with("https://") {
        return Some(Webhook {
            url: name.to_string(),
            headers: vec![],
        });
    }
    match name {
        // Metrics are always served at /metrics.
        "prometheus" => None,
        "generic" | "generic_api" => match env.get("GENERIC_LOGGER_ENDPOINT").filter(|u| !u.is_empty()) {
            Some(url) => Some(Webhook {
                url,
                headers: env
                    .get("GENERIC_LOGGER_HEADERS")
                    .map(|h| headers(&h))
                    .unwrap_or_default(),
            }),
            None => {
                warnings.push(format!("{path}: {name:?} needs GENERIC_LOGGER_ENDPOINT; ignored"));
                None
            }
        },
        other => {
            warnings.push(format!(
                "{path}: callback {other:?} is not supported (only http(s) URLs and \"generic\"); ignored"
            ));
            None
        }
    }
}

/// `GENERIC_LOGGER_HEADERS`: `Name=value,Other=value`.
fn headers(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// `alerting` and its companions from `general_settings`; `None` when alerting is off.
pub fn alerting(f: &mut Fields, env: &dyn Env, warnings: &mut Vec<String>) -> Option<AlertSettings> {
    let channels = name_list(f, "alerting");
    let path = f.path_of("alerting");
    let type_names = f.string_list("alert_types");
    let slow = f.seconds("alerting_threshold");
    let per_type = f.mapping("alert_to_webhook_url");
    let args = f.mapping("alerting_args");
    let mut slack = false;
    for c in &channels {
        match c.as_str() {
            "slack" => slack = true,
            other => warnings.push(format!("{path}: {other:?} is not supported (only \"slack\"); ignored")),
        }
    }
    if !slack {
        return None;
    }
    let mut types = Vec::new();
    match type_names {
        None => types.extend(AlertType::ALL),
        Some(names) => {
            for (i, n) in names.iter().enumerate() {
                match AlertType::parse(n) {
                    Some(t) if !types.contains(&t) => types.push(t),
                    Some(_) => {}
                    None if UNSUPPORTED_ALERT_TYPES.contains(&n.as_str()) => warnings.push(format!(
                        "{}[{i}]: alert type {n:?} is not supported; ignored",
                        f.path_of("alert_types")
                    )),
                    None => f.error(
                        &format!("alert_types[{i}]"),
                        format!(
                            "unknown alert type {n:?}; expected one of {}",
                            AlertType::ALL.map(AlertType::name).join(", ")
                        ),
                    ),
                }
            }
        }
    }
    let mut urls: HashMap<AlertType, Vec<String>> = HashMap::new();
    if let Some(m) = per_type {
        let base = f.path_of("alert_to_webhook_url");
        for (k, v) in m {
            let Some(name) = scalar_string(&k) else { continue };
            let list: Vec<String> = match &v {
                Value::Sequence(s) => s.iter().filter_map(scalar_string).collect(),
                other => scalar_string(other).into_iter().collect(),
            };
            let list: Vec<String> = list.into_iter().filter(|u| !u.is_empty()).collect();
            if let Some(bad) = list
                .iter()
                .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
            {
                f.errors_mut().push((
                    format!("{base}.{name}"),
                    format!("expected http(s) URLs, found {bad:?}"),
                ));
                continue;
            }
            match AlertType::parse(&name) {
                Some(t) => {
                    urls.insert(t, list);
                }
                None => warnings.push(format!("{base}.{name}: not an alert type switchyard sends; ignored")),
            }
        }
    }
    let default_url = env.get("SLACK_WEBHOOK_URL").filter(|u| !u.is_empty());
    types.retain(|t| {
        if urls.get(t).is_some_and(|l| !l.is_empty()) {
            return true;
        }
        match &default_url {
            Some(u) => {
                urls.insert(*t, vec![u.clone()]);
                true
            }
            None => {
                warnings.push(format!(
                    "{path}: no SLACK_WEBHOOK_URL and no alert_to_webhook_url.{}; those alerts are off",
                    t.name()
                ));
                false
            }
        }
    });
    let mut s = AlertSettings {
        types,
        urls,
        slow_request: slow.unwrap_or(Duration::from_secs_f64(DEFAULT_SLOW_SECS)),
        local_saturation: Duration::from_secs_f64(DEFAULT_SATURATION_SECS),
        error_rate: DEFAULT_ERROR_RATE,
        error_min_requests: DEFAULT_ERROR_MIN_REQUESTS,
        error_window: Duration::from_secs_f64(DEFAULT_ERROR_WINDOW_SECS),
        repeat_after: Duration::from_secs_f64(DEFAULT_REPEAT_SECS),
    };
    if let Some(m) = args {
        let mut a = Fields::new(m, f.path_of("alerting_args"), f.errors_mut());
        if let Some(d) = a.seconds("local_saturation_seconds") {
            s.local_saturation = d;
        }
        if let Some(r) = a.non_negative("error_rate_threshold") {
            if r > 1.0 {
                a.error(
                    "error_rate_threshold",
                    format!("is a fraction between 0 and 1, found {r}"),
                );
            }
            s.error_rate = r;
        }
        if let Some(n) = a.u64("error_rate_min_requests") {
            s.error_min_requests = n.max(1);
        }
        if let Some(d) = a.seconds("error_rate_window_seconds") {
            if d.as_secs() > MAX_ERROR_WINDOW_SECS || d < Duration::from_secs(1) {
                a.error(
                    "error_rate_window_seconds",
                    format!("must be between 1 and {MAX_ERROR_WINDOW_SECS} seconds"),
                );
            }
            s.error_window = d;
        }
        if let Some(d) = a.seconds("alert_cooldown_seconds") {
            s.repeat_after = d;
        }
        for k in UNSUPPORTED_ALERTING_ARGS {
            if a.take(k).is_some() {
                warnings.push(format!("{}: not supported; ignored", a.path_of(k)));
            }
        }
        let (paths, _) = a.rest();
        for p in paths {
            warnings.push(format!("{p}: unknown alerting_args key; ignored"));
        }
    }
    (!s.types.is_empty()).then_some(s)
}
