//! Test harness: a gateway on 127.0.0.1:0 built from a config text, and helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use switchyard::app::AppState;
use switchyard::config::Config;

pub use switchyard::mock::{Behaviour, MockUpstream};

pub struct Gateway {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Gateway {
    /// Graceful shutdown, waiting until the gateway has drained and flushed its ledger.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("gateway reachable")
    }

    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// POSTs `body` to an admin route with the master key.
    pub async fn admin_post(&self, master: &str, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(master)
            .json(&body)
            .send()
            .await
            .expect("gateway reachable")
    }

    /// A new virtual key (`/key/generate` with `body`); the call must succeed.
    pub async fn generate_key(&self, master: &str, body: serde_json::Value) -> String {
        let r = self.admin_post(master, "/key/generate", body).await;
        assert_eq!(r.status(), 200, "/key/generate");
        let v: serde_json::Value = r.json().await.expect("json");
        v["key"].as_str().expect("a key").to_string()
    }
}

/// Loads `yaml` (with `env` as the only environment) and serves it.
pub async fn spawn_with_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
    spawn_full(yaml, env, None).await
}

/// As `spawn`, with a routing clock the test moves by hand.
pub async fn spawn_with_clock(yaml: &str, clock: std::sync::Arc<switchyard::routing::clock::ManualClock>) -> Gateway {
    spawn_full(yaml, &[], Some(clock)).await
}

/// As `spawn`, with a hand-moved clock and scripted GPU readings.
pub async fn spawn_scripted(
    yaml: &str,
    clock: std::sync::Arc<switchyard::routing::clock::ManualClock>,
    gpu: std::sync::Arc<switchyard::signals::gpu::ScriptedGpu>,
) -> Gateway {
    spawn_inner(yaml, &[], Some(clock), Some(gpu), |_| {}).await
}

async fn spawn_full(
    yaml: &str,
    env: &[(&str, &str)],
    clock: Option<std::sync::Arc<switchyard::routing::clock::ManualClock>>,
) -> Gateway {
    spawn_inner(yaml, env, clock, None, |_| {}).await
}

/// As `spawn_with_env`, with the loaded config changed by `edit` first (settings the CLI sets,
/// such as the listen address).
pub async fn spawn_edited(yaml: &str, env: &[(&str, &str)], edit: impl FnOnce(&mut Config)) -> Gateway {
    spawn_inner(yaml, env, None, None, edit).await
}

async fn spawn_inner(
    yaml: &str,
    env: &[(&str, &str)],
    clock: Option<std::sync::Arc<switchyard::routing::clock::ManualClock>>,
    gpu: Option<std::sync::Arc<switchyard::signals::gpu::ScriptedGpu>>,
    edit: impl FnOnce(&mut Config),
) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut config = Config::load_with_env(&path, &env).unwrap_or_else(|e| panic!("config: {e}"));
    edit(&mut config);
    let clock: std::sync::Arc<dyn switchyard::routing::clock::Clock> = match clock {
        Some(c) => c,
        None => std::sync::Arc::new(switchyard::routing::clock::SystemClock::default()),
    };
    // Tests never open NVML: without a scripted source they run as a host without a driver.
    let gpu: std::sync::Arc<dyn switchyard::signals::gpu::GpuSource> = match gpu {
        Some(g) => g,
        None => std::sync::Arc::new(switchyard::signals::gpu::ScriptedGpu::new(vec![])),
    };
    let state = AppState::with_parts(config, clock, Some(gpu)).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(switchyard::cli::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Gateway {
        addr,
        client: reqwest::Client::new(),
        _dir: dir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub async fn spawn(yaml: &str) -> Gateway {
    spawn_with_env(yaml, &[]).await
}

/// One `model_list` entry pointing at a mock.
pub fn entry(model_name: &str, mock: &MockUpstream, extra: &str) -> String {
    format!(
        "  - model_name: {model_name}\n    litellm_params:\n      model: openai/up-{model_name}\n      api_base: {}\n      api_key: sk-upstream-secret\n{extra}",
        mock.base_url()
    )
}

pub fn user(content: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": content}])
}

/// Reads an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_string))
        .collect()
}
