//! Rows of the principals: virtual keys, teams and users.
//!
//! Updates write every column but `spend`, which only the ledger writer moves (by increments), so
//! an admin edit never races a request's cost away.

use super::{Cols, Store, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;

/// The limits every principal may carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub max_parallel_requests: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRow {
    /// SHA-256 of the key, hex: the only form a key is stored in.
    pub token: String,
    /// `sk-...abcd`: enough to recognise a key, never enough to use it.
    pub key_name: String,
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub models: Vec<String>,
    pub tags: Vec<String>,
    pub metadata: Value,
    #[serde(flatten)]
    pub limits: Limits,
    pub budget_reset_at: Option<i64>,
    pub spend: f64,
    pub allow_cloud: bool,
    pub blocked: bool,
    pub expires: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamRow {
    pub team_id: String,
    pub team_alias: Option<String>,
    pub models: Vec<String>,
    pub metadata: Value,
    #[serde(flatten)]
    pub limits: Limits,
    pub budget_reset_at: Option<i64>,
    pub spend: f64,
    pub blocked: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRow {
    pub user_id: String,
    pub user_email: Option<String>,
    pub models: Vec<String>,
    pub metadata: Value,
    #[serde(flatten)]
    pub limits: Limits,
    pub budget_reset_at: Option<i64>,
    pub spend: f64,
    pub created_at: i64,
    pub updated_at: i64,
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn json_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::Object(Default::default()))
}

fn limits(r: &impl Cols) -> Result<Limits, sqlx::Error> {
    Ok(Limits {
        max_budget: r.col("max_budget")?,
        budget_duration: r.col("budget_duration")?,
        rpm_limit: r.col("rpm_limit")?,
        tpm_limit: r.col("tpm_limit")?,
        max_parallel_requests: r.col("max_parallel_requests")?,
    })
}

fn key_row(r: &impl Cols) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        token: r.col("token_hash")?,
        key_name: r.col("key_name")?,
        key_alias: r.col("key_alias")?,
        team_id: r.col("team_id")?,
        user_id: r.col("user_id")?,
        models: json_list(&r.col::<String>("models")?),
        tags: json_list(&r.col::<String>("tags")?),
        metadata: json_value(&r.col::<String>("metadata")?),
        limits: limits(r)?,
        budget_reset_at: r.col("budget_reset_at")?,
        spend: r.col("spend")?,
        allow_cloud: r.col::<i64>("allow_cloud")? != 0,
        blocked: r.col::<i64>("blocked")? != 0,
        expires: r.col("expires_at")?,
        created_at: r.col("created_at")?,
        updated_at: r.col("updated_at")?,
    })
}

fn team_row(r: &impl Cols) -> Result<TeamRow, sqlx::Error> {
    Ok(TeamRow {
        team_id: r.col("team_id")?,
        team_alias: r.col("team_alias")?,
        models: json_list(&r.col::<String>("models")?),
        metadata: json_value(&r.col::<String>("metadata")?),
        limits: limits(r)?,
        budget_reset_at: r.col("budget_reset_at")?,
        spend: r.col("spend")?,
        blocked: r.col::<i64>("blocked")? != 0,
        created_at: r.col("created_at")?,
        updated_at: r.col("updated_at")?,
    })
}

fn user_row(r: &impl Cols) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        user_id: r.col("user_id")?,
        user_email: r.col("user_email")?,
        models: json_list(&r.col::<String>("models")?),
        metadata: json_value(&r.col::<String>("metadata")?),
        limits: limits(r)?,
        budget_reset_at: r.col("budget_reset_at")?,
        spend: r.col("spend")?,
        created_at: r.col("created_at")?,
        updated_at: r.col("updated_at")?,
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| d.is_unique_violation() || d.message().contains("UNIQUE"))
        .unwrap_or(false)
}

const KEY_COLS: &str = "token_hash, key_name, key_alias, team_id, user_id, models, tags, metadata, max_budget, \
    budget_duration, budget_reset_at, spend, rpm_limit, tpm_limit, max_parallel_requests, allow_cloud, blocked, \
    expires_at, created_at, updated_at";

