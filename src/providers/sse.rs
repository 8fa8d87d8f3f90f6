//! The one stream layer: relays an upstream server-sent-event stream to the client chunk by
//! chunk, as it arrives, and feeds the events it frames (once, with [`crate::sse::Framer`]) to the
//! stream's taps: the meter (usage), the cache capture (kept if complete) and the shutdown cut.
//!
//! Nothing is buffered: each upstream chunk is handed on at once (unless the meter strips the
//! gateway's usage event, which holds an incomplete event until its end). The relay watches for the
//! stream's end marker (`data: [DONE]`, Anthropic's `message_stop`, Responses' `response.completed`);
//! if the upstream fails, stalls past the idle limit, or closes without the marker, the client gets
//! an error event in its dialect instead of a stream that silently stops, and the stream's watcher
//! is told ([`End`]): the router counts it as a failure of the deployment and the meter records the
//! request as failed.

use crate::cache::capture::Capture;
use crate::error::{Dialect, GatewayError};
use crate::ledger::meter::StreamMeter;
use crate::server::shutdown::Shutdown;
use crate::sse::{Framer, Kind};
use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// A relayed stream's handle, kept in the pipeline's outcome: the failure of a stream that broke
/// after its first byte (filled before the client's error event goes out), and the slot through
/// which the edge puts its [`Taps`] on the relay before the client starts reading it.
#[derive(Clone, Default)]
pub struct Fault(Arc<Shared>);

#[derive(Default)]
struct Shared {
    failure: OnceLock<(u16, String)>,
    taps: Mutex<Slot>,
}

#[derive(Default)]
enum Slot {
    #[default]
    Open,
    Attached(Box<Taps>),
    /// The relay is running: taps come too late to see the whole stream.
    Started,
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Fault").field(&self.0.failure.get()).finish()
    }
}

impl Fault {
    pub fn set(&self, err: &GatewayError) {
        let _ = self.0.failure.set((err.status().as_u16(), err.to_string()));
    }

    /// The status and message of the failure, if the stream failed.
    pub fn get(&self) -> Option<(u16, &str)> {
        self.0.failure.get().map(|(s, m)| (*s, m.as_str()))
    }

    /// Hands `taps` to the relay, or back if it has started.
    fn attach(&self, taps: Box<Taps>) -> Result<(), Box<Taps>> {
        let Ok(mut slot) = self.0.taps.lock() else {
            return Err(taps);
        };
        match std::mem::take(&mut *slot) {
            Slot::Open => {
                *slot = Slot::Attached(taps);
                Ok(())
            }
            Slot::Attached(prev) => {
                *slot = Slot::Attached(Box::new(prev.merge(*taps)));
                Ok(())
            }
            Slot::Started => {
                *slot = Slot::Started;
                Err(taps)
            }
        }
    }

    /// The relay starts: the taps attached so far.
    fn start(&self) -> Option<Box<Taps>> {
        let mut slot = self.0.taps.lock().ok()?;
        match std::mem::replace(&mut *slot, Slot::Started) {
            Slot::Attached(t) => Some(t),
            Slot::Open | Slot::Started => None,
        }
    }
}

/// What watches a stream besides the relay, fed from the same events.
#[derive(Default)]
pub struct Taps {
    pub meter: Option<StreamMeter>,
    pub capture: Option<Capture>,
    /// Past the shutdown grace the stream ends with an error event (neither cached nor left
    /// unmetered).
    pub shutdown: Option<Shutdown>,
}

impl Taps {
    pub fn is_empty(&self) -> bool {
        self.meter.is_none() && self.capture.is_none() && self.shutdown.is_none()
    }

    fn merge(self, o: Taps) -> Taps {
        Taps {
            meter: self.meter.or(o.meter),
            capture: self.capture.or(o.capture),
            shutdown: self.shutdown.or(o.shutdown),
        }
    }
}

