//! Logging set-up: human-readable lines by default, JSON with `litellm_settings.json_logs`
//! (or `--json-logs`). Levels come from `RUST_LOG` (default `info`). Lines are written by a
//! background thread (`tracing-appender`), so a slow terminal or pipe never slows a request.
//!
//! [`RequestLog`] writes one line per request (target `switchyard::request`): ids, the key's
//! alias (never the key), model, deployment, route, status, tokens and latency. Prompts and
//! completions are never logged.

use super::{Finished, RequestObserver};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Keeps the log writer thread alive; logs written after it is dropped may be lost.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

/// How request lines are written, as `init` set up the other logs (`None`: no subscriber).
static FORMAT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

pub fn init(json: bool, debug: bool) -> LogGuard {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stderr());
    // Colours only on a terminal: a file, a pipe or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    // A second init (tests that start several gateways) is harmless: keep the first subscriber.
    let ok = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    let guard = ok.ok().map(|_| guard);
    if guard.is_some() {
        let _ = FORMAT.set(json);
    }
    guard
}

/// The per-request log line. Through `tracing`'s formatter a line cost about 7 µs of CPU, more
/// than the rest of a cache hit (measured), so a request only copies the fields and `try_send`s
/// them, and a thread of its own at background priority formats them by hand in the same shape
/// (human, or JSON like `tracing`'s flattened events) and writes them to stderr in batches of
/// whole lines. When it cannot keep up, lines are dropped and counted. Nothing runs at all when
/// `switchyard::request` is filtered out (`RUST_LOG`).
pub struct RequestLog {
    tx: Option<SyncSender<Msg>>,
    dropped: AtomicU64,
}

enum Msg {
    Line(Box<Line>),
    Flush(std::sync::mpsc::Sender<()>),
}

struct Line {
    request_id: String,
    key_alias: Option<String>,
    team_id: Option<String>,
    model: String,
    deployment: Option<String>,
    route: String,
    status: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    cache_hit: bool,
    error: Option<String>,
}

/// Lines waiting for the log thread.
const QUEUE: usize = 16 * 1024;
/// How often a busy log thread collects lines.
const POLL: Duration = Duration::from_millis(20);

impl RequestLog {
    pub fn start() -> RequestLog {
        let off = RequestLog {
            tx: None,
            dropped: AtomicU64::new(0),
        };
        if !tracing::enabled!(target: "switchyard::request", tracing::Level::INFO) {
            return off;
        }
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("switchyard-log".into())
            .spawn(move || {
                crate::thread::lower_priority();
                write_lines(rx, FORMAT.get().copied());
            });
        match spawned {
            Ok(_) => RequestLog {
                tx: Some(tx),
                dropped: AtomicU64::new(0),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no request log thread: request lines are off");
                off
            }
        }
    }

    /// Waits (at most `timeout`) until every line sent so far is written.
    pub fn flush(&self, timeout: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = std::sync::mpsc::channel();
        // The thread drains the queue continuously (its writer never blocks), so this send
        // waits at most for the lines ahead of it.
        if tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

impl RequestObserver for RequestLog {
    fn request_done(&self, done: &Finished<'_>) {
        let Some(tx) = &self.tx else { return };
        let r = done.row;
        let line = Line {
            request_id: r.request_id.clone(),
            key_alias: r.key_alias.clone(),
            team_id: r.team_id.clone(),
            model: r.model_group.clone(),
            deployment: r.model_id.clone(),
            route: r.route.clone(),
            status: r.status,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            cache_hit: r.cache_hit,
            error: done.error.map(str::to_string),
        };
        if tx.try_send(Msg::Line(Box::new(line))).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "request log cannot keep up: lines dropped");
            }
        }
    }
}

