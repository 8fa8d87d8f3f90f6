//! Safe defaults on a reachable port: /metrics behind the master key beyond loopback, JSON bodies
//! only (415), the Host check of an open gateway (DNS rebinding), CORS closed unless configured,
//! every error as JSON in the route's dialect, and /openapi.json describing every route.

mod common;

use common::*;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const MASTER: &str = "sk-master-exposure";

fn config(up: &MockUpstream, general: &str) -> String {
    format!("model_list:\n{}general_settings:\n{general}", entry("m", up, ""))
}

fn with_master(up: &MockUpstream, extra: &str) -> String {
    config(up, &format!("  master_key: {MASTER}\n{extra}"))
}

/// A gateway as the CLI serves it on `host` (the listen address decides /metrics' default).
async fn spawn_on(yaml: &str, host: &str) -> Gateway {
    let host = host.to_string();
    spawn_edited(yaml, &[], move |c| c.general.listen_host = Some(host)).await
}

fn assert_openai_error(body: &Value, status: u16) {
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["type"].as_str().is_some(), "{body}");
    assert_eq!(body["error"]["code"], status.to_string(), "{body}");
    assert!(body.get("type").is_none(), "OpenAI shape expected: {body}");
}

fn assert_anthropic_error(body: &Value) {
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["type"].as_str().is_some(), "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// The status, and the body as JSON (panics when it is not JSON).
async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text:?}"));
    assert!(
        ct.starts_with("application/json"),
        "{status}: content-type {ct:?}: {text}"
    );
    (status, v)
}

fn assert_error_in_dialect(path: &str, status: u16, body: &Value) {
    if path.starts_with("/v1/messages") {
        assert_anthropic_error(body);
    } else {
        assert_openai_error(body, status);
    }
}

