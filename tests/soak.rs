//! A short soak: the real binary under mixed load (chat, streams, upstream errors, slow heads and
//! bodies, connection churn) against a mock upstream on loopback for a bounded time. Its memory
//! (VmRSS) and open file descriptors must level off: the late samples may not keep growing past
//! a generous bound over the middle ones. No assertion on speed.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const SOAK: Duration = Duration::from_secs(21);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kb: u64,
    fds: usize,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample { rss_kb, fds })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_and_file_descriptors_level_off_under_mixed_load() {
    let (good, bad) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    good.set(Behaviour {
        chunks: Some(5),
        record: Some(false),
        ..Default::default()
    });
    bad.set(Behaviour {
        status: Some(500),
        record: Some(false),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n{}{}litellm_settings:\n  num_retries: 0\ngeneral_settings:\n  database_path: {}\n  request_header_timeout_s: 1\n  request_body_timeout_s: 1\n  keep_alive_timeout_s: 2\n  shutdown_grace_s: 2\n",
            entry("m", &good, ""),
            entry("bad", &bad, ""),
            dir.path().join("db.sqlite").display()
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
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/health/liveliness")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    // Keep-alive clients: chat, streams, upstream errors.
    for (i, (model, stream)) in [("m", false), ("m", false), ("m", true), ("m", true), ("bad", false)]
        .into_iter()
        .enumerate()
    {
        let (stop, served, base) = (stop.clone(), served.clone(), base.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&json!({"model": model, "messages": user(&format!("soak {i} {n}")), "stream": stream}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if let Ok(r) = r {
                    let _ = r.bytes().await;
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Churn: a new connection per request.
    {
        let (stop, served, base) = (stop.clone(), served.clone(), base.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
                if let Ok(r) = client
                    .post(format!("{base}/v1/messages"))
                    .json(&json!({"model": "m", "max_tokens": 5, "messages": user("churn")}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    let _ = r.bytes().await;
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Slow clients: half a head, or a body that never arrives; the gateway closes them.
    let slow = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = if i % 2 == 0 {
                        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-le")
                    } else {
                        s.write_all(
                            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"mo",
                        )
                    };
                    held.push(s);
                }
                // Our side lets go of the oldest: the gateway must have closed its end already.
                if held.len() > 20 {
                    held.remove(0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut samples = Vec::new();
    let soak_started = Instant::now();
    while soak_started.elapsed() < SOAK {
        tokio::time::sleep(SAMPLE_EVERY).await;
        samples.push(sample(pid).expect("the gateway is running"));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let _ = tokio::task::spawn_blocking(move || slow.join()).await;
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the gateway did not stop on SIGTERM after the soak");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));

    let served = served.load(Ordering::Relaxed);
    eprintln!(
        "soak: {served} requests answered; samples (rss kB, fds): {:?}",
        samples.iter().map(|s| (s.rss_kb, s.fds)).collect::<Vec<_>>()
    );
    assert!(served > 100, "the load did not run: {served} requests");
    // The first third warms up (allocator arenas, pools, caches); the middle third sets the level
    // that the last third may not keep climbing past.
    let third = samples.len() / 3;
    let (middle, late) = (&samples[third..2 * third], &samples[2 * third..]);
    let mid_rss = middle.iter().map(|s| s.rss_kb).max().unwrap();
    let mid_fds = middle.iter().map(|s| s.fds).max().unwrap();
    let late_rss = late.iter().map(|s| s.rss_kb).max().unwrap();
    let late_fds = late.iter().map(|s| s.fds).max().unwrap();
    assert!(
        late_rss <= mid_rss + mid_rss / 2 + 16 * 1024,
        "RSS kept growing: middle max {mid_rss} kB, late max {late_rss} kB"
    );
    assert!(
        late_fds <= mid_fds + 32,
        "file descriptors kept growing: middle max {mid_fds}, late max {late_fds}"
    );
}
