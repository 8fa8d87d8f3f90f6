//! Budgets and rate limits, enforced in memory on the hot path.
//!
//! Each principal (key, team, user) has an [`Account`]: its limits, its [`Budget`] (spend in the
//! current period plus what requests in flight have reserved) and sliding one-minute
//! [`Window`]s for requests and tokens. A request is admitted against every account of its
//! caller at once ([`admit`]: rpm, tpm, parallel). Before each paid attempt the pipeline reserves
//! the attempt's estimated cost on every account ([`Admission::reserve`]); the request settles
//! with its actual cost when it ends ([`Admission::charge`]), and whatever is still reserved is
//! given back when the [`Admission`] is dropped, on every path (error, client gone, panic).
//! The database hears of spend through the ledger writer, by increments.

pub mod budget;
pub mod duration;
pub mod window;

use crate::error::GatewayError;
use crate::routing::clock::Clock;
use crate::store::spend::Principal;
use budget::{Budget, LocalBudget};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use window::{SlidingWindow, Usage, Window};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountLimits {
    pub max_budget: Option<f64>,
    /// Budget period in milliseconds.
    pub budget_ms: Option<i64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_parallel: Option<u64>,
    /// Models this principal may call; empty means all.
    pub models: Vec<String>,
    pub blocked: bool,
}

impl AccountLimits {
    /// A principal row's limits, model list and block flag.
    pub fn from_row(l: &crate::store::principals::Limits, models: &[String], blocked: bool) -> Self {
        AccountLimits {
            max_budget: l.max_budget,
            budget_ms: l.budget_duration.as_deref().and_then(duration::parse_ms),
            rpm: l.rpm_limit.map(|n| n.max(0) as u64),
            tpm: l.tpm_limit.map(|n| n.max(0) as u64),
            max_parallel: l.max_parallel_requests.map(|n| n.max(0) as u64),
            models: models.to_vec(),
            blocked,
        }
    }

    /// Whether `requested` (as asked) or `group` (as resolved) is on this principal's list.
    pub fn allows(&self, requested: &str, group: &str) -> bool {
        self.models.is_empty()
            || self.models.iter().any(|m| {
                m == "*"
                    || m == "all-proxy-models"
                    || m == requested
                    || m == group
                    || m.strip_suffix('*')
                        .is_some_and(|p| requested.starts_with(p) || group.starts_with(p))
            })
    }
}

/// A budget period that ended: the ledger persists it in order with the spend increments.
#[derive(Debug, Clone, PartialEq)]
pub struct Reset {
    pub principal: Principal,
    pub id: String,
    pub seen: Option<i64>,
    pub next: i64,
}

