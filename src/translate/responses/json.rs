//! A small JSON writer for the Responses events and objects: strings escaped as `serde_json`
//! escapes them, written into the caller's buffer (no `Value`, no intermediate string).

use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt::Write;

/// A JSON string, borrowed from the input unless it has escapes. (serde borrows a `Cow<str>`
/// field but not one inside an `Option`; `Option<Text>` does.)
#[derive(Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn cow(self) -> Cow<'a, str> {
        self.0
    }
}

/// `s` as a JSON string literal, quotes included.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Most strings need no escape: one branch-free pass (which the compiler vectorises) says so,
    // and the string goes in whole instead of byte by byte.
    if !bytes
        .iter()
        .fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\'))
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A number, in decimal (no formatting machinery).
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Any JSON value, compact.
pub fn push_value(out: &mut String, v: &Value) {
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "q\"b\\s/",
            "nl\nr\rt\tb\u{8}f\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "héllo ✓ 🚀",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn numbers_as_display_writes_them() {
        for n in [0, 7, 10, 99, 12345, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }
}
