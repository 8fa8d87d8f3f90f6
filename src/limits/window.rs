//! Sliding one-minute windows for rpm and tpm.
//!
//! A ring of one-second buckets. A request at second `s` is counted while the clock's second is
//! at most `s + 60`, so every event less than 60 s before now is always in the sum: no 60 s
//! interval, wherever it starts, ever holds more than the limit (a calendar minute would let a
//! burst on each side of its boundary through, twice the limit). The price is at most one second
//! of extra memory: an event leaves the window between 60 and 61 s after it happened.
//!
//! Each bucket is one `AtomicU64` holding its second (high 32 bits, plus one so 0 means empty)
//! and its count (low 32 bits, saturating), so a bucket is reused for a new second and counted
//! in a single compare-and-swap: no lock, nothing held across an await. The ring is allocated on
//! first use, so an account without that limit costs one empty pointer.
//!
//! [`Window`] is the seam for #20 (limits shared across replicas): a Redis-backed window
//! implements the same three calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The span of a window: an event counts for 60 s (and up to one second more).
pub const WINDOW_SECS: u64 = 60;
const SLOTS: usize = WINDOW_SECS as usize + 1;
const COUNT_MASK: u64 = 0xFFFF_FFFF;

/// What a window holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The sum over the last 60 s.
    pub used: u64,
    /// Milliseconds until the oldest counted second leaves the window (0 when empty).
    pub next_free_ms: u64,
}

/// A rate window: counts by time, answers the sum over the last minute.
pub trait Window: Send + Sync {
    /// Adds `n` at `now_ms` when the sum stays within `limit`: the usage with it, or without it
    /// (nothing added) when it would not fit.
    fn try_add(&self, now_ms: u64, n: u64, limit: u64) -> Result<Usage, Usage>;
    /// Adds `n` at `now_ms` unconditionally (tokens, known only once a request ends).
    fn add(&self, now_ms: u64, n: u64);
    /// Takes back `n` added at `now_ms` (a request refused by another of its accounts); a no-op
    /// once that second has left the ring.
    fn remove(&self, now_ms: u64, n: u64);
    /// The sum over the last minute.
    fn usage(&self, now_ms: u64) -> Usage;
    /// Milliseconds until the sum has dropped to `target` or below.
    fn wait_ms(&self, now_ms: u64, target: u64) -> u64;
}

/// The in-memory window of one gateway.
#[derive(Debug, Default)]
pub struct SlidingWindow {
    ring: OnceLock<Box<[AtomicU64; SLOTS]>>,
}

fn pack(sec: u64, count: u64) -> u64 {
    ((sec + 1) << 32) | count.min(COUNT_MASK)
}

fn unpack(v: u64) -> Option<(u64, u64)> {
    let tag = v >> 32;
    (tag != 0).then(|| (tag - 1, v & COUNT_MASK))
}

impl SlidingWindow {
    pub fn new() -> Self {
        Self::default()
    }

    fn ring(&self) -> &[AtomicU64; SLOTS] {
        self.ring
            .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))))
    }

    /// The live buckets `(second, count)`, oldest first.
    fn live(&self, now_sec: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let ring = self.ring.get();
        let oldest = now_sec.saturating_sub(WINDOW_SECS);
        (oldest..=now_sec).filter_map(move |sec| {
            let v = ring?[(sec % SLOTS as u64) as usize].load(Ordering::Acquire);
            unpack(v).filter(|(s, c)| *s == sec && *c > 0)
        })
    }

    /// Adds `n` (saturating) to the bucket of `now_sec`, claiming it from an older second.
    fn bump(&self, now_sec: u64, n: u64) {
        let slot = &self.ring()[(now_sec % SLOTS as u64) as usize];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match unpack(v) {
            Some((s, c)) if s == now_sec => Some(pack(s, c.saturating_add(n))),
            // Older seconds are out of the window by now; a newer one (a clock that stepped back
            // for another caller) is kept, and this count lands in it.
            Some((s, c)) if s > now_sec => Some(pack(s, c.saturating_add(n))),
            _ => Some(pack(now_sec, n)),
        });
    }
}

impl Window for SlidingWindow {
    fn try_add(&self, now_ms: u64, n: u64, limit: u64) -> Result<Usage, Usage> {
        // Add first, then look: two concurrent requests can then both be refused (a transient
        // overcount), never both admitted past the limit.
        self.bump(now_ms / 1000, n);
        let with = self.usage(now_ms);
        if with.used <= limit {
            return Ok(with);
        }
        self.remove(now_ms, n);
        Err(Usage {
            used: with.used.saturating_sub(n),
            ..with
        })
    }

