//! One client connection: served by hyper (HTTP/1.1, or HTTP/2 with prior knowledge), watched by
//! us for what hyper does not bound on its own.
//!
//! A connection is always in one of three states, read from [`Activity`]:
//! - busy: a request is in flight (from its parsed head until its response body is done); no
//!   timeout here, the body deadline (`server::body`) and the upstream timeouts bound it;
//! - reading a head: new, or bytes arrived while idle; closed past `request_header_timeout_s` (a
//!   client sending its head byte by byte no longer holds a socket for as long as it likes);
//! - idle: closed past `keep_alive_timeout_s`.
//!
//! On shutdown's drain a busy connection finishes its request and closes; an idle one closes at
//! once (hyper's graceful shutdown) and one in the middle of a head is dropped at once.

use super::limit::Slot;
use super::shutdown::Shutdown;
use crate::config::server::ServerSettings;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// `head_since` when no head is being read.
const NONE: u64 = u64::MAX;

/// What a connection is doing, shared by its IO, its requests and its watcher.
#[derive(Debug)]
struct Activity {
    born: Instant,
    /// Requests in flight (HTTP/2 may have several).
    active: AtomicUsize,
    /// Milliseconds after `born` when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds after `born` of the first byte read while idle; `NONE` when none.
    head_since: AtomicU64,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Busy,
    ReadingHead(Duration),
    Idle(Duration),
}

impl Activity {
    fn new() -> Self {
        Activity {
            born: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection owes its first head: one that connects and says nothing is closed
            // at the head timeout, not kept for the idle one.
            head_since: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        if self.active.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == NONE {
            self.head_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn state(&self) -> State {
        if self.active.load(Ordering::Relaxed) > 0 {
            return State::Busy;
        }
        let now = self.now_ms();
        match self.head_since.load(Ordering::Relaxed) {
            NONE => State::Idle(Duration::from_millis(
                now.saturating_sub(self.idle_since.load(Ordering::Relaxed)),
            )),
            since => State::ReadingHead(Duration::from_millis(now.saturating_sub(since))),
        }
    }
}

/// A request in flight on its connection, from its head until its response body is done.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now_ms(), Ordering::Relaxed);
            self.0.head_since.store(NONE, Ordering::Relaxed);
        }
    }
}

/// The socket, noting each read into the connection's activity.
struct Tracked {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The response body, holding its request's [`InFlight`] until hyper has sent it all.
pub struct TrackedBody {
    inner: Body,
    _in_flight: Option<InFlight>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as hyper calls it, with the peer's address as axum's `ConnectInfo`.
#[derive(Clone)]
struct Service {
    router: axum::Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

pin_project_lite::pin_project! {
    /// The router's future for one request, its response body tagged with the request's
    /// [`InFlight`]; a named type rather than a box, so no allocation and copy per request.
    pub struct ServiceFuture {
        #[pin]
        call: tower::util::Oneshot<axum::Router, http::Request<Body>>,
        in_flight: Option<InFlight>,
    }
}

impl Future for ServiceFuture {
    type Output = Result<http::Response<TrackedBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = match std::task::ready!(this.call.poll(cx)) {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(resp.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Service {
    type Response = http::Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        ServiceFuture {
            call: tower::ServiceExt::oneshot(self.router.clone(), req.map(Body::new)),
            in_flight: Some(in_flight),
        }
    }
}

/// The HTTP side shared by every connection of a listener.
pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own head timeout also runs while a keep-alive connection is idle; ours tells the
    // two apart (see the module doc), so hyper's is off.
    b.http1().keep_alive(true).header_read_timeout(None);
    b
}

/// How often a connection checks its timeouts: a quarter of the shorter one, within 50 ms..1 s.
fn tick(s: &ServerSettings) -> Duration {
    (s.header_timeout.min(s.idle_timeout) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Serves one connection until it ends, times out, or shutdown closes it.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    settings: Arc<ServerSettings>,
    shutdown: Shutdown,
    slot: Slot,
) {
    let _slot = slot;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        io: tcp,
        activity: activity.clone(),
    });
    let service = Service {
        router,
        activity: activity.clone(),
        peer,
    };
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut ticks = tokio::time::interval(tick(&settings));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = ticks.tick() => match activity.state() {
                State::ReadingHead(t) if t > settings.header_timeout => {
                    tracing::debug!(%peer, "request head not complete within request_header_timeout_s: connection closed");
                    return;
                }
                State::Idle(t) if t > settings.idle_timeout => {
                    tracing::debug!(%peer, "idle past keep_alive_timeout_s: connection closed");
                    return;
                }
                _ => {}
            },
            _ = shutdown.draining(), if !draining => {
                draining = true;
                if matches!(activity.state(), State::ReadingHead(_)) {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_reads_and_requests() {
        let a = Arc::new(Activity::new());
        assert!(
            matches!(a.state(), State::ReadingHead(_)),
            "a new connection owes a head"
        );
        a.on_read();
        assert!(matches!(a.state(), State::ReadingHead(_)));
        let r1 = a.begin();
        let r2 = a.begin();
        assert_eq!(a.state(), State::Busy);
        // Bytes of a body (or a pipelined head) while busy start no head timer.
        a.on_read();
        drop(r1);
        assert_eq!(a.state(), State::Busy);
        drop(r2);
        assert!(matches!(a.state(), State::Idle(_)));
        a.on_read();
        assert!(matches!(a.state(), State::ReadingHead(_)));
    }
}
