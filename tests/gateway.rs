//! Black-box tests: real HTTP into the gateway, real HTTP out to mock upstreams on 127.0.0.1.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn config(entries: &[String], tail: &str) -> String {
    format!("model_list:\n{}\n{tail}", entries.join(""))
}

#[tokio::test]
async fn chat_round_trip_with_headers() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(&[entry("m", &up, "")], "")).await;
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "req-123")
        .json(&json!({"model": "m", "messages": user("hello world")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-request-id"], "req-123");
    assert_eq!(h["x-litellm-model-id"].to_str().unwrap().len(), 64, "a sha-256 hex id");
    assert_eq!(h["x-litellm-model-api-base"], up.base_url().as_str());
    let overhead: f64 = h["x-litellm-overhead-duration-ms"].to_str().unwrap().parse().unwrap();
    assert!(overhead >= 0.0);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello world");
    assert_eq!(body["usage"]["total_tokens"], 5);
    // The upstream saw its own model id and key, and a request id.
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "up-m");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-upstream-secret");
    assert_eq!(seen[0].headers["x-request-id"], "req-123");
}

#[tokio::test]
async fn request_id_is_generated_when_absent_and_on_errors() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(&[entry("m", &up, "")], "")).await;
    let resp = gw.chat(json!({"model": "nope", "messages": user("x")})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-request-id"].to_str().unwrap().len(), 36);
}

#[tokio::test]
async fn params_pass_through_defaults_apply_and_gateway_fields_are_stripped() {
    let up = MockUpstream::start().await.unwrap();
    let extra = "      temperature: 0.2\n      max_tokens: 99\n      seed: 7\n";
    let gw = spawn(&config(&[entry("m", &up, extra)], "")).await;
    let resp = gw
        .chat(json!({
            "model": "m", "messages": user("hi"), "temperature": 0.9,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "response_format": {"type": "json_object"}, "logprobs": true,
            "api_base": "http://evil.example", "api_key": "sk-stolen", "metadata": {"tags": ["a"]},
            "disable_fallbacks": true, "num_retries": 0
        }))
        .await;
    assert_eq!(resp.status(), 200);
    let b = &up.requests()[0].body;
    assert_eq!(
        b["temperature"], 0.9,
        "the client's value wins over the deployment default"
    );
    assert_eq!(
        b["max_tokens"], 99,
        "deployment default applies when the client leaves it out"
    );
    assert_eq!(b["seed"], 7);
    assert_eq!(b["tools"][0]["function"]["name"], "f");
    assert_eq!(b["response_format"]["type"], "json_object");
    assert_eq!(b["logprobs"], true);
    for stripped in ["api_base", "api_key", "metadata", "disable_fallbacks", "num_retries"] {
        assert!(b.get(stripped).is_none(), "{stripped} must not reach the upstream");
    }
}

#[tokio::test]
async fn streaming_relays_chunks_and_done() {
    let up = MockUpstream::start().await.unwrap();
    up.set(Behaviour {
        chunks: Some(4),
        ..Default::default()
    });
    let gw = spawn(&config(&[entry("m", &up, "")], "")).await;
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": user("one two three four")}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let content: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(content, "echo: one two three four");
    let usage: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v.get("usage").is_some())
        .collect();
    assert_eq!(
        usage.len(),
        1,
        "include_usage reaches the upstream and its usage chunk comes back"
    );
    assert_eq!(up.requests()[0].body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn stream_chunks_arrive_before_the_upstream_finishes() {
    // The upstream sends two chunks and then stalls: only a relay that does not buffer lets the
    // client read them; the stall then ends in an error event after the stream timeout.
    let up = MockUpstream::start().await.unwrap();
    up.set(Behaviour {
        chunks: Some(4),
        stall_after: Some(2),
        ..Default::default()
    });
    let gw = spawn(&config(&[entry("m", &up, "      stream_timeout: 1\n")], "")).await;
    let mut resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("a b c d e f g h")}))
        .await;
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("echo"));
    let mut rest = String::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.push_str(std::str::from_utf8(&c).unwrap());
    }
    let data = sse_data(&rest);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "504");
    assert!(!rest.contains("[DONE]"));
}

