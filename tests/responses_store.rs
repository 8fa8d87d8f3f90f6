//! Stored responses (`store: true`, `previous_response_id`): the rows at the store level (put,
//! get, delete, expiry, owner isolation, purge), the background keeper, the `history` /
//! `remember` seams `POST /v1/responses` calls, and `GET` / `DELETE /v1/responses/{id}` and
//! `/input_items` over real HTTP. Against SQLite and the real Postgres (a fresh schema per test)
//! when `SWITCHYARD_TEST_DATABASE_URL` is set.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard::api::responses_store::{history, remember, stores};
use switchyard::app::AppState;
use switchyard::auth::Caller;
use switchyard::error::GatewayError;
use switchyard::store::responses::{ResponseStore, StoredResponse};
use switchyard::store::{now_ms, Database, Store};

const MASTER: &str = "sk-master-respstore";

/// The `Database` behind a `backends()` url.
fn database(url: &str) -> Database {
    match url.strip_prefix("sqlite://") {
        Some(rest) => Database::Sqlite(rest.split('?').next().unwrap().to_string()),
        None => Database::Postgres(url.to_string()),
    }
}

fn row(id: &str, owner: &str, expires_at: i64) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        owner: owner.into(),
        model: "m".into(),
        created_at: now_ms(),
        expires_at,
        previous_response_id: None,
        input: vec![json!({"role": "user", "content": format!("question of {id}")})],
        output: vec![
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": format!("answer of {id}")}]}),
        ],
        response: json!({"id": id, "object": "response", "status": "completed", "output": []}),
    }
}

#[tokio::test]
async fn store_put_get_delete_expiry_owner_and_purge() {
    for (_, url, _dir) in backends().await {
        let store = Store::open(database(&url)).unwrap();
        let now = now_ms();
        let live = row("resp_live", "hash-a", now + 60_000);
        store.put_response(&live).await.unwrap();
        // A retried write of the same row is harmless.
        store.put_response(&live).await.unwrap();
        store.put_response(&row("resp_old", "hash-a", now - 1)).await.unwrap();

        assert_eq!(
            store.get_response("resp_live", Some("hash-a"), now).await.unwrap(),
            Some(live.clone()),
            "{url}"
        );
        assert_eq!(
            store.get_response("resp_live", None, now).await.unwrap(),
            Some(live.clone()),
            "{url}: admin"
        );
        assert_eq!(
            store.get_response("resp_live", Some("hash-b"), now).await.unwrap(),
            None,
            "{url}: other owner"
        );
        assert_eq!(
            store.get_response("resp_old", None, now).await.unwrap(),
            None,
            "{url}: expired"
        );
        assert_eq!(store.get_response("resp_none", None, now).await.unwrap(), None, "{url}");

        assert!(
            !store.delete_response("resp_live", Some("hash-b"), now).await.unwrap(),
            "{url}: other owner"
        );
        // The same id under two owners (a response cache hit served to a second key): two rows,
        // each owner's own; deleting one leaves the other.
        let mut shared_a = row("resp_shared", "hash-a", now + 60_000);
        shared_a.input = vec![json!({"role": "user", "content": "a's"})];
        let mut shared_b = row("resp_shared", "hash-b", now + 60_000);
        shared_b.input = vec![json!({"role": "user", "content": "b's"})];
        store.put_response(&shared_a).await.unwrap();
        store.put_response(&shared_b).await.unwrap();
        assert_eq!(
            store.get_response("resp_shared", Some("hash-a"), now).await.unwrap(),
            Some(shared_a.clone())
        );
        assert_eq!(
            store.get_response("resp_shared", Some("hash-b"), now).await.unwrap(),
            Some(shared_b)
        );
        assert!(store.delete_response("resp_shared", Some("hash-b"), now).await.unwrap());
        assert_eq!(
            store.get_response("resp_shared", None, now).await.unwrap(),
            Some(shared_a),
            "{url}"
        );
        assert!(store.delete_response("resp_shared", None, now).await.unwrap());
        assert!(
            !store.delete_response("resp_old", None, now).await.unwrap(),
            "{url}: expired"
        );
        assert_eq!(
            store.purge_responses(now).await.unwrap(),
            1,
            "{url}: only the expired row"
        );
        assert!(
            store.delete_response("resp_live", Some("hash-a"), now).await.unwrap(),
            "{url}"
        );
        assert_eq!(store.get_response("resp_live", None, now).await.unwrap(), None, "{url}");
        assert!(
            !store.delete_response("resp_live", None, now).await.unwrap(),
            "{url}: twice"
        );
    }
}

