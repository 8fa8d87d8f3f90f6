//! Router scenarios over real HTTP: several mock upstreams, each asserting what the client saw
//! and which upstreams were called how often. Cooldown time is moved by hand.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard::routing::clock::ManualClock;

/// A `model_list` entry named `group` pointing at `mock`, with extra `litellm_params` lines.
fn dep(group: &str, mock: &MockUpstream, params: &str) -> String {
    format!(
        "  - model_name: {group}\n    litellm_params:\n      model: openai/{group}-{}\n      api_base: {}\n      api_key: k\n{params}",
        mock.addr.port(),
        mock.base_url()
    )
}

fn cfg(deps: &[String], tail: &str) -> String {
    format!("model_list:\n{}{tail}", deps.join(""))
}

async fn ok_count(gw: &Gateway, model: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let r = gw.chat(json!({"model": model, "messages": user("x")})).await;
        if r.status() == 200 {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn failing_deployment_cools_down_and_returns_after_its_time() {
    let bad = MockUpstream::start().await.unwrap();
    let good = MockUpstream::start().await.unwrap();
    bad.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_with_clock(
        &cfg(
            &[dep("m", &bad, ""), dep("m", &good, "")],
            "router_settings:\n  allowed_fails: 1\n  cooldown_time: 30\n",
        ),
        clock.clone(),
    )
    .await;
    assert_eq!(ok_count(&gw, "m", 40).await, 40, "the sibling hides every failure");
    assert_eq!(bad.hits(), 2, "two failures exceed allowed_fails=1, then it sits out");
    clock.advance(Duration::from_secs(29));
    ok_count(&gw, "m", 10).await;
    assert_eq!(bad.hits(), 2, "still cooling before 30 s");
    clock.advance(Duration::from_secs(2));
    bad.set(Behaviour::default());
    assert_eq!(ok_count(&gw, "m", 40).await, 40);
    assert!(bad.hits() > 2, "back in rotation after the cooldown");
}

#[tokio::test]
async fn rate_limited_deployment_cools_for_retry_after_and_all_cooled_is_429() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    for m in [&a, &b] {
        m.set(Behaviour {
            status: Some(429),
            retry_after: Some(20),
            ..Default::default()
        });
    }
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_with_clock(
        &cfg(
            &[dep("m", &a, ""), dep("m", &b, "")],
            "router_settings:\n  num_retries: 1\n",
        ),
        clock.clone(),
    )
    .await;
    let r = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(r.status(), 429, "both tried, both rate limited");
    assert_eq!((a.hits(), b.hits()), (1, 1));
    let r = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((19..=20).contains(&retry_after), "{retry_after}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No deployments available for selected model"),
        "{body}"
    );
    assert_eq!((a.hits(), b.hits()), (1, 1), "cooled deployments are not called");
    clock.advance(Duration::from_secs(21));
    a.set(Behaviour::default());
    b.set(Behaviour::default());
    assert_eq!(ok_count(&gw, "m", 4).await, 4);
}

#[tokio::test]
async fn client_errors_never_cool_and_single_deployments_are_exempt_by_default() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    a.set(Behaviour {
        status: Some(400),
        error_message: Some("bad param".into()),
        ..Default::default()
    });
    b.set(Behaviour {
        status: Some(400),
        error_message: Some("bad param".into()),
        ..Default::default()
    });
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_with_clock(
        &cfg(
            &[dep("m", &a, ""), dep("m", &b, "")],
            "router_settings:\n  allowed_fails: 0\n",
        ),
        clock.clone(),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            gw.chat(json!({"model": "m", "messages": user("x")})).await.status(),
            400
        );
    }
    assert_eq!(a.hits() + b.hits(), 10, "400s are not retried and never cool anything");

    let solo = MockUpstream::start().await.unwrap();
    solo.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let gw = spawn_with_clock(
        &cfg(&[dep("s", &solo, "")], "router_settings:\n  num_retries: 0\n"),
        clock.clone(),
    )
    .await;
    for _ in 0..8 {
        assert_eq!(
            gw.chat(json!({"model": "s", "messages": user("x")})).await.status(),
            500
        );
    }
    assert_eq!(solo.hits(), 8, "a group of one keeps being tried");
}

