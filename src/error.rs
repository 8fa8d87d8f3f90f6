//! The one error type of the request path, and its one mapping to HTTP.
//!
//! Every variant knows its status, who caused it ([`Blame`]) and whether another attempt could
//! help. Upstream-blamed errors feed the router's cooldowns; client-blamed ones never do. The body
//! is rendered in the dialect of the route that failed (OpenAI now; Anthropic plugs in beside it).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Who caused an error: decides whether it may cool a deployment down and how it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

/// The API dialect a response is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    OpenAi,
    Anthropic,
    /// OpenAI's Responses API (`/v1/responses`): OpenAI's error shape, its own event stream.
    Responses,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },

    #[error("Request body is not valid JSON: {0}")]
    MalformedJson(String),

    #[error("Request body exceeds the limit of {limit} bytes (general_settings.max_request_size_mb)")]
    PayloadTooLarge { limit: usize },

    #[error("{route}: Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key. Available models: {}", available.join(", "))]
    UnknownModel {
        route: &'static str,
        model: String,
        available: Vec<String>,
    },

    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),

    #[error("No usable deployment for model={model}: {reason}")]
    ModelUnavailable { model: String, reason: String },

    #[error("{0}")]
    Unauthorized(String),

    #[error("{0}")]
    RouteNotFound(String),

    #[error("{0}")]
    MethodNotAllowed(String),

    /// A JSON route was sent a body that is not JSON (`Content-Type` says so).
    #[error("{0}")]
    UnsupportedMediaType(String),

    /// Without a master key, a request addressed to a name other than loopback (DNS rebinding),
    /// or a browser origin that is not allowed.
    #[error("{0}")]
    Forbidden(String),

    /// A rejection from the HTTP framework (an extractor, the body limit, a bad query string),
    /// re-rendered in our shape with its own status.
    #[error("{message}")]
    Rejected { status: u16, message: String },

    /// The upstream answered with an error status; its message is relayed.
    #[error("{deployment}: upstream returned {status}: {message}")]
    Upstream {
        deployment: String,
        status: u16,
        message: String,
        error_type: Option<String>,
        param: Option<String>,
        retry_after: Option<Duration>,
    },

    #[error("{deployment}: upstream unreachable: {detail}")]
    UpstreamUnreachable { deployment: String, detail: String },

    #[error("{deployment}: upstream timed out after {}s", .after.as_secs_f64())]
    UpstreamTimeout { deployment: String, after: Duration },

    #[error("{deployment}: upstream sent an unreadable response: {detail}")]
    UpstreamProtocol { deployment: String, detail: String },

    #[error("No deployments available for selected model, Try again in {} seconds. Passed model={model}. cooldown_list={cooldown_list:?}", .retry_after.as_secs().max(1))]
    NoDeployments {
        model: String,
        retry_after: Duration,
        cooldown_list: Vec<String>,
    },

    #[error("{model}: the prompt (~{tokens} tokens) exceeds the context window of every deployment (largest {limit})")]
    ContextWindowExceeded { model: String, tokens: u64, limit: u64 },

    #[error("local deployments of {model} are saturated ({reason}) and it has no cloud deployment")]
    LocalSaturated { model: String, reason: String },

    #[error(
        "{model}: only cloud deployments could serve this request and this caller is local-only (allow_cloud: false)"
    )]
    LocalOnly { model: String },

    /// A key, team or user budget is spent and only paid deployments could serve the request.
    #[error("{message}")]
    BudgetExceeded { message: String },

    /// A key, team or user rpm/tpm/parallel limit.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },

    /// The key (or its team) may not call this model.
    #[error("{0}")]
    ModelAccessDenied(String),

    /// A key, team or user named in an admin call does not exist.
    #[error("{0}")]
    NotFound(String),

    /// `GET`/`DELETE /v1/responses/{id}` of a response that is not stored, has expired, or was
    /// stored by another key (which must not learn it exists): OpenAI's 404.
    #[error("Response with id '{0}' not found.")]
    ResponseNotFound(String),

    /// A `previous_response_id` that cannot be continued, for the same reasons: OpenAI's 400.
    #[error("Previous response with id '{0}' not found.")]
    PreviousResponseNotFound(String),

    /// The database behind keys and spend could not be reached.
    #[error("the key and spend database is unavailable: {0}")]
    StoreUnavailable(String),

    /// The client did not send its whole body within `request_body_timeout_s`.
    #[error("the request body did not arrive within {}s (general_settings.request_body_timeout_s)", .after.as_secs_f64())]
    RequestTimeout { after: Duration },

    /// The gateway is shutting down and the request outlived `shutdown_grace_s`.
    #[error("the gateway is shutting down: the request was cancelled after the {}s grace period (general_settings.shutdown_grace_s); retry it", .grace.as_secs_f64())]
    ShuttingDown { grace: Duration },

    #[error("{0}")]
    Internal(String),
}