/// Formats and writes lines until every sender is gone; `json` as set by `init` (`None`: no
/// subscriber of ours, so lines go through `tracing`).
fn write_lines(rx: std::sync::mpsc::Receiver<Msg>, json: Option<bool>) {
    use std::io::Write;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    let mut busy = false;
    loop {
        // Under load, collect every POLL instead of being woken for each line: a wake-up per
        // request (a futex call and a context switch) cost the gateway more than the line itself.
        let first = if busy {
            std::thread::sleep(POLL);
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        busy = first.is_some();
        let mut next = first;
        // Format what is waiting (bounded), then write it in one go.
        for _ in 0..QUEUE {
            let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) else {
                break;
            };
            match (msg, json) {
                (Msg::Line(l), Some(json)) => l.format(&mut buf, json),
                (Msg::Line(l), None) => l.emit(),
                (Msg::Flush(done), _) => acks.push(done),
            }
        }
        if !buf.is_empty() {
            let _ = std::io::stderr().lock().write_all(&buf);
            buf.clear();
        }
        for done in acks.drain(..) {
            let _ = done.send(());
        }
    }
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    target: &'static str,
    message: &'static str,
    request_id: &'a str,
    key_alias: &'a str,
    team_id: &'a str,
    model: &'a str,
    deployment: &'a str,
    route: &'a str,
    status: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft_ms: Option<f64>,
    cache_hit: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `2026-11-27T12:06:43.822717Z`, as `tracing-subscriber` writes it.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (day, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}.{:06}Z",
        crate::store::spend::day_string(day),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

impl Line {
    fn format(&self, buf: &mut Vec<u8>, json: bool) {
        use std::io::Write;
        let ts = timestamp();
        if json {
            let line = JsonLine {
                timestamp: &ts,
                level: "INFO",
                target: "switchyard::request",
                message: "request",
                request_id: &self.request_id,
                key_alias: self.key_alias.as_deref().unwrap_or(""),
                team_id: self.team_id.as_deref().unwrap_or(""),
                model: &self.model,
                deployment: self.deployment.as_deref().unwrap_or(""),
                route: &self.route,
                status: self.status,
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                latency_ms: round3(self.latency_ms),
                ttft_ms: self.ttft_ms.map(round3),
                cache_hit: self.cache_hit,
                error: self.error.as_deref(),
            };
            if serde_json::to_writer(&mut *buf, &line).is_ok() {
                buf.push(b'\n');
            }
            return;
        }
        let _ = write!(
            buf,
            "{ts}  INFO switchyard::request: request request_id={} key_alias={:?} team_id={:?} model={} deployment={:?} route={} status={} prompt_tokens={} completion_tokens={} latency_ms={}",
            self.request_id,
            self.key_alias.as_deref().unwrap_or(""),
            self.team_id.as_deref().unwrap_or(""),
            self.model,
            self.deployment.as_deref().unwrap_or(""),
            self.route,
            self.status,
            self.prompt_tokens,
            self.completion_tokens,
            round3(self.latency_ms),
        );
        if let Some(t) = self.ttft_ms {
            let _ = write!(buf, " ttft_ms={}", round3(t));
        }
        let _ = write!(buf, " cache_hit={}", self.cache_hit);
        if let Some(e) = &self.error {
            let _ = write!(buf, " error={e:?}");
        }
        buf.push(b'\n');
    }

    fn emit(&self) {
        tracing::info!(
            target: "switchyard::request",
            request_id = %self.request_id,
            key_alias = self.key_alias.as_deref().unwrap_or(""),
            team_id = self.team_id.as_deref().unwrap_or(""),
            model = %self.model,
            deployment = self.deployment.as_deref().unwrap_or(""),
            route = %self.route,
            status = self.status,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            latency_ms = (self.latency_ms * 1000.0).round() / 1000.0,
            ttft_ms = self.ttft_ms.map(|t| (t * 1000.0).round() / 1000.0),
            cache_hit = self.cache_hit,
            error = self.error.as_deref(),
            "request"
        );
    }
}
