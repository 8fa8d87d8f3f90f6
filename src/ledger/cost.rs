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

    /// (cost, cloud equivalent) of a request `dep` served with `t` in `took`.
    pub fn price(&self, dep: &Deployment, t: &Tokens, took: Duration) -> (f64, f64) {
        if !dep.is_local() {
            let c = token_cost(dep, t, took);
            return (c, c);
        }
        let explicit = dep.costs.input_cost_per_token.is_some()
            || dep.costs.output_cost_per_token.is_some()
            || dep.costs.input_cost_per_second.is_some();
        let cost = if explicit {
            token_cost(dep, t, took)
        } else {
            let per_hour = dep
                .model_info
                .extra
                .get("gpu_cost_per_hour")
                .and_then(|v| v.as_f64())
                .or(self.gpu_cost_per_hour);
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
