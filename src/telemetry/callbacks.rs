//! `success_callback` / `failure_callback` as generic webhooks: every finished request becomes
//! one JSON record (LiteLLM's StandardLoggingPayload names where they exist) posted to each URL.
//! The record never holds the key (only its hash and alias), a prompt or a completion.

use super::deliver::{Outbox, Target};
use super::{Finished, RequestObserver};
use crate::config::alerting::Callbacks;
use crate::config::Config;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Records waiting for delivery before new ones are dropped.
const QUEUE: usize = 10_000;

pub struct CallbackLog {
    success: Vec<Arc<Target>>,
    failure: Vec<Arc<Target>>,
    /// Deployment id -> api_base, for the record's `api_base`.
    api_bases: HashMap<String, String>,
    pub outbox: Outbox,
}

impl CallbackLog {
    /// `None` when no callback is configured.
    pub fn start(config: &Config) -> Option<Arc<CallbackLog>> {
        let c: &Callbacks = &config.litellm.callbacks;
        if c.is_empty() {
            return None;
        }
        let targets = |hooks: &[crate::config::alerting::Webhook]| -> Vec<Arc<Target>> {
            hooks.iter().map(|h| Target::new(&h.url, &h.headers)).collect()
        };
        Some(Arc::new(CallbackLog {
            success: targets(&c.success),
            failure: targets(&c.failure),
            api_bases: config
                .deployments
                .iter()
                .map(|d| (d.id.clone(), d.api_base.clone()))
                .collect(),
            outbox: Outbox::start("callbacks", QUEUE),
        }))
    }
}

/// A failed request: an error, or an error status.
pub fn failed(done: &Finished<'_>) -> bool {
    done.error.is_some() || done.row.status >= 400
}

impl RequestObserver for CallbackLog {
    fn request_done(&self, done: &Finished<'_>) {
        let failed = failed(done);
        let targets = if failed { &self.failure } else { &self.success };
        if targets.is_empty() {
            return;
        }
        let api_base = done.row.model_id.as_ref().and_then(|id| self.api_bases.get(id));
        let body = match serde_json::to_vec(&record(done, failed, api_base.map(String::as_str))) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => return,
        };
        for t in targets {
            self.outbox.send(t, body.clone());
        }
    }
}

/// The JSON record of one request.
pub fn record(done: &Finished<'_>, failed: bool, api_base: Option<&str>) -> Value {
    let r = done.row;
    let start = r.start_time as f64 / 1000.0;
    json!({
        "id": r.request_id,
        "call_type": r.call_type,
        "stream": r.stream,
        "status": if failed { "failure" } else { "success" },
        "error_str": done.error,
        "error_information": failed.then(|| json!({"error_code": r.status.to_string()})),
        "status_code": r.status,
        "response_cost": r.spend,
        "cloud_equivalent": r.cloud_equivalent,
        "savings": (r.cloud_equivalent - r.spend).max(0.0),
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens + r.completion_tokens,
        "cached_tokens": r.cached_tokens,
        "startTime": start,
        "endTime": start + r.latency_ms / 1000.0,
        "completionStartTime": r.ttft_ms.map(|t| start + t / 1000.0),
        "response_time": r.latency_ms / 1000.0,
        "model": r.model,
        "model_group": r.model_group,
        "model_id": r.model_id,
        "custom_llm_provider": r.provider,
        "api_base": api_base,
        "cache_hit": r.cache_hit,
        "request_tags": r.request_tags,
        "route": r.route,
        "route_reason": done.reason,
        "metadata": {
            "user_api_key_hash": r.api_key,
            "user_api_key_alias": r.key_alias,
            "user_api_key_team_id": r.team_id,
            "user_api_key_user_id": r.user_id,
        },
    })
}
