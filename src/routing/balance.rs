//! Choosing a deployment among the eligible ones, by `routing_strategy`.
//!
//! - `simple-shuffle` (LiteLLM's default): weighted random by `weight`, else `rpm`, else `tpm`,
//!   else uniform. Unlike LiteLLM, which looks at the first deployment only to decide which field
//!   weighs, a field is used when every candidate has it, so mixed configs stay predictable.
//! - `least-busy`: fewest requests in flight, by power of two choices (two random candidates,
//!   the less busy wins): near-optimal balance without a global scan or lock.
//! - `latency-based-routing`: EWMA latency (time to first byte for streams); uniform among those
//!   within `(1 + lowest_latency_buffer)` of the lowest; unmeasured deployments count as 0, so
//!   each gets tried (as LiteLLM).
//! - `usage-based-routing(-v2)`: lowest tokens used in the last minute, by power of two choices.
//! - `cost-based-routing`: cheapest per token (overrides, else the built-in table).
//!
//! Lower `order` values are preferred throughout: only the best order present is eligible.

use super::state::DeploymentState;
use crate::config::{Deployment, Strategy};
use rand::Rng;
use std::sync::Arc;

/// A candidate: the deployment and its live state.
pub type Candidate<'a> = (&'a Arc<Deployment>, &'a DeploymentState);

pub fn pick<'a>(strategy: Strategy, buffer: f64, candidates: &[Candidate<'a>], now_ms: u64) -> Option<Candidate<'a>> {
    if candidates.len() <= 1 {
        return candidates.first().copied();
    }
    let best_order = candidates.iter().filter_map(|(d, _)| d.order).min();
    let pool: Vec<Candidate> = match best_order {
        Some(o) => candidates
            .iter()
            .copied()
            .filter(|(d, _)| d.order.is_none_or(|x| x == o))
            .collect(),
        None => candidates.to_vec(),
    };
    if pool.len() == 1 {
        return pool.first().copied();
    }
    let mut rng = rand::rng();
    let chosen = match strategy {
        Strategy::SimpleShuffle | Strategy::LocalFirst => pool[weighted_index(&pool, &mut rng)],
        Strategy::LeastBusy => two_choices(&pool, &mut rng, |(_, s)| {
            s.in_flight.load(std::sync::atomic::Ordering::Relaxed) as f64
        }),
        Strategy::UsageBased => two_choices(&pool, &mut rng, |(_, s)| s.tokens_last_minute(now_ms) as f64),
        Strategy::LatencyBased => {
            let lowest = pool.iter().map(|(_, s)| s.latency_us()).min().unwrap_or(0) as f64;
            let limit = lowest * (1.0 + buffer);
            let near: Vec<Candidate> = pool
                .iter()
                .copied()
                .filter(|(_, s)| s.latency_us() as f64 <= limit)
                .collect();
            near[rng.random_range(0..near.len())]
        }
        Strategy::CostBased => {
            let lowest = pool.iter().map(|(d, _)| d.unit_cost()).fold(f64::INFINITY, f64::min);
            let cheapest: Vec<Candidate> = pool.iter().copied().filter(|(d, _)| d.unit_cost() <= lowest).collect();
            cheapest[rng.random_range(0..cheapest.len())]
        }
    };
    Some(chosen)
}

fn weighted_index(pool: &[Candidate], rng: &mut impl Rng) -> usize {
    let fields: [fn(&Deployment) -> Option<f64>; 3] =
        [|d| d.weight, |d| d.rpm.map(|x| x as f64), |d| d.tpm.map(|x| x as f64)];
    let weights = fields
        .iter()
        .find_map(|f| pool.iter().map(|(d, _)| f(d)).collect::<Option<Vec<f64>>>())
        .filter(|w| w.iter().sum::<f64>() > 0.0);
    let Some(w) = weights else {
        return rng.random_range(0..pool.len());
    };
    let mut x = rng.random_range(0.0..w.iter().sum::<f64>());
    for (i, wi) in w.iter().enumerate() {
        if x < *wi {
            return i;
        }
        x -= wi;
    }
    w.len() - 1
}

/// Power of two choices: two distinct random candidates, the lower `load` wins (ties: the first).
fn two_choices<'a>(pool: &[Candidate<'a>], rng: &mut impl Rng, load: impl Fn(&Candidate) -> f64) -> Candidate<'a> {
    let i = rng.random_range(0..pool.len());
    let mut j = rng.random_range(0..pool.len() - 1);
    if j >= i {
        j += 1;
    }
    if load(&pool[j]) < load(&pool[i]) {
        pool[j]
    } else {
        pool[i]
    }
}
