//! Stored Responses API objects (`store: true`): the rows, and the keeper that writes them in
//! the background and purges them when they expire.
//!
//! A row keeps the whole conversation up to its turn (`input`: every earlier turn's input and
//! output items, then this turn's input) beside this turn's `output` items, so a
//! `previous_response_id` chain of any depth is served with one lookup.
//!
//! Writes never hold up the answer: [`ResponseStore::remember`] parks the row in memory and a
//! task writes it. Until the write lands, reads see the parked row, so a client that sends the
//! next turn the moment the first one is answered still finds it. A failed write is retried,
//! then logged and counted ([`ResponseStats`]); it is never dropped without a trace.

use super::{Cols, Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// `owner` of a response stored by the master key or an open (keyless, loopback) gateway.
pub const ADMIN_OWNER: &str = "master";

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    /// SHA-256 of the virtual key that created it, or [`ADMIN_OWNER`].
    pub owner: String,
    pub model: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; the row is invisible from then on and purged later.
    pub expires_at: i64,
    pub previous_response_id: Option<String>,
    /// The conversation's input items up to and including this turn's.
    pub input: Vec<Value>,
    /// This turn's output items.
    pub output: Vec<Value>,
    /// The Response object as the client received it.
    pub response: Value,
}

impl StoredResponse {
    /// What the next turn continues from: the conversation so far, then this turn's answer.
    pub fn history(&self) -> Vec<Value> {
        self.input.iter().chain(self.output.iter()).cloned().collect()
    }

    fn visible_to(&self, owner: Option<&str>, now: i64) -> bool {
        self.expires_at > now && owner.is_none_or(|o| o == self.owner)
    }
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// A row's JSON columns as text, encoded once (for the size check and the write).
struct Encoded {
    input: String,
    output: String,
    response: String,
}

impl Encoded {
    fn of(r: &StoredResponse) -> Encoded {
        Encoded {
            input: json_text(&r.input),
            output: json_text(&r.output),
            response: json_text(&r.response),
        }
    }

    fn len(&self) -> usize {
        self.input.len() + self.output.len() + self.response.len()
    }
}

fn response_row(r: &impl Cols) -> Result<StoredResponse, sqlx::Error> {
    let parse = |col: &str| -> Result<Value, sqlx::Error> {
        let text: String = r.col(col)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let list = |v: Value| match v {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    Ok(StoredResponse {
        id: r.col("id")?,
        owner: r.col("owner")?,
        model: r.col("model")?,
        created_at: r.col("created_at")?,
        expires_at: r.col("expires_at")?,
        previous_response_id: r.col("previous_response_id")?,
        input: list(parse("input")?),
        output: list(parse("output")?),
        response: parse("response")?,
    })
}

const COLS: &str = "id, owner, model, created_at, expires_at, previous_response_id, input, output, response";

/// ` AND owner = $3` when the reader is a virtual key; an admin (`None`) reads every row.
fn owner_clause(owner: Option<&str>) -> &'static str {
    if owner.is_some() {
        " AND owner = $3"
    } else {
        ""
    }
}

impl Store {
    /// Inserts `r`, or replaces the row with its id and owner (a retried write, or the same
    /// answer served again from the response cache, is harmless).
    pub async fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        self.put_encoded(r, &Encoded::of(r)).await
    }

    async fn put_encoded(&self, r: &StoredResponse, e: &Encoded) -> Result<(), StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!(
                "INSERT INTO sy_responses ({COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                 ON CONFLICT (id, owner) DO UPDATE SET model = excluded.model, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at, \
                 previous_response_id = excluded.previous_response_id, input = excluded.input, \
                 output = excluded.output, response = excluded.response"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&r.id)
                .bind(&r.owner)
                .bind(&r.model)
                .bind(r.created_at)
                .bind(r.expires_at)
                .bind(&r.previous_response_id)
                .bind(&e.input)
                .bind(&e.output)
                .bind(&e.response)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The unexpired response `id`, if `owner` (`None`: any; the newest of several) stored it.
    pub async fn get_response(
        &self,
        id: &str,
        owner: Option<&str>,
        now: i64,
    ) -> Result<Option<StoredResponse>, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!(
                "SELECT {COLS} FROM sy_responses WHERE id = $1 AND expires_at > $2{} ORDER BY created_at DESC LIMIT 1",
                owner_clause(owner)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(now);
            if let Some(o) = owner {
                q = q.bind(o);
            }
            let row = q.fetch_optional(pool).await?;
            Ok(row.as_ref().map(response_row).transpose()?)
        })
    }

    /// Deletes the unexpired response `id` of `owner` (`None`: every owner's); whether any was.
    pub async fn delete_response(&self, id: &str, owner: Option<&str>, now: i64) -> Result<bool, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let sql = format!(
                "DELETE FROM sy_responses WHERE id = $1 AND expires_at > $2{}",
                owner_clause(owner)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(now);
            if let Some(o) = owner {
                q = q.bind(o);
            }
            Ok(q.execute(pool).await?.rows_affected() > 0)
        })
    }

    /// Deletes every response expired at `now`; how many.
    pub async fn purge_responses(&self, now: i64) -> Result<u64, StoreError> {
        on_pool!(self.pool().await?, pool => {
            let r = sqlx::query("DELETE FROM sy_responses WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            Ok(r.rows_affected())
        })
    }
}

