//! Who is calling: the key on a request, checked against the master key and the virtual keys.
//!
//! Keys are read from `Authorization: Bearer`, `x-api-key` (Anthropic's header) or
//! `x-litellm-api-key`. The master key is compared by SHA-256 digest in constant time, so neither
//! its content nor its length leaks through timing. Virtual keys are looked up by their SHA-256
//! (the only form they are stored in): a lookup by digest reveals nothing about other keys.

pub mod directory;
pub mod keys;

use crate::error::GatewayError;
use crate::limits::{self, Admission, Refusal, Reset};
use crate::routing::clock::Clock;
use directory::{Directory, KeyEntry};
use http::HeaderMap;
use keys::digest;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The master key: every model, every admin route.
    Master,
    /// No master key is configured: the gateway is bound to loopback and open to local callers.
    Open,
    /// A virtual key, with its models, budgets and limits.
    Key(Arc<KeyEntry>),
}

impl Caller {
    /// Whether this caller's requests may go to cloud (paid) deployments.
    pub fn allow_cloud(&self) -> bool {
        match self {
            Caller::Key(k) => k.allow_cloud,
            _ => true,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Master | Caller::Open)
    }

    pub fn key(&self) -> Option<&Arc<KeyEntry>> {
        match self {
            Caller::Key(k) => Some(k),
            _ => None,
        }
    }
}

/// A virtual key's request, admitted: what the pipeline checks at each deployment it picks.
pub struct Gate {
    pub key: Arc<KeyEntry>,
    pub admission: Admission,
}

impl Gate {
    pub fn allows_model(&self, requested: &str, group: &str) -> bool {
        self.key.allows_model(requested, group)
    }

    pub fn model_denied(&self, requested: &str) -> GatewayError {
        let models: Vec<String> = self
            .key
            .accounts()
            .flat_map(|a| a.with_limits(|l| l.models.clone()))
            .collect();
        GatewayError::ModelAccessDenied(format!(
            "key not allowed to access model. This key can only access models={models:?}. Tried to access {requested}"
        ))
    }
}

pub struct Auth {
    master: Option<[u8; 32]>,
    pub directory: Option<Arc<Directory>>,
}

impl Auth {
    pub fn new(master_key: Option<&str>, directory: Option<Arc<Directory>>) -> Self {
        Auth {
            master: master_key.map(digest),
            directory,
        }
    }

    pub fn has_master_key(&self) -> bool {
        self.master.is_some()
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let token = presented_key(headers);
        let Some(master) = &self.master else {
            // An open (loopback) gateway still honours a virtual key it knows, for its limits.
            if let (Some(t), Some(dir)) = (token, &self.directory) {
                if let Some(k) = dir.lookup(&keys::hash(t)).await? {
                    return key_caller(k);
                }
            }
            return Ok(Caller::Open);
        };
        let Some(token) = token else {
            return Err(GatewayError::Unauthorized(
                "Authentication Error: no API key passed in. Send it as `Authorization: Bearer <key>` (or `x-api-key`).".into(),
            ));
        };
        if bool::from(digest(token).ct_eq(master)) {
            return Ok(Caller::Master);
        }
        if let Some(dir) = &self.directory {
            if let Some(k) = dir.lookup(&keys::hash(token)).await? {
                return key_caller(k);
            }
        }
        Err(GatewayError::Unauthorized(
            "Authentication Error: invalid API key.".into(),
        ))
    }
}

fn key_caller(k: Arc<KeyEntry>) -> Result<Caller, GatewayError> {
    let now = crate::store::now_ms();
    if let Some(exp) = k.expires.filter(|e| *e <= now) {
        return Err(GatewayError::Unauthorized(format!(
            "Authentication Error - Expired Key. Key Expiry time {} and current time {}",
            exp / 1000,
            now / 1000
        )));
    }
    if let Some(a) = k.accounts().find(|a| a.with_limits(|l| l.blocked)) {
        return Err(GatewayError::Unauthorized(format!(
            "Authentication Error - this {:?} is blocked ({})",
            a.principal,
            if a.principal == crate::store::spend::Principal::Key {
                "key"
            } else {
                &a.id
            }
        )));
    }
    Ok(Caller::Key(k))
}

/// Admits a virtual key's request against its key, team and user limits (`now` in unix ms rolls
/// budget periods; the rate windows run on `clock`).
pub fn admit(
    key: &Arc<KeyEntry>,
    now: i64,
    clock: &Arc<dyn Clock>,
    resets: &mut Vec<Reset>,
) -> Result<Gate, Box<Refusal>> {
    let admission = limits::admit(key.accounts().cloned().collect(), now, clock, resets)?;
    Ok(Gate {
        key: key.clone(),
        admission,
    })
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
        let a = Auth::new(Some("sk-master"), None);
        let auth = |h: HeaderMap| futures_util::FutureExt::now_or_never(a.authenticate(&h)).unwrap();
        assert!(matches!(
            auth(h("authorization", "Bearer sk-master")),
            Ok(Caller::Master)
        ));
        assert!(matches!(auth(h("x-api-key", "sk-master")), Ok(Caller::Master)));
        assert!(matches!(auth(h("x-litellm-api-key", "sk-master")), Ok(Caller::Master)));
        assert!(auth(h("authorization", "Bearer sk-mastex")).is_err());
        assert!(auth(HeaderMap::new()).is_err());
        let open = Auth::new(None, None);
        assert!(matches!(
            futures_util::FutureExt::now_or_never(open.authenticate(&HeaderMap::new())).unwrap(),
            Ok(Caller::Open)
        ));
    }
}
