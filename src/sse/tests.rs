use super::*;
use proptest::prelude::*;

/// Owned copy of an event: (name, data, raw).
type Owned = (Option<String>, String, Vec<u8>);

fn frame(chunks: &[&[u8]]) -> (Vec<Owned>, Vec<u8>) {
    let mut f = Framer::default();
    let mut out = Vec::new();
    for c in chunks {
        f.push(c, |e| {
            out.push((
                e.name_str().map(|n| n.into_owned()),
                e.data_str().into_owned(),
                e.raw.to_vec(),
            ))
        });
    }
    (out, f.take_pending())
}

/// Every way of cutting `bytes` in two, and byte by byte, frames as the whole does.
fn same_at_every_split(bytes: &[u8]) -> Vec<Owned> {
    let (whole, rest) = frame(&[bytes]);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(frame(&[a, b]), (whole.clone(), rest.clone()), "cut at {cut}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frame(&singles), (whole.clone(), rest.clone()), "byte by byte");
    whole
}

fn names_data(evs: &[Owned]) -> Vec<(Option<&str>, &str)> {
    evs.iter().map(|(n, d, _)| (n.as_deref(), d.as_str())).collect()
}

#[test]
fn crlf_comments_and_multi_line_data() {
    let s = b": keep-alive\r\n\r\nevent: a\r\ndata: one\r\ndata:two\r\nid: 7\r\n\r\ndata: [DONE]\n\n";
    let evs = same_at_every_split(s);
    assert_eq!(names_data(&evs), vec![(Some("a"), "one\ntwo"), (None, "[DONE]")]);
    // The raw bytes are what arrived, blank line included.
    assert_eq!(evs[1].2, b"data: [DONE]\n\n");
}

#[test]
fn mixed_line_endings_and_an_unfinished_tail() {
    let s = b"data: a\n\r\ndata: b\r\n\ndata: c";
    let (evs, rest) = frame(&[s]);
    assert_eq!(names_data(&evs), vec![(None, "a"), (None, "b")]);
    assert_eq!(rest, b"data: c");
    same_at_every_split(s);
}

fn kinds(dialect: Dialect, bytes: &[u8]) -> Vec<Kind> {
    let mut out = Vec::new();
    for cut in 0..=bytes.len() {
        let mut f = Framer::default();
        let mut ks = Vec::new();
        let (a, b) = bytes.split_at(cut);
        for c in [a, b] {
            f.push(c, |e| ks.push(e.kind(dialect)));
        }
        if cut == 0 {
            out = ks;
        } else {
            assert_eq!(ks, out, "cut at {cut}");
        }
    }
    out
}

#[test]
fn end_markers_split_anywhere() {
    use Kind::*;
    assert_eq!(
        kinds(Dialect::OpenAi, b"data: {\"a\":1}\n\ndata: [DONE]\n\n"),
        vec![Data, Done]
    );
    assert_eq!(
        kinds(
            Dialect::Anthropic,
            b"event: content_block_delta\ndata: {}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        ),
        vec![Data, Done]
    );
    assert_eq!(
        kinds(
            Dialect::Responses,
            b"event: response.output_text.delta\ndata: {}\n\nevent: response.completed\ndata: {}\n\n"
        ),
        vec![Data, Done]
    );
}

#[test]
fn error_events_split_anywhere() {
    use Kind::*;
    // The byte scan this replaces missed an error event split right at its line's start.
    assert_eq!(
        kinds(
            Dialect::OpenAi,
            b"data: {\"a\":1}\n\ndata: {\"error\": {\"message\": \"x\"}}\n\ndata: [DONE]\n\n"
        ),
        vec![Data, Error, Done]
    );
    assert_eq!(
        kinds(
            Dialect::Anthropic,
            b"event: ping\ndata: {}\n\nevent: error\ndata: {\"type\":\"error\"}\n\n"
        ),
        vec![Data, Error]
    );
    assert_eq!(
        kinds(Dialect::Responses, b"event: error\ndata: {\"type\":\"error\"}\n\n"),
        vec![Error]
    );
    // Content that quotes a marker is data.
    assert_eq!(
        kinds(
            Dialect::OpenAi,
            b"data: {\"content\":\"data: [DONE] {\\\"error\\\"\"}\n\n"
        ),
        vec![Data]
    );
}

#[test]
fn usage_is_seen_unless_null() {
    let ev = |d: &'static [u8]| Event {
        name: None,
        data: d,
        raw: d,
    };
    assert!(ev(b"{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}").has_usage());
    assert!(ev(b"{\"type\":\"message_delta\",\"usage\" : {\"output_tokens\":3}}").has_usage());
    assert!(!ev(b"{\"choices\":[{}],\"usage\":null}").has_usage());
    assert!(!ev(b"{\"content\":\"\\\"usage\\\": 1\"}").has_usage());
    assert!(ev(b"{\"a\":{\"usage\":null},\"usage\":{}}").has_usage());
}

fn arb_event() -> impl Strategy<Value = (Option<String>, Vec<String>)> {
    let text = "[a-z{}\":\\[\\] ]{0,12}";
    (
        proptest::option::of("[a-z_.]{1,10}"),
        proptest::collection::vec(text, 1..3),
    )
}

proptest! {
    /// Any stream of well-formed events, in `\n` or `\r\n` lines and with comments between,
    /// frames to those events however it is cut into chunks.
    #[test]
    fn frames_the_same_across_any_chunking(
        events in proptest::collection::vec(arb_event(), 0..6),
        crlf in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut s = String::new();
        let mut want = Vec::new();
        for (name, lines) in &events {
            s.push_str(&format!(": comment{nl}"));
            if let Some(n) = name {
                s.push_str(&format!("event: {n}{nl}"));
            }
            for l in lines {
                s.push_str(&format!("data: {l}{nl}"));
            }
            s.push_str(nl);
            let data = lines.join("\n");
            if name.is_some() || !data.is_empty() {
                want.push((name.clone(), data));
            }
        }
        let bytes = s.as_bytes();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in at {
            chunks.push(&bytes[prev..c]);
            prev = c;
        }
        chunks.push(&bytes[prev..]);
        let (got, rest) = frame(&chunks);
        let got: Vec<(Option<String>, String)> = got.into_iter().map(|(n, d, _)| (n, d)).collect();
        prop_assert_eq!(got, want);
        prop_assert!(rest.is_empty());
    }
}
