//! What a connection may cost the gateway: slow request heads and bodies and idle keep-alive
//! connections are closed at their timeouts, and one address holds at most
//! `max_connections_per_client` connections; other clients are served meanwhile.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

fn config(mock: &MockUpstream, general: &str) -> String {
    format!(
        "model_list:\n{}litellm_settings:\n  num_retries: 0\ngeneral_settings:\n  disable_database: true\n{general}",
        entry("m", mock, "")
    )
}

/// Reads until EOF (or a reset); `None` when the connection is still open after `limit`.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(_) => return None,
        }
    }
}

/// Ten chat requests on fresh connections, all answered.
async fn others_are_served(gw: &Gateway) {
    for i in 0..10 {
        let r = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .header("connection", "close")
            .json(&json!({"model": "m", "messages": user(&format!("hi {i}"))}))
            .send()
            .await
            .expect("served while a slow client holds a connection");
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_closed_at_its_timeout_while_others_are_served() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(
        &mock,
        "  request_header_timeout_s: 1\n  keep_alive_timeout_s: 30\n",
    ))
    .await;
    let addr = gw.addr;
    // One byte of the head every 100 ms, never finishing it.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = b"GET /health/liveliness HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let started = Instant::now();
        for b in head.iter() {
            if s.write_all(&[*b]).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    others_are_served(&gw).await;
    let closed_after = tokio::task::spawn_blocking(move || slow.join().unwrap()).await.unwrap();
    let after = closed_after.expect("the connection trickling its head was never closed");
    assert!(
        after >= Duration::from_millis(900),
        "closed before its timeout: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_in_the_route_dialect_and_the_connection_closes() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(&mock, "  request_body_timeout_s: 1\n")).await;
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\""
        )
        .unwrap();
        others_are_served(&gw).await;
        let got = tokio::task::spawn_blocking(move || read_until_closed(&mut s, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the connection with a stalled body was never closed");
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
        if anthropic {
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], "timeout_error", "{v}");
        } else {
            assert_eq!(v["error"]["type"], "timeout_error", "{v}");
            assert_eq!(v["error"]["code"], "408", "{v}");
        }
    }
    assert_eq!(mock.hits(), 10 * 2, "only the served requests reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_its_timeout() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(
        &mock,
        "  keep_alive_timeout_s: 1.5\n  request_header_timeout_s: 10\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let rest =
        read_until_closed(&mut s, Duration::from_secs(10)).expect("an idle connection was kept past its timeout");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1400),
        "closed before its timeout: {idle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_cap_are_refused_while_other_addresses_are_served() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(
        &mock,
        "  max_connections_per_client: 3\n  keep_alive_timeout_s: 30\n  request_header_timeout_s: 30\n",
    ))
    .await;
    // Three idle connections from 127.0.0.1 take its slots.
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(gw.addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(gw.addr).unwrap();
    let got = tokio::task::spawn_blocking(move || read_until_closed(&mut fourth, Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the connection past the cap was kept open");
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 429"), "{text}");
    if !text.is_empty() {
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["error"]["code"], "429", "{v}");
    }
    // Another address on loopback is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .expect("another address is served");
    assert_eq!(r.status(), 200);
    // A freed slot serves 127.0.0.1 again.
    drop(held);
    let started = Instant::now();
    loop {
        let r = reqwest::Client::new().get(gw.url("/health/liveliness")).send().await;
        if r.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slots were not freed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_listener_settings_are_read_with_their_defaults_and_checked() {
    use switchyard::config::Config;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    let load = |general: &str| {
        std::fs::write(
            &p,
            format!("model_list: []\ngeneral_settings:\n  disable_database: true\n{general}"),
        )
        .unwrap();
        Config::load_with_env(&p, &std::collections::HashMap::<String, String>::new())
    };
    let c = load("").unwrap();
    let s = &c.general.server;
    assert_eq!(s.header_timeout, Duration::from_secs(10));
    assert_eq!(s.body_timeout, Duration::from_secs(30));
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.max_connections_per_client, 512);
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    let c = load("  request_header_timeout_s: 2\n  request_body_timeout_s: 5.5\n  keep_alive_timeout_s: 7\n  max_connections_per_client: 0\n  shutdown_grace_s: 0\n").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let s = &c.general.server;
    assert_eq!(s.header_timeout, Duration::from_secs(2));
    assert_eq!(s.body_timeout, Duration::from_millis(5500));
    assert_eq!(s.idle_timeout, Duration::from_secs(7));
    assert_eq!(s.max_connections_per_client, 0);
    assert_eq!(s.shutdown_grace, Duration::ZERO);
    let err = load("  request_header_timeout_s: 0\n  shutdown_grace_s: -1\n  max_connections_per_client: many\n")
        .unwrap_err()
        .to_string();
    for key in [
        "request_header_timeout_s",
        "shutdown_grace_s",
        "max_connections_per_client",
    ] {
        assert!(err.contains(&format!("general_settings.{key}")), "{key}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed_at_the_head_timeout() {
    let mock = MockUpstream::start().await.unwrap();
    let gw = spawn(&config(
        &mock,
        "  request_header_timeout_s: 1\n  keep_alive_timeout_s: 60\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let started = Instant::now();
    let got = tokio::task::spawn_blocking(move || read_until_closed(&mut s, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("a silent connection was kept past the head timeout");
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}
