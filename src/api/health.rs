//! Health endpoints: liveness and readiness for orchestrators (public), and `/health` (admin),
//! which calls every deployment.

use crate::app::AppState;
use crate::config::Deployment;
use crate::error::GatewayError;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;

pub async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

pub async fn readiness(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    // Rows in the spill file: above 0 with the database up means rows it refused, kept there
    // until they can be written (the writer logs each one).
    let ledger = state.ledger.as_ref().map(|l| {
        serde_json::json!({
            "spill_rows": l.stats.spill_rows.load(std::sync::atomic::Ordering::Relaxed),
            "spill_path": l.spill_path.display().to_string(),
            "last_error": l.stats.spill_error(),
        })
    });
    Json(serde_json::json!({
        "status": "healthy",
        "db": "Not connected",
        "cache": null,
        "version": env!("CARGO_PKG_VERSION"),
        "model_groups": state.models.public_names().len(),
        "ledger": ledger,
    }))
}

pub async fn root() -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"name": "switchyard", "version": env!("CARGO_PKG_VERSION"), "docs": "OpenAI-compatible API under /v1"}),
    )
}

#[derive(Deserialize)]
pub struct HealthQuery {
    model: Option<String>,
}

/// Calls each deployment (optionally only those of `?model=`) with a one-token request.
pub async fn health(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<HealthQuery>) -> Response {
    match state.auth.authenticate(&headers).await {
        Ok(c) if c.is_admin() => {}
        Ok(_) => return GatewayError::Unauthorized("/health needs the master key".into()).into_response(),
        Err(e) => return e.into_response(),
    }
    let deps: Vec<Arc<Deployment>> = state
        .config
        .deployments
        .iter()
        .filter(|d| q.model.as_deref().is_none_or(|m| m == d.model_name))
        .cloned()
        .collect();
    let results = crate::routing::health::probe_all(&state, &deps).await;
    let (mut healthy, mut unhealthy) = (vec![], vec![]);
    for (d, r) in deps.iter().zip(results) {
        let mut entry = serde_json::json!({
            "model": d.litellm_model,
            "model_name": d.model_name,
            "model_id": d.id,
            "api_base": d.api_base,
        });
        match r {
            Ok(()) => healthy.push(entry),
            Err(e) => {
                entry["error"] = serde_json::Value::String(e.to_string());
                unhealthy.push(entry);
            }
        }
    }
    Json(serde_json::json!({
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    }))
    .into_response()
}
