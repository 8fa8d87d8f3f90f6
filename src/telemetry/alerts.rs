//! `general_settings.alerting: ["slack"]`: Slack messages (`{"text": ...}`) for budget
//! thresholds, deployment cooldowns, slow requests, error-rate spikes and local saturation that
//! lasts.
//!
//! Per-request checks (budget crossings, slow requests, the error window) are counters and a
//! comparison on the request's task; a cooldown is raised where the router cools the deployment;
//! a monitor task reads the error window and the local engines once a tick. Every alert names a
//! subject (a key's budget step, a deployment, ...) and is sent at most once per subject within
//! `alert_cooldown_seconds`, so one incident is one message. Delivery goes through the outbox.

use super::deliver::{Outbox, Target};
use super::{Finished, RequestObserver};
use crate::app::AppState;
use crate::config::alerting::{AlertSettings, AlertType};
use crate::config::Deployment;
use crate::error::GatewayError;
use crate::routing::clock::Clock;
use crate::routing::state::DeploymentState;
use crate::signals::engine::{EngineKind, EngineSnapshot};
use crate::store::spend::Principal;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Alerts waiting for delivery before new ones are dropped.
const QUEUE: usize = 1000;
/// Budget steps that raise an alert, as fractions of `max_budget`.
const BUDGET_STEPS: [f64; 2] = [0.8, 1.0];
/// Subjects remembered for de-duplication before old ones are forgotten.
const MAX_SUBJECTS: usize = 10_000;

pub struct Alerts {
    settings: AlertSettings,
    targets: HashMap<AlertType, Vec<Arc<Target>>>,
    clock: Arc<dyn Clock>,
    /// Subject -> clock ms of its last message.
    sent: Mutex<HashMap<String, u64>>,
    errors: ErrorWindow,
    last_error: Mutex<Option<String>>,
    pub outbox: Outbox,
}

impl Alerts {
    /// `None` when alerting is off.
    pub fn start(settings: Option<&AlertSettings>, clock: Arc<dyn Clock>) -> Option<Arc<Alerts>> {
        let settings = settings?.clone();
        let targets = settings
            .urls
            .iter()
            .map(|(t, urls)| (*t, urls.iter().map(|u| Target::new(u, &[])).collect()))
            .collect();
        Some(Arc::new(Alerts {
            errors: ErrorWindow::new(settings.error_window),
            settings,
            targets,
            clock,
            sent: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            outbox: Outbox::start("alerts", QUEUE),
        }))
    }

    fn on(&self, t: AlertType) -> bool {
        self.settings.types.contains(&t)
    }

    /// Sends `text` unless `subject` had a message within `alert_cooldown_seconds`.
    fn raise(&self, kind: AlertType, subject: &str, text: String) {
        let Some(targets) = self.targets.get(&kind) else { return };
        let now = self.clock.now_ms();
        let repeat = self.settings.repeat_after.as_millis() as u64;
        {
            // Held for a map look-up only, and only when an alert fires.
            let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
            if sent.get(subject).is_some_and(|at| now.saturating_sub(*at) < repeat) {
                return;
            }
            if sent.len() >= MAX_SUBJECTS {
                sent.retain(|_, at| now.saturating_sub(*at) < repeat);
            }
            sent.insert(subject.to_string(), now);
        }
        tracing::warn!(target: "switchyard::alert", alert = kind.name(), subject, "{text}");
        let body = serde_json::json!({ "text": text }).to_string();
        let body = bytes::Bytes::from(body);
        for t in targets {
            self.outbox.send(t, body.clone());
        }
    }

    /// The router cooled `dep` for `duration` after `err`.
    pub fn deployment_cooled(&self, dep: &Deployment, duration: Duration, err: &GatewayError) {
        if !self.on(AlertType::Cooldown) {
            return;
        }
        self.raise(
            AlertType::Cooldown,
            &format!("cooldown:{}", dep.id),
            format!(
                ":snowflake: Deployment cooled down: `{}` (id {}, {}) sits out {:.0} s after: {err}",
                dep.model_name,
                dep.id,
                dep.litellm_model,
                duration.as_secs_f64()
            ),
        );
    }

