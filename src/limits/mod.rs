//! Budgets and rate limits, enforced in memory on the hot path.
//!
//! Each principal (key, team, user) has an [`Account`]: its limits, its spend in the current
//! budget period, and per-minute request and token windows. A request is admitted against every
//! account of its caller at once ([`admit`]); the budget is checked again whenever a paid
//! deployment is about to be called ([`Admission::over_budget`]), so an escalation from the local
//! model to the cloud cannot spend past a budget. Spend lands in the accounts the moment a
//! request completes, so concurrent requests overspend by at most one in-flight request each.
//! The database hears of spend through the ledger writer, by increments.

pub mod duration;

use crate::error::GatewayError;
use crate::store::spend::Principal;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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

const MINUTE_MS: i64 = 60_000;

pub struct Account {
    pub principal: Principal,
    pub id: String,
    limits: RwLock<AccountLimits>,
    /// USD in this budget period, as f64 bits.
    spend: AtomicU64,
    /// Unix ms of the next budget reset; 0 when the budget never resets.
    reset_at: AtomicI64,
    window: AtomicI64,
    requests: AtomicU64,
    tokens: AtomicU64,
    in_flight: AtomicU64,
}

impl Account {
    pub fn new(principal: Principal, id: String, limits: AccountLimits, spend: f64, reset_at: Option<i64>) -> Self {
        Account {
            principal,
            id,
            limits: RwLock::new(limits),
            spend: AtomicU64::new(spend.to_bits()),
            reset_at: AtomicI64::new(reset_at.unwrap_or(0)),
            window: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
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
        f64::from_bits(self.spend.load(Ordering::Relaxed))
    }

    pub fn add_spend(&self, usd: f64) {
        if usd <= 0.0 {
            return;
        }
        let _ = self.spend.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some((f64::from_bits(b) + usd).to_bits())
        });
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
        self.spend.store(0f64.to_bits(), Ordering::Relaxed);
        Some(Reset {
            principal: self.principal,
            id: self.id.clone(),
            seen: Some(at),
            next,
        })
    }

    /// Moves the per-minute window forward when the minute changed.
    fn roll_window(&self, now: i64) -> i64 {
        let minute = now / MINUTE_MS;
        let cur = self.window.load(Ordering::Acquire);
        if cur != minute
            && self
                .window
                .compare_exchange(cur, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requests.store(0, Ordering::Release);
            self.tokens.store(0, Ordering::Release);
        }
        minute
    }

    pub fn add_tokens(&self, now: i64, tokens: u64) {
        self.roll_window(now);
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    fn over_budget(&self) -> Option<GatewayError> {
        let max = self.with_limits(|l| l.max_budget)?;
        let spend = self.spend();
        (spend >= max).then(|| GatewayError::BudgetExceeded {
            message: format!(
                "Budget has been exceeded! {} budget: current cost: {spend}, max budget: {max}",
                self.label()
            ),
        })
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
    /// Seconds until the minute window resets.
    pub reset_secs: u64,
}

/// A request admitted against its caller's accounts; dropping it releases the parallel slots.
pub struct Admission {
    accounts: Vec<Arc<Account>>,
    pub headers: RateHeaders,
}

impl Admission {
    /// The budget error when any account is at or past its budget: paid deployments are then off limits.
    pub fn over_budget(&self) -> Option<GatewayError> {
        self.accounts.iter().find_map(|a| a.over_budget())
    }

    /// Charges a completed request to every account.
    pub fn charge(&self, now: i64, usd: f64, tokens: u64) {
        for a in &self.accounts {
            a.add_spend(usd);
            a.add_tokens(now, tokens);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for a in &self.accounts {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Admits one request against `accounts` (rpm, tpm, parallel), rolling budget periods on the way.
/// Budget is not refused here: a caller over budget may still use free (local) deployments; the
/// pipeline asks [`Admission::over_budget`] before each paid attempt.
pub fn admit(accounts: Vec<Arc<Account>>, now: i64, resets: &mut Vec<Reset>) -> Result<Admission, GatewayError> {
    let mut headers = RateHeaders {
        reset_secs: ((MINUTE_MS - now.rem_euclid(MINUTE_MS)) as u64).div_ceil(1000),
        ..Default::default()
    };
    let mut taken: Vec<Arc<Account>> = Vec::with_capacity(accounts.len());
    let undo = |taken: &[Arc<Account>]| {
        for a in taken {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
            a.requests.fetch_sub(1, Ordering::Relaxed);
        }
    };
    for a in &accounts {
        let (budget_ms, rpm, tpm, max_parallel) = a.with_limits(|l| (l.budget_ms, l.rpm, l.tpm, l.max_parallel));
        if let Some(r) = a.roll_budget(now, budget_ms) {
            resets.push(r);
        }
        a.roll_window(now);
        let requests = a.requests.fetch_add(1, Ordering::AcqRel) + 1;
        let in_flight = a.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let tokens = a.tokens.load(Ordering::Acquire);
        let refuse = |what: &str, detail: String| {
            a.requests.fetch_sub(1, Ordering::Relaxed);
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
            undo(&taken);
            GatewayError::RateLimited {
                message: format!("Rate limit exceeded for {}: {what} ({detail}).", a.label()),
                retry_after_secs: headers.reset_secs.max(1),
            }
        };
        if let Some(rpm) = rpm {
            if requests > rpm {
                return Err(refuse("requests per minute", format!("limit {rpm}")));
            }
            tighten(
                &mut headers.limit_requests,
                &mut headers.remaining_requests,
                rpm,
                rpm - requests,
            );
        }
        if let Some(tpm) = tpm {
            if tokens >= tpm {
                return Err(refuse("tokens per minute", format!("limit {tpm}, used {tokens}")));
            }
            tighten(
                &mut headers.limit_tokens,
                &mut headers.remaining_tokens,
                tpm,
                tpm - tokens,
            );
        }
        if let Some(max) = max_parallel {
            if in_flight > max {
                return Err(refuse("max parallel requests", format!("limit {max}")));
            }
        }
        taken.push(a.clone());
    }
    Ok(Admission { accounts, headers })
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

    fn acct(limits: AccountLimits) -> Arc<Account> {
        Arc::new(Account::new(Principal::Key, "k".into(), limits, 0.0, None))
    }

    #[test]
    fn rpm_window_and_parallel() {
        let a = acct(AccountLimits {
            rpm: Some(2),
            max_parallel: Some(1),
            ..Default::default()
        });
        let mut resets = Vec::new();
        let first = admit(vec![a.clone()], 1_000, &mut resets).unwrap();
        assert_eq!(first.headers.remaining_requests, Some(1));
        // Parallel limit: the second concurrent request is refused and leaves no trace.
        assert!(matches!(
            admit(vec![a.clone()], 1_000, &mut resets),
            Err(GatewayError::RateLimited { .. })
        ));
        drop(first);
        assert_eq!(a.in_flight(), 0);
        let second = admit(vec![a.clone()], 2_000, &mut resets).unwrap();
        drop(second);
        // rpm 2 used up in this minute, free again in the next.
        let e = admit(vec![a.clone()], 3_000, &mut resets).err().unwrap();
        assert!(
            matches!(
                e,
                GatewayError::RateLimited {
                    retry_after_secs: 57,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(admit(vec![a.clone()], 61_000, &mut resets).is_ok());
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
        let adm = admit(vec![a.clone()], 9_999, &mut resets).unwrap();
        assert!(adm.over_budget().is_some());
        drop(adm);
        let adm = admit(vec![a.clone()], 12_500, &mut resets).unwrap();
        assert!(adm.over_budget().is_none());
        assert_eq!(resets.len(), 1);
        assert_eq!(resets[0].next, 13_000);
        assert_eq!(resets[0].seen, Some(10_000));
        adm.charge(12_500, 0.75, 10);
        assert!(adm.over_budget().is_none());
        adm.charge(12_600, 0.25, 10);
        assert!(adm.over_budget().is_some());
    }
}