#[tokio::test]
async fn half_failing_deployment_with_healthy_sibling_gives_zero_client_errors() {
    let flaky = MockUpstream::start().await.unwrap();
    let good = MockUpstream::start().await.unwrap();
    // Fails every other call: 50 % error rate.
    let gw = spawn(&cfg(
        &[dep("m", &flaky, ""), dep("m", &good, "")],
        "router_settings:\n  disable_cooldowns: true\n",
    ))
    .await;
    let mut errors = 0;
    for i in 0..100 {
        flaky.set(if i % 2 == 0 {
            Behaviour {
                status: Some(503),
                ..Default::default()
            }
        } else {
            Behaviour::default()
        });
        if gw.chat(json!({"model": "m", "messages": user("x")})).await.status() != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, 0);
    assert!(flaky.hits() > 20, "the flaky one stays in rotation: {}", flaky.hits());
}

#[tokio::test]
async fn simple_shuffle_follows_weights() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(
        &[dep("m", &a, "      weight: 1\n"), dep("m", &b, "      weight: 3\n")],
        "",
    ))
    .await;
    ok_count(&gw, "m", 400).await;
    // Binomial(400, 0.25): mean 100, sd 8.7; +-4 sd.
    assert!((65..=135).contains(&a.hits()), "a got {}", a.hits());
    assert_eq!(a.hits() + b.hits(), 400);

    // rpm weighs when no weight is given; uniform when nothing is.
    let c = MockUpstream::start().await.unwrap();
    let d = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(
        &[dep("n", &c, "      rpm: 900\n"), dep("n", &d, "      rpm: 100\n")],
        "",
    ))
    .await;
    ok_count(&gw, "n", 300).await;
    assert!((240..=297).contains(&c.hits()), "c got {}", c.hits());
}

#[tokio::test]
async fn order_prefers_lower_values_and_falls_through_on_failure() {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(
        &[
            dep("m", &second, "      order: 2\n"),
            dep("m", &first, "      order: 1\n"),
        ],
        "",
    ))
    .await;
    ok_count(&gw, "m", 20).await;
    assert_eq!((first.hits(), second.hits()), (20, 0));
    first.set(Behaviour {
        status: Some(503),
        ..Default::default()
    });
    assert_eq!(ok_count(&gw, "m", 5).await, 5);
    assert_eq!(second.hits(), 5);
}

