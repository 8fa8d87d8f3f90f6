//! The `local-first` policy: serve on the local GPU while it has room, escalate to the cloud the
//! moment it does not, and say why.
//!
//! A local deployment takes a request when it is healthy, the request fits (prompt estimate +
//! `max_tokens` within its context window and within `cheap_max_tokens`), and it is not
//! saturated. Saturation has two parts:
//! - capacity, exact and immediate: our own in-flight count against the engine's slots
//!   (llama-server `/slots`, else `default_parallel` for Ollama and llama-server, and for any
//!   engine whose readings are stale or missing, which count as unknown, never as idle);
//! - pressure, from the engine's gauges and the GPU, with hysteresis: it enters at the `*_enter`
//!   thresholds (queue depth, KV-cache use, preemptions, CPU offload, our EWMA time to first
//!   token, GPU throttling, temperature, foreign VRAM) and leaves only when all are back under
//!   the `*_leave` values and `min_dwell_ms` has passed, so routing does not flap.
//!
//! Among eligible local deployments the choice is power of two choices on in-flight + queue;
//! otherwise the group's cloud deployments are used (weighted shuffle), or its fallbacks.

use super::balance::{self, Candidate};
use super::state::DeploymentState;
use crate::config::{Deployment, LocalFirstSettings, Strategy};
use crate::signals::engine::{EngineKind, EngineSnapshot};
use crate::signals::{GpuSnapshot, Signals};
use rand::Rng;
use std::sync::atomic::Ordering::Relaxed;

/// Where a request went, and why (the `x-switchyard-route` / `-reason` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Local,
    Cloud,
}

impl Route {
    pub fn of(dep: &Deployment) -> Route {
        if dep.is_local() {
            Route::Local
        } else {
            Route::Cloud
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::Cloud => "cloud",
        }
    }
}

pub struct Choice<'a> {
    pub candidate: Candidate<'a>,
    pub route: Route,
    pub reason: String,
}

/// Why no local deployment was chosen, for when no cloud one may be used either.
pub struct Saturated {
    pub reason: String,
}

/// The pressure verdict for one local deployment now.
pub fn assess(
    s: &LocalFirstSettings,
    max_parallel: Option<u64>,
    kind: EngineKind,
    snap: &EngineSnapshot,
    gpu: &GpuSnapshot,
    state: &DeploymentState,
    now_ms: u64,
) -> Result<(), String> {
    let fresh = snap.at_ms > 0 && now_ms.saturating_sub(snap.at_ms) <= s.stale_after_ms;
    let in_flight = state.in_flight.load(Relaxed).max(0) as u64;
    // Capacity: exact and immediate both ways.
    let slots = match (fresh, snap.slots.or(max_parallel)) {
        (_, Some(n)) => Some(n),
        (true, None) => matches!(kind, EngineKind::Ollama | EngineKind::Llamacpp).then_some(s.default_parallel),
        (false, None) => Some(s.default_parallel),
    };
    if let Some(p) = slots.map(|n| n + s.max_local_queue) {
        if in_flight >= p {
            let stale = if fresh { "" } else { ",stale_signals" };
            return Err(format!("in_flight={in_flight}>={p}{stale}"));
        }
    }
    if fresh && !snap.up {
        return Err(format!("engine_down={}", snap.error.as_deref().unwrap_or("no answer")));
    }
    // Pressure: hysteresis.
    let gpu_fresh = gpu.at_ms > 0 && now_ms.saturating_sub(gpu.at_ms) <= s.stale_after_ms.max(3 * s.gpu_poll_ms);
    let ttft_ms = state.ttft_us() as f64 / 1000.0;
    let mut enter: Vec<String> = Vec::new();
    let mut calm = true;
    if fresh {
        if let Some(w) = snap.waiting {
            if w >= s.queue_enter {
                enter.push(format!("queue_depth={w}>={}", s.queue_enter));
            }
            calm &= w <= s.queue_leave;
        }
        if let Some(kv) = snap.kv_usage {
            if kv >= s.kv_enter {
                enter.push(format!("kv_cache={kv:.2}>={:.2}", s.kv_enter));
            }
            calm &= kv <= s.kv_leave;
        }
        if snap.preempting {
            enter.push("preemptions".into());
            calm = false;
        }
        if snap.offloaded {
            enter.push("offloaded_to_cpu".into());
            calm = false;
        }
    }
    if ttft_ms > 0.0 {
        if ttft_ms >= s.ttft_enter_ms {
            enter.push(format!("ttft_ms={ttft_ms:.0}>={:.0}", s.ttft_enter_ms));
        }
        calm &= ttft_ms <= s.ttft_leave_ms;
    }
    if gpu_fresh {
        for g in &gpu.gpus {
            let hazard: Vec<&str> = g
                .throttle
                .iter()
                .map(String::as_str)
                .filter(|t| *t != "sw_power_cap")
                .collect();
            if !hazard.is_empty() {
                enter.push(format!("gpu{}_throttled={}", g.index, hazard.join("+")));
                calm = false;
            }
            if g.temperature_c >= s.max_gpu_temp_c {
                enter.push(format!("gpu{}_temp={}>={}", g.index, g.temperature_c, s.max_gpu_temp_c));
                calm = false;
            }
            if let Some(limit) = s.max_foreign_vram_mb {
                if g.foreign_vram_mb > limit {
                    enter.push(format!("gpu{}_foreign_vram_mb={}>{limit}", g.index, g.foreign_vram_mb));
                    calm = false;
                }
            }
        }
    }
    let was = state.saturated.load(Relaxed);
    if !was {
        if enter.is_empty() {
            return Ok(());
        }
        state.saturated.store(true, Relaxed);
        state.saturated_since_ms.store(now_ms, Relaxed);
        return Err(enter.join(","));
    }
    let dwelt = now_ms.saturating_sub(state.saturated_since_ms.load(Relaxed)) >= s.min_dwell_ms;
    if calm && dwelt {
        state.saturated.store(false, Relaxed);
        return Ok(());
    }
    if enter.is_empty() {
        enter.push(if calm {
            "dwell".into()
        } else {
            "above_leave_thresholds".into()
        });
    }
    Err(enter.join(","))
}

