//! Metering one request: read its token usage (from the body, or from the stream as it passes),
//! price it, charge the caller's accounts, show the row to the observers (log line, metrics,
//! callbacks) and hand it to the ledger writer.

use super::cost::Tokens;
use crate::auth::Gate;
use crate::error::Dialect;
use crate::store::spend::SpendRow;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Usage in a complete response body of either dialect.
pub fn from_body(body: &[u8]) -> Option<Tokens> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Value>,
    }
    let u = serde_json::from_slice::<WithUsage>(body).ok()?.usage?;
    Some(from_usage(&u, Tokens::default()))
}

/// Usage reported in a complete SSE body of either dialect (only events that mention usage are
/// parsed).
pub fn from_sse(body: &[u8]) -> Tokens {
    let mut t = Tokens::default();
    for line in body.split(|&b| b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        if !data.windows(7).any(|w| w == b"\"usage\"") {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) else {
            continue;
        };
        if let Some(u) = v
            .get("usage")
            .or_else(|| v.pointer("/message/usage"))
            .or_else(|| v.pointer("/response/usage"))
            .filter(|u| u.is_object())
        {
            t = from_usage(u, t);
        }
    }
    t
}

/// OpenAI's `{prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens}` or
/// Anthropic's `{input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens}`;
/// fields absent keep `prev`'s (Anthropic streams send input and output in separate events).
fn from_usage(u: &Value, prev: Tokens) -> Tokens {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    if let Some(p) = n("prompt_tokens") {
        return Tokens {
            prompt: p,
            completion: n("completion_tokens").unwrap_or(prev.completion),
            cached: u
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
        };
    }
    // The Responses API counts cached tokens inside `input_tokens`; Anthropic beside them.
    // `get` chains, not `Value::pointer`, which allocates for each step of its path.
    if let Some(c) = u
        .get("input_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
    {
        return Tokens {
            prompt: n("input_tokens").unwrap_or(prev.prompt),
            completion: n("output_tokens").unwrap_or(prev.completion),
            cached: c,
        };
    }
    let cached = n("cache_read_input_tokens");
    let input = n("input_tokens").map(|i| i + cached.unwrap_or(0) + n("cache_creation_input_tokens").unwrap_or(0));
    Tokens {
        prompt: input.unwrap_or(prev.prompt),
        completion: n("output_tokens").unwrap_or(prev.completion),
        cached: cached.unwrap_or(prev.cached),
    }
}

/// Everything about a request the ledger row needs but the response does not say.
pub struct Meter {
    /// `None` without a database: the request is still priced and observed.
    pub ledger: Option<Arc<super::writer::Ledger>>,
    pub observers: crate::telemetry::Observers,
    pub costs: Arc<super::cost::CostBook>,
    pub gate: Option<Gate>,
    pub request_id: String,
    pub call_type: &'static str,
    pub stream: bool,
    pub tags: Vec<String>,
    pub started: Instant,
    pub started_unix_ms: i64,
    /// Prompt estimate, for streams whose upstream reports no usage.
    pub estimated_prompt: u64,
}

/// What the pipeline settled on.
pub struct Served {
    pub deployment: Option<Arc<crate::config::Deployment>>,
    pub model_group: String,
    pub route: &'static str,
    pub status: u16,
    pub ttft_ms: Option<f64>,
    /// The error's message, for a request that failed.
    pub error: Option<String>,
    /// The router's reason for the route, when it gave one.
    pub reason: Option<String>,
    /// Answered from the response cache.
    pub cache_hit: bool,
}

/// The ledger keeps at most this much of an error's text (upstream bodies can be long).
const MAX_ERROR_CHARS: usize = 1000;

fn bounded_error(e: &str) -> String {
    match e.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}...", &e[..cut]),
        None => e.to_string(),
    }
}

impl Meter {
    /// Prices, charges and records one finished request.
    pub fn finish(self, served: Served, tokens: Tokens) {
        let took = self.started.elapsed();
        let (spend, cloud) = match &served.deployment {
            Some(d) if served.status < 400 => self.costs.price(d, &tokens, took),
            _ => (0.0, 0.0),
        };
        if let Some(g) = &self.gate {
            g.admission.charge(spend, tokens.prompt + tokens.completion);
        }
        let key = self.gate.as_ref().map(|g| &g.key);
        let mut tags = key.map(|k| k.tags.clone()).unwrap_or_default();
        for t in self.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let dep = served.deployment.as_deref();
        let row = SpendRow {
            id: crate::types::time_ordered_id().to_string(),
            request_id: self.request_id,
            api_key: key.map(|k| k.token.clone()),
            key_alias: key.and_then(|k| k.key_alias.clone()),
            team_id: key.and_then(|k| k.team_id.clone()),
            user_id: key.and_then(|k| k.user_id.clone()),
            model_group: served.model_group,
            model_id: dep.map(|d| d.id.clone()),
            model: dep.map(|d| d.model.clone()),
            provider: dep.map(|d| d.provider.spec().prefix.trim_end_matches('/').to_string()),
            route: served.route.to_string(),
            call_type: self.call_type.to_string(),
            prompt_tokens: tokens.prompt as i64,
            completion_tokens: tokens.completion as i64,
            cached_tokens: tokens.cached as i64,
            spend,
            cloud_equivalent: cloud,
            latency_ms: took.as_secs_f64() * 1000.0,
            ttft_ms: served.ttft_ms,
            status: i64::from(served.status),
            cache_hit: served.cache_hit,
            stream: self.stream,
            request_tags: tags,
            start_time: self.started_unix_ms,
            error: served.error.as_deref().map(bounded_error),
        };
        self.observers.request_done(&crate::telemetry::Finished {
            row: &row,
            error: served.error.as_deref(),
            reason: served.reason.as_deref(),
            gate: self.gate.as_ref(),
        });
        if let Some(ledger) = &self.ledger {
            ledger.record(row);
        }
    }
}

