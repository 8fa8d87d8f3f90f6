//! Virtual keys, teams and users as the hot path sees them: looked up by the key's hash, cached
//! in moka, invalidated (in this gateway) on update, delete and regeneration.
//!
//! Accounts (the in-memory budget and rate counters) outlive cache refreshes: an admin update
//! changes an account's limits in place, so a key's spend and windows carry on across edits.

use crate::error::GatewayError;
use crate::limits::{Account, AccountLimits};
use crate::store::principals::{KeyRow, TeamRow, UserRow};
use crate::store::spend::Principal;
use crate::store::{Store, StoreError};
use moka::sync::Cache;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A virtual key as requests see it.
pub struct KeyEntry {
    pub token: String,
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Value,
    pub expires: Option<i64>,
    pub allow_cloud: bool,
    pub account: Arc<Account>,
    pub team: Option<Arc<Account>>,
    pub user: Option<Arc<Account>>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("key_alias", &self.key_alias)
            .field("team_id", &self.team_id)
            .finish_non_exhaustive()
    }
}

impl KeyEntry {
    /// The accounts a request by this key is charged to: key, then team, then user.
    pub fn accounts(&self) -> impl Iterator<Item = &Arc<Account>> {
        std::iter::once(&self.account).chain(&self.team).chain(&self.user)
    }

    pub fn allows_model(&self, requested: &str, group: &str) -> bool {
        self.accounts().all(|a| a.with_limits(|l| l.allows(requested, group)))
    }
}

/// Unknown keys are remembered briefly so a client retrying a bad key does not reach the database
/// each time.
const UNKNOWN_TTL: Duration = Duration::from_secs(10);

pub struct Directory {
    pub store: Arc<Store>,
    keys: Cache<String, Arc<KeyEntry>>,
    unknown: Cache<String, ()>,
    teams: Cache<String, Arc<Account>>,
    users: Cache<String, Arc<Account>>,
}

fn key_limits(row: &KeyRow) -> AccountLimits {
    AccountLimits::from_row(&row.limits, &row.models, row.blocked)
}

fn team_limits(row: &TeamRow) -> AccountLimits {
    AccountLimits::from_row(&row.limits, &row.models, row.blocked)
}

fn user_limits(row: &UserRow) -> AccountLimits {
    AccountLimits::from_row(&row.limits, &row.models, false)
}

fn unavailable(e: StoreError) -> GatewayError {
    tracing::warn!(error = %e, "key lookup failed");
    GatewayError::StoreUnavailable(e.to_string())
}

impl Directory {
    pub fn new(store: Arc<Store>) -> Self {
        Directory {
            store,
            keys: Cache::builder().max_capacity(100_000).build(),
            unknown: Cache::builder().max_capacity(10_000).time_to_live(UNKNOWN_TTL).build(),
            teams: Cache::builder().build(),
            users: Cache::builder().build(),
        }
    }

    /// The key whose SHA-256 is `token`; `None` when no such key exists.
    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<KeyEntry>>, GatewayError> {
        if let Some(k) = self.keys.get(token) {
            return Ok(Some(k));
        }
        if self.unknown.contains_key(token) {
            return Ok(None);
        }
        let Some(row) = self.store.get_key(token).await.map_err(unavailable)? else {
            self.unknown.insert(token.to_string(), ());
            return Ok(None);
        };
        let entry = Arc::new(self.entry(&row, None).await?);
        // A concurrent load may have won; keep the first so counters are never split.
        Ok(Some(self.keys.get_with(token.to_string(), || entry)))
    }

    async fn entry(&self, row: &KeyRow, account: Option<Arc<Account>>) -> Result<KeyEntry, GatewayError> {
        let account = match account {
            Some(a) => {
                a.set_limits(key_limits(row), row.budget_reset_at);
                a
            }
            None => Arc::new(Account::new(
                Principal::Key,
                row.token.clone(),
                key_limits(row),
                row.spend,
                row.budget_reset_at,
            )),
        };
        let team = match &row.team_id {
            Some(id) => self.team(id).await?,
            None => None,
        };
        let user = match &row.user_id {
            Some(id) => self.user(id).await?,
            None => None,
        };
        Ok(KeyEntry {
            token: row.token.clone(),
            key_alias: row.key_alias.clone(),
            team_id: row.team_id.clone(),
            user_id: row.user_id.clone(),
            tags: row.tags.clone(),
            metadata: row.metadata.clone(),
            expires: row.expires,
            allow_cloud: row.allow_cloud,
            account,
            team,
            user,
        })
    }

    pub async fn team(&self, id: &str) -> Result<Option<Arc<Account>>, GatewayError> {
        let load = async {
            let row = self.store.get_team(id).await.map_err(unavailable)?;
            Ok(row.map(|r| (team_limits(&r), r.spend, r.budget_reset_at)))
        };
        shared_account(&self.teams, Principal::Team, id, load).await
    }

    pub async fn user(&self, id: &str) -> Result<Option<Arc<Account>>, GatewayError> {
        let load = async {
            let row = self.store.get_user(id).await.map_err(unavailable)?;
            Ok(row.map(|r| (user_limits(&r), r.spend, r.budget_reset_at)))
        };
        shared_account(&self.users, Principal::User, id, load).await
    }

    /// The live account of a cached key, if any (its counters carry over an update).
    pub fn cached_key(&self, token: &str) -> Option<Arc<KeyEntry>> {
        self.keys.get(token)
    }

    /// After a key row changed: rebuild its entry, keeping its counters.
    pub async fn key_changed(&self, row: &KeyRow) -> Result<(), GatewayError> {
        self.unknown.invalidate(&row.token);
        if let Some(old) = self.keys.get(&row.token) {
            let entry = self.entry(row, Some(old.account.clone())).await?;
            self.keys.insert(row.token.clone(), Arc::new(entry));
        }
        Ok(())
    }

    /// The keys and teams cached now (read at a `/metrics` scrape).
    pub fn cached_keys(&self) -> Vec<Arc<KeyEntry>> {
        self.keys.iter().map(|(_, k)| k).collect()
    }

    pub fn cached_teams(&self) -> Vec<Arc<Account>> {
        self.teams.iter().map(|(_, a)| a).collect()
    }

    pub fn key_gone(&self, token: &str) {
        self.keys.invalidate(token);
    }

    pub fn key_created(&self, token: &str) {
        self.unknown.invalidate(token);
    }

    pub fn team_changed(&self, row: &TeamRow) {
        if let Some(a) = self.teams.get(&row.team_id) {
            a.set_limits(team_limits(row), row.budget_reset_at);
        }
    }

    pub fn user_changed(&self, row: &UserRow) {
        if let Some(a) = self.users.get(&row.user_id) {
            a.set_limits(user_limits(row), row.budget_reset_at);
        }
    }
}

/// A team's or user's account, loaded once and shared by every key that names it.
async fn shared_account(
    cache: &Cache<String, Arc<Account>>,
    principal: Principal,
    id: &str,
    load: impl std::future::Future<Output = Result<Option<(AccountLimits, f64, Option<i64>)>, GatewayError>>,
) -> Result<Option<Arc<Account>>, GatewayError> {
    if let Some(a) = cache.get(id) {
        return Ok(Some(a));
    }
    let Some((limits, spend, reset_at)) = load.await? else {
        return Ok(None);
    };
    // A concurrent load may have won; keep the first so counters are never split.
    Ok(Some(cache.get_with(id.to_string(), || {
        Arc::new(Account::new(principal, id.to_string(), limits, spend, reset_at))
    })))
}
