//! `GET /metrics` after scripted traffic, parsed with a Prometheus text parser: LiteLLM's series
//! and ours, the engine and GPU readings of a local-first gateway, budgets of virtual keys, the
//! own-port and master-key options.

mod common;

use common::*;
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard::routing::clock::ManualClock;
use switchyard::signals::gpu::{GpuReading, ScriptedGpu};

const MASTER: &str = "sk-master-metrics-1";

async fn scrape_at(client: &reqwest::Client, url: &str) -> Scrape {
    let r = client.get(url).send().await.expect("metrics reachable");
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition")
}

async fn scrape(gw: &Gateway) -> Scrape {
    scrape_at(&gw.client, &gw.url("/metrics")).await
}

fn number(v: &Sample) -> f64 {
    match v {
        Sample::Counter(x) | Sample::Gauge(x) | Sample::Untyped(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

/// The sum of `name`'s samples whose labels include all of `labels`; `None` when none matches.
fn sum(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| number(&x.value))
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}

fn get(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(s, name, labels).unwrap_or_else(|| panic!("no {name} with {labels:?}"))
}

/// Scrapes until `ready` holds (a stream is metered as it ends); bounded.
async fn scrape_until(gw: &Gateway, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let s = scrape(gw).await;
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("metrics never reached the expected state");
}

fn usage(v: &Value) -> (f64, f64) {
    (
        v["usage"]["prompt_tokens"].as_f64().unwrap(),
        v["usage"]["completion_tokens"].as_f64().unwrap(),
    )
}

#[tokio::test]
async fn scripted_traffic_shows_in_litellm_and_switchyard_series() {
    let (a, b, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(Behaviour {
        status: Some(500),
        error_message: Some("engine exploded".into()),
        ..Default::default()
    });
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  callbacks: [prometheus]\n",
        entry("alpha", &a, ""),
        entry("beta", &b, ""),
        entry("flaky", &bad, "")
    );
    let gw = spawn(&yaml).await;

    let mut beta_tokens = (0.0, 0.0);
    for i in 0..3 {
        let r = gw
            .chat(json!({"model": "alpha", "messages": user(&format!("hello {i}"))}))
            .await;
        assert_eq!(r.status(), 200);
    }
    for text in ["one two three", "four"] {
        let r = gw.chat(json!({"model": "beta", "messages": user(text)})).await;
        assert_eq!(r.status(), 200);
        let (p, c) = usage(&r.json::<Value>().await.unwrap());
        beta_tokens = (beta_tokens.0 + p, beta_tokens.1 + c);
    }
    let r = gw
        .chat(json!({"model": "alpha", "messages": user("stream me"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(sse_data(&r.text().await.unwrap()).contains(&"[DONE]".to_string()));
    let failed = gw.chat(json!({"model": "flaky", "messages": user("x")})).await;
    let failed_status = failed.status().as_u16().to_string();
    assert!(failed_status.starts_with('5'), "{failed_status}");
    let unknown = gw.chat(json!({"model": "no-such-model", "messages": user("x")})).await;
    let unknown_status = unknown.status().as_u16().to_string();
    assert!(unknown_status.starts_with('4'), "{unknown_status}");

    let ttft = "litellm_llm_api_time_to_first_token_metric_count";
    let s = scrape_until(&gw, |s| sum(s, ttft, &[]) == Some(1.0)).await;

    // Every request once, by requested model and status; an unknown name is bounded to `other`.
    let total = "litellm_proxy_total_requests_metric_total";
    assert_eq!(get(&s, total, &[]), 8.0);
    assert_eq!(
        get(&s, total, &[("requested_model", "alpha"), ("status_code", "200")]),
        4.0
    );
    assert_eq!(
        get(&s, total, &[("requested_model", "beta"), ("status_code", "200")]),
        2.0
    );
    assert_eq!(get(&s, total, &[("requested_model", "other")]), 1.0);
    assert!(sum(&s, total, &[("requested_model", "no-such-model")]).is_none());
    // The master key / open gateway has no key hash.
    assert_eq!(get(&s, total, &[("hashed_api_key", "")]), 8.0);

    let failed_m = "litellm_proxy_failed_requests_metric_total";
    assert_eq!(get(&s, failed_m, &[]), 2.0);
    assert_eq!(
        get(
            &s,
            failed_m,
            &[("requested_model", "flaky"), ("exception_status", &failed_status)]
        ),
        1.0
    );
    assert_eq!(
        get(
            &s,
            failed_m,
            &[("requested_model", "other"), ("exception_status", &unknown_status)]
        ),
        1.0
    );
    // Only the upstream's failure is an LLM API failure; the unknown model is not an LLM call.
    assert_eq!(get(&s, "litellm_llm_api_failed_requests_metric_total", &[]), 1.0);
    assert_eq!(get(&s, "litellm_requests_metric_total", &[]), 7.0);
    assert_eq!(get(&s, "litellm_requests_metric_total", &[("model", "up-alpha")]), 4.0);

    // Tokens as the upstream reported them.
    let beta = [("requested_model", "beta")];
    assert_eq!(get(&s, "litellm_input_tokens_metric_total", &beta), beta_tokens.0);
    assert_eq!(get(&s, "litellm_output_tokens_metric_total", &beta), beta_tokens.1);
    assert_eq!(
        get(&s, "litellm_total_tokens_metric_total", &beta),
        beta_tokens.0 + beta_tokens.1
    );
    assert!(get(&s, "litellm_input_tokens_metric_total", &[("requested_model", "alpha")]) >= 4.0);

    // Latency histograms: every request in the total, served ones in the API latency, the
    // stream alone in TTFT.
    assert_eq!(get(&s, "litellm_request_total_latency_metric_count", &[]), 8.0);
    assert_eq!(get(&s, "litellm_llm_api_latency_metric_count", &[]), 6.0);
    assert_eq!(get(&s, ttft, &[("model", "up-alpha")]), 1.0);
    let buckets = s
        .samples
        .iter()
        .find(|x| x.metric == "litellm_request_total_latency_metric")
        .expect("histogram buckets");
    assert!(matches!(&buckets.value, Sample::Histogram(b) if b.len() > 30));

    // Deployments, counted per attempt and read at the scrape.
    let up = |m: &'static str| [("litellm_model_name", m)];
    assert_eq!(
        get(&s, "litellm_deployment_success_responses_total", &up("openai/up-alpha")),
        4.0
    );
    assert_eq!(
        get(&s, "litellm_deployment_success_responses_total", &up("openai/up-beta")),
        2.0
    );
    assert_eq!(
        get(&s, "litellm_deployment_failure_responses_total", &up("openai/up-flaky")),
        1.0
    );
    assert_eq!(
        get(&s, "litellm_deployment_failure_responses_total", &up("openai/up-alpha")),
        0.0
    );
    assert_eq!(
        get(&s, "litellm_deployment_total_requests_total", &up("openai/up-flaky")),
        1.0
    );
    assert_eq!(get(&s, "litellm_deployment_total_requests_total", &[]), 7.0);
    // A group of one is not cooled on one failure (LiteLLM's default): a partial outage.
    assert_eq!(get(&s, "litellm_deployment_state", &up("openai/up-flaky")), 1.0);
    assert_eq!(get(&s, "litellm_deployment_state", &up("openai/up-alpha")), 0.0);
    assert_eq!(get(&s, "litellm_deployment_cooled_down_total", &[]), 0.0);
    assert_eq!(get(&s, "switchyard_deployment_in_flight", &[]), 0.0);
}

#[tokio::test]
async fn routes_reasons_savings_engine_and_gpu_series_of_a_local_first_gateway() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    let vllm = |waiting: u32| {
        format!("vllm:num_requests_running{{model_name=\"q\"}} 3\nvllm:num_requests_waiting{{model_name=\"q\"}} {waiting}\nvllm:kv_cache_usage_perc{{model_name=\"q\"}} 0.5\n")
    };
    local.set(Behaviour {
        metrics: Some(vllm(2)),
        ..Default::default()
    });
    let yaml = format!(
        "model_list:
  - model_name: m
    litellm_params:
      model: hosted_vllm/local-model
      api_base: http://{local}/v1
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      api_base: {cloud}
      api_key: sk-cloud
    model_info:
      local: false
router_settings:
  routing_strategy: local-first
  local_first:
    engine_poll_ms: 20
    gpu_poll_ms: 100
    min_dwell_ms: 0
",
        local = local.addr,
        cloud = cloud.base_url()
    );
    let gpu = Arc::new(ScriptedGpu::new(vec![GpuReading {
        index: 0,
        name: "RTX 3090".into(),
        utilization_pct: 55,
        memory_used_mb: 1000,
        memory_total_mb: 24576,
        temperature_c: 61,
        power_w: 250.0,
        ..Default::default()
    }]));
    let gw = spawn_scripted(&yaml, Arc::new(ManualClock::default()), gpu).await;
    let engine = [("engine", "vllm"), ("requested_model", "m")];
    let s = scrape_until(&gw, |s| {
        sum(s, "switchyard_engine_queue_depth", &engine) == Some(2.0)
            && sum(s, "switchyard_gpu_utilization_percent", &[]).is_some()
    })
    .await;
    assert_eq!(get(&s, "switchyard_engine_up", &engine), 1.0);
    assert_eq!(get(&s, "switchyard_engine_running", &engine), 3.0);
    assert_eq!(get(&s, "switchyard_engine_kv_cache_usage_ratio", &engine), 0.5);
    assert!(get(&s, "switchyard_engine_reading_age_seconds", &engine) >= 0.0);
    let gpu0 = [("gpu", "0"), ("name", "RTX 3090")];
    assert_eq!(get(&s, "switchyard_gpu_utilization_percent", &gpu0), 55.0);
    assert_eq!(get(&s, "switchyard_gpu_memory_used_bytes", &gpu0), 1000.0 * 1048576.0);
    assert_eq!(get(&s, "switchyard_gpu_memory_total_bytes", &gpu0), 24576.0 * 1048576.0);
    assert_eq!(get(&s, "switchyard_gpu_temperature_celsius", &gpu0), 61.0);
    assert_eq!(get(&s, "switchyard_gpu_power_watts", &gpu0), 250.0);
    assert_eq!(
        get(&s, "switchyard_deployment_saturated", &[("requested_model", "m")]),
        0.0
    );

    let ask = || json!({"model": "m", "messages": user("hello there")});
    let r = gw.chat(ask()).await;
    assert_eq!(r.headers()["x-switchyard-route"], "local");
    // The queue builds up: the next request escalates, and the metric keeps only the code.
    local.set(Behaviour {
        metrics: Some(vllm(9)),
        ..Default::default()
    });
    scrape_until(&gw, |s| sum(s, "switchyard_engine_queue_depth", &engine) == Some(9.0)).await;
    let r = gw.chat(ask()).await;
    assert_eq!(r.headers()["x-switchyard-reason"], "queue_depth=9>=4");

    let s = scrape(&gw).await;
    let decisions = "switchyard_route_decisions_total";
    assert_eq!(get(&s, decisions, &[("route", "local"), ("reason", "local_ok")]), 1.0);
    assert_eq!(
        get(&s, decisions, &[("route", "cloud"), ("reason", "queue_depth")]),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "switchyard_deployment_saturated",
            &[("litellm_model_name", "hosted_vllm/local-model")]
        ),
        1.0
    );
    // Local requests cost nothing here (no gpu_cost_per_hour): all of their cloud price is saved.
    let local_equiv = get(&s, "switchyard_cloud_equivalent_spend_total", &[("route", "local")]);
    assert!(local_equiv > 0.0);
    assert_eq!(
        get(&s, "switchyard_savings_total", &[("requested_model", "m")]),
        local_equiv
    );
    let cloud_spend = get(&s, "litellm_spend_metric_total", &[("model", "gpt-4o")]);
    assert!(cloud_spend > 0.0);
    assert_eq!(
        get(&s, "switchyard_cloud_equivalent_spend_total", &[("route", "cloud")]),
        cloud_spend
    );
}

#[tokio::test]
async fn budgets_of_cached_keys_and_teams_and_the_ledger() {
    let up = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db").display().to_string();
    let yaml = format!(
        "model_list:
  - model_name: paid
    litellm_params:
      model: openai/paid-m
      api_base: {}
      api_key: sk-up
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
    model_info:
      local: false
general_settings:
  master_key: {MASTER}
  database_path: {db}
  spend_logs_flush_interval: 0.05
",
        up.base_url()
    );
    let gw = spawn(&yaml).await;
    let admin = |path: &'static str, body: Value| gw.client.post(gw.url(path)).bearer_auth(MASTER).json(&body).send();
    assert_eq!(
        admin("/team/new", json!({"team_id": "t1", "max_budget": 100}))
            .await
            .unwrap()
            .status(),
        200
    );
    let key = gw
        .generate_key(
            MASTER,
            json!({"key_alias": "metrics-key", "max_budget": 10, "team_id": "t1"}),
        )
        .await;
    for _ in 0..2 {
        let r = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "paid", "messages": user("count these words")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let ledger = "switchyard_ledger_rows_total";
    let s = scrape_until(&gw, |s| sum(s, ledger, &[("outcome", "written")]) == Some(2.0)).await;
    assert_eq!(get(&s, "switchyard_ledger_backlog_rows", &[]), 0.0);
    assert_eq!(get(&s, ledger, &[("outcome", "dropped")]), 0.0);

    let hashed = switchyard::auth::keys::hash(&key);
    let by_key = [("hashed_api_key", hashed.as_str()), ("api_key_alias", "metrics-key")];
    let spend = get(&s, "litellm_spend_metric_total", &by_key);
    assert!(spend > 0.0);
    assert_eq!(get(&s, "litellm_proxy_total_requests_metric_total", &by_key), 2.0);
    assert_eq!(
        get(&s, "litellm_proxy_total_requests_metric_total", &[("team", "t1")]),
        2.0
    );
    assert_eq!(get(&s, "litellm_api_key_max_budget_metric", &by_key), 10.0);
    assert!((get(&s, "litellm_remaining_api_key_budget_metric", &by_key) - (10.0 - spend)).abs() < 1e-9);
    assert_eq!(get(&s, "litellm_team_max_budget_metric", &[("team", "t1")]), 100.0);
    assert!((get(&s, "litellm_remaining_team_budget_metric", &[("team", "t1")]) - (100.0 - spend)).abs() < 1e-9);

    // The raw key never appears.
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&key));
    assert!(!text.contains(MASTER));
    gw.stop().await;
}

#[tokio::test]
async fn own_port_and_master_key_for_metrics() {
    let up = MockUpstream::start().await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        "model_list:\n{}litellm_settings:\n  require_auth_for_metrics_endpoint: true\ngeneral_settings:\n  master_key: {MASTER}\n  metrics_port: {port}\n",
        entry("m", &up, "")
    );
    let gw = spawn(&yaml).await;
    let r = gw.chat(json!({"model": "m", "messages": user("hi")})).await;
    assert_eq!(r.status(), 401);
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Not on the main port once it has its own.
    let main = gw
        .client
        .get(gw.url("/metrics"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);

    let url = format!("http://127.0.0.1:{port}/metrics");
    let denied = gw.client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
    let wrong = gw.client.get(&url).bearer_auth("sk-wrong").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let r = gw.client.get(&url).bearer_auth(MASTER).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    // A request refused before it was read (no key) counts as a failed request, without a
    // caller or a model.
    assert_eq!(get(&s, "litellm_proxy_total_requests_metric_total", &[]), 2.0);
    assert_eq!(
        get(
            &s,
            "litellm_proxy_failed_requests_metric_total",
            &[("exception_status", "401"), ("requested_model", "")]
        ),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "litellm_proxy_total_requests_metric_total",
            &[("status_code", "200")]
        ),
        1.0
    );
    gw.stop().await;
}

#[test]
fn prometheus_callbacks_load_without_warnings_and_the_port_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let load = |yaml: &str| {
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, yaml).unwrap();
        switchyard::config::Config::load_with_env(&p, &std::collections::HashMap::new())
    };
    let c =
        load("model_list: []\nlitellm_settings:\n  callbacks: [prometheus]\n  success_callback: prometheus\n").unwrap();
    assert!(c.warnings.iter().all(|w| !w.contains("callback")), "{:?}", c.warnings);
    assert!(!c.litellm.require_auth_for_metrics);
    assert_eq!(c.general.metrics_port, None);
    let err = load("model_list: []\ngeneral_settings:\n  metrics_port: 70000\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("general_settings.metrics_port"), "{err}");
}

#[tokio::test]
async fn a_cooled_deployment_is_a_complete_outage() {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(Behaviour {
        status: Some(429),
        ..Default::default()
    });
    let dep = |m: &MockUpstream, id: &str| {
        format!(
            "  - model_name: pair\n    litellm_params:\n      model: openai/{id}\n      api_base: {}\n      api_key: sk-up\n      cooldown_time: 600\n",
            m.base_url()
        )
    };
    let gw = spawn(&format!("model_list:\n{}{}", dep(&good, "good"), dep(&bad, "bad"))).await;
    // simple-shuffle picks the bad one sooner or later; a 429 cools it at once and the retry
    // goes to the good one.
    for _ in 0..50 {
        let r = gw.chat(json!({"model": "pair", "messages": user("x")})).await;
        assert_eq!(r.status(), 200);
        if bad.hits() > 0 {
            break;
        }
    }
    assert_eq!(bad.hits(), 1);
    let s = scrape(&gw).await;
    let bad_l = [("litellm_model_name", "openai/bad")];
    assert_eq!(get(&s, "litellm_deployment_cooled_down_total", &bad_l), 1.0);
    assert_eq!(get(&s, "litellm_deployment_state", &bad_l), 2.0);
    assert!(get(&s, "switchyard_deployment_cooldown_remaining_seconds", &bad_l) > 500.0);
    assert_eq!(get(&s, "litellm_deployment_failure_responses_total", &bad_l), 1.0);
    assert_eq!(
        get(&s, "litellm_deployment_state", &[("litellm_model_name", "openai/good")]),
        0.0
    );
    // The client saw no failure.
    assert!(sum(&s, "litellm_proxy_failed_requests_metric_total", &[]).is_none());
}
