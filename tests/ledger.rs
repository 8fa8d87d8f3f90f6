//! The database layer under mixed traffic: every spend row reaches the ledger whatever order its
//! nullable columns arrive in, admin calls alternate null and numeric limits on one pool, and the
//! spill file is found, drained at start, and kept (and reported) when the database refuses a
//! row. Against SQLite and the real Postgres (a fresh schema per test).

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const MASTER: &str = "sk-master-ledger-test";

fn config(db: &str, mock: &MockUpstream, extra_general: &str) -> String {
    format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_base: {}\n      api_key: sk-up\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n    model_info:\n      local: false\ngeneral_settings:\n  master_key: {MASTER}\n  spend_logs_flush_interval: 0.05\n{db}{extra_general}",
        mock.base_url()
    )
}

async fn row_count(url: &str) -> f64 {
    scalar_f64(
        url,
        "SELECT CAST(COUNT(*) AS DOUBLE PRECISION) FROM sy_spend_logs",
        None,
    )
    .await
}

/// Waits (bounded) for the ledger to hold `n` rows, read from the database itself.
async fn wait_rows(url: &str, n: f64) {
    for _ in 0..200 {
        if row_count(url).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{url}: the ledger never reached {n} rows (has {})",
        row_count(url).await
    );
}

/// Waits (bounded) for `path` to be gone.
async fn wait_gone(path: &Path) -> bool {
    for _ in 0..100 {
        if !path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// One phase of `n` chat calls with `key`, after `before` rows; `stream(i)` says which are
/// streamed, and every call must answer 200. The first few go one at a time, each waiting for its
/// row, so the writer sends them as one-row statements (the same SQL text in every phase, which
/// is what a per-connection statement cache keys on); the rest go 16 at a time.
async fn phase(gw: &Gateway, url: &str, key: &str, before: usize, n: usize, stream: impl Fn(usize) -> bool) {
    let one = |j: usize| {
        let body = json!({"model": "m", "stream": stream(j), "messages": user("hello there")});
        let rb = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body);
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status();
            let _ = r.bytes().await;
            status
        }
    };
    let single = 4.min(n);
    for j in 0..single {
        assert_eq!(one(j).await, 200);
        wait_rows(url, (before + j + 1) as f64).await;
    }
    let mut i = single;
    while i < n {
        let wave: Vec<_> = (i..n.min(i + 16)).map(one).collect();
        for status in futures_util::future::join_all(wave).await {
            assert_eq!(status, 200);
        }
        i += 16;
    }
    wait_rows(url, (before + n) as f64).await;
}

/// The probe: full calls, then streams, then both mixed. A full call has no time to
/// first token, so `ttft_ms` is null in some rows and a number in others.
#[tokio::test]
async fn full_then_streamed_then_mixed_calls_all_reach_the_ledger() {
    let mock = MockUpstream::start().await.unwrap();
    for (db, url, _dir) in backends().await {
        let spill_dir = tempfile::tempdir().unwrap();
        let spill = spill_dir.path().join("spill.jsonl");
        let extra = format!("  spend_logs_spill_path: {}\n", spill.display());
        let gw = spawn(&config(&db, &mock, &extra)).await;
        let key = gw.generate_key(MASTER, json!({"key_alias": "probe"})).await;
        phase(&gw, &url, &key, 0, 600, |_| false).await;
        phase(&gw, &url, &key, 600, 600, |_| true).await;
        phase(&gw, &url, &key, 1200, 600, |i| i % 2 == 0).await;
        gw.stop().await;
        assert_eq!(row_count(&url).await, 1800.0, "{url}");
        let nulls = scalar_f64(
            &url,
            "SELECT CAST(COUNT(*) AS DOUBLE PRECISION) FROM sy_spend_logs WHERE ttft_ms IS NULL",
            None,
        )
        .await;
        assert_eq!(nulls, 900.0, "full calls have no time to first token");
        assert!(
            !spill.exists(),
            "nothing spilled: {:?}",
            std::fs::read_to_string(&spill)
        );
        // The key is charged what its rows cost.
        let hash = switchyard::auth::keys::hash(&key);
        let rows_cost = scalar_f64(
            &url,
            "SELECT CAST(SUM(cost) AS DOUBLE PRECISION) FROM sy_spend_logs WHERE key_hash = $1",
            Some(&hash),
        )
        .await;
        let charged = scalar_f64(&url, "SELECT spend FROM sy_keys WHERE token_hash = $1", Some(&hash)).await;
        assert!(
            rows_cost > 0.0 && (charged - rows_cost).abs() < 1e-6,
            "{charged} vs {rows_cost}"
        );
    }
}

