//! Budgets under concurrency (reservations), "free" decided by price rather than address, and
//! sliding-window rate limits with LiteLLM's headers. Spend is read from the ledger rows in the
//! database itself (SQLite, and the real Postgres when `SWITCHYARD_TEST_DATABASE_URL` names one).

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use switchyard::routing::clock::ManualClock;

const MASTER: &str = "sk-master-test-1234";

/// A priced deployment on the (loopback) mock, and an unpriced one: the first is paid by its
/// price although its address is local, the second is free.
fn config(db: &str, paid: &MockUpstream, free: &MockUpstream, input: f64, output: f64) -> String {
    format!(
        "model_list:\n  - model_name: paid\n    litellm_params:\n      model: openai/paid-m\n      api_base: {}\n      api_key: sk-up\n      input_cost_per_token: {input}\n      output_cost_per_token: {output}\n  - model_name: free\n    litellm_params:\n      model: openai/free-m\n      api_base: {}\ngeneral_settings:\n  master_key: {MASTER}\n  spend_logs_flush_interval: 0.05\n{db}",
        paid.base_url(),
        free.base_url(),
    )
}

async fn chat(gw: &Gateway, key: &str, model: &str, max_tokens: u64) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": user("hello there"), "max_tokens": max_tokens}))
        .send()
        .await
        .unwrap()
}

async fn scalar(url: &str, sql: &str) -> f64 {
    use sqlx::Connection;
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut c)
        .await
        .unwrap();
    let v: f64 = row.try_get(0).unwrap();
    let _ = c.close().await;
    v
}

