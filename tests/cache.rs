//! The response cache: hit, miss, bypass and expiry; stream replay byte for byte; tenant
//! isolation; hits free in the ledger; and the Redis cache shared by two gateways (the real Redis
//! named by `SWITCHYARD_TEST_REDIS_URL`; `SWITCHYARD_REQUIRE_REDIS=1` makes its absence a failure).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const MASTER: &str = "sk-master-cache-test";

fn cached_config(mock: &MockUpstream, cache_params: &str, general: &str) -> String {
    format!(
        "model_list:\n{}{}litellm_settings:\n  cache: true\n  cache_params:\n{cache_params}general_settings:\n{general}",
        entry("m1", mock, ""),
        entry("m2", mock, ""),
    )
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": user(text), "temperature": 0})
}

async fn send(gw: &Gateway, body: Value, headers: &[(&str, &str)]) -> (u16, String, String, String) {
    let mut rb = gw.client.post(gw.url("/v1/chat/completions")).json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (cache, key) = (h("x-switchyard-cache"), h("x-litellm-cache-key"));
    (status, cache, key, r.text().await.unwrap())
}

#[tokio::test]
async fn hit_miss_bypass_and_no_store() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&cached_config(&mock, "    type: local\n", "  disable_database: true\n")).await;
    let (s, c, key, first) = send(&gw, ask("m1", "what is 2+2"), &[]).await;
    assert_eq!((s, c.as_str()), (200, "miss"));
    assert_eq!(key.len(), 64, "sha-256 hex: {key}");
    // Same question, keys in another order, another `user`: one upstream call in all.
    let reordered = json!({"temperature": 0, "messages": user("what is 2+2"), "model": "m1", "user": "someone"});
    let (_, c, key2, second) = send(&gw, reordered, &[]).await;
    assert_eq!(c, "hit");
    assert_eq!(key2, key);
    assert_eq!(second, first, "the cached body is the first answer");
    assert_eq!(mock.hits(), 1);
    // Another parameter, another model group: misses.
    let (_, c, ..) = send(
        &gw,
        json!({"model": "m1", "messages": user("what is 2+2"), "temperature": 1}),
        &[],
    )
    .await;
    assert_eq!(c, "miss");
    let (_, c, ..) = send(&gw, ask("m2", "what is 2+2"), &[]).await;
    assert_eq!(c, "miss");
    assert_eq!(mock.hits(), 3);
    // no-cache: served fresh (and stored); Cache-Control no-cache + no-store: bypass.
    let mut body = ask("m1", "what is 2+2");
    body["cache"] = json!({"no-cache": true});
    let (_, c, ..) = send(&gw, body, &[]).await;
    assert_eq!(c, "miss");
    let (_, c, ..) = send(
        &gw,
        ask("m1", "what is 2+2"),
        &[("cache-control", "no-cache, no-store")],
    )
    .await;
    assert_eq!(c, "bypass");
    assert_eq!(mock.hits(), 5);
    // no-store: answered, not kept.
    let mut body = ask("m1", "a fresh question");
    body["cache"] = json!({"no-store": true});
    let (_, c, ..) = send(&gw, body, &[]).await;
    assert_eq!(c, "miss");
    let (_, c, ..) = send(&gw, ask("m1", "a fresh question"), &[]).await;
    assert_eq!(c, "miss", "nothing was stored");
    let (_, c, ..) = send(&gw, ask("m1", "a fresh question"), &[]).await;
    assert_eq!(c, "hit");
    assert_eq!(mock.hits(), 7);
    // The body's `cache` never reaches the upstream.
    let seen = mock.requests();
    assert_eq!(seen.len(), 7);
    assert!(seen
        .iter()
        .all(|r| r.body.get("cache").is_none() && r.body.get("messages").is_some()));
    // The Anthropic Messages path has entries of its own (the answer's shape differs).
    let messages = json!({"model": "m1", "max_tokens": 16, "messages": user("what is 2+2")});
    let mut bodies = Vec::new();
    for expect in ["miss", "hit"] {
        let r = gw
            .client
            .post(gw.url("/v1/messages"))
            .json(&messages)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-switchyard-cache"], expect);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
        bodies.push(v);
    }
    assert_eq!(bodies[0], bodies[1]);
    // Hits are counted in LiteLLM's cache metric: 2 on the chat path above, 1 on the Messages path.
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hits: f64 = text
        .lines()
        .filter(|l| l.starts_with("litellm_cache_hits_metric_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(hits, 3.0, "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn entries_expire_by_ttl_and_max_age() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&cached_config(&mock, "    ttl: 60\n", "  disable_database: true\n")).await;
    let mut short = ask("m1", "short lived");
    short["cache"] = json!({"ttl": 0.3});
    assert_eq!(send(&gw, short.clone(), &[]).await.1, "miss");
    assert_eq!(send(&gw, ask("m1", "short lived"), &[]).await.1, "hit");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        send(&gw, ask("m1", "short lived"), &[]).await.1,
        "miss",
        "expired after its ttl"
    );
    // An entry older than the request's max-age is not used (and the fresh answer replaces it).
    assert_eq!(send(&gw, ask("m1", "aged"), &[]).await.1, "miss");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, c, ..) = send(&gw, ask("m1", "aged"), &[("cache-control", "max-age=1")]).await;
    assert_eq!(c, "miss");
    let mut fresh_enough = ask("m1", "aged");
    fresh_enough["cache"] = json!({"s-maxage": 30});
    assert_eq!(send(&gw, fresh_enough, &[]).await.1, "hit");
    gw.stop().await;
}

