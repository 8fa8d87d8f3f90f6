//! The request body's deadline (`request_body_timeout_s`), as a layer in front of every route:
//! the body a handler reads fails once the deadline passes, and the answer is a 408 in the
//! route's dialect with `Connection: close` (the rest of that body will never be read).
//!
//! Without it a client that announces 1000 bytes and sends 2 holds a connection, and a handler,
//! for as long as it likes, before any key is checked.

use crate::app::AppState;
use crate::error::{Dialect, GatewayError};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The error a body read fails with past its deadline; `api::read_body` turns it into
/// [`GatewayError::RequestTimeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s", .after.as_secs_f64())]
pub struct BodyTimeout {
    pub after: Duration,
}

/// Gives `req`'s body its deadline; the flag says, after the route answered, whether it fired.
/// A request without a body (a GET, `content-length: 0`) has nothing to wait for.
pub fn with_deadline(state: &AppState, req: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if req.body().is_end_stream() {
        return (req, None);
    }
    let after = state.config.general.server.body_timeout;
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    let req = req.map(|body| {
        Body::new(TimedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(after)),
            after,
            fired: flag,
        })
    });
    (req, Some(fired))
}

/// The answer to a request whose body deadline fired: ours (a 408 in the dialect, whatever an
/// extractor said), and the connection closes since the rest of that body will never be read.
pub fn after_deadline(
    state: &AppState,
    mut resp: Response,
    fired: Option<Arc<AtomicBool>>,
    dialect: Dialect,
) -> Response {
    if fired.is_some_and(|f| f.load(Ordering::Relaxed)) {
        if resp.status() != http::StatusCode::REQUEST_TIMEOUT {
            let after = state.config.general.server.body_timeout;
            resp = GatewayError::RequestTimeout { after }.into_response_in(dialect);
        }
        resp.headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

struct TimedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    fired: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // What has arrived is passed on first: a body complete at the deadline is complete.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.fired.store(true, Ordering::Relaxed);
            let after = self.after;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout { after }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
