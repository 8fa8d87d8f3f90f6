//! The response cache: exact match on the normalised request, served before routing.
//!
//! - [`key`]: the canonical request (model group, messages, the parameters that change the
//!   answer) hashed into the cache key, and the per-request controls (`cache: {...}` in the body,
//!   `Cache-Control` headers).
//! - In process: a moka cache bounded in bytes, with each entry's own TTL.
//! - `type: redis`: the same entries in Redis too ([`redis`]), so several gateways share them;
//!   the in-process cache stays in front. Redis trouble is a miss, never an error.
//! - Streams are captured as the client receives them ([`capture`]) and stored once complete;
//!   a hit replays the same bytes.
//!
//! The caller's access to the model group is checked before a lookup, so a cached answer never
//! reaches a key that may not use that model.

pub mod capture;
pub mod key;
mod redis;

use crate::config::cache::{Backend, CacheSettings};
use crate::ledger::cost::Tokens;
use crate::store::now_ms;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// One cached response, exactly as the client received it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub body: Bytes,
    pub stream: bool,
    pub content_type: Option<String>,
    pub model_group: String,
    pub tokens: Tokens,
    /// Unix ms when stored.
    pub created_ms: i64,
    /// Time to live from `created_ms`.
    pub ttl: Duration,
}

impl Entry {
    pub fn age(&self, now_ms: i64) -> Duration {
        Duration::from_millis((now_ms - self.created_ms).max(0) as u64)
    }

    fn remaining(&self, now_ms: i64) -> Duration {
        self.ttl.saturating_sub(self.age(now_ms))
    }
}

pub struct ResponseCache {
    pub settings: CacheSettings,
    local: moka::sync::Cache<String, Arc<Entry>>,
    shared: Option<redis::Shared>,
}

/// Each entry lives for its own TTL (the request's `ttl`, or the configured one).
struct ByEntry;

impl moka::Expiry<String, Arc<Entry>> for ByEntry {
    fn expire_after_create(&self, _: &String, v: &Arc<Entry>, _: std::time::Instant) -> Option<Duration> {
        Some(v.remaining(now_ms()))
    }
}

impl ResponseCache {
    pub fn new(settings: CacheSettings) -> Self {
        let local = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|k: &String, v: &Arc<Entry>| (k.len() + v.body.len() + 256).min(u32::MAX as usize) as u32)
            .expire_after(ByEntry)
            .build();
        let shared = match &settings.backend {
            Backend::Redis { url } => Some(redis::Shared::new(url.clone())),
            Backend::Local => None,
        };
        ResponseCache {
            settings,
            local,
            shared,
        }
    }

    /// The entry under `key`, if younger than `max_age` (when given).
    pub async fn get(&self, key: &str, max_age: Option<Duration>) -> Option<Arc<Entry>> {
        let now = now_ms();
        let fresh = |e: &Arc<Entry>| max_age.is_none_or(|m| e.age(now) <= m) && !e.remaining(now).is_zero();
        if let Some(e) = self.local.get(key) {
            return fresh(&e).then_some(e);
        }
        let e = Arc::new(self.shared.as_ref()?.get(key).await?);
        if e.remaining(now).is_zero() {
            return None;
        }
        self.local.insert(key.to_string(), e.clone());
        fresh(&e).then_some(e)
    }

    /// Stores an entry here and, with Redis, there too (in the background).
    pub fn put(&self, key: String, entry: Entry) {
        if entry.body.len() > self.settings.max_entry_bytes {
            return;
        }
        let entry = Arc::new(entry);
        if let Some(shared) = &self.shared {
            shared.put(key.clone(), entry.clone());
        }
        self.local.insert(key, entry);
    }

    /// Whether this call type is cached (`supported_call_types`).
    pub fn caches(&self, call_type: &str) -> bool {
        let want = sync_name(call_type);
        self.settings.call_types.iter().any(|t| sync_name(t) == want)
    }
}

/// LiteLLM names each call type twice (`completion`, `acompletion`): one name for both.
fn sync_name(t: &str) -> &str {
    t.strip_prefix('a')
        .filter(|r| ["completion", "text_completion", "embedding", "transcription"].contains(r))
        .unwrap_or(t)
}
