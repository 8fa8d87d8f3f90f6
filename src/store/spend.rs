//! The spend ledger's rows, their batched insert, and the report queries.

use super::{Cols, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Type};
use std::collections::HashMap;

/// One request, as the ledger keeps it (and as the spill file holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub id: String,
    pub request_id: String,
    /// SHA-256 of the virtual key (hex); `None` for the master key or an open gateway.
    pub api_key: Option<String>,
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub model_group: String,
    pub model_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// `local` or `cloud`.
    pub route: String,
    pub call_type: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// USD charged to the caller.
    pub spend: f64,
    /// USD the request would have cost at the group's cloud price (equal to `spend` when served in the cloud).
    pub cloud_equivalent: f64,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub status: i64,
    pub cache_hit: bool,
    pub stream: bool,
    pub request_tags: Vec<String>,
    /// Unix milliseconds.
    pub start_time: i64,
    /// What went wrong, for a failed request (a stream cut after its first byte included);
    /// absent from spill files written before the column existed.
    #[serde(default)]
    pub error: Option<String>,
}

const MS_PER_DAY: i64 = 86_400_000;
const COLS: &str = "id, request_id, key_hash, key_alias, team_id, user_id, model_group, deployment, model, provider, \
    route, call_type, prompt_tokens, completion_tokens, cached_tokens, cost, cloud_cost, latency_ms, ttft_ms, status, \
    cache_hit, stream, tags, started_at, day, error";
const NCOLS: usize = 26;
/// Rows per INSERT statement: 26 columns x 200 stays far below both databases' bind limits.
const ROWS_PER_STATEMENT: usize = 200;

fn spend_row(r: &impl Cols) -> Result<SpendRow, sqlx::Error> {
    Ok(SpendRow {
        id: r.col("id")?,
        request_id: r.col("request_id")?,
        api_key: r.col("key_hash")?,
        key_alias: r.col("key_alias")?,
        team_id: r.col("team_id")?,
        user_id: r.col("user_id")?,
        model_group: r.col("model_group")?,
        model_id: r.col("deployment")?,
        model: r.col("model")?,
        provider: r.col("provider")?,
        route: r.col("route")?,
        call_type: r.col("call_type")?,
        prompt_tokens: r.col("prompt_tokens")?,
        completion_tokens: r.col("completion_tokens")?,
        cached_tokens: r.col("cached_tokens")?,
        spend: r.col("cost")?,
        cloud_equivalent: r.col("cloud_cost")?,
        latency_ms: r.col("latency_ms")?,
        ttft_ms: r.col("ttft_ms")?,
        status: r.col("status")?,
        cache_hit: r.col::<i64>("cache_hit")? != 0,
        stream: r.col::<i64>("stream")? != 0,
        request_tags: serde_json::from_str(&r.col::<String>("tags")?).unwrap_or_default(),
        start_time: r.col("started_at")?,
        error: r.col("error")?,
    })
}

/// Which principal's `spend` column a batch moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    Key,
    Team,
    User,
}

impl Principal {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Principal::Key => ("sy_keys", "token_hash"),
            Principal::Team => ("sy_teams", "team_id"),
            Principal::User => ("sy_users", "user_id"),
        }
    }
}

/// Filters of the report endpoints; times are unix milliseconds, `end` exclusive.
#[derive(Debug, Clone, Default)]
pub struct SpendFilter {
    pub api_key: Option<String>,
    pub request_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl SpendFilter {
    const WHERE: &'static str = "($1 IS NULL OR key_hash = $1) AND ($2 IS NULL OR request_id = $2) \
        AND ($3 IS NULL OR team_id = $3) AND ($4 IS NULL OR user_id = $4) \
        AND ($5 IS NULL OR started_at >= $5) AND ($6 IS NULL OR started_at < $6)";

    fn bind<'q, DB: Database>(&self, q: Query<'q, DB, DB::Arguments>) -> Query<'q, DB, DB::Arguments>
    where
        for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
        for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    {
        q.bind(self.api_key.as_deref())
            .bind(self.request_id.as_deref())
            .bind(self.team_id.as_deref())
            .bind(self.user_id.as_deref())
            .bind(self.start)
            .bind(self.end)
    }
}

