//! The gateway's life from the first accept to the exit: listeners, connections, background
//! tasks, and the shutdown sequence, in one place.
//!
//! Shutdown, in order (all bounded; the process then exits 0):
//! 1. a signal (SIGTERM, SIGINT) arrives: the listeners close, so new connections are refused;
//!    idle keep-alive connections and ones still sending a request head close at once;
//! 2. in-flight requests get `shutdown_grace_s` to finish; each connection closes after its last
//!    response;
//! 3. past the grace, the requests left are cancelled: a 503 in the route's dialect, or for a
//!    stream already started an error event and a clean end; their spend rows are recorded;
//! 4. after [`CANCEL_DRAIN`] more for those answers to be written, whatever connection is left is
//!    dropped;
//! 5. background tasks (health checks, signals, alerts) stop;
//! 6. the ledger writes every spend row still waiting (or spills it when the database is down),
//!    stored responses still being written are written, then callbacks and the request log are flushed.

pub mod body;
pub mod conn;
pub mod limit;
pub mod shutdown;

pub use shutdown::Shutdown;

use crate::app::{self, AppState};
use crate::config::server::ServerSettings;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use limit::ConnLimiter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long cancelled requests get to write their 503 (or error event) before their connections
/// are dropped.
pub const CANCEL_DRAIN: Duration = Duration::from_secs(3);
const LEDGER_FLUSH: Duration = Duration::from_secs(15);
const RESPONSES_FLUSH: Duration = Duration::from_secs(10);
const HOOKS_FLUSH: Duration = Duration::from_secs(5);
const LOG_FLUSH: Duration = Duration::from_secs(2);

/// What every connection of every listener shares.
struct Listening {
    http: Arc<auto::Builder<TokioExecutor>>,
    settings: Arc<ServerSettings>,
    limiter: Arc<ConnLimiter>,
    shutdown: Shutdown,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    refused: AtomicU64,
}

/// Serves `state` on `listener` until `signal` resolves, then shuts down as the module doc says.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(store) = &state.store {
        match store.ready().await {
            Ok(_) => tracing::info!("keys and spend in {}", store.database().describe()),
            Err(e) => tracing::warn!(
                "database {} unavailable ({e}); virtual keys answer 503 and spend rows wait (memory, then disk) until it is back",
                store.database().describe()
            ),
        }
    }
    let shutdown = state.shutdown.clone();
    let listening = Arc::new(Listening {
        http: Arc::new(conn::builder()),
        settings: Arc::new(state.config.general.server.clone()),
        limiter: ConnLimiter::new(state.config.general.server.max_connections_per_client),
        shutdown: shutdown.clone(),
        metrics: state.metrics.clone(),
        refused: AtomicU64::new(0),
    });
    let mut listeners = Vec::new();
    // `metrics_port`: /metrics on its own listener, on the main listener's address.
    if let Some(port) = state.config.general.metrics_port {
        let addr = std::net::SocketAddr::new(listener.local_addr()?.ip(), port);
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} (metrics_port): {e}")))?;
        tracing::info!("metrics on http://{addr}/metrics");
        listeners.push(tokio::spawn(accept(
            l,
            app::metrics_router(state.clone()),
            listening.clone(),
        )));
    }
    listeners.push(tokio::spawn(accept(
        listener,
        app::router(state.clone()),
        listening.clone(),
    )));
    let mut background: Vec<_> = crate::routing::health::spawn_background(state.clone())
        .into_iter()
        .collect();
    background.extend(crate::signals::spawn(state.clone()));
    background.extend(crate::telemetry::alerts::spawn(state.clone()));
    background.extend(state.responses.as_ref().map(|r| r.spawn_purge()));

    // 1. The signal: listeners stop, idle and half-open connections close.
    signal.await;
    let grace = shutdown.grace();
    tracing::info!(
        "shutting down: in-flight requests have {}s to finish (general_settings.shutdown_grace_s)",
        grace.as_secs_f64()
    );
    shutdown.begin_drain();
    let mut connections = Vec::new();
    for l in listeners {
        if let Ok(set) = l.await {
            connections.push(set);
        }
    }
    // 2. The grace period.
    let finished = tokio::time::timeout(grace, drain(&mut connections)).await.is_ok();
    // 3.-4. Cancel what is left, give the answers a moment, drop the rest.
    if !finished {
        tracing::warn!(
            connections = open(&connections),
            "grace period over: cancelling the requests still in flight"
        );
        shutdown.cancel_in_flight();
        if tokio::time::timeout(CANCEL_DRAIN, drain(&mut connections))
            .await
            .is_err()
        {
            tracing::warn!(
                connections = open(&connections),
                "dropping connections that did not close"
            );
        }
    }
    for mut set in connections {
        set.shutdown().await;
    }
    // 5. Background tasks.
    for task in background {
        task.abort();
    }
    // 6. Every spend row still waiting, then callbacks and the request log.
    if let Some(l) = &state.ledger {
        l.shutdown(LEDGER_FLUSH).await;
    }
    if let Some(r) = &state.responses {
        r.flush(RESPONSES_FLUSH).await;
    }
    state.hooks.flush(HOOKS_FLUSH).await;
    let request_log = state.request_log.clone();
    let _ = tokio::task::spawn_blocking(move || request_log.flush(LOG_FLUSH)).await;
    tracing::info!("shut down");
    Ok(())
}

/// Waits until every connection in `sets` has ended.
async fn drain(sets: &mut [JoinSet<()>]) {
    for set in sets {
        while set.join_next().await.is_some() {}
    }
}

fn open(sets: &[JoinSet<()>]) -> usize {
    sets.iter().map(JoinSet::len).sum()
}

/// Accepts connections until the drain begins; hands back those still open.
async fn accept(listener: TcpListener, router: axum::Router, l: Arc<Listening>) -> JoinSet<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = l.shutdown.draining() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Some(slot) = l.limiter.acquire(peer.ip()) else {
                        refuse(tcp, peer, &l);
                        continue;
                    };
                    // Each SSE chunk is its own small write: without TCP_NODELAY, Nagle's
                    // algorithm holds every chunk after the first until the client's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(conn::serve(
                        tcp,
                        peer,
                        router.clone(),
                        l.http.clone(),
                        l.settings.clone(),
                        l.shutdown.clone(),
                        slot,
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin; a connection
                    // that failed during its handshake is not the listener's problem.
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    drop(listener);
    connections
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// A connection past its address's cap: a 429 in OpenAI's shape when the socket takes it at once
/// (it is new, so it does), then closed. Never waits on the client.
fn refuse(tcp: TcpStream, peer: std::net::SocketAddr, l: &Listening) {
    let max = l.settings.max_connections_per_client;
    let n = l.refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            client = %peer.ip(),
            refused_so_far = n,
            "connection refused: the client holds {max} connections (general_settings.max_connections_per_client)"
        );
    }
    l.metrics.refused(429);
    let err = crate::error::GatewayError::RateLimited {
        message: format!(
            "too many connections from {}: at most {max} at once (general_settings.max_connections_per_client)",
            peer.ip()
        ),
        retry_after_secs: 1,
    };
    let body = err.openai_body().to_string();
    let resp = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.try_write(resp.as_bytes());
}
