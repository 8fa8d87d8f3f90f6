//! Callbacks and Slack alerts, delivered to a receiver each test runs on 127.0.0.1:0: records'
//! fields, retries after a 500, a receiver that is down, and each alert type after scripted
//! traffic.

mod common;

use axum::extract::State;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard::config::Config;

const MASTER: &str = "sk-master-alerts-5678";

/// One POST as the receiver saw it.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Got>>,
    /// Answer 500 to this many posts before answering 200.
    fail_first: AtomicU32,
    hits: AtomicU32,
}

struct Receiver {
    addr: std::net::SocketAddr,
    inbox: Arc<Inbox>,
}

impl Receiver {
    async fn start(fail_first: u32) -> Receiver {
        let inbox = Arc::new(Inbox::default());
        inbox.fail_first.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .fallback(
                |State(inbox): State<Arc<Inbox>>, uri: http::Uri, headers: http::HeaderMap, body: String| async move {
                    inbox.hits.fetch_add(1, Ordering::SeqCst);
                    if inbox
                        .fail_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
                    inbox.got.lock().unwrap().push(Got {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    http::StatusCode::OK
                },
            )
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, inbox }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn at(&self, path: &str) -> Vec<Got> {
        self.inbox
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `path` has received at least `n` posts; returns them.
    async fn wait(&self, path: &str, n: usize) -> Vec<Got> {
        for _ in 0..200 {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.at(path)
    }

    /// The Slack texts posted to `path`.
    async fn texts(&self, path: &str, n: usize) -> Vec<String> {
        self.wait(path, n)
            .await
            .into_iter()
            .map(|g| g.body["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cloud-priced deployment (so requests cost something) pointing at a mock.
fn cloud(model_name: &str, mock: &MockUpstream) -> String {
    entry(
        model_name,
        mock,
        "      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n    model_info:\n      local: false\n",
    )
}

fn failing(status: u16) -> Behaviour {
    Behaviour {
        status: Some(status),
        ..Default::default()
    }
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": user(text)})
}

#[tokio::test]
async fn callbacks_post_one_record_per_request_with_its_fields() {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(failing(500));
    let rx = Receiver::start(0).await;
    let yaml = format!(
        "model_list:\n{}{}litellm_settings:\n  num_retries: 0\n  success_callback: [\"{}\", \"generic\"]\n  failure_callback: [\"{}\", langfuse]\n  callbacks: [prometheus]\n",
        cloud("m", &good),
        cloud("bad", &bad),
        rx.url("/ok"),
        rx.url("/failed"),
    );
    let gw = spawn_with_env(
        &yaml,
        &[
            ("GENERIC_LOGGER_ENDPOINT", &rx.url("/generic")),
            ("GENERIC_LOGGER_HEADERS", "X-Token=t0ken, X-Other=2"),
        ],
    )
    .await;
    let r = gw.chat(ask("m", "PROMPT-TEXT-one")).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let r = gw
        .chat(json!({"model": "m", "messages": user("PROMPT-TEXT-two"), "stream": true, "stream_options": {"include_usage": true}}))
        .await;
    assert_eq!(r.status(), 200);
    let stream_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let r = gw.chat(ask("bad", "PROMPT-TEXT-three")).await;
    assert_eq!(r.status(), 500);

    let ok = rx.wait("/ok", 2).await;
    assert_eq!(ok.len(), 2, "{ok:?}");
    let rec = &ok
        .iter()
        .find(|g| g.body["id"] == id.as_str())
        .expect("record of the first request")
        .body;
    assert_eq!(rec["status"], "success");
    assert_eq!(rec["call_type"], "acompletion");
    assert_eq!(rec["model_group"], "m");
    assert_eq!(rec["model"], "up-m");
    assert_eq!(rec["api_base"], good.base_url());
    assert_eq!(rec["route"], "cloud");
    assert_eq!(rec["stream"], false);
    assert_eq!(rec["cache_hit"], false);
    let (p, c) = (
        rec["prompt_tokens"].as_i64().unwrap(),
        rec["completion_tokens"].as_i64().unwrap(),
    );
    assert!(p > 0 && c > 0, "{rec}");
    assert_eq!(rec["total_tokens"].as_i64().unwrap(), p + c);
    let cost = rec["response_cost"].as_f64().unwrap();
    assert!((cost - (p as f64 * 0.001 + c as f64 * 0.002)).abs() < 1e-9, "{rec}");
    assert!(rec["endTime"].as_f64().unwrap() >= rec["startTime"].as_f64().unwrap());
    assert!(rec["metadata"].is_object() && rec["metadata"]["user_api_key_hash"].is_null());
    let streamed = &ok
        .iter()
        .find(|g| g.body["id"] == stream_id.as_str())
        .expect("stream record")
        .body;
    assert_eq!(streamed["stream"], true);
    assert!(streamed["completion_tokens"].as_i64().unwrap() > 0);

    let failed = rx.wait("/failed", 1).await;
    assert_eq!(failed.len(), 1);
    let f = &failed[0].body;
    assert_eq!(f["status"], "failure");
    assert_eq!(f["model_group"], "bad");
    assert_eq!(f["status_code"], 500);
    assert!(f["error_str"].as_str().is_some_and(|e| !e.is_empty()), "{f}");

    // "generic" posts successes to GENERIC_LOGGER_ENDPOINT with GENERIC_LOGGER_HEADERS.
    let generic = rx.wait("/generic", 2).await;
    assert_eq!(generic.len(), 2);
    assert_eq!(generic[0].headers.get("x-token").map(String::as_str), Some("t0ken"));
    assert_eq!(generic[0].headers.get("x-other").map(String::as_str), Some("2"));

    // No prompt, no completion, no upstream key in any record.
    let all = format!("{:?}", rx.inbox.got.lock().unwrap());
    for secret in ["PROMPT-TEXT", "sk-upstream-secret", "messages"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_receiver_answering_500_gets_the_record_on_a_retry() {
    let good = MockUpstream::start().await.unwrap();
    let rx = Receiver::start(2).await;
    let yaml = format!(
        "model_list:\n{}litellm_settings:\n  success_callback: [\"{}\"]\n",
        cloud("m", &good),
        rx.url("/hook")
    );
    let gw = spawn(&yaml).await;
    assert_eq!(gw.chat(ask("m", "hi")).await.status(), 200);
    let got = rx.wait("/hook", 1).await;
    assert_eq!(got.len(), 1, "delivered on the third attempt");
    assert_eq!(rx.inbox.hits.load(Ordering::SeqCst), 3, "two 500s, then 200");
    gw.stop().await;
    // Nothing is posted twice.
    assert_eq!(rx.at("/hook").len(), 1);
}

#[tokio::test]
async fn a_receiver_that_is_down_breaks_nothing() {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(failing(503));
    let down = format!("http://127.0.0.1:{}/hook", closed_port());
    let yaml = format!(
        "model_list:\n{}{}litellm_settings:\n  num_retries: 0\n  success_callback: [\"{down}\"]\n  failure_callback: [\"{down}\"]\ngeneral_settings:\n  alerting: [slack]\n  alerting_args:\n    error_rate_min_requests: 2\n",
        cloud("m", &good),
        cloud("bad", &bad),
    );
    let gw = spawn_with_env(&yaml, &[("SLACK_WEBHOOK_URL", &down)]).await;
    for i in 0..30 {
        let (model, want) = if i % 3 == 0 { ("bad", 503) } else { ("m", 200) };
        assert_eq!(gw.chat(ask(model, "hi")).await.status(), want);
    }
    // Shutdown waits for the outboxes at most a few seconds, then ends.
    let stopped = tokio::time::timeout(Duration::from_secs(30), gw.stop()).await;
    assert!(stopped.is_ok(), "the gateway did not shut down");
}

#[tokio::test]
async fn budget_alerts_at_80_and_100_percent_and_records_carry_the_keys_alias_not_the_key() {
    let good = MockUpstream::start().await.unwrap();
    let rx = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db").display().to_string();
    let yaml = format!(
        "model_list:\n{}litellm_settings:\n  success_callback: [\"{}\"]\ngeneral_settings:\n  master_key: {MASTER}\n  database_path: {db}\n  alerting: [slack]\n  alert_types: [budget_alerts]\n",
        cloud("m", &good),
        rx.url("/records"),
    );
    let gw = spawn_with_env(&yaml, &[("SLACK_WEBHOOK_URL", &rx.url("/slack"))]).await;
    let key = gw
        .generate_key(MASTER, json!({"key_alias": "budget-bot", "max_budget": 0.1}))
        .await;
    // Each request costs a few cents: spend until the key is refused (bounded). `max_tokens`
    // keeps each request's reservation small, so the budget is used before it closes.
    let mut refused = false;
    let mut body = ask("m", "spend some money please");
    body["max_tokens"] = json!(5);
    for _ in 0..50 {
        let r = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the budget never closed");
    let texts = rx.texts("/slack", 2).await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("`budget-bot`") && t.contains("80%")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("`budget-bot`") && t.contains("100%")),
        "{texts:?}"
    );
    let records = rx.wait("/records", 1).await;
    let meta = &records[0].body["metadata"];
    assert_eq!(meta["user_api_key_alias"], "budget-bot");
    assert_eq!(meta["user_api_key_hash"].as_str().unwrap().len(), 64, "{meta}");
    let all = format!("{:?}", rx.inbox.got.lock().unwrap());
    assert!(!all.contains(&key) && !all.contains(MASTER));
    gw.stop().await;
}

#[tokio::test]
async fn a_deployment_entering_cooldown_is_one_alert() {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(failing(500));
    let rx = Receiver::start(0).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  allowed_fails: 1\n  cooldown_time: 60\ngeneral_settings:\n  alerting: [slack]\n  alert_types: [cooldown_deployment]\n",
        cloud("m", &good),
        cloud("m", &bad),
    );
    let gw = spawn_with_env(&yaml, &[("SLACK_WEBHOOK_URL", &rx.url("/slack"))]).await;
    for _ in 0..20 {
        assert_eq!(gw.chat(ask("m", "hi")).await.status(), 200, "the sibling answers");
    }
    let texts = rx.texts("/slack", 1).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("cooled down") && texts[0].contains("`m`") && texts[0].contains("60 s"),
        "{texts:?}"
    );
    gw.stop().await;
    assert_eq!(rx.at("/slack").len(), 1, "one incident, one message");
}

#[tokio::test]
async fn an_error_rate_spike_is_one_alert_at_its_own_url() {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(failing(502));
    let rx = Receiver::start(0).await;
    let yaml = format!(
        "model_list:\n{}{}litellm_settings:\n  num_retries: 0\ngeneral_settings:\n  alerting: [slack]\n  alert_types: [error_rate, llm_exceptions]\n  alert_to_webhook_url:\n    error_rate: {}\n  alerting_args:\n    error_rate_threshold: 0.5\n    error_rate_min_requests: 10\n    error_rate_window_seconds: 60\n",
        cloud("m", &good),
        cloud("bad", &bad),
        rx.url("/errors"),
    );
    // No SLACK_WEBHOOK_URL: the per-type URL is enough.
    let gw = spawn(&yaml).await;
    // 4 of 8 failing is below the minimum count: no alert yet.
    for i in 0..8 {
        gw.chat(ask(if i % 2 == 0 { "bad" } else { "m" }, "hi")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rx.at("/errors").is_empty(), "alerted below error_rate_min_requests");
    for _ in 0..6 {
        assert_eq!(gw.chat(ask("bad", "hi")).await.status(), 502);
    }
    let texts = rx.texts("/errors", 1).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    // The monitor may read the window part-way through the burst: any count at or past the rule.
    let counts: Vec<u64> = texts[0]
        .strip_prefix(":rotating_light: Error-rate spike: ")
        .and_then(|t| t.split(" requests failed").next())
        .map(|t| t.split(" of ").filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let [failures, requests] = counts[..] else {
        panic!("{texts:?}")
    };
    assert!((10..=14).contains(&requests) && failures * 2 >= requests, "{texts:?}");
    // More failures within alert_cooldown_seconds: still one message.
    for _ in 0..5 {
        gw.chat(ask("bad", "hi")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.at("/errors").len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn slow_requests_alert_past_alerting_threshold() {
    let slow = MockUpstream::start().await.unwrap();
    slow.set(Behaviour {
        latency_ms: 300,
        ..Default::default()
    });
    let rx = Receiver::start(0).await;
    let yaml = format!(
        "model_list:\n{}general_settings:\n  alerting: [slack]\n  alerting_threshold: 0.2\n",
        cloud("m", &slow)
    );
    let gw = spawn_with_env(&yaml, &[("SLACK_WEBHOOK_URL", &rx.url("/slack"))]).await;
    assert_eq!(gw.chat(ask("m", "hi")).await.status(), 200);
    let texts = rx.texts("/slack", 1).await;
    assert!(texts.iter().any(|t| t.contains("Slow request: `m`")), "{texts:?}");
    gw.stop().await;
}

#[tokio::test]
async fn local_saturation_that_lasts_is_alerted() {
    let (local, cloud_mock) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    // A vLLM with 7 requests waiting: above queue_enter (4) for as long as the test runs.
    local.set(Behaviour {
        metrics: Some("vllm:num_requests_running{model_name=\"q\"} 3\nvllm:num_requests_waiting{model_name=\"q\"} 7\nvllm:gpu_cache_usage_perc{model_name=\"q\"} 0.2\n".into()),
        ..Default::default()
    });
    let rx = Receiver::start(0).await;
    let yaml = format!(
        "model_list:
  - model_name: m
    litellm_params:
      model: hosted_vllm/local-model
      api_base: http://{}/v1
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      api_base: {}
      api_key: sk-cloud
    model_info:
      local: false
router_settings:
  routing_strategy: local-first
  local_first:
    engine_poll_ms: 20
general_settings:
  alerting: [slack]
  alert_types: [local_saturation]
  alerting_args:
    local_saturation_seconds: 0.3
",
        local.addr,
        cloud_mock.base_url()
    );
    let gw = spawn_with_env(&yaml, &[("SLACK_WEBHOOK_URL", &rx.url("/slack"))]).await;
    // Requests meanwhile go to the cloud.
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status(), 200);
    let texts = rx.texts("/slack", 1).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("Local deployment `m`") && texts[0].contains("queue_depth=7"),
        "{texts:?}"
    );
    gw.stop().await;
}

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, yaml).unwrap();
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::load_with_env(&p, &env).map_err(|e| e.to_string())
}

#[test]
fn alerting_and_callback_settings_are_validated() {
    let base = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_key: k\n";
    let err = load(
        &format!("{base}general_settings:\n  alerting: [slack]\n  alert_types: [budget_alerts, nonsense]\n  alerting_args:\n    error_rate_threshold: 2\n"),
        &[("SLACK_WEBHOOK_URL", "https://hooks.example/x")],
    )
    .unwrap_err();
    assert!(
        err.contains("general_settings.alert_types[1]") && err.contains("unknown alert type \"nonsense\""),
        "{err}"
    );
    assert!(
        err.contains("general_settings.alerting_args.error_rate_threshold"),
        "{err}"
    );

    let c = load(
        &format!("{base}litellm_settings:\n  success_callback: [langfuse, generic, \"https://logs.example/in\"]\ngeneral_settings:\n  alerting: [slack, email]\n"),
        &[],
    )
    .unwrap();
    let has = |w: &str| c.warnings.iter().any(|x| x.contains(w));
    assert!(has("callback \"langfuse\" is not supported"), "{:?}", c.warnings);
    assert!(has("needs GENERIC_LOGGER_ENDPOINT"), "{:?}", c.warnings);
    assert!(has("\"email\" is not supported"), "{:?}", c.warnings);
    assert!(has("no SLACK_WEBHOOK_URL"), "{:?}", c.warnings);
    assert!(c.general.alerting.is_none(), "no URL anywhere: alerting is off");
    assert_eq!(c.litellm.callbacks.success.len(), 1);
    assert!(c.litellm.callbacks.failure.is_empty());

    let c = load(
        &format!("{base}general_settings:\n  alerting: [slack]\n  alerting_threshold: 30\n  alerting_args:\n    local_saturation_seconds: 60\n    alert_cooldown_seconds: 120\n"),
        &[("SLACK_WEBHOOK_URL", "https://hooks.example/x")],
    )
    .unwrap();
    let a = c.general.alerting.expect("alerting on");
    assert_eq!(a.types.len(), 5);
    assert_eq!(a.slow_request, Duration::from_secs(30));
    assert_eq!(a.local_saturation, Duration::from_secs(60));
    assert_eq!(a.repeat_after, Duration::from_secs(120));
}
