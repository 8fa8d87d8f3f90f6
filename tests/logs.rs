//! The binary's logs after real traffic (a virtual key, a stream, a failure): one line per
//! request with its facts, and no key, prompt or completion anywhere, in JSON and human form.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const MASTER: &str = "sk-master-logs-secret-4321";
const PROMPT: &str = "PROMPT-SECRET-words";

struct Run {
    stderr: String,
    /// Request ids and the status each got.
    requests: Vec<(String, u16)>,
    key: String,
}

/// Serves `json_logs` config on a free port, sends the traffic, stops with SIGTERM.
async fn run(json_logs: bool) -> Run {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    bad.set(Behaviour {
        status: Some(500),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n{}{}litellm_settings:\n  num_retries: 0\n  json_logs: {json_logs}\ngeneral_settings:\n  master_key: {MASTER}\n  database_path: {}\n",
            entry("m", &good, ""),
            entry("bad", &bad, ""),
            dir.path().join("db.sqlite").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--config"])
        .arg(&cfg)
        .args(["--port", &port.to_string()])
        .env_remove("RUST_LOG")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stderr as it comes so the child never blocks on a full pipe.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
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
        .json(&json!({"key_alias": "logs-bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let mut requests = Vec::new();
    for (model, stream) in [("m", false), ("m", true), ("bad", false)] {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": model, "messages": user(PROMPT), "stream": stream}))
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if status == 200 {
            assert!(
                body.contains(PROMPT),
                "the mock echoes the prompt: the completion holds it"
            );
        }
        requests.push((id, status));
    }
    assert_eq!(requests.iter().map(|r| r.1).collect::<Vec<_>>(), [200, 200, 500]);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the gateway did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Run {
        stderr: reader.join().unwrap(),
        requests,
        key,
    }
}

fn assert_no_secrets(run: &Run) {
    for secret in [run.key.as_str(), MASTER, "sk-upstream-secret", PROMPT] {
        assert!(!run.stderr.contains(secret), "{secret:?} in the logs:\n{}", run.stderr);
    }
}

#[tokio::test]
async fn json_request_lines_carry_the_facts_and_no_secrets() {
    let run = run(true).await;
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request_lines: Vec<&Value> = lines.iter().filter(|l| l["target"] == "switchyard::request").collect();
    for (id, status) in &run.requests {
        let line = request_lines
            .iter()
            .find(|l| l["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no line for {id}:\n{}", run.stderr));
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["key_alias"], "logs-bot");
        assert_eq!(line["status"].as_u64(), Some(*status as u64));
        assert!(line["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{line}");
        assert!(line["route"].is_string(), "{line}");
        if *status == 200 {
            assert_eq!(line["model"], "m");
            assert!(line["deployment"].as_str().is_some_and(|d| !d.is_empty()), "{line}");
            assert!(line["prompt_tokens"].as_i64().unwrap() > 0, "{line}");
            assert!(line["completion_tokens"].as_i64().unwrap() > 0, "{line}");
            assert!(line.get("error").is_none_or(Value::is_null), "{line}");
        } else {
            assert_eq!(line["model"], "bad");
            assert!(line["error"].as_str().is_some_and(|e| !e.is_empty()), "{line}");
        }
    }
    assert_eq!(request_lines.len(), run.requests.len(), "one line per request");
    assert_no_secrets(&run);
}

#[tokio::test]
async fn human_request_lines_carry_the_facts_and_no_secrets() {
    let run = run(false).await;
    for (id, status) in &run.requests {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("switchyard::request") && l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no line for {id}:\n{}", run.stderr));
        assert!(line.contains("key_alias=\"logs-bot\""), "{line}");
        assert!(line.contains(&format!("status={status}")), "{line}");
        assert!(line.contains("latency_ms="), "{line}");
    }
    assert_no_secrets(&run);
}
