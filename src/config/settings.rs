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

#[derive(Debug, Clone)]
pub struct LitellmSettings {
    pub drop_params: bool,
    pub num_retries: u32,
    pub request_timeout: Duration,
    pub json_logs: bool,
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
    pub routing_strategy: String,
    pub model_group_alias: HashMap<String, Alias>,
    pub num_retries: u32,
    pub timeout: Duration,
    pub stream_timeout: Option<Duration>,
    /// Keys read by the router's later stages, kept as written.
    pub rest: Mapping,
}

#[derive(Debug, Clone)]
pub struct GeneralSettings {
    pub master_key: Option<String>,
    pub max_request_size_bytes: usize,
    pub rest: Mapping,
}

/// Strategies LiteLLM documents; a value outside this list is an error.
pub const ROUTING_STRATEGIES: &[&str] = &[
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
    map: Mapping,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> LitellmSettings {
    let mut f = Fields::new(map, "litellm_settings", errs);
    let drop_params = f.bool("drop_params").unwrap_or(false);
    let num_retries = f
        .u64("num_retries")
        .map(|n| n as u32)
        .unwrap_or(DEFAULT_NUM_RETRIES);
    let request_timeout = f
        .seconds("request_timeout")
        .unwrap_or(Duration::from_secs_f64(DEFAULT_REQUEST_TIMEOUT));
    let json_logs = f.bool("json_logs").unwrap_or(false);
    // LiteLLM's debug switches have no meaning here: log levels come from RUST_LOG.
    if f.take("set_verbose").is_some() {
        warnings.push(
            "litellm_settings.set_verbose: ignored; set RUST_LOG=debug for verbose logs".into(),
        );
    }
    let (paths, rest) = f.rest();
    not_implemented(paths, warnings);
    LitellmSettings {
        drop_params,
        num_retries,
        request_timeout,
        json_logs,
        rest,
    }
}

pub fn router(
    map: Mapping,
    litellm: &LitellmSettings,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> RouterSettings {
    let mut f = Fields::new(map, "router_settings", errs);
    let routing_strategy = match f.string("routing_strategy") {
        Some(s) if ROUTING_STRATEGIES.contains(&s.as_str()) => {
            if s != "simple-shuffle" {
                warnings.push(format!(
                    "router_settings.routing_strategy: {s:?} is not implemented yet; using simple-shuffle"
                ));
            }
            s
        }
        Some(s) => {
            f.error(
                "routing_strategy",
                format!(
                    "unknown strategy {s:?}; expected one of {}",
                    ROUTING_STRATEGIES.join(", ")
                ),
            );
            s
        }
        None => "simple-shuffle".into(),
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
                    model_group_alias.insert(
                        name,
                        Alias {
                            target,
                            hidden: false,
                        },
                    );
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
    let num_retries = f
        .u64("num_retries")
        .map(|n| n as u32)
        .unwrap_or(litellm.num_retries);
    let timeout = f.seconds("timeout").unwrap_or(litellm.request_timeout);
    let stream_timeout = f.seconds("stream_timeout");
    let (paths, rest) = f.rest();
    not_implemented(paths, warnings);
    RouterSettings {
        routing_strategy,
        model_group_alias,
        num_retries,
        timeout,
        stream_timeout,
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
    let mb = f
        .non_negative("max_request_size_mb")
        .unwrap_or(DEFAULT_MAX_REQUEST_MB);
    let max_request_size_bytes = ((mb * 1024.0 * 1024.0) as usize).max(1024);
    let (paths, rest) = f.rest();
    not_implemented(paths, warnings);
    GeneralSettings {
        master_key,
        max_request_size_bytes,
        rest,
    }
}
