//! The ledger writer: spend rows leave the request path through a bounded channel and reach the
//! database in batches, off the hot path.
//!
//! - A batch is written every `flush_interval` or when `batch_size` rows wait, whichever is first,
//!   in one transaction together with the key/team/user `spend` increments it implies.
//! - A slow or down database never slows a request: `record` is a non-blocking `try_send`.
//! - While the database is down the writer keeps draining the channel into memory, up to
//!   `buffer_rows`; past that, rows are appended to a spill file (JSON lines, `spill_path`, at
//!   most `spill_max_bytes`) and written to the database once it is back, and at every start.
//!   Only past both bounds are rows dropped, counted and reported in the log.
//! - The spill file lives beside the SQLite file, or for Postgres in the data directory
//!   (`data_dir`, [`default_spill_path`]), never in whatever directory the process started in.
//! - A row the database refuses (its data, a constraint, a trigger; not an outage) would block
//!   every row behind it if retried as part of its batch: such a batch is written row by row, and
//!   the rows refused alone are kept in the spill file, never dropped, counted in
//!   `switchyard_ledger_spill_rows` and `/health/readiness`, logged as errors, and tried again
//!   at each start and every `REFUSED_RETRY`.
//! - Budget resets go through the same queue, so increments of requests that finished before a
//!   reset are applied before it.
//! - The writer runs on a thread of its own at background CPU priority (nice 10), with its own
//!   connection pool opened there (SQLite's worker threads inherit the priority): on a box the
//!   gateway shares with its load, request threads win the CPU and the writer uses what is left.
//! - On graceful shutdown everything waiting is flushed (or spilled when the database is down);
//!   a crash loses at most one flush interval of rows.
//! - A write that failed may still have committed (the connection dropped before the answer), so
//!   the next write after a failure, and every write of a spill file, first drops the rows the
//!   database already holds: a retried batch never charges twice.

use crate::limits::Reset;
use crate::store::spend::{Principal, SpendRow};
use crate::store::{Database, Store};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone)]
pub struct LedgerSettings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub buffer_rows: usize,
    /// `spend_logs_spill_path`; by default [`default_spill_path`].
    pub spill_path: Option<PathBuf>,
    /// `data_dir` (or `SWITCHYARD_DATA_DIR`): where a Postgres gateway keeps its spill file.
    pub data_dir: PathBuf,
    pub spill_max_bytes: u64,
    /// `disable_spend_logs`: keep spend on keys/teams/users but write no per-request rows.
    pub rows_enabled: bool,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            batch_size: 500,
            flush_interval: Duration::from_secs(1),
            buffer_rows: 50_000,
            spill_path: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            spill_max_bytes: 1 << 30,
            rows_enabled: true,
        }
    }
}

enum Op {
    Row(Box<SpendRow>),
    Reset(Reset),
    Flush(oneshot::Sender<()>),
    /// Write (or spill) everything and end the writer thread.
    Stop,
}

/// What waits in the writer's queue, in arrival order.
enum Pending {
    Row(Box<SpendRow>),
    Reset(Reset),
}

/// The data directory when neither `data_dir`, `SWITCHYARD_DATA_DIR`, `XDG_STATE_HOME` nor
/// `HOME` says otherwise (a service's state directory).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/switchyard";

/// The writer's counters, read by `/metrics` and `/health/readiness`.
#[derive(Default, Debug)]
pub struct LedgerStats {
    pub written: AtomicU64,
    pub spilled: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: AtomicU64,
    pub backlog: AtomicU64,
    /// Rows the database refused (each kept in the spill file), since start.
    pub refused: AtomicU64,
    /// Rows in the spill file now, waiting to be written back.
    pub spill_rows: AtomicU64,
    /// Why the spill file was last not written back (or could not be written), if it was not.
    pub spill_error: Mutex<Option<String>>,
}