/// Nullable numbers and texts, null in one call and set in the next, on one gateway's pool.
#[tokio::test]
async fn admin_calls_alternating_null_and_numeric_limits_all_succeed() {
    let mock = MockUpstream::start().await.unwrap();
    for (db, _url, _dir) in backends().await {
        let gw = spawn(&config(&db, &mock, "")).await;
        for i in 0..12 {
            let set = i % 2 == 1;
            let num = |v: f64| if set { json!(v) } else { Value::Null };
            let int = |v: i64| if set { json!(v) } else { Value::Null };
            let text = |v: &str| if set { json!(format!("{v}-{i}")) } else { Value::Null };
            let limits = json!({
                "max_budget": num(10.5 + i as f64),
                "rpm_limit": int(100),
                "tpm_limit": int(10_000),
                "max_parallel_requests": int(4),
                "budget_duration": if set { json!("30d") } else { Value::Null },
            });
            let with = |mut extra: Value| {
                for (k, v) in limits.as_object().unwrap() {
                    extra[k] = v.clone();
                }
                extra
            };
            let team = format!("team-{i}");
            let r = gw
                .admin_post(
                    MASTER,
                    "/team/new",
                    with(json!({"team_id": team, "team_alias": text("t")})),
                )
                .await;
            assert_eq!(r.status(), 200, "/team/new #{i}: {}", r.text().await.unwrap());
            let owner = format!("user-{i}");
            let r = gw
                .admin_post(
                    MASTER,
                    "/user/new",
                    with(json!({"user_id": owner, "user_email": text("u")})),
                )
                .await;
            assert_eq!(r.status(), 200, "/user/new #{i}: {}", r.text().await.unwrap());
            let r = gw
                .admin_post(
                    MASTER,
                    "/key/generate",
                    with(json!({"key_alias": text("k"), "team_id": team, "user_id": owner})),
                )
                .await;
            assert_eq!(r.status(), 200, "/key/generate #{i}: {}", r.text().await.unwrap());
            let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
            // Updates flip every nullable column the other way.
            let flipped = |v: &Value, to: Value| if v.is_null() { to } else { Value::Null };
            let update = json!({
                "max_budget": flipped(&limits["max_budget"], json!(99.25)),
                "rpm_limit": flipped(&limits["rpm_limit"], json!(7)),
                "budget_duration": flipped(&limits["budget_duration"], json!("1d")),
            });
            let mut body = update.clone();
            body["key"] = json!(key);
            let r = gw.admin_post(MASTER, "/key/update", body).await;
            assert_eq!(r.status(), 200, "/key/update #{i}: {}", r.text().await.unwrap());
            let mut body = update.clone();
            body["team_id"] = json!(team);
            let r = gw.admin_post(MASTER, "/team/update", body).await;
            assert_eq!(r.status(), 200, "/team/update #{i}: {}", r.text().await.unwrap());
            let info: Value = gw
                .client
                .get(gw.url(&format!("/key/info?key={key}")))
                .bearer_auth(MASTER)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(info["info"]["max_budget"], update["max_budget"], "{info}");
        }
        gw.stop().await;
    }
}

/// A spend row as the writer spills it.
fn spill_row(id: &str, model_group: &str) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "api_key": null, "key_alias": null, "team_id": null,
        "user_id": null, "model_group": model_group, "model_id": null, "model": null, "provider": null,
        "route": "cloud", "call_type": "acompletion", "prompt_tokens": 3, "completion_tokens": 4,
        "cached_tokens": 0, "spend": 0.01, "cloud_equivalent": 0.01, "latency_ms": 12.5, "ttft_ms": null,
        "status": 200, "cache_hit": false, "stream": false, "request_tags": [], "start_time": 1_700_000_000_000i64
    })
}