#[tokio::test]
async fn keeper_serves_parked_rows_writes_them_and_refuses_oversized_ones() {
    for (_, url, _dir) in backends().await {
        let store = Arc::new(Store::open(database(&url)).unwrap());
        let keeper = ResponseStore::new(store.clone(), Duration::from_secs(3600), 4096);
        let r = row("resp_k1", "hash-a", now_ms() + 3_600_000);
        keeper.remember(r.clone());
        // Readable at once, written or not yet.
        let got = keeper
            .get("resp_k1", Some("hash-a"))
            .await
            .unwrap()
            .expect("parked or written");
        assert_eq!(*got, r);
        assert!(keeper.get("resp_k1", Some("hash-b")).await.unwrap().is_none(), "{url}");
        keeper.flush(Duration::from_secs(10)).await;
        assert_eq!(
            keeper.stats.written.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{url}"
        );
        assert_eq!(
            store.get_response("resp_k1", None, now_ms()).await.unwrap(),
            Some(r),
            "{url}: in the database"
        );

        let mut big = row("resp_big", "hash-a", now_ms() + 3_600_000);
        big.input = vec![json!({"role": "user", "content": "x".repeat(8192)})];
        keeper.remember(big);
        keeper.flush(Duration::from_secs(10)).await;
        assert_eq!(keeper.stats.too_large.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(
            keeper.get("resp_big", None).await.unwrap().is_none(),
            "{url}: not stored"
        );

        // A delete waits for the parked write, so the row cannot come back after it.
        keeper.remember(row("resp_k2", "hash-a", now_ms() + 3_600_000));
        assert!(keeper.delete("resp_k2", Some("hash-a")).await.unwrap(), "{url}");
        keeper.flush(Duration::from_secs(10)).await;
        assert!(keeper.get("resp_k2", None).await.unwrap().is_none(), "{url}");
    }
}

fn config(db: &str, extra_general: &str) -> String {
    format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_base: http://127.0.0.1:9\n      api_key: sk-up\ngeneral_settings:\n  master_key: {MASTER}\n{db}{extra_general}"
    )
}

async fn caller(state: &AppState, key: &str) -> Caller {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {key}").parse().unwrap());
    state.auth.authenticate(&h).await.unwrap()
}

