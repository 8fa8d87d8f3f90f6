//! Translation between API dialects: Anthropic Messages <-> the canonical (OpenAI-shaped) types,
//! for requests, whole responses and event streams.
//!
//! Streams are translated event by event as they arrive: nothing is buffered beyond a partial
//! event split across network chunks.

pub mod anthropic;
pub mod responses;

use crate::sse::Framer;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;

/// Splits an SSE byte stream into owned `(event, data)` pairs, keeping partial events across
/// chunks. A convenience over [`crate::sse::Framer`], which hands out borrowed events instead.
#[derive(Default)]
pub struct SseSplitter {
    framer: Framer,
}

impl SseSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        self.framer.push(chunk, |e| {
            out.push((e.name_str().map(|n| n.into_owned()), e.data_str().into_owned()))
        });
        out
    }
}

/// Turns upstream events into client events.
pub trait EventTranslator: Send + 'static {
    fn on_event(&mut self, event: Option<&str>, data: &str, out: &mut String);
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// Wraps an upstream SSE body with `t`; chunks that translate to nothing are skipped.
pub fn stream<T: EventTranslator>(
    upstream: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    t: T,
) -> ByteStream {
    let state = (Box::pin(upstream) as ByteStream, Framer::default(), t);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut up, mut framer, mut t)| async move {
            loop {
                match up.next().await {
                    None => return None,
                    Some(Err(e)) => return Some((Err(e), (up, framer, t))),
                    Some(Ok(chunk)) => {
                        let mut out = String::new();
                        framer.push(&chunk, |e| {
                            let name = e.name.map(String::from_utf8_lossy);
                            // Upstreams send UTF-8: checked on the fast path, mended only if not.
                            match std::str::from_utf8(e.data) {
                                Ok(data) => t.on_event(name.as_deref(), data, &mut out),
                                Err(_) => t.on_event(name.as_deref(), &e.data_str(), &mut out),
                            }
                        });
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (up, framer, t)));
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"event: a\ndata: {\"x\"").is_empty());
        let ev = s.push(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(
            ev,
            vec![(Some("a".into()), "{\"x\":1}".into()), (None, "[DONE]".into())]
        );
    }
}
