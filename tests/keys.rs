//! Virtual keys, budgets, rate limits and the spend ledger, against SQLite and against the real
//! Postgres (a fresh schema per test) when `SWITCHYARD_TEST_DATABASE_URL` names one.
//! `SWITCHYARD_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes a missing Postgres a failure.

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::Row;
use std::time::Duration;

const MASTER: &str = "sk-master-test-1234";

fn config(db: &str, local: &MockUpstream, cloud: &MockUpstream, extra_general: &str) -> String {
    let (l, c) = (local.base_url(), cloud.base_url());
    let cloud_entry = |name: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/cloud-m\n      api_base: {c}\n      api_key: sk-up\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n    model_info:\n      local: false\n      max_output_tokens: 5\n"
        )
    };
    let local_entry = |name: &str| {
        format!("  - model_name: {name}\n    litellm_params:\n      model: openai/local-m\n      api_base: {l}\n")
    };
    format!(
        "model_list:\n{}{}{}{}router_settings:\n  routing_strategy: simple-shuffle\n  fallbacks: [{{local: [cloud]}}]\ngeneral_settings:\n  master_key: {MASTER}\n  spend_logs_flush_interval: 0.05\n{db}{extra_general}",
        local_entry("local"),
        cloud_entry("cloud"),
        local_entry("mixed"),
        cloud_entry("mixed"),
    )
}

/// The local and the cloud upstream every test routes to.
async fn mocks() -> (MockUpstream, MockUpstream) {
    (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    )
}

async fn admin(gw: &Gateway, path: &str, body: Value) -> reqwest::Response {
    gw.admin_post(MASTER, path, body).await
}

async fn admin_get(gw: &Gateway, path: &str) -> Value {
    let r = gw.client.get(gw.url(path)).bearer_auth(MASTER).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn chat_as(gw: &Gateway, key: &str, model: &str) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": user("hello there")}))
        .send()
        .await
        .unwrap()
}

async fn new_key(gw: &Gateway, body: Value) -> String {
    gw.generate_key(MASTER, body).await
}

/// Polls `/spend/logs` until `n` rows are there (the ledger writes in batches).
async fn logs(gw: &Gateway, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let v = admin_get(gw, "/spend/logs").await;
        let rows = v.as_array().unwrap().clone();
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("spend logs never reached {n} rows");
}