#[tokio::test]
async fn streams_replay_byte_identical_and_default_off_mode() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&cached_config(&mock, "", "  disable_database: true\n")).await;
    let mut body = ask("m1", "stream me a story");
    body["stream"] = json!(true);
    let (_, c, _, first) = send(&gw, body.clone(), &[]).await;
    assert_eq!(c, "miss");
    assert!(first.contains("data: [DONE]"));
    let (_, c, _, second) = send(&gw, body.clone(), &[]).await;
    assert_eq!(c, "hit");
    assert_eq!(second.as_bytes(), first.as_bytes(), "replayed byte for byte");
    assert_eq!(mock.hits(), 1);
    // The full-body form of the same question is its own entry.
    assert_eq!(send(&gw, ask("m1", "stream me a story"), &[]).await.1, "miss");
    // A stream cut short is not kept.
    mock.set(Behaviour {
        end_without_done_after: Some(1),
        ..Default::default()
    });
    let mut cut = ask("m1", "cut short");
    cut["stream"] = json!(true);
    send(&gw, cut.clone(), &[]).await;
    mock.set(Behaviour::default());
    assert_eq!(send(&gw, cut, &[]).await.1, "miss");
    gw.stop().await;

    let gw = spawn(&cached_config(
        &mock,
        "    mode: default_off\n",
        "  disable_database: true\n",
    ))
    .await;
    assert_eq!(send(&gw, ask("m1", "opt in"), &[]).await.1, "bypass");
    let mut opt = ask("m1", "opt in");
    opt["cache"] = json!({"use-cache": true});
    assert_eq!(send(&gw, opt.clone(), &[]).await.1, "miss");
    assert_eq!(send(&gw, opt, &[]).await.1, "hit");
    assert_eq!(send(&gw, ask("m1", "opt in"), &[]).await.1, "bypass");
    gw.stop().await;
}