/// Puts `taps` on a stream body: on the relay itself when `fault` is its handle and it has not
/// started, otherwise as a stream layer of its own around `body`.
pub fn attach(body: Body, fault: Option<&Fault>, taps: Taps, dialect: Dialect) -> Body {
    if taps.is_empty() {
        return body;
    }
    let taps = match fault {
        Some(f) => match f.attach(Box::new(taps)) {
            Ok(()) => return body,
            Err(t) => *t,
        },
        None => taps,
    };
    let inner = body.into_data_stream().map(|r| r.map_err(BoxError::from));
    let mut layer = Relay::new(Box::pin(inner), dialect, None);
    layer.set_taps(taps);
    Body::from_stream(layer)
}

type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// The relay's own duties, for a stream from an upstream (a stream the gateway made has none).
struct Duty {
    idle: Duration,
    /// Fires at most once per idle period: re-armed from `last` only when it fires early, so a
    /// chunk costs no timer update.
    timer: Pin<Box<Sleep>>,
    last: Instant,
    deployment: String,
    on_end: Option<OnEnd>,
}

/// The stream layer. See the module's documentation.
pub struct Relay {
    inner: Upstream,
    framer: Framer,
    dialect: Dialect,
    duty: Option<Duty>,
    /// Where taps may still arrive, until the first poll.
    slot: Option<Fault>,
    taps: Taps,
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Kept events, when the meter strips some (reused between chunks).
    out: Vec<u8>,
    /// The upstream's end or error, polled while gathering ready chunks: handled next.
    parked: Option<Option<Result<Bytes, BoxError>>>,
    done_seen: bool,
    /// The upstream sent an error event of its own (vLLM and OpenAI do on a mid-stream failure,
    /// often followed by `[DONE]`): passed on as it is, and the stream counts as failed.
    error_seen: bool,
    finished: bool,
}

/// Wraps an upstream body. `idle` bounds the wait for each next chunk; `on_end` hears how it ended.
pub fn relay(
    upstream: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    idle: Duration,
    deployment: String,
    dialect: Dialect,
    on_end: Option<OnEnd>,
) -> Relay {
    let duty = Duty {
        idle,
        timer: Box::pin(tokio::time::sleep(idle)),
        last: Instant::now(),
        deployment,
        on_end,
    };
    let inner = upstream.map(|r| r.map_err(BoxError::from));
    Relay::new(Box::pin(inner), dialect, Some(duty))
}

impl Relay {
    fn new(inner: Upstream, dialect: Dialect, duty: Option<Duty>) -> Self {
        Relay {
            inner,
            framer: Framer::default(),
            dialect,
            duty,
            slot: None,
            taps: Taps::default(),
            cut: None,
            out: Vec::new(),
            parked: None,
            done_seen: false,
            error_seen: false,
            finished: false,
        }
    }

    /// The handle through which the edge attaches its taps ([`attach`]).
    pub fn watched_by(mut self, fault: Fault) -> Self {
        self.slot = Some(fault);
        self
    }

    fn set_taps(&mut self, taps: Taps) {
        self.taps = std::mem::take(&mut self.taps).merge(taps);
        if self.cut.is_none() {
            self.cut = self.taps.shutdown.as_ref().map(|s| Box::pin(s.cancelled_owned()));
        }
    }