/// LiteLLM's exception classes, which `retry_policy` and `allowed_fails_policy` are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    BadRequest,
    Authentication,
    Timeout,
    RateLimit,
    ContentPolicyViolation,
    ContextWindowExceeded,
    InternalServer,
    ServiceUnavailable,
    BadGateway,
    NotFound,
}

impl ErrorClass {
    pub fn retry_policy_key(self) -> &'static str {
        use ErrorClass::*;
        match self {
            BadRequest | ContextWindowExceeded => "BadRequestErrorRetries",
            Authentication => "AuthenticationErrorRetries",
            Timeout => "TimeoutErrorRetries",
            RateLimit => "RateLimitErrorRetries",
            ContentPolicyViolation => "ContentPolicyViolationErrorRetries",
            InternalServer | BadGateway => "InternalServerErrorRetries",
            ServiceUnavailable => "ServiceUnavailableErrorRetries",
            NotFound => "NotFoundErrorRetries",
        }
    }

    pub fn allowed_fails_key(self) -> &'static str {
        use ErrorClass::*;
        match self {
            BadRequest | ContextWindowExceeded => "BadRequestErrorAllowedFails",
            Authentication => "AuthenticationErrorAllowedFails",
            Timeout => "TimeoutErrorAllowedFails",
            RateLimit => "RateLimitErrorAllowedFails",
            ContentPolicyViolation => "ContentPolicyViolationErrorAllowedFails",
            InternalServer => "InternalServerErrorAllowedFails",
            ServiceUnavailable => "ServiceUnavailableErrorAllowedFails",
            BadGateway => "BadGatewayErrorAllowedFails",
            NotFound => "NotFoundErrorAllowedFails",
        }
    }
}

/// Phrases upstreams use when a prompt does not fit (OpenAI, vLLM, Anthropic, llama.cpp, TGI).
const CONTEXT_WINDOW_PHRASES: &[&str] = &[
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input is too long",
    "exceeds the available context",
    "reduce the length",
];