#[tokio::test]
async fn tenants_only_get_answers_for_models_they_may_use_and_hits_cost_nothing() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let general = format!(
        "  master_key: {MASTER}\n  database_path: {}\n  spend_logs_flush_interval: 0.05\n",
        dir.path().join("c.db").display()
    );
    let yaml = cached_config(&mock, "", &general).replace(
        "      api_key: sk-upstream-secret\n",
        "      api_key: sk-upstream-secret\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n",
    );
    let gw = spawn(&yaml).await;
    let key = |models: Value| gw.generate_key(MASTER, json!({ "models": models }));
    let (a, b, c) = (
        key(json!(["m1"])).await,
        key(json!(["m2"])).await,
        key(json!(["m1"])).await,
    );
    let as_key = |k: &str| [("authorization", format!("Bearer {k}"))];
    let call = |k: String| {
        let gw = &gw;
        async move {
            let h = as_key(&k);
            send(gw, ask("m1", "tenant question"), &[(h[0].0, h[0].1.as_str())]).await
        }
    };
    assert_eq!(call(a.clone()).await.1, "miss");
    let (status, cache, _, body) = call(b).await;
    assert_eq!(status, 401, "{body}");
    assert!(cache.is_empty(), "a refused caller is told nothing about the cache");
    let (status, cache, ..) = call(c).await;
    assert_eq!(
        (status, cache.as_str()),
        (200, "hit"),
        "another key allowed m1 shares the answer"
    );
    assert_eq!(mock.hits(), 1);
    // The ledger: the miss is charged, the hit costs 0 and says so.
    let mut rows = Vec::new();
    for _ in 0..100 {
        let r = gw
            .client
            .get(gw.url("/spend/logs"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        rows = r.json::<Vec<Value>>().await.unwrap();
        if rows.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok: Vec<&Value> = rows.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(ok.len(), 2, "{rows:?}");
    let hit = ok.iter().find(|r| r["cache_hit"] == true).expect("a hit row");
    let miss = ok.iter().find(|r| r["cache_hit"] == false).expect("a miss row");
    assert_eq!(hit["spend"].as_f64(), Some(0.0));
    assert_eq!(hit["route"], "cache");
    assert!(miss["spend"].as_f64().unwrap() > 0.0);
    assert_eq!(
        hit["total_tokens"], miss["total_tokens"],
        "the hit reports the answer's tokens"
    );
    // A stream too: its usage comes from the stream's meter, though the client (which did not ask
    // for usage) never saw the usage event and the kept body has none.
    let mut streamed = ask("m1", "a streamed tenant question");
    streamed["stream"] = json!(true);
    let h = as_key(&a);
    let (status, cache, _, body) = send(&gw, streamed.clone(), &[(h[0].0, h[0].1.as_str())]).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{body}");
    assert!(
        !body.contains("\"usage\":{"),
        "the gateway's usage event is not the client's: {body}"
    );
    let (status, cache, _, replay) = send(&gw, streamed, &[(h[0].0, h[0].1.as_str())]).await;
    assert_eq!((status, cache.as_str(), replay.as_str()), (200, "hit", body.as_str()));
    let mut streams = Vec::new();
    for _ in 0..100 {
        let r = gw
            .client
            .get(gw.url("/spend/logs"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        let rows = r.json::<Vec<Value>>().await.unwrap();
        streams = rows.into_iter().filter(|r| r["stream"] == true).collect();
        if streams.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(streams.len(), 2, "{streams:?}");
    let tokens = |hit: bool| {
        let row = streams.iter().find(|r| r["cache_hit"] == hit).expect("a row");
        (
            row["prompt_tokens"].as_i64().unwrap(),
            row["completion_tokens"].as_i64().unwrap(),
        )
    };
    assert!(tokens(false).1 > 0, "{streams:?}");
    assert_eq!(
        tokens(true),
        tokens(false),
        "the streamed hit reports the answer's tokens"
    );
    gw.stop().await;
}

fn redis_url() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("SWITCHYARD_REQUIRE_REDIS").is_ok_and(|v| v == "1") => {
            panic!("SWITCHYARD_REQUIRE_REDIS=1 but SWITCHYARD_TEST_REDIS_URL is not set")
        }
        _ => {
            eprintln!("cache.rs: Redis suite skipped (SWITCHYARD_TEST_REDIS_URL not set)");
            None
        }
    }
}

#[tokio::test]
async fn redis_cache_is_shared_by_two_gateways() {
    let Some(url) = redis_url() else { return };
    let mock = MockUpstream::start().await.unwrap();
    let ns = format!("t{}", uuid::Uuid::new_v4().simple());
    let params = format!("    type: redis\n    url: {url}\n    namespace: {ns}\n    ttl: 30\n");
    let one = spawn(&cached_config(&mock, &params, "  disable_database: true\n")).await;
    let two = spawn(&cached_config(&mock, &params, "  disable_database: true\n")).await;
    let (_, c, key, first) = send(&one, ask("m1", "shared across gateways"), &[]).await;
    assert_eq!(c, "miss");
    assert!(key.starts_with(&format!("{ns}:")));
    // The Redis write is in the background: poll (bounded) until the second gateway hits.
    let mut seen = None;
    for _ in 0..50 {
        let (_, c, _, body) = send(&two, ask("m1", "shared across gateways"), &[]).await;
        if c == "hit" {
            seen = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some(first.as_str()),
        "the second gateway answered from Redis"
    );
    let upstream_calls = mock.hits();
    // A stream, too.
    let mut s = ask("m1", "a shared stream");
    s["stream"] = json!(true);
    let (_, _, _, streamed) = send(&one, s.clone(), &[]).await;
    let mut replay = None;
    for _ in 0..50 {
        let (_, c, _, body) = send(&two, s.clone(), &[]).await;
        if c == "hit" {
            replay = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replay.as_deref(), Some(streamed.as_str()));
    assert!(mock.hits() > upstream_calls, "the stream went upstream at least once");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_redis_that_is_down_is_a_miss_not_an_error() {
    let mock = MockUpstream::start().await.unwrap();
    // A port nothing listens on.
    let port = free_port();
    let params = format!("    type: redis\n    host: 127.0.0.1\n    port: {port}\n");
    let gw = spawn(&cached_config(&mock, &params, "  disable_database: true\n")).await;
    for _ in 0..3 {
        let (s, ..) = send(&gw, ask("m1", "redis is down"), &[]).await;
        assert_eq!(s, 200);
    }
    // The in-process cache still answers.
    assert!(mock.hits() < 3);
    gw.stop().await;
}

/// Whether an entry `one` stores reaches `two` through Redis: a new question each round (`one`
/// stores in Redis only what it fetched upstream), asked of `two` once only, after a pause for
/// the background write, so that a hit can only come from Redis, not from `two`'s own cache.
async fn shared_through_redis(one: &Gateway, two: &Gateway, label: &str, rounds: usize) -> bool {
    for i in 0..rounds {
        let q = ask("m1", &format!("{label} {i}"));
        let (s, c, _, first) = send(one, q.clone(), &[]).await;
        assert_eq!((s, c.as_str()), (200, "miss"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (s, c, _, second) = send(two, q, &[]).await;
        assert_eq!(s, 200);
        if c == "hit" {
            assert_eq!(second, first, "the entry `one` stored");
            return true;
        }
    }
    false
}

/// Redis behind a loopback proxy that is cut (open connections dropped, new ones refused) and
/// restored: every request answers while it is away, and entries are shared through it again
/// after. Two gateways, so that a hit on the second can only come from Redis.
#[tokio::test]
async fn redis_cut_and_restored_answers_throughout_and_shares_again_after() {
    let Some(url) = redis_url() else { return };
    let mut parsed = url::Url::parse(&url).unwrap();
    let target = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(6379));
    let proxy = CutProxy::start(target).await;
    parsed.set_port(Some(proxy.addr.port())).unwrap();
    let mock = MockUpstream::start().await.unwrap();
    let ns = format!("t{}", uuid::Uuid::new_v4().simple());
    let params = format!("    type: redis\n    url: {parsed}\n    namespace: {ns}\n    ttl: 60\n");
    let one = spawn(&cached_config(&mock, &params, "  disable_database: true\n")).await;
    let two = spawn(&cached_config(&mock, &params, "  disable_database: true\n")).await;
    assert!(
        shared_through_redis(&one, &two, "before the cut", 20).await,
        "shared before the cut"
    );

    proxy.cut();
    for i in 0..10 {
        let q = ask("m1", &format!("during the cut {i}"));
        let (s1, ..) = send(&one, q.clone(), &[]).await;
        let (s2, c2, ..) = send(&two, q, &[]).await;
        assert_eq!((s1, s2), (200, 200), "answered while Redis is away");
        assert_eq!(c2, "miss", "nothing can come from Redis while it is cut");
    }
    // Each gateway's own cache still answers what it served itself.
    assert_eq!(send(&two, ask("m1", "during the cut 0"), &[]).await.1, "hit");

    proxy.restore();
    // Redis is left alone a few seconds after a failed connect; then entries flow again.
    assert!(
        shared_through_redis(&one, &two, "after the cut", 60).await,
        "entries are shared through Redis again after it is back"
    );
    one.stop().await;
    two.stop().await;
}
