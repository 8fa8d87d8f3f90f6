//! Translation between API dialects: Anthropic Messages <-> the canonical (OpenAI-shaped) types,
//! for requests, whole responses and event streams.
//!
//! Streams are translated event by event as they arrive: nothing is buffered beyond a partial
//! event split across network chunks.

pub mod anthropic;
pub mod responses;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;

/// Splits an SSE byte stream into `(event, data)` pairs, keeping partial events across chunks.
#[derive(Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
}

impl SseSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(Option<String>, String)> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let text = &self.buf;
            let end = find_event_end(text);
            let Some((end, sep)) = end else { break };
            let raw = String::from_utf8_lossy(&self.buf[..end]).to_string();
            self.buf.drain(..end + sep);
            let mut event = None;
            let mut data = String::new();
            for line in raw.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if event.is_some() || !data.is_empty() {
                out.push((event, data));
            }
        }
        out
    }
}

fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(c)) => Some(if a.0 < c.0 { a } else { c }),
        (a, c) => a.or(c),
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
    let state = (Box::pin(upstream) as ByteStream, SseSplitter::default(), t);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut up, mut split, mut t)| async move {
            loop {
                match up.next().await {
                    None => return None,
                    Some(Err(e)) => return Some((Err(e), (up, split, t))),
                    Some(Ok(chunk)) => {
                        let mut out = String::new();
                        for (event, data) in split.push(&chunk) {
                            t.on_event(event.as_deref(), &data, &mut out);
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (up, split, t)));
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
