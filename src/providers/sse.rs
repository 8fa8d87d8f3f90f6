//! Relaying an upstream server-sent-event stream to the client chunk by chunk, as it arrives.
//!
//! Nothing is buffered: each upstream chunk is handed on at once. The relay watches for the
//! stream's end marker (`data: [DONE]`, or Anthropic's `message_stop`); if the upstream fails, stalls past the idle limit, or
//! closes without the marker, the client gets an error event in its dialect instead of a stream
//! that silently stops, and the stream's watcher is told ([`End`]): the router counts it as a
//! failure of the deployment and the meter records the request as failed ([`Fault`]).

use crate::error::{Dialect, GatewayError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How a relayed stream ended.
pub enum End<'a> {
    /// The upstream finished it (its end marker, then the close).
    Finished,
    /// The client went away first: nothing is known against the deployment.
    ClientGone,
    /// The upstream failed after the first byte; the client got an error event.
    Failed(&'a GatewayError),
}

/// Told once how the stream ended; what it holds (in-flight count, probe) is released with it.
pub type OnEnd = Box<dyn for<'a> FnOnce(End<'a>) + Send>;

/// The failure of a stream that broke after its first byte, for the request's spend row: filled
/// by the relay before the client's error event goes out, read when the stream is metered.
#[derive(Clone, Default, Debug)]
pub struct Fault(Arc<OnceLock<(u16, String)>>);

impl Fault {
    pub fn set(&self, err: &GatewayError) {
        let _ = self.0.set((err.status().as_u16(), err.to_string()));
    }

    /// The status and message of the failure, if the stream failed.
    pub fn get(&self) -> Option<(u16, &str)> {
        self.0.get().map(|(s, m)| (*s, m.as_str()))
    }
}

/// The end marker of each dialect's stream.
fn marker(d: Dialect) -> &'static [u8] {
    match d {
        Dialect::OpenAi => b"[DONE]",
        Dialect::Anthropic => b"message_stop",
        Dialect::Responses => b"response.completed",
    }
}

const MAX_MARKER: usize = 20;

type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

struct State {
    inner: Upstream,
    /// Last bytes of the previous chunk, so a marker split across chunks is still seen.
    tail: Vec<u8>,
    done_seen: bool,
    /// The upstream sent an error event of its own (vLLM and OpenAI do on a mid-stream failure,
    /// often followed by `[DONE]`): passed on as it is, and the stream counts as failed.
    error_seen: bool,
    finished: bool,
    idle: Duration,
    deployment: String,
    dialect: Dialect,
    on_end: Option<OnEnd>,
}

impl State {
    fn end(&mut self, how: End<'_>) {
        if let Some(f) = self.on_end.take() {
            f(how);
        }
    }
}

impl Drop for State {
    /// Dropped before its end: the client went away (or the server is shutting down).
    fn drop(&mut self) {
        self.end(End::ClientGone);
    }
}

/// Wraps an upstream body. `idle` bounds the wait for each next chunk; `on_end` hears how it ended.
pub fn relay(
    upstream: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    idle: Duration,
    deployment: String,
    dialect: Dialect,
    on_end: Option<OnEnd>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let state = State {
        inner: Box::pin(upstream),
        tail: Vec::with_capacity(MAX_MARKER * 2),
        done_seen: false,
        error_seen: false,
        finished: false,
        idle,
        deployment,
        dialect,
        on_end,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        let failure = match tokio::time::timeout(st.idle, st.inner.next()).await {
            Ok(Some(Ok(chunk))) => {
                if !st.error_seen {
                    st.error_seen = contains_error_event(st.dialect, &chunk);
                }
                if !st.done_seen {
                    st.done_seen = contains_done(marker(st.dialect), &st.tail, &chunk)
                        // A Responses stream cut at `max_output_tokens` ends properly too.
                        || (st.dialect == Dialect::Responses && contains_done(b"response.incomplete", &st.tail, &chunk));
                    let keep = chunk.len().min(MAX_MARKER);
                    st.tail.clear();
                    st.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
                }
                return Some((Ok(chunk), st));
            }
            Ok(None) if st.error_seen => {
                let failure = GatewayError::UpstreamProtocol {
                    deployment: st.deployment.clone(),
                    detail: "the upstream sent an error event mid-stream".into(),
                };
                tracing::warn!(error = %failure, "stream ended with an error");
                // The client already has the upstream's own error event.
                st.end(End::Failed(&failure));
                return None;
            }
            Ok(None) if st.done_seen => {
                st.end(End::Finished);
                return None;
            }
            Ok(None) => GatewayError::UpstreamProtocol {
                deployment: st.deployment.clone(),
                detail: "the upstream closed the stream before it finished".into(),
            },
            Ok(Some(Err(e))) => GatewayError::UpstreamUnreachable {
                deployment: st.deployment.clone(),
                detail: format!("the stream broke off: {e}"),
            },
            Err(_) => GatewayError::UpstreamTimeout {
                deployment: st.deployment.clone(),
                after: st.idle,
            },
        };
        tracing::warn!(error = %failure, "stream ended with an error");
        st.end(End::Failed(&failure));
        st.finished = true;
        Some((Ok(error_event(&failure, st.dialect)), st))
    })
}