#[tokio::test]
async fn metrics_need_the_master_key_beyond_loopback() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn_on(&with_master(&up, ""), "0.0.0.0").await;
    let r = gw.client.get(gw.url("/metrics")).send().await.unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, 401);
    assert_openai_error(&body, 401);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("public_metrics"),
        "{body}"
    );
    let r = gw
        .client
        .get(gw.url("/metrics"))
        .bearer_auth("sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .client
        .get(gw.url("/metrics"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("litellm_"));
    gw.stop().await;

    // On loopback it stays open (as before), and `public_metrics: true` opens it anywhere.
    for (yaml, host) in [
        (with_master(&up, ""), "127.0.0.1"),
        (with_master(&up, "  public_metrics: true\n"), "0.0.0.0"),
        (with_master(&up, ""), "localhost"),
    ] {
        let gw = spawn_on(&yaml, host).await;
        let r = gw.client.get(gw.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
        gw.stop().await;
    }

    // LiteLLM's require_auth_for_metrics_endpoint still closes it on loopback.
    let yaml = format!(
        "{}litellm_settings:\n  require_auth_for_metrics_endpoint: true\n",
        with_master(&up, "")
    );
    let gw = spawn_on(&yaml, "127.0.0.1").await;
    let r = gw.client.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn metrics_on_their_own_port_stay_open_beyond_loopback() {
    let up = MockUpstream::start().await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = spawn_on(&with_master(&up, &format!("  metrics_port: {port}\n")), "0.0.0.0").await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut last = None;
    for _ in 0..100 {
        match gw.client.get(&url).send().await {
            Ok(r) => {
                last = Some(r.status());
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert_eq!(last, Some(reqwest::StatusCode::OK));
    gw.stop().await;
}

#[tokio::test]
async fn json_routes_refuse_other_content_types_with_415_in_their_dialect() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(&up, "  disable_database: true\n")).await;
    let chat = json!({"model": "m", "messages": user("hi")}).to_string();
    let msg = json!({"model": "m", "max_tokens": 5, "messages": user("hi")}).to_string();
    for (path, body) in [("/v1/chat/completions", &chat), ("/v1/messages", &msg)] {
        for ct in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let r = gw
                .client
                .post(gw.url(path))
                .header("content-type", ct)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let (status, v) = json_of(r).await;
            assert_eq!(status, 415, "{path} {ct}");
            assert_error_in_dialect(path, 415, &v);
            let m = v["error"]["message"].as_str().unwrap();
            assert!(m.contains("Content-Type: application/json"), "{m}");
            if ct.starts_with("application/x-www-form-urlencoded") {
                assert!(m.contains("curl -d"), "{m}");
            }
        }
        // Without any Content-Type and without a key (a browser's Blob body), refused too.
        let r = gw.client.post(gw.url(path)).body(body.clone()).send().await.unwrap();
        let (status, v) = json_of(r).await;
        assert_eq!(status, 415, "{path} without a type");
        assert_error_in_dialect(path, 415, &v);
        // JSON types are served.
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.switchyard+json",
        ] {
            let r = gw
                .client
                .post(gw.url(path))
                .header("content-type", ct)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} {ct}");
        }
        // A key header with no type: an SDK or a script, not a page.
        let r = gw
            .client
            .post(gw.url(path))
            .header("x-api-key", "sk-anything")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with a key and no type");
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_open_gateway_answers_loopback_hosts_only() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(&up, "  disable_database: true\n")).await;
    let port = gw.addr.port();
    let chat = json!({"model": "m", "messages": user("hi")});
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "localhost.evil.example",
        "10.0.0.1",
    ] {
        for path in [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/models",
            "/metrics",
            "/nope",
        ] {
            let r = if path.starts_with("/v1/chat") || path == "/v1/messages" {
                gw.client.post(gw.url(path)).json(&chat)
            } else {
                gw.client.get(gw.url(path))
            }
            .header("host", host)
            .send()
            .await
            .unwrap();
            let (status, v) = json_of(r).await;
            assert_eq!(status, 403, "{host} {path}");
            assert_error_in_dialect(path, 403, &v);
            assert!(v["error"]["message"].as_str().unwrap().contains("DNS rebinding"), "{v}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("app.localhost:{port}"),
        "localhost".to_string(),
    ] {
        let r = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .header("host", &host)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    gw.stop().await;

    // With a master key the gateway may be served under any name (the key is the gate).
    let gw = spawn(&with_master(&up, "  disable_database: true\n")).await;
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("host", "gateway.example")
        .bearer_auth(MASTER)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn cors_is_closed_by_default_and_open_to_configured_origins() {
    let up = MockUpstream::start().await.unwrap();
    let chat = json!({"model": "m", "messages": user("hi")});
    let preflight = |gw: &Gateway, origin: &str| {
        gw.client
            .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };

    let gw = spawn(&config(&up, "  disable_database: true\n")).await;
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("origin", "https://app.example")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = preflight(&gw, "https://app.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let (status, v) = json_of(r).await;
    assert_eq!(status, 405);
    assert_openai_error(&v, 405);
    gw.stop().await;

    let gw = spawn(&config(
        &up,
        "  disable_database: true\n  cors_allow_origins: [\"https://app.example\", \"http://localhost:3000\"]\n",
    ))
    .await;
    let r = preflight(&gw, "https://app.example").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert_eq!(h["access-control-allow-headers"], "authorization, content-type");
    assert!(h.get("access-control-max-age").is_some());
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("origin", "http://localhost:3000")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert!(r.headers()["vary"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("origin"));
    // An origin not listed gets nothing, preflight or not; errors carry the grant too.
    let r = preflight(&gw, "https://evil.example").await.unwrap();
    assert_ne!(r.status(), 204);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("origin", "https://evil.example")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = gw
        .client
        .get(gw.url("/nope"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    gw.stop().await;

    // LiteLLM's variable.
    let gw = spawn_with_env(
        &config(&up, "  disable_database: true\n"),
        &[("LITELLM_CORS_ORIGINS", "https://a.example, https://b.example")],
    )
    .await;
    let r = preflight(&gw, "https://b.example").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://b.example");
    gw.stop().await;
}

#[test]
fn cors_origins_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "model_list: []\ngeneral_settings:\n  cors_allow_origins: [\"https://ok.example\", \"not an origin\", \"https://x.example/path\"]\n",
    )
    .unwrap();
    let err = switchyard::config::Config::load_with_env(&path, &std::collections::HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("general_settings.cors_allow_origins"), "{err}");
    assert!(err.contains("not an origin") && err.contains("x.example/path"), "{err}");
    assert!(!err.contains("ok.example"), "{err}");
}

#[tokio::test]
async fn protocol_errors_are_json_in_the_route_dialect() {
    let up = MockUpstream::start().await.unwrap();
    // 1 KiB body limit (the smallest the setting allows).
    let gw = spawn(&config(
        &up,
        "  max_request_size_mb: 0.0001\n  disable_database: true\n",
    ))
    .await;
    let c = &gw.client;
    let big = json!({"model": "m", "messages": user(&"x".repeat(4096))});
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("/nope", c.get(gw.url("/nope")), 404),
        (
            "/v1/messages/nope",
            c.post(gw.url("/v1/messages/nope")).json(&json!({})),
            404,
        ),
        ("/v1/chat/completions", c.get(gw.url("/v1/chat/completions")), 405),
        ("/v1/messages", c.get(gw.url("/v1/messages")), 405),
        ("/v1/models", c.delete(gw.url("/v1/models")), 405),
        (
            "/v1/chat/completions",
            c.post(gw.url("/v1/chat/completions")).json(&big),
            413,
        ),
        ("/v1/messages", c.post(gw.url("/v1/messages")).json(&big), 413),
        (
            "/v1/chat/completions",
            c.post(gw.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            "/v1/messages",
            c.post(gw.url("/v1/messages"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            "/v1/chat/completions",
            c.post(gw.url("/v1/chat/completions"))
                .json(&json!({"model": 5, "messages": "hi"})),
            400,
        ),
        (
            "/v1/messages",
            c.post(gw.url("/v1/messages"))
                .json(&json!({"model": "m", "max_tokens": "many", "messages": {}})),
            400,
        ),
        (
            "/v1/messages/count_tokens",
            c.post(gw.url("/v1/messages/count_tokens")).json(&json!([1])),
            400,
        ),
        // Query strings the handler's types cannot take.
        ("/health", c.get(gw.url("/health?model=a&model=b")), 400),
        (
            "/model/info",
            c.get(gw.url("/model/info?litellm_model_id=a&litellm_model_id=b")),
            400,
        ),
        (
            "/key/generate",
            c.post(gw.url("/key/generate")).json(&json!({"models": "x"})),
            503,
        ),
    ];
    for (path, req, want) in cases {
        let (status, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{path}: {body}");
        assert_error_in_dialect(path, status, &body);
    }
    gw.stop().await;

    // With a master key: no key, a bad key, and a header value that is not text.
    let gw = spawn(&with_master(&up, "  disable_database: true\n")).await;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        for auth in [
            None,
            Some(HeaderValue::from_static("Bearer sk-wrong")),
            Some(HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()),
        ] {
            let mut req = gw.client.post(gw.url(path)).json(&json!({"model": "m"}));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let (status, body) = json_of(req.send().await.unwrap()).await;
            assert_eq!(status, 401, "{path}");
            assert_error_in_dialect(path, 401, &body);
        }
    }
    // The admin routes read their body with the framework's limit (2 MiB): still JSON.
    let huge = format!("{{\"key_alias\": \"{}\"}}", "x".repeat(3 << 20));
    let r = gw
        .client
        .post(gw.url("/key/generate"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, 413);
    assert_openai_error(&body, 413);
    gw.stop().await;
}

/// `{*id}` (axum) is `{id}` in OpenAPI.
fn openapi_path(p: &str) -> String {
    p.replace("{*", "{")
}

#[tokio::test]
async fn openapi_lists_every_route_and_every_route_answers_errors_in_json() {
    let up = MockUpstream::start().await.unwrap();
    let yaml = config(&up, "  disable_database: true\n");
    let gw = spawn(&yaml).await;
    let loaded = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, &yaml).unwrap();
        switchyard::config::Config::load_with_env(&p, &std::collections::HashMap::<String, String>::new()).unwrap()
    };
    let table = switchyard::app::route_table(&loaded);
    assert!(table.len() > 30, "{}", table.len());

    let r = gw.client.get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let spec: Value = r.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let described: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p)| (m.as_str().to_string(), openapi_path(p)))
        .collect();
    assert_eq!(registered, described, "routes and /openapi.json differ");

    for (method, path) in &table {
        let p = openapi_path(path);
        let op = &spec["paths"][&p][method.as_str().to_lowercase()];
        assert!(
            ["none", "key", "master"].contains(&op["x-switchyard-auth"].as_str().unwrap_or("")),
            "{method} {p}: auth"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{method} {p}");
        let err_ref = if p.starts_with("/v1/messages") {
            "AnthropicError"
        } else {
            "OpenAIError"
        };
        assert!(
            responses["403"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with(err_ref)),
            "{method} {p}: error schema"
        );
        let url_path = path.replace("{*id}", "some-model").replace("{id}", "some-id");
        // Wrong method (one the path does not serve): 405 in the dialect. POST routes: a text
        // body is 415 and the body schema is described.
        let wrong = [reqwest::Method::DELETE, reqwest::Method::GET, reqwest::Method::PATCH]
            .into_iter()
            .find(|m| !table.iter().any(|(tm, tp)| tp == path && tm.as_str() == m.as_str()))
            .unwrap();
        let r = gw.client.request(wrong, gw.url(&url_path)).send().await.unwrap();
        let (status, body) = json_of(r).await;
        assert_eq!(status, 405, "{method} {p}");
        assert_error_in_dialect(&p, 405, &body);
        if *method == http::Method::POST {
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{p}: request body"
            );
            assert!(responses.contains_key("415"), "{p}");
            let r = gw
                .client
                .post(gw.url(&url_path))
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap();
            let (status, body) = json_of(r).await;
            assert_eq!(status, 415, "{p}");
            assert_error_in_dialect(&p, 415, &body);
        }
        // A rebinding Host: refused in the dialect on every route.
        let req = gw.client.request(
            reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
            gw.url(&url_path),
        );
        let r = req.header("host", "rebind.example").send().await.unwrap();
        let (status, body) = json_of(r).await;
        assert_eq!(status, 403, "{method} {p}");
        assert_error_in_dialect(&p, 403, &body);
    }
    gw.stop().await;
}

/// An upstream that answers 200 with a body that is not JSON, to a request the gateway must
/// translate (OpenAI wire, Anthropic client): the upstream's fault, a 502 in Anthropic's shape
/// (it was a 500 blamed on the gateway, so it neither failed over nor cooled the deployment).
#[tokio::test]
async fn an_unreadable_upstream_body_is_a_502_blamed_on_the_upstream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Bounded: with num_retries 0 the gateway connects once.
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 16384];
        let _ = s.read(&mut buf).await.unwrap();
        let body = "<html>not json</html>";
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
    });
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/up\n      api_base: http://{addr}/v1\n      api_key: sk-x\nrouter_settings:\n  num_retries: 0\ngeneral_settings:\n  disable_database: true\n"
    );
    let gw = spawn(&yaml).await;
    let r = gw
        .post(
            "/v1/messages",
            json!({"model": "m", "max_tokens": 5, "messages": user("hi")}),
        )
        .await;
    let (status, body) = json_of(r).await;
    assert_eq!(status, 502, "{body}");
    assert_anthropic_error(&body);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("unreadable JSON"),
        "{body}"
    );
    server.await.unwrap();
    gw.stop().await;
}
