//! Upstream faults, end to end: what the client sees, whether the deployment is cooled down, and
//! the spend row's status in the ledger (SQLite, counted in the database). Every fault runs against
//! loopback only with small timeouts; cooldown time is moved by hand (`ManualClock`).

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard::routing::clock::ManualClock;

/// A `model_list` entry named `group` pointing at `base`, with extra `litellm_params` lines.
fn dep_at(group: &str, base: &str, params: &str) -> String {
    format!("  - model_name: {group}\n    litellm_params:\n      model: openai/{group}-up\n      api_base: {base}\n      api_key: k\n{params}")
}

/// A SQLite ledger in a temporary folder: the `general_settings` lines and the URL to count rows.
fn ledger() -> (tempfile::TempDir, String, String) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db").display().to_string();
    let general = format!("general_settings:\n  database_path: {path}\n  spend_logs_flush_interval: 0.05\n");
    (dir, general, format!("sqlite://{path}?mode=rwc"))
}

/// `(model_group, status, stream)` of every spend row, once `n` rows are written.
async fn rows(url: &str, n: usize) -> Vec<(String, i64, bool)> {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    for _ in 0..200 {
        let got = sqlx::query("SELECT model_group, status, stream FROM sy_spend_logs ORDER BY started_at, id")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        if got.len() >= n {
            return got
                .iter()
                .map(|r| {
                    let stream: i64 = r.try_get("stream").unwrap();
                    (
                        r.try_get("model_group").unwrap(),
                        r.try_get("status").unwrap(),
                        stream != 0,
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the ledger never reached {n} rows");
}

async fn stream_text(gw: &Gateway, model: &str) -> (u16, String) {
    let r = gw
        .chat(json!({"model": model, "stream": true, "messages": user("one two three four")}))
        .await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of `series` for the deployment whose labels mention `needle`.
async fn metric(gw: &Gateway, series: &str, needle: &str) -> f64 {
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{series}{{")) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn mid_stream_cuts_cool_the_cutter_and_are_recorded_as_failures() {
    let cutter = MockUpstream::start().await.unwrap();
    let healthy = MockUpstream::start().await.unwrap();
    // A 200 head and one content event, then the connection breaks.
    cutter.set(Behaviour {
        cut_after: Some(1),
        ..Default::default()
    });
    let (_dir, general, url) = ledger();
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_with_clock(
        &format!(
            "model_list:\n{}{}router_settings:\n  allowed_fails: 1\n  cooldown_time: 30\n  num_retries: 0\n{general}",
            dep_at("m", &cutter.base_url(), "      order: 1\n"),
            dep_at("m", &healthy.base_url(), "      order: 2\n"),
        ),
        clock.clone(),
    )
    .await;
    for _ in 0..2 {
        let (status, text) = stream_text(&gw, "m").await;
        assert_eq!(status, 200, "committed at the first event");
        let last = sse_data(&text).pop().unwrap();
        assert!(
            last.starts_with("{\"error\""),
            "the client gets the error event: {text}"
        );
    }
    for _ in 0..10 {
        let (status, text) = stream_text(&gw, "m").await;
        assert_eq!(status, 200);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
    assert_eq!(
        cutter.hits(),
        2,
        "two cut streams exceed allowed_fails=1: the cutter sits out"
    );
    assert_eq!(healthy.hits(), 10);

    let rows = rows(&url, 12).await;
    let failed: Vec<_> = rows.iter().filter(|r| r.1 >= 400).collect();
    assert_eq!(failed.len(), 2, "the cut streams are failures in the ledger: {rows:?}");
    assert!(failed.iter().all(|r| r.1 == 502 && r.2), "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.1 == 200).count(), 10);
    // Each failed row says what went wrong; a success has no error.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let errors: Vec<(i64, Option<String>)> = sqlx::query("SELECT status, error FROM sy_spend_logs")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get("status").unwrap(), r.try_get("error").unwrap()))
        .collect();
    for (status, error) in &errors {
        match status {
            200 => assert_eq!(error, &None, "{errors:?}"),
            _ => assert!(error.as_deref().is_some_and(|e| !e.is_empty()), "{errors:?}"),
        }
    }

    let port = format!(":{}/", cutter.addr.port());
    assert_eq!(
        metric(&gw, "litellm_deployment_failure_responses_total", &port).await,
        2.0
    );
    assert_eq!(
        metric(&gw, "litellm_deployment_success_responses_total", &port).await,
        0.0
    );
    assert_eq!(metric(&gw, "litellm_deployment_cooled_down_total", &port).await, 1.0);

    // After the cooldown the cutter is tried again; a clean stream puts it back in rotation.
    cutter.set(Behaviour::default());
    clock.advance(Duration::from_secs(31));
    let (_, text) = stream_text(&gw, "m").await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(cutter.hits(), 3);
}

#[tokio::test]
async fn anthropic_clients_get_an_error_event_and_the_cutter_cools() {
    let cutter = MockUpstream::start().await.unwrap();
    let healthy = MockUpstream::start().await.unwrap();
    cutter.set(Behaviour {
        cut_after: Some(1),
        ..Default::default()
    });
    let gw = spawn(&format!(
        "model_list:\n{}{}router_settings:\n  allowed_fails: 0\n  cooldown_time: 30\n  num_retries: 0\n",
        dep_at("m", &cutter.base_url(), "      order: 1\n"),
        dep_at("m", &healthy.base_url(), "      order: 2\n"),
    ))
    .await;
    let ask = || {
        gw.post(
            "/v1/messages",
            json!({"model": "m", "max_tokens": 10, "stream": true, "messages": user("one two three")}),
        )
    };
    let text = ask().await.text().await.unwrap();
    assert!(text.contains("event: error\n"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    let text = ask().await.text().await.unwrap();
    assert!(
        text.contains("message_stop"),
        "the next stream goes to the healthy one: {text}"
    );
    assert_eq!((cutter.hits(), healthy.hits()), (1, 1));
}

/// A group of one with a fallback: `solo` fails as `fault` says, `backup` answers.
async fn breaker_case(fault: Behaviour, timeout: &str) {
    let solo = MockUpstream::start().await.unwrap();
    let backup = MockUpstream::start().await.unwrap();
    solo.set(fault.clone());
    let clock = Arc::new(ManualClock::default());
    // LiteLLM's default policy (no allowed_fails): more than 3 failures in a minute cool it.
    let gw = spawn_with_clock(
        &format!(
            "model_list:\n{}{}router_settings:\n  num_retries: 0\n  cooldown_time: 30\n  fallbacks: [{{solo: [backup]}}]\n",
            dep_at("solo", &solo.base_url(), timeout),
            dep_at("backup", &backup.base_url(), ""),
        ),
        clock.clone(),
    )
    .await;
    let ask = || gw.chat(json!({"model": "solo", "messages": user("x")}));
    for _ in 0..10 {
        let r = ask().await;
        assert_eq!(r.status(), 200, "the fallback answers");
        assert_eq!(r.headers()["x-litellm-model-group"], "backup");
        assert_eq!(r.headers()["x-litellm-attempted-fallbacks"], "1");
    }
    assert_eq!(
        solo.hits(),
        4,
        "4 failures open the breaker; then straight to the fallback"
    );

    // Half-open after the cooldown: one probe; it fails, so the breaker opens again at once.
    clock.advance(Duration::from_secs(31));
    for _ in 0..5 {
        assert_eq!(ask().await.status(), 200);
    }
    assert_eq!(solo.hits(), 5, "one probe, which failed and re-opened the breaker");

    // The next probe succeeds: the breaker closes and the deployment serves again.
    solo.set(Behaviour::default());
    clock.advance(Duration::from_secs(31));
    for _ in 0..5 {
        let r = ask().await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-litellm-model-group"], "solo");
    }
    assert_eq!(solo.hits(), 10);
    assert_eq!(backup.hits(), 4 + 6 + 5);
}

#[tokio::test]
async fn one_deployment_group_with_a_fallback_opens_its_breaker_on_500s() {
    breaker_case(
        Behaviour {
            status: Some(500),
            ..Default::default()
        },
        "",
    )
    .await;
}

#[tokio::test]
async fn one_deployment_group_with_a_fallback_opens_its_breaker_when_it_hangs() {
    breaker_case(
        Behaviour {
            hang: true,
            ..Default::default()
        },
        "      timeout: 0.2\n",
    )
    .await;
}

/// An upstream on a raw socket that accepts connections and drops them unanswered (a reset).
struct Dropper {
    base: String,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dropper() -> Dropper {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            // Linger 0: the close is a reset, not an orderly end.
            let _ = socket.set_zero_linger();
            drop(socket);
        }
    });
    Dropper { base, accepted, task }
}

/// A base URL on a port nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Status500,
    RateLimitedWithRetryAfter,
    RateLimited,
    Hang,
    Reset,
    PortClosed,
    MidStreamCut,
    MidStreamStall,
    /// The upstream's own error event mid-stream, then `[DONE]`.
    MidStreamErrorEvent,
}

impl Fault {
    fn behaviour(self) -> Option<Behaviour> {
        let b = match self {
            Fault::Status500 => Behaviour {
                status: Some(500),
                ..Default::default()
            },
            Fault::RateLimitedWithRetryAfter => Behaviour {
                status: Some(429),
                retry_after: Some(7),
                ..Default::default()
            },
            Fault::RateLimited => Behaviour {
                status: Some(429),
                ..Default::default()
            },
            Fault::Hang => Behaviour {
                hang: true,
                ..Default::default()
            },
            Fault::MidStreamCut => Behaviour {
                cut_after: Some(1),
                ..Default::default()
            },
            Fault::MidStreamStall => Behaviour {
                stall_after: Some(1),
                ..Default::default()
            },
            Fault::MidStreamErrorEvent => Behaviour {
                error_event_after: Some(1),
                ..Default::default()
            },
            Fault::Reset | Fault::PortClosed => return None,
        };
        Some(b)
    }

    /// The status a client alone with this fault gets (before any byte of a stream).
    fn status(self) -> u16 {
        match self {
            Fault::Status500 => 500,
            Fault::RateLimitedWithRetryAfter | Fault::RateLimited => 429,
            Fault::Hang => 504,
            Fault::Reset | Fault::PortClosed => 502,
            Fault::MidStreamCut | Fault::MidStreamStall | Fault::MidStreamErrorEvent => 200,
        }
    }
}

/// The route and body of a small chat in either dialect.
fn request(model: &str, stream: bool, anthropic: bool) -> (&'static str, Value) {
    if anthropic {
        (
            "/v1/messages",
            json!({"model": model, "max_tokens": 10, "stream": stream, "messages": user("one two three")}),
        )
    } else {
        (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": user("one two three")}),
        )
    }
}

/// Per fault, non-stream and stream, OpenAI and Anthropic clients: beside a healthy sibling the
/// client sees success and the faulty deployment sits out; alone, the client sees the right
/// status in its dialect's shape; the ledger row of each request has the status the client saw
/// (a cut stream: the failure's, not 200).
#[tokio::test]
async fn fault_matrix() {
    let healthy = MockUpstream::start().await.unwrap();
    for fault in [
        Fault::Status500,
        Fault::RateLimitedWithRetryAfter,
        Fault::RateLimited,
        Fault::Hang,
        Fault::Reset,
        Fault::PortClosed,
        Fault::MidStreamCut,
        Fault::MidStreamStall,
        Fault::MidStreamErrorEvent,
    ] {
        let mock = MockUpstream::start().await.unwrap();
        let drop_conn = dropper().await;
        let base = match fault {
            Fault::Reset => drop_conn.base.clone(),
            Fault::PortClosed => closed_port(),
            _ => {
                mock.set(fault.behaviour().unwrap());
                mock.base_url()
            }
        };
        let calls = || mock.hits() + drop_conn.accepted.load(Ordering::SeqCst);
        let (_dir, general, url) = ledger();
        let clock = Arc::new(ManualClock::default());
        let t = "      timeout: 0.3\n      stream_timeout: 0.3\n";
        let gw = spawn_with_clock(
            &format!(
                "model_list:\n{}{}{}router_settings:\n  allowed_fails: 0\n  num_retries: 1\n  cooldown_time: 30\n{general}",
                dep_at("pair", &base, &format!("{t}      order: 1\n")),
                dep_at("pair", &healthy.base_url(), "      order: 2\n"),
                dep_at("solo", &base, t),
            ),
            clock.clone(),
        )
        .await;
        let mut expected: Vec<(String, i64, bool)> = Vec::new();
        for (stream, anthropic) in [(false, false), (true, false), (false, true), (true, true)] {
            let mid_stream = matches!(
                fault,
                Fault::MidStreamCut | Fault::MidStreamStall | Fault::MidStreamErrorEvent
            );
            if mid_stream && !stream {
                continue;
            }
            let case = format!("{fault:?} stream={stream} anthropic={anthropic}");
            let (path, body) = request("pair", stream, anthropic);
            // A fresh cooldown window for every case.
            clock.advance(Duration::from_secs(100));
            let before = calls();
            let r = gw.post(path, body.clone()).await;
            assert_eq!(r.status(), 200, "{case}: the sibling answers");
            let text = r.text().await.unwrap();
            let cut = mid_stream;
            // A stall past stream_timeout is a timeout; a cut, a broken connection.
            let cut_status = if fault == Fault::MidStreamStall { 504 } else { 502 };
            if cut {
                assert!(
                    text.contains(if anthropic {
                        "event: error\n"
                    } else {
                        "data: {\"error\""
                    }),
                    "{case}: {text}"
                );
            }
            expected.push(("pair".into(), if cut { cut_status } else { 200 }, stream));
            // A closed port counts nothing; the retry header tells there too.
            let counted = fault != Fault::PortClosed;
            if counted {
                assert_eq!(calls() - before, 1, "{case}: tried once");
            }
            // Cooled: the next request goes straight to the sibling and succeeds.
            let r = gw.post(path, body.clone()).await;
            assert_eq!(r.status(), 200, "{case}");
            assert_eq!(r.headers()["x-litellm-attempted-retries"], "0", "{case}: no retry");
            assert_eq!(
                r.headers()["x-litellm-model-api-base"],
                healthy.base_url().as_str(),
                "{case}"
            );
            let text = r.text().await.unwrap();
            assert!(!text.contains("error"), "{case}: {text}");
            expected.push(("pair".into(), 200, stream));
            if counted {
                assert_eq!(calls() - before, 1, "{case}: the faulty deployment sits out");
            }

            // Alone: the right status in the right shape.
            let (path, body) = request("solo", stream, anthropic);
            let r = gw.post(path, body).await;
            let status = r.status().as_u16();
            assert_eq!(status, fault.status(), "{case}: alone");
            let text = r.text().await.unwrap();
            if cut {
                assert!(
                    text.contains(if anthropic {
                        "event: error\n"
                    } else {
                        "data: {\"error\""
                    }),
                    "{case}: {text}"
                );
                expected.push(("solo".into(), cut_status, stream));
            } else {
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{case}: {e}: {text}"));
                if anthropic {
                    assert_eq!(v["type"], "error", "{case}: {v}");
                    assert!(
                        v["error"]["type"].is_string() && v["error"]["message"].is_string(),
                        "{case}: {v}"
                    );
                } else {
                    assert!(
                        v["error"]["message"].is_string() && v["error"]["type"].is_string(),
                        "{case}: {v}"
                    );
                }
                expected.push(("solo".into(), i64::from(status), stream));
            }
        }
        let mut got = rows(&url, expected.len()).await;
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{fault:?}: the ledger rows");
    }
}