/// Whether `chunk` holds an error event in the client's dialect, at the start of a line (inside
/// an event's JSON a quote or a newline is escaped, so content cannot fake one). An event split
/// across two chunks exactly there is missed; the stream then counts by how it ends.
fn contains_error_event(dialect: Dialect, chunk: &[u8]) -> bool {
    let needles: &[&[u8]] = match dialect {
        Dialect::OpenAi => &[b"data: {\"error\"", b"data:{\"error\""],
        Dialect::Anthropic | Dialect::Responses => &[b"event: error", b"event:error"],
    };
    needles
        .iter()
        .any(|n| chunk.starts_with(n) || chunk.windows(n.len() + 1).any(|w| w[0] == b'\n' && &w[1..] == *n))
}

fn contains_done(done: &[u8], tail: &[u8], chunk: &[u8]) -> bool {
    if chunk.windows(done.len()).any(|w| w == done) {
        return true;
    }
    if tail.is_empty() {
        return false;
    }
    let mut joined = Vec::with_capacity(tail.len() + done.len());
    joined.extend_from_slice(tail);
    joined.extend_from_slice(&chunk[..chunk.len().min(done.len())]);
    joined.windows(done.len()).any(|w| w == done)
}

/// One SSE event carrying `err` in the dialect's stream error format.
pub fn error_event(err: &GatewayError, dialect: Dialect) -> Bytes {
    match dialect {
        Dialect::OpenAi => Bytes::from(format!("data: {}\n\n", err.openai_body())),
        Dialect::Anthropic => Bytes::from(format!("event: error\ndata: {}\n\n", err.anthropic_body())),
        // The Responses stream's `error` event: the error object's fields at the top level.
        Dialect::Responses => {
            let mut e = err.openai_body()["error"].take();
            e["type"] = serde_json::Value::from("error");
            Bytes::from(format!("event: error\ndata: {e}\n\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_across_chunks() {
        let d = marker(Dialect::OpenAi);
        assert!(contains_done(d, b"", b"data: [DONE]\n\n"));
        assert!(contains_done(d, b"a: [DO", b"NE]\n\n"));
        assert!(!contains_done(d, b"abc", b"data: {}\n\n"));
        assert!(contains_done(marker(Dialect::Anthropic), b"event: message_st", b"op\n"));
    }

    #[tokio::test]
    async fn cut_stream_ends_with_error_event() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![Ok(Bytes::from_static(b"data: {\"a\":1}\n\n"))];
        let s = relay(
            futures_util::stream::iter(chunks),
            Duration::from_secs(1),
            "d".into(),
            Dialect::OpenAi,
            None,
        );
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(out.len(), 2);
        let last = std::str::from_utf8(&out[1]).unwrap();
        assert!(last.starts_with("data: {\"error\""), "{last}");
        assert!(last.contains("before it finished"));
    }

    #[tokio::test]
    async fn an_upstream_error_event_fails_the_stream_even_with_done() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![
            Ok(Bytes::from_static(b"data: {\"a\":1}\n\n")),
            Ok(Bytes::from_static(
                b"data: {\"error\": {\"message\": \"engine died\"}}\n\ndata: [DONE]\n\n",
            )),
        ];
        let ended = Arc::new(std::sync::Mutex::new(None));
        let seen = ended.clone();
        let on_end: OnEnd = Box::new(move |end| {
            *seen.lock().unwrap() = Some(match end {
                End::Failed(e) => e.to_string(),
                End::Finished => "finished".into(),
                End::ClientGone => "gone".into(),
            })
        });
        let s = relay(
            futures_util::stream::iter(chunks),
            Duration::from_secs(1),
            "d".into(),
            Dialect::OpenAi,
            Some(on_end),
        );
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(out.len(), 2, "passed on as it is, no second error event");
        let how = ended.lock().unwrap().clone().unwrap();
        assert!(how.contains("error event mid-stream"), "{how}");
        assert!(contains_error_event(
            Dialect::Anthropic,
            b"event: ping\n\nevent: error\ndata: {}\n\n"
        ));
        assert!(!contains_error_event(
            Dialect::OpenAi,
            b"data: {\"content\":\"data: {\\\"error\\\"\"}\n\n"
        ));
    }

    #[tokio::test]
    async fn complete_stream_passes_untouched() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![
            Ok(Bytes::from_static(b"data: {\"a\":1}\n\n")),
            Ok(Bytes::from_static(b"data: [DONE]\n\n")),
        ];
        let s = relay(
            futures_util::stream::iter(chunks),
            Duration::from_secs(1),
            "d".into(),
            Dialect::OpenAi,
            None,
        );
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(
            out,
            vec![
                Bytes::from_static(b"data: {\"a\":1}\n\n"),
                Bytes::from_static(b"data: [DONE]\n\n")
            ]
        );
    }
}
