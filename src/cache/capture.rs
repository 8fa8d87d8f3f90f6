//! Keeps a copy of a stream as the client receives it, and hands it over once the stream has
//! ended properly (`data: [DONE]`, or Anthropic's `message_stop`). A stream that fails, is cut
//! short, or grows past the entry bound is not kept.

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct Capture<S> {
    inner: S,
    buf: Option<BytesMut>,
    limit: usize,
    done: Option<Box<dyn FnOnce(Bytes) + Send>>,
}

impl<S> Capture<S> {
    pub fn new(inner: S, limit: usize, done: impl FnOnce(Bytes) + Send + 'static) -> Self {
        Capture {
            inner,
            buf: Some(BytesMut::new()),
            limit,
            done: Some(Box::new(done)),
        }
    }
}

/// Whether a captured SSE body ended the way a complete stream ends.
pub fn complete(body: &[u8]) -> bool {
    let tail = &body[body.len().saturating_sub(256)..];
    let has = |needle: &[u8]| tail.windows(needle.len()).any(|w| w == needle);
    has(b"data: [DONE]") || has(b"message_stop")
}

impl<S: Stream<Item = Result<Bytes, E>> + Unpin, E> Stream for Capture<S> {
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let limit = self.limit;
                if let Some(buf) = &mut self.buf {
                    if buf.len() + chunk.len() > limit {
                        self.buf = None;
                    } else {
                        buf.extend_from_slice(chunk);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.buf = None,
            Poll::Ready(None) => {
                if let (Some(buf), Some(done)) = (self.buf.take(), self.done.take()) {
                    let body = buf.freeze();
                    if complete(&body) {
                        done(body);
                    }
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};

    async fn run(chunks: Vec<Result<&'static str, ()>>, limit: usize) -> Option<Bytes> {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let s = futures_util::stream::iter(chunks.into_iter().map(|c| c.map(|s| Bytes::from_static(s.as_bytes()))));
        let mut cap = Capture::new(s, limit, move |b| *g.lock().unwrap() = Some(b));
        while cap.next().await.is_some() {}
        let out = got.lock().unwrap().take();
        out
    }

    #[tokio::test]
    async fn keeps_complete_streams_only() {
        let ok = run(vec![Ok("data: {\"a\":1}\n\n"), Ok("data: [DONE]\n\n")], 1024).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n"));
        assert!(run(vec![Ok("data: {\"a\":1}\n\n")], 1024).await.is_none(), "cut short");
        assert!(run(vec![Ok("data: x\n\n"), Err(()), Ok("data: [DONE]\n\n")], 1024)
            .await
            .is_none());
        assert!(
            run(vec![Ok("data: {\"a\":1}\n\n"), Ok("data: [DONE]\n\n")], 10)
                .await
                .is_none(),
            "too big"
        );
        let anthropic = run(
            vec![Ok("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")],
            1024,
        )
        .await;
        assert!(anthropic.is_some());
    }
}
