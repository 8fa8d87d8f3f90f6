//! `GET /openapi.json`: an OpenAPI 3.0 description of every route, written by hand.
//!
//! Each operation says who may call it (`x-switchyard-auth`: `none`, `key` or `master`), its JSON
//! body, its query parameters, and every status it answers with its error schema in the route's
//! dialect. `tests/exposure.rs` checks that the operations here are exactly the routes
//! `app::route_table` registers, so a new route cannot go undescribed.

use crate::app::AppState;
use crate::config::Config;
use crate::error::Dialect;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// Anyone who reaches the port (health probes, this description).
    None,
    /// The master key or a virtual key (or nothing, on an open loopback gateway).
    Key,
    /// The master key only (or nothing, on an open loopback gateway).
    Master,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Calls a model: upstream statuses, limits and budgets apply.
    Model,
    /// Keys, teams, users, spend: reads and writes the database.
    Admin,
    /// Everything else.
    Plain,
}

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    kind: Kind,
    /// The request body's schema in `components.schemas` (POST routes).
    body: Option<&'static str>,
    query: &'static [&'static str],
    /// The success body's content type and schema.
    ok: (&'static str, fn() -> Value),
}

fn any() -> Value {
    json!({})
}
fn object() -> Value {
    json!({"type": "object"})
}
fn text() -> Value {
    json!({"type": "string"})
}

const JSON: &str = "application/json";

