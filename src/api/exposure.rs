//! What a gateway on a reachable port must refuse or add before a handler runs, and the net that
//! puts every error in our JSON shape.
//!
//! - `Host` check (no master key): an open gateway is bound to loopback, but a web page can still
//!   reach it through DNS rebinding (`evil.example` resolving to 127.0.0.1). The browser then
//!   sends `Host: evil.example`, so only loopback names and addresses are answered.
//! - CORS: closed unless `cors_allow_origins` lists the page's origin; preflights are answered
//!   here for listed origins only.
//! - JSON bodies only ([`require_json`]): a page may POST `text/plain` or a form cross-site
//!   without a preflight; a JSON content type forces one, which closed CORS refuses.
//! - Every error response with a non-JSON body (the framework's extractor rejections, the body
//!   limit) is rendered again as a [`GatewayError`] in the route's dialect.

use crate::app::AppState;
use crate::error::{Dialect, GatewayError};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use std::net::IpAddr;

/// Longest framework error text carried into our message (they are one line).
const MAX_REJECTION_TEXT: usize = 4096;
/// Seconds a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "600";
const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// Headers a browser may send when the page's own request did not name any.
const DEFAULT_ALLOW_HEADERS: &str =
    "authorization, content-type, x-api-key, x-litellm-api-key, anthropic-version, anthropic-beta, x-request-id";
/// Response headers a page may read (rate limits, routing, the request id).
const EXPOSE_HEADERS: &str = "x-request-id, x-litellm-model-id, x-litellm-model-group, x-switchyard-route, \
    x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-limit-requests, \
    x-ratelimit-limit-tokens, retry-after";

/// Whether `host` (a `Host` header value or a listen address, with or without a port) names this
/// machine's loopback: `localhost`, `*.localhost` (RFC 6761), 127.0.0.0/8 or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]` or `[::1]:4000`
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Before a request reaches its route: without a master key, a `Host` that is not loopback is
/// refused (DNS rebinding); a CORS preflight of a configured origin is answered here. `Ok` carries
/// the allowed origin, if any, for [`finish`].
pub fn admit(state: &AppState, req: &Request, dialect: Dialect) -> Result<Option<HeaderValue>, Box<Response>> {
    if !state.auth.has_master_key() {
        check_host(req).map_err(|e| Box::new(e.into_response_in(dialect)))?;
    }
    let origin = allowed_origin(&state.config.general.cors_allow_origins, req.headers());
    if let Some(origin) = &origin {
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return Err(Box::new(preflight(origin, req.headers())));
        }
    }
    Ok(origin)
}

/// After the route answered: any error the framework produced (extractor rejections, 404, 405)
/// becomes JSON in the dialect, and an allowed origin gets its CORS headers.
pub async fn finish(state: &AppState, resp: Response, dialect: Dialect, origin: Option<HeaderValue>) -> Response {
    let mut resp = json_errors(resp, dialect).await;
    let h = resp.headers_mut();
    if !state.config.general.cors_allow_origins.is_empty() {
        // The answer depends on `Origin` whenever CORS is configured (caches must key on it).
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    resp
}

fn check_host(req: &Request) -> Result<(), GatewayError> {
    let host = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok(),
        // HTTP/2 carries the host in the URI; an HTTP/1.0 client may send none, and a browser
        // always sends one, so a request without any is not a rebinding attempt.
        None => match req.uri().authority() {
            Some(a) => Some(a.as_str()),
            None => return Ok(()),
        },
    };
    match host {
        Some(h) if is_loopback_host(h) => Ok(()),
        other => Err(GatewayError::Forbidden(format!(
            "Host {:?} is not a loopback name: without a master key switchyard only answers requests addressed to \
             localhost or 127.0.0.1 (a web page could otherwise reach it through DNS rebinding). Call it as \
             http://127.0.0.1:PORT, or set a master key (SWITCHYARD_MASTER_KEY) to serve other names.",
            other.unwrap_or("(not text)")
        ))),
    }
}

/// The value for `Access-Control-Allow-Origin` when the request's `Origin` is allowed.
fn allowed_origin(allowed: &[String], headers: &HeaderMap) -> Option<HeaderValue> {
    if allowed.is_empty() {
        return None;
    }
    let origin = headers.get(header::ORIGIN)?;
    if allowed.iter().any(|a| a == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let text = origin.to_str().ok()?.to_ascii_lowercase();
    allowed.contains(&text).then(|| origin.clone())
}

/// `204` with the CORS grant for an allowed origin's preflight.
fn preflight(origin: &HeaderValue, headers: &HeaderMap) -> Response {
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.to_str().is_ok_and(|s| !s.trim().is_empty()))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_ALLOW_HEADERS));
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    // The gateway reads keys from headers, never cookies: any header the page asks for is fine.
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("origin, access-control-request-headers"),
    );
    resp
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_type)
}

/// `application/json`, with parameters (`; charset=utf-8`) or as a `+json` suffix type.
pub fn is_json_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || (sub.ends_with("+json") && sub.len() > 5),
        _ => false,
    }
}

/// Error responses whose body is not JSON (the framework's own) become ours, status kept.
async fn json_errors(resp: Response, dialect: Dialect) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = GatewayError::Rejected {
        status: status.as_u16(),
        message: text,
    }
    .into_response_in(dialect);
    // Headers the rejection carried (`allow` on a 405, `retry-after`) still apply.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Route layer of the POST routes: their bodies are JSON, and anything else is refused with 415
/// before the handler reads it.
///
/// No `Content-Type` is read as JSON when the request carries an API key header: SDKs and curl
/// always send one, and a browser cannot add a key header cross-site without a preflight. Without
/// a key it is refused, since a page can send a body with no type (a `Blob`) cross-site.
pub async fn require_json(req: Request, next: Next) -> Response {
    let dialect = Dialect::of_path(req.uri().path());
    let refusal = match req.headers().get(header::CONTENT_TYPE) {
        Some(v) => match v.to_str() {
            Ok(ct) if is_json_type(ct) => None,
            Ok(ct) => Some(unsupported(ct)),
            Err(_) => Some(unsupported("(not text)")),
        },
        None if crate::auth::presented_key(req.headers()).is_some() => None,
        None => Some(GatewayError::UnsupportedMediaType(
            "Content-Type is missing: this route takes a JSON body; send the header `Content-Type: application/json`"
                .into(),
        )),
    };
    match refusal {
        Some(e) => e.into_response_in(dialect),
        None => next.run(req).await,
    }
}

fn unsupported(content_type: &str) -> GatewayError {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let hint = match essence.as_str() {
        "application/x-www-form-urlencoded" => " (curl -d sends this type: add -H 'Content-Type: application/json')",
        _ => "",
    };
    GatewayError::UnsupportedMediaType(format!(
        "Unsupported Content-Type {content_type:?}{hint}: this route takes a JSON body; send `Content-Type: application/json`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses() {
        for h in [
            "localhost",
            "LOCALHOST:4000",
            "localhost.",
            "app.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:4000",
            "127.8.9.10:1",
            "[::1]:4000",
            "[::1]",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:4000",
            "localhost.evil.example",
            "0.0.0.0",
            "10.0.0.1:4000",
            "[::]:4000",
            "[::1]x",
            "localhost:abc",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn json_content_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/vnd.api+json",
        ] {
            assert!(is_json_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/+json",
            "text/json",
            "",
        ] {
            assert!(!is_json_type(ct), "{ct}");
        }
    }
}
