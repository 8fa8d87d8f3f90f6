//! Embedded schema migrations, run at start-up.
//!
//! Two gateways may start against one Postgres at once: the migration runs under a Postgres
//! advisory lock, and every statement is idempotent (`IF NOT EXISTS`), so the second waits and
//! then finds nothing to do. SQLite serialises writers itself (`BEGIN IMMEDIATE`).

use super::{Cols, Pool, StoreError};
use sqlx::Executor;

/// Each entry is one schema version; append, never edit a shipped one.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS sy_keys (
        token_hash TEXT PRIMARY KEY,
        key_name TEXT NOT NULL,
        key_alias TEXT,
        team_id TEXT,
        user_id TEXT,
        models TEXT NOT NULL,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        max_budget DOUBLE PRECISION,
        budget_duration TEXT,
        budget_reset_at BIGINT,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        rpm_limit BIGINT,
        tpm_limit BIGINT,
        max_parallel_requests BIGINT,
        allow_cloud BIGINT NOT NULL DEFAULT 1,
        blocked BIGINT NOT NULL DEFAULT 0,
        expires_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
        "CREATE INDEX IF NOT EXISTS sy_keys_team ON sy_keys (team_id)",
        "CREATE INDEX IF NOT EXISTS sy_keys_user ON sy_keys (user_id)",
        "CREATE TABLE IF NOT EXISTS sy_teams (
        team_id TEXT PRIMARY KEY,
        team_alias TEXT,
        models TEXT NOT NULL,
        metadata TEXT NOT NULL,
        max_budget DOUBLE PRECISION,
        budget_duration TEXT,
        budget_reset_at BIGINT,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        rpm_limit BIGINT,
        tpm_limit BIGINT,
        max_parallel_requests BIGINT,
        blocked BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
        "CREATE TABLE IF NOT EXISTS sy_users (
        user_id TEXT PRIMARY KEY,
        user_email TEXT,
        models TEXT NOT NULL,
        metadata TEXT NOT NULL,
        max_budget DOUBLE PRECISION,
        budget_duration TEXT,
        budget_reset_at BIGINT,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        rpm_limit BIGINT,
        tpm_limit BIGINT,
        max_parallel_requests BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
        "CREATE TABLE IF NOT EXISTS sy_spend_logs (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        key_hash TEXT,
        key_alias TEXT,
        team_id TEXT,
        user_id TEXT,
        model_group TEXT NOT NULL,
        deployment TEXT,
        model TEXT,
        provider TEXT,
        route TEXT NOT NULL,
        call_type TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cost DOUBLE PRECISION NOT NULL,
        cloud_cost DOUBLE PRECISION NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        ttft_ms DOUBLE PRECISION,
        status BIGINT NOT NULL,
        cache_hit BIGINT NOT NULL,
        stream BIGINT NOT NULL,
        tags TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        day BIGINT NOT NULL
    )",
        "CREATE INDEX IF NOT EXISTS sy_spend_logs_time ON sy_spend_logs (started_at)",
        "CREATE INDEX IF NOT EXISTS sy_spend_logs_key ON sy_spend_logs (key_hash)",
        "CREATE INDEX IF NOT EXISTS sy_spend_logs_request ON sy_spend_logs (request_id)",
    ],
    // 2: a failed request's error text (the status alone cannot tell a cut stream from a refusal).
    &["ALTER TABLE sy_spend_logs ADD COLUMN error TEXT"],
    // 3: stored Responses API objects (`store: true`), for `previous_response_id` and
    // `GET`/`DELETE /v1/responses/{id}`. `input` holds the whole conversation up to the turn, so
    // a chain of any depth is one lookup. Keyed by owner too: a response cache hit hands a second
    // key the first key's response id, and each must keep its own row.
    &[
        "CREATE TABLE IF NOT EXISTS sy_responses (
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        model TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        previous_response_id TEXT,
        input TEXT NOT NULL,
        output TEXT NOT NULL,
        response TEXT NOT NULL,
        PRIMARY KEY (id, owner)
    )",
        "CREATE INDEX IF NOT EXISTS sy_responses_expires ON sy_responses (expires_at)",
    ],
];

/// An arbitrary constant naming switchyard's migration lock among a database's advisory locks.
const PG_LOCK: i64 = 0x5357_5943_4844; // "SWYCHD"

pub async fn run(pool: &Pool) -> Result<(), StoreError> {
    let postgres = matches!(pool, Pool::Postgres(_));
    on_pool!(pool, p => {
        let mut conn = p.acquire().await?;
        if postgres {
            sqlx::query("SELECT pg_advisory_lock($1)").bind(PG_LOCK).execute(&mut *conn).await?;
        } else {
            conn.execute("BEGIN IMMEDIATE").await?;
        }
        // Applies the versions `sy_schema` does not list yet.
        let result = async {
            conn.execute("CREATE TABLE IF NOT EXISTS sy_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                .await?;
            let current: i64 = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS v FROM sy_schema")
                .fetch_one(&mut *conn)
                .await?
                .col("v")?;
            for (i, steps) in MIGRATIONS.iter().enumerate() {
                let version = i as i64 + 1;
                if version <= current {
                    continue;
                }
                for sql in *steps {
                    conn.execute(*sql)
                        .await
                        .map_err(|e| StoreError::Migrate(format!("version {version}: {e}")))?;
                }
                sqlx::query("INSERT INTO sy_schema (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(super::now_ms())
                    .execute(&mut *conn)
                    .await?;
                tracing::info!(version, "database schema migrated");
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(PG_LOCK).execute(&mut *conn).await;
        } else {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            conn.execute(end).await?;
        }
        result
    })
}