/// What the keeper did, for `/status` and tests.
#[derive(Debug, Default)]
pub struct ResponseStats {
    pub written: AtomicU64,
    /// Writes that failed after their retries (each logged).
    pub failed: AtomicU64,
    /// Rows refused for their size (`responses_store_max_mb`; each logged).
    pub too_large: AtomicU64,
    pub purged: AtomicU64,
}

/// Writes at once against the database; more rows wait their turn (in memory, as parked rows).
const WRITERS: usize = 4;
const ATTEMPTS: u32 = 4;
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// How often expired rows are deleted (reads never see them in between).
const PURGE_EVERY: Duration = Duration::from_secs(3600);

type Parked = HashMap<(String, String), Arc<StoredResponse>>;

pub struct ResponseStore {
    store: Arc<Store>,
    ttl: Duration,
    max_bytes: usize,
    /// Rows handed to a writer and not yet written (or given up on), by id and owner.
    parked: Mutex<Parked>,
    /// Fired each time a parked row leaves.
    unparked: Notify,
    writers: Arc<Semaphore>,
    pub stats: ResponseStats,
}

impl ResponseStore {
    pub fn new(store: Arc<Store>, ttl: Duration, max_bytes: usize) -> Arc<Self> {
        Arc::new(ResponseStore {
            store,
            ttl,
            max_bytes,
            parked: Mutex::new(HashMap::new()),
            unparked: Notify::new(),
            writers: Arc::new(Semaphore::new(WRITERS)),
            stats: ResponseStats::default(),
        })
    }

    /// How long a stored response stays readable.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, Parked> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks `row` and writes it in the background, where it is also encoded (a long
    /// conversation costs the answer nothing); a row over `responses_store_max_mb` is dropped
    /// there, logged and counted. Needs a tokio runtime (every request handler has one).
    pub fn remember(self: &Arc<Self>, row: StoredResponse) {
        let row = Arc::new(row);
        let key = (row.id.clone(), row.owner.clone());
        self.parked().insert(key.clone(), row.clone());
        let me = self.clone();
        tokio::spawn(async move {
            me.write(&row).await;
            me.parked().remove(&key);
            me.unparked.notify_waiters();
        });
    }

    async fn write(&self, row: &StoredResponse) {
        let Ok(_permit) = self.writers.clone().acquire_owned().await else {
            return;
        };
        let encoded = Encoded::of(row);
        if encoded.len() > self.max_bytes {
            self.stats.too_large.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(response_id = %row.id, bytes = encoded.len(), limit = self.max_bytes,
                "response not stored: the conversation is over responses_store_max_mb; previous_response_id will not find it");
            return;
        }
        let mut wait = RETRY_FIRST;
        for attempt in 1..=ATTEMPTS {
            match self.store.put_encoded(row, &encoded).await {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if e.refused() || attempt == ATTEMPTS => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(response_id = %row.id, error = %e, attempts = attempt,
                        "a stored response could not be written: previous_response_id will not find it");
                    return;
                }
                Err(e) => {
                    tracing::warn!(response_id = %row.id, error = %e, "writing a stored response failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// The unexpired response `id` if `owner` (`None`: any) stored it; a parked row included.
    pub async fn get(&self, id: &str, owner: Option<&str>) -> Result<Option<Arc<StoredResponse>>, StoreError> {
        let now = super::now_ms();
        let parked = self
            .parked()
            .values()
            .filter(|r| r.id == id && r.visible_to(owner, now))
            .max_by_key(|r| r.created_at)
            .cloned();
        if parked.is_some() {
            return Ok(parked);
        }
        Ok(self.store.get_response(id, owner, now).await?.map(Arc::new))
    }

    /// Deletes the response `id` if `owner` (`None`: any) may; a parked row is first written, so
    /// the delete cannot be overtaken by it.
    pub async fn delete(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.written(|p| !p.keys().any(|(i, _)| i == id)),
        )
        .await;
        self.store.delete_response(id, owner, super::now_ms()).await
    }

    /// Waits until `done` holds for the parked rows.
    async fn written(&self, done: impl Fn(&Parked) -> bool) {
        loop {
            let notified = self.unparked.notified();
            if done(&self.parked()) {
                return;
            }
            notified.await;
        }
    }

    /// Waits (at most `timeout`) until every parked row is written or given up on; at shutdown.
    pub async fn flush(&self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.written(HashMap::is_empty))
            .await
            .is_err()
        {
            tracing::warn!(
                rows = self.parked().len(),
                "shutdown: stored responses still unwritten; previous_response_id will not find them"
            );
        }
    }

    /// Deletes expired rows now; how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let n = self.store.purge_responses(super::now_ms()).await?;
        self.stats.purged.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// The hourly purge of expired rows (reads already skip them); aborted at shutdown.
    pub fn spawn_purge(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                match me.purge().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(rows = n, "expired stored responses purged"),
                    Err(e) => tracing::warn!(error = %e, "purging expired stored responses failed; retried in an hour"),
                }
            }
        })
    }
}
