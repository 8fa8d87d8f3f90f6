//! Builds the gateway: shared state, routes, and the layer stack.
//!
//! A request's path through the stack, outermost first:
//! 1.-3. `edge`, one layer doing, in order:
//! 1. the request context: assigns the request id (honouring an incoming `x-request-id`), stamps
//!    the arrival time, and echoes the id on every response, errors included;
//! 2. `api::exposure::admit` / `finish`: without a master key, refuses a `Host` that is not
//!    loopback (DNS rebinding); answers CORS preflights of configured origins and adds their
//!    headers; renders any error the framework produced (extractor rejections, 404, 405) as JSON
//!    in the dialect;
//! 3. `server::body::with_deadline`: the request body must arrive within `request_body_timeout_s`
//!    (else a 408 in the route's dialect);
//! 4. on POST routes, `api::exposure::require_json`: refuses non-JSON bodies with 415;
//! 5. the route's handler (`api::openai`, `api::health`): authenticates, reads the body under
//!    the size limit, parses the dialect, and calls `pipeline::run`;
//! 6. the handler turns the outcome or the error into the dialect's response and headers.

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
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use http::{HeaderValue, Method};
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

/// A route's handlers for one method.
type Handler = MethodRouter<Arc<AppState>>;

/// Every route of the main listener with its method. `router` registers exactly these and
/// `/openapi.json` describes each of them (`tests/exposure.rs` holds the two together).
fn routes(config: &Config) -> Vec<(Method, &'static str, Handler)> {
    use api::{admin, anthropic, health, keys, openai, spend};
    let p = |h: Handler| (Method::POST, h);
    let g = |h: Handler| (Method::GET, h);
    let mut table: Vec<(&'static str, (Method, Handler))> = vec![
        ("/v1/chat/completions", p(post(openai::chat_completions))),
        ("/chat/completions", p(post(openai::chat_completions))),
        ("/v1/completions", p(post(openai::completions))),
        ("/completions", p(post(openai::completions))),
        ("/v1/embeddings", p(post(openai::embeddings))),
        ("/embeddings", p(post(openai::embeddings))),
        ("/v1/messages", p(post(anthropic::messages))),
        ("/v1/messages/count_tokens", p(post(anthropic::count_tokens))),
        ("/v1/responses", p(post(api::responses::create))),
        ("/v1/models", g(get(openai::list_models))),
        ("/models", g(get(openai::list_models))),
        ("/v1/models/{*id}", g(get(openai::get_model))),
        ("/models/{*id}", g(get(openai::get_model))),
        ("/health/liveliness", g(get(health::liveliness))),
        ("/health/liveness", g(get(health::liveliness))),
        ("/health/readiness", g(get(health::readiness))),
        ("/health", g(get(health::health))),
        ("/model/info", g(get(admin::model_info))),
        ("/v1/model/info", g(get(admin::model_info))),
        ("/status", g(get(admin::status))),
        ("/key/generate", p(post(keys::generate))),
        ("/key/info", g(get(keys::info))),
        ("/key/update", p(post(keys::update))),
        ("/key/delete", p(post(keys::delete))),
        ("/key/list", g(get(keys::list))),
        ("/key/regenerate", p(post(keys::regenerate))),
        ("/team/new", p(post(keys::team_new))),
        ("/team/info", g(get(keys::team_info))),
        ("/team/update", p(post(keys::team_update))),
        ("/user/new", p(post(keys::user_new))),
        ("/user/info", g(get(keys::user_info))),
        ("/spend/logs", g(get(spend::logs))),
        ("/spend/tags", g(get(spend::tags))),
        ("/global/spend", g(get(spend::global))),
        ("/global/spend/models", g(get(spend::by_model))),
        ("/global/spend/keys", g(get(spend::by_key))),
        ("/global/spend/report", g(get(spend::report))),
        ("/savings", g(get(spend::savings))),
        ("/openapi.json", g(get(api::openapi::serve))),
        ("/", g(get(health::root))),
    ];
    // With its own port, /metrics is served there only (`metrics_router`).
    if config.general.metrics_port.is_none() {
        table.push(("/metrics", g(get(api::metrics::scrape))));
        table.push(("/metrics/", g(get(api::metrics::scrape))));
    }
    table.into_iter().map(|(path, (m, h))| (m, path, h)).collect()
}

/// The (method, path) of every route the main listener serves with `config`.
pub fn route_table(config: &Config) -> Vec<(Method, &'static str)> {
    routes(config).into_iter().map(|(m, p, _)| (m, p)).collect()
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new();
    for (method, path, handler) in routes(&state.config) {
        // Every POST route takes a JSON body: anything else is refused before the handler.
        let handler = if method == Method::POST {
            handler.route_layer(axum::middleware::from_fn(api::exposure::require_json))
        } else {
            handler
        };
        app = app.route(path, handler);
    }
    app.fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// `/metrics` alone, for `general_settings.metrics_port`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(api::metrics::scrape_own_port))
        .route("/metrics/", get(api::metrics::scrape_own_port))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

const MAX_REQUEST_ID_LEN: usize = 128;

/// Steps 1-3 of the module doc, in one layer: a `from_fn` layer costs an allocation and a clone
/// of the stack below it on every request, and these three always run together.
async fn edge(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
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
    let dialect = crate::error::Dialect::of_path(req.uri().path());
    let mut resp = match api::exposure::admit(&state, &req, dialect) {
        Err(refused) => *refused,
        Ok(origin) => {
            let (req, fired) = crate::server::body::with_deadline(&state, req);
            let resp = next.run(req).await;
            let resp = crate::server::body::after_deadline(&state, resp, fired, dialect);
            api::exposure::finish(&state, resp, dialect, origin).await
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