    fn check_budgets(&self, done: &Finished<'_>) {
        let Some(gate) = done.gate else { return };
        for acct in gate.key.accounts() {
            let Some(max) = acct.with_limits(|l| l.max_budget).filter(|m| *m > 0.0) else {
                continue;
            };
            let after = acct.spend();
            let before = after - done.row.spend;
            // Reservations keep spend below the budget: a paid request refused for it is the
            // budget reaching 100%.
            let closed = acct.take_closed();
            for step in BUDGET_STEPS {
                let reached = before < step * max && after >= step * max;
                if reached || (closed && step >= 1.0) {
                    let (kind, name) = match acct.principal {
                        Principal::Key => ("key", gate.key.key_alias.clone().unwrap_or_else(|| short(&acct.id))),
                        Principal::Team => ("team", acct.id.clone()),
                        Principal::User => ("user", acct.id.clone()),
                    };
                    let pct = (step * 100.0).round();
                    self.raise(
                        AlertType::Budget,
                        &format!("budget:{kind}:{}:{pct}", acct.id),
                        format!(
                            ":moneybag: Budget: {kind} `{name}` has spent ${after:.4} of its ${max:.4} budget ({pct}% reached{})",
                            if reached { "" } else { ": the next request's estimated cost does not fit" }
                        ),
                    );
                }
            }
        }
    }
}

/// The first characters of a key's hash: enough to find it, never the key.
fn short(hash: &str) -> String {
    format!("{}...", hash.get(..8).unwrap_or(hash))
}

impl RequestObserver for Alerts {
    fn request_done(&self, done: &Finished<'_>) {
        let r = done.row;
        let failed = r.status >= 500;
        if self.on(AlertType::ErrorRate) {
            self.errors.record(self.clock.now_ms(), failed);
            if let (true, Some(e), Ok(mut last)) = (failed, done.error, self.last_error.try_lock()) {
                *last = Some(e.chars().take(300).collect());
            }
        }
        if self.on(AlertType::Budget) && (r.spend > 0.0 || r.status == 400) {
            self.check_budgets(done);
        }
        if self.on(AlertType::Slow) && !failed && r.latency_ms >= self.settings.slow_request.as_secs_f64() * 1000.0 {
            self.raise(
                AlertType::Slow,
                &format!("slow:{}", r.model_group),
                format!(
                    ":turtle: Slow request: `{}` (deployment {}) took {:.1} s (alerting_threshold {} s), request {}",
                    r.model_group,
                    r.model_id.as_deref().unwrap_or("-"),
                    r.latency_ms / 1000.0,
                    self.settings.slow_request.as_secs_f64(),
                    r.request_id
                ),
            );
        }
    }
}

/// Requests and failures per second over the last `window` seconds, in a ring of buckets
/// stamped with their second (a race at a bucket's turn can lose a count, which a rate
/// tolerates).
struct ErrorWindow {
    buckets: Vec<[AtomicU64; 3]>,
}

impl ErrorWindow {
    fn new(window: Duration) -> Self {
        let n = window
            .as_secs()
            .clamp(1, crate::config::alerting::MAX_ERROR_WINDOW_SECS) as usize;
        ErrorWindow {
            buckets: (0..n).map(|_| Default::default()).collect(),
        }
    }

    fn record(&self, now_ms: u64, failed: bool) {
        let sec = now_ms / 1000 + 1;
        let [stamp, requests, failures] = &self.buckets[sec as usize % self.buckets.len()];
        let seen = stamp.load(Relaxed);
        if seen != sec && stamp.compare_exchange(seen, sec, Relaxed, Relaxed).is_ok() {
            requests.store(0, Relaxed);
            failures.store(0, Relaxed);
        }
        requests.fetch_add(1, Relaxed);
        if failed {
            failures.fetch_add(1, Relaxed);
        }
    }

