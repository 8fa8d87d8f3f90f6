//! Metering one request: read its token usage (from the body, or from the stream as it passes),
//! price it, charge the caller's accounts, show the row to the observers (log line, metrics,
//! callbacks) and hand it to the ledger writer.

use super::cost::Tokens;
use crate::auth::Gate;
use crate::error::Dialect;
use crate::store::spend::SpendRow;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        };
    }
    // Responses usage: `input_tokens` already counts the cached ones.
    if let Some(c) = u.pointer("/input_tokens_details/cached_tokens").and_then(Value::as_u64) {
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

/// Watches a client-bound SSE stream for usage and meters the request when the stream ends
/// (finished, failed, or dropped by a client that went away). A stream whose upstream failed
/// after the first chunk (`fault`) is recorded with the failure's status and error, not as a
/// success. With `strip_usage`, the usage-only
/// event the gateway asked the upstream for is kept from a client that did not ask for it.
pub struct Tap<S> {
    inner: S,
    meter: Option<(Meter, Served)>,
    tokens: Tokens,
    saw_usage: bool,
    events: u64,
    dialect: Dialect,
    strip_usage: bool,
    /// Bytes of an event not yet complete.
    partial: Vec<u8>,
    first_at: Option<f64>,
    fault: Option<crate::providers::sse::Fault>,
}

impl<S> Tap<S> {
    pub fn new(
        inner: S,
        meter: Meter,
        served: Served,
        dialect: Dialect,
        strip_usage: bool,
        fault: Option<crate::providers::sse::Fault>,
    ) -> Self {
        Tap {
            fault,
            inner,
            meter: Some((meter, served)),
            tokens: Tokens::default(),
            saw_usage: false,
            events: 0,
            dialect,
            strip_usage,
            partial: Vec::new(),
            first_at: None,
        }
    }

    /// Reads complete events out of `chunk`; returns the bytes to pass on.
    fn scan(&mut self, chunk: Bytes) -> Bytes {
        if self.first_at.is_none() {
            if let Some((m, _)) = &self.meter {
                self.first_at = Some(m.started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(&chunk);
        let mut out: Option<Vec<u8>> = if self.strip_usage {
            Some(Vec::with_capacity(chunk.len()))
        } else {
            None
        };
        let mut start = 0;
        while let Some(end) = find(&partial[start..], b"\n\n").map(|i| start + i + 2) {
            let event = &partial[start..end];
            let keep = self.event(event);
            if let Some(o) = out.as_mut() {
                if keep {
                    o.extend_from_slice(event);
                }
            }
            start = end;
        }
        partial.drain(..start);
        self.partial = partial;
        match out {
            // Incomplete events wait for their end before they are passed on.
            Some(o) => Bytes::from(o),
            None => chunk,
        }
    }

    /// Notes one event's usage; whether the client should see it.
    fn event(&mut self, event: &[u8]) -> bool {
        self.events += 1;
        if find(event, b"usage").is_none() {
            return true;
        }
        // A Responses stream reports usage once, in its last event; the events before carry the
        // response object with `"usage": null` and need no parse.
        if self.dialect == Dialect::Responses
            && find(event, b"response.completed").is_none()
            && find(event, b"response.incomplete").is_none()
        {
            return true;
        }
        let Some(data) = event
            .split(|b| *b == b'\n')
            .find_map(|l| l.strip_prefix(b"data:"))
            .map(|d| d.strip_prefix(b" ").unwrap_or(d))
        else {
            return true;
        };
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return true;
        };
        let usage = match self.dialect {
            Dialect::OpenAi => v.get("usage").filter(|u| !u.is_null()),
            Dialect::Anthropic => v.pointer("/message/usage").or_else(|| v.get("usage")),
            // `response.created` and `response.in_progress` carry `"usage": null`.
            Dialect::Responses => v.pointer("/response/usage").filter(|u| u.is_object()),
        };
        if let Some(u) = usage {
            self.tokens = from_usage(u, self.tokens);
            self.saw_usage = true;
            let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(|c| c.is_empty());
            if self.strip_usage && usage_only {
                return false;
            }
        }
        true
    }

    fn finish(&mut self) {
        if let Some((meter, mut served)) = self.meter.take() {
            let mut t = self.tokens;
            if !self.saw_usage {
                // No usage from the upstream: servers stream about one token per event.
                t.prompt = meter.estimated_prompt;
                t.completion = self.events.saturating_sub(2);
            }
            served.ttft_ms = self.first_at;
            if let Some((status, error)) = self.fault.as_ref().and_then(|f| f.get()) {
                served.status = status;
                served.error = Some(error.to_string());
            }
            meter.finish(served, t);
        }
    }
}

impl<S: Stream<Item = Result<Bytes, E>> + Unpin, E> Stream for Tap<S> {
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = self.scan(chunk);
                    if out.is_empty() {
                        continue;
                    }
                    Poll::Ready(Some(Ok(out)))
                }
                Poll::Ready(None) => {
                    let rest = std::mem::take(&mut self.partial);
                    self.finish();
                    if self.strip_usage && !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(rest))));
                    }
                    Poll::Ready(None)
                }
                other => other,
            };
        }
    }
}

impl<S> Drop for Tap<S> {
    fn drop(&mut self) {
        self.finish();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