#[tokio::test]
async fn cut_stream_ends_with_an_error_event_not_silence() {
    for b in [
        Behaviour {
            chunks: Some(4),
            cut_after: Some(2),
            chunk_delay_ms: 30,
            ..Default::default()
        },
        Behaviour {
            chunks: Some(4),
            end_without_done_after: Some(2),
            ..Default::default()
        },
    ] {
        let up = MockUpstream::start().await.unwrap();
        up.set(b);
        let gw = spawn(&config(&[entry("m", &up, "")], "litellm_settings:\n  num_retries: 0\n")).await;
        let resp = gw
            .chat(json!({"model": "m", "stream": true, "messages": user("a b c d")}))
            .await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap_or_default();
        let data = sse_data(&text);
        let last: Value = serde_json::from_str(data.last().expect("some events")).unwrap();
        assert!(
            last["error"]["message"].as_str().unwrap().contains("up-m")
                || last["error"]["message"].as_str().unwrap().contains("m (")
        );
        assert_eq!(last["error"]["type"], "api_connection_error");
        assert!(!text.contains("[DONE]"));
    }
}

#[tokio::test]
async fn upstream_errors_are_relayed_with_status_and_message() {
    let up = MockUpstream::start().await.unwrap();
    up.set(Behaviour {
        status: Some(429),
        retry_after: Some(7),
        error_message: Some("slow down please".into()),
        ..Default::default()
    });
    let gw = spawn(&config(&[entry("m", &up, "")], "router_settings:\n  num_retries: 0\n")).await;
    let resp = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("slow down please"), "{msg}");
    assert!(!msg.contains("sk-upstream-secret"));
    assert_eq!(body["error"]["code"], "429");

    // A client error from the upstream is relayed as-is and never retried.
    up.set(Behaviour {
        status: Some(400),
        error_message: Some("bad temperature".into()),
        ..Default::default()
    });
    let before = up.hits();
    let gw = spawn(&config(&[entry("m", &up, "")], "router_settings:\n  num_retries: 3\n")).await;
    let resp = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(up.hits() - before, 1);
}

#[tokio::test]
async fn a_failing_deployment_is_retried_on_its_sibling() {
    let bad = MockUpstream::start().await.unwrap();
    let good = MockUpstream::start().await.unwrap();
    bad.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let gw = spawn(&config(&[entry("m", &bad, ""), entry("m", &good, "")], "")).await;
    for _ in 0..10 {
        let resp = gw.chat(json!({"model": "m", "messages": user("x")})).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(good.hits(), 10);
    assert!(
        bad.hits() >= 1,
        "random choice should hit the bad one at least once in 10"
    );
}

#[tokio::test]
async fn single_deployment_retries_after_transient_failure() {
    let up = MockUpstream::start().await.unwrap();
    up.set(Behaviour {
        status: Some(503),
        fail_times: Some(1),
        ..Default::default()
    });
    let gw = spawn(&config(&[entry("m", &up, "")], "router_settings:\n  num_retries: 1\n")).await;
    let resp = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-attempted-retries"], "1");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn unreachable_and_hanging_upstreams() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: dead\n    litellm_params:\n      model: openai/x\n      api_base: http://{closed}/v1\n      api_key: sk-upstream-secret\nlitellm_settings:\n  num_retries: 0\n"
    );
    let gw = spawn(&yaml).await;
    let resp = gw.chat(json!({"model": "dead", "messages": user("x")})).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("dead (openai/x at http://"), "{msg}");
    assert!(!msg.contains("sk-upstream-secret"));

    let up = MockUpstream::start().await.unwrap();
    up.set(Behaviour {
        hang: true,
        ..Default::default()
    });
    let gw = spawn(&config(
        &[entry("m", &up, "      timeout: 0.5\n")],
        "litellm_settings:\n  num_retries: 0\n",
    ))
    .await;
    let resp = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(&[entry("alpha", &up, ""), entry("beta", &up, "")], "")).await;
    let raw = |body: &'static str| {
        let c = gw.client.clone();
        let url = gw.url("/v1/chat/completions");
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = raw("{\"model\": \"alpha\", \"messages\": [").await;
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(b["error"]["message"].as_str().unwrap().contains("line 1 column"), "{b}");

    let r = raw("{\"messages\": []}").await;
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `model`"),
        "{b}"
    );

    let r = raw("").await;
    assert_eq!(r.status(), 400);

    let r = raw("{\"model\": \"gamma\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}").await;
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Invalid model name passed in model=gamma"), "{msg}");
    assert!(msg.contains("alpha, beta"), "{msg}");

    let r = raw("[1,2,3]").await;
    assert_eq!(r.status(), 400);
    let r = gw.client.get(gw.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "not_found_error");
    let r = gw.client.get(gw.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(up.hits(), 0, "nothing bad reached the upstream");
}