    /// Frames one chunk, feeds the taps; the bytes to pass on (`None`: nothing yet).
    fn on_chunk(&mut self, chunk: Bytes) -> Option<Bytes> {
        let dialect = self.dialect;
        let strip = self.taps.meter.as_ref().is_some_and(StreamMeter::strips);
        let carried = !self.framer.pending().is_empty();
        let (mut done, mut error, mut dropped) = (false, false, false);
        let meter = &mut self.taps.meter;
        let out = &mut self.out;
        if let Some(m) = meter.as_mut() {
            m.on_chunk();
        }
        out.clear();
        self.framer.push(&chunk, |ev| {
            match ev.kind(dialect) {
                Kind::Done => done = true,
                Kind::Error => error = true,
                Kind::Data => {}
            }
            let keep = meter.as_mut().is_none_or(|m| m.on_event(&ev));
            if strip {
                if keep {
                    out.extend_from_slice(ev.raw);
                } else {
                    dropped = true;
                }
            }
        });
        self.done_seen |= done;
        self.error_seen |= error;
        let pass = if !strip || (!carried && !dropped && self.framer.pending().is_empty()) {
            chunk
        } else if self.out.is_empty() {
            return None;
        } else {
            Bytes::copy_from_slice(&self.out)
        };
        if let Some(c) = &mut self.taps.capture {
            c.push(&pass);
        }
        Some(pass)
    }

    /// A chunk arrived: the idle limit counts from now.
    fn touch(&mut self) {
        if let Some(d) = &mut self.duty {
            d.last = Instant::now();
        }
    }

