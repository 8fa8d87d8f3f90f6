//! Builds the gateway: shared state, routes, and the layer stack.
//!
//! A request's path through the stack, outermost first:
//! 1. `request_context`: assigns the request id (honouring an incoming `x-request-id`), stamps
//!    the arrival time, and echoes the id on every response, errors included;
//! 2. `server::body::deadline`: the request body must arrive within `request_body_timeout_s`
//!    (else a 408 in the route's dialect);
//! 3. the route's handler (`api::openai`, `api::health`): authenticates, reads the body under
//!    the size limit, parses the dialect, and calls `pipeline::run`;
//! 4. the handler turns the outcome or the error into the dialect's response and headers.

use crate::api;
use crate::auth::directory::Directory;
use crate::auth::Auth;
use crate::config::{Config, Strategy};
use crate::error::GatewayError;
use crate::ledger::cost::CostBook;
use crate::ledger::writer::Ledger;
use crate::providers::Upstream;
use crate::routing::clock::{Clock, SystemClock};
use crate::routing::{ModelMap, Router as RouteState};
use crate::signals::gpu::GpuSource;
use crate::signals::Signals;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::HeaderValue;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub struct AppState {
    pub config: Arc<Config>,
    pub models: ModelMap,
    /// Live per-deployment state: in flight, latency, cooldowns, health.
    pub router: RouteState,
    /// Engine, GPU and host readings (a `local-first` router only).
    pub signals: Option<Arc<Signals>>,
    pub upstream: Upstream,
    pub auth: Auth,
    /// Keys, teams, users and spend (when a database is configured).
    pub store: Option<Arc<Store>>,
    pub ledger: Option<Arc<Ledger>>,
    pub costs: Arc<CostBook>,
    /// Shown every finished request: the log line, metrics, callbacks.
    pub observers: crate::telemetry::Observers,
    /// The per-request log line (also among the observers), flushed at shutdown.
    pub request_log: Arc<crate::telemetry::logs::RequestLog>,
    /// The response cache (`litellm_settings.cache`).
    pub cache: Option<Arc<crate::cache::ResponseCache>>,
    /// Callbacks and alerts (also among the observers).
    pub hooks: crate::telemetry::Hooks,
    /// The Prometheus series (also one of the observers).
    pub metrics: Arc<Metrics>,
    /// Unix seconds at start-up (the `created` of listed models).
    pub started_unix: u64,
    /// Fired by the listener at shutdown; in-flight requests watch it (`server::shutdown`).
    pub shutdown: crate::server::Shutdown,
}

