//! local-first routing against engine mocks whose /metrics, /api/ps and /slots the test sets,
//! with scripted GPU readings and a hand-moved clock.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard::routing::clock::ManualClock;
use switchyard::signals::gpu::{GpuReading, ScriptedGpu};

/// A group `m` with one local deployment (`prefix` decides the engine) and one cloud one.
fn config(local: &MockUpstream, cloud: &MockUpstream, prefix: &str, local_extra: &str, lf: &str) -> String {
    format!(
        "model_list:
  - model_name: m
    litellm_params:
      model: {prefix}/local-model
      api_base: http://{local}/v1
{local_extra}  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      api_base: {cloud}
      api_key: sk-cloud
    model_info:
      local: false
router_settings:
  routing_strategy: local-first
  disable_cooldowns: true
  local_first:
    engine_poll_ms: 20
    stale_after_ms: 1000
    min_dwell_ms: 2000
{lf}",
        local = local.addr,
        cloud = cloud.base_url()
    )
}

async fn route(gw: &Gateway, body: Value) -> (u16, String, String) {
    let r = gw.chat(body).await;
    let status = r.status().as_u16();
    let route = r
        .headers()
        .get("x-switchyard-route")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let reason = r
        .headers()
        .get("x-switchyard-reason")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, route, reason)
}

fn ask(text: &str) -> Value {
    json!({"model": "m", "messages": user(text)})
}

/// Lets the 20 ms poller take a few readings.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn vllm(waiting: u32, kv: f64) -> String {
    format!("vllm:num_requests_running{{model_name=\"q\"}} 3\nvllm:num_requests_waiting{{model_name=\"q\"}} {waiting}\nvllm:gpu_cache_usage_perc{{model_name=\"q\"}} {kv}\n")
}

#[tokio::test]
async fn saturating_the_local_engine_escalates_and_recovery_returns_after_the_dwell() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.2)),
        ..Default::default()
    });
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_scripted(
        &config(&local, &cloud, "hosted_vllm", "", ""),
        clock.clone(),
        Arc::new(ScriptedGpu::new(vec![])),
    )
    .await;
    settle().await;
    assert_eq!(route(&gw, ask("hi")).await, (200, "local".into(), "local_ok".into()));

    // Queue builds up: escalate, saying why.
    local.set(Behaviour {
        metrics: Some(vllm(7, 0.2)),
        ..Default::default()
    });
    settle().await;
    assert_eq!(
        route(&gw, ask("hi")).await,
        (200, "cloud".into(), "queue_depth=7>=4".into())
    );
    // KV cache under the deprecated name counts too.
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.95)),
        ..Default::default()
    });
    settle().await;
    let (_, r, why) = route(&gw, ask("hi")).await;
    assert_eq!((r.as_str(), why.as_str()), ("cloud", "kv_cache=0.95>=0.90"));

    // Back to calm: still cloud until the dwell has passed, then local again.
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.2)),
        ..Default::default()
    });
    settle().await;
    let (_, r, why) = route(&gw, ask("hi")).await;
    assert_eq!((r.as_str(), why.as_str()), ("cloud", "dwell"));
    clock.advance(Duration::from_millis(2100));
    settle().await;
    assert_eq!(route(&gw, ask("hi")).await.1, "local");
    // Between the thresholds (1 < 3 < 4): no flapping back.
    local.set(Behaviour {
        metrics: Some(vllm(3, 0.2)),
        ..Default::default()
    });
    settle().await;
    assert_eq!(route(&gw, ask("hi")).await.1, "local");
    let cloud_calls = cloud.requests().len();
    assert_eq!(cloud_calls, 3);
}

#[tokio::test]
async fn stale_metrics_count_as_unknown_not_idle() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.1)),
        latency_ms: 400,
        ..Default::default()
    });
    let clock = Arc::new(ManualClock::default());
    // One reading only (the poll interval is long), then the clock moves past stale_after.
    let yaml = config(&local, &cloud, "hosted_vllm", "", "").replace("engine_poll_ms: 20", "engine_poll_ms: 600000");
    let gw = Arc::new(spawn_scripted(&yaml, clock.clone(), Arc::new(ScriptedGpu::new(vec![]))).await);
    settle().await;
    clock.advance(Duration::from_secs(5));
    // Unknown load: one request at a time goes local (default_parallel 1)...
    let g = gw.clone();
    let first = tokio::spawn(async move { route(&g, ask("slow")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...and the next one, while that is in flight, goes to the cloud.
    let (s, r, why) = route(&gw, ask("x")).await;
    assert_eq!(
        (s, r.as_str(), why.as_str()),
        (200, "cloud", "in_flight=1>=1,stale_signals")
    );
    assert_eq!(first.await.unwrap().1, "local");
}

#[tokio::test]
async fn engine_down_and_local_errors_escalate_with_zero_client_errors() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.1)),
        ..Default::default()
    });
    let clock = Arc::new(ManualClock::default());
    let gw = spawn_scripted(
        &config(&local, &cloud, "hosted_vllm", "", ""),
        clock.clone(),
        Arc::new(ScriptedGpu::new(vec![])),
    )
    .await;
    settle().await;
    // A 503 burst on the local engine: every request still succeeds, on the cloud.
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.1)),
        status: Some(503),
        ..Default::default()
    });
    for _ in 0..10 {
        let (s, r, why) = route(&gw, ask("x")).await;
        assert_eq!((s, r.as_str(), why.as_str()), (200, "cloud", "local_failed=503"));
    }
    // The engine goes away entirely: the poller notices and routing skips it up front.
    drop(local);
    settle().await;
    let (s, r, why) = route(&gw, ask("x")).await;
    assert_eq!((s, r.as_str()), (200, "cloud"));
    assert!(why.starts_with("engine_down="), "{why}");
}

