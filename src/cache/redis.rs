//! Cache entries in Redis, shared by every gateway pointed at it.
//!
//! A value is `[u32 BE length][metadata JSON][body]`, stored with `PSETEX` (the entry's TTL).
//! The connection is made on first use and kept by redis' `ConnectionManager` (it reconnects);
//! every operation is bounded by [`OP_TIMEOUT`]. Redis trouble is a miss for reads and a skipped
//! store for writes, logged at most every [`WARN_EVERY_MS`]; after a failed connect, Redis is
//! left alone for [`RETRY_AFTER_MS`]. Writes run in the background, at most [`MAX_PENDING`] at
//! once (more are skipped), so a slow Redis never slows a response.

use super::Entry;
use crate::ledger::cost::Tokens;
use crate::store::now_ms;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const OP_TIMEOUT: Duration = Duration::from_millis(250);
const WARN_EVERY_MS: i64 = 30_000;
const RETRY_AFTER_MS: i64 = 5_000;
const MAX_PENDING: usize = 256;

#[derive(Serialize, Deserialize)]
struct Meta {
    stream: bool,
    content_type: Option<String>,
    model_group: String,
    prompt: u64,
    completion: u64,
    cached: u64,
    created_ms: i64,
    ttl_ms: u64,
}

#[derive(Clone)]
pub struct Shared(Arc<Inner>);

struct Inner {
    url: String,
    conn: Mutex<Option<ConnectionManager>>,
    down_until: AtomicI64,
    last_warn: AtomicI64,
    pending: AtomicUsize,
}

impl Shared {
    pub fn new(url: String) -> Self {
        Shared(Arc::new(Inner {
            url,
            conn: Mutex::new(None),
            down_until: AtomicI64::new(0),
            last_warn: AtomicI64::new(0),
            pending: AtomicUsize::new(0),
        }))
    }

    pub async fn get(&self, key: &str) -> Option<Entry> {
        let mut conn = self.0.connection().await?;
        let got = tokio::time::timeout(OP_TIMEOUT, conn.get::<_, Option<Vec<u8>>>(key)).await;
        match got {
            Ok(Ok(v)) => decode(&v?),
            Ok(Err(e)) => self.0.warn(&e.to_string()),
            Err(_) => self.0.warn("timed out"),
        }
    }

    pub fn put(&self, key: String, entry: Arc<Entry>) {
        let inner = self.0.clone();
        if inner.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            inner.pending.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        tokio::spawn(async move {
            if let Some(mut conn) = inner.connection().await {
                let ttl = entry.ttl.as_millis().max(1) as u64;
                let value = encode(&entry);
                match tokio::time::timeout(OP_TIMEOUT, conn.pset_ex::<_, _, ()>(&key, value, ttl)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        inner.warn::<()>(&e.to_string());
                    }
                    Err(_) => {
                        inner.warn::<()>("timed out");
                    }
                }
            }
            inner.pending.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

impl Inner {
    async fn connection(&self) -> Option<ConnectionManager> {
        if now_ms() < self.down_until.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        let made = async {
            let client = redis::Client::open(self.url.as_str())?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(OP_TIMEOUT))
                .set_response_timeout(Some(OP_TIMEOUT));
            client.get_connection_manager_with_config(config).await
        };
        match tokio::time::timeout(OP_TIMEOUT * 2, made).await {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.down_until.store(now_ms() + RETRY_AFTER_MS, Ordering::Relaxed);
                self.warn(&e.to_string())
            }
            Err(_) => {
                self.down_until.store(now_ms() + RETRY_AFTER_MS, Ordering::Relaxed);
                self.warn("connect timed out")
            }
        }
    }

    /// Logs a Redis problem unless one was logged recently; always `None`.
    fn warn<T>(&self, what: &str) -> Option<T> {
        let now = now_ms();
        let last = self.last_warn.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error = what,
                "redis cache unavailable: answering from this gateway's cache only"
            );
        }
        None
    }
}

fn encode(e: &Entry) -> Vec<u8> {
    let meta = Meta {
        stream: e.stream,
        content_type: e.content_type.clone(),
        model_group: e.model_group.clone(),
        prompt: e.tokens.prompt,
        completion: e.tokens.completion,
        cached: e.tokens.cached,
        created_ms: e.created_ms,
        ttl_ms: e.ttl.as_millis() as u64,
    };
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + meta.len() + e.body.len());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&e.body);
    out
}

fn decode(v: &[u8]) -> Option<Entry> {
    let len = u32::from_be_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let meta: Meta = serde_json::from_slice(v.get(4..4 + len)?).ok()?;
    Some(Entry {
        body: Bytes::copy_from_slice(v.get(4 + len..)?),
        stream: meta.stream,
        content_type: meta.content_type,
        model_group: meta.model_group,
        tokens: Tokens {
            prompt: meta.prompt,
            completion: meta.completion,
            cached: meta.cached,
        },
        created_ms: meta.created_ms,
        ttl: Duration::from_millis(meta.ttl_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            body: Bytes::from_static(b"data: {}\n\ndata: [DONE]\n\n"),
            stream: true,
            content_type: Some("text/event-stream".into()),
            model_group: "g".into(),
            tokens: Tokens {
                prompt: 3,
                completion: 4,
                cached: 1,
            },
            created_ms: 42,
            ttl: Duration::from_secs(9),
        };
        let d = decode(&encode(&e)).unwrap();
        assert_eq!(d.body, e.body);
        assert_eq!(
            (d.stream, d.model_group.as_str(), d.tokens.completion, d.created_ms),
            (true, "g", 4, 42)
        );
        assert_eq!(d.ttl, e.ttl);
        assert!(decode(b"\0\0").is_none());
        assert!(decode(b"\0\0\0\x09{bad json").is_none());
    }
}