    /// Joins to `first` the chunks the upstream has ready now (one read of its socket often
    /// brings several events, each its own HTTP chunk): one write to the client instead of one
    /// each, and nothing waits.
    fn gather(&mut self, first: Bytes, cx: &mut Context<'_>) -> Bytes {
        const MAX: usize = 64 * 1024;
        let mut more: Vec<Bytes> = Vec::new();
        let mut len = first.len();
        while len < MAX {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.touch();
                    if let Some(out) = self.on_chunk(chunk) {
                        len += out.len();
                        more.push(out);
                    }
                }
                Poll::Ready(end) => {
                    self.parked = Some(end);
                    break;
                }
                Poll::Pending => break,
            }
        }
        if more.is_empty() {
            return first;
        }
        // Joined once, at its final size: no regrowth copies.
        let mut joined = bytes::BytesMut::with_capacity(len);
        joined.extend_from_slice(&first);
        more.iter().for_each(|b| joined.extend_from_slice(b));
        joined.freeze()
    }

    /// Bytes held back from the client (an incomplete event, when the meter strips).
    fn held(&mut self) -> Option<Bytes> {
        let strip = self.taps.meter.as_ref().is_some_and(StreamMeter::strips);
        let rest = self.framer.take_pending();
        (strip && !rest.is_empty()).then(|| Bytes::from(rest))
    }

    /// The stream is over: tells the watcher and the taps once.
    fn end(&mut self, how: End<'_>) {
        self.finished = true;
        let (failure, complete) = match &how {
            End::Failed(e) => (Some((e.status().as_u16(), e.to_string())), false),
            End::Finished => (None, !self.error_seen),
            End::ClientGone => (None, false),
        };
        if let Some(f) = self.duty.as_mut().and_then(|d| d.on_end.take()) {
            f(how);
        }
        if let Some(m) = &mut self.taps.meter {
            m.finish(failure.as_ref().map(|(s, e)| (*s, e.as_str())));
        }
        let tokens = self.taps.meter.as_ref().and_then(StreamMeter::tokens);
        if let Some(c) = &mut self.taps.capture {
            c.finish(complete, tokens);
        }
    }

    /// The upstream failed: the client gets an error event in its dialect, and the stream ends.
    fn fail(&mut self, failure: GatewayError) -> Poll<Option<Result<Bytes, BoxError>>> {
        tracing::warn!(error = %failure, "stream ended with an error");
        self.end(End::Failed(&failure));
        Poll::Ready(Some(Ok(error_event(&failure, self.dialect))))
    }

    fn deployment(&self) -> String {
        self.duty.as_ref().map(|d| d.deployment.clone()).unwrap_or_default()
    }

    fn on_close(&mut self) -> Poll<Option<Result<Bytes, BoxError>>> {
        let rest = self.held();
        if self.duty.is_none() {
            self.end(if self.done_seen { End::Finished } else { End::ClientGone });
        } else if self.error_seen {
            let failure = GatewayError::UpstreamProtocol {
                deployment: self.deployment(),
                detail: "the upstream sent an error event mid-stream".into(),
            };
            tracing::warn!(error = %failure, "stream ended with an error");
            // The client already has the upstream's own error event.
            self.end(End::Failed(&failure));
        } else if self.done_seen {
            self.end(End::Finished);
        } else {
            return self.fail(GatewayError::UpstreamProtocol {
                deployment: self.deployment(),
                detail: "the upstream closed the stream before it finished".into(),
            });
        }
        Poll::Ready(rest.map(Ok))
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(taps) = this.slot.take().and_then(|f| f.start()) {
            this.set_taps(*taps);
        }
        loop {
            let polled = match this.parked.take() {
                Some(p) => Poll::Ready(p),
                None => this.inner.as_mut().poll_next(cx),
            };
            match polled {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.touch();
                    if let Some(out) = this.on_chunk(chunk) {
                        return Poll::Ready(Some(Ok(this.gather(out, cx))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if this.duty.is_none() {
                        // A stream of the gateway's own: its error goes on as it is.
                        this.end(End::ClientGone);
                        return Poll::Ready(Some(Err(e)));
                    }
                    return this.fail(GatewayError::UpstreamUnreachable {
                        deployment: this.deployment(),
                        detail: format!("the stream broke off: {e}"),
                    });
                }
                Poll::Ready(None) => return this.on_close(),
                Poll::Pending => break,
            }
        }
        if let Some(cut) = &mut this.cut {
            if cut.as_mut().poll(cx).is_ready() {
                // Past the grace period: what was served is metered, nothing is cached, and the
                // upstream is let go.
                this.inner = Box::pin(futures_util::stream::empty());
                this.end(End::ClientGone);
                let err = this.taps.shutdown.as_ref().map(Shutdown::error);
                let err = err.unwrap_or(GatewayError::ShuttingDown { grace: Duration::ZERO });
                return Poll::Ready(Some(Ok(error_event(&err, this.dialect))));
            }
        }
        let mut stalled = None;
        if let Some(d) = &mut this.duty {
            while d.timer.as_mut().poll(cx).is_ready() {
                let deadline = d.last + d.idle;
                if Instant::now() >= deadline {
                    stalled = Some(d.idle);
                    break;
                }
                d.timer.as_mut().reset(deadline);
            }
        }
        if let Some(after) = stalled {
            return this.fail(GatewayError::UpstreamTimeout {
                deployment: this.deployment(),
                after,
            });
        }
        Poll::Pending
    }
}

impl Drop for Relay {
    /// Dropped before its end: the client went away (or the server is shutting down).
    fn drop(&mut self) {
        if !self.finished {
            if let Some(taps) = self.slot.take().and_then(|f| f.start()) {
                self.set_taps(*taps);
            }
            self.end(End::ClientGone);
        }
    }
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

    type Chunks = Vec<Result<Bytes, reqwest::Error>>;

    fn chunks(parts: &[&'static str]) -> Chunks {
        parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect()
    }

    /// Relays `parts`, with a capture tap; what the client got, how it ended, what was kept.
    async fn run(parts: &[&'static str], dialect: Dialect) -> (Vec<Bytes>, String, Option<Bytes>) {
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let on_end: OnEnd = Box::new(move |end| {
            *seen.lock().unwrap() = Some(match end {
                End::Failed(e) => e.to_string(),
                End::Finished => "finished".into(),
                End::ClientGone => "gone".into(),
            })
        });
        let kept = Arc::new(Mutex::new(None));
        let k = kept.clone();
        let fault = Fault::default();
        let s = relay(
            futures_util::stream::iter(chunks(parts)),
            Duration::from_secs(1),
            "d".into(),
            dialect,
            Some(on_end),
        )
        .watched_by(fault.clone());
        let taps = Taps {
            capture: Some(Capture::new(1 << 20, move |b, _| *k.lock().unwrap() = Some(b))),
            ..Default::default()
        };
        assert!(fault.attach(Box::new(taps)).is_ok());
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        let how = ended.lock().unwrap().clone().unwrap();
        let kept = kept.lock().unwrap().take();
        (out, how, kept)
    }

    #[tokio::test]
    async fn cut_stream_ends_with_error_event() {
        let (out, how, kept) = run(&["data: {\"a\":1}\n\n"], Dialect::OpenAi).await;
        assert_eq!(out.len(), 2);
        let last = std::str::from_utf8(&out[1]).unwrap();
        assert!(last.starts_with("data: {\"error\""), "{last}");
        assert!(last.contains("before it finished"));
        assert!(how.contains("before it finished"), "{how}");
        assert!(kept.is_none());
    }

    #[tokio::test]
    async fn an_upstream_error_event_fails_the_stream_even_with_done() {
        let (out, how, kept) = run(
            &[
                "data: {\"a\":1}\n\n",
                "data: {\"error\": {\"message\": \"engine died\"}}\n\ndata: [DONE]\n\n",
            ],
            Dialect::OpenAi,
        )
        .await;
        assert_eq!(
            out.concat(),
            b"data: {\"a\":1}\n\ndata: {\"error\": {\"message\": \"engine died\"}}\n\ndata: [DONE]\n\n",
            "passed on as it is, no second error event"
        );
        assert!(how.contains("error event mid-stream"), "{how}");
        assert!(kept.is_none(), "a failed stream is not cached");
    }

    #[tokio::test]
    async fn an_error_event_split_at_its_line_start_is_seen() {
        // The byte scan this layer replaced missed exactly this split.
        let (_, how, _) = run(
            &[
                "event: ping\ndata: {}\n\n",
                "event: error\ndata: {\"type\":\"error\"}\n\n",
            ],
            Dialect::Anthropic,
        )
        .await;
        assert!(how.contains("error event mid-stream"), "{how}");
        let (_, how, _) = run(
            &["data: {\"a\":1}\n\ndata: {\"err", "or\": {}}\n\ndata: [DO", "NE]\n\n"],
            Dialect::OpenAi,
        )
        .await;
        assert!(how.contains("error event mid-stream"), "{how}");
    }

    #[tokio::test]
    async fn complete_stream_passes_untouched_and_is_kept() {
        let (out, how, kept) = run(&["data: {\"a\":1}\n\n", "data: [DO", "NE]\n\n"], Dialect::OpenAi).await;
        assert_eq!(out.concat(), b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(how, "finished");
        assert_eq!(
            kept.unwrap(),
            Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n")
        );
        let (_, how, kept) = run(
            &[
                "event: response.created\ndata: {}\n\nevent: response.comp",
                "leted\ndata: {}\n\n",
            ],
            Dialect::Responses,
        )
        .await;
        assert_eq!(how, "finished");
        assert!(kept.is_some());
    }

    #[tokio::test]
    async fn ready_chunks_go_out_together_and_the_end_still_counts() {
        let (out, how, kept) = run(
            &["data: {\"a\":1}\n\n", "data: {\"b\":2}\n\n", "data: [DONE]\n\n"],
            Dialect::OpenAi,
        )
        .await;
        assert_eq!(
            out,
            vec![Bytes::from_static(
                b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"
            )]
        );
        assert_eq!(how, "finished");
        assert!(kept.is_some());
    }

    #[tokio::test]
    async fn a_stall_past_the_idle_limit_fails() {
        let upstream =
            futures_util::stream::iter(chunks(&["data: {\"a\":1}\n\n"])).chain(futures_util::stream::pending());
        let s = relay(upstream, Duration::from_millis(30), "d".into(), Dialect::OpenAi, None);
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(out.len(), 2);
        assert!(std::str::from_utf8(&out[1]).unwrap().contains("\"error\""));
    }
}
