//! `general_settings` keys for the listener itself: how long a client may take to send a
//! request, how long an idle connection is kept, how many connections one address may hold, and
//! how long in-flight requests get at shutdown. None of these exist in LiteLLM (uvicorn has
//! `--timeout-keep-alive` and `--timeout-graceful-shutdown`); the defaults are what nginx-style
//! servers use, loose enough for any real client and tight enough that slow or idle sockets
//! cannot pile up.

use super::fields::Fields;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// `request_header_timeout_s`: from a new connection (or a later request's first byte) to the end
    /// of the request head.
    pub header_timeout: Duration,
    /// `request_body_timeout_s`: from the end of the head to the end of the body (408 past it).
    pub body_timeout: Duration,
    /// `keep_alive_timeout_s`: an idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// `max_connections_per_client`: open connections one client address may hold (0: no cap).
    pub max_connections_per_client: usize,
    /// `shutdown_grace_s`: on SIGTERM/SIGINT, how long in-flight requests may still finish before
    /// they are cancelled with a 503.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            // Benchmarks at c64..c256 from one host stay under it; a reverse proxy in front, whose
            // connections all come from one address, needs it raised or 0.
            max_connections_per_client: 512,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Reads the listener's keys out of `general_settings`; each bad value is reported with its path.
pub(super) fn parse(f: &mut Fields) -> ServerSettings {
    let d = ServerSettings::default();
    ServerSettings {
        header_timeout: f.seconds("request_header_timeout_s").unwrap_or(d.header_timeout),
        body_timeout: f.seconds("request_body_timeout_s").unwrap_or(d.body_timeout),
        idle_timeout: f.seconds("keep_alive_timeout_s").unwrap_or(d.idle_timeout),
        max_connections_per_client: f
            .u64("max_connections_per_client")
            .map(|n| n as usize)
            .unwrap_or(d.max_connections_per_client),
        shutdown_grace: f
            .non_negative("shutdown_grace_s")
            .map(Duration::from_secs_f64)
            .unwrap_or(d.shutdown_grace),
    }
}
