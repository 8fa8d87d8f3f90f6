//! Admin views (master key): `/model/info` with each deployment's live routing state.

use crate::app::AppState;
use crate::config::{mask, Deployment};
use crate::error::GatewayError;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct InfoQuery {
    litellm_model_id: Option<String>,
}

pub async fn model_info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<InfoQuery>,
) -> Response {
    match state.auth.authenticate(&headers).await {
        Ok(c) if c.is_admin() => {}
        Ok(_) => return GatewayError::Unauthorized("/model/info needs the master key".into()).into_response(),
        Err(e) => return e.into_response(),
    }
    let data: Vec<Value> = state
        .config
        .deployments
        .iter()
        .filter(|d| q.litellm_model_id.as_deref().is_none_or(|id| id == d.id))
        .map(|d| describe(&state, d))
        .collect();
    Json(json!({"data": data})).into_response()
}

/// Params as configured with secrets masked; keys whose names suggest a secret are masked too.
fn describe(state: &AppState, d: &Deployment) -> Value {
    let mut params = serde_json::Map::new();
    params.insert("model".into(), d.litellm_model.clone().into());
    params.insert("api_base".into(), d.api_base.clone().into());
    if let Some(k) = &d.api_key {
        params.insert("api_key".into(), mask(k).into());
    }
    for (k, v) in &d.defaults {
        let secret = ["key", "secret", "token", "password", "credential"]
            .iter()
            .any(|s| k.to_ascii_lowercase().contains(s));
        params.insert(
            k.clone(),
            if secret {
                Value::String("****".into())
            } else {
                v.clone()
            },
        );
    }
    for (k, v) in [
        ("rpm", d.rpm.map(Value::from)),
        ("tpm", d.tpm.map(Value::from)),
        ("weight", d.weight.map(Value::from)),
        ("order", d.order.map(Value::from)),
    ] {
        if let Some(v) = v {
            params.insert(k.into(), v);
        }
    }
    let s = state.router.state(d);
    let now = state.router.now_ms();
    let cooled_until = s.cooled_until_ms.load(Relaxed);
    let price = d.price();
    let mut info = serde_json::Map::new();
    info.insert("id".into(), d.id.clone().into());
    info.insert("mode".into(), format!("{:?}", d.mode()).to_ascii_lowercase().into());
    info.insert("litellm_provider".into(), d.provider.prefix().into());
    info.insert("local".into(), d.is_local().into());
    info.insert("max_input_tokens".into(), d.max_input_tokens().into());
    info.insert(
        "max_output_tokens".into(),
        d.model_info
            .max_output_tokens
            .or(price.and_then(|p| p.max_output_tokens))
            .into(),
    );
    info.insert(
        "input_cost_per_token".into(),
        d.costs
            .input_cost_per_token
            .or(price.and_then(|p| p.input_cost_per_token))
            .into(),
    );
    info.insert(
        "output_cost_per_token".into(),
        d.costs
            .output_cost_per_token
            .or(price.and_then(|p| p.output_cost_per_token))
            .into(),
    );
    for (k, v) in &d.model_info.extra {
        info.insert(k.clone(), v.clone());
    }
    info.insert(
        "state".into(),
        json!({
            "healthy": s.is_healthy() && cooled_until <= now,
            "health_check_ok": s.is_healthy(),
            "cooldown_remaining_s": (cooled_until.saturating_sub(now)) as f64 / 1000.0,
            "in_flight": s.in_flight.load(Relaxed),
            "ewma_latency_ms": s.latency_us() as f64 / 1000.0,
            "requests_this_minute": s.requests_this_minute(now),
            "last_error": s.last_error(),
        }),
    );
    json!({"model_name": d.model_name, "litellm_params": params, "model_info": info})
}

/// `GET /status` (master key): every signal with its age, and each deployment's routing state.
pub async fn status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match state.auth.authenticate(&headers).await {
        Ok(c) if c.is_admin() => {}
        Ok(_) => return GatewayError::Unauthorized("/status needs the master key".into()).into_response(),
        Err(e) => return e.into_response(),
    }
    let now = state.router.now_ms();
    let age = |at: u64| {
        if at == 0 {
            Value::Null
        } else {
            Value::from(now.saturating_sub(at))
        }
    };
    let lf = &state.config.router.local_first;
    let deployments: Vec<Value> = state
        .config
        .deployments
        .iter()
        .map(|d| {
            let s = state.router.state(d);
            let engine = state.signals.as_ref().and_then(|sig| sig.engine(d.index)).map(|e| {
                let snap = e.snapshot();
                json!({
                    "kind": e.kind(),
                    "metrics_url": e.metrics_url,
                    "age_ms": age(snap.at_ms),
                    "stale": snap.at_ms == 0 || now.saturating_sub(snap.at_ms) > lf.stale_after_ms,
                    "reading": snap,
                })
            });
            json!({
                "model_name": d.model_name,
                "id": d.id,
                "model": d.litellm_model,
                "api_base": d.api_base,
                "local": d.is_local(),
                "engine": engine,
                "in_flight": s.in_flight.load(Relaxed),
                "ttft_ewma_ms": s.ttft_us() as f64 / 1000.0,
                "latency_ewma_ms": s.latency_us() as f64 / 1000.0,
                "saturated": s.saturated.load(Relaxed),
                "cooldown_remaining_s": s.cooled_until_ms.load(Relaxed).saturating_sub(now) as f64 / 1000.0,
                "healthy": s.is_healthy(),
            })
        })
        .collect();
    let (gpu, host) = match &state.signals {
        Some(sig) => {
            let g = sig.gpu();
            let h = sig.host();
            (
                json!({"available": sig.gpu_note.is_none(), "note": sig.gpu_note, "age_ms": age(g.at_ms), "error": g.error, "gpus": g.gpus}),
                json!({"age_ms": age(h.at_ms), "reading": h}),
            )
        }
        None => (
            json!({"available": false, "note": "signals are read only with routing_strategy: local-first"}),
            Value::Null,
        ),
    };
    Json(json!({
        "routing_strategy": format!("{:?}", state.config.router.routing_strategy),
        "gpu": gpu,
        "host": host,
        "deployments": deployments,
        "responses_store": state.responses.as_ref().map(|r| json!({
            "ttl_s": r.ttl().as_secs(),
            "written": r.stats.written.load(Relaxed),
            "failed": r.stats.failed.load(Relaxed),
            "too_large": r.stats.too_large.load(Relaxed),
            "purged": r.stats.purged.load(Relaxed),
        })),
    }))
    .into_response()
}