/// Picks a deployment for a request of about `size_tokens` (prompt + max_tokens).
pub fn choose<'a>(
    s: &LocalFirstSettings,
    signals: &Signals,
    candidates: &[Candidate<'a>],
    size_tokens: u64,
    now_ms: u64,
) -> Result<Choice<'a>, Saturated> {
    let gpu = signals.gpu();
    let mut ready: Vec<(Candidate<'a>, f64)> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut locals = false;
    for c @ (d, st) in candidates.iter().copied() {
        if !d.is_local() {
            continue;
        }
        locals = true;
        if let Some(window) = d.max_input_tokens().filter(|w| size_tokens > *w) {
            reasons.push(format!("context={size_tokens}>{window}"));
            continue;
        }
        if size_tokens > s.cheap_max_tokens {
            reasons.push(format!("too_large={size_tokens}>{}", s.cheap_max_tokens));
            continue;
        }
        let (kind, snap) = match signals.engine(d.index) {
            Some(e) => (e.kind(), e.snapshot()),
            None => (EngineKind::Unknown, EngineSnapshot::default()),
        };
        let max_parallel = d.model_info.extra.get("max_parallel").and_then(|v| v.as_u64());
        match assess(s, max_parallel, kind, &snap, &gpu, st, now_ms) {
            Ok(()) => ready.push((c, st.in_flight.load(Relaxed) as f64 + snap.waiting.unwrap_or(0.0))),
            Err(r) => reasons.push(r),
        }
    }
    if !ready.is_empty() {
        let pick = if ready.len() == 1 {
            ready[0].0
        } else {
            let mut rng = rand::rng();
            let i = rng.random_range(0..ready.len());
            let mut j = rng.random_range(0..ready.len() - 1);
            if j >= i {
                j += 1;
            }
            if ready[j].1 < ready[i].1 {
                ready[j].0
            } else {
                ready[i].0
            }
        };
        return Ok(Choice {
            candidate: pick,
            route: Route::Local,
            reason: "local_ok".into(),
        });
    }
    let reason = if locals {
        reasons.join(";")
    } else {
        "no_local_deployment".into()
    };
    let clouds: Vec<Candidate<'a>> = candidates.iter().copied().filter(|(d, _)| !d.is_local()).collect();
    match balance::pick(Strategy::SimpleShuffle, 0.0, &clouds, now_ms) {
        Some(c) => Ok(Choice {
            candidate: c,
            route: Route::Cloud,
            reason,
        }),
        None => Err(Saturated { reason }),
    }
}
