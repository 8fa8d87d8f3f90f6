//! Live per-deployment state: in-flight count, latency, usage this minute, cooldown, health.
//!
//! Plain atomics, one slot per deployment: the hot path never takes a lock. Counters that belong
//! to "this minute" reset when a request sees a new minute (a race there can lose a count at the
//! boundary, which routing tolerates).

use crate::limits::window::{SlidingWindow, Window};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct DeploymentState {
    pub in_flight: AtomicI64,
    /// EWMA of latency in microseconds (time to first byte for streams); 0 = never measured.
    latency_ewma_us: AtomicU64,
    /// Clock millisecond until which the deployment sits out; 0 = not cooled.
    pub cooled_until_ms: AtomicU64,
    minute: AtomicU64,
    requests_this_minute: AtomicU64,
    failures_this_minute: AtomicU64,
    tokens_this_minute: AtomicU64,
    /// The deployment's `rpm`/`tpm` as sliding one-minute windows (a calendar minute would let a
    /// burst on each side of its boundary through, twice the limit).
    rpm_window: SlidingWindow,
    tpm_window: SlidingWindow,
    /// Failures counted towards `allowed_fails`, in a window as long as the cooldown.
    fail_window_start_ms: AtomicU64,
    fails_in_window: AtomicU64,
    /// Set by background health checks.
    unhealthy: AtomicBool,
    /// EWMA time to first chunk of streams, microseconds; 0 = never measured.
    ttft_ewma_us: AtomicU64,
    /// local-first: inside "saturated" (hysteresis), and since when (clock ms).
    pub saturated: AtomicBool,
    pub saturated_since_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Since start, for `/metrics`: answered and failed attempts, and cooldowns entered.
    succeeded: AtomicU64,
    failed: AtomicU64,
    cooldowns: AtomicU64,
}

/// EWMA weight of a new latency sample.
const ALPHA: f64 = 0.3;

impl DeploymentState {
    fn roll_minute(&self, now_ms: u64) {
        let minute = now_ms / 60_000 + 1;
        let seen = self.minute.load(Relaxed);
        if seen != minute && self.minute.compare_exchange(seen, minute, Relaxed, Relaxed).is_ok() {
            self.requests_this_minute.store(0, Relaxed);
            self.failures_this_minute.store(0, Relaxed);
            self.tokens_this_minute.store(0, Relaxed);
        }
    }

    /// Counts a dispatch: in flight, and towards this minute's rpm/tpm.
    pub fn start(&self, now_ms: u64, est_tokens: u64) {
        self.roll_minute(now_ms);
        self.in_flight.fetch_add(1, Relaxed);
        self.requests_this_minute.fetch_add(1, Relaxed);
        self.tokens_this_minute.fetch_add(est_tokens, Relaxed);
        self.rpm_window.add(now_ms, 1);
        self.tpm_window.add(now_ms, est_tokens);
    }

    pub fn finish(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    pub fn record_latency(&self, micros: u64) {
        let old = self.latency_ewma_us.load(Relaxed);
        let new = if old == 0 {
            micros
        } else {
            (ALPHA * micros as f64 + (1.0 - ALPHA) * old as f64) as u64
        };
        self.latency_ewma_us.store(new.max(1), Relaxed);
    }

    pub fn record_ttft(&self, micros: u64) {
        let old = self.ttft_ewma_us.load(Relaxed);
        let new = if old == 0 {
            micros
        } else {
            (ALPHA * micros as f64 + (1.0 - ALPHA) * old as f64) as u64
        };
        self.ttft_ewma_us.store(new.max(1), Relaxed);
    }

    pub fn ttft_us(&self) -> u64 {
        self.ttft_ewma_us.load(Relaxed)
    }

    pub fn latency_us(&self) -> u64 {
        self.latency_ewma_us.load(Relaxed)
    }

    pub fn add_tokens(&self, now_ms: u64, n: u64) {
        self.tokens_this_minute.fetch_add(n, Relaxed);
        self.tpm_window.add(now_ms, n);
    }

    /// Requests dispatched in the last 60 s (the sliding window `rpm` is held to).
    pub fn requests_last_minute(&self, now_ms: u64) -> u64 {
        self.rpm_window.usage(now_ms).used
    }

    /// Tokens counted in the last 60 s (the sliding window `tpm` is held to).
    pub fn tokens_last_minute(&self, now_ms: u64) -> u64 {
        self.tpm_window.usage(now_ms).used
    }

    /// Milliseconds until a request of `est_tokens` fits this deployment's `rpm` and `tpm`.
    pub fn limit_wait_ms(&self, now_ms: u64, rpm: Option<u64>, tpm: Option<u64>, est_tokens: u64) -> u64 {
        let r = rpm.map_or(0, |r| self.rpm_window.wait_ms(now_ms, r.saturating_sub(1)));
        let t = tpm.map_or(0, |t| self.tpm_window.wait_ms(now_ms, t.saturating_sub(est_tokens)));
        r.max(t)
    }

    pub fn requests_this_minute(&self, now_ms: u64) -> u64 {
        self.roll_minute(now_ms);
        self.requests_this_minute.load(Relaxed)
    }

    pub fn tokens_this_minute(&self, now_ms: u64) -> u64 {
        self.roll_minute(now_ms);
        self.tokens_this_minute.load(Relaxed)
    }

    /// Records a failure; returns (failures in the `allowed_fails` window, failures this
    /// minute, requests this minute).
    pub fn record_failure(&self, now_ms: u64, window_ms: u64, error: String) -> (u64, u64, u64) {
        self.roll_minute(now_ms);
        let start = self.fail_window_start_ms.load(Relaxed);
        if start == 0 || now_ms.saturating_sub(start) >= window_ms.max(1) {
            self.fail_window_start_ms.store(now_ms.max(1), Relaxed);
            self.fails_in_window.store(0, Relaxed);
        }
        let in_window = self.fails_in_window.fetch_add(1, Relaxed) + 1;
        let f = self.failures_this_minute.fetch_add(1, Relaxed) + 1;
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(error);
        }
        (in_window, f, self.requests_this_minute.load(Relaxed))
    }

    /// Sits the deployment out until `until_ms`; a later deadline is never shortened.
    pub fn cool_until(&self, until_ms: u64) {
        self.cooled_until_ms.fetch_max(until_ms, Relaxed);
        self.fails_in_window.store(0, Relaxed);
        self.cooldowns.fetch_add(1, Relaxed);
    }

    /// Counts one attempt's outcome (every try, retries included).
    pub fn count_attempt(&self, ok: bool) {
        if ok { &self.succeeded } else { &self.failed }.fetch_add(1, Relaxed);
    }

    /// (succeeded, failed, cooldowns) since start.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.succeeded.load(Relaxed),
            self.failed.load(Relaxed),
            self.cooldowns.load(Relaxed),
        )
    }

    pub fn failures_this_minute(&self, now_ms: u64) -> u64 {
        self.roll_minute(now_ms);
        self.failures_this_minute.load(Relaxed)
    }

    pub fn is_cooled(&self, now_ms: u64) -> bool {
        self.cooled_until_ms.load(Relaxed) > now_ms
    }

    pub fn set_healthy(&self, healthy: bool, error: Option<String>) {
        self.unhealthy.store(!healthy, Relaxed);
        if let (false, Ok(mut g)) = (healthy, self.last_error.lock()) {
            *g = error;
        }
    }

    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }
}

/// Decrements the in-flight count when dropped (request done, failed, or client gone).
pub struct InFlight(pub std::sync::Arc<DeploymentState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}