async fn get(gw: &Gateway, key: Option<&str>, path: &str) -> (u16, Value) {
    let mut req = gw.client.get(gw.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn delete(gw: &Gateway, key: &str, path: &str) -> (u16, Value) {
    let r = gw.client.delete(gw.url(path)).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn not_found(id: &str) -> Value {
    json!({"error": {"message": format!("Response with id '{id}' not found."), "type": "invalid_request_error", "param": null, "code": null}})
}

/// A Response object as the POST handler would answer it.
fn response(id: &str, previous: Option<&str>, text: &str) -> Value {
    json!({
        "id": id, "object": "response", "created_at": 1, "status": "completed", "model": "m",
        "previous_response_id": previous, "store": true,
        "output": [{"type": "message", "id": format!("msg_{id}"), "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
    })
}

async fn flushed(state: &AppState) {
    state
        .responses
        .as_ref()
        .expect("storing")
        .flush(Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn http_routes_and_seams_keep_each_key_to_its_own_conversations() {
    for (db, url, _dir) in backends().await {
        let (gw, state) = spawn_with_state(&config(&db, "")).await;
        let key_a = gw.generate_key(MASTER, json!({})).await;
        let key_b = gw.generate_key(MASTER, json!({})).await;
        let (a, b, master) = (
            caller(&state, &key_a).await,
            caller(&state, &key_b).await,
            caller(&state, MASTER).await,
        );
        assert!(stores(&state, None) && stores(&state, Some(true)) && !stores(&state, Some(false)));

        // Turn 1 by key A, then turn 2 continuing it: history ++ the new input.
        let turn1_input = vec![json!({"role": "user", "content": "my name is Ada"})];
        let r1 = response("resp_t1", None, "hello Ada");
        remember(&state, &a, "resp_t1", "m", turn1_input.clone(), &r1);
        let h1 = history(&state, &a, "resp_t1").await.unwrap();
        assert_eq!(h1.len(), 2, "{url}: {h1:?}");
        assert_eq!(h1[0], turn1_input[0]);
        assert_eq!(h1[1], r1["output"][0]);
        let mut turn2_input = h1.clone();
        turn2_input.push(
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "what is my name?"}]}),
        );
        let r2 = response("resp_t2", Some("resp_t1"), "Ada");
        remember(&state, &a, "resp_t2", "m", turn2_input.clone(), &r2);
        // Turn 3 sees every earlier turn with one lookup.
        let h2 = history(&state, &a, "resp_t2").await.unwrap();
        assert_eq!(h2.len(), 4, "{url}");
        assert_eq!(h2[..3], turn2_input[..]);
        assert_eq!(h2[3], r2["output"][0]);
        remember(
            &state,
            &master,
            "resp_m",
            "m",
            vec![json!({"role": "user", "content": "admin"})],
            &response("resp_m", None, "x"),
        );
        flushed(&state).await;
        let stored = state
            .store
            .as_ref()
            .unwrap()
            .get_response("resp_t2", None, now_ms())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.previous_response_id.as_deref(), Some("resp_t1"), "{url}");

        // Key B cannot continue or read A's conversation; it is told exactly what a missing id gets.
        let err = history(&state, &b, "resp_t1").await.unwrap_err();
        assert!(matches!(err, GatewayError::PreviousResponseNotFound(_)), "{err:?}");
        assert_eq!(err.status(), 400);
        assert_eq!(
            err.openai_body(),
            json!({"error": {"message": "Previous response with id 'resp_t1' not found.", "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}})
        );
        assert!(matches!(
            history(&state, &a, "resp_nope").await,
            Err(GatewayError::PreviousResponseNotFound(_))
        ));
        assert!(
            matches!(
                history(&state, &a, "resp_m").await,
                Err(GatewayError::PreviousResponseNotFound(_))
            ),
            "a key cannot continue the master's"
        );
        assert_eq!(
            history(&state, &master, "resp_t1").await.unwrap().len(),
            2,
            "the master reads all"
        );

        // GET: the owner and the master read it; another key and nobody do not.
        assert_eq!(
            get(&gw, Some(&key_a), "/v1/responses/resp_t2").await,
            (200, r2.clone()),
            "{url}"
        );
        assert_eq!(
            get(&gw, Some(MASTER), "/responses/resp_t2").await,
            (200, r2.clone()),
            "{url}"
        );
        assert_eq!(
            get(&gw, Some(&key_b), "/v1/responses/resp_t2").await,
            (404, not_found("resp_t2")),
            "{url}"
        );
        assert_eq!(
            get(&gw, Some(&key_a), "/v1/responses/resp_none").await,
            (404, not_found("resp_none"))
        );
        assert_eq!(get(&gw, None, "/v1/responses/resp_t2").await.0, 401);

        // input_items: newest first by default, paged with limit / after, ids made up where missing.
        let (s, page) = get(&gw, Some(&key_a), "/v1/responses/resp_t2/input_items?limit=2").await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(page["object"], "list");
        assert_eq!(page["has_more"], true);
        let data = page["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["content"][0]["text"], "what is my name?");
        assert_eq!(data[1]["id"], "msg_resp_t1", "an item's own id is kept");
        assert_eq!(page["first_id"], data[0]["id"]);
        assert_eq!(page["last_id"], "msg_resp_t1");
        let (_, rest) = get(
            &gw,
            Some(&key_a),
            "/v1/responses/resp_t2/input_items?limit=2&after=msg_resp_t1",
        )
        .await;
        assert_eq!(rest["has_more"], false);
        let first = &rest["data"][0];
        assert_eq!(rest["data"].as_array().unwrap().len(), 1);
        assert_eq!(first["type"], "message");
        assert_eq!(
            first["content"],
            json!([{"type": "input_text", "text": "my name is Ada"}])
        );
        assert!(first["id"].as_str().is_some_and(|i| i.starts_with("msg_")), "{first}");
        let (_, asc) = get(&gw, Some(&key_a), "/v1/responses/resp_t2/input_items?order=asc").await;
        assert_eq!(asc["data"][0], *first, "asc starts with the oldest, same id");
        assert_eq!(asc["data"].as_array().unwrap().len(), 3);
        for bad in ["limit=0", "limit=101", "limit=x", "order=up", "after=nope"] {
            let (s, body) = get(&gw, Some(&key_a), &format!("/v1/responses/resp_t2/input_items?{bad}")).await;
            assert_eq!(s, 400, "{bad}: {body}");
            assert_eq!(body["error"]["type"], "invalid_request_error", "{bad}");
        }
        assert_eq!(get(&gw, Some(&key_b), "/v1/responses/resp_t2/input_items").await.0, 404);

        // DELETE: not by another key; by the owner once.
        assert_eq!(
            delete(&gw, &key_b, "/v1/responses/resp_t1").await,
            (404, not_found("resp_t1"))
        );
        assert_eq!(
            delete(&gw, &key_a, "/v1/responses/resp_t1").await,
            (200, json!({"id": "resp_t1", "object": "response", "deleted": true}))
        );
        assert_eq!(get(&gw, Some(&key_a), "/v1/responses/resp_t1").await.0, 404);
        assert_eq!(delete(&gw, &key_a, "/v1/responses/resp_t1").await.0, 404);
        assert!(
            history(&state, &a, "resp_t1").await.is_err(),
            "deleted: no longer continued"
        );
        // Turn 2 carries the whole conversation itself, so it still continues.
        assert_eq!(history(&state, &a, "resp_t2").await.unwrap().len(), 4);

        // An expired row is gone everywhere.
        let mut old = state
            .store
            .as_ref()
            .unwrap()
            .get_response("resp_t2", None, now_ms())
            .await
            .unwrap()
            .unwrap();
        old.id = "resp_expired".into();
        old.expires_at = now_ms() - 1;
        state.store.as_ref().unwrap().put_response(&old).await.unwrap();
        assert_eq!(get(&gw, Some(&key_a), "/v1/responses/resp_expired").await.0, 404);
        assert!(history(&state, &a, "resp_expired").await.is_err());
        assert!(state.responses.as_ref().unwrap().purge().await.unwrap() >= 1, "{url}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn without_storage_previous_response_id_is_a_clear_400() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("  database_path: {}\n", dir.path().join("t.db").display());
    for extra in ["  disable_responses_store: true\n", "  disable_database: true\n"] {
        let (gw, state) = spawn_with_state(&config(&sqlite, extra)).await;
        assert!(
            state.store.is_some() == extra.contains("disable_responses_store"),
            "{extra}"
        );
        let master = caller(&state, MASTER).await;
        assert!(state.responses.is_none(), "{extra}");
        assert!(!stores(&state, None) && !stores(&state, Some(true)));
        remember(
            &state,
            &master,
            "resp_x",
            "m",
            vec![json!({"role": "user", "content": "hi"})],
            &response("resp_x", None, "x"),
        );
        let err = history(&state, &master, "resp_x").await.unwrap_err();
        assert_eq!(err.status(), 400);
        let body = err.openai_body();
        assert_eq!(body["error"]["param"], "previous_response_id");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("stores no responses"),
            "{body}"
        );
        assert_eq!(
            get(&gw, Some(MASTER), "/v1/responses/resp_x").await,
            (404, not_found("resp_x"))
        );
        gw.stop().await;
    }
}

#[test]
fn retention_settings_are_validated_at_load() {
    let load = |extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, config("", extra)).unwrap();
        switchyard::config::Config::load_with_env(&p, &std::collections::HashMap::<String, String>::new())
    };
    let c = load("").unwrap();
    assert_eq!(
        c.general.responses_store.ttl,
        Duration::from_secs(30 * 86_400),
        "OpenAI's 30 days"
    );
    assert!(!c.general.responses_store.disabled);
    let c = load("  responses_store_ttl: 7d\n  responses_store_max_mb: 2\n").unwrap();
    assert_eq!(c.general.responses_store.ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(c.general.responses_store.max_bytes, 2 * 1024 * 1024);
    assert_eq!(
        load("  responses_store_ttl: 90\n").unwrap().general.responses_store.ttl,
        Duration::from_secs(90)
    );
    for bad in [
        "  responses_store_ttl: 30x\n",
        "  responses_store_ttl: 0\n",
        "  responses_store_ttl: [1]\n",
    ] {
        let e = load(bad).unwrap_err().to_string();
        assert!(e.contains("general_settings.responses_store_ttl"), "{bad}: {e}");
    }
}

/// `m` on the mock's chat wire (translated to and from Responses), with a database.
fn e2e_config(db: &str, mock: &MockUpstream) -> String {
    format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/qwen\n      api_base: {}\ngeneral_settings:\n  master_key: {MASTER}\n{db}",
        mock.base_url()
    )
}

async fn create(gw: &Gateway, key: &str, body: Value) -> (u16, Value) {
    let r = gw
        .client
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The (role, text) of each message the upstream received last.
fn sent_messages(mock: &MockUpstream) -> Vec<(String, String)> {
    let last = mock.requests().last().expect("a request upstream").body.clone();
    last["messages"]
        .as_array()
        .expect("chat messages")
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                other => other.to_string(),
            };
            (m["role"].as_str().unwrap_or_default().to_string(), text)
        })
        .collect()
}

fn text_of(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_conversation_continues_by_previous_response_id_through_post_v1_responses() {
    for (db, url, _dir) in backends().await {
        let mock = MockUpstream::start().await.unwrap();
        let gw = spawn(&e2e_config(&db, &mock)).await;
        let key_a = gw.generate_key(MASTER, json!({})).await;
        let key_b = gw.generate_key(MASTER, json!({})).await;

        // Turn 1: `store` omitted means stored (OpenAI's default).
        let (s, r1) = create(
            &gw,
            &key_a,
            json!({"model": "m", "instructions": "Be brief.", "input": "my name is Ada"}),
        )
        .await;
        assert_eq!(s, 200, "{url}: {r1}");
        assert_eq!(r1["store"], true, "{r1}");
        let id1 = r1["id"].as_str().unwrap().to_string();
        let answer1 = text_of(&r1);
        assert!(!answer1.is_empty(), "{r1}");

        // Turn 2, at once: the upstream receives turn 1's messages, then the new one; turn 1's
        // instructions are not carried over (as OpenAI).
        let (s, r2) = create(
            &gw,
            &key_a,
            json!({"model": "m", "input": "what is my name?", "previous_response_id": id1}),
        )
        .await;
        assert_eq!(s, 200, "{url}: {r2}");
        assert_eq!(r2["previous_response_id"], id1.as_str());
        assert_eq!(
            sent_messages(&mock),
            vec![
                ("user".into(), "my name is Ada".into()),
                ("assistant".into(), answer1.clone()),
                ("user".into(), "what is my name?".into()),
            ],
            "{url}"
        );
        let id2 = r2["id"].as_str().unwrap().to_string();
        assert!(
            mock.requests()
                .last()
                .unwrap()
                .body
                .get("previous_response_id")
                .is_none(),
            "the gateway's id never goes upstream"
        );

        // Turn 3, streamed: the whole chain in one lookup; the stream's final object is stored.
        let r = gw
            .client
            .post(gw.url("/v1/responses"))
            .bearer_auth(&key_a)
            .json(&json!({"model": "m", "input": [{"role": "user", "content": "and again?"}], "previous_response_id": id2, "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let completed = text
            .split("\n\n")
            .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| v["type"] == "response.completed")
            .expect("response.completed");
        let id3 = completed["response"]["id"].as_str().unwrap().to_string();
        assert_eq!(sent_messages(&mock).len(), 5, "{url}");
        // Read back (a parked row is served before its write lands).
        let (s, got) = get(&gw, Some(&key_a), &format!("/v1/responses/{id3}")).await;
        assert_eq!(s, 200, "{url}: {got}");
        assert_eq!(got["id"], id3.as_str());
        assert_eq!(got["previous_response_id"], id2.as_str());
        assert_eq!(text_of(&got), text_of(&completed["response"]));
        let (_, items) = get(
            &gw,
            Some(&key_a),
            &format!("/v1/responses/{id3}/input_items?order=asc&limit=100"),
        )
        .await;
        assert_eq!(items["data"].as_array().unwrap().len(), 5, "{items}");
        assert_eq!(items["data"][0]["content"][0]["text"], "my name is Ada");
        assert_eq!(items["data"][4]["content"][0]["text"], "and again?");
        let (s, r4) = create(
            &gw,
            &key_a,
            json!({"model": "m", "input": "once more", "previous_response_id": id3}),
        )
        .await;
        assert_eq!(s, 200, "{r4}");
        assert_eq!(sent_messages(&mock).len(), 7, "{url}: a streamed turn continues too");

        // Another key cannot continue it; nor can anyone continue an unstored or unknown id.
        let (s, e) = create(
            &gw,
            &key_b,
            json!({"model": "m", "input": "x", "previous_response_id": id1}),
        )
        .await;
        assert_eq!(s, 400, "{e}");
        assert_eq!(e["error"]["code"], "previous_response_not_found");
        assert_eq!(e["error"]["param"], "previous_response_id");
        let (s, r5) = create(&gw, &key_a, json!({"model": "m", "input": "secret", "store": false})).await;
        assert_eq!(s, 200);
        assert_eq!(r5["store"], false, "{r5}");
        let id5 = r5["id"].as_str().unwrap();
        assert_eq!(get(&gw, Some(&key_a), &format!("/v1/responses/{id5}")).await.0, 404);
        let (s, _) = create(
            &gw,
            &key_a,
            json!({"model": "m", "input": "x", "previous_response_id": id5}),
        )
        .await;
        assert_eq!(s, 400);
        for (field, bad) in [("store", json!("yes")), ("previous_response_id", json!(7))] {
            let mut body = json!({"model": "m", "input": "x"});
            body[field] = bad;
            let (s, e) = create(&gw, &key_a, body).await;
            assert_eq!(s, 400, "{field}: {e}");
            assert_eq!(e["error"]["param"], field);
        }
        gw.stop().await;
    }
}

/// A deployment serving Responses itself gets the client's body as sent, except that the
/// gateway's `previous_response_id` became the conversation it names.
#[tokio::test]
async fn a_passthrough_deployment_gets_the_conversation_instead_of_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: cloud\n    litellm_params: {{model: openai/gpt-up, api_base: '{}', api_key: sk-up}}\n    model_info: {{local: false, supports_responses_api: true}}\ngeneral_settings:\n  master_key: {MASTER}\n  database_path: {}\n",
        mock.base_url(),
        dir.path().join("t.db").display()
    );
    let gw = spawn(&yaml).await;
    let first = json!({"model": "cloud", "input": "my name is Ada", "temperature": 0.5});
    let (s, r1) = create(&gw, MASTER, first.clone()).await;
    assert_eq!(s, 200, "{r1}");
    let sent = mock.requests().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/responses");
    let mut expected = first.clone();
    expected["model"] = json!("gpt-up");
    assert_eq!(sent.body, expected, "a first turn goes as sent (no `store` added)");
    assert_eq!(r1["store"], true, "{r1}");

    let id1 = r1["id"].as_str().unwrap();
    let (s, r2) = create(
        &gw,
        MASTER,
        json!({"model": "cloud", "input": "what is my name?", "previous_response_id": id1}),
    )
    .await;
    assert_eq!(s, 200, "{r2}");
    let body = mock.requests().last().unwrap().body.clone();
    assert!(body.get("previous_response_id").is_none(), "{body}");
    let input = body["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{body}");
    assert_eq!(input[0], json!({"role": "user", "content": "my name is Ada"}));
    assert_eq!(input[1], r1["output"][0], "turn 1's output item as answered");
    assert_eq!(input[2], json!({"role": "user", "content": "what is my name?"}));
    assert_eq!(r2["previous_response_id"], id1);
    gw.stop().await;
}

/// A response cache hit hands a second key the first key's response id: each key keeps its own
/// row under that id, continues its own conversation, and neither loses access.
#[tokio::test]
async fn a_cached_answer_is_stored_for_each_key_that_received_it() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start().await.unwrap();
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/qwen\n      api_base: {}\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: local\ngeneral_settings:\n  master_key: {MASTER}\n  database_path: {}\n",
        mock.base_url(),
        dir.path().join("t.db").display()
    );
    let gw = spawn(&yaml).await;
    let key_a = gw.generate_key(MASTER, json!({})).await;
    let key_b = gw.generate_key(MASTER, json!({})).await;
    let turn1 = json!({"model": "m", "input": "the same question"});
    let (_, ra) = create(&gw, &key_a, turn1.clone()).await;
    let (s, rb) = create(&gw, &key_b, turn1).await;
    assert_eq!(s, 200, "{rb}");
    assert_eq!(mock.requests().len(), 1, "the second answer came from the cache");
    let id = ra["id"].as_str().unwrap();
    assert_eq!(rb["id"], id, "a cache hit carries the first answer's id");
    for key in [&key_a, &key_b] {
        let (s, got) = get(&gw, Some(key), &format!("/v1/responses/{id}")).await;
        assert_eq!(s, 200, "{got}");
        let (s, next) = create(
            &gw,
            key,
            json!({"model": "m", "input": "follow-up", "previous_response_id": id}),
        )
        .await;
        assert_eq!(s, 200, "{next}");
    }
    assert_eq!(delete(&gw, &key_b, &format!("/v1/responses/{id}")).await.0, 200);
    assert_eq!(
        get(&gw, Some(&key_a), &format!("/v1/responses/{id}")).await.0,
        200,
        "A's row stays"
    );
    assert_eq!(get(&gw, Some(&key_b), &format!("/v1/responses/{id}")).await.0, 404);
    gw.stop().await;
}
