//! The database behind keys, teams, users and the spend ledger: Postgres when a URL is
//! configured, else an embedded SQLite file, both through sqlx's `Any` driver so every query is
//! written once.
//!
//! Portable SQL only: `$N` placeholders (SQLite reads them too), `BIGINT`/`DOUBLE PRECISION`/
//! `TEXT` columns, times as unix milliseconds, lists and maps as JSON text, and aggregates cast
//! back to `BIGINT`/`DOUBLE PRECISION` (Postgres sums integers into `NUMERIC`, which `Any` cannot
//! decode).
//!
//! The pool connects lazily and the schema is migrated on first use, so building the gateway
//! stays synchronous; `serve` calls [`Store::ready`] at start-up to fail fast.

mod migrate;
pub mod principals;
pub mod spend;

use sqlx::any::AnyPoolOptions;

type AnyPool = sqlx::Pool<sqlx::Any>;
use std::time::Duration;
use tokio::sync::OnceCell;

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

    fn url(&self) -> String {
        match self {
            Database::Postgres(u) => u.clone(),
            Database::Sqlite(p) => format!("sqlite://{p}?mode=rwc"),
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

pub struct Store {
    pool: AnyPool,
    db: Database,
    ready: OnceCell<()>,
}

/// How long one statement may wait for a connection before the caller hears the database is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// A pool that connects on first use; nothing is checked here.
    pub fn open(db: Database) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let mut opts = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        opts = match &db {
            Database::Postgres(_) => opts.max_connections(8).min_connections(0),
            Database::Sqlite(p) => {
                if let Some(dir) = std::path::Path::new(p).parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(dir);
                }
                // One writer at a time is SQLite's model; WAL lets readers go on beside it.
                opts.max_connections(4).after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL")
                            .await?;
                        Ok(())
                    })
                })
            }
        };
        let pool = opts.connect_lazy(&db.url())?;
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
    pub async fn ready(&self) -> Result<&AnyPool, StoreError> {
        self.ready
            .get_or_try_init(|| async { migrate::run(&self.pool, &self.db).await })
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
