//! Live per-deployment state: in-flight count, latency, usage this minute, cooldown, health.
//!
//! A cooldown is a circuit breaker: while `cooled_until_ms` lies ahead the deployment is open
//! (skipped); once it has passed, the deployment is half-open until an attempt on it ends: one
//! request at a time (the probe) may try it, a success closes the breaker and a failure opens it
//! again at once (`cooldown::on_failure`). A success seen by a background health probe closes it too.
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
    /// The breaker tripped (set when cooled, cleared by a success after the cooldown).
    tripped: AtomicBool,
    /// A half-open probe is in flight.
    probing: AtomicBool,
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
        self.tripped.store(true, Relaxed);
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

    /// The cooldown has passed but no attempt has succeeded since: the next one is a probe.
    pub fn is_half_open(&self, now_ms: u64) -> bool {
        self.tripped.load(Relaxed) && !self.is_cooled(now_ms)
    }

    /// Whether a request may go here now: not cooling, and not half-open with its probe out.
    pub fn is_available(&self, now_ms: u64) -> bool {
        let probe_out = self.tripped.load(Relaxed) && self.probing.load(Relaxed);
        !self.is_cooled(now_ms) && !probe_out
    }

    /// Claims the probe of a half-open deployment; `None` when it is closed (or, after a race
    /// between two requests, when the other one claimed it: both go, which is harmless).
    pub fn begin_probe(self: &std::sync::Arc<Self>, now_ms: u64) -> Option<Probe> {
        if !self.is_half_open(now_ms) {
            return None;
        }
        self.probing
            .compare_exchange(false, true, Relaxed, Relaxed)
            .ok()
            .map(|_| Probe(self.clone()))
    }

    /// An attempt succeeded: counts it, and closes a half-open breaker.
    pub fn succeeded(&self, now_ms: u64) {
        self.count_attempt(true);
        self.close_if_half_open(now_ms);
    }

    /// Closes a half-open breaker (a successful attempt or health probe); an open one stays open
    /// until its cooldown ends (a request that started before the cooldown proves little).
    pub fn close_if_half_open(&self, now_ms: u64) {
        if self.is_half_open(now_ms) && self.tripped.swap(false, Relaxed) {
            tracing::info!("deployment answered after its cooldown: breaker closed");
        }
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

/// A half-open deployment's probe: released when the attempt ends, however it ends (its verdict
/// is recorded separately; a probe dropped without one lets the next request probe).
pub struct Probe(std::sync::Arc<DeploymentState>);

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.probing.store(false, Relaxed);
    }
}

/// Decrements the in-flight count when dropped (request done, failed, or client gone).
pub struct InFlight(pub std::sync::Arc<DeploymentState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn breaker_half_opens_for_one_probe_and_closes_on_success() {
        let s = Arc::new(DeploymentState::default());
        assert!(
            s.is_available(0) && s.begin_probe(0).is_none(),
            "closed: no probe needed"
        );
        s.cool_until(1_000);
        assert!(!s.is_available(999), "open while cooling");
        assert!(s.begin_probe(999).is_none());
        assert!(s.is_half_open(1_000) && s.is_available(1_000));
        let probe = s.begin_probe(1_000).expect("the first request probes");
        assert!(!s.is_available(1_000), "one probe at a time");
        assert!(s.begin_probe(1_000).is_none());
        drop(probe);
        assert!(
            s.is_available(1_000),
            "a probe dropped without a verdict frees the slot"
        );
        let probe = s.begin_probe(1_000).expect("probe again");
        s.succeeded(1_001);
        drop(probe);
        assert!(!s.is_half_open(1_001) && s.is_available(1_001), "closed by the success");
        assert!(s.begin_probe(1_002).is_none());
    }

    #[test]
    fn a_success_while_still_cooling_does_not_close_the_breaker() {
        let s = Arc::new(DeploymentState::default());
        s.cool_until(1_000);
        s.succeeded(500);
        assert!(
            s.is_half_open(1_000),
            "a request from before the cooldown proves nothing"
        );
    }
}
