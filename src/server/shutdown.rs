//! The two moments of a shutdown, as tokens every part of the gateway can watch:
//!
//! 1. `drain`: a signal arrived. Listeners stop accepting; idle and half-open connections close;
//!    in-flight requests go on.
//! 2. `cancel`: the grace period (`shutdown_grace_s`) is over. In-flight requests end now with a
//!    503 in their dialect, and a stream already started with an error event and a clean end.
//!
//! Cloned into the app state, so a handler (or, later, any background task) observes the same
//! tokens the listener fires.

use crate::error::{Dialect, GatewayError};
use axum::body::Body;
use std::time::Duration;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    cancel: CancellationToken,
    grace: Duration,
}

impl Shutdown {
    pub fn new(grace: Duration) -> Self {
        Shutdown {
            grace,
            ..Default::default()
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A signal arrived: stop taking new work.
    pub fn begin_drain(&self) {
        self.drain.cancel();
    }

    /// The grace period is over: cut in-flight work short.
    pub fn cancel_in_flight(&self) {
        self.drain.cancel();
        self.cancel.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    pub async fn draining(&self) {
        self.drain.cancelled().await
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The error an in-flight request ends with when the grace period runs out.
    pub fn error(&self) -> GatewayError {
        GatewayError::ShuttingDown { grace: self.grace }
    }

    /// Ends when the grace period is over (a stream layer keeps it between its polls).
    pub fn cancelled_owned(&self) -> WaitForCancellationFutureOwned {
        self.cancel.clone().cancelled_owned()
    }

    /// Relays `body` until the grace period ends, then sends one error event in `dialect` and
    /// ends the stream, dropping the upstream (its meter records what was served). The edge puts
    /// this on its streams through the stream layer's taps (`providers::sse::Taps`) instead.
    pub fn cut_stream(&self, body: Body, dialect: Dialect) -> Body {
        let taps = crate::providers::sse::Taps {
            shutdown: Some(self.clone()),
            ..Default::default()
        };
        crate::providers::sse::attach(body, None, taps, dialect)
    }
}
