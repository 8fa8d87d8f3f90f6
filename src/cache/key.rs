//! The cache key and the per-request cache controls.
//!
//! The key is the SHA-256 of the canonical request: the client's dialect, the endpoint, the model
//! *group* (aliases share entries), whether it streams, and the request body without the fields
//! that steer the gateway rather than the answer (`metadata`, `user`, `cache`, `tags`, retries and
//! fallbacks, timeouts...). Bodies are re-serialised from their parsed form, so key order and
//! whitespace do not matter.

use crate::error::Dialect;
use crate::pipeline::Call;
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Fields that do not change the answer, beyond the gateway's own (`types::GATEWAY_FIELDS`).
const NOT_IN_KEY: &[&str] = &["user", "stream", "model"];

/// The key for `call` served by `group`, under the configured namespace.
pub fn of(namespace: Option<&str>, dialect: Dialect, group: &str, call: &Call) -> String {
    let body = match call {
        // A Responses request is keyed by its own body: hosted tools, `include` and the like
        // change the answer but have no canonical form.
        Call::Chat(r) if call.responses().is_some() => match &r.native {
            Some(crate::types::Native::Responses(n)) => Ok(Value::Object(n.body.clone())),
            _ => serde_json::to_value(r),
        },
        Call::Chat(r) => serde_json::to_value(r),
        Call::Passthrough(_, r) => serde_json::to_value(r),
    };
    let mut body = body.unwrap_or(Value::Null);
    if let Value::Object(m) = &mut body {
        for k in crate::types::GATEWAY_FIELDS.iter().chain(NOT_IN_KEY) {
            m.remove(*k);
        }
    }
    let endpoint = match call {
        Call::Chat(_) => "chat",
        Call::Passthrough(e, _) => e.route(),
    };
    let mut h = Sha256::new();
    h.update(b"switchyard-cache-v1\0");
    h.update(match dialect {
        Dialect::Anthropic => "anthropic",
        Dialect::Responses => "responses",
        Dialect::OpenAi => "openai",
    });
    h.update([0]);
    h.update(endpoint);
    h.update([0]);
    h.update(group);
    h.update([0, u8::from(call.is_stream())]);
    h.update(serde_json::to_vec(&body).unwrap_or_default());
    let hash = hex::encode(h.finalize());
    match namespace {
        Some(ns) => format!("{ns}:{hash}"),
        None => hash,
    }
}

/// What one request allows the cache to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Controls {
    /// May answer from the cache.
    pub read: bool,
    /// May store its answer.
    pub write: bool,
    /// The stored answer's time to live (`cache.ttl`), else the configured one.
    pub ttl: Option<Duration>,
    /// Accept only entries younger than this (`cache.s-maxage`, `Cache-Control: max-age`).
    pub max_age: Option<Duration>,
}

/// Reads LiteLLM's `cache: {no-cache, no-store, ttl, s-maxage, use-cache}` and `caching: false`
/// from the body, and `Cache-Control: no-cache | no-store | max-age=N` from the headers. With
/// `default_off`, nothing is cached unless the request says `use-cache: true`.
pub fn controls(extra: &serde_json::Map<String, Value>, headers: &HeaderMap, default_off: bool) -> Controls {
    let mut c = Controls {
        read: true,
        write: true,
        ttl: None,
        max_age: None,
    };
    let mut asked = false;
    if let Some(opts) = extra.get("cache").and_then(Value::as_object) {
        let flag = |k: &str| opts.get(k).is_some_and(|v| v.as_bool() == Some(true));
        let secs = |k: &str| {
            opts.get(k)
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
        };
        c.read &= !flag("no-cache");
        c.write &= !flag("no-store");
        c.ttl = secs("ttl");
        c.max_age = secs("s-maxage");
        asked = flag("use-cache");
    }
    if extra.get("caching").and_then(Value::as_bool) == Some(false) {
        c.read = false;
        c.write = false;
    }
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for d in v.to_str().unwrap_or("").split(',').map(str::trim) {
            let d = d.to_ascii_lowercase();
            match d.as_str() {
                "no-cache" => c.read = false,
                "no-store" => c.write = false,
                _ => {
                    if let Some(n) = d.strip_prefix("max-age=").and_then(|n| n.parse::<u64>().ok()) {
                        c.max_age = Some(Duration::from_secs(n));
                    }
                }
            }
        }
    }
    if default_off && !asked {
        c.read = false;
        c.write = false;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ChatRequest;
    use serde_json::json;

    fn chat(v: Value) -> Call {
        Call::Chat(serde_json::from_value::<ChatRequest>(v).unwrap())
    }

    #[test]
    fn key_ignores_order_metadata_and_user_but_not_the_answer_params() {
        let a = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "user": "u1", "metadata": {"x": 1}}),
        );
        let b = chat(json!({"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "alias"}));
        let c = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}));
        let k = |c: &Call| of(None, Dialect::OpenAi, "group", c);
        assert_eq!(k(&a), k(&b));
        assert_ne!(k(&a), k(&c));
        assert_ne!(
            k(&a),
            of(None, Dialect::Anthropic, "group", &a),
            "dialects answer in different shapes"
        );
        assert_ne!(k(&a), of(None, Dialect::OpenAi, "other", &a));
        assert!(of(Some("ns"), Dialect::OpenAi, "group", &a).starts_with("ns:"));
        let s = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "stream": true}),
        );
        assert_ne!(k(&a), k(&s), "streams are cached apart");
    }

    #[test]
    fn controls_from_body_and_headers() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let none = HeaderMap::new();
        let c = controls(&body(json!({})), &none, false);
        assert!(c.read && c.write && c.ttl.is_none());
        let c = controls(&body(json!({"cache": {"no-cache": true, "ttl": 5}})), &none, false);
        assert!(!c.read && c.write);
        assert_eq!(c.ttl, Some(Duration::from_secs(5)));
        let c = controls(&body(json!({"cache": {"no-store": true, "s-maxage": 2}})), &none, false);
        assert!(c.read && !c.write);
        assert_eq!(c.max_age, Some(Duration::from_secs(2)));
        let mut h = HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, "No-Store, max-age=7".parse().unwrap());
        let c = controls(&body(json!({})), &h, false);
        assert!(c.read && !c.write);
        assert_eq!(c.max_age, Some(Duration::from_secs(7)));
        assert!(!controls(&body(json!({})), &none, true).read);
        let c = controls(&body(json!({"cache": {"use-cache": true}})), &none, true);
        assert!(c.read && c.write);
        let c = controls(&body(json!({"caching": false})), &none, false);
        assert!(!c.read && !c.write);
    }
}
