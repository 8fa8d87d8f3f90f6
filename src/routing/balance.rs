//! Choosing a deployment inside a group.
//!
//! `simple-shuffle` (LiteLLM's default): weighted random by `weight`, else `rpm`, else `tpm`,
//! else uniform. Unlike LiteLLM, which looks only at the first deployment to decide which field
//! weighs, each field is used when every candidate has it, so mixed configs stay predictable.
//! Lower `order` values are preferred: only the best order present is eligible.

use crate::config::Deployment;
use rand::Rng;
use std::sync::Arc;

/// Picks one of `candidates` that is not in `exclude` (already tried), or `None`.
pub fn pick(candidates: &[Arc<Deployment>], exclude: &[usize]) -> Option<Arc<Deployment>> {
    let eligible: Vec<&Arc<Deployment>> = candidates
        .iter()
        .filter(|d| !exclude.contains(&d.index))
        .collect();
    if eligible.len() <= 1 {
        return eligible.first().map(|d| Arc::clone(d));
    }
    let best_order = eligible.iter().filter_map(|d| d.order).min();
    let eligible: Vec<&Arc<Deployment>> = match best_order {
        Some(o) => eligible
            .into_iter()
            .filter(|d| d.order.is_none_or(|x| x == o))
            .collect(),
        None => eligible,
    };
    let weights: Option<Vec<f64>> = [
        |d: &Deployment| d.weight,
        |d: &Deployment| d.rpm.map(|x| x as f64),
        |d: &Deployment| d.tpm.map(|x| x as f64),
    ]
    .iter()
    .find_map(|f| eligible.iter().map(|d| f(d)).collect::<Option<Vec<f64>>>())
    .filter(|w| w.iter().sum::<f64>() > 0.0);
    let mut rng = rand::rng();
    let i = match weights {
        Some(w) => {
            let total: f64 = w.iter().sum();
            let mut x = rng.random_range(0.0..total);
            let mut chosen = w.len() - 1;
            for (i, wi) in w.iter().enumerate() {
                if x < *wi {
                    chosen = i;
                    break;
                }
                x -= wi;
            }
            chosen
        }
        None => rng.random_range(0..eligible.len()),
    };
    Some(Arc::clone(eligible[i]))
}
