//! When a failing deployment sits out, and for how long.
//!
//! Only upstream-blamed failures count (429, 401, 404, 408, 5xx, connection errors, timeouts);
//! a client's own 4xx never does. The policy follows LiteLLM:
//! - with `allowed_fails_policy` (per error class) or `allowed_fails` set, a deployment cools once
//!   its failures within one cooldown window exceed the allowance;
//! - otherwise (LiteLLM's default) it cools at once on 429, 401, 404 and on an unreachable
//!   upstream, and on other failures when more than half of this minute's requests failed (at
//!   least 5 requests) or more than 3 failed. A deployment with no alternative (a group of one
//!   without a fallback group) is exempt by default, so one flaky server never turns into
//!   self-inflicted "no deployments" errors; with a fallback, cooling it is what sends requests
//!   straight to the fallback instead of through retries against a broken server. (LiteLLM lifts
//!   the exemption when a group of one has alternatives, `routing_group_has_alternatives`, which
//!   there means its routing groups; here a fallback group is the alternative.)
//! - a deployment that fails while half-open (its cooldown over, no success since) cools again at
//!   once: the failed probe re-opens the breaker (`state`).
//!
//! Duration: the deployment's `cooldown_time`, else the upstream's `Retry-After`, else the
//! router's `cooldown_time` (5 s); 0 disables. A later deadline is never shortened.

use super::state::DeploymentState;
use crate::config::{Deployment, RouterSettings};
use crate::error::{Blame, ErrorClass, GatewayError};
use std::time::Duration;

/// LiteLLM's default allowance and failure-rate rule.
const DEFAULT_ALLOWED_FAILS: u64 = 3;
const FAILURE_RATE: f64 = 0.5;
const MIN_REQUESTS_FOR_RATE: u64 = 5;

/// Records a failure and cools the deployment if the policy says so; returns the cooldown.
pub fn on_failure(
    settings: &RouterSettings,
    dep: &Deployment,
    state: &DeploymentState,
    alternatives: bool,
    err: &GatewayError,
    now_ms: u64,
) -> Option<Duration> {
    if err.blame() != Blame::Upstream || settings.disable_cooldowns || dep.wildcard {
        return None;
    }
    let duration = match (dep.cooldown_time, err.retry_after()) {
        (Some(secs), _) => Duration::from_secs_f64(secs),
        (None, Some(ra)) => ra,
        (None, None) => settings.cooldown_time,
    };
    let window_ms = duration.as_millis() as u64;
    let half_open = state.is_half_open(now_ms);
    let (in_window, failures, requests) = state.record_failure(now_ms, window_ms.max(1000), err.to_string());
    if duration.is_zero() {
        return None;
    }
    let class = err.class();
    let explicit = settings
        .allowed_fails_policy
        .get(class.allowed_fails_key())
        .copied()
        .or(settings.allowed_fails);
    let cool = half_open
        || match explicit {
            Some(allowed) => in_window > allowed as u64,
            None if !alternatives => false,
            None => {
                let immediate = matches!(
                    class,
                    ErrorClass::RateLimit | ErrorClass::Authentication | ErrorClass::NotFound
                ) || matches!(err, GatewayError::UpstreamUnreachable { .. });
                let rate = requests >= MIN_REQUESTS_FOR_RATE && failures as f64 > FAILURE_RATE * requests as f64;
                immediate || rate || failures > DEFAULT_ALLOWED_FAILS
            }
        };
    if !cool {
        return None;
    }
    state.cool_until(now_ms + window_ms);
    tracing::warn!(deployment = %dep.label(), seconds = duration.as_secs_f64(), error = %err, "deployment cooled down");
    Some(duration)
}
