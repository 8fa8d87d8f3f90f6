//! What the gateway tells its operator: logs, and every finished request handed to the
//! observers (the request log line, metrics, callbacks and alerts plug in here).
//!
//! A request is finished once its answer is complete (a stream at its end) or it failed; the
//! meter builds one [`SpendRow`] for it and shows it to every observer, then hands it to the
//! ledger. Observers run on the request's task: they must only count, format or `try_send`.

pub mod alerts;
pub mod callbacks;
pub mod deliver;
pub mod logs;
pub mod metrics;

use crate::config::{Config, Deployment};
use crate::error::GatewayError;
use crate::routing::clock::Clock;
use crate::store::spend::SpendRow;
use std::sync::Arc;
use std::time::Duration;

pub use logs::init;

/// One finished request.
pub struct Finished<'a> {
    pub row: &'a SpendRow,
    /// The error's message, for a request that failed.
    pub error: Option<&'a str>,
    /// Why the router chose the route (`x-switchyard-reason`), when a local-first router chose.
    pub reason: Option<&'a str>,
    /// The caller's key and its accounts (key, team, user: limits and spend so far), already
    /// charged for this request.
    pub gate: Option<&'a crate::auth::Gate>,
}

pub trait RequestObserver: Send + Sync {
    fn request_done(&self, done: &Finished<'_>);
}

/// The observers every request is shown to, in order.
#[derive(Clone, Default)]
pub struct Observers(Arc<Vec<Arc<dyn RequestObserver>>>);

impl Observers {
    pub fn new(list: Vec<Arc<dyn RequestObserver>>) -> Self {
        Observers(Arc::new(list))
    }

    pub fn request_done(&self, done: &Finished<'_>) {
        for o in self.0.iter() {
            o.request_done(done);
        }
    }
}

/// Callbacks and alerts, when configured: observers with an outbox each.
#[derive(Clone, Default)]
pub struct Hooks {
    pub callbacks: Option<Arc<callbacks::CallbackLog>>,
    pub alerts: Option<Arc<alerts::Alerts>>,
}

impl Hooks {
    /// Starts the outboxes' delivery tasks (needs the tokio runtime).
    pub fn start(config: &Config, clock: Arc<dyn Clock>) -> Hooks {
        Hooks {
            callbacks: callbacks::CallbackLog::start(config),
            alerts: alerts::Alerts::start(config.general.alerting.as_ref(), clock),
        }
    }

    pub fn observers(&self) -> Vec<Arc<dyn RequestObserver>> {
        let mut out: Vec<Arc<dyn RequestObserver>> = Vec::new();
        if let Some(c) = &self.callbacks {
            out.push(c.clone());
        }
        if let Some(a) = &self.alerts {
            out.push(a.clone());
        }
        out
    }

    /// The router just cooled `dep` down.
    pub fn deployment_cooled(&self, dep: &Deployment, duration: Duration, err: &GatewayError) {
        if let Some(a) = &self.alerts {
            a.deployment_cooled(dep, duration, err);
        }
    }

    /// At shutdown: lets queued posts go out, waiting at most `within` for each outbox.
    pub async fn flush(&self, within: Duration) {
        if let Some(c) = &self.callbacks {
            c.outbox.flush(within).await;
        }
        if let Some(a) = &self.alerts {
            a.outbox.flush(within).await;
        }
    }
}