/// Meters a client-bound SSE stream from the events the stream layer (`providers::sse`) frames:
/// usage as it passes, the request recorded when the stream ends (finished, failed, or dropped
/// by a client that went away). A stream that failed after its first chunk is recorded with the
/// failure's status and error, not as a success. With `strip_usage`, the usage-only event the
/// gateway asked the upstream for is kept from a client that did not ask for it.
pub struct StreamMeter {
    meter: Option<(Meter, Served)>,
    tokens: Tokens,
    saw_usage: bool,
    events: u64,
    dialect: Dialect,
    strip_usage: bool,
    first_at: Option<f64>,
}

impl StreamMeter {
    pub fn new(meter: Meter, served: Served, dialect: Dialect, strip_usage: bool) -> Self {
        StreamMeter {
            meter: Some((meter, served)),
            tokens: Tokens::default(),
            saw_usage: false,
            events: 0,
            dialect,
            strip_usage,
            first_at: None,
        }
    }

    /// Whether events the client should not see may be removed (then incomplete events wait for
    /// their end before they are passed on).
    pub fn strips(&self) -> bool {
        self.strip_usage
    }

    /// The usage the upstream reported, if it did.
    pub fn tokens(&self) -> Option<Tokens> {
        self.saw_usage.then_some(self.tokens)
    }

    /// A chunk arrived (the first one is the time to first token).
    pub fn on_chunk(&mut self) {
        if self.first_at.is_none() {
            if let Some((m, _)) = &self.meter {
                self.first_at = Some(m.started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }

    /// Notes one event's usage; whether the client should see it.
    pub fn on_event(&mut self, ev: &crate::sse::Event<'_>) -> bool {
        self.events += 1;
        if !ev.has_usage() {
            return true;
        }
        // A Responses stream reports usage once, in its last event; the events before carry the
        // response object with `"usage": null` (not counted by `has_usage`) and need no parse.
        if self.dialect == Dialect::Responses
            && !ev.name_is("response.completed")
            && !ev.name_is("response.incomplete")
            && ev.name.is_some()
        {
            return true;
        }
        if self.dialect == Dialect::Responses {
            // Only `response.usage` is built; the rest of the response object (output, the
            // request's echo: tools, instructions) is skimmed.
            if let Ok(Final {
                response: Some(ResponseUsage { usage: Some(u) }),
            }) = serde_json::from_slice::<Final>(ev.data)
            {
                if u.is_object() {
                    self.tokens = from_usage(&u, self.tokens);
                    self.saw_usage = true;
                }
            }
            return true;
        }
        let Ok(v) = serde_json::from_slice::<Value>(ev.data) else {
            return true;
        };
        let usage = match self.dialect {
            Dialect::OpenAi => v.get("usage").filter(|u| !u.is_null()),
            Dialect::Anthropic => v.pointer("/message/usage").or_else(|| v.get("usage")),
            Dialect::Responses => None,
        };
        if let Some(u) = usage.filter(|u| u.is_object()) {
            self.tokens = from_usage(u, self.tokens);
            self.saw_usage = true;
            let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(|c| c.is_empty());
            if self.strip_usage && usage_only {
                return false;
            }
        }
        true
    }

    /// Records the request; `failure` is the status and error of a stream that broke.
    pub fn finish(&mut self, failure: Option<(u16, &str)>) {
        if let Some((meter, mut served)) = self.meter.take() {
            let mut t = self.tokens;
            if !self.saw_usage {
                // No usage from the upstream: servers stream about one token per event.
                t.prompt = meter.estimated_prompt;
                t.completion = self.events.saturating_sub(2);
            }
            served.ttft_ms = self.first_at;
            if let Some((status, error)) = failure {
                served.status = status;
                served.error = Some(error.to_string());
            }
            meter.finish(served, t);
        }
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A Responses stream's final event, as far as the meter reads it.
#[derive(serde::Deserialize)]
struct Final {
    #[serde(default)]
    response: Option<ResponseUsage>,
}

#[derive(serde::Deserialize)]
struct ResponseUsage {
    #[serde(default)]
    usage: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_in_both_dialects() {
        let t = from_body(
            br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        )
        .unwrap();
        assert_eq!(
            t,
            Tokens {
                prompt: 10,
                completion: 5,
                cached: 4
            }
        );
        let t = from_body(br#"{"usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":2}}"#).unwrap();
        assert_eq!(
            t,
            Tokens {
                prompt: 9,
                completion: 3,
                cached: 2
            }
        );
        assert!(from_body(b"{}").is_none());
        // Anthropic's stream: input in message_start, output in message_delta.
        let t = from_usage(
            &serde_json::json!({"output_tokens": 12}),
            Tokens {
                prompt: 9,
                completion: 1,
                cached: 0,
            },
        );
        assert_eq!(
            t,
            Tokens {
                prompt: 9,
                completion: 12,
                cached: 0
            }
        );
    }
}
