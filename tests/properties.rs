//! Property tests over the body parsers and translators: arbitrary bytes and arbitrary JSON never
//! panic, client input that is refused is a 400 in the dialect's shape, upstream bodies that are
//! refused blame the upstream, and the SSE splitter does not depend on how the bytes are chunked.

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchyard::api::parse_json;
use switchyard::error::{Blame, GatewayError};
use switchyard::translate::anthropic::{
    request_to_canonical, response_from_openai, response_to_openai, AnthropicToOpenAi, OpenAiToAnthropic,
};
use switchyard::translate::{EventTranslator, SseSplitter};
use switchyard::types::ChatRequest;

/// Field names and values the parsers look at, so generated JSON reaches past the first check.
const WORDS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "system",
    "max_tokens",
    "stream",
    "tools",
    "tool_choice",
    "input",
    "id",
    "name",
    "tool_use_id",
    "tool_calls",
    "source",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "user",
    "assistant",
    "tool",
    "developer",
    "stop_sequences",
    "temperature",
    "metadata",
    "choices",
    "delta",
    "usage",
    "finish_reason",
    "function",
    "arguments",
    "message_start",
    "content_block_delta",
    "message_delta",
    "input_tokens",
    "output_tokens",
    "[DONE]",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A body shaped like a request (model, messages of role + content blocks), with any values.
fn request_like() -> impl Strategy<Value = Value> {
    let block = (word(), json(), json()).prop_map(|(t, text, extra)| {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(t));
        m.insert("text".into(), text);
        m.insert("input".into(), extra.clone());
        m.insert("content".into(), extra);
        Value::Object(m)
    });
    let content = prop_oneof![json(), prop::collection::vec(block, 0..4).prop_map(Value::Array)];
    let message = (word(), content).prop_map(|(role, content)| serde_json::json!({"role": role, "content": content}));
    (
        json(),
        prop::collection::vec(message, 0..4),
        json(),
        json(),
        prop::collection::vec((word(), json()), 0..3),
    )
        .prop_map(|(model, messages, system, max_tokens, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("model".into(), model);
            m.insert("messages".into(), Value::Array(messages));
            m.insert("system".into(), system);
            m.insert("max_tokens".into(), max_tokens);
            Value::Object(m)
        })
}

fn assert_client_400(e: &GatewayError) {
    assert_eq!(e.status(), 400, "{e}");
    assert_eq!(e.blame(), Blame::Client, "{e}");
    let o = e.openai_body();
    assert!(o["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{o}");
    assert_eq!(o["error"]["code"], "400", "{o}");
    let a = e.anthropic_body();
    assert_eq!(a["type"], "error", "{a}");
    assert_eq!(a["error"]["type"], "invalid_request_error", "{a}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_to_a_request_or_a_400(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_json::<ChatRequest>(&bytes) {
            assert_client_400(&e);
        }
        if let Err(e) = parse_json::<Value>(&bytes) {
            assert_client_400(&e);
        }
    }

    #[test]
    fn any_json_parses_to_a_chat_request_or_a_400(v in prop_oneof![json(), request_like()]) {
        let bytes = serde_json::to_vec(&v).unwrap();
        match parse_json::<ChatRequest>(&bytes) {
            // What parsed serialises and parses again (extra fields are carried through).
            Ok(req) => {
                let again = serde_json::to_vec(&req).unwrap();
                prop_assert!(parse_json::<ChatRequest>(&again).is_ok());
            }
            Err(e) => assert_client_400(&e),
        }
    }

    #[test]
    fn any_anthropic_body_translates_or_is_a_400(v in prop_oneof![json(), request_like()]) {
        match request_to_canonical(v) {
            Ok(req) => {
                let bytes = serde_json::to_vec(&req).unwrap();
                prop_assert!(parse_json::<ChatRequest>(&bytes).is_ok());
            }
            Err(e) => assert_client_400(&e),
        }
    }

    #[test]
    fn any_upstream_body_translates_or_blames_the_upstream(
        v in json(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let as_json = serde_json::to_vec(&v).unwrap();
        for body in [&as_json, &bytes] {
            if let Err(e) = response_from_openai(body, "m") {
                prop_assert_eq!(e.blame(), Blame::Upstream, "{}", e);
            }
            if let Err(e) = response_to_openai(body) {
                prop_assert_eq!(e.blame(), Blame::Upstream, "{}", e);
            }
        }
    }

    #[test]
    fn any_event_sequence_translates_without_panicking(
        events in prop::collection::vec((prop::option::of(word()), prop_oneof![json().prop_map(|v| v.to_string()), ".{0,16}"]), 0..12),
    ) {
        let mut to_anthropic = OpenAiToAnthropic::new("m");
        let mut to_openai = AnthropicToOpenAi::new(true);
        let mut out = String::new();
        for (event, data) in &events {
            to_anthropic.on_event(event.as_deref(), data, &mut out);
            to_openai.on_event(event.as_deref(), data, &mut out);
        }
    }

    #[test]
    fn sse_events_do_not_depend_on_chunking(
        parts in prop::collection::vec(prop_oneof![
            Just("data: ".to_string()),
            Just("event: x\n".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("\n\n".to_string()),
            Just(": comment\n".to_string()),
            "[a-z{}\":, ]{0,6}",
        ], 0..24),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let stream: Vec<u8> = parts.concat().into_bytes();
        let whole = SseSplitter::default().push(&stream);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut split = SseSplitter::default();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in at.into_iter().chain([stream.len()]) {
            pieces.extend(split.push(&stream[from..cut]));
            from = cut;
        }
        prop_assert_eq!(whole, pieces);
    }
}

/// Through the real router: any body sent as JSON to a model route is a 400 (or served) with a
/// JSON error in the route's dialect, never a 5xx or a dropped connection.
#[test]
fn any_body_on_the_wire_is_a_400_in_the_route_dialect() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = rt.block_on(common::spawn(
        "model_list: []\ngeneral_settings:\n  disable_database: true\n",
    ));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        request_like().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    let route = prop::sample::select(vec![
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/embeddings",
    ]);
    runner
        .run(&(route, body), |(path, body)| {
            let (status, v) = rt.block_on(async {
                let r = gw
                    .client
                    .post(gw.url(path))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answered");
                let status = r.status().as_u16();
                let v: Value = r.json().await.expect("a JSON body");
                (status, v)
            });
            if status == 200 {
                prop_assert_eq!(path, "/v1/messages/count_tokens");
                return Ok(());
            }
            prop_assert_eq!(status, 400, "{} {}", path, v);
            if path.starts_with("/v1/messages") {
                prop_assert_eq!(&v["type"], "error", "{}", v);
                prop_assert_eq!(&v["error"]["type"], "invalid_request_error", "{}", v);
            } else {
                prop_assert_eq!(&v["error"]["code"], "400", "{}", v);
                prop_assert!(v["error"]["message"].is_string(), "{}", v);
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(gw.stop());
}