#[tokio::test]
async fn body_size_is_bounded() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(
        &[entry("m", &up, "")],
        "general_settings:\n  max_request_size_mb: 0.01\n",
    ))
    .await;
    let big = "x".repeat(50_000);
    let resp = gw.chat(json!({"model": "m", "messages": user(&big)})).await;
    assert_eq!(resp.status(), 413);
    let b: Value = resp.json().await.unwrap();
    assert!(b["error"]["message"].as_str().unwrap().contains("exceeds the limit"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn master_key_is_required_in_any_supported_header() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(
        &[entry("m", &up, "")],
        "general_settings:\n  master_key: sk-master-1234\n",
    ))
    .await;
    let body = json!({"model": "m", "messages": user("x")});
    let send = |h: Option<(&'static str, &'static str)>| {
        let mut rb = gw.client.post(gw.url("/v1/chat/completions")).json(&body);
        if let Some((k, v)) = h {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    let r = send(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "auth_error");
    assert_eq!(
        send(Some(("authorization", "Bearer sk-master-12345")))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send(Some(("authorization", "Bearer sk-master-1234")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(send(Some(("x-api-key", "sk-master-1234"))).await.unwrap().status(), 200);
    assert_eq!(
        send(Some(("x-litellm-api-key", "sk-master-1234")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(gw.client.get(gw.url("/v1/models")).send().await.unwrap().status(), 401);
    assert_eq!(
        gw.client
            .get(gw.url("/health/liveliness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn completions_embeddings_and_models() {
    let up = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n{}{}  - model_name: openai/gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {}\n      api_key: k\nrouter_settings:\n  model_group_alias:\n    fast: chat\n    secret-alias: {{model: chat, hidden: true}}\n",
        entry("chat", &up, ""),
        entry("embed", &up, "    model_info:\n      mode: embedding\n"),
        up.base_url()
    );
    let gw = spawn(&yaml).await;
    let r = gw
        .post("/v1/completions", json!({"model": "chat", "prompt": "say this"}))
        .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["choices"][0]["text"], "echo: say this");
    let r = gw
        .post("/v1/embeddings", json!({"model": "embed", "input": ["a", "b"]}))
        .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(up.requests()[1].path, "/v1/embeddings");

    // An alias reaches its group.
    let r = gw.chat(json!({"model": "fast", "messages": user("x")})).await;
    assert_eq!(r.status(), 200);
    let r = gw.chat(json!({"model": "secret-alias", "messages": user("x")})).await;
    assert_eq!(r.status(), 200);

    let r = gw.client.get(gw.url("/v1/models")).send().await.unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["object"], "list");
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat", "embed", "openai/gpt-4o-mini", "fast"]);
    let r = gw
        .client
        .get(gw.url("/v1/models/openai/gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["id"], "openai/gpt-4o-mini");
    let r = gw.client.get(gw.url("/v1/models/missing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn health_endpoints() {
    let up = MockUpstream::start().await.unwrap();
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        "model_list:\n{}  - model_name: dead\n    litellm_params:\n      model: openai/x\n      api_base: http://{down}/v1\n      api_key: sk-x\n",
        entry("ok", &up, "")
    );
    let gw = spawn(&yaml).await;
    for p in ["/health/liveliness", "/health/liveness"] {
        let r = gw.client.get(gw.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!("I'm alive!"));
    }
    let r: Value = gw
        .client
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "healthy");
    let r: Value = gw
        .client
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["healthy_count"], 1);
    assert_eq!(r["unhealthy_count"], 1);
    assert_eq!(r["unhealthy_endpoints"][0]["model_name"], "dead");
    assert!(r["unhealthy_endpoints"][0]["error"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    let r: Value = gw
        .client
        .get(gw.url("/health?model=ok"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["healthy_count"], 1);
    assert_eq!(r["unhealthy_count"], 0);
}

#[tokio::test]
async fn azure_framing() {
    let up = MockUpstream::start().await.unwrap();
    // The mock serves /v1/...; Azure paths are /openai/deployments/..., so point api_base so the
    // framing is visible in the 404 the mock returns and in what it recorded.
    let yaml = format!(
        "model_list:\n  - model_name: az\n    litellm_params:\n      model: azure/my-gpt4o\n      api_base: http://{}\n      api_key: az-key\n      api_version: 2024-06-01\nlitellm_settings:\n  num_retries: 0\n",
        up.addr
    );
    let gw = spawn(&yaml).await;
    // Capture the raw request with a tiny TCP listener instead, to see path and headers.
    drop(gw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let yaml = yaml.replace(&up.addr.to_string(), &addr.to_string());
    let gw = spawn(&yaml).await;
    let capture = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).await.unwrap();
        let body = r#"{"id":"x","object":"chat.completion","choices":[]}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let r = gw.chat(json!({"model": "az", "messages": user("x")})).await;
    assert_eq!(r.status(), 200);
    let raw = capture.await.unwrap();
    assert!(
        raw.starts_with("POST /openai/deployments/my-gpt4o/chat/completions?api-version=2024-06-01 HTTP/1.1"),
        "{raw}"
    );
    assert!(raw.to_ascii_lowercase().contains("api-key: az-key"), "{raw}");
    assert!(!raw.to_ascii_lowercase().contains("authorization:"));
}

#[tokio::test]
async fn ollama_base_with_or_without_v1_and_drop_params() {
    let up = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: ollama_chat/llama3\n      api_base: http://{0}\n  - model_name: b\n    litellm_params:\n      model: ollama/llama3\n      api_base: http://{0}/v1\nlitellm_settings:\n  drop_params: true\n",
        up.addr
    );
    let gw = spawn(&yaml).await;
    for m in ["a", "b"] {
        let r = gw
            .chat(json!({"model": m, "messages": user("x"), "logit_bias": {"1": 2}, "temperature": 0.1}))
            .await;
        assert_eq!(r.status(), 200, "model {m}");
    }
    for rec in up.requests() {
        assert_eq!(rec.path, "/v1/chat/completions");
        assert_eq!(rec.body["model"], "llama3");
        assert!(rec.body.get("logit_bias").is_none(), "dropped under drop_params");
        assert_eq!(rec.body["temperature"], 0.1);
        assert!(
            rec.headers.get("authorization").is_none(),
            "no key configured, none sent"
        );
    }
}

#[tokio::test]
async fn disabled_deployments_explain_themselves() {
    let up = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n{}  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n",
        entry("m", &up, "")
    );
    let gw = spawn(&yaml).await;
    let r = gw.chat(json!({"model": "gpt-4o", "messages": user("x")})).await;
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"].as_str().unwrap().contains("OPENAI_API_KEY"),
        "{b}"
    );
    let models: Value = gw
        .client
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
}