// One operation a line reads as the table it is.
#[rustfmt::skip]
const OPS: &[Op] = &[
    Op { method: "post", path: "/v1/chat/completions", summary: "OpenAI chat completion (JSON, or SSE with stream: true)", access: Access::Key, kind: Kind::Model, body: Some("ChatCompletionRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/chat/completions", summary: "Alias of /v1/chat/completions", access: Access::Key, kind: Kind::Model, body: Some("ChatCompletionRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/v1/completions", summary: "OpenAI text completion (passed through)", access: Access::Key, kind: Kind::Model, body: Some("CompletionRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/completions", summary: "Alias of /v1/completions", access: Access::Key, kind: Kind::Model, body: Some("CompletionRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/v1/embeddings", summary: "OpenAI embeddings (passed through)", access: Access::Key, kind: Kind::Model, body: Some("EmbeddingRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/embeddings", summary: "Alias of /v1/embeddings", access: Access::Key, kind: Kind::Model, body: Some("EmbeddingRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/v1/messages", summary: "Anthropic Messages (JSON, or SSE with stream: true)", access: Access::Key, kind: Kind::Model, body: Some("MessagesRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/v1/responses", summary: "OpenAI Responses (JSON, or SSE with stream: true)", access: Access::Key, kind: Kind::Model, body: Some("ResponsesRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/v1/messages/count_tokens", summary: "Anthropic token count (an estimate)", access: Access::Key, kind: Kind::Plain, body: Some("CountTokensRequest"), query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/v1/models", summary: "Model groups this key may call", access: Access::Key, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/models", summary: "Alias of /v1/models", access: Access::Key, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/v1/models/{id}", summary: "One model group", access: Access::Key, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/models/{id}", summary: "Alias of /v1/models/{id}", access: Access::Key, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/health/liveliness", summary: "Liveness probe", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: (JSON, any) },
    Op { method: "get", path: "/health/liveness", summary: "Alias of /health/liveliness", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: (JSON, any) },
    Op { method: "get", path: "/health/readiness", summary: "Readiness probe", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/health", summary: "Calls each deployment once (optionally of ?model=)", access: Access::Master, kind: Kind::Plain, body: None, query: &["model"], ok: (JSON, object) },
    Op { method: "get", path: "/model/info", summary: "Deployments with their settings (secrets masked)", access: Access::Master, kind: Kind::Plain, body: None, query: &["litellm_model_id"], ok: (JSON, object) },
    Op { method: "get", path: "/v1/model/info", summary: "Alias of /model/info", access: Access::Master, kind: Kind::Plain, body: None, query: &["litellm_model_id"], ok: (JSON, object) },
    Op { method: "get", path: "/status", summary: "Router state: in flight, cooldowns, signals", access: Access::Master, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/key/generate", summary: "Create a virtual key", access: Access::Master, kind: Kind::Admin, body: Some("KeyRequest"), query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/key/info", summary: "A key's settings and spend (a key may read its own)", access: Access::Key, kind: Kind::Admin, body: None, query: &["key"], ok: (JSON, object) },
    Op { method: "post", path: "/key/update", summary: "Change a key", access: Access::Master, kind: Kind::Admin, body: Some("KeyRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/key/delete", summary: "Delete keys", access: Access::Master, kind: Kind::Admin, body: Some("KeyDeleteRequest"), query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/key/list", summary: "List keys", access: Access::Master, kind: Kind::Admin, body: None, query: &["page", "size", "team_id", "user_id", "key_alias", "return_full_object"], ok: (JSON, object) },
    Op { method: "post", path: "/key/regenerate", summary: "Replace a key's secret", access: Access::Master, kind: Kind::Admin, body: Some("KeyRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/team/new", summary: "Create a team", access: Access::Master, kind: Kind::Admin, body: Some("TeamRequest"), query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/team/info", summary: "A team's settings and spend", access: Access::Master, kind: Kind::Admin, body: None, query: &["team_id"], ok: (JSON, object) },
    Op { method: "post", path: "/team/update", summary: "Change a team", access: Access::Master, kind: Kind::Admin, body: Some("TeamRequest"), query: &[], ok: (JSON, object) },
    Op { method: "post", path: "/user/new", summary: "Create a user", access: Access::Master, kind: Kind::Admin, body: Some("UserRequest"), query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/user/info", summary: "A user's settings and spend", access: Access::Master, kind: Kind::Admin, body: None, query: &["user_id"], ok: (JSON, object) },
    Op { method: "get", path: "/spend/logs", summary: "Spend rows", access: Access::Master, kind: Kind::Admin, body: None, query: &["api_key", "request_id", "team_id", "user_id", "start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/spend/tags", summary: "Spend by request tag", access: Access::Master, kind: Kind::Admin, body: None, query: &["start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/global/spend", summary: "Total spend", access: Access::Master, kind: Kind::Admin, body: None, query: &["start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/global/spend/models", summary: "Spend by model", access: Access::Master, kind: Kind::Admin, body: None, query: &["limit", "start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/global/spend/keys", summary: "Spend by key", access: Access::Master, kind: Kind::Admin, body: None, query: &["limit", "start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/global/spend/report", summary: "Spend report by day", access: Access::Master, kind: Kind::Admin, body: None, query: &["group_by", "start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/savings", summary: "What local serving saved against cloud prices", access: Access::Master, kind: Kind::Admin, body: None, query: &["start_date", "end_date"], ok: (JSON, any) },
    Op { method: "get", path: "/openapi.json", summary: "This description", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/", summary: "Name and version", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: (JSON, object) },
    Op { method: "get", path: "/metrics", summary: "Prometheus metrics (master key beyond loopback; see README)", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: ("text/plain", text) },
    Op { method: "get", path: "/metrics/", summary: "Alias of /metrics", access: Access::None, kind: Kind::Plain, body: None, query: &[], ok: ("text/plain", text) },
];

/// The statuses an operation may answer besides 200, with why.
fn errors(op: &Op) -> Vec<(u16, &'static str)> {
    // Every route: a non-loopback Host on a gateway without a master key.
    let mut out = vec![(
        403,
        "Host is not loopback (no master key set), or the key may not do this",
    )];
    if op.access != Access::None || op.path.starts_with("/metrics") {
        out.push((401, "No key, or a key that may not call this route"));
    }
    if op.body.is_some() || !op.query.is_empty() || op.path.contains('{') || op.kind == Kind::Model {
        out.push((400, "Malformed JSON, a field of the wrong type, or a bad query string"));
    }
    if op.body.is_some() {
        out.push((413, "Body larger than general_settings.max_request_size_mb"));
        out.push((415, "Content-Type is not JSON"));
    }
    if op.path.contains('{') || op.kind != Kind::Plain {
        out.push((404, "No such model, key, team or user"));
    }
    match op.kind {
        Kind::Model => out.extend([
            (408, "The upstream timed out the request"),
            (422, "The upstream refused the request"),
            (429, "A key, team or user limit, or every deployment cooling down"),
            (500, "The upstream failed"),
            (502, "The upstream is unreachable or answered something unreadable"),
            (503, "No usable deployment (local saturated, local-only, unavailable)"),
            (504, "The upstream timed out"),
        ]),
        Kind::Admin => out.push((503, "The key and spend database is unavailable, or none is configured")),
        Kind::Plain => {}
    }
    out.sort_unstable();
    out
}

fn error_ref(op: &Op) -> Value {
    match Dialect::of_path(op.path) {
        Dialect::Anthropic => json!({"$ref": "#/components/schemas/AnthropicError"}),
        Dialect::OpenAi | Dialect::Responses => json!({"$ref": "#/components/schemas/OpenAIError"}),
    }
}

fn operation(op: &Op) -> Value {
    let mut o = Map::new();
    o.insert("summary".into(), op.summary.into());
    o.insert(
        "operationId".into(),
        format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")).into(),
    );
    let auth = match op.access {
        Access::None => "none",
        Access::Key => "key",
        Access::Master => "master",
    };
    o.insert("x-switchyard-auth".into(), auth.into());
    let security = match op.access {
        Access::None => json!([]),
        _ => json!([{"bearer": []}, {"x-api-key": []}]),
    };
    o.insert("security".into(), security);
    let mut params: Vec<Value> = op
        .query
        .iter()
        .map(|q| json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}}))
        .collect();
    if op.path.contains("{id}") {
        params.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), params.into());
    }
    if let Some(schema) = op.body {
        o.insert(
            "requestBody".into(),
            json!({"required": true, "content": {JSON: {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
        );
    }
    let mut responses = Map::new();
    let (ct, schema) = op.ok;
    let mut ok = json!({"description": "OK", "content": {ct: {"schema": schema()}}});
    if op.kind == Kind::Model {
        ok["content"]["text/event-stream"] = json!({"schema": {"type": "string"}});
    }
    responses.insert("200".into(), ok);
    for (status, why) in errors(op) {
        responses.insert(
            status.to_string(),
            json!({"description": why, "content": {JSON: {"schema": error_ref(op)}}}),
        );
    }
    o.insert("responses".into(), responses.into());
    o.into()
}

fn schemas() -> Value {
    let message = json!({
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {"nullable": true, "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"}
        }
    });
    let anthropic_message = json!({
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}
        }
    });
    json!({
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": "string", "nullable": true},
                    "code": {"type": "string", "nullable": true}
                }
            }}
        },
        "AnthropicError": {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"type": "string", "enum": ["error"]},
                "error": {
                    "type": "object",
                    "required": ["type", "message"],
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}}
                }
            }
        },
        "ChatMessage": message,
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ChatMessage"}},
                "stream": {"type": "boolean"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "user": {"type": "string"},
                "metadata": {"type": "object"}
            }
        },
        "CompletionRequest": {
            "type": "object",
            "required": ["model", "prompt"],
            "properties": {
                "model": {"type": "string"},
                "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "max_tokens": {"type": "integer", "minimum": 1},
                "stream": {"type": "boolean"}
            }
        },
        "EmbeddingRequest": {
            "type": "object",
            "required": ["model", "input"],
            "properties": {
                "model": {"type": "string"},
                "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
            }
        },
        "AnthropicMessage": anthropic_message,
        "MessagesRequest": {
            "type": "object",
            "required": ["model", "max_tokens", "messages"],
            "properties": {
                "model": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "messages": {"type": "array", "items": {"$ref": "#/components/schemas/AnthropicMessage"}},
                "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                "stream": {"type": "boolean"}
            }
        },
        "ResponsesRequest": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": {"type": "string"},
                "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                "instructions": {"type": "string"},
                "tools": {"type": "array", "items": {"type": "object"}},
                "max_output_tokens": {"type": "integer", "minimum": 1},
                "stream": {"type": "boolean"},
                "store": {"type": "boolean"},
                "previous_response_id": {"type": "string"}
            }
        },
        "CountTokensRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "items": {"$ref": "#/components/schemas/AnthropicMessage"}},
                "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                "tools": {"type": "array", "items": {"type": "object"}}
            }
        },
        "KeyRequest": {
            "type": "object",
            "properties": {
                "key": {"type": "string"},
                "key_alias": {"type": "string"},
                "models": {"type": "array", "items": {"type": "string"}},
                "max_budget": {"type": "number", "nullable": true},
                "budget_duration": {"type": "string"},
                "rpm_limit": {"type": "integer", "nullable": true},
                "tpm_limit": {"type": "integer", "nullable": true},
                "max_parallel_requests": {"type": "integer", "nullable": true},
                "team_id": {"type": "string"},
                "user_id": {"type": "string"},
                "duration": {"type": "string"},
                "metadata": {"type": "object"}
            }
        },
        "KeyDeleteRequest": {
            "type": "object",
            "properties": {
                "keys": {"type": "array", "items": {"type": "string"}},
                "key_aliases": {"type": "array", "items": {"type": "string"}}
            }
        },
        "TeamRequest": {
            "type": "object",
            "properties": {
                "team_id": {"type": "string"},
                "team_alias": {"type": "string"},
                "models": {"type": "array", "items": {"type": "string"}},
                "max_budget": {"type": "number", "nullable": true},
                "budget_duration": {"type": "string"},
                "rpm_limit": {"type": "integer", "nullable": true},
                "tpm_limit": {"type": "integer", "nullable": true}
            }
        },
        "UserRequest": {
            "type": "object",
            "properties": {
                "user_id": {"type": "string"},
                "user_email": {"type": "string"},
                "models": {"type": "array", "items": {"type": "string"}},
                "max_budget": {"type": "number", "nullable": true},
                "budget_duration": {"type": "string"}
            }
        }
    })
}

/// The description of what a gateway with `config` serves on its main port.
pub fn spec(config: &Config) -> Value {
    let mut paths = Map::new();
    for op in OPS {
        if op.path.starts_with("/metrics") && config.general.metrics_port.is_some() {
            continue;
        }
        let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "switchyard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A local-first LLM gateway: the OpenAI and Anthropic APIs, LiteLLM's config and admin routes. \
                Errors are JSON in the route's dialect (Anthropic's under /v1/messages, OpenAI's elsewhere). \
                x-switchyard-auth says which key an operation needs; without a master key the gateway is loopback-only and open."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"}
            }
        }
    })
}

pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(spec(&state.config)).into_response()
}
