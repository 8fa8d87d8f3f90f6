//! Who is calling: the key on a request, checked against the master key.
//!
//! Keys are read from `Authorization: Bearer`, `x-api-key` (Anthropic's header) or
//! `x-litellm-api-key`, and compared by their SHA-256 digests in constant time, so neither the
//! key's content nor its length leaks through timing. Virtual keys plug in beside the master key.

use crate::error::GatewayError;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The master key: every model, every admin route.
    Master,
    /// No master key is configured: the gateway is bound to loopback and open to local callers.
    Open,
}

impl Caller {
    /// Whether this caller's requests may go to cloud (paid) deployments. The seam for
    /// per-key `allow_cloud` and budget checks at the escalation step.
    pub fn allow_cloud(&self) -> bool {
        true
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Master | Caller::Open)
    }
}

pub struct Auth {
    master: Option<[u8; 32]>,
}

impl Auth {
    pub fn new(master_key: Option<&str>) -> Self {
        Auth {
            master: master_key.map(digest),
        }
    }

    pub fn has_master_key(&self) -> bool {
        self.master.is_some()
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let Some(master) = &self.master else {
            return Ok(Caller::Open);
        };
        let Some(token) = presented_key(headers) else {
            return Err(GatewayError::Unauthorized(
                "Authentication Error: no API key passed in. Send it as `Authorization: Bearer <key>` (or `x-api-key`).".into(),
            ));
        };
        if bool::from(digest(token).ct_eq(master)) {
            return Ok(Caller::Master);
        }
        Err(GatewayError::Unauthorized(
            "Authentication Error: invalid API key.".into(),
        ))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The key the client sent, from the first header that carries one.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    for name in ["x-api-key", "x-litellm-api-key"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
        m
    }

    #[test]
    fn master_key_in_any_header() {
        let a = Auth::new(Some("sk-master"));
        assert_eq!(
            a.authenticate(&h("authorization", "Bearer sk-master")).unwrap(),
            Caller::Master
        );
        assert_eq!(a.authenticate(&h("x-api-key", "sk-master")).unwrap(), Caller::Master);
        assert_eq!(
            a.authenticate(&h("x-litellm-api-key", "sk-master")).unwrap(),
            Caller::Master
        );
        assert!(a.authenticate(&h("authorization", "Bearer sk-mastex")).is_err());
        assert!(a.authenticate(&HeaderMap::new()).is_err());
        assert_eq!(Auth::new(None).authenticate(&HeaderMap::new()).unwrap(), Caller::Open);
    }
}
