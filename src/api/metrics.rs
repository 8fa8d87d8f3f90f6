//! `GET /metrics`: the Prometheus text exposition (see `telemetry::metrics`).
//!
//! The series name key aliases, teams, budgets and upstream URLs, so on a listener other hosts
//! can reach, the master key is required by default. It stays open on loopback, on its own
//! `metrics_port` (a port one firewalls or scrapes privately), and with
//! `general_settings.public_metrics: true`; LiteLLM's `require_auth_for_metrics_endpoint: true`
//! requires the key everywhere.

use crate::app::AppState;
use crate::config::Config;
use crate::error::GatewayError;
use crate::telemetry::metrics::CONTENT_TYPE;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE as CONTENT_TYPE_HEADER;
use http::HeaderMap;
use std::sync::Arc;

/// Whether a scrape must present the master key; `own_port` is the `metrics_port` listener.
pub fn needs_master_key(config: &Config, own_port: bool) -> bool {
    if config.litellm.require_auth_for_metrics {
        return true;
    }
    if config.general.public_metrics || own_port {
        return false;
    }
    config.general.listens_beyond_loopback()
}

/// `/metrics` on the main listener.
pub async fn scrape(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    render(state, &headers, false).await
}

/// `/metrics` on `general_settings.metrics_port`.
pub async fn scrape_own_port(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    render(state, &headers, true).await
}

async fn render(state: Arc<AppState>, headers: &HeaderMap, own_port: bool) -> Response {
    if needs_master_key(&state.config, own_port) {
        let why = if state.config.litellm.require_auth_for_metrics {
            "litellm_settings.require_auth_for_metrics_endpoint is set"
        } else {
            "the gateway listens beyond loopback"
        };
        let refused = |detail: &str| {
            GatewayError::Unauthorized(format!(
                "/metrics needs the master key ({why}{detail}); send it as `Authorization: Bearer <master key>`, \
                 or set general_settings.public_metrics: true (or metrics_port) to open it"
            ))
            .into_response()
        };
        match state.auth.authenticate(headers).await {
            Ok(c) if c.is_admin() => {}
            Ok(_) => return refused("; a virtual key is not enough"),
            Err(_) => return refused(""),
        }
    }
    // Reading the scrape-time series takes a few locks briefly; off the async workers anyway.
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.metrics.render(&st)).await {
        Ok(body) => ([(CONTENT_TYPE_HEADER, CONTENT_TYPE)], body).into_response(),
        Err(e) => GatewayError::Internal(format!("metrics: {e}")).into_response(),
    }
}
