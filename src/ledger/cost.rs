//! What one request cost, and what it would have cost in the cloud.

use crate::config::{Config, Deployment};
use crate::error::ErrorClass;
use crate::routing::fallback;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Tokens of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// All input tokens, cached ones included.
    pub prompt: u64,
    pub completion: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached: u64,
}

/// USD for `t` at `dep`'s token prices: the deployment's overrides, else the price table.
/// Per-second prices (`input_cost_per_second`, self-hosted endpoints) are charged by duration.
pub fn token_cost(dep: &Deployment, t: &Tokens, took: Duration) -> f64 {
    let c = &dep.costs;
    if c.input_cost_per_second.is_some() || c.output_cost_per_second.is_some() {
        let secs = took.as_secs_f64();
        return (c.input_cost_per_second.unwrap_or(0.0) + c.output_cost_per_second.unwrap_or(0.0)) * secs;
    }
    let table = dep.price();
    let input = c
        .input_cost_per_token
        .or_else(|| table.and_then(|p| p.input_cost_per_token));
    let output = c
        .output_cost_per_token
        .or_else(|| table.and_then(|p| p.output_cost_per_token));
    let cached_price = c
        .cache_read_input_token_cost
        .or_else(|| table.and_then(|p| p.cache_read_input_token_cost))
        .or(input);
    let cached = t.cached.min(t.prompt);
    (t.prompt - cached) as f64 * input.unwrap_or(0.0)
        + cached as f64 * cached_price.unwrap_or(0.0)
        + t.completion as f64 * output.unwrap_or(0.0)
}

/// Whether the config gives `dep` a price of its own (any of LiteLLM's cost keys).
fn has_explicit_price(dep: &Deployment) -> bool {
    let c = &dep.costs;
    c.input_cost_per_token.is_some()
        || c.output_cost_per_token.is_some()
        || c.input_cost_per_second.is_some()
        || c.output_cost_per_second.is_some()
        || c.cache_read_input_token_cost.is_some()
}

/// The completion tokens a paid attempt is reserved for when the request sets no `max_tokens`
/// and the deployment no `max_output_tokens`; the price table's maximum when that is lower.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 4096;

/// The completion tokens to reserve for: the request's own cap, else the deployment's configured
/// `model_info.max_output_tokens`, else [`DEFAULT_OUTPUT_ESTIMATE`] (or the price table's maximum
/// when that is lower).
pub fn output_estimate(dep: &Deployment, requested: u64) -> u64 {
    if requested > 0 {
        return requested;
    }
    dep.model_info.max_output_tokens.unwrap_or_else(|| {
        dep.price()
            .and_then(|p| p.max_output_tokens)
            .map_or(DEFAULT_OUTPUT_ESTIMATE, |m| m.min(DEFAULT_OUTPUT_ESTIMATE))
    })
}

/// Prices for the ledger: local deployments cost 0 at the margin, or a share of the GPU's hourly
/// price when one is configured; each local request also carries its cloud-equivalent price.
pub struct CostBook {
    gpu_cost_per_hour: Option<f64>,
    /// Per model group: the cloud deployment local requests of that group escalate to.
    escalation: HashMap<String, Arc<Deployment>>,
}

impl CostBook {
    pub fn new(config: &Config) -> Self {
        let mut escalation = HashMap::new();
        let cloud_of = |group: &str| {
            config
                .deployments
                .iter()
                .find(|d| d.model_name == group && !d.is_local())
                .cloned()
        };
        for d in config.deployments.iter().filter(|d| d.is_local()) {
            if escalation.contains_key(&d.model_name) {
                continue;
            }
            // Local-first escalates within the group; otherwise the group's fallbacks are the cloud.
            let target = cloud_of(&d.model_name).or_else(|| {
                fallback::targets(&config.router, &d.model_name, ErrorClass::ServiceUnavailable)
                    .iter()
                    .find_map(|g| cloud_of(g))
            });
            if let Some(t) = target {
                escalation.insert(d.model_name.clone(), t);
            }
        }
        CostBook {
            gpu_cost_per_hour: config.general.gpu_cost_per_hour,
            escalation,
        }
    }

    /// The GPU's hourly price a local deployment's requests share: its own, else the gateway's.
    fn gpu_cost_per_hour(&self, dep: &Deployment) -> Option<f64> {
        dep.model_info
            .extra
            .get("gpu_cost_per_hour")
            .and_then(|v| v.as_f64())
            .or(self.gpu_cost_per_hour)
    }

    /// Whether calls to `dep` cost nothing, so a spent budget does not close it. Decided by its
    /// price, as [`CostBook::price`] charges it, never by its address alone: explicit prices
    /// decide (all zero = free, wherever it runs); without them a local deployment is free unless
    /// a GPU hour is priced, and a remote one is paid unless the price table says it costs 0
    /// (an unknown price is no evidence that it is free).
    pub fn is_free(&self, dep: &Deployment) -> bool {
        if has_explicit_price(dep) {
            let c = &dep.costs;
            return [
                c.input_cost_per_token,
                c.output_cost_per_token,
                c.input_cost_per_second,
                c.output_cost_per_second,
                c.cache_read_input_token_cost,
            ]
            .iter()
            .all(|p| p.is_none_or(|p| p <= 0.0));
        }
        if dep.is_local() {
            return self.gpu_cost_per_hour(dep).is_none_or(|p| p <= 0.0);
        }
        dep.price()
            .is_some_and(|p| p.input_cost_per_token == Some(0.0) && p.output_cost_per_token.is_none_or(|o| o <= 0.0))
    }

    /// What a paid attempt on `dep` is reserved at: `prompt` tokens in and `max_output` out, at
    /// the price the ledger will charge. Duration-priced deployments (per second, a GPU share)
    /// estimate 0: they are held to a budget with something left, not to an amount.
    pub fn estimate(&self, dep: &Deployment, prompt: u64, max_output: u64) -> f64 {
        let t = Tokens {
            prompt,
            completion: max_output,
            cached: 0,
        };
        self.price(dep, &t, Duration::ZERO).0
    }

    /// (cost, cloud equivalent) of a request `dep` served with `t` in `took`.
    pub fn price(&self, dep: &Deployment, t: &Tokens, took: Duration) -> (f64, f64) {
        if !dep.is_local() {
            let c = token_cost(dep, t, took);
            return (c, c);
        }
        let cost = if has_explicit_price(dep) {
            token_cost(dep, t, took)
        } else {
            let per_hour = self.gpu_cost_per_hour(dep);
            // A loaded cost: the request's share of the GPU hour, the GPU serving `max_parallel` at once.
            let share = dep
                .model_info
                .extra
                .get("max_parallel")
                .and_then(|v| v.as_f64())
                .unwrap_or(1.0)
                .max(1.0);
            per_hour.map_or(0.0, |p| p * took.as_secs_f64() / 3600.0 / share)
        };
        let cloud = self
            .escalation
            .get(&dep.model_name)
            .map_or(cost, |target| token_cost(target, t, took));
        (cost, cloud)
    }
}
