//! The binary on SIGTERM, with SQLite and with the real Postgres: in-flight requests get
//! `shutdown_grace_s`, then a 503 in their dialect (a started stream an error event); half-open
//! connections are closed at once; every spend row reaches the database; the exit code is 0.

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::Row;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const MASTER: &str = "sk-master-shutdown-77";
/// Short enough for a test; the hung requests must be cut at its end, not at their 6000 s timeout.
const GRACE_S: u64 = 2;

/// Waits for the child to exit, at most `limit`; kills it (and fails) past that.
async fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway was still running {limit:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigterm_case(db_lines: &str, db_url: &str) {
    let (good, hung, stalled) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    hung.set(Behaviour {
        hang: true,
        ..Default::default()
    });
    // A stream that sends its first chunk and then nothing: started, never finished.
    stalled.set(Behaviour {
        stall_after: Some(1),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    // A long flush interval: the completed requests' rows are still in memory at SIGTERM, so
    // only the shutdown flush can bring them to the database.
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n{}{}{}litellm_settings:\n  num_retries: 0\ngeneral_settings:\n  master_key: {MASTER}\n  shutdown_grace_s: {GRACE_S}\n  spend_logs_flush_interval: 60\n{db_lines}",
            entry("m", &good, ""),
            entry("hung", &hung, ""),
            entry("stalled", &stalled, ""),
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--port", &port.to_string()])
        .current_dir(dir.path())
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/health/liveliness")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client
        .post(format!("{base}/key/generate"))
        .bearer_auth(MASTER)
        .json(&json!({"key_alias": "shutdown-bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();

    // Completed before the signal: their rows must all be in the database afterwards.
    let mut completed = Vec::new();
    for i in 0..5 {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "messages": user(&format!("hello {i}"))}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        completed.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
    }

    // In flight at the signal: an OpenAI and an Anthropic request on a hung upstream, and a stream
    // that has started.
    let hung_openai = tokio::spawn({
        let (client, url, key) = (client.clone(), format!("{base}/v1/chat/completions"), key.clone());
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "hung", "messages": user("wait")}))
                .timeout(Duration::from_secs(30))
                .send()
                .await?;
            let id = r
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap_or("").to_string());
            Ok::<_, reqwest::Error>((r.status().as_u16(), id, r.text().await?))
        }
    });
    let hung_anthropic = tokio::spawn({
        let (client, url, key) = (client.clone(), format!("{base}/v1/messages"), key.clone());
        async move {
            let r = client
                .post(url)
                .header("x-api-key", key)
                .json(&json!({"model": "hung", "max_tokens": 10, "messages": user("wait")}))
                .timeout(Duration::from_secs(30))
                .send()
                .await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
        }
    });
    let stream = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "stalled", "messages": user("one two three four five six"), "stream": true}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let stream_body = tokio::spawn(async move { stream.text().await });
    // A client that sent half a request head and holds the connection.
    let mut half = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .unwrap();
    let waited = Instant::now();
    while hung.hits() < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the hung requests did not reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();

    // The half-open connection is closed at once, long before the grace period ends.
    half.set_read_timeout(Some(Duration::from_secs(GRACE_S * 5))).unwrap();
    let mut buf = [0u8; 256];
    let read = half.read(&mut buf);
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the half-open connection should be closed, got {read:?}"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(GRACE_S),
        "the half-open connection was held into the grace period ({:?})",
        signalled.elapsed()
    );

    let status = wait_exit(&mut child, Duration::from_secs(GRACE_S + 15)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");

    let (code, hung_id, body) = hung_openai.await.unwrap().expect("the hung request gets an answer");
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"]["type"], "service_unavailable_error", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("shutting down"), "{v}");
    let (code, body) = hung_anthropic.await.unwrap().expect("the hung request gets an answer");
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
    let text = stream_body.await.unwrap().expect("the stream ends cleanly");
    let events = sse_data(&text);
    assert!(events.len() >= 2, "{text}");
    assert!(events[0].contains("chat.completion.chunk"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).expect("an error event");
    assert_eq!(last["error"]["type"], "service_unavailable_error", "{text}");

    // Every row is in the database itself.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(db_url)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT request_id, status FROM sy_spend_logs")
        .fetch_all(&pool)
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    for id in &completed {
        assert!(
            rows.iter().any(|(r, s)| r == id && *s == 200),
            "no row for completed request {id}: {rows:?}"
        );
    }
    let hung_id = hung_id.expect("the 503 carries its request id");
    assert!(
        rows.iter().any(|(r, s)| *r == hung_id && *s == 503),
        "no 503 row for the cancelled request {hung_id}: {rows:?}"
    );
    // 5 completed, 2 cancelled, 1 stream cut short.
    assert_eq!(rows.len(), 8, "{rows:?}");
}

#[tokio::test]
async fn sigterm_cancels_hung_requests_after_the_grace_and_flushes_the_ledger() {
    for (db_lines, url, _dir) in backends().await {
        sigterm_case(&db_lines, &url).await;
    }
}
