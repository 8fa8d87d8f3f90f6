//! One outbox for every JSON POST the gateway sends on its own (callbacks, alerts).
//!
//! A request only `try_send`s into a bounded queue; a full queue drops the post (counted, and
//! logged once per burst). A background task posts with a few in flight at once, each attempt
//! under a timeout, retrying connection errors, timeouts, 429 and 5xx with backoff a bounded
//! number of times. A receiver that is down costs the gateway nothing but these counters.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Attempts per post (the first plus two retries), the backoff before each retry, and the
/// limit on one attempt.
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(250);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Posts in flight at once, so one slow receiver does not hold up the rest.
const CONCURRENCY: usize = 8;

/// A receiver and its extra headers, parsed once at start-up.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    /// Scheme, host and port only: webhook paths carry secrets (Slack's do), logs never see them.
    pub origin: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// Headers that are not valid HTTP are dropped with a warning.
    pub fn new(url: &str, headers: &[(String, String)]) -> Arc<Target> {
        let headers = headers
            .iter()
            .filter_map(
                |(k, v)| match (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
                    (Ok(k), Ok(v)) => Some((k, v)),
                    _ => {
                        tracing::warn!(header = %k, "invalid webhook header; not sent");
                        None
                    }
                },
            )
            .collect();
        let origin = reqwest::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "(invalid url)".into());
        Arc::new(Target {
            url: url.to_string(),
            origin,
            headers,
        })
    }
}

struct Post {
    target: Arc<Target>,
    body: Bytes,
}

/// What the outbox did; read by `/metrics` and the logs.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub delivered: AtomicU64,
    /// Posts given up after the last attempt.
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    /// Posts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Queued or in flight.
    pub pending: AtomicU64,
    failing: AtomicBool,
    dropping: AtomicBool,
}

#[derive(Clone)]
pub struct Outbox {
    name: &'static str,
    tx: mpsc::Sender<Post>,
    pub stats: Arc<DeliveryStats>,
}

impl Outbox {
    /// Starts the delivery task (on the running tokio runtime); it ends when every sender is gone.
    pub fn start(name: &'static str, capacity: usize) -> Outbox {
        let (tx, rx) = mpsc::channel::<Post>(capacity.max(1));
        let stats = Arc::new(DeliveryStats::default());
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .unwrap_or_default();
        let st = stats.clone();
        let posts = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
        tokio::spawn(posts.for_each_concurrent(CONCURRENCY, move |p| {
            let (client, st) = (client.clone(), st.clone());
            async move {
                deliver(name, &client, &st, &p).await;
                st.pending.fetch_sub(1, Relaxed);
            }
        }));
        Outbox { name, tx, stats }
    }

    /// Queues a post without waiting; `false` when the queue is full (the post is dropped).
    pub fn send(&self, target: &Arc<Target>, body: Bytes) -> bool {
        self.stats.pending.fetch_add(1, Relaxed);
        let post = Post {
            target: target.clone(),
            body,
        };
        if self.tx.try_send(post).is_ok() {
            if self.stats.dropping.swap(false, Relaxed) {
                tracing::info!(outbox = self.name, "queue has room again");
            }
            return true;
        }
        self.stats.pending.fetch_sub(1, Relaxed);
        self.stats.dropped.fetch_add(1, Relaxed);
        if !self.stats.dropping.swap(true, Relaxed) {
            tracing::warn!(outbox = self.name, "queue full: dropping posts until it drains");
        }
        false
    }

    /// Waits (at most `within`) until every queued post was delivered or given up.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.stats.pending.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn deliver(name: &str, client: &reqwest::Client, st: &DeliveryStats, p: &Post) {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            st.retried.fetch_add(1, Relaxed);
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        let mut req = client
            .post(&p.target.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(p.body.clone());
        for (k, v) in &p.target.headers {
            req = req.header(k, v);
        }
        let retry = match req.send().await {
            Ok(r) if r.status().is_success() => {
                st.delivered.fetch_add(1, Relaxed);
                if st.failing.swap(false, Relaxed) {
                    tracing::info!(outbox = name, receiver = %p.target.origin, "delivering again");
                }
                return;
            }
            Ok(r) => {
                last = format!("HTTP {}", r.status().as_u16());
                r.status().is_server_error() || r.status() == http::StatusCode::TOO_MANY_REQUESTS
            }
            Err(e) => {
                last = e.without_url().to_string();
                true
            }
        };
        if !retry {
            break;
        }
    }
    st.failed.fetch_add(1, Relaxed);
    if !st.failing.swap(true, Relaxed) {
        tracing::warn!(outbox = name, receiver = %p.target.origin, error = %last, "delivery failing; posts are dropped after {ATTEMPTS} attempts until it recovers");
    }
}