#[tokio::test]
async fn key_lifecycle_with_hashing_at_rest() {
    let (local, cloud) = mocks().await;
    for (db, url, _dir) in backends().await {
        let gw = spawn(&config(&db, &local, &cloud, "")).await;
        let key = new_key(
            &gw,
            json!({"models": ["local"], "key_alias": "alice", "tags": ["team-a"]}),
        )
        .await;
        assert!(key.starts_with("sk-"));
        assert_eq!(chat_as(&gw, &key, "local").await.status(), 200);
        let denied = chat_as(&gw, &key, "cloud").await;
        assert_eq!(denied.status(), 401);
        let body: Value = denied.json().await.unwrap();
        assert_eq!(body["error"]["type"], "key_model_access_denied");
        // The key only sees its models.
        let models: Value = gw
            .client
            .get(gw.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["data"].as_array().unwrap().len(), 1);
        // A key reads its own info, not admin routes.
        let own = gw
            .client
            .get(gw.url("/key/info"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200);
        assert_eq!(
            gw.client
                .get(gw.url("/key/list"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );

        let r = admin(&gw, "/key/update", json!({"key": key, "models": ["local", "cloud"]})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(chat_as(&gw, &key, "cloud").await.status(), 200);

        let list = admin_get(&gw, "/key/list?return_full_object=true").await;
        assert_eq!(list["total_count"], 1);
        assert_eq!(list["keys"][0]["key_alias"], "alice");

        let r: Value = admin(&gw, "/key/regenerate", json!({"key_alias": "alice"}))
            .await
            .json()
            .await
            .unwrap();
        let new = r["key"].as_str().unwrap().to_string();
        assert_eq!(chat_as(&gw, &key, "local").await.status(), 401);
        assert_eq!(chat_as(&gw, &new, "local").await.status(), 200);

        // No table holds the key in the clear.
        logs(&gw, 3).await;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        for (table, cols) in [
            ("sy_keys", "token_hash, key_name, metadata"),
            ("sy_spend_logs", "key_hash, request_id, tags"),
        ] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {cols} FROM {table}")))
                .fetch_all(&pool)
                .await
                .unwrap();
            assert!(!rows.is_empty(), "{table} has rows");
            for row in rows {
                for i in 0..3 {
                    let v: Option<String> = row.try_get(i).unwrap();
                    let v = v.unwrap_or_default();
                    assert!(
                        !v.contains(&new) && !v.contains(&key),
                        "{table} holds a key in the clear"
                    );
                }
            }
        }

        let r = admin(&gw, "/key/delete", json!({"keys": [new]})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(chat_as(&gw, &new, "local").await.status(), 401);
        assert_eq!(admin(&gw, "/key/delete", json!({"keys": [new]})).await.status(), 404);
        // Bad input in OpenAI's error shape.
        let bad = admin(&gw, "/key/generate", json!({"max_budget": "lots"})).await;
        assert_eq!(bad.status(), 400);
        assert_eq!(bad.json::<Value>().await.unwrap()["error"]["param"], "max_budget");
        gw.stop().await;
    }
}

#[tokio::test]
async fn budget_closes_paid_deployments_but_not_local_ones() {
    let (local, cloud) = mocks().await;
    for (db, _url, _dir) in backends().await {
        let gw = spawn(&config(&db, &local, &cloud, "")).await;
        let team: Value = admin(&gw, "/team/new", json!({"team_id": "t1", "max_budget": 100}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(team["team_id"], "t1");
        let key = new_key(&gw, json!({"max_budget": 0.001, "team_id": "t1"})).await;
        // A cloud call reserves its estimate (7 prompt + 5 completion tokens at its price, $0.017)
        // before it is made: that does not fit $0.001, so nothing is spent past the budget.
        let over = chat_as(&gw, &key, "cloud").await;
        assert_eq!(over.status(), 400);
        assert_eq!(over.json::<Value>().await.unwrap()["error"]["type"], "budget_exceeded");
        // Free local deployments still serve; a mixed group keeps to its local member.
        assert_eq!(chat_as(&gw, &key, "local").await.status(), 200);
        for _ in 0..4 {
            let r = chat_as(&gw, &key, "mixed").await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-switchyard-route"], "local");
        }
        // Raising the budget reopens the cloud, counters intact.
        admin(&gw, "/key/update", json!({"key": key, "max_budget": 10})).await;
        assert_eq!(chat_as(&gw, &key, "cloud").await.status(), 200);
        // The team was charged too.
        let info = admin_get(&gw, "/team/info?team_id=t1").await;
        assert!(info["team_info"]["spend"].as_f64().unwrap() > 0.0);
        // allow_cloud: false keeps a key local even on fallback.
        let local_only = new_key(&gw, json!({"allow_cloud": false})).await;
        assert_eq!(chat_as(&gw, &local_only, "cloud").await.status(), 503);
        gw.stop().await;
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers() {
    let (local, cloud) = mocks().await;
    for (db, _url, _dir) in backends().await {
        let gw = spawn(&config(&db, &local, &cloud, "")).await;
        let key = new_key(&gw, json!({"rpm_limit": 2})).await;
        let r = chat_as(&gw, &key, "local").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "1");
        assert_eq!(chat_as(&gw, &key, "local").await.status(), 200);
        let r = chat_as(&gw, &key, "local").await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));

        let slow = MockUpstream::start().await.unwrap();
        slow.set(Behaviour {
            latency_ms: 400,
            ..Default::default()
        });
        gw.stop().await;
        let gw = spawn(&config(&db, &slow, &cloud, "")).await;
        let key = new_key(&gw, json!({"max_parallel_requests": 1})).await;
        let (a, b) = tokio::join!(chat_as(&gw, &key, "local"), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            chat_as(&gw, &key, "local").await
        });
        assert_eq!(a.status(), 200);
        assert_eq!(b.status(), 429);
        assert_eq!(chat_as(&gw, &key, "local").await.status(), 200, "the slot is freed");
        gw.stop().await;
    }
}

#[tokio::test]
async fn ledger_rows_are_exact_for_streamed_and_full_calls() {
    let (local, cloud) = mocks().await;
    for (db, _url, _dir) in backends().await {
        let gw = spawn(&config(&db, &local, &cloud, "")).await;
        let key = new_key(&gw, json!({"key_alias": "meter"})).await;
        let full: Value = chat_as(&gw, &key, "cloud").await.json().await.unwrap();
        let (pt, ct) = (
            full["usage"]["prompt_tokens"].as_i64().unwrap(),
            full["usage"]["completion_tokens"].as_i64().unwrap(),
        );
        let stream = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "cloud", "stream": true, "messages": user("hello there"), "metadata": {"tags": ["batch-7"]}}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The client did not ask for usage: the chunk the gateway asked for is not passed on.
        assert!(!stream.contains("\"usage\""), "{stream}");
        assert!(stream.contains("[DONE]"));
        assert_eq!(chat_as(&gw, &key, "local").await.status(), 200);
        let rows = logs(&gw, 3).await;
        let expected = pt as f64 * 0.001 + ct as f64 * 0.002;
        let cloud_rows: Vec<&Value> = rows.iter().filter(|r| r["route"] == "cloud").collect();
        assert_eq!(cloud_rows.len(), 2);
        for r in &cloud_rows {
            assert_eq!(r["prompt_tokens"], pt);
            assert_eq!(r["completion_tokens"], ct);
            assert!((r["spend"].as_f64().unwrap() - expected).abs() < 1e-9, "{r}");
            assert_eq!(r["key_alias"], "meter");
        }
        assert!(cloud_rows
            .iter()
            .any(|r| r["stream"] == true && r["request_tags"] == json!(["batch-7"])));
        // The local call costs 0 and carries its cloud equivalent (the `cloud` fallback's price).
        let l = rows.iter().find(|r| r["route"] == "local").unwrap();
        assert_eq!(l["spend"], 0.0);
        assert!((l["cloud_equivalent"].as_f64().unwrap() - expected).abs() < 1e-9, "{l}");
        let savings = admin_get(&gw, "/savings").await;
        assert!(
            (savings["total"]["saved"].as_f64().unwrap() - expected).abs() < 1e-9,
            "{savings}"
        );
        let tags = admin_get(&gw, "/spend/tags").await;
        assert_eq!(tags["spend_per_tag"][0]["individual_request_tag"], "batch-7");
        let models = admin_get(&gw, "/global/spend/models").await;
        assert_eq!(models[0]["model"], "cloud");
        let report = admin_get(&gw, "/global/spend/report?group_by=api_key").await;
        assert_eq!(report.as_array().unwrap().len(), 1);
        let bad = gw
            .client
            .get(gw.url("/global/spend/report?start_date=yesterday"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        gw.stop().await;
    }
}

#[tokio::test]
async fn concurrent_requests_overspend_by_at_most_one_each_and_shutdown_flushes() {
    let (local, cloud) = mocks().await;
    cloud.set(Behaviour {
        latency_ms: 50,
        ..Default::default()
    });
    for (db, _url, _dir) in backends().await {
        // A flush interval far longer than the test: only the shutdown flush can write the rows.
        let yaml = config(&db, &local, &cloud, "")
            .replace("spend_logs_flush_interval: 0.05", "spend_logs_flush_interval: 600");
        let gw = spawn(&yaml).await;
        let key = new_key(&gw, json!({"max_budget": 0.05})).await;
        let one: Value = chat_as(&gw, MASTER, "cloud").await.json().await.unwrap();
        let cost = one["usage"]["prompt_tokens"].as_f64().unwrap() * 0.001
            + one["usage"]["completion_tokens"].as_f64().unwrap() * 0.002;
        let concurrency = 8;
        let mut served = 0;
        for _ in 0..6 {
            let calls = (0..concurrency).map(|_| chat_as(&gw, &key, "cloud"));
            for r in futures_util::future::join_all(calls).await {
                if r.status() == 200 {
                    served += 1;
                }
            }
        }
        let spent = served as f64 * cost;
        // Each call reserves its estimate (7 prompt + 5 completion tokens) before it is made, so
        // concurrent calls cannot overspend: refused only once the next estimate did not fit.
        let estimate = 7.0 * 0.001 + 5.0 * 0.002;
        assert!(spent + estimate > 0.05, "the budget was used ({spent})");
        assert!(spent <= 0.05 + 1e-9, "overspent: {spent} with cost {cost}");
        let url = gw.url("/spend/logs?limit=10000");
        let before = gw
            .client
            .get(&url)
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(before.as_array().unwrap().len(), 0, "nothing written before shutdown");
        gw.stop().await;
        // A second gateway on the same database sees every row, and the key's spend.
        let gw = spawn(&yaml).await;
        let url = gw.url("/spend/logs?limit=10000");
        let after = gw
            .client
            .get(&url)
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let rows = after.as_array().unwrap();
        assert_eq!(
            rows.len(),
            1 + 6 * concurrency,
            "one row per request, refused ones included"
        );
        assert_eq!(rows.iter().filter(|r| r["status"] == 200).count(), served + 1);
        let info = admin_get(&gw, &format!("/key/info?key={key}")).await;
        assert!((info["info"]["spend"].as_f64().unwrap() - spent).abs() < 1e-9);
        gw.stop().await;
    }
}

/// How the database goes away: Postgres behind a cut proxy; SQLite locked by another process
/// (an exclusive transaction held past the gateway's 5 s busy timeout), its real failure mode.
enum Outage {
    Proxy(CutProxy),
    Lock(String, Option<sqlx::AnyConnection>),
}

impl Outage {
    async fn begin(&mut self) {
        match self {
            Outage::Proxy(p) => p.cut(),
            Outage::Lock(url, conn) => {
                use sqlx::{Connection, Executor};
                let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
                c.execute("BEGIN EXCLUSIVE").await.unwrap();
                *conn = Some(c);
            }
        }
    }

    async fn end(&mut self) {
        match self {
            Outage::Proxy(p) => p.restore(),
            Outage::Lock(_, conn) => {
                use sqlx::{Connection, Executor};
                let mut c = conn.take().unwrap();
                c.execute("ROLLBACK").await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

async fn row_count(url: &str) -> f64 {
    scalar_f64(
        url,
        "SELECT CAST(COUNT(*) AS DOUBLE PRECISION) FROM sy_spend_logs",
        None,
    )
    .await
}

/// Waits for the ledger to hold `n` rows; the database is read directly, not through the gateway.
async fn wait_rows(url: &str, n: f64) {
    for _ in 0..300 {
        if row_count(url).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the ledger never reached {n} rows (has {})", row_count(url).await);
}

#[tokio::test]
async fn database_going_away_and_back_fails_no_request_and_loses_or_doubles_no_row() {
    let (local, cloud) = mocks().await;
    for (db, url, _dir) in backends().await {
        let spill_dir = tempfile::tempdir().unwrap();
        let spill = spill_dir.path().join("spill.jsonl");
        let (db_line, mut outage) = if url.starts_with("postgres") {
            let mut parsed = url::Url::parse(&url).unwrap();
            let target = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432));
            let proxy = CutProxy::start(target).await;
            parsed.set_port(Some(proxy.addr.port())).unwrap();
            (format!("  database_url: \"{parsed}\"\n"), Outage::Proxy(proxy))
        } else {
            (db, Outage::Lock(url.clone(), None))
        };
        let extra = format!(
            "  spend_logs_batch_size: 20\n  spend_logs_buffer_rows: 40\n  spend_logs_spill_path: {}\n",
            spill.display()
        );
        let gw = spawn(&config(&db_line, &local, &cloud, &extra)).await;
        let key = new_key(&gw, json!({"max_budget": 1000.0})).await;
        for _ in 0..3 {
            assert_eq!(chat_as(&gw, &key, "cloud").await.status(), 200);
        }
        wait_rows(&url, 3.0).await;

        outage.begin().await;
        let (waves, concurrency) = (20, 8);
        let mut slowest = Duration::ZERO;
        for _ in 0..waves {
            let calls = (0..concurrency).map(|_| async {
                let t = std::time::Instant::now();
                let r = chat_as(&gw, &key, "cloud").await;
                (r.status(), t.elapsed())
            });
            for (status, took) in futures_util::future::join_all(calls).await {
                assert_eq!(status, 200, "a request failed while the database was away");
                slowest = slowest.max(took);
            }
        }
        // Not a benchmark: a request that waited on the database would take its 3 s connect
        // timeout (Postgres) or 5 s busy timeout (SQLite).
        assert!(
            slowest < Duration::from_secs(2),
            "a request waited on the database: {slowest:?}"
        );
        if let Outage::Proxy(_) = outage {
            // Admin calls need the database: they say so in the OpenAI error shape.
            let r = admin(&gw, "/key/generate", json!({})).await;
            assert_eq!(r.status(), 503);
            let body: Value = r.json().await.unwrap();
            assert!(body["error"]["message"].is_string(), "{body}");
            // 160 rows against a 40-row memory buffer: the overflow goes to disk once the
            // writer's attempt has failed (a connect gives up after 3 s).
            let mut spilled = 0;
            for _ in 0..100 {
                spilled = std::fs::read_to_string(&spill).unwrap_or_default().lines().count();
                if spilled > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(spilled > 0, "nothing spilled during the outage");
        } else {
            // Hold the lock past the busy timeout so the writer's attempt fails and is retried.
            tokio::time::sleep(Duration::from_millis(5500)).await;
        }
        outage.end().await;

        let total = 3.0 + (waves * concurrency) as f64;
        wait_rows(&url, total).await;
        for _ in 0..100 {
            if !spill.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!spill.exists(), "the spill file was written back and removed");
        // Settle, then check exactly once: no row twice, and the key charged once per row.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(row_count(&url).await, total, "every request has exactly one row");
        let distinct = scalar_f64(
            &url,
            "SELECT CAST(COUNT(DISTINCT request_id) AS DOUBLE PRECISION) FROM sy_spend_logs",
            None,
        )
        .await;
        assert_eq!(distinct, total);
        let hash = switchyard::auth::keys::hash(&key);
        let rows_cost = scalar_f64(
            &url,
            "SELECT CAST(SUM(cost) AS DOUBLE PRECISION) FROM sy_spend_logs WHERE key_hash = $1",
            Some(&hash),
        )
        .await;
        let charged = scalar_f64(&url, "SELECT spend FROM sy_keys WHERE token_hash = $1", Some(&hash)).await;
        assert!(rows_cost > 0.0);
        assert!(
            (charged - rows_cost).abs() < 1e-9,
            "charged {charged}, rows sum to {rows_cost}"
        );
        gw.stop().await;

        // A spill file holding rows the database already has (a write that committed but whose
        // answer was lost, then spilled at shutdown): the next start writes none of them again.
        let database = if url.starts_with("postgres") {
            switchyard::store::Database::Postgres(url.clone())
        } else {
            switchyard::store::Database::Sqlite(
                url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc").into(),
            )
        };
        let store = switchyard::store::Store::open(database).unwrap();
        let old = store.spend_logs(&Default::default(), 5).await.unwrap();
        assert_eq!(old.len(), 5);
        let lines: Vec<String> = old.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        std::fs::write(&spill, lines.join("\n") + "\n").unwrap();
        let gw = spawn(&config(&db_line, &local, &cloud, &extra)).await;
        for _ in 0..100 {
            if !spill.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!spill.exists(), "the spill file was read back");
        assert_eq!(row_count(&url).await, total, "no row written twice");
        let again = scalar_f64(&url, "SELECT spend FROM sy_keys WHERE token_hash = $1", Some(&hash)).await;
        assert!((again - charged).abs() < 1e-9, "charged twice: {again} vs {charged}");
        gw.stop().await;
    }
}