pub struct Account {
    pub principal: Principal,
    pub id: String,
    limits: RwLock<AccountLimits>,
    budget: Box<dyn Budget>,
    /// Unix ms of the next budget reset; 0 when the budget never resets.
    reset_at: AtomicI64,
    requests: Box<dyn Window>,
    tokens: Box<dyn Window>,
    in_flight: AtomicU64,
    /// Set when a paid request was refused for this budget, until the alert reads it.
    closed: AtomicBool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("principal", &self.principal)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Account {
    pub fn new(principal: Principal, id: String, limits: AccountLimits, spend: f64, reset_at: Option<i64>) -> Self {
        Account {
            principal,
            id,
            limits: RwLock::new(limits),
            budget: Box::new(LocalBudget::new(spend)),
            reset_at: AtomicI64::new(reset_at.unwrap_or(0)),
            requests: Box::new(SlidingWindow::new()),
            tokens: Box::new(SlidingWindow::new()),
            in_flight: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether a paid request was refused for this budget since the last call (the budget alert
    /// reports a closed budget once, even though reservations keep spend below 100%).
    pub fn take_closed(&self) -> bool {
        self.closed.swap(false, Ordering::Relaxed)
    }

    /// Reads the limits in place (the hot path never clones the model list).
    pub fn with_limits<R>(&self, f: impl FnOnce(&AccountLimits) -> R) -> R {
        match self.limits.read() {
            Ok(l) => f(&l),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// New limits from an admin update; the counters carry on.
    pub fn set_limits(&self, limits: AccountLimits, reset_at: Option<i64>) {
        if let Ok(mut l) = self.limits.write() {
            *l = limits;
        }
        self.reset_at.store(reset_at.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn spend(&self) -> f64 {
        self.budget.spend()
    }

    /// USD reserved by this account's requests in flight.
    pub fn reserved(&self) -> f64 {
        self.budget.reserved()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Starts a new budget period when the current one is over; the winner of a race reports it.
    fn roll_budget(&self, now: i64, budget_ms: Option<i64>) -> Option<Reset> {
        let at = self.reset_at.load(Ordering::Relaxed);
        let period = budget_ms?;
        if at == 0 || now < at || period <= 0 {
            return None;
        }
        let periods = (now - at) / period + 1;
        let next = at + periods * period;
        self.reset_at
            .compare_exchange(at, next, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.budget.reset();
        self.closed.store(false, Ordering::Relaxed);
        Some(Reset {
            principal: self.principal,
            id: self.id.clone(),
            seen: Some(at),
            next,
        })
    }

    /// The budget error in LiteLLM's words, for a reservation that did not fit.
    fn budget_error(&self, full: budget::Full, max: f64) -> GatewayError {
        let spend = full.spend;
        let held = if full.reserved > 0.0 {
            format!(", reserved by requests in flight: {}", full.reserved)
        } else {
            String::new()
        };
        GatewayError::BudgetExceeded {
            message: format!(
                "Budget has been exceeded! {} budget: current cost: {spend}, max budget: {max}{held}",
                self.label()
            ),
        }
    }

    fn label(&self) -> String {
        match self.principal {
            Principal::Key => "key".into(),
            Principal::Team => format!("team {}", self.id),
            Principal::User => format!("user {}", self.id),
        }
    }
}

/// What the `x-ratelimit-*` headers report: the tightest of the caller's limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
    /// Seconds until the tightest request window has room again (its oldest request leaves).
    pub reset_secs: u64,
    /// Seconds until the tightest token window's oldest tokens leave it.
    pub reset_tokens_secs: u64,
}

/// A request refused by a limit: the error, and the headers that say which limit and for how long
/// (boxed where returned: refusals are the cold path).
#[derive(Debug)]
pub struct Refusal {
    pub error: GatewayError,
    pub headers: RateHeaders,
}

/// A request admitted against its caller's accounts. Dropping it frees the parallel slots and
/// gives back any budget still reserved, so nothing leaks on any path.
pub struct Admission {
    accounts: Vec<Arc<Account>>,
    pub headers: RateHeaders,
    clock: Arc<dyn Clock>,
    /// USD reserved for the attempt that is serving the request (f64 bits), until settled.
    held: AtomicU64,
}

impl Admission {
    /// Whether a paid attempt estimated at `usd` would fit every budget now.
    pub fn fits(&self, usd: f64) -> Result<(), OverBudget> {
        for a in &self.accounts {
            let max = a.with_limits(|l| l.max_budget);
            if let (Err(full), Some(max)) = (a.budget.fits(usd, max), max) {
                return Err(OverBudget {
                    account: a.clone(),
                    full,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Reserves `usd` on every account before a paid attempt. The [`Hold`] gives it back when
    /// dropped, unless the attempt served the request ([`Hold::keep`]): then it stays until the
    /// request is charged.
    pub fn reserve(&self, usd: f64) -> Result<Hold<'_>, GatewayError> {
        let usd = usd.max(0.0);
        for (i, a) in self.accounts.iter().enumerate() {
            let max = a.with_limits(|l| l.max_budget);
            if let Err(full) = a.budget.try_reserve(usd, max) {
                for done in &self.accounts[..i] {
                    done.budget.release(usd);
                }
                a.closed.store(true, Ordering::Relaxed);
                return Err(a.budget_error(full, max.unwrap_or(0.0)));
            }
        }
        Ok(Hold {
            admission: self,
            usd,
            kept: false,
        })
    }

    fn take_held(&self) -> f64 {
        f64::from_bits(self.held.swap(0f64.to_bits(), Ordering::AcqRel))
    }

    /// Settles a finished request: its actual cost replaces its reservation on every account, and
    /// its tokens count in the tpm windows.
    pub fn charge(&self, usd: f64, tokens: u64) {
        let held = self.take_held();
        let now = self.clock.now_ms();
        for a in &self.accounts {
            a.budget.settle(held, usd);
            a.tokens.add(now, tokens);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let held = self.take_held();
        for a in &self.accounts {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
            if held > 0.0 {
                a.budget.release(held);
            }
        }
    }
}

/// A paid attempt that would not fit an account's budget.
#[derive(Debug)]
pub struct OverBudget {
    account: Arc<Account>,
    full: budget::Full,
    max: f64,
}

impl OverBudget {
    /// The request is refused for it: the account is marked closed (for the budget alert) and
    /// the error is LiteLLM's.
    pub fn refuse(self) -> GatewayError {
        self.account.closed.store(true, Ordering::Relaxed);
        self.account.budget_error(self.full, self.max)
    }
}

/// One paid attempt's reservation; released when dropped unless kept.
pub struct Hold<'a> {
    admission: &'a Admission,
    usd: f64,
    kept: bool,
}

impl Hold<'_> {
    /// The attempt served the request: the reservation stays until [`Admission::charge`] (or the
    /// admission's drop) settles it.
    pub fn keep(mut self) {
        self.kept = true;
        let usd = self.usd;
        let _ = self
            .admission
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((f64::from_bits(b) + usd).to_bits())
            });
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if !self.kept {
            for a in &self.admission.accounts {
                a.budget.release(self.usd);
            }
        }
    }
}

/// Admits one request against `accounts` (rpm, tpm, parallel), rolling budget periods on the way.
/// `now_unix_ms` rolls budget periods; the windows run on `clock` (the gateway's monotonic
/// clock, which tests move by hand). Budget is not refused here: a caller with no budget left may
/// still use free deployments; the pipeline reserves before each paid attempt.
pub fn admit(
    accounts: Vec<Arc<Account>>,
    now_unix_ms: i64,
    clock: &Arc<dyn Clock>,
    resets: &mut Vec<Reset>,
) -> Result<Admission, Box<Refusal>> {
    let now = clock.now_ms();
    let mut headers = RateHeaders::default();
    // Taken back from the accounts already passed when a later one refuses.
    let undo = |taken: &[Arc<Account>]| {
        for a in taken {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
            if a.with_limits(|l| l.rpm.is_some()) {
                a.requests.remove(now, 1);
            }
        }
    };
    for (i, a) in accounts.iter().enumerate() {
        let (budget_ms, rpm, tpm, max_parallel) = a.with_limits(|l| (l.budget_ms, l.rpm, l.tpm, l.max_parallel));
        if let Some(r) = a.roll_budget(now_unix_ms, budget_ms) {
            resets.push(r);
        }
        let refuse = |headers: RateHeaders, what: &str, detail: String, wait_ms: u64| {
            undo(&accounts[..i]);
            Box::new(Refusal {
                error: GatewayError::RateLimited {
                    message: format!("Rate limit exceeded for {}: {what} ({detail}).", a.label()),
                    retry_after_secs: wait_ms.div_ceil(1000).max(1),
                },
                headers,
            })
        };
        if let Some(rpm) = rpm {
            match a.requests.try_add(now, 1, rpm) {
                Ok(u) => tighten_requests(&mut headers, rpm, u),
                Err(u) => {
                    let wait = a.requests.wait_ms(now, rpm.saturating_sub(1));
                    let mut h = headers.clone();
                    h.limit_requests = Some(rpm);
                    h.remaining_requests = Some(0);
                    h.reset_secs = wait.div_ceil(1000);
                    let detail = format!("limit {rpm}, used {} in the last minute", u.used);
                    return Err(refuse(h, "requests per minute", detail, wait));
                }
            }
        }
        let undo_request = || {
            if rpm.is_some() {
                a.requests.remove(now, 1);
            }
        };
        if let Some(tpm) = tpm {
            let u = a.tokens.usage(now);
            if u.used >= tpm {
                undo_request();
                let wait = a.tokens.wait_ms(now, tpm.saturating_sub(1));
                let mut h = headers.clone();
                h.limit_tokens = Some(tpm);
                h.remaining_tokens = Some(0);
                h.reset_tokens_secs = wait.div_ceil(1000);
                let detail = format!("limit {tpm}, used {} in the last minute", u.used);
                return Err(refuse(h, "tokens per minute", detail, wait));
            }
            let before = headers.remaining_tokens;
            tighten(
                &mut headers.limit_tokens,
                &mut headers.remaining_tokens,
                tpm,
                tpm - u.used,
            );
            if headers.remaining_tokens != before {
                headers.reset_tokens_secs = u.next_free_ms.div_ceil(1000);
            }
        }
        let in_flight = a.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(max) = max_parallel {
            if in_flight > max {
                a.in_flight.fetch_sub(1, Ordering::Relaxed);
                undo_request();
                let wait = 1_000;
                return Err(refuse(
                    headers.clone(),
                    "max parallel requests",
                    format!("limit {max}"),
                    wait,
                ));
            }
        }
    }
    Ok(Admission {
        accounts,
        headers,
        clock: clock.clone(),
        held: AtomicU64::new(0f64.to_bits()),
    })
}

fn tighten_requests(h: &mut RateHeaders, rpm: u64, u: Usage) {
    let before = h.remaining_requests;
    tighten(
        &mut h.limit_requests,
        &mut h.remaining_requests,
        rpm,
        rpm.saturating_sub(u.used),
    );
    if h.remaining_requests != before {
        h.reset_secs = u.next_free_ms.div_ceil(1000);
    }
}

fn tighten(limit: &mut Option<u64>, remaining: &mut Option<u64>, l: u64, r: u64) {
    if remaining.is_none_or(|cur| r < cur) {
        *limit = Some(l);
        *remaining = Some(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::clock::ManualClock;

    fn acct(limits: AccountLimits) -> Arc<Account> {
        Arc::new(Account::new(Principal::Key, "k".into(), limits, 0.0, None))
    }

    /// Admits at `now` ms on both clocks.
    fn admit_at(accounts: Vec<Arc<Account>>, now: i64, resets: &mut Vec<Reset>) -> Result<Admission, GatewayError> {
        let clock = Arc::new(ManualClock::default());
        clock.advance(std::time::Duration::from_millis(now as u64));
        let clock: Arc<dyn Clock> = clock;
        admit(accounts, now, &clock, resets).map_err(|r| r.error)
    }

    #[test]
    fn rpm_window_and_parallel() {
        let a = acct(AccountLimits {
            rpm: Some(2),
            max_parallel: Some(1),
            ..Default::default()
        });
        let mut resets = Vec::new();
        let first = admit_at(vec![a.clone()], 1_000, &mut resets).unwrap();
        assert_eq!(first.headers.remaining_requests, Some(1));
        // Parallel limit: the second concurrent request is refused and leaves no trace.
        assert!(matches!(
            admit_at(vec![a.clone()], 1_000, &mut resets),
            Err(GatewayError::RateLimited { .. })
        ));
        drop(first);
        assert_eq!(a.in_flight(), 0);
        let second = admit_at(vec![a.clone()], 2_000, &mut resets).unwrap();
        drop(second);
        // rpm 2 used up for the next minute: room again once the first request is 60 s old.
        let e = admit_at(vec![a.clone()], 3_000, &mut resets).err().unwrap();
        assert!(
            matches!(
                e,
                GatewayError::RateLimited {
                    retry_after_secs: 59,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            admit_at(vec![a.clone()], 61_000, &mut resets).is_err(),
            "still within 60 s"
        );
        assert!(admit_at(vec![a.clone()], 62_000, &mut resets).is_ok());
    }

    #[test]
    fn a_refusal_by_a_later_account_leaves_no_trace_on_earlier_ones() {
        let key = acct(AccountLimits {
            rpm: Some(5),
            max_parallel: Some(5),
            ..Default::default()
        });
        let team = acct(AccountLimits {
            rpm: Some(1),
            ..Default::default()
        });
        let mut resets = Vec::new();
        let ok = admit_at(vec![key.clone(), team.clone()], 0, &mut resets).unwrap();
        assert_eq!(ok.headers.remaining_requests, Some(0), "the tightest limit is reported");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
        let refused = admit(vec![key.clone(), team.clone()], 0, &clock, &mut resets)
            .err()
            .unwrap();
        assert_eq!(refused.headers.limit_requests, Some(1));
        assert_eq!(refused.headers.remaining_requests, Some(0));
        assert_eq!(key.in_flight(), 1);
        assert_eq!(key.requests.usage(0).used, 1);
    }

    #[test]
    fn budget_rolls_on_its_boundary() {
        let a = Arc::new(Account::new(
            Principal::Team,
            "t".into(),
            AccountLimits {
                max_budget: Some(1.0),
                budget_ms: Some(1_000),
                ..Default::default()
            },
            2.0,
            Some(10_000),
        ));
        let mut resets = Vec::new();
        let adm = admit_at(vec![a.clone()], 9_999, &mut resets).unwrap();
        assert!(adm.fits(0.0).is_err());
        drop(adm);
        let adm = admit_at(vec![a.clone()], 12_500, &mut resets).unwrap();
        assert!(adm.fits(0.0).is_ok());
        assert_eq!(resets.len(), 1);
        assert_eq!(resets[0].next, 13_000);
        assert_eq!(resets[0].seen, Some(10_000));
        adm.charge(0.75, 10);
        assert!(adm.fits(0.0).is_ok());
        assert!(adm.fits(0.5).is_err());
        adm.charge(0.25, 10);
        assert!(adm.fits(0.0).is_err());
    }

    #[test]
    fn reservations_are_released_on_every_path() {
        let key = acct(AccountLimits {
            max_budget: Some(1.0),
            ..Default::default()
        });
        let team = acct(AccountLimits::default());
        let mut resets = Vec::new();
        let a = admit_at(vec![key.clone(), team.clone()], 0, &mut resets).unwrap();
        let b = admit_at(vec![key.clone(), team.clone()], 0, &mut resets).unwrap();
        let held = a.reserve(0.6).unwrap();
        // A concurrent request cannot reserve what the first holds.
        assert!(matches!(b.reserve(0.6), Err(GatewayError::BudgetExceeded { .. })));
        // A failed attempt gives its reservation back.
        drop(held);
        assert_eq!(key.reserved(), 0.0);
        // A served one keeps it until charged with the actual cost.
        a.reserve(0.6).unwrap().keep();
        assert!((key.reserved() - 0.6).abs() < 1e-12);
        a.charge(0.2, 5);
        assert_eq!(key.reserved(), 0.0);
        assert!((key.spend() - 0.2).abs() < 1e-12);
        assert!((team.spend() - 0.2).abs() < 1e-12);
        // Dropped before it was charged (client gone, panic): given back.
        b.reserve(0.7).unwrap().keep();
        drop(b);
        assert_eq!(key.reserved(), 0.0);
        assert_eq!(team.reserved(), 0.0);
        // A panic while an attempt holds a reservation releases it too.
        let c = admit_at(vec![key.clone()], 0, &mut resets).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = c.reserve(0.5).unwrap();
            panic!("attempt blew up");
        }));
        assert!(r.is_err());
        assert_eq!(key.reserved(), 0.0);
    }

    #[test]
    fn a_minute_boundary_does_not_double_rpm() {
        let a = acct(AccountLimits {
            rpm: Some(10),
            ..Default::default()
        });
        let mut resets = Vec::new();
        let mut admitted = 0;
        for now in [59_500, 60_500] {
            for _ in 0..10 {
                if admit_at(vec![a.clone()], now, &mut resets).is_ok() {
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 10, "20 requests within one second, rpm 10");
    }

    #[test]
    fn tpm_counts_the_tokens_of_the_last_minute() {
        let a = acct(AccountLimits {
            tpm: Some(100),
            ..Default::default()
        });
        let mut resets = Vec::new();
        let adm = admit_at(vec![a.clone()], 59_000, &mut resets).unwrap();
        assert_eq!(adm.headers.remaining_tokens, Some(100));
        // Tokens are counted when the request ends, on the admission's clock.
        adm.charge(0.0, 100);
        let e = admit_at(vec![a.clone()], 60_500, &mut resets).err().unwrap();
        assert!(matches!(e, GatewayError::RateLimited { .. }), "{e:?}");
    }
}
