//! What the gateway tells its operator: logs, and every finished request handed to the
//! observers (the request log line, metrics, callbacks and alerts plug in here).
//!
//! A request is finished once its answer is complete (a stream at its end) or it failed; the
//! meter builds one [`SpendRow`] for it and shows it to every observer, then hands it to the
//! ledger. Observers run on the request's task: they must only count, format or `try_send`.

pub mod logs;
pub mod metrics;

use crate::store::spend::SpendRow;
use std::sync::Arc;

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
