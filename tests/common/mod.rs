//! Test harness: a gateway on 127.0.0.1:0 built from a config text, and helpers.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::net::SocketAddr;
use switchyard::app::AppState;
use switchyard::config::Config;

#[allow(unused_imports)]
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
    spawn_state(yaml, env, clock, gpu, edit).await.0
}

/// As `spawn`, also handing back the gateway's state (for tests that call its seams directly).
pub async fn spawn_with_state(yaml: &str) -> (Gateway, std::sync::Arc<AppState>) {
    spawn_state(yaml, &[], None, None, |_| {}).await
}

async fn spawn_state(
    yaml: &str,
    env: &[(&str, &str)],
    clock: Option<std::sync::Arc<switchyard::routing::clock::ManualClock>>,
    gpu: Option<std::sync::Arc<switchyard::signals::gpu::ScriptedGpu>>,
    edit: impl FnOnce(&mut Config),
) -> (Gateway, std::sync::Arc<AppState>) {
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
    let task = tokio::spawn(switchyard::cli::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let gw = Gateway {
        addr,
        client: reqwest::Client::new(),
        _dir: dir,
        shutdown: Some(tx),
        task: Some(task),
    };
    (gw, state)
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

/// A loopback TCP proxy in front of a server (Postgres, Redis) that a test cuts (open connections
/// dropped, new ones closed at once) and restores: the server "going away" without touching it.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: String) -> CutProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        CutProxy {
            addr,
            up,
            conns,
            accept,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a binary the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The databases a test runs against: `(general_settings lines, url for direct checks, the
/// SQLite file's folder)`: SQLite always, and the real Postgres (a fresh schema) when
/// `SWITCHYARD_TEST_DATABASE_URL` names one.
pub async fn backends() -> Vec<(String, String, Option<tempfile::TempDir>)> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db").display().to_string();
    let mut out = vec![(
        format!("  database_path: {path}\n"),
        format!("sqlite://{path}?mode=rwc"),
        Some(dir),
    )];
    match std::env::var("SWITCHYARD_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(&base)
                .await
                .expect("postgres");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            out.push((format!("  database_url: \"{url}\"\n"), url, None));
        }
        _ if std::env::var("SWITCHYARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("SWITCHYARD_REQUIRE_POSTGRES=1 but SWITCHYARD_TEST_DATABASE_URL is not set")
        }
        _ => eprintln!("Postgres suite skipped (SWITCHYARD_TEST_DATABASE_URL not set)"),
    }
    out
}

/// One `f64` read from the database itself (not through the gateway).
pub async fn scalar_f64(url: &str, sql: &str, bind: Option<&str>) -> f64 {
    use sqlx::{Connection, Row};
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    if let Some(b) = bind {
        q = q.bind(b.to_string());
    }
    let row = q.fetch_one(&mut c).await.unwrap();
    let v: f64 = row.try_get(0).unwrap();
    let _ = c.close().await;
    v
}