impl LedgerStats {
    fn set_spill_error(&self, e: Option<String>) {
        *self.spill_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    pub fn spill_error(&self) -> Option<String> {
        self.spill_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct Ledger {
    tx: mpsc::Sender<Op>,
    pub stats: Arc<LedgerStats>,
    /// Where rows wait when the database cannot take them.
    pub spill_path: PathBuf,
    /// Fires when the writer thread ends; taken by the first `shutdown`.
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
}

/// Room in the channel between requests and the writer; the writer drains it continuously.
const CHANNEL: usize = 16_384;
const RETRY_MIN: Duration = Duration::from_millis(200);
/// How often a busy writer collects rows.
const POLL: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a spill file holding only rows the database refused is tried again (besides each
/// start and each recovery): often enough to notice a fix, rarely enough not to load the database.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

impl Ledger {
    pub fn start(store: Arc<Store>, settings: LedgerSettings) -> Arc<Ledger> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stats = Arc::new(LedgerStats::default());
        let spill_path = settings
            .spill_path
            .clone()
            .unwrap_or_else(|| default_spill_path(store.database(), &settings.data_dir));
        // What an earlier run left, reported before the first attempt to write it back.
        stats.spill_rows.store(count_lines(&spill_path), Ordering::Relaxed);
        tracing::info!(path = %spill_path.display(), "ledger spill file (used while the database cannot take rows)");
        let (stopped_tx, stopped) = oneshot::channel();
        let mut writer = Writer {
            rx,
            waiting: Vec::new(),
            stop: false,
            store,
            settings,
            spill_path: spill_path.clone(),
            stats: stats.clone(),
            spill_due: None,
            queue: VecDeque::new(),
            rows_queued: 0,
            retry: RETRY_MIN,
            uncertain: false,
        };
        let spawned = std::thread::Builder::new()
            .name("switchyard-ledger".into())
            .spawn(move || {
                crate::thread::lower_priority();
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "ledger writer could not start: spend rows are not written");
                        return;
                    }
                };
                // A pool opened on this thread; the shared one if that fails.
                let db = writer.store.database().clone();
                if let Ok(own) = rt.block_on(async { Store::open(db) }) {
                    writer.store = Arc::new(own);
                }
                rt.block_on(writer.run());
                let _ = stopped_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "ledger writer thread could not start: spend rows are not written");
        }
        Arc::new(Ledger {
            tx,
            stats,
            spill_path,
            stopped: Mutex::new(Some(stopped)),
        })
    }

    /// Hands a row to the writer without waiting; never fails the request.
    pub fn record(&self, row: SpendRow) {
        match self.tx.try_send(Op::Row(Box::new(row))) {
            Ok(()) => {
                self.stats.backlog.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(dropped = n, "ledger writer is not keeping up: spend rows dropped");
                }
            }
        }
    }

    pub fn reset(&self, r: Reset) {
        if self.tx.try_send(Op::Reset(r)).is_err() {
            tracing::warn!("ledger queue full: a budget reset is applied in memory only");
        }
    }

    /// Waits until everything recorded so far is in the database (or spilled).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes (or spills) everything and stops the writer; bounded by `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        let Some(stopped) = self.stopped.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let _ = tokio::time::timeout(timeout, async {
            if self.tx.send(Op::Stop).await.is_ok() {
                let _ = stopped.await;
            }
        })
        .await;
    }
}

struct Writer {
    rx: mpsc::Receiver<Op>,
    /// Flush requests, answered once everything queued before them is written (or spilled).
    waiting: Vec<oneshot::Sender<()>>,
    /// `Op::Stop` arrived: finish after writing what is queued.
    stop: bool,
    store: Arc<Store>,
    settings: LedgerSettings,
    spill_path: PathBuf,
    stats: Arc<LedgerStats>,
    /// When the spill file is next tried while the database is healthy: `None` as soon as
    /// possible; later after an attempt that left refused rows in it.
    spill_due: Option<tokio::time::Instant>,
    queue: VecDeque<Pending>,
    rows_queued: usize,
    retry: Duration,
    /// The last write failed: its rows may or may not be in the database.
    uncertain: bool,
}

