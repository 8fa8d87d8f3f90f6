//! One principal's budget: what it spent in this period, and what requests in flight have
//! reserved.
//!
//! A paid attempt reserves its estimated cost first ([`Budget::try_reserve`]) and the request
//! settles with its actual cost at the end ([`Budget::settle`]). Because the check counts every
//! reservation in flight, N concurrent requests cannot each see the same unspent budget: the
//! overshoot is bounded by how far actual costs exceed their estimates, not by the concurrency.
//!
//! Spend and reserved sit under one small mutex so the check and the reservation are one step
//! (two atomics would let a settle slip between the two reads). It is held for a few
//! instructions and never across an await. [`Budget`] is the seam for #20: a Redis-backed budget
//! implements the same calls.

use std::sync::Mutex;

/// Why a reservation did not fit: the spend and reservations it met.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Full {
    pub spend: f64,
    pub reserved: f64,
}

pub trait Budget: Send + Sync {
    /// USD spent in this budget period.
    fn spend(&self) -> f64;
    /// USD reserved by requests in flight.
    fn reserved(&self) -> f64;
    /// Reserves `usd` when spend + reservations + `usd` stay within `max` (and something is left:
    /// a paid call with a zero estimate still needs an open budget); `max` `None` always fits.
    fn try_reserve(&self, usd: f64, max: Option<f64>) -> Result<(), Full>;
    /// Whether `usd` would fit now, reserving nothing.
    fn fits(&self, usd: f64, max: Option<f64>) -> Result<(), Full>;
    /// Gives back a reservation unused (a failed attempt, a request gone).
    fn release(&self, usd: f64);
    /// Ends a request: its actual cost becomes spend and its reservation is given back, together.
    fn settle(&self, reserved: f64, actual: f64);
    /// A new budget period: spend back to 0 (reservations in flight stay).
    fn reset(&self);
}

#[derive(Debug, Default)]
struct State {
    spend: f64,
    reserved: f64,
}

/// The in-memory budget of one gateway.
#[derive(Debug, Default)]
pub struct LocalBudget {
    state: Mutex<State>,
}

impl LocalBudget {
    pub fn new(spend: f64) -> Self {
        LocalBudget {
            state: Mutex::new(State { spend, reserved: 0.0 }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

fn check(s: &State, usd: f64, max: Option<f64>) -> Result<(), Full> {
    let Some(max) = max else { return Ok(()) };
    let committed = s.spend + s.reserved;
    if committed < max && committed + usd <= max {
        Ok(())
    } else {
        Err(Full {
            spend: s.spend,
            reserved: s.reserved,
        })
    }
}

impl Budget for LocalBudget {
    fn spend(&self) -> f64 {
        self.with(|s| s.spend)
    }

    fn reserved(&self) -> f64 {
        self.with(|s| s.reserved)
    }

    fn try_reserve(&self, usd: f64, max: Option<f64>) -> Result<(), Full> {
        let usd = usd.max(0.0);
        self.with(|s| {
            check(s, usd, max)?;
            s.reserved += usd;
            Ok(())
        })
    }

    fn fits(&self, usd: f64, max: Option<f64>) -> Result<(), Full> {
        self.with(|s| check(s, usd.max(0.0), max))
    }

    fn release(&self, usd: f64) {
        self.settle(usd, 0.0);
    }

    fn settle(&self, reserved: f64, actual: f64) {
        self.with(|s| {
            // Float sums of the same values can leave dust: never let it go negative.
            s.reserved = (s.reserved - reserved.max(0.0)).max(0.0);
            s.spend += actual.max(0.0);
        });
    }

    fn reset(&self) {
        self.with(|s| s.spend = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_until_settled() {
        let b = LocalBudget::new(0.0);
        assert!(b.try_reserve(0.4, Some(1.0)).is_ok());
        assert!(b.try_reserve(0.4, Some(1.0)).is_ok());
        let full = b.try_reserve(0.4, Some(1.0)).unwrap_err();
        assert!((full.reserved - 0.8).abs() < 1e-12);
        // The first ends cheaper than reserved: room opens up.
        b.settle(0.4, 0.1);
        assert!((b.spend() - 0.1).abs() < 1e-12);
        assert!(b.try_reserve(0.4, Some(1.0)).is_ok());
        b.release(0.4);
        b.release(0.4);
        assert!(b.reserved().abs() < 1e-12);
        // A zero estimate needs something left.
        b.settle(0.0, 0.8);
        assert!(b.try_reserve(0.0, Some(1.0)).is_ok());
        b.settle(0.0, 0.1);
        assert!(b.try_reserve(0.0, Some(1.0)).is_err());
        assert!(b.try_reserve(5.0, None).is_ok());
    }

    #[test]
    fn concurrent_reservations_never_pass_the_budget() {
        let b = std::sync::Arc::new(LocalBudget::new(0.0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut won = 0;
                    for _ in 0..100 {
                        if b.try_reserve(0.01, Some(0.5)).is_ok() {
                            won += 1;
                        }
                    }
                    won
                })
            })
            .collect();
        let won: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(won <= 50, "{won}");
        assert!((b.reserved() - won as f64 * 0.01).abs() < 1e-9);
    }
}