const CONTENT_POLICY_PHRASES: &[&str] = &[
    "content_policy_violation",
    "content management policy",
    "content policy",
    "safety system",
];

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidRequest { .. } | MalformedJson(_) | UnknownModel { .. } => StatusCode::BAD_REQUEST,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ModelNotFound(_) | RouteNotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Forbidden(_) => StatusCode::FORBIDDEN,
            Rejected { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            ModelUnavailable { .. } | LocalSaturated { .. } | LocalOnly { .. } => StatusCode::SERVICE_UNAVAILABLE,
            NoDeployments { .. } => StatusCode::TOO_MANY_REQUESTS,
            ContextWindowExceeded { .. } => StatusCode::BAD_REQUEST,
            Unauthorized(_) | ModelAccessDenied(_) => StatusCode::UNAUTHORIZED,
            BudgetExceeded { .. } => StatusCode::BAD_REQUEST,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            NotFound(_) | ResponseNotFound(_) => StatusCode::NOT_FOUND,
            PreviousResponseNotFound(_) => StatusCode::BAD_REQUEST,
            StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Upstream { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            UpstreamUnreachable { .. } | UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ShuttingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn blame(&self) -> Blame {
        use GatewayError::*;
        match self {
            InvalidRequest { .. }
            | MalformedJson(_)
            | PayloadTooLarge { .. }
            | UnknownModel { .. }
            | ModelNotFound(_)
            | RouteNotFound(_)
            | MethodNotAllowed(_)
            | UnsupportedMediaType(_)
            | Forbidden(_)
            | Unauthorized(_)
            | ModelAccessDenied(_)
            | BudgetExceeded { .. }
            | RateLimited { .. }
            | NotFound(_)
            | ResponseNotFound(_)
            | PreviousResponseNotFound(_)
            | RequestTimeout { .. }
            | ContextWindowExceeded { .. } => Blame::Client,
            ShuttingDown { .. } => Blame::Gateway,
            StoreUnavailable(_) => Blame::Gateway,
            ModelUnavailable { .. } | NoDeployments { .. } | LocalSaturated { .. } | Internal(_) => Blame::Gateway,
            LocalOnly { .. } => Blame::Client,
            // An upstream 4xx other than auth/rate-limit/timeout/not-found is the caller's request.
            Upstream { status, .. } => match status {
                401 | 404 | 408 | 429 => Blame::Upstream,
                400..=499 => Blame::Client,
                _ => Blame::Upstream,
            },
            UpstreamUnreachable { .. } | UpstreamTimeout { .. } | UpstreamProtocol { .. } => Blame::Upstream,
            Rejected { status, .. } if *status >= 500 => Blame::Gateway,
            Rejected { .. } => Blame::Client,
        }
    }

    /// Whether sending the same request again (to this or another deployment) could succeed.
    pub fn retryable(&self) -> bool {
        use GatewayError::*;
        match self {
            Upstream { status, .. } => matches!(status, 401 | 404 | 408 | 409 | 429 | 500..=599),
            UpstreamUnreachable { .. } | UpstreamTimeout { .. } | UpstreamProtocol { .. } => true,
            _ => false,
        }
    }

    /// Seconds the upstream (or the router, when everything is cooling) asks callers to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Upstream { retry_after, .. } => *retry_after,
            GatewayError::NoDeployments { retry_after, .. } => Some(*retry_after),
            GatewayError::RateLimited { retry_after_secs, .. } => Some(Duration::from_secs(*retry_after_secs)),
            _ => None,
        }
    }

    /// The LiteLLM exception class, for retry and cooldown policies and fallback choice.
    pub fn class(&self) -> ErrorClass {
        use GatewayError::*;
        let lower_has = |m: &str, phrases: &[&str]| {
            let m = m.to_ascii_lowercase();
            phrases.iter().any(|p| m.contains(p))
        };
        match self {
            ContextWindowExceeded { .. } => ErrorClass::ContextWindowExceeded,
            Upstream {
                status,
                message,
                error_type,
                ..
            } => {
                let text = format!("{message} {}", error_type.as_deref().unwrap_or(""));
                match status {
                    400 | 413 | 422 if lower_has(&text, CONTEXT_WINDOW_PHRASES) => ErrorClass::ContextWindowExceeded,
                    400 if lower_has(&text, CONTENT_POLICY_PHRASES) => ErrorClass::ContentPolicyViolation,
                    401 | 403 => ErrorClass::Authentication,
                    404 => ErrorClass::NotFound,
                    408 => ErrorClass::Timeout,
                    429 => ErrorClass::RateLimit,
                    502 => ErrorClass::BadGateway,
                    503 | 529 => ErrorClass::ServiceUnavailable,
                    500..=599 => ErrorClass::InternalServer,
                    _ => ErrorClass::BadRequest,
                }
            }
            UpstreamTimeout { .. } => ErrorClass::Timeout,
            UpstreamUnreachable { .. } | UpstreamProtocol { .. } => ErrorClass::InternalServer,
            NoDeployments { .. } => ErrorClass::RateLimit,
            ModelUnavailable { .. } | LocalSaturated { .. } | LocalOnly { .. } => ErrorClass::ServiceUnavailable,
            Unauthorized(_) | ModelAccessDenied(_) | Forbidden(_) => ErrorClass::Authentication,
            RateLimited { .. } => ErrorClass::RateLimit,
            StoreUnavailable(_) | ShuttingDown { .. } => ErrorClass::ServiceUnavailable,
            ModelNotFound(_) | RouteNotFound(_) | NotFound(_) | ResponseNotFound(_) => ErrorClass::NotFound,
            Internal(_) => ErrorClass::InternalServer,
            _ => ErrorClass::BadRequest,
        }
    }

    /// OpenAI's `error.type` for this error.
    pub fn openai_type(&self) -> &str {
        use GatewayError::*;
        match self {
            InvalidRequest { .. } | MalformedJson(_) | UnknownModel { .. } => "invalid_request_error",
            PayloadTooLarge { .. } => "invalid_request_error",
            ModelNotFound(_) | MethodNotAllowed(_) | UnsupportedMediaType(_) => "invalid_request_error",
            Forbidden(_) => "permission_error",
            Rejected { status, .. } => match status {
                404 => "not_found_error",
                500..=599 => "internal_server_error",
                _ => "invalid_request_error",
            },
            RouteNotFound(_) => "not_found_error",
            ModelUnavailable { .. } | LocalSaturated { .. } | LocalOnly { .. } => "service_unavailable_error",
            NoDeployments { .. } => "rate_limit_error",
            ContextWindowExceeded { .. } => "invalid_request_error",
            Unauthorized(_) => "auth_error",
            ModelAccessDenied(_) => "key_model_access_denied",
            BudgetExceeded { .. } => "budget_exceeded",
            RateLimited { .. } => "rate_limit_error",
            NotFound(_) => "not_found_error",
            ResponseNotFound(_) | PreviousResponseNotFound(_) => "invalid_request_error",
            StoreUnavailable(_) => "service_unavailable_error",
            Upstream {
                error_type: Some(t), ..
            } => t,
            Upstream { status, .. } => match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                408 => "timeout_error",
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            },
            UpstreamUnreachable { .. } | UpstreamProtocol { .. } => "api_connection_error",
            UpstreamTimeout { .. } | RequestTimeout { .. } => "timeout_error",
            ShuttingDown { .. } => "service_unavailable_error",
            Internal(_) => "internal_server_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } | GatewayError::Upstream { param, .. } => param.as_deref(),
            GatewayError::PreviousResponseNotFound(_) => Some("previous_response_id"),
            GatewayError::UnknownModel { .. } | GatewayError::ModelNotFound(_) | GatewayError::ModelAccessDenied(_) => {
                Some("model")
            }
            _ => None,
        }
    }

    /// The machine-readable code: OpenAI's own for the few it names (none for a missing stored
    /// response, as OpenAI), else the status (as LiteLLM).
    fn code(&self) -> Option<String> {
        Some(match self {
            GatewayError::ModelNotFound(_) => "model_not_found".into(),
            GatewayError::ContextWindowExceeded { .. } => "context_length_exceeded".into(),
            GatewayError::PreviousResponseNotFound(_) => "previous_response_not_found".into(),
            GatewayError::ResponseNotFound(_) => return None,
            _ => self.status().as_u16().to_string(),
        })
    }

    /// `{"error":{"message","type","param","code"}}`
    pub fn openai_body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.openai_type(),
                "param": self.param(),
                "code": self.code(),
            }
        })
    }

    /// `{"type":"error","error":{"type","message"}}`
    pub fn anthropic_body(&self) -> serde_json::Value {
        let kind = match self.status().as_u16() {
            400 | 405 | 413 | 415 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            408 | 504 => "timeout_error",
            _ => "api_error",
        };
        serde_json::json!({"type": "error", "error": {"type": kind, "message": self.to_string()}})
    }

    /// Renders this error as a complete HTTP response in `dialect`.
    pub fn into_response_in(self, dialect: Dialect) -> Response {
        let body = match dialect {
            Dialect::OpenAi | Dialect::Responses => self.openai_body(),
            Dialect::Anthropic => self.anthropic_body(),
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(after) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl Dialect {
    /// The dialect a path answers in: Anthropic's under `/v1/messages`, OpenAI's elsewhere.
    pub fn of_path(path: &str) -> Dialect {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else if path == "/v1/responses" || path.starts_with("/v1/responses/") {
            Dialect::Responses
        } else {
            Dialect::OpenAi
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.into_response_in(Dialect::OpenAi)
    }
}

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_4xx_never_blames_upstream() {
        let e = GatewayError::Upstream {
            deployment: "d".into(),
            status: 400,
            message: "bad".into(),
            error_type: None,
            param: None,
            retry_after: None,
        };
        assert_eq!(e.blame(), Blame::Client);
        assert!(!e.retryable());
        let e = GatewayError::Upstream {
            deployment: "d".into(),
            status: 429,
            message: "slow down".into(),
            error_type: None,
            param: None,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(e.blame(), Blame::Upstream);
        assert!(e.retryable());
        assert_eq!(e.openai_type(), "rate_limit_error");
    }

    #[test]
    fn openai_shape_has_string_code() {
        let body = GatewayError::MalformedJson("line 1 column 5".into()).openai_body();
        assert_eq!(body["error"]["code"], "400");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("line 1 column 5"));
    }
}