    /// (requests, failures) within the window ending now.
    fn totals(&self, now_ms: u64) -> (u64, u64) {
        let sec = now_ms / 1000 + 1;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|[stamp, ..]| sec.saturating_sub(stamp.load(Relaxed)) < n)
            .fold((0, 0), |(r, f), [_, req, fail]| {
                (r + req.load(Relaxed), f + fail.load(Relaxed))
            })
    }
}

/// Starts the monitor (error rate, local saturation); the caller aborts it at shutdown.
pub fn spawn(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let alerts = state.hooks.alerts.clone()?;
    let watch_errors = alerts.on(AlertType::ErrorRate);
    let watch_local = alerts.on(AlertType::LocalSaturation) && state.signals.is_some();
    if !watch_errors && !watch_local {
        return None;
    }
    let every = (alerts.settings.local_saturation / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    Some(tokio::spawn(async move {
        // Per local deployment index: since when it has been saturated (clock ms).
        let mut since: HashMap<usize, u64> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = state.router.now_ms();
            if watch_errors {
                check_error_rate(&alerts, now);
            }
            if watch_local {
                check_saturation(&state, &alerts, &mut since, now);
            }
        }
    }))
}

fn check_error_rate(alerts: &Alerts, now: u64) {
    let s = &alerts.settings;
    let (requests, failures) = alerts.errors.totals(now);
    if requests < s.error_min_requests || (failures as f64) < s.error_rate * requests as f64 || failures == 0 {
        return;
    }
    let last = alerts
        .last_error
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default();
    alerts.raise(
        AlertType::ErrorRate,
        "error_rate",
        format!(
            ":rotating_light: Error-rate spike: {failures} of {requests} requests failed ({:.0}%) in the last {} s (threshold {:.0}%). Last error: {last}",
            100.0 * failures as f64 / requests as f64,
            s.error_window.as_secs(),
            100.0 * s.error_rate
        ),
    );
}

/// Judges each local deployment as the router would now, on a copy of its state so that the
/// router's hysteresis is never moved by the monitor.
fn check_saturation(state: &AppState, alerts: &Alerts, since: &mut HashMap<usize, u64>, now: u64) {
    let Some(signals) = &state.signals else { return };
    let lf = &state.config.router.local_first;
    let gpu = signals.gpu();
    for d in state.config.deployments.iter().filter(|d| d.is_local()) {
        let real = state.router.state(d);
        let copy = DeploymentState::default();
        copy.in_flight.store(real.in_flight.load(Relaxed), Relaxed);
        copy.saturated.store(real.saturated.load(Relaxed), Relaxed);
        copy.saturated_since_ms
            .store(real.saturated_since_ms.load(Relaxed), Relaxed);
        if real.ttft_us() > 0 {
            copy.record_ttft(real.ttft_us());
        }
        let (kind, snap) = match signals.engine(d.index) {
            Some(e) => (e.kind(), e.snapshot()),
            None => (EngineKind::Unknown, EngineSnapshot::default()),
        };
        let max_parallel = d.model_info.extra.get("max_parallel").and_then(|v| v.as_u64());
        match crate::routing::local_first::assess(lf, max_parallel, kind, &snap, &gpu, &copy, now) {
            Ok(()) => {
                since.remove(&d.index);
            }
            Err(reason) => {
                let from = *since.entry(d.index).or_insert(now);
                let lasted = Duration::from_millis(now.saturating_sub(from));
                if lasted >= alerts.settings.local_saturation {
                    alerts.raise(
                        AlertType::LocalSaturation,
                        &format!("saturation:{}", d.id),
                        format!(
                            ":fire: Local deployment `{}` (id {}, {}) saturated for {:.0} s: {reason}; requests go to the cloud or wait",
                            d.model_name,
                            d.id,
                            d.litellm_model,
                            lasted.as_secs_f64()
                        ),
                    );
                }
            }
        }
    }
}