    fn add(&self, now_ms: u64, n: u64) {
        if n > 0 {
            self.bump(now_ms / 1000, n);
        }
    }

    fn remove(&self, now_ms: u64, n: u64) {
        let Some(ring) = self.ring.get() else { return };
        let sec = now_ms / 1000;
        let slot = &ring[(sec % SLOTS as u64) as usize];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match unpack(v) {
            Some((s, c)) if s == sec => Some(pack(s, c.saturating_sub(n))),
            _ => None,
        });
    }

    fn usage(&self, now_ms: u64) -> Usage {
        let now_sec = now_ms / 1000;
        let mut u = Usage::default();
        for (sec, count) in self.live(now_sec) {
            if u.used == 0 {
                u.next_free_ms = ((sec + WINDOW_SECS + 1) * 1000).saturating_sub(now_ms);
            }
            u.used = u.used.saturating_add(count);
        }
        u
    }

    fn wait_ms(&self, now_ms: u64, target: u64) -> u64 {
        let now_sec = now_ms / 1000;
        let mut left = self.usage(now_ms).used;
        if left <= target {
            return 0;
        }
        for (sec, count) in self.live(now_sec) {
            left = left.saturating_sub(count);
            if left <= target {
                return ((sec + WINDOW_SECS + 1) * 1000).saturating_sub(now_ms);
            }
        }
        (WINDOW_SECS + 1) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_leave_between_60_and_61_seconds_later() {
        let w = SlidingWindow::new();
        assert_eq!(w.usage(0).used, 0);
        w.add(59_500, 3);
        assert_eq!(w.usage(60_500).used, 3);
        assert_eq!(w.usage(119_400).used, 3, "59.9 s later it still counts");
        assert_eq!(w.usage(119_500).next_free_ms, 500);
        assert_eq!(w.usage(120_000).used, 0);
    }

    #[test]
    fn try_add_refuses_past_the_limit_and_leaves_no_trace() {
        let w = SlidingWindow::new();
        for i in 0..5 {
            assert_eq!(w.try_add(1_000, 1, 5).map(|u| u.used), Ok(i + 1));
        }
        assert_eq!(w.try_add(1_000, 1, 5).map_err(|u| u.used), Err(5));
        assert_eq!(w.usage(1_000).used, 5);
        assert_eq!(w.wait_ms(30_000, 4), 32_000);
    }

    #[test]
    fn a_reused_slot_forgets_its_old_second() {
        let w = SlidingWindow::new();
        w.add(0, 7);
        // The same slot, 61 s later.
        w.add(61_000, 1);
        assert_eq!(w.usage(61_000).used, 1);
        w.remove(0, 7);
        assert_eq!(w.usage(61_000).used, 1, "a stale removal does not touch the new second");
    }

    /// A small deterministic generator (xorshift), so the property test needs no new crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Property: whatever the arrival times, no 60 s interval holds more admissions than the
    /// limit, and an admission is refused only when the last 60 s already hold the limit.
    #[test]
    fn never_more_than_the_limit_in_any_60_seconds() {
        for seed in 1..200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let limit = 1 + rng.next() % 12;
            let w = SlidingWindow::new();
            let mut now = rng.next() % 120_000;
            let mut admitted: Vec<u64> = Vec::new();
            for _ in 0..400 {
                now += match rng.next() % 4 {
                    0 => 0,
                    1 => rng.next() % 1_000,
                    2 => rng.next() % 10_000,
                    _ => rng.next() % 70_000,
                };
                let n = 1 + rng.next() % 2;
                match w.try_add(now, n, limit) {
                    Ok(_) => admitted.extend(std::iter::repeat_n(now, n as usize)),
                    Err(_) => {
                        // Refused: the limit really is reached within the last 61 s.
                        let recent = admitted.iter().filter(|t| now - **t < 61_000).count() as u64;
                        assert!(recent + n > limit, "seed {seed}: refused with {recent} of {limit}");
                    }
                }
            }
            for (i, start) in admitted.iter().enumerate() {
                let inside = admitted[i..].iter().take_while(|t| **t < start + 60_000).count() as u64;
                assert!(
                    inside <= limit,
                    "seed {seed}: {inside} in 60 s from {start}, limit {limit}"
                );
            }
        }
    }

    #[test]
    fn concurrent_adders_never_pass_the_limit() {
        let w = std::sync::Arc::new(SlidingWindow::new());
        let admitted = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (w, admitted) = (w.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if w.try_add(5_000, 1, 50).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = admitted.load(Ordering::Relaxed);
        assert!(n <= 50 && n > 0, "{n}");
        assert_eq!(w.usage(5_000).used, n);
    }
}
