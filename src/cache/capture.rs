//! Keeps a copy of a stream as the client receives it, and hands it over once the stream has
//! ended properly (the stream layer saw its end marker: `data: [DONE]`, `message_stop`,
//! `response.completed`). A stream that fails, is cut short, or grows past the entry bound is
//! not kept.

use crate::ledger::cost::Tokens;
use bytes::{Bytes, BytesMut};

/// Told the kept body and its usage.
type Done = Box<dyn FnOnce(Bytes, Option<Tokens>) + Send>;

pub struct Capture {
    buf: Option<BytesMut>,
    limit: usize,
    done: Option<Done>,
}

impl Capture {
    /// `done` gets the body and the usage the stream's meter read from it, if it had one.
    pub fn new(limit: usize, done: impl FnOnce(Bytes, Option<Tokens>) + Send + 'static) -> Self {
        Capture {
            buf: Some(BytesMut::new()),
            limit,
            done: Some(Box::new(done)),
        }
    }

    /// Bytes the client was sent.
    pub fn push(&mut self, chunk: &[u8]) {
        if let Some(buf) = &mut self.buf {
            if buf.len() + chunk.len() > self.limit {
                self.buf = None;
            } else {
                buf.extend_from_slice(chunk);
            }
        }
    }

    /// The stream ended; it is kept if it ended properly (`complete`).
    pub fn finish(&mut self, complete: bool, tokens: Option<Tokens>) {
        if let (Some(buf), Some(done)) = (self.buf.take(), self.done.take()) {
            if complete {
                done(buf.freeze(), tokens);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn run(chunks: &[&str], limit: usize, complete: bool) -> Option<Bytes> {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let mut cap = Capture::new(limit, move |b, _| *g.lock().unwrap() = Some(b));
        for c in chunks {
            cap.push(c.as_bytes());
        }
        cap.finish(complete, None);
        let out = got.lock().unwrap().take();
        out
    }

    #[test]
    fn keeps_complete_streams_within_the_bound() {
        let ok = run(&["data: {\"a\":1}\n\n", "data: [DONE]\n\n"], 1024, true);
        assert_eq!(ok.unwrap(), Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n"));
        assert!(run(&["data: {\"a\":1}\n\n"], 1024, false).is_none(), "cut short");
        assert!(
            run(&["data: {\"a\":1}\n\n", "data: [DONE]\n\n"], 10, true).is_none(),
            "too big"
        );
    }
}
