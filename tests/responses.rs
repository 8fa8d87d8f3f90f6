//! `POST /v1/responses` through the gateway, against upstreams of our own: a chat-completions
//! engine (translated both ways), an Anthropic deployment (Responses -> chat -> Anthropic and
//! back), and a deployment serving Responses itself (passed through as sent); the router's
//! features on Responses requests; bad input refused in OpenAI's shape.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const MASTER: &str = "sk-master-responses";

/// `local`: an OpenAI-compatible engine on loopback (chat wire); `cloud`: an OpenAI deployment
/// serving Responses; `claude`: an Anthropic deployment; `flaky` falls back to `local`.
fn config(chat: &MockUpstream, oa: &MockUpstream, an: &MockUpstream, general: &str) -> String {
    format!(
        "model_list:
  - model_name: local
    litellm_params: {{model: openai/qwen, api_base: '{c}'}}
    model_info: {{max_output_tokens: 100}}
  - model_name: cloud
    litellm_params: {{model: openai/gpt-up, api_base: '{o}', api_key: sk-up, input_cost_per_token: 0.001, output_cost_per_token: 0.002}}
    model_info: {{local: false, supports_responses_api: true}}
  - model_name: claude
    litellm_params: {{model: anthropic/claude-up, api_base: 'http://{a}', api_key: sk-ant}}
  - model_name: dropper
    litellm_params: {{model: openai/qwen, api_base: '{c}', drop_params: true}}
  - model_name: flaky
    litellm_params: {{model: openai/broken, api_base: 'http://127.0.0.1:9', api_key: k}}
    model_info: {{local: false, supports_responses_api: false}}
router_settings:
  num_retries: 0
  fallbacks: [{{flaky: [local]}}]
general_settings:
{general}",
        c = chat.base_url(),
        o = oa.base_url(),
        a = an.addr
    )
}

async fn mocks() -> (MockUpstream, MockUpstream, MockUpstream) {
    (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    )
}

async fn create(gw: &Gateway, body: Value) -> reqwest::Response {
    gw.post("/v1/responses", body).await
}

/// The `(event, data)` pairs of an SSE body; every event's `type` must equal its name.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|ev| {
            let kind = ev.lines().find_map(|l| l.strip_prefix("event: ")).expect("event line");
            let data = ev.lines().find_map(|l| l.strip_prefix("data: ")).expect("data line");
            let v: Value = serde_json::from_str(data).expect("json data");
            assert_eq!(v["type"], kind, "{ev}");
            (kind.to_string(), v)
        })
        .collect()
}

fn kinds(ev: &[(String, Value)]) -> Vec<&str> {
    ev.iter().map(|(k, _)| k.as_str()).collect()
}

