//! The dialects at the edge: parse the wire format, call the pipeline, write the answer.

pub mod admin;
pub mod health;
pub mod openai;

use crate::error::GatewayError;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// Reads the whole body, refusing more than `limit` bytes with a 413 in our error shape.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return GatewayError::PayloadTooLarge { limit };
            }
            src = s.source();
        }
        GatewayError::invalid(format!("could not read the request body: {e}"))
    })
}

/// Parses a JSON body; syntax errors say where, shape errors say which field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::MalformedJson(
            "the body is empty; expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => GatewayError::invalid(format!("Invalid request body: {e}")),
            _ => GatewayError::MalformedJson(e.to_string()),
        }
    })
}

pub async fn not_found(req: axum::extract::Request) -> Response {
    GatewayError::RouteNotFound(format!("Route not found: {} {}", req.method(), req.uri().path())).into_response()
}

pub async fn method_not_allowed(req: axum::extract::Request) -> Response {
    GatewayError::MethodNotAllowed(format!(
        "Method {} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}
