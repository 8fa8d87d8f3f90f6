//! Health probes: one small real call per deployment, used by `GET /health` and, with
//! `general_settings.background_health_checks`, by a background task that takes failing
//! deployments out of rotation and brings them back when they answer again.

use crate::app::AppState;
use crate::config::{Deployment, Mode};
use crate::error::GatewayError;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls `d` with a one-token request of its mode.
pub async fn probe(state: &AppState, d: &Deployment) -> Result<(), GatewayError> {
    let (url, body) = match d.mode() {
        Mode::Embedding => (
            &d.embeddings_url,
            serde_json::json!({"model": d.model, "input": "ping"}),
        ),
        Mode::Completion => (
            &d.completions_url,
            serde_json::json!({"model": d.model, "prompt": "ping", "max_tokens": 1}),
        ),
        _ => (
            &d.chat_url,
            serde_json::json!({"model": d.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}),
        ),
    };
    let timeout = d.timeout.unwrap_or(PROBE_TIMEOUT).min(PROBE_TIMEOUT);
    let reply = state
        .upstream
        .post(d, url, Bytes::from(body.to_string()), timeout, "health-check", &[])
        .await?;
    tokio::time::timeout(timeout, reply.response.bytes())
        .await
        .map_err(|_| GatewayError::UpstreamTimeout {
            deployment: d.label(),
            after: timeout,
        })?
        .map_err(|e| crate::providers::transport_error(d, e, timeout))?;
    Ok(())
}

/// Probes every deployment concurrently and records the result in its routing state.
pub async fn probe_all(state: &AppState, deps: &[Arc<Deployment>]) -> Vec<Result<(), GatewayError>> {
    let results = futures_util::future::join_all(deps.iter().map(|d| probe(state, d))).await;
    for (d, r) in deps.iter().zip(&results) {
        let s = state.router.state(d);
        let was = s.is_healthy();
        s.set_healthy(r.is_ok(), r.as_ref().err().map(|e| e.to_string()));
        if was != r.is_ok() {
            tracing::warn!(deployment = %d.label(), healthy = r.is_ok(), "health changed");
        }
    }
    results
}

/// The background loop; its owner aborts it at shutdown.
pub fn spawn_background(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    if !state.config.general.background_health_checks {
        return None;
    }
    let every = state.config.general.health_check_interval;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let deps = state.config.deployments.clone();
            probe_all(&state, &deps).await;
        }
    }))
}