impl Writer {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy = true;
        let mut busy = false;
        loop {
            // Idle, the first row wakes the writer; under load it collects every POLL instead,
            // since a wake-up per row (a futex call and a context switch) costs the requests more
            // than the row itself.
            let mut ticked = false;
            let mut closed = false;
            let mut received = false;
            if busy {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tick.tick() => ticked = true,
                }
            } else {
                tokio::select! {
                    op = self.rx.recv() => match op {
                        Some(op) => {
                            self.accept(op);
                            received = true;
                        }
                        None => closed = true,
                    },
                    _ = tick.tick() => ticked = true,
                }
            }
            let (taken, disconnected) = self.take_in();
            busy = taken > 0 || received;
            if closed || disconnected {
                self.settle_or_spill().await;
                return;
            }
            if ticked {
                let was_healthy = healthy;
                healthy = self.settle().await;
                if healthy {
                    if !was_healthy {
                        self.spill_due = None; // recovered: what the outage spilled goes back now
                    }
                    self.reingest_spill().await;
                } else {
                    tick.reset_after(self.retry);
                }
            }
            if healthy && self.waiting.is_empty() && self.rows_queued >= self.settings.batch_size {
                healthy = self.drain(false).await;
            }
            if !self.waiting.is_empty() {
                healthy = self.settle_or_spill().await;
            }
            if self.stop {
                self.settle_or_spill().await;
                return;
            }
        }
    }

    /// Writes the queue; when flush requests wait, what cannot be written is spilled and they
    /// are answered.
    async fn settle(&mut self) -> bool {
        if self.waiting.is_empty() {
            let ok = self.drain(true).await;
            if !ok || self.waiting.is_empty() {
                return ok;
            }
        }
        self.settle_or_spill().await
    }

    async fn settle_or_spill(&mut self) -> bool {
        let ok = self.drain(true).await;
        if !ok {
            self.spill_all();
        }
        for done in self.waiting.drain(..) {
            let _ = done.send(());
        }
        ok
    }

    /// Moves whatever waits in the channel into the queue without waiting, so the channel stays
    /// nearly empty while batches are written and a request's `try_send` never finds it full.
    /// Returns how many it took, and whether every sender is gone.
    fn take_in(&mut self) -> (usize, bool) {
        for n in 0..CHANNEL {
            match self.rx.try_recv() {
                Ok(op) => self.accept(op),
                Err(mpsc::error::TryRecvError::Empty) => return (n, false),
                Err(mpsc::error::TryRecvError::Disconnected) => return (n, true),
            }
        }
        (CHANNEL, false)
    }

    /// Queues a row, a reset or a flush request.
    fn accept(&mut self, op: Op) {
        match op {
            Op::Row(r) => {
                self.rows_queued += 1;
                self.stats.backlog.fetch_sub(1, Ordering::Relaxed);
                self.queue.push_back(Pending::Row(r));
                if self.rows_queued > self.settings.buffer_rows {
                    self.spill_rows(self.rows_queued - self.settings.buffer_rows / 2);
                }
            }
            Op::Reset(r) => self.queue.push_back(Pending::Reset(r)),
            Op::Flush(done) => self.waiting.push(done),
            Op::Stop => self.stop = true,
        }
    }

    /// Writes the queue in order: with `all`, every row queued now; else only full batches. Rows
    /// arriving meanwhile are taken in after each batch and written while full batches remain.
    /// `false` (queue kept) when the database fails.
    async fn drain(&mut self, all: bool) -> bool {
        let mut goal = if all { self.rows_queued } else { 0 };
        while let Some(front) = self.queue.front() {
            if let Pending::Reset(r) = front {
                if let Err(e) = self.store.reset_budget(r.principal, &r.id, r.seen, r.next).await {
                    return self.failed(e);
                }
                self.queue.pop_front();
                continue;
            }
            if goal == 0 && self.rows_queued < self.settings.batch_size {
                break;
            }
            // The rows up to the next reset, at most one batch.
            let rows: Vec<&SpendRow> = self
                .queue
                .iter()
                .take(self.settings.batch_size)
                .map_while(|p| match p {
                    Pending::Row(r) => Some(&**r),
                    Pending::Reset(_) => None,
                })
                .collect();
            let mut n = rows.len();
            let mut refused = Vec::new();
            let mut outage = None;
            match self.write(&rows, self.uncertain).await {
                Ok(()) => self.stats.written.fetch_add(n as u64, Ordering::Relaxed),
                Err(e) if e.refused() => {
                    let each = self.write_each(&rows).await;
                    (n, refused, outage) = (each.settled, each.refused, each.outage);
                    0
                }
                Err(e) => return self.failed(e),
            };
            self.queue.drain(..n);
            self.rows_queued -= n;
            goal = goal.saturating_sub(n);
            if !refused.is_empty() {
                self.append_spill(&refused);
            }
            if let Some(e) = outage {
                return self.failed(e);
            }
            self.uncertain = false;
            self.take_in();
        }
        self.retry = RETRY_MIN;
        true
    }

    /// Writes rows and their spend increments; with `check`, rows already in the database are
    /// left out (with `disable_spend_logs` there are no rows to look for, so nothing can be).
    async fn write(&self, rows: &[&SpendRow], check: bool) -> Result<(), crate::store::StoreError> {
        let mut rows = rows.to_vec();
        if check && self.settings.rows_enabled {
            let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            let there = self.store.written_ids(&ids).await?;
            if !there.is_empty() {
                tracing::info!(
                    rows = there.len(),
                    "rows of a failed write were committed after all: not written again"
                );
                rows.retain(|r| !there.contains(&r.id));
            }
        }
        let increments = increments(rows.iter().copied());
        let rows = if self.settings.rows_enabled { &rows[..] } else { &[] };
        self.store.write_batch(rows, &increments).await
    }

    /// Writes a batch the database refused one row at a time, so that one bad row holds up no
    /// other: each row it takes is written, each it refuses is handed back to be kept.
    async fn write_each(&self, rows: &[&SpendRow]) -> Each {
        let mut each = Each::default();
        for r in rows {
            // A row's own check: a batch before this one may have failed uncertainly.
            match self.write(&[r], true).await {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.refused() => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        error = %e, id = %r.id, request_id = %r.request_id, path = %self.spill_path.display(),
                        "the database refused a spend row: kept in the spill file (not dropped), tried again at each start"
                    );
                    self.stats
                        .set_spill_error(Some(format!("the database refused a spend row: {e}")));
                    each.refused.push((*r).clone());
                }
                Err(e) => {
                    each.outage = Some(e);
                    return each;
                }
            }
            each.settled += 1;
        }
        each
    }

    fn failed(&mut self, e: crate::store::StoreError) -> bool {
        let n = self.stats.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(error = %e, queued = self.rows_queued, "ledger write failed; rows kept and retried");
        }
        self.retry = (self.retry * 2).min(RETRY_MAX);
        self.uncertain = true;
        false
    }

    /// Moves the oldest `n` queued rows to the spill file (resets stay queued, in order).
    fn spill_rows(&mut self, n: usize) {
        let mut taken = Vec::with_capacity(n);
        let mut rest = VecDeque::with_capacity(self.queue.len());
        for op in self.queue.drain(..) {
            match op {
                Pending::Row(r) if taken.len() < n => taken.push(r),
                other => rest.push_back(other),
            }
        }
        self.queue = rest;
        self.rows_queued -= taken.len();
        let taken: Vec<SpendRow> = taken.into_iter().map(|r| *r).collect();
        self.append_spill(&taken);
    }

    fn spill_all(&mut self) {
        let n = self.rows_queued;
        if n > 0 {
            self.spill_rows(n);
        }
    }

    fn append_spill(&mut self, rows: &[SpendRow]) {
        let path = &self.spill_path;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut buf = Vec::new();
        for r in rows {
            if serde_json::to_writer(&mut buf, r).is_ok() {
                buf.push(b'\n');
            }
        }
        if size + buf.len() as u64 > self.settings.spill_max_bytes {
            self.stats.dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
            tracing::error!(rows = rows.len(), path = %path.display(), "spill file is full: spend rows dropped");
            self.stats
                .set_spill_error(Some(format!("spill file {} is full: rows dropped", path.display())));
            return;
        }
        // The data directory may not exist yet (a first outage).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(&buf).and_then(|_| f.sync_data()));
        match written {
            Ok(()) => {
                self.stats.spilled.fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.stats.spill_rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.spill_due = None;
                tracing::warn!(rows = rows.len(), path = %path.display(), "spend rows kept in the spill file");
            }
            Err(e) => {
                self.stats.dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, rows = rows.len(), path = %path.display(), "could not spill spend rows: dropped");
                self.stats
                    .set_spill_error(Some(format!("could not write the spill file {}: {e}", path.display())));
            }
        }
    }

    /// Writes a spill file left by an outage (or an earlier run) into the database, then removes
    /// it; rows the database refuses stay in it.
    async fn reingest_spill(&mut self) {
        if self.spill_due.is_some_and(|due| tokio::time::Instant::now() < due) {
            return;
        }
        let path = self.spill_path.clone();
        if !path.exists() {
            self.stats.spill_rows.store(0, Ordering::Relaxed);
            return;
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot read the spill file: its rows wait");
                self.stats
                    .set_spill_error(Some(format!("cannot read the spill file: {e}")));
                self.spill_due = Some(tokio::time::Instant::now() + REFUSED_RETRY);
                return;
            }
        };
        let mut rows = Vec::new();
        let mut unreadable = Vec::new();
        for line in std::io::BufReader::new(file).split(b'\n').map_while(Result::ok) {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<SpendRow>(&line) {
                Ok(r) => rows.push(r),
                Err(_) => unreadable.push(line),
            }
        }
        let size = self.settings.batch_size.max(1);
        let mut kept: Vec<SpendRow> = Vec::new();
        let mut written = 0;
        for (i, chunk) in rows.chunks(size).enumerate() {
            let refs: Vec<&SpendRow> = chunk.iter().collect();
            // The file may hold rows an earlier attempt wrote before it failed.
            let (settled, outage) = match self.write(&refs, true).await {
                Ok(()) => {
                    self.stats.written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    (chunk.len(), None)
                }
                Err(e) if e.refused() => {
                    let each = self.write_each(&refs).await;
                    kept.extend(each.refused);
                    (each.settled, each.outage)
                }
                Err(e) => (0, Some(e)),
            };
            written += settled;
            if let Some(e) = outage {
                // Keep only what is not yet written: a row written twice would charge twice.
                kept.extend_from_slice(&rows[i * size + settled..]);
                self.rewrite_spill(&kept, &unreadable);
                self.failed(e);
                return;
            }
            self.uncertain = false;
        }
        if kept.is_empty() && unreadable.is_empty() {
            let _ = std::fs::remove_file(&path);
            self.stats.spill_rows.store(0, Ordering::Relaxed);
            self.stats.set_spill_error(None);
        } else {
            self.rewrite_spill(&kept, &unreadable);
            self.spill_due = Some(tokio::time::Instant::now() + REFUSED_RETRY);
            if !unreadable.is_empty() {
                tracing::error!(lines = unreadable.len(), path = %path.display(), "spill file lines that are not spend rows: kept, not written");
                self.stats.set_spill_error(Some(format!(
                    "{} spill file lines are not spend rows",
                    unreadable.len()
                )));
            }
        }
        if written > 0 {
            tracing::info!(
                rows = written,
                kept = kept.len() + unreadable.len(),
                "spilled spend rows written to the database"
            );
        }
    }

    /// Replaces the spill file with `rows` (and lines it could not read, kept as they were).
    fn rewrite_spill(&self, rows: &[SpendRow], unreadable: &[Vec<u8>]) {
        let mut buf = Vec::new();
        for r in rows {
            if serde_json::to_writer(&mut buf, r).is_ok() {
                buf.push(b'\n');
            }
        }
        for line in unreadable {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let tmp = self.spill_path.with_extension("tmp");
        let replaced = std::fs::write(&tmp, &buf).and_then(|_| std::fs::rename(&tmp, &self.spill_path));
        match replaced {
            Ok(()) => {
                self.stats
                    .spill_rows
                    .store((rows.len() + unreadable.len()) as u64, Ordering::Relaxed);
            }
            // The old file stays: it holds every row still waiting, and maybe some written since,
            // which the id check leaves out next time.
            Err(e) => {
                tracing::error!(error = %e, path = %self.spill_path.display(), "could not rewrite the spill file")
            }
        }
    }
}