/// Total spend in the ledger once it holds `rows` rows, read from the database directly.
async fn ledger_spend(url: &str, rows: usize) -> f64 {
    let count = "SELECT CAST(COUNT(*) AS DOUBLE PRECISION) FROM sy_spend_logs";
    for _ in 0..300 {
        if scalar(url, count).await >= rows as f64 {
            return scalar(
                url,
                "SELECT CAST(COALESCE(SUM(cost), 0) AS DOUBLE PRECISION) FROM sy_spend_logs",
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger never reached {rows} rows");
}

/// The mock's usage for `user("hello there")`: 2 prompt words, 3 reply words ("echo: hello there").
const PROMPT: f64 = 2.0;
const COMPLETION: f64 = 3.0;
/// The gateway's own prompt estimate for the same message: (11 chars + 16) / 4 + 1.
const PROMPT_ESTIMATE: f64 = 7.0;

#[tokio::test]
async fn concurrent_requests_cannot_overspend_a_small_budget() {
    let (paid, free) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    paid.set(Behaviour {
        latency_ms: 50,
        ..Default::default()
    });
    let (input, output, max_tokens) = (0.00001, 0.00002, 10u64);
    let cost = PROMPT * input + COMPLETION * output;
    let estimate = PROMPT_ESTIMATE * input + max_tokens as f64 * output;
    let budget = 0.001;
    for (db, url, _dir) in backends().await {
        let gw = spawn(&config(&db, &paid, &free, input, output)).await;
        let key = gw.generate_key(MASTER, json!({"max_budget": budget})).await;
        let calls = (0..64).map(|_| chat(&gw, &key, "paid", max_tokens));
        let answers = futures_util::future::join_all(calls).await;
        let mut served = 0;
        for r in answers {
            match r.status().as_u16() {
                200 => served += 1,
                400 => assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "budget_exceeded"),
                s => panic!("unexpected status {s}: {}", r.text().await.unwrap_or_default()),
            }
        }
        assert!(served >= 1, "at least the first request fits");
        let spent = ledger_spend(&url, 64).await;
        assert!((spent - served as f64 * cost).abs() < 1e-9, "{spent} for {served}");
        assert!(
            spent <= budget + estimate + 1e-12,
            "spent {spent} on a {budget} budget ({served} of 64 served; estimate {estimate})"
        );
        // Sequential requests then use the rest of the budget, and stop at it.
        let mut more = 0;
        while chat(&gw, &key, "paid", max_tokens).await.status() == 200 {
            more += 1;
            assert!(more < 100, "the budget never closed");
        }
        let spent = ledger_spend(&url, 64 + more + 1).await;
        assert!(spent <= budget + estimate + 1e-12, "spent {spent}");
        assert!(
            spent + estimate > budget,
            "refused only once the next estimate did not fit ({spent})"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_priced_deployment_on_loopback_is_paid_and_an_unpriced_one_stays_free() {
    let (paid, free) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let (input, output, max_tokens) = (0.003, 0.008, 5u64);
    let estimate = PROMPT_ESTIMATE * input + max_tokens as f64 * output;
    let budget = 0.10;
    for (db, url, _dir) in backends().await {
        let gw = spawn(&config(&db, &paid, &free, input, output)).await;
        let key = gw.generate_key(MASTER, json!({"max_budget": budget})).await;
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let r = chat(&gw, &key, "paid", max_tokens).await;
            let status = r.status().as_u16();
            if status == 400 {
                assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "budget_exceeded");
            }
            statuses.push(status);
        }
        assert_eq!(statuses[0], 200, "{statuses:?}");
        assert_eq!(
            statuses[9], 400,
            "the budget closed the priced loopback deployment: {statuses:?}"
        );
        let spent = ledger_spend(&url, 10).await;
        assert!(spent > 0.0, "its prices are charged");
        assert!(spent <= budget + estimate + 1e-12, "spent {spent} on {budget}");
        // The unpriced local deployment is free, so a spent budget does not close it.
        let r = chat(&gw, &key, "free", max_tokens).await;
        assert_eq!(r.status(), 200);
        gw.stop().await;
    }
}

fn limits_config(mock: &MockUpstream, dir: &tempfile::TempDir) -> String {
    format!(
        "model_list:\n{}general_settings:\n  master_key: {MASTER}\n  database_path: {}\n",
        entry("m", mock, ""),
        dir.path().join("t.db").display()
    )
}

/// Sends `n` requests, returning the statuses and the last response's headers.
async fn burst(gw: &Gateway, key: &str, n: usize) -> (Vec<u16>, Vec<reqwest::header::HeaderMap>) {
    let mut statuses = Vec::new();
    let mut headers = Vec::new();
    for _ in 0..n {
        let r = chat(gw, key, "m", 5).await;
        statuses.push(r.status().as_u16());
        headers.push(r.headers().clone());
    }
    (statuses, headers)
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn rpm_is_a_sliding_window_that_a_minute_boundary_does_not_double() {
    let mock = MockUpstream::start().await.unwrap();
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_with_clock(&limits_config(&mock, &dir), clock.clone()).await;
    let key = gw.generate_key(MASTER, json!({"rpm_limit": 10})).await;
    // 10 just before a minute boundary, 10 just after: the second ten are within 60 s of the first.
    clock.advance(Duration::from_millis(59_500));
    let (before, h) = burst(&gw, &key, 10).await;
    assert_eq!(before, vec![200; 10]);
    for (i, h) in h.iter().enumerate() {
        assert_eq!(header(h, "x-ratelimit-limit-requests").as_deref(), Some("10"));
        assert_eq!(header(h, "x-ratelimit-remaining-requests"), Some((9 - i).to_string()));
    }
    clock.advance(Duration::from_millis(1_000));
    let (after, h) = burst(&gw, &key, 10).await;
    assert_eq!(after, vec![429; 10], "no window boundary doubles the limit");
    assert_eq!(header(&h[0], "x-ratelimit-remaining-requests").as_deref(), Some("0"));
    let retry: u64 = header(&h[0], "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // Once the first ten are more than a minute old, the window has room again.
    clock.advance(Duration::from_secs(retry));
    let (again, _) = burst(&gw, &key, 11).await;
    assert_eq!(&again[..10], &[200; 10], "{again:?}");
    assert_eq!(again[10], 429);
    gw.stop().await;
}

#[tokio::test]
async fn tpm_is_a_sliding_window_with_token_headers() {
    let mock = MockUpstream::start().await.unwrap();
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_with_clock(&limits_config(&mock, &dir), clock.clone()).await;
    // Each request uses 5 tokens (2 prompt, 3 completion): four fill a 20-token minute.
    let key = gw.generate_key(MASTER, json!({"tpm_limit": 20})).await;
    clock.advance(Duration::from_millis(59_500));
    let (before, h) = burst(&gw, &key, 5).await;
    assert_eq!(before, vec![200, 200, 200, 200, 429]);
    assert_eq!(header(&h[0], "x-ratelimit-limit-tokens").as_deref(), Some("20"));
    assert_eq!(header(&h[0], "x-ratelimit-remaining-tokens").as_deref(), Some("20"));
    assert_eq!(header(&h[1], "x-ratelimit-remaining-tokens").as_deref(), Some("15"));
    assert_eq!(header(&h[4], "x-ratelimit-remaining-tokens").as_deref(), Some("0"));
    // The first tokens (at 59.5 s) leave the window at 120 s.
    assert_eq!(header(&h[1], "x-ratelimit-reset-tokens").as_deref(), Some("61"));
    assert_eq!(header(&h[4], "x-ratelimit-reset-tokens").as_deref(), Some("61"));
    assert_eq!(header(&h[4], "retry-after").as_deref(), Some("61"));
    clock.advance(Duration::from_millis(1_000));
    let (after, _) = burst(&gw, &key, 2).await;
    assert_eq!(after, vec![429, 429], "the tokens of a second ago still count");
    clock.advance(Duration::from_secs(61));
    let (later, _) = burst(&gw, &key, 1).await;
    assert_eq!(later, vec![200]);
    gw.stop().await;
}

#[tokio::test]
async fn a_fallback_to_a_priced_group_reserves_at_its_price_first() {
    let (paid, local) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    local.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let db = format!("  database_path: {}\n", dir.path().join("t.db").display());
    let yaml = format!(
        "{}router_settings:\n  num_retries: 0\n  fallbacks: [{{free: [paid]}}]\n",
        config(&db, &paid, &local, 0.001, 0.002)
    );
    let gw = spawn(&yaml).await;
    // The free group fails; its fallback costs 7 * 0.001 + 10 * 0.002 = $0.027 at most.
    let small = gw.generate_key(MASTER, json!({"max_budget": 0.02})).await;
    let r = chat(&gw, &small, "free", 10).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "budget_exceeded");
    assert_eq!(paid.hits(), 0, "the paid fallback was not called past the budget");
    let enough = gw.generate_key(MASTER, json!({"max_budget": 0.03})).await;
    let r = chat(&gw, &enough, "free", 10).await;
    assert_eq!(r.status(), 200);
    assert_eq!(paid.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_holds_its_reservation_until_the_client_goes_away() {
    let (paid, free) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    paid.set(Behaviour {
        chunks: Some(40),
        chunk_delay_ms: 100,
        ..Default::default()
    });
    let (input, output, max_tokens) = (0.00001, 0.00002, 10u64);
    let estimate = PROMPT_ESTIMATE * input + max_tokens as f64 * output;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("  database_path: {}\n", dir.path().join("t.db").display());
    let gw = spawn(&config(&db, &paid, &free, input, output)).await;
    // Room for one estimate, not two.
    let key = gw.generate_key(MASTER, json!({"max_budget": 1.5 * estimate})).await;
    let mut stream = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "paid", "stream": true, "messages": user("hello there"), "max_tokens": max_tokens}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await.unwrap().is_some());
    // While the stream runs, its reservation leaves no room for a second request.
    let r = chat(&gw, &key, "paid", max_tokens).await;
    assert_eq!(r.status(), 400, "the stream's reservation is held");
    // The client goes away: the stream is settled at what it used, and the rest is released.
    drop(stream);
    let mut status = 0;
    for _ in 0..60 {
        status = chat(&gw, &key, "paid", max_tokens).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the reservation was released when the client left");
    gw.stop().await;
}

#[tokio::test]
async fn deployment_rpm_and_tpm_are_sliding_windows_too() {
    let mock = MockUpstream::start().await.unwrap();
    let clock = Arc::new(ManualClock::default());
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  routing_strategy: usage-based-routing-v2\n",
        entry("r", &mock, "      rpm: 3\n"),
        entry("t", &mock, "      tpm: 20\n"),
    );
    let gw = spawn_with_clock(&yaml, clock.clone()).await;
    let ask = |model: &str| json!({"model": model, "messages": user("hello there"), "max_tokens": 5});
    clock.advance(Duration::from_millis(59_500));
    for _ in 0..3 {
        assert_eq!(gw.chat(ask("r")).await.status(), 200);
    }
    clock.advance(Duration::from_millis(1_000));
    let r = gw.chat(ask("r")).await;
    assert_eq!(r.status(), 429, "the deployment's rpm holds across the minute boundary");
    let retry: u64 = header(r.headers(), "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    clock.advance(Duration::from_secs(retry));
    assert_eq!(gw.chat(ask("r")).await.status(), 200);

    // tpm: each dispatch counts its 7-token prompt estimate (and a completion once known).
    let mut served = 0;
    while gw.chat(ask("t")).await.status() == 200 {
        served += 1;
        assert!(served < 10);
    }
    assert!(served >= 1);
    clock.advance(Duration::from_millis(1_000));
    assert_eq!(
        gw.chat(ask("t")).await.status(),
        429,
        "the tokens of a second ago still count"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(gw.chat(ask("t")).await.status(), 200);
    gw.stop().await;
}
