//! Logging set-up: human-readable lines by default, JSON with `litellm_settings.json_logs`
//! (or `--json-logs`). Levels come from `RUST_LOG` (default `info`). Lines are written by a
//! background thread (`tracing-appender`), so a slow terminal or pipe never slows a request.
//!
//! [`RequestLog`] writes one line per request (target `switchyard::request`): ids, the key's
//! alias (never the key), model, deployment, route, status, tokens and latency. Prompts and
//! completions are never logged.

use super::{Finished, RequestObserver};
use tracing_subscriber::EnvFilter;

/// Keeps the log writer thread alive; logs written after it is dropped may be lost.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

pub fn init(json: bool, debug: bool) -> LogGuard {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stderr());
    // Colours only on a terminal: a file, a pipe or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    // A second init (tests that start several gateways) is harmless: keep the first subscriber.
    let ok = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    ok.ok().map(|_| guard)
}

/// The per-request log line.
pub struct RequestLog;

impl RequestObserver for RequestLog {
    fn request_done(&self, done: &Finished<'_>) {
        let r = done.row;
        tracing::info!(
            target: "switchyard::request",
            request_id = %r.request_id,
            key_alias = r.key_alias.as_deref().unwrap_or(""),
            team_id = r.team_id.as_deref().unwrap_or(""),
            model = %r.model_group,
            deployment = r.model_id.as_deref().unwrap_or(""),
            route = %r.route,
            status = r.status,
            prompt_tokens = r.prompt_tokens,
            completion_tokens = r.completion_tokens,
            latency_ms = (r.latency_ms * 1000.0).round() / 1000.0,
            ttft_ms = r.ttft_ms.map(|t| (t * 1000.0).round() / 1000.0),
            cache_hit = r.cache_hit,
            error = done.error,
            "request"
        );
    }
}