fn text_of(resp: &Value) -> String {
    resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_chat_upstream_answers_as_a_response() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let r = create(
        &gw,
        json!({"model": "local", "instructions": "Be brief.", "input": "hello there",
               "max_output_tokens": 64000, "temperature": 0.2, "reasoning": {"effort": "low"},
               "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}},
               "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
               "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": false,
               "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k1", "store": false,
               "metadata": {"tags": ["t1"]}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-route"], "local");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["object"], "response");
    assert!(b["id"].as_str().unwrap().starts_with("resp_"), "{b}");
    assert_eq!(b["status"], "completed");
    assert_eq!(text_of(&b), "echo: hello there");
    assert_eq!(b["output"][0]["role"], "assistant");
    assert!(b["output"][0]["id"].as_str().unwrap().starts_with("msg_"));
    assert!(b["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        b["usage"]["total_tokens"].as_u64().unwrap(),
        b["usage"]["input_tokens"].as_u64().unwrap() + b["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(b["instructions"], "Be brief.");
    let sent = &chat.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    let s = &sent.body;
    assert_eq!(s["model"], "qwen");
    assert_eq!(
        s["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    );
    assert_eq!(
        s["max_tokens"], 100,
        "clamped to model_info.max_output_tokens on a local engine"
    );
    assert_eq!(s["temperature"], 0.2);
    assert_eq!(s["reasoning_effort"], "low");
    assert_eq!(
        s["tools"][0],
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})
    );
    assert_eq!(
        s["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(s["parallel_tool_calls"], false);
    assert_eq!(s["response_format"]["type"], "json_schema");
    assert_eq!(s["response_format"]["json_schema"]["name"], "answer");
    for k in [
        "input",
        "instructions",
        "include",
        "prompt_cache_key",
        "store",
        "text",
        "reasoning",
        "metadata",
        "max_output_tokens",
    ] {
        assert!(s.get(k).is_none(), "{k} leaked to the chat wire: {s}");
    }
}

#[tokio::test]
async fn a_chat_upstream_streams_the_responses_events() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let r = create(&gw, json!({"model": "local", "input": [{"role": "user", "content": [{"type": "input_text", "text": "one two three"}]}], "stream": true})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let ev = events(&r.text().await.unwrap());
    let k = kinds(&ev);
    assert_eq!(
        &k[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        &k[k.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let seq: Vec<u64> = ev.iter().map(|(_, v)| v["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seq, (0..ev.len() as u64).collect::<Vec<_>>());
    let deltas: String = ev
        .iter()
        .filter(|(k, _)| k == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "echo: one two three");
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(text_of(done), "echo: one two three");
    assert!(done["usage"]["output_tokens"].as_u64().unwrap() > 0, "{done}");
    let s = &chat.requests()[0].body;
    assert_eq!(s["stream"], true);
    assert_eq!(s["stream_options"]["include_usage"], true, "usage asked for the meter");
}

#[tokio::test]
async fn function_tools_round_trip_through_a_chat_upstream() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for stream in [false, true] {
        let r = create(
            &gw,
            json!({"model": "local", "input": "what is the weather?", "tools": tools, "stream": stream}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let out = if stream {
            let ev = events(&r.text().await.unwrap());
            let k = kinds(&ev);
            assert!(k.contains(&"response.function_call_arguments.delta"), "{k:?}");
            let args: String = ev
                .iter()
                .filter(|(k, _)| k == "response.function_call_arguments.delta")
                .map(|(_, v)| v["delta"].as_str().unwrap())
                .collect();
            assert_eq!(args, "{\"city\": \"Paris\"}");
            ev.last().unwrap().1["response"].clone()
        } else {
            r.json::<Value>().await.unwrap()
        };
        let call = out["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap()
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["call_id"], "call_mock_1");
        assert_eq!(call["arguments"], "{\"city\": \"Paris\"}");
        // The second turn sends the call and its output back.
        let r = create(
            &gw,
            json!({"model": "local", "tools": tools, "stream": stream, "input": [
                {"role": "user", "content": "what is the weather?"},
                call,
                {"type": "function_call_output", "call_id": "call_mock_1", "output": "sunny"}
            ]}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let out = if stream {
            events(&r.text().await.unwrap()).last().unwrap().1["response"].clone()
        } else {
            r.json::<Value>().await.unwrap()
        };
        assert_eq!(text_of(&out), "echo: what is the weather?");
        let last = chat.requests().last().unwrap().body.clone();
        let m = last["messages"].as_array().unwrap();
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(m[1]["tool_calls"][0]["id"], "call_mock_1");
        assert_eq!(m[1]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m[2],
            json!({"role": "tool", "content": "sunny", "tool_call_id": "call_mock_1"})
        );
    }
}

#[tokio::test]
async fn an_anthropic_upstream_answers_through_the_chat_translation() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let r = create(
        &gw,
        json!({"model": "claude", "instructions": "sys", "input": "hi claude", "max_output_tokens": 50}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["object"], "response");
    assert_eq!(text_of(&b), "echo: hi claude");
    assert!(b["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = &an.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["max_tokens"], 50);
    assert_eq!(sent.body["system"], "sys");
    assert_eq!(sent.body["model"], "claude-up");

    let r = create(
        &gw,
        json!({"model": "claude", "input": "stream please", "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let ev = events(&r.text().await.unwrap());
    let k = kinds(&ev);
    assert_eq!(k[0], "response.created");
    assert_eq!(*k.last().unwrap(), "response.completed");
    assert_eq!(text_of(&ev.last().unwrap().1["response"]), "echo: stream please");
}

#[tokio::test]
async fn a_responses_deployment_gets_the_body_as_sent() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let body = json!({"model": "cloud", "input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search"}], "store": true, "previous_response_id": "resp_prev",
        "include": ["reasoning.encrypted_content"], "some_future_field": {"x": 1}, "num_retries": 0});
    let r = create(&gw, body.clone()).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["object"], "response");
    assert_eq!(b["model"], "gpt-up");
    let sent = &oa.requests()[0];
    assert_eq!(sent.path, "/v1/responses");
    let mut expect = body.clone();
    expect["model"] = json!("gpt-up");
    expect.as_object_mut().unwrap().remove("num_retries");
    assert_eq!(
        sent.body, expect,
        "the body as sent, apart from model and gateway fields"
    );
    assert_eq!(sent.headers["authorization"], "Bearer sk-up");

    // A stream is relayed as the upstream sent it.
    let r = create(&gw, json!({"model": "cloud", "input": "hi there", "stream": true})).await;
    assert_eq!(r.status(), 200);
    let ev = events(&r.text().await.unwrap());
    assert_eq!(ev.last().unwrap().0, "response.completed");
    assert_eq!(text_of(&ev.last().unwrap().1["response"]), "echo: hi there");
    assert_eq!(oa.requests()[1].body["stream"], true);
    assert!(oa.requests()[1].body.get("stream_options").is_none());
}

#[tokio::test]
async fn what_a_chat_wire_cannot_carry_is_a_clear_400_or_dropped() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let cases = [
        (
            json!({"model": "local", "input": "hi", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
        (
            json!({"model": "local", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "claude", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
    ];
    for (body, param) in cases {
        let r = create(&gw, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    }
    assert!(chat.requests().is_empty() && an.requests().is_empty());
    // Under drop_params the hosted tool is dropped and the function tool kept.
    let r = create(
        &gw,
        json!({"model": "dropper", "input": "hi", "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let s = &chat.requests()[0].body;
    assert_eq!(s["tools"], json!([{"type": "function", "function": {"name": "f"}}]));
}

#[tokio::test]
async fn bad_input_is_a_400_in_openai_shape_naming_the_param() {
    let (chat, oa, an) = mocks().await;
    let gw = spawn(&config(&chat, &oa, &an, "  disable_database: true\n")).await;
    let cases = [
        (json!({"input": "hi"}), Some("model")),
        (json!({"model": 5, "input": "hi"}), Some("model")),
        (json!({"model": "local"}), Some("input")),
        (json!({"model": "local", "input": 7}), Some("input")),
        (
            json!({"model": "local", "input": [{"type": "banana"}]}),
            Some("input[0]"),
        ),
        (
            json!({"model": "local", "input": [{"role": "wizard", "content": "x"}]}),
            Some("input[0]"),
        ),
        (
            json!({"model": "local", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
            Some("input[0].content[0]"),
        ),
        (
            json!({"model": "local", "input": [{"type": "function_call", "name": "f"}]}),
            Some("input[0]"),
        ),
        (json!({"model": "local", "input": ["just a string"]}), Some("input[0]")),
        (
            json!({"model": "local", "input": "hi", "stream": "yes"}),
            Some("stream"),
        ),
        (
            json!({"model": "local", "input": "hi", "max_output_tokens": "many"}),
            Some("max_output_tokens"),
        ),
        (
            json!({"model": "local", "input": "hi", "tools": [{"name": "f"}]}),
            Some("tools[0].type"),
        ),
        (
            json!({"model": "local", "input": "hi", "text": {"format": {"type": "xml"}}}),
            Some("text.format.type"),
        ),
    ];
    for (body, param) in cases {
        let r = create(&gw, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{body}: {e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(e["error"]["param"].as_str(), param, "{body}: {e}");
    }
    let r = gw
        .client
        .post(gw.url("/v1/responses"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"].is_string(), "{e}");
    assert!(chat.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn fallbacks_cache_and_metrics_work_for_responses() {
    let (chat, oa, an) = mocks().await;
    let general = "  disable_database: true\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: local\n";
    let gw = spawn(&config(&chat, &oa, &an, general)).await;
    // `flaky` cannot be reached: the request falls back to `local`.
    let r = create(&gw, json!({"model": "flaky", "input": "fall back"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-attempted-fallbacks"], "1");
    assert_eq!(r.headers()["x-litellm-model-group"], "local");
    assert_eq!(text_of(&r.json().await.unwrap()), "echo: fall back");
    // The cache: a second identical request is a hit, and a chat request with the same messages
    // is not served the Responses object (its own key space).
    let ask = json!({"model": "local", "input": "cache me", "temperature": 0});
    let first = create(&gw, ask.clone()).await;
    assert_eq!(first.headers()["x-switchyard-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    let second = create(&gw, ask).await;
    assert_eq!(second.headers()["x-switchyard-cache"], "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    let upstream_calls = chat.requests().len();
    let c = gw
        .chat(json!({"model": "local", "messages": user("cache me"), "temperature": 0}))
        .await;
    assert_eq!(c.headers()["x-switchyard-cache"], "miss");
    let c: Value = c.json().await.unwrap();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(chat.requests().len(), upstream_calls + 1);
    let m = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l.starts_with("litellm_requests_metric_total") && l.contains("qwen")),
        "{m}"
    );
}

#[tokio::test]
async fn keys_budgets_rate_limits_and_the_ledger_apply() {
    let (chat, oa, an) = mocks().await;
    for (db, _url, _dir) in backends().await {
        let general = format!("  master_key: {MASTER}\n  spend_logs_flush_interval: 0.05\n{db}");
        let gw = spawn(&config(&chat, &oa, &an, &general)).await;
        let key = gw
            .generate_key(MASTER, json!({"models": ["local"], "rpm_limit": 2}))
            .await;
        let send = |model: &'static str| {
            gw.client
                .post(gw.url("/v1/responses"))
                .bearer_auth(&key)
                .json(&json!({"model": model, "input": "hello ledger"}))
                .send()
        };
        let denied = send("cloud").await.unwrap();
        assert_eq!(denied.status(), 401);
        let e: Value = denied.json().await.unwrap();
        assert_eq!(e["error"]["type"], "key_model_access_denied", "{e}");
        let ok = send("local").await.unwrap();
        assert_eq!(ok.status(), 200);
        let limited = send("local").await.unwrap();
        assert_eq!(limited.status(), 429, "rpm_limit 2 counts every request");
        let e: Value = limited.json().await.unwrap();
        assert!(e["error"]["message"].is_string());
        let no_key = gw.post("/v1/responses", json!({"model": "local", "input": "x"})).await;
        assert_eq!(no_key.status(), 401);
        // The ledger row: LiteLLM's call type, the tokens the upstream reported.
        let mut rows = Vec::new();
        for _ in 0..100 {
            let r = gw
                .client
                .get(gw.url("/spend/logs"))
                .bearer_auth(MASTER)
                .send()
                .await
                .unwrap();
            rows = r.json::<Value>().await.unwrap().as_array().unwrap().clone();
            if rows.iter().any(|r| r["status"] == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let row = rows.iter().find(|r| r["status"] == 200).expect("a served row");
        assert_eq!(row["call_type"], "aresponses", "{row}");
        assert_eq!(row["model_group"], "local");
        assert!(row["prompt_tokens"].as_u64().unwrap() > 0, "{row}");
        assert!(row["completion_tokens"].as_u64().unwrap() > 0, "{row}");
        // A budget already spent refuses the paid deployment before it is called.
        let broke = gw.generate_key(MASTER, json!({"max_budget": 0.0})).await;
        let before = oa.requests().len();
        let r = gw
            .client
            .post(gw.url("/v1/responses"))
            .bearer_auth(&broke)
            .json(&json!({"model": "cloud", "input": "spend"}))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 400 || r.status() == 429, "{}", r.status());
        assert_eq!(oa.requests().len(), before);
        gw.stop().await;
    }
}

/// A streamed Responses answer is metered from its final event's `response.usage`, translated
/// (`local`, a chat engine) or passed through (`cloud`): the ledger row holds the tokens the
/// client saw, not the per-event estimate.
#[tokio::test]
async fn streamed_answers_are_metered_from_the_final_event() {
    let (chat, oa, an) = mocks().await;
    let (db, _url, _dir) = backends().await.into_iter().next().expect("a ledger backend");
    let general = format!("  master_key: {MASTER}\n  spend_logs_flush_interval: 0.05\n{db}");
    let gw = spawn(&config(&chat, &oa, &an, &general)).await;
    for (n, model) in ["local", "cloud"].into_iter().enumerate() {
        let text = gw
            .client
            .post(gw.url("/v1/responses"))
            .bearer_auth(MASTER)
            .json(&json!({"model": model, "input": "count these words for the meter", "stream": true}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let done: Value = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| v["type"] == "response.completed")
            .unwrap_or_else(|| panic!("no response.completed in {text}"));
        let usage = &done["response"]["usage"];
        assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{done}");
        let mut rows = Vec::new();
        for _ in 0..100 {
            let r = gw
                .client
                .get(gw.url("/spend/logs"))
                .bearer_auth(MASTER)
                .send()
                .await
                .unwrap();
            rows = r.json::<Value>().await.unwrap().as_array().unwrap().clone();
            if rows.len() > n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let row = rows
            .iter()
            .find(|r| r["model_group"] == model)
            .unwrap_or_else(|| panic!("no row for {model}: {rows:?}"));
        assert_eq!(row["prompt_tokens"], usage["input_tokens"], "{model}: {row} vs {usage}");
        assert_eq!(
            row["completion_tokens"], usage["output_tokens"],
            "{model}: {row} vs {usage}"
        );
    }
    gw.stop().await;
}