impl AppState {
    pub fn new(config: Config) -> Result<Arc<Self>, GatewayError> {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// As `new`, with the routing clock given (tests move it by hand).
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, GatewayError> {
        Self::with_parts(config, clock, None)
    }

    /// As `new`, with the clock and the GPU source given (tests script GPU readings); `gpu` of
    /// `None` opens NVML when the router needs it.
    pub fn with_parts(
        config: Config,
        clock: Arc<dyn Clock>,
        gpu: Option<Arc<dyn GpuSource>>,
    ) -> Result<Arc<Self>, GatewayError> {
        let signals = (config.router.routing_strategy == Strategy::LocalFirst).then(|| {
            let source = gpu.map(Ok).unwrap_or_else(crate::signals::open_gpu);
            Arc::new(Signals::new(&config, source))
        });
        let models = ModelMap::new(&config);
        let hooks = crate::telemetry::Hooks::start(&config, clock.clone());
        let router = RouteState::new(&config, clock);
        let store = match &config.general.database {
            Some(db) => Some(Arc::new(
                Store::open(db.clone()).map_err(|e| GatewayError::Internal(e.to_string()))?,
            )),
            None => None,
        };
        let directory = store.as_ref().map(|s| Arc::new(Directory::new(s.clone())));
        let ledger = store
            .as_ref()
            .map(|s| Ledger::start(s.clone(), config.general.ledger.clone()));
        let auth = Auth::new(config.general.master_key.as_deref(), directory);
        let request_log = Arc::new(crate::telemetry::logs::RequestLog::start());
        let metrics = Arc::new(Metrics::new(&config)?);
        Ok(Arc::new(AppState {
            models,
            router,
            signals,
            auth,
            store,
            ledger,
            costs: Arc::new(CostBook::new(&config)),
            observers: crate::telemetry::Observers::new(
                [
                    request_log.clone() as Arc<dyn crate::telemetry::RequestObserver>,
                    metrics.clone(),
                ]
                .into_iter()
                .chain(hooks.observers())
                .collect(),
            ),
            request_log,
            hooks,
            cache: config
                .litellm
                .cache
                .clone()
                .map(|c| Arc::new(crate::cache::ResponseCache::new(c))),
            metrics,
            upstream: Upstream::new()?,
            shutdown: crate::server::Shutdown::new(config.general.server.shutdown_grace),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            config: Arc::new(config),
        }))
    }
}

/// Per-request facts every handler may read.
#[derive(Clone)]
pub struct RequestCtx {
    pub id: Arc<str>,
    pub started: Instant,
}

pub fn router(state: Arc<AppState>) -> Router {
    let openai = Router::new()
        .route("/v1/chat/completions", post(api::openai::chat_completions))
        .route("/chat/completions", post(api::openai::chat_completions))
        .route("/v1/completions", post(api::openai::completions))
        .route("/completions", post(api::openai::completions))
        .route("/v1/embeddings", post(api::openai::embeddings))
        .route("/embeddings", post(api::openai::embeddings))
        .route("/v1/messages", post(api::anthropic::messages))
        .route("/v1/messages/count_tokens", post(api::anthropic::count_tokens))
        .route("/v1/models", get(api::openai::list_models))
        .route("/models", get(api::openai::list_models))
        .route("/v1/models/{*id}", get(api::openai::get_model))
        .route("/models/{*id}", get(api::openai::get_model));
    let health = Router::new()
        .route("/health/liveliness", get(api::health::liveliness))
        .route("/health/liveness", get(api::health::liveliness))
        .route("/health/readiness", get(api::health::readiness))
        .route("/health", get(api::health::health))
        .route("/model/info", get(api::admin::model_info))
        .route("/status", get(api::admin::status))
        .route("/key/generate", post(api::keys::generate))
        .route("/key/info", get(api::keys::info))
        .route("/key/update", post(api::keys::update))
        .route("/key/delete", post(api::keys::delete))
        .route("/key/list", get(api::keys::list))
        .route("/key/regenerate", post(api::keys::regenerate))
        .route("/team/new", post(api::keys::team_new))
        .route("/team/info", get(api::keys::team_info))
        .route("/team/update", post(api::keys::team_update))
        .route("/user/new", post(api::keys::user_new))
        .route("/user/info", get(api::keys::user_info))
        .route("/spend/logs", get(api::spend::logs))
        .route("/spend/tags", get(api::spend::tags))
        .route("/global/spend", get(api::spend::global))
        .route("/global/spend/models", get(api::spend::by_model))
        .route("/global/spend/keys", get(api::spend::by_key))
        .route("/global/spend/report", get(api::spend::report))
        .route("/savings", get(api::spend::savings))
        .route("/v1/model/info", get(api::admin::model_info))
        .route("/", get(api::health::root));
    // With its own port, /metrics is served there only (`metrics_router`).
    let health = if state.config.general.metrics_port.is_none() {
        health.merge(metrics_routes())
    } else {
        health
    };
    openai
        .merge(health)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::server::body::deadline,
        ))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

fn metrics_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(api::metrics::scrape))
        .route("/metrics/", get(api::metrics::scrape))
}

/// `/metrics` alone, for `general_settings.metrics_port`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    metrics_routes()
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

const MAX_REQUEST_ID_LEN: usize = 128;

async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(crate::types::time_ordered_id().to_string()));
    req.extensions_mut().insert(RequestCtx {
        id: id.clone(),
        started,
    });
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