/// What writing a refused batch row by row came to.
#[derive(Default)]
struct Each {
    /// Rows from the front that are written or refused (all of them unless the database went away).
    settled: usize,
    /// Rows the database refused: to be kept in the spill file.
    refused: Vec<SpendRow>,
    /// The error that stopped the attempt early (an outage, not a refusal).
    outage: Option<crate::store::StoreError>,
}

/// The lines of a file; 0 when it is missing.
fn count_lines(path: &std::path::Path) -> u64 {
    std::fs::read(path)
        .map(|b| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Where the spill file is when `spend_logs_spill_path` is not set: beside a SQLite file; for
/// Postgres in `data_dir`, named after the database (its URL without the password) so that
/// gateways of different databases sharing a directory never write each other's rows.
pub fn default_spill_path(db: &Database, data_dir: &std::path::Path) -> PathBuf {
    match db {
        Database::Sqlite(path) => format!("{path}.spill.jsonl").into(),
        Database::Postgres(url) => {
            use sha2::Digest;
            let named = match url::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    u.to_string()
                }
                Err(_) => url.clone(),
            };
            let digest = hex::encode(sha2::Sha256::digest(named.as_bytes()));
            data_dir.join(format!("spend-spill-{}.jsonl", &digest[..12]))
        }
    }
}

/// The `spend` each key, team and user moves by for these rows.
fn increments<'a>(rows: impl Iterator<Item = &'a SpendRow>) -> HashMap<(Principal, String), f64> {
    let mut m: HashMap<(Principal, String), f64> = HashMap::new();
    for r in rows.filter(|r| r.spend > 0.0) {
        for (p, id) in [
            (Principal::Key, &r.api_key),
            (Principal::Team, &r.team_id),
            (Principal::User, &r.user_id),
        ] {
            if let Some(id) = id {
                *m.entry((p, id.clone())).or_default() += r.spend;
            }
        }
    }
    m
}