impl Store {
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!(
                "INSERT INTO sy_keys ({KEY_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(&k.token)
                .bind(&k.key_name)
                .bind(&k.key_alias)
                .bind(&k.team_id)
                .bind(&k.user_id)
                .bind(to_json(&k.models))
                .bind(to_json(&k.tags))
                .bind(to_json(&k.metadata))
                .bind(k.limits.max_budget)
                .bind(&k.limits.budget_duration)
                .bind(k.budget_reset_at)
                .bind(k.spend)
                .bind(k.limits.rpm_limit)
                .bind(k.limits.tpm_limit)
                .bind(k.limits.max_parallel_requests)
                .bind(k.allow_cloud as i64)
                .bind(k.blocked as i64)
                .bind(k.expires)
                .bind(k.created_at)
                .bind(k.updated_at)
                .execute(pool)
                .await
                .map_err(|e| {
                    if unique_violation(&e) {
                        StoreError::Conflict("a key with this value already exists".into())
                    } else {
                        e.into()
                    }
                })?;
            Ok(())
        })
    }

    pub async fn get_key(&self, token: &str) -> Result<Option<KeyRow>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!("SELECT {KEY_COLS} FROM sy_keys WHERE token_hash = $1");
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(token)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(key_row).transpose()?)
        })
    }

    pub async fn key_by_alias(&self, alias: &str) -> Result<Option<KeyRow>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!("SELECT {KEY_COLS} FROM sy_keys WHERE key_alias = $1 ORDER BY created_at LIMIT 1");
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(alias)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(key_row).transpose()?)
        })
    }

    /// Writes every column but `spend`.
    pub async fn update_key(&self, k: &KeyRow) -> Result<bool, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let r = sqlx::query(
                "UPDATE sy_keys SET key_alias=$2, team_id=$3, user_id=$4, models=$5, tags=$6, metadata=$7, max_budget=$8, \
                 budget_duration=$9, budget_reset_at=$10, rpm_limit=$11, tpm_limit=$12, max_parallel_requests=$13, \
                 allow_cloud=$14, blocked=$15, expires_at=$16, updated_at=$17 WHERE token_hash=$1",
            )
            .bind(&k.token)
            .bind(&k.key_alias)
            .bind(&k.team_id)
            .bind(&k.user_id)
            .bind(to_json(&k.models))
            .bind(to_json(&k.tags))
            .bind(to_json(&k.metadata))
            .bind(k.limits.max_budget)
            .bind(&k.limits.budget_duration)
            .bind(k.budget_reset_at)
            .bind(k.limits.rpm_limit)
            .bind(k.limits.tpm_limit)
            .bind(k.limits.max_parallel_requests)
            .bind(k.allow_cloud as i64)
            .bind(k.blocked as i64)
            .bind(k.expires)
            .bind(k.updated_at)
            .execute(pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    /// Moves a key to a new hash (regeneration): same row, new secret.
    pub async fn rehash_key(&self, old: &str, new: &str, key_name: &str, now: i64) -> Result<bool, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let r = sqlx::query("UPDATE sy_keys SET token_hash=$2, key_name=$3, updated_at=$4 WHERE token_hash=$1")
                .bind(old)
                .bind(new)
                .bind(key_name)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    pub async fn delete_key(&self, token: &str) -> Result<bool, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let r = sqlx::query("DELETE FROM sy_keys WHERE token_hash = $1")
                .bind(token)
                .execute(pool)
                .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    /// Keys, newest first, optionally of one team, user or alias; with the total count.
    pub async fn list_keys(
        &self,
        team_id: Option<&str>,
        user_id: Option<&str>,
        key_alias: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<KeyRow>, i64), StoreError> {
        on_pool!(self.pool().await?, pool => {
            let filter = "($1 IS NULL OR team_id = $1) AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR key_alias = $3)";
            let total: i64 = sqlx::query(AssertSqlSafe(format!(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM sy_keys WHERE {filter}"
            )))
            .bind(team_id)
            .bind(user_id)
            .bind(key_alias)
            .fetch_one(pool)
            .await?
            .col("n")?;
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {KEY_COLS} FROM sy_keys WHERE {filter} ORDER BY created_at DESC, token_hash LIMIT $4 OFFSET $5"
            )))
            .bind(team_id)
            .bind(user_id)
            .bind(key_alias)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let keys = rows.iter().map(key_row).collect::<Result<_, _>>()?;
            Ok((keys, total))
        })
    }

    pub async fn insert_team(&self, t: &TeamRow) -> Result<(), StoreError> {
        on_pool!(self.pool().await?, pool => {
            sqlx::query(
                "INSERT INTO sy_teams (team_id, team_alias, models, metadata, max_budget, budget_duration, budget_reset_at, \
                 spend, rpm_limit, tpm_limit, max_parallel_requests, blocked, created_at, updated_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
            )
            .bind(&t.team_id)
            .bind(&t.team_alias)
            .bind(to_json(&t.models))
            .bind(to_json(&t.metadata))
            .bind(t.limits.max_budget)
            .bind(&t.limits.budget_duration)
            .bind(t.budget_reset_at)
            .bind(t.spend)
            .bind(t.limits.rpm_limit)
            .bind(t.limits.tpm_limit)
            .bind(t.limits.max_parallel_requests)
            .bind(t.blocked as i64)
            .bind(t.created_at)
            .bind(t.updated_at)
            .execute(pool)
            .await
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Conflict(format!("team_id {} already exists", t.team_id))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    pub async fn get_team(&self, id: &str) -> Result<Option<TeamRow>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let row = sqlx::query("SELECT * FROM sy_teams WHERE team_id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(team_row).transpose()?)
        })
    }

    pub async fn update_team(&self, t: &TeamRow) -> Result<bool, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let r = sqlx::query(
                "UPDATE sy_teams SET team_alias=$2, models=$3, metadata=$4, max_budget=$5, budget_duration=$6, \
                 budget_reset_at=$7, rpm_limit=$8, tpm_limit=$9, max_parallel_requests=$10, blocked=$11, updated_at=$12 \
                 WHERE team_id=$1",
            )
            .bind(&t.team_id)
            .bind(&t.team_alias)
            .bind(to_json(&t.models))
            .bind(to_json(&t.metadata))
            .bind(t.limits.max_budget)
            .bind(&t.limits.budget_duration)
            .bind(t.budget_reset_at)
            .bind(t.limits.rpm_limit)
            .bind(t.limits.tpm_limit)
            .bind(t.limits.max_parallel_requests)
            .bind(t.blocked as i64)
            .bind(t.updated_at)
            .execute(pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    pub async fn insert_user(&self, u: &UserRow) -> Result<(), StoreError> {
        on_pool!(self.pool().await?, pool => {
            sqlx::query(
                "INSERT INTO sy_users (user_id, user_email, models, metadata, max_budget, budget_duration, budget_reset_at, \
                 spend, rpm_limit, tpm_limit, max_parallel_requests, created_at, updated_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
            )
            .bind(&u.user_id)
            .bind(&u.user_email)
            .bind(to_json(&u.models))
            .bind(to_json(&u.metadata))
            .bind(u.limits.max_budget)
            .bind(&u.limits.budget_duration)
            .bind(u.budget_reset_at)
            .bind(u.spend)
            .bind(u.limits.rpm_limit)
            .bind(u.limits.tpm_limit)
            .bind(u.limits.max_parallel_requests)
            .bind(u.created_at)
            .bind(u.updated_at)
            .execute(pool)
            .await
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Conflict(format!("user_id {} already exists", u.user_id))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let row = sqlx::query("SELECT * FROM sy_users WHERE user_id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(user_row).transpose()?)
        })
    }

    pub async fn update_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let r = sqlx::query(
                "UPDATE sy_users SET user_email=$2, models=$3, metadata=$4, max_budget=$5, budget_duration=$6, \
                 budget_reset_at=$7, rpm_limit=$8, tpm_limit=$9, max_parallel_requests=$10, updated_at=$11 WHERE user_id=$1",
            )
            .bind(&u.user_id)
            .bind(&u.user_email)
            .bind(to_json(&u.models))
            .bind(to_json(&u.metadata))
            .bind(u.limits.max_budget)
            .bind(&u.limits.budget_duration)
            .bind(u.budget_reset_at)
            .bind(u.limits.rpm_limit)
            .bind(u.limits.tpm_limit)
            .bind(u.limits.max_parallel_requests)
            .bind(u.updated_at)
            .execute(pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }
}