fn plant(path: &Path, rows: &[Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn database(url: &str) -> switchyard::store::Database {
    if url.starts_with("postgres") {
        switchyard::store::Database::Postgres(url.into())
    } else {
        switchyard::store::Database::Sqlite(url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc").into())
    }
}

/// Where the spill file is when no `spend_logs_spill_path` is set: beside the SQLite file, or in
/// the data directory for Postgres; a spill planted there before start is written at start.
#[tokio::test]
async fn a_spill_file_at_its_default_place_is_drained_at_start() {
    let mock = MockUpstream::start().await.unwrap();
    for (db, url, _dir) in backends().await {
        let data = tempfile::tempdir().unwrap();
        let database = database(&url);
        switchyard::store::Store::open(database.clone())
            .unwrap()
            .ready()
            .await
            .unwrap();
        let spill = switchyard::ledger::writer::default_spill_path(&database, data.path());
        match &database {
            switchyard::store::Database::Sqlite(p) => assert_eq!(spill, Path::new(&format!("{p}.spill.jsonl"))),
            switchyard::store::Database::Postgres(_) => assert!(spill.starts_with(data.path()), "{spill:?}"),
        }
        plant(&spill, &[spill_row("planted-1", "m"), spill_row("planted-2", "m")]);
        let extra = format!("  data_dir: {}\n", data.path().display());
        let gw = spawn(&config(&db, &mock, &extra)).await;
        wait_rows(&url, 2.0).await;
        assert!(wait_gone(&spill).await, "the planted spill was written and removed");
        gw.stop().await;
        assert_eq!(row_count(&url).await, 2.0);
    }
}

/// SQL that makes the database refuse ledger rows of the model group `poison`.
fn refuse_poison(postgres: bool) -> Vec<&'static str> {
    if postgres {
        vec![
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.model_group = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$ \
             LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON sy_spend_logs FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ]
    } else {
        vec![
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON sy_spend_logs WHEN NEW.model_group = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
        ]
    }
}

async fn execute(url: &str, sqls: &[&'static str]) {
    use sqlx::{Connection, Executor};
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in sqls {
        c.execute(*sql).await.unwrap();
    }
    let _ = c.close().await;
}

async fn metric(gw: &Gateway, name: &str) -> f64 {
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

async fn readiness(gw: &Gateway) -> Value {
    gw.client
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A row the database refuses stays in the spill file (never dropped), is counted in a metric
/// and shown by `/health/readiness`; the rows beside it are written; once the database takes it
/// (here: the refusing trigger dropped), the next start writes it.
#[tokio::test]
async fn a_spilled_row_the_database_refuses_is_kept_and_reported() {
    let mock = MockUpstream::start().await.unwrap();
    for (db, url, _dir) in backends().await {
        let postgres = url.starts_with("postgres");
        let store = switchyard::store::Store::open(database(&url)).unwrap();
        store.ready().await.unwrap();
        execute(&url, &refuse_poison(postgres)).await;
        let spill_dir = tempfile::tempdir().unwrap();
        let spill = spill_dir.path().join("spill.jsonl");
        plant(
            &spill,
            &[
                spill_row("good-1", "m"),
                spill_row("bad-1", "poison"),
                spill_row("good-2", "m"),
            ],
        );
        let extra = format!("  spend_logs_spill_path: {}\n", spill.display());
        let gw = spawn(&config(&db, &mock, &extra)).await;
        wait_rows(&url, 2.0).await;
        let mut kept = 0.0;
        for _ in 0..100 {
            kept = metric(&gw, "switchyard_ledger_spill_rows").await;
            if kept == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(kept, 1.0, "the refused row is counted");
        let ready = readiness(&gw).await;
        assert_eq!(ready["ledger"]["spill_rows"], 1, "{ready}");
        assert!(
            ready["ledger"]["spill_path"].as_str().unwrap().ends_with("spill.jsonl"),
            "{ready}"
        );
        assert!(ready["ledger"]["last_error"].is_string(), "{ready}");
        // New traffic is not held up behind the refused row.
        let key = gw.generate_key(MASTER, json!({})).await;
        phase(&gw, &url, &key, 2, 3, |_| false).await;
        gw.stop().await;
        let left = std::fs::read_to_string(&spill).unwrap();
        assert_eq!(left.lines().count(), 1, "only the refused row is kept: {left}");
        assert!(left.contains("bad-1"));

        let drop = if postgres {
            "DROP TRIGGER refuse_poison ON sy_spend_logs"
        } else {
            "DROP TRIGGER refuse_poison"
        };
        execute(&url, &[drop]).await;
        let gw = spawn(&config(&db, &mock, &extra)).await;
        assert!(wait_gone(&spill).await, "the kept row was written at the next start");
        wait_rows(&url, 6.0).await;
        // The gauge follows the file once the writer has recorded the replay: poll, bounded.
        let mut kept = f64::NAN;
        for _ in 0..100 {
            kept = metric(&gw, "switchyard_ledger_spill_rows").await;
            if kept == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(kept, 0.0, "the replayed row is no longer counted");
        assert_eq!(readiness(&gw).await["ledger"]["spill_rows"], 0);
        gw.stop().await;
        assert_eq!(row_count(&url).await, 6.0);
    }
}
