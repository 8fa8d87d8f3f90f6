//! The database behind keys, teams, users and the spend ledger: Postgres when a URL is
//! configured, else an embedded SQLite file, each through its own native sqlx driver.
//!
//! Every query is still written once: [`on_pool!`] runs one block against whichever pool this is,
//! compiled once per driver, and row mappers read columns through [`Cols`], which both drivers'
//! rows implement. So each value binds with its own Rust type's database type on every call. The
//! `Any` driver used before could not: sqlx 0.9 binds a null `f64` there as a 4-byte float on
//! Postgres, a statement prepared with that null keeps expecting `float4` in the connection's
//! statement cache, and the next 8-byte value in that place is refused ("incorrect binary data
//! format in bind parameter"), which lost ledger rows and failed admin calls (tests/ledger.rs).
//!
//! Portable SQL only: `$N` placeholders (SQLite reads them too), `BIGINT`/`DOUBLE PRECISION`/
//! `TEXT` columns, times as unix milliseconds, lists and maps as JSON text, and aggregates cast
//! back to `BIGINT`/`DOUBLE PRECISION` (Postgres sums integers into `NUMERIC`).
//!
//! The pool connects lazily and the schema is migrated on first use, so building the gateway
//! stays synchronous; `serve` calls [`Store::ready`] at start-up to fail fast.

/// Runs `$body` with `$p` bound to this store's pool, whichever database it is: the block is
/// written once and compiled for each driver, so every bind has its declared type.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::store::Pool::Postgres($p) => $body,
            $crate::store::Pool::Sqlite($p) => $body,
        }
    };
}

mod migrate;
pub mod principals;
pub mod responses;
pub mod spend;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Decode, Postgres, Sqlite, Type};
use std::time::Duration;
use tokio::sync::OnceCell;

/// A pool of one of the two databases; queries reach it through [`on_pool!`].
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A column read by name from a row of either driver.
pub(crate) trait Cols {
    fn col<T>(&self, name: &str) -> Result<T, sqlx::Error>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>;
}

impl Cols for PgRow {
    fn col<T>(&self, name: &str) -> Result<T, sqlx::Error>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>,
    {
        sqlx::Row::try_get(self, name)
    }
}

impl Cols for SqliteRow {
    fn col<T>(&self, name: &str) -> Result<T, sqlx::Error>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>,
    {
        sqlx::Row::try_get(self, name)
    }
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A `postgres://` (or `postgresql://`) URL.
    Postgres(String),
    /// A SQLite file, created when missing.
    Sqlite(String),
}

impl Database {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }

    /// A description safe to print: the password in a URL is masked.
    pub fn describe(&self) -> String {
        match self {
            Database::Postgres(u) => match url::Url::parse(u) {
                Ok(mut url) if url.password().is_some() => {
                    let _ = url.set_password(Some("****"));
                    format!("postgres {url}")
                }
                _ => format!("postgres {u}"),
            },
            Database::Sqlite(p) => format!("sqlite {p}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether the database answered and refused the statement (its data, a constraint, a
    /// trigger, the schema), as opposed to being out of reach, busy or short of resources:
    /// sending the same rows again cannot help.
    pub fn refused(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(d)) = self else {
            return false;
        };
        let code = d.code().unwrap_or_default();
        if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            // A primary result code (the low byte of an extended one): BUSY, LOCKED, IOERR,
            // FULL, CANTOPEN and PROTOCOL pass; the rest is about the statement.
            let primary = code.parse::<i64>().unwrap_or(0) & 0xff;
            return !matches!(primary, 5 | 6 | 10 | 13 | 14 | 15);
        }
        // A SQLSTATE class: connection (08), rollback (40: serialization, deadlock), resources
        // (53), operator intervention (57: shutdown, starting up) and system (58) pass.
        !matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58"))
    }
}

pub struct Store {
    pool: Pool,
    db: Database,
    ready: OnceCell<()>,
}

/// How long one statement may wait for a connection before the caller hears the database is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// A pool that connects on first use; nothing is checked here.
    pub fn open(db: Database) -> Result<Store, StoreError> {
        let pool = match &db {
            Database::Postgres(url) => Pool::Postgres(
                PgPoolOptions::new()
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .max_connections(8)
                    .min_connections(0)
                    .connect_lazy(url)?,
            ),
            Database::Sqlite(p) => {
                if let Some(dir) = std::path::Path::new(p).parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(dir);
                }
                // One writer at a time is SQLite's model; WAL lets readers go on beside it.
                let options = SqliteConnectOptions::new()
                    .filename(p)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5))
                    .synchronous(SqliteSynchronous::Normal);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .max_connections(4)
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Store {
            pool,
            db,
            ready: OnceCell::new(),
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Connects and migrates once; later calls return at once. A failed attempt is retried by
    /// the next call (the database may come up after the gateway).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.pool().await.map(|_| ())
    }

    /// The pool, once the schema is migrated.
    async fn pool(&self) -> Result<&Pool, StoreError> {
        self.ready
            .get_or_try_init(|| async { migrate::run(&self.pool).await })
            .await?;
        Ok(&self.pool)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
