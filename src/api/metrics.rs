//! `GET /metrics`: the Prometheus text exposition (see `telemetry::metrics`), behind the master
//! key when `litellm_settings.require_auth_for_metrics_endpoint` is set.

use crate::app::AppState;
use crate::error::GatewayError;
use crate::telemetry::metrics::CONTENT_TYPE;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE as CONTENT_TYPE_HEADER;
use http::HeaderMap;
use std::sync::Arc;

pub async fn scrape(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if state.config.litellm.require_auth_for_metrics {
        match state.auth.authenticate(&headers).await {
            Ok(c) if c.is_admin() => {}
            Ok(_) => return GatewayError::Unauthorized("/metrics needs the master key".into()).into_response(),
            Err(e) => return e.into_response(),
        }
    }
    // Reading the scrape-time series takes a few locks briefly; off the async workers anyway.
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.metrics.render(&st)).await {
        Ok(body) => ([(CONTENT_TYPE_HEADER, CONTENT_TYPE)], body).into_response(),
        Err(e) => GatewayError::Internal(format!("metrics: {e}")).into_response(),
    }
}
