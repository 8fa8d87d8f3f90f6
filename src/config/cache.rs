//! `litellm_settings.cache` / `cache_params`: the response cache's settings.
//!
//! ```yaml
//! litellm_settings:
//!   cache: true
//!   cache_params:
//!     type: redis            # local (default) | redis
//!     host: 127.0.0.1        # or url: redis://...; else REDIS_URL / REDIS_HOST env
//!     ttl: 600
//!     namespace: prod
//!     supported_call_types: [acompletion, atext_completion, aembedding]
//!     mode: default_off      # cache only requests that ask with cache: {use-cache: true}
//! ```

use super::fields::Fields;
use super::interpolate::Env;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// In this process only.
    Local,
    /// Shared by every gateway on the same Redis (with an in-process copy in front).
    Redis { url: String },
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub backend: Backend,
    pub ttl: Duration,
    /// Prefix of every key, so gateways of different deployments can share one Redis.
    pub namespace: Option<String>,
    /// LiteLLM's call type names that are cached.
    pub call_types: Vec<String>,
    /// `mode: default_off`: only requests that ask (`cache: {use-cache: true}`) are cached.
    pub default_off: bool,
    /// Bound of the in-process cache, in bytes of stored responses.
    pub max_bytes: u64,
    /// A response larger than this is not cached.
    pub max_entry_bytes: usize,
}

pub const DEFAULT_TTL_SECS: f64 = 600.0;
const DEFAULT_MAX_MB: f64 = 256.0;
/// LiteLLM's default `supported_call_types` (Responses included), plus our name for the
/// Anthropic path.
pub const CALL_TYPES: &[&str] = &[
    "completion",
    "acompletion",
    "text_completion",
    "atext_completion",
    "embedding",
    "aembedding",
    "anthropic_messages",
    "responses",
    "aresponses",
];

/// Reads `cache` and `cache_params`; `None` when caching is off.
pub fn parse(f: &mut Fields<'_>, env: &dyn Env, warnings: &mut Vec<String>) -> Option<CacheSettings> {
    let on = f.bool("cache").unwrap_or(false);
    let params = f.mapping("cache_params");
    if !on {
        return None;
    }
    let path = f.path_of("cache_params");
    let mut errs = Vec::new();
    let mut p = Fields::new(params.unwrap_or_default(), path, &mut errs);
    let kind = p.string("type").unwrap_or_else(|| "local".into());
    let backend = match kind.as_str() {
        "local" | "in-memory" | "memory" => Backend::Local,
        "redis" => {
            let url = p
                .string("url")
                .or_else(|| p.string("redis_url"))
                .or_else(|| env.get("REDIS_URL"));
            let host = p.string("host").or_else(|| env.get("REDIS_HOST"));
            let port = p.string("port").or_else(|| env.get("REDIS_PORT"));
            let password = p.string("password").or_else(|| env.get("REDIS_PASSWORD"));
            let url = match (url, host) {
                (Some(u), _) => u,
                (None, Some(h)) => {
                    let auth = password.map(|pw| format!(":{pw}@")).unwrap_or_default();
                    format!("redis://{auth}{h}:{}", port.as_deref().unwrap_or("6379"))
                }
                (None, None) => {
                    p.error(
                        "type",
                        "redis needs `host` (or `url`, or REDIS_URL / REDIS_HOST in the environment)",
                    );
                    String::new()
                }
            };
            Backend::Redis { url }
        }
        other => {
            p.error(
                "type",
                format!("unsupported cache type {other:?}; expected local or redis"),
            );
            Backend::Local
        }
    };
    let ttl = p.seconds("ttl").unwrap_or(Duration::from_secs_f64(DEFAULT_TTL_SECS));
    let namespace = p.string("namespace").filter(|n| !n.is_empty());
    let call_types = match p.string_list("supported_call_types") {
        Some(list) => {
            for t in &list {
                if !CALL_TYPES.contains(&t.as_str()) && t != "atranscription" && t != "transcription" {
                    p.error(
                        "supported_call_types",
                        format!("unknown call type {t:?}; known: {}", CALL_TYPES.join(", ")),
                    );
                }
            }
            list
        }
        None => CALL_TYPES.iter().map(|s| s.to_string()).collect(),
    };
    let default_off = match p.string("mode").as_deref() {
        None | Some("default_on") => false,
        Some("default_off") => true,
        Some(other) => {
            p.error("mode", format!("expected default_on or default_off, found {other:?}"));
            false
        }
    };
    let max_bytes = (p.non_negative("max_size_mb").unwrap_or(DEFAULT_MAX_MB) * 1024.0 * 1024.0) as u64;
    // LiteLLM's item-count bound has no byte meaning; the byte bound covers it.
    let _ = p.take("max_size_in_memory");
    let (rest, _) = p.rest();
    for k in rest {
        warnings.push(format!("{k}: not supported by switchyard's cache; ignored"));
    }
    f.errors_mut().extend(errs);
    Some(CacheSettings {
        backend,
        ttl,
        namespace,
        call_types,
        default_off,
        max_bytes,
        max_entry_bytes: ((max_bytes / 16) as usize).clamp(64 * 1024, 8 * 1024 * 1024),
    })
}
