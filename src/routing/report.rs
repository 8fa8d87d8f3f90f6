//! What one attempt's outcome does to its deployment: the success and failure counts behind
//! `/metrics`, the cooldown (circuit breaker) decision, and the operator's alert.
//!
//! A whole answer reports as soon as it is read. A committed stream reports when it ends, from
//! the relay (`providers::sse`): a stream cut, reset or stalled after its first byte is a failure
//! of its deployment exactly like a failed attempt before it, so the next requests go elsewhere.

use super::clock::Clock;
use super::cooldown;
use super::fallback;
use super::state::DeploymentState;
use crate::config::{Config, Deployment};
use crate::error::{ErrorClass, GatewayError};
use crate::telemetry::Hooks;
use std::sync::Arc;
use std::time::Duration;

/// Everything needed to report an attempt's outcome, owned so that a stream can report after
/// the request's own borrow of the app state has ended.
pub struct Reporter {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    hooks: Hooks,
    dep: Arc<Deployment>,
    state: Arc<DeploymentState>,
    /// Deployments in the group (with its fallbacks, whether it has an alternative).
    group_size: usize,
}

impl Reporter {
    pub fn new(
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        hooks: Hooks,
        dep: Arc<Deployment>,
        state: Arc<DeploymentState>,
        group_size: usize,
    ) -> Self {
        Reporter {
            config,
            clock,
            hooks,
            dep,
            state,
            group_size,
        }
    }

    pub fn success(&self) {
        self.state.succeeded(self.clock.now_ms());
    }

    /// Counts the failure and cools the deployment when the policy says so; returns the cooldown.
    pub fn failure(&self, err: &GatewayError) -> Option<Duration> {
        self.state.count_attempt(false);
        let settings = &self.config.router;
        let alternatives = has_alternatives(settings, &self.dep.model_name, self.group_size, err.class());
        let cooled = cooldown::on_failure(settings, &self.dep, &self.state, alternatives, err, self.clock.now_ms());
        if let Some(d) = cooled {
            self.hooks.deployment_cooled(&self.dep, d, err);
        }
        cooled
    }
}

/// Whether a request that finds this deployment's group cooling has somewhere else to go: another
/// deployment in the group, or a fallback group for this kind of error.
pub fn has_alternatives(
    settings: &crate::config::RouterSettings,
    group: &str,
    group_size: usize,
    class: ErrorClass,
) -> bool {
    group_size > 1 || fallback::targets(settings, group, class).iter().any(|t| t != group)
}
