//! The one server-sent-event parser: an incremental framer that splits a byte stream into events,
//! and the typed view of an event (end marker, error event, usage) for each client dialect.
//!
//! The stream layer (`providers::sse`), the meter, the cache capture and the translators all read
//! the events it yields, so a stream is framed once. Events are handed out as slices of the chunk
//! they arrived in; only an event split across chunks is copied (into the carried tail), and only
//! a multi-line `data` field is joined into a scratch buffer.

use crate::error::Dialect;
use memchr::memmem;
use std::sync::OnceLock;

/// One event: its `event:` name, its `data` (lines joined with `\n`) and its raw bytes, blank
/// line included, as they were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: Option<&'a [u8]>,
    pub data: &'a [u8],
    pub raw: &'a [u8],
}

impl<'a> Event<'a> {
    pub fn name_is(&self, n: &str) -> bool {
        self.name == Some(n.as_bytes())
    }

    /// What the event means to the relay, for a stream in `dialect`.
    pub fn kind(&self, dialect: Dialect) -> Kind {
        match dialect {
            Dialect::OpenAi => {
                if self.data == b"[DONE]" {
                    Kind::Done
                } else if self.data.starts_with(b"{\"error\"") || self.name_is("error") {
                    Kind::Error
                } else {
                    Kind::Data
                }
            }
            Dialect::Anthropic => {
                if self.name_is("message_stop") || self.data.starts_with(b"{\"type\":\"message_stop\"") {
                    Kind::Done
                } else if self.name_is("error") {
                    Kind::Error
                } else {
                    Kind::Data
                }
            }
            Dialect::Responses => {
                // A stream cut at `max_output_tokens` ends properly too, with `response.incomplete`.
                if self.name_is("response.completed")
                    || self.name_is("response.incomplete")
                    || self.data.starts_with(b"{\"type\":\"response.completed\"")
                    || self.data.starts_with(b"{\"type\":\"response.incomplete\"")
                {
                    Kind::Done
                } else if self.name_is("error") || self.name_is("response.failed") {
                    Kind::Error
                } else {
                    Kind::Data
                }
            }
        }
    }

    /// Whether the data carries a usage object (`"usage":` not followed by `null`): the only
    /// events the meter parses.
    pub fn has_usage(&self) -> bool {
        static FINDER: OnceLock<memmem::Finder<'static>> = OnceLock::new();
        let finder = FINDER.get_or_init(|| memmem::Finder::new(b"\"usage\""));
        let mut hay = self.data;
        while let Some(i) = finder.find(hay) {
            let after = hay[i + 7..].trim_ascii_start();
            if let Some(v) = after.strip_prefix(b":") {
                if !v.trim_ascii_start().starts_with(b"null") {
                    return true;
                }
            }
            hay = &hay[i + 7..];
        }
        false
    }

    /// The data as text (lossy for invalid UTF-8, which upstreams do not send).
    pub fn data_str(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.data)
    }

    pub fn name_str(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.name.map(|n| String::from_utf8_lossy(n))
    }
}

/// An event's meaning for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The dialect's end marker: `data: [DONE]`, `message_stop`, `response.completed`.
    Done,
    /// An error event of the upstream's own (a mid-stream failure).
    Error,
    Data,
}

/// Splits SSE bytes into events across chunk boundaries. Lines end with `\n` or `\r\n`; an
/// event ends at a blank line; `:` lines are comments; `id` and `retry` are ignored.
#[derive(Default)]
pub struct Framer {
    /// The start of an event whose end has not arrived yet.
    tail: Vec<u8>,
    /// Joined `data` lines of a multi-line event.
    scratch: Vec<u8>,
}

impl Framer {
    /// Hands each complete event in `chunk` (with the carried tail before it) to `f`.
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(Event<'_>)) {
        let mut start = 0;
        if !self.tail.is_empty() {
            match end_across(&self.tail, chunk) {
                None => {
                    self.tail.extend_from_slice(chunk);
                    return;
                }
                Some(end) => {
                    self.tail.extend_from_slice(&chunk[..end]);
                    if let Some(ev) = parse(&self.tail, &mut self.scratch) {
                        f(ev);
                    }
                    self.tail.clear();
                    start = end;
                }
            }
        }
        while let Some(len) = event_end(&chunk[start..]) {
            if let Some(ev) = parse(&chunk[start..start + len], &mut self.scratch) {
                f(ev);
            }
            start += len;
        }
        self.tail.extend_from_slice(&chunk[start..]);
    }

    /// Bytes of an event not yet complete.
    pub fn pending(&self) -> &[u8] {
        &self.tail
    }

    /// Takes the incomplete event's bytes (at the end of a stream).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tail)
    }
}

/// The length of the first event in `b`, through the blank line that ends it.
fn event_end(b: &[u8]) -> Option<usize> {
    for i in memchr::memchr_iter(b'\n', b) {
        match b.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') => match b.get(i + 2) {
                Some(b'\n') => return Some(i + 3),
                Some(_) => {}
                None => return None,
            },
            Some(_) => {}
            None => return None,
        }
    }
    None
}

/// Where, in `chunk`, the event begun in `tail` ends: at a blank line that straddles the two, or
/// at the first one inside `chunk`. `tail` holds no blank line of its own.
fn end_across(tail: &[u8], chunk: &[u8]) -> Option<usize> {
    let k = tail.len().min(2);
    let mut joined = [0u8; 5];
    let head = chunk.len().min(3);
    joined[..k].copy_from_slice(&tail[tail.len() - k..]);
    joined[k..k + head].copy_from_slice(&chunk[..head]);
    let window = &joined[..k + head];
    // A blank line ending in `chunk` and starting in `tail` (the earliest possible end).
    for s in 0..k {
        if let Some(len) = event_end(&window[s..]) {
            if s + len > k {
                return Some(s + len - k);
            }
        }
    }
    event_end(chunk)
}

/// One event's fields; `None` for an event with neither a name nor data (comments, keep-alives).
fn parse<'a>(raw: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<Event<'a>> {
    let mut name = None;
    let mut first: Option<&'a [u8]> = None;
    let mut joined = false;
    // Lines found with `memchr` (a data line can be kilobytes: a Responses event carries the
    // whole response object), not byte by byte.
    let mut rest = raw;
    while !rest.is_empty() {
        let line = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                line
            }
            None => std::mem::take(&mut rest),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => name = Some(value.trim_ascii()),
            b"data" => match first {
                None => first = Some(value),
                Some(f) => {
                    if !joined {
                        scratch.clear();
                        scratch.extend_from_slice(f);
                        joined = true;
                    }
                    scratch.push(b'\n');
                    scratch.extend_from_slice(value);
                }
            },
            _ => {}
        }
    }
    let data: &'a [u8] = if joined { scratch } else { first.unwrap_or(b"") };
    if name.is_none() && data.is_empty() {
        return None;
    }
    Some(Event { name, data, raw })
}

#[cfg(test)]
mod tests;