/// One aggregate line of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendTotal {
    pub day: Option<String>,
    pub group: Option<String>,
    pub model_group: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub spend: f64,
    pub cloud_equivalent: f64,
}

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Team,
    User,
    Model,
    Route,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key_hash",
            GroupBy::Team => "team_id",
            GroupBy::User => "user_id",
            GroupBy::Model => "model_group",
            GroupBy::Route => "route",
        }
    }
}

/// `YYYY-MM-DD` of a day number (days since the epoch, UTC).
pub fn day_string(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Day number of `YYYY-MM-DD` (UTC), the inverse of [`day_string`].
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.get(..2)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

pub fn day_start_ms(day: i64) -> i64 {
    day * MS_PER_DAY
}

impl Store {
    /// Inserts `rows` and moves the principals' `spend` by `increments`, in one transaction.
    pub async fn write_batch(
        &self,
        rows: &[&SpendRow],
        increments: &HashMap<(Principal, String), f64>,
    ) -> Result<(), StoreError> {
        let numbered = self.db.is_postgres();
        on_pool!(self.pool().await?, pool => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::query(AssertSqlSafe(insert_sql(chunk.len(), numbered)));
                for r in chunk {
                    q = q
                        .bind(r.id.as_str())
                        .bind(r.request_id.as_str())
                        .bind(r.api_key.as_deref())
                        .bind(r.key_alias.as_deref())
                        .bind(r.team_id.as_deref())
                        .bind(r.user_id.as_deref())
                        .bind(r.model_group.as_str())
                        .bind(r.model_id.as_deref())
                        .bind(r.model.as_deref())
                        .bind(r.provider.as_deref())
                        .bind(r.route.as_str())
                        .bind(r.call_type.as_str())
                        .bind(r.prompt_tokens)
                        .bind(r.completion_tokens)
                        .bind(r.cached_tokens)
                        .bind(r.spend)
                        .bind(r.cloud_equivalent)
                        .bind(r.latency_ms)
                        .bind(r.ttft_ms)
                        .bind(r.status)
                        .bind(r.cache_hit as i64)
                        .bind(r.stream as i64)
                        .bind(serde_json::to_string(&r.request_tags).unwrap_or_else(|_| "[]".into()))
                        .bind(r.start_time)
                        .bind(r.start_time.div_euclid(MS_PER_DAY))
                        .bind(r.error.as_deref());
                }
                q.execute(&mut *tx).await?;
            }
            for ((p, id), delta) in increments {
                let (table, col) = p.table();
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET spend = spend + $1 WHERE {col} = $2"
                )))
                .bind(*delta)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Which of `ids` already have a row: after a failed commit whose outcome is unknown (the
    /// connection dropped before the answer), the writer drops those rows so none is charged twice.
    pub async fn written_ids(&self, ids: &[&str]) -> Result<std::collections::HashSet<String>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let mut found = std::collections::HashSet::new();
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!("SELECT id FROM sy_spend_logs WHERE id IN ({})", marks.join(", "));
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(*id);
                }
                for row in q.fetch_all(pool).await? {
                    found.insert(row.col::<String>("id")?);
                }
            }
            Ok(found)
        })
    }

    /// Starts a new budget period: zero spend, next reset at `next`, unless another gateway did already.
    pub async fn reset_budget(&self, p: Principal, id: &str, seen: Option<i64>, next: i64) -> Result<(), StoreError> {
        on_pool!(self.pool().await?, pool => {
            let (table, col) = p.table();
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET spend = 0, budget_reset_at = $1 WHERE {col} = $2 \
                 AND (budget_reset_at IS NULL OR budget_reset_at = $3 OR $3 IS NULL)"
            )))
            .bind(next)
            .bind(id)
            .bind(seen)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn spend_logs(&self, f: &SpendFilter, limit: i64) -> Result<Vec<SpendRow>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!(
                "SELECT {COLS} FROM sy_spend_logs WHERE {} ORDER BY started_at DESC, id LIMIT $7",
                SpendFilter::WHERE
            );
            let rows = f
                .bind(sqlx::query(AssertSqlSafe(sql)))
                .bind(limit)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(spend_row).collect::<Result<_, _>>()?)
        })
    }

    /// Totals grouped by `by` (or nothing), optionally per day, largest spend first.
    pub async fn spend_totals(
        &self,
        f: &SpendFilter,
        by: Option<GroupBy>,
        per_day: bool,
        per_model: bool,
    ) -> Result<Vec<SpendTotal>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let mut keys: Vec<&str> = Vec::new();
            if per_day {
                keys.push("day");
            }
            if let Some(b) = by {
                keys.push(b.column());
            }
            if per_model && by != Some(GroupBy::Model) {
                keys.push("model_group");
            }
            let select: Vec<String> = keys.iter().map(|k| format!("{k} AS g_{k}")).collect();
            let group = if keys.is_empty() {
                String::new()
            } else {
                format!("GROUP BY {}", keys.join(", "))
            };
            let sql = format!(
                "SELECT {sel}{comma} CAST(COUNT(*) AS BIGINT) AS requests, \
                 CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
                 CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
                 CAST(COALESCE(SUM(cost), 0) AS DOUBLE PRECISION) AS spend, \
                 CAST(COALESCE(SUM(cloud_cost), 0) AS DOUBLE PRECISION) AS cloud_equivalent \
                 FROM sy_spend_logs WHERE {w} {group} ORDER BY spend DESC",
                sel = select.join(", "),
                comma = if select.is_empty() { "" } else { "," },
                w = SpendFilter::WHERE,
            );
            let rows = f.bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let day = if per_day {
                    Some(day_string(r.col::<i64>("g_day")?))
                } else {
                    None
                };
                let group = match by {
                    Some(b) => r.col::<Option<String>>(format!("g_{}", b.column()).as_str())?,
                    None => None,
                };
                let model_group = if by == Some(GroupBy::Model) {
                    group.clone()
                } else if per_model {
                    r.col("g_model_group")?
                } else {
                    None
                };
                out.push(SpendTotal {
                    day,
                    group,
                    model_group,
                    requests: r.col("requests")?,
                    prompt_tokens: r.col("prompt_tokens")?,
                    completion_tokens: r.col("completion_tokens")?,
                    spend: r.col("spend")?,
                    cloud_equivalent: r.col("cloud_equivalent")?,
                });
            }
            Ok(out)
        })
    }

    /// Spend per request tag (a request with several tags counts under each).
    pub async fn spend_by_tag(&self, f: &SpendFilter) -> Result<Vec<(String, i64, f64)>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!(
                "SELECT tags, CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(cost), 0) AS DOUBLE PRECISION) AS spend \
                 FROM sy_spend_logs WHERE {} AND tags <> '[]' GROUP BY tags",
                SpendFilter::WHERE
            );
            let rows = f.bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(pool).await?;
            let mut by_tag: HashMap<String, (i64, f64)> = HashMap::new();
            for r in &rows {
                let tags: Vec<String> = serde_json::from_str(&r.col::<String>("tags")?).unwrap_or_default();
                let (n, spend): (i64, f64) = (r.col("n")?, r.col("spend")?);
                for t in tags {
                    let e = by_tag.entry(t).or_default();
                    e.0 += n;
                    e.1 += spend;
                }
            }
            let mut out: Vec<(String, i64, f64)> = by_tag.into_iter().map(|(t, (n, s))| (t, n, s)).collect();
            out.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            Ok(out)
        })
    }
}

/// One multi-row INSERT of `n` rows. SQLite gets anonymous `?` placeholders: sqlx resolves `$N`
/// on SQLite by name, which made a 200-row statement 20x slower (8.5k against 174k rows/s, measured).
fn insert_sql(n: usize, numbered: bool) -> String {
    let mut sql = format!("INSERT INTO sy_spend_logs ({COLS}) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..NCOLS {
            if c > 0 {
                sql.push(',');
            }
            if numbered {
                sql.push('$');
                sql.push_str(&(i * NCOLS + c + 1).to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(20_419), "2025-11-27");
        assert_eq!(parse_day("2025-11-27"), Some(20_419));
        assert_eq!(parse_day("2024-02-29").map(day_string).as_deref(), Some("2024-02-29"));
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("nope"), None);
    }
}