#[tokio::test]
async fn too_large_for_the_local_context_goes_to_the_cloud() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.1)),
        ..Default::default()
    });
    let gw = spawn_scripted(
        &config(
            &local,
            &cloud,
            "hosted_vllm",
            "    model_info:\n      max_input_tokens: 100\n",
            "    cheap_max_tokens: 50000\n",
        ),
        Arc::new(ManualClock::default()),
        Arc::new(ScriptedGpu::new(vec![])),
    )
    .await;
    settle().await;
    assert_eq!(route(&gw, ask("short")).await.1, "local");
    let (_, r, why) = route(&gw, json!({"model": "m", "messages": user("short"), "max_tokens": 500})).await;
    assert_eq!(r, "cloud");
    assert!(why.starts_with("context=") && why.ends_with(">100"), "{why}");
}

#[tokio::test]
async fn local_only_callers_never_reach_the_cloud() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some(vllm(9, 0.99)),
        ..Default::default()
    });
    let gw = spawn_scripted(
        &config(&local, &cloud, "hosted_vllm", "", "    allow_cloud: false\n"),
        Arc::new(ManualClock::default()),
        Arc::new(ScriptedGpu::new(vec![])),
    )
    .await;
    settle().await;
    // Saturated, but the cloud is off limits: it queues locally and says so.
    let (s, r, why) = route(&gw, ask("x")).await;
    assert_eq!((s, r.as_str()), (200, "local"));
    assert!(why.starts_with("saturated_no_cloud:"), "{why}");
    // A local failure is not escalated either.
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.1)),
        status: Some(500),
        ..Default::default()
    });
    settle().await;
    let r = gw
        .chat(json!({"model": "m", "messages": user("x"), "num_retries": 1}))
        .await;
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert!(b["error"]["message"].as_str().unwrap().contains("local-only"), "{b}");
    assert_eq!(cloud.hits(), 0);
}

#[tokio::test]
async fn gpu_hazards_escalate() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some(vllm(0, 0.1)),
        ..Default::default()
    });
    let healthy = GpuReading {
        index: 0,
        name: "RTX 3090".into(),
        temperature_c: 60,
        memory_total_mb: 24576,
        ..Default::default()
    };
    let gpu = Arc::new(ScriptedGpu::new(vec![healthy.clone()]));
    let clock = Arc::new(ManualClock::default());
    let lf = "    gpu_poll_ms: 100\n    max_foreign_vram_mb: 2000\n";
    let yaml = config(&local, &cloud, "hosted_vllm", "", lf).replace("min_dwell_ms: 2000", "min_dwell_ms: 0");
    let gw = spawn_scripted(&yaml, clock.clone(), gpu.clone()).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(route(&gw, ask("x")).await.1, "local");
    gpu.set(Ok(vec![GpuReading {
        throttle: vec!["hw_thermal_slowdown".into()],
        ..healthy.clone()
    }]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(route(&gw, ask("x")).await.2, "gpu0_throttled=hw_thermal_slowdown");
    gpu.set(Ok(vec![GpuReading {
        foreign_vram_mb: 6000,
        ..healthy.clone()
    }]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(route(&gw, ask("x")).await.2, "gpu0_foreign_vram_mb=6000>2000");
    gpu.set(Ok(vec![healthy]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(route(&gw, ask("x")).await.1, "local");
}

#[tokio::test]
async fn llama_server_slots_and_ollama_offload() {
    let local = MockUpstream::start().await.unwrap();
    let cloud = MockUpstream::start().await.unwrap();
    local.set(Behaviour {
        metrics: Some("llamacpp:requests_processing 0\nllamacpp:requests_deferred 0\n".into()),
        slots: Some(2),
        latency_ms: 300,
        ..Default::default()
    });
    let gw = Arc::new(
        spawn_scripted(
            &config(&local, &cloud, "openai", "      api_key: none\n", ""),
            Arc::new(ManualClock::default()),
            Arc::new(ScriptedGpu::new(vec![])),
        )
        .await,
    );
    settle().await;
    // Two slots: two concurrent requests are local, the third escalates at once.
    let bg: Vec<_> = (0..2)
        .map(|_| {
            let g = gw.clone();
            tokio::spawn(async move { route(&g, ask("x")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, r, why) = route(&gw, ask("x")).await;
    assert_eq!((r.as_str(), why.as_str()), ("cloud", "in_flight=2>=2"));
    for h in bg {
        assert_eq!(h.await.unwrap().1, "local");
    }
    let status: Value = gw
        .client
        .get(gw.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &status["deployments"][0];
    assert_eq!(d["engine"]["kind"], "llamacpp", "{status}");
    assert_eq!(d["engine"]["reading"]["slots"], 2);
    assert_eq!(d["engine"]["stale"], false);
    assert_eq!(status["gpu"]["gpus"], json!([]));

    // Ollama: no metrics; a model partly in system RAM is slow, so it escalates.
    let ollama = MockUpstream::start().await.unwrap();
    ollama.set(Behaviour {
        api_ps: Some(json!({"models": [{"name": "local-model:latest", "size": 8000, "size_vram": 5000}]})),
        ..Default::default()
    });
    let gw = spawn_scripted(
        &config(&ollama, &cloud, "ollama_chat", "", ""),
        Arc::new(ManualClock::default()),
        Arc::new(ScriptedGpu::new(vec![])),
    )
    .await;
    settle().await;
    assert_eq!(route(&gw, ask("x")).await.2, "offloaded_to_cpu");
}