#[tokio::test]
async fn least_busy_avoids_the_deployment_holding_requests() {
    let slow = MockUpstream::start().await.unwrap();
    let fast = MockUpstream::start().await.unwrap();
    slow.set(Behaviour {
        latency_ms: 400,
        ..Default::default()
    });
    let gw = Arc::new(
        spawn(&cfg(
            &[dep("m", &slow, ""), dep("m", &fast, "")],
            "router_settings:\n  routing_strategy: least-busy\n",
        ))
        .await,
    );
    // Put two requests in flight on whichever is slow, then send sequential ones.
    let mut bg = vec![];
    for _ in 0..6 {
        let gw = gw.clone();
        bg.push(tokio::spawn(async move {
            gw.chat(json!({"model": "m", "messages": user("x")})).await.status()
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = slow.hits();
    ok_count(&gw, "m", 30).await;
    assert_eq!(
        slow.hits(),
        before,
        "while the slow one holds requests, the idle one gets every new call"
    );
    for h in bg {
        assert_eq!(h.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn latency_based_prefers_the_fast_deployment() {
    let slow = MockUpstream::start().await.unwrap();
    let fast = MockUpstream::start().await.unwrap();
    slow.set(Behaviour {
        latency_ms: 60,
        ..Default::default()
    });
    let gw = spawn(&cfg(&[dep("m", &slow, ""), dep("m", &fast, "")], "router_settings:\n  routing_strategy: latency-based-routing\n  routing_strategy_args: {lowest_latency_buffer: 0.5}\n")).await;
    ok_count(&gw, "m", 40).await;
    assert!(
        slow.hits() <= 3,
        "after measuring both, the slow one is left alone: {}",
        slow.hits()
    );
}

#[tokio::test]
async fn usage_based_respects_rpm_and_cost_based_picks_the_cheapest() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_with_clock(
        &cfg(
            &[dep("m", &a, "      rpm: 3\n"), dep("m", &b, "      rpm: 3\n")],
            "router_settings:\n  routing_strategy: usage-based-routing-v2\n",
        ),
        clock.clone(),
    )
    .await;
    assert_eq!(ok_count(&gw, "m", 6).await, 6);
    assert_eq!((a.hits(), b.hits()), (3, 3));
    let r = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(r.status(), 429, "both at their rpm this minute");
    // A sliding window: the first requests leave it 61 s later.
    clock.advance(Duration::from_secs(61));
    assert_eq!(ok_count(&gw, "m", 2).await, 2, "a new minute");

    let cheap = MockUpstream::start().await.unwrap();
    let dear = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(
        &[
            dep(
                "c",
                &dear,
                "      input_cost_per_token: 0.00001\n      output_cost_per_token: 0.00003\n",
            ),
            dep(
                "c",
                &cheap,
                "      input_cost_per_token: 0.0000001\n      output_cost_per_token: 0.0000002\n",
            ),
        ],
        "router_settings:\n  routing_strategy: cost-based-routing\n",
    ))
    .await;
    ok_count(&gw, "c", 20).await;
    assert_eq!((cheap.hits(), dear.hits()), (20, 0));
}

#[tokio::test]
async fn fallbacks_generic_wildcard_default_and_per_request() {
    let broken = MockUpstream::start().await.unwrap();
    let backup = MockUpstream::start().await.unwrap();
    let other = MockUpstream::start().await.unwrap();
    broken.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let tail = "router_settings:\n  num_retries: 0\n  fallbacks: [{a: [b]}]\n";
    let gw = spawn(&cfg(
        &[dep("a", &broken, ""), dep("b", &backup, ""), dep("c", &other, "")],
        tail,
    ))
    .await;
    let r = gw.chat(json!({"model": "a", "messages": user("hi")})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-attempted-fallbacks"], "1");
    assert_eq!(r.headers()["x-litellm-model-group"], "b");
    assert_eq!(backup.hits(), 1);
    // The request's own list wins.
    let r = gw
        .chat(json!({"model": "a", "messages": user("hi"), "fallbacks": ["c"]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(other.hits(), 1);
    // disable_fallbacks surfaces the error.
    let r = gw
        .chat(json!({"model": "a", "messages": user("hi"), "disable_fallbacks": true}))
        .await;
    assert_eq!(r.status(), 500);

    // "*" catch-all and default_fallbacks.
    let gw = spawn(&cfg(
        &[dep("a", &broken, ""), dep("b", &backup, "")],
        "router_settings:\n  num_retries: 0\n  fallbacks: [{\"*\": [b]}]\n",
    ))
    .await;
    assert_eq!(
        gw.chat(json!({"model": "a", "messages": user("hi")})).await.status(),
        200
    );
    let gw = spawn(&cfg(
        &[dep("a", &broken, ""), dep("b", &backup, "")],
        "litellm_settings:\n  num_retries: 0\n  default_fallbacks: [b]\n",
    ))
    .await;
    assert_eq!(
        gw.chat(json!({"model": "a", "messages": user("hi")})).await.status(),
        200
    );
    // mock_testing_fallbacks forces the first group to fail.
    let ok = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(
        &[dep("a", &ok, ""), dep("b", &backup, "")],
        "router_settings:\n  fallbacks: [{a: [b]}]\n",
    ))
    .await;
    let r = gw
        .chat(json!({"model": "a", "messages": user("hi"), "mock_testing_fallbacks": true}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-model-group"], "b");
    assert_eq!(ok.hits(), 0);
}

#[tokio::test]
async fn context_window_errors_use_their_own_fallbacks_without_retries() {
    let small = MockUpstream::start().await.unwrap();
    let big = MockUpstream::start().await.unwrap();
    small.set(Behaviour {
        status: Some(400),
        error_message: Some(
            "This model's maximum context length is 4096 tokens. However, your messages resulted in 9000 tokens."
                .into(),
        ),
        ..Default::default()
    });
    let tail = "router_settings:\n  num_retries: 3\n  context_window_fallbacks: [{small: [big]}]\n";
    let gw = spawn(&cfg(&[dep("small", &small, ""), dep("big", &big, "")], tail)).await;
    let r = gw.chat(json!({"model": "small", "messages": user("long")})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(small.hits(), 1, "no retries on a context-window error with a fallback");
    assert_eq!(big.hits(), 1);

    // Pre-call check: the prompt is known not to fit from max_input_tokens, so `small` is not called.
    small.set(Behaviour::default());
    let tail = "router_settings:\n  enable_pre_call_checks: true\n  context_window_fallbacks: [{small: [big]}]\n";
    let gw = spawn(&cfg(
        &[
            dep("small", &small, "    model_info:\n      max_input_tokens: 50\n"),
            dep("big", &big, ""),
        ],
        tail,
    ))
    .await;
    let long = "word ".repeat(400);
    let r = gw.chat(json!({"model": "small", "messages": user(&long)})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-model-group"], "big");
    assert_eq!(small.hits(), 1, "only the earlier call");
    let r = gw.chat(json!({"model": "small", "messages": user("short")})).await;
    assert_eq!(r.headers()["x-litellm-model-group"], "small");

    // Without a fallback, the client gets OpenAI's context-length error.
    let gw = spawn(&cfg(
        &[dep("small", &small, "    model_info:\n      max_input_tokens: 50\n")],
        "router_settings:\n  enable_pre_call_checks: true\n",
    ))
    .await;
    let r = gw.chat(json!({"model": "small", "messages": user(&long)})).await;
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn content_policy_fallbacks() {
    let strict = MockUpstream::start().await.unwrap();
    let lenient = MockUpstream::start().await.unwrap();
    strict.set(Behaviour {
        status: Some(400),
        error_message: Some("Your request was rejected as a result of our safety system".into()),
        ..Default::default()
    });
    let gw = spawn(&cfg(
        &[dep("s", &strict, ""), dep("l", &lenient, "")],
        "router_settings:\n  content_policy_fallbacks: [{s: [l]}]\n",
    ))
    .await;
    let r = gw.chat(json!({"model": "s", "messages": user("x")})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(lenient.hits(), 1);
}

#[tokio::test]
async fn max_fallbacks_bounds_the_chain() {
    let broken: Vec<MockUpstream> = futures_util::future::join_all((0..4).map(|_| MockUpstream::start()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for m in &broken {
        m.set(Behaviour {
            status: Some(500),
            ..Default::default()
        });
    }
    let deps: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .zip(&broken)
        .map(|(g, m)| dep(g, m, ""))
        .collect();
    let gw = spawn(&cfg(
        &deps,
        "router_settings:\n  num_retries: 0\n  max_fallbacks: 2\n  fallbacks: [{a: [b, c, d]}]\n",
    ))
    .await;
    let r = gw.chat(json!({"model": "a", "messages": user("x")})).await;
    assert_eq!(r.status(), 500);
    let hits: Vec<u64> = broken.iter().map(|m| m.hits()).collect();
    assert_eq!(hits, [1, 1, 1, 0]);
}

#[tokio::test]
async fn streams_fail_over_before_the_first_byte() {
    let dead = MockUpstream::start().await.unwrap();
    let live = MockUpstream::start().await.unwrap();
    // 200 head, then the connection breaks before any event.
    dead.set(Behaviour {
        cut_after: Some(0),
        ..Default::default()
    });
    let gw = spawn(&cfg(
        &[dep("m", &dead, "      order: 1\n"), dep("m", &live, "      order: 2\n")],
        "router_settings:\n  disable_cooldowns: true\n",
    ))
    .await;
    let r = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("a b c")}))
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("error"));
    assert_eq!((dead.hits(), live.hits()), (1, 1));

    // A stream that stalls before its first event fails over after stream_timeout.
    dead.set(Behaviour {
        stall_after: Some(0),
        ..Default::default()
    });
    let gw = spawn(&cfg(
        &[
            dep("m", &dead, "      order: 1\n      stream_timeout: 0.3\n"),
            dep("m", &live, "      order: 2\n"),
        ],
        "router_settings:\n  disable_cooldowns: true\n",
    ))
    .await;
    let r = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("a b c")}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(live.hits(), 2);
}

#[tokio::test]
async fn hanging_deployment_times_out_onto_its_sibling() {
    let hung = MockUpstream::start().await.unwrap();
    let live = MockUpstream::start().await.unwrap();
    hung.set(Behaviour {
        hang: true,
        ..Default::default()
    });
    let gw = spawn(&cfg(
        &[
            dep("m", &hung, "      order: 1\n      timeout: 0.3\n"),
            dep("m", &live, "      order: 2\n"),
        ],
        "",
    ))
    .await;
    let r = gw.chat(json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-attempted-retries"], "1");
}

#[tokio::test]
async fn retry_policy_per_error_class() {
    let a = MockUpstream::start().await.unwrap();
    a.set(Behaviour {
        status: Some(429),
        ..Default::default()
    });
    let gw = spawn(&cfg(
        &[dep("m", &a, "")],
        "router_settings:\n  num_retries: 3\n  retry_policy: {RateLimitErrorRetries: 0}\n",
    ))
    .await;
    assert_eq!(
        gw.chat(json!({"model": "m", "messages": user("x")})).await.status(),
        429
    );
    assert_eq!(a.hits(), 1);
    // The request's own num_retries wins.
    let b = MockUpstream::start().await.unwrap();
    b.set(Behaviour {
        status: Some(500),
        fail_times: Some(1),
        ..Default::default()
    });
    let gw = spawn(&cfg(&[dep("m", &b, "")], "router_settings:\n  num_retries: 0\n")).await;
    assert_eq!(
        gw.chat(json!({"model": "m", "messages": user("x"), "num_retries": 1}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn mock_response_in_params_and_body() {
    let up = MockUpstream::start().await.unwrap();
    let gw = spawn(&cfg(
        &[
            dep("canned", &up, "      mock_response: \"hello from config\"\n"),
            dep("real", &up, ""),
        ],
        "",
    ))
    .await;
    let b: Value = gw
        .chat(json!({"model": "canned", "messages": user("x")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["choices"][0]["message"]["content"], "hello from config");
    let b: Value = gw
        .chat(json!({"model": "real", "messages": user("x"), "mock_response": "from body"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["choices"][0]["message"]["content"], "from body");
    let text = gw
        .chat(json!({"model": "real", "stream": true, "messages": user("x"), "mock_response": "streamed"}))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\"content\":\"streamed\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn wildcards_pass_the_requested_model_through() {
    let up = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: exact\n    litellm_params: {{model: openai/exact-up, api_base: '{0}', api_key: k}}\n  - model_name: \"openai/*\"\n    litellm_params: {{model: \"openai/*\", api_base: '{0}', api_key: k}}\n  - model_name: \"*\"\n    litellm_params: {{model: \"*\", api_base: '{0}', api_key: k}}\n",
        up.base_url()
    );
    let gw = spawn(&yaml).await;
    for (asked, upstream) in [
        ("exact", "exact-up"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4.1", "gpt-4.1"),
        ("groq/llama-3.1-8b", "llama-3.1-8b"),
    ] {
        let r = gw.chat(json!({"model": asked, "messages": user("x")})).await;
        assert_eq!(r.status(), 200, "{asked}");
        assert_eq!(r.headers()["x-litellm-model-group"], asked);
        assert_eq!(up.requests().last().unwrap().body["model"], upstream, "{asked}");
    }
    let ids: Vec<String> = futures_util::future::join_all(
        ["openai/a", "openai/a", "openai/b"].map(|m| gw.chat(json!({"model": m, "messages": user("x")}))),
    )
    .await
    .into_iter()
    .map(|r| r.headers()["x-litellm-model-id"].to_str().unwrap().to_string())
    .collect();
    assert_eq!(ids[0], ids[1], "a stable id per requested model");
    assert_ne!(ids[0], ids[2]);
}

#[tokio::test]
async fn model_info_shows_live_state_without_secrets() {
    let bad = MockUpstream::start().await.unwrap();
    let good = MockUpstream::start().await.unwrap();
    bad.set(Behaviour {
        status: Some(401),
        ..Default::default()
    });
    let yaml = cfg(
        &[dep("m", &bad, ""), dep("m", &good, "")],
        "general_settings:\n  master_key: sk-admin\n",
    );
    let yaml = yaml.replace("api_key: k\n", "api_key: sk-upstream-very-secret\n");
    let gw = spawn(&yaml).await;
    for _ in 0..6 {
        let r = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("sk-admin")
            .json(&json!({"model": "m", "messages": user("x")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(gw.client.get(gw.url("/model/info")).send().await.unwrap().status(), 401);
    let r = gw
        .client
        .get(gw.url("/v1/model/info"))
        .bearer_auth("sk-admin")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("very-secret"), "{text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    let data = info["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let bad_entry = data
        .iter()
        .find(|d| d["litellm_params"]["api_base"] == bad.base_url().as_str())
        .unwrap();
    let state = &bad_entry["model_info"]["state"];
    assert_eq!(state["healthy"], false, "401 cooled it: {state}");
    assert!(state["cooldown_remaining_s"].as_f64().unwrap() > 0.0);
    assert!(state["last_error"].as_str().unwrap().contains("401"));
    assert_eq!(bad.hits(), 1);
    let good_state = &data
        .iter()
        .find(|d| d["litellm_params"]["api_base"] == good.base_url().as_str())
        .unwrap()["model_info"]["state"];
    assert_eq!(good_state["healthy"], true);
    assert!(good_state["ewma_latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(good_state["in_flight"], 0);
}

#[tokio::test]
async fn background_health_checks_take_deployments_out_and_back() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    a.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let gw = spawn(&cfg(&[dep("m", &a, ""), dep("m", &b, "")], "general_settings:\n  background_health_checks: true\n  health_check_interval: 0.2\nrouter_settings:\n  disable_cooldowns: true\n")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes = a.hits();
    assert!(probes >= 1, "probed in the background");
    ok_count(&gw, "m", 20).await;
    assert!(
        a.hits() - probes <= 2,
        "unhealthy: out of rotation (probes only): {} -> {}",
        probes,
        a.hits()
    );
    a.set(Behaviour::default());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = a.hits();
    ok_count(&gw, "m", 40).await;
    assert!(
        a.hits() - before >= 8,
        "healthy again, back in rotation: {}",
        a.hits() - before
    );
}
