//! Inference-engine load, read from each local deployment's own endpoints:
//! vLLM `/metrics` (waiting, running, KV-cache use under the current and the deprecated name,
//! preemptions), TGI `/metrics` (queue and batch size), llama-server `/metrics` and `/slots`
//! (deferred and processing requests, slot count), Ollama `/api/ps` (no queue metric: the
//! gateway's own in-flight count is compared with its parallelism instead).

use super::prometheus;
use crate::config::Deployment;
use crate::providers::spec::Provider;
use serde::Serialize;
use std::sync::RwLock;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Vllm,
    Tgi,
    Llamacpp,
    Ollama,
    /// Not known from the config: found out by probing.
    Unknown,
}

impl EngineKind {
    /// `model_info.engine` when set, else the provider prefix, else probe.
    pub fn of(dep: &Deployment) -> EngineKind {
        match dep.model_info.extra.get("engine").and_then(|v| v.as_str()) {
            Some("vllm") => return EngineKind::Vllm,
            Some("tgi") => return EngineKind::Tgi,
            Some("llamacpp") | Some("llama.cpp") | Some("llama-server") => return EngineKind::Llamacpp,
            Some("ollama") => return EngineKind::Ollama,
            _ => {}
        }
        match dep.provider {
            Provider::HostedVllm => EngineKind::Vllm,
            Provider::Ollama | Provider::OllamaChat => EngineKind::Ollama,
            Provider::HuggingFace => EngineKind::Tgi,
            Provider::Llamafile => EngineKind::Llamacpp,
            _ => EngineKind::Unknown,
        }
    }
}

/// One reading of an engine, with the clock time it was taken.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineSnapshot {
    /// Router clock ms of the reading; 0 = never read.
    pub at_ms: u64,
    pub up: bool,
    pub error: Option<String>,
    pub waiting: Option<f64>,
    pub running: Option<f64>,
    pub kv_usage: Option<f64>,
    pub preemptions_total: Option<f64>,
    /// Preemptions grew since the previous reading (KV pressure evicting running sequences).
    pub preempting: bool,
    /// Concurrent slots the engine reports (llama-server `/slots`).
    pub slots: Option<u64>,
    /// Ollama has the model partly in system RAM (`size_vram < size`): slow.
    pub offloaded: bool,
}

#[derive(Debug)]
pub struct EngineSignal {
    pub kind: RwLock<EngineKind>,
    /// The engine's root URL (`api_base` without `/v1`).
    pub root: String,
    pub metrics_url: String,
    pub model: String,
    pub snapshot: RwLock<EngineSnapshot>,
}

impl EngineSignal {
    pub fn new(dep: &Deployment) -> Self {
        let root = dep.api_base.trim_end_matches('/').trim_end_matches("/v1").to_string();
        let metrics_url = dep
            .model_info
            .extra
            .get("metrics_url")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{root}/metrics"));
        EngineSignal {
            kind: RwLock::new(EngineKind::of(dep)),
            root,
            metrics_url,
            model: dep.model.clone(),
            snapshot: RwLock::new(EngineSnapshot::default()),
        }
    }

    pub fn kind(&self) -> EngineKind {
        self.kind.read().map(|k| *k).unwrap_or(EngineKind::Unknown)
    }

    pub fn snapshot(&self) -> EngineSnapshot {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reads the engine once and stores the snapshot stamped `now_ms`.
    pub async fn poll(&self, client: &reqwest::Client, timeout: Duration, now_ms: u64) {
        let previous = self.snapshot();
        let mut snap = match self.kind() {
            EngineKind::Ollama => self.read_ollama(client, timeout).await,
            kind => self.read_metrics(client, timeout, kind).await,
        };
        snap.at_ms = now_ms.max(1);
        if let (Some(now), Some(before)) = (snap.preemptions_total, previous.preemptions_total) {
            snap.preempting = now > before;
        }
        if let Ok(mut s) = self.snapshot.write() {
            *s = snap;
        }
    }

    async fn get(&self, client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(u16, String), String> {
        let resp = client.get(url).timeout(timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "connection refused".to_string()
            } else {
                e.to_string()
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    async fn read_metrics(&self, client: &reqwest::Client, timeout: Duration, kind: EngineKind) -> EngineSnapshot {
        let (status, body) = match self.get(client, &self.metrics_url, timeout).await {
            Ok(x) => x,
            Err(e) => {
                return EngineSnapshot {
                    up: false,
                    error: Some(e),
                    ..Default::default()
                }
            }
        };
        if status != 200 {
            // No metrics endpoint: maybe an Ollama, found by its /api/ps.
            if kind == EngineKind::Unknown {
                let ollama = self.read_ollama(client, timeout).await;
                if ollama.up {
                    if let Ok(mut k) = self.kind.write() {
                        *k = EngineKind::Ollama;
                    }
                    return ollama;
                }
            }
            return EngineSnapshot {
                up: true,
                error: Some(format!("{} answered {status}", self.metrics_url)),
                ..Default::default()
            };
        }
        let m = prometheus::parse(&body);
        let found = if m.keys().any(|k| k.starts_with("vllm:")) {
            EngineKind::Vllm
        } else if m.keys().any(|k| k.starts_with("tgi_")) {
            EngineKind::Tgi
        } else if m.keys().any(|k| k.starts_with("llamacpp:")) {
            EngineKind::Llamacpp
        } else {
            kind
        };
        if found != kind {
            if let Ok(mut k) = self.kind.write() {
                *k = found;
            }
        }
        let get = |names: &[&str]| names.iter().find_map(|n| m.get(*n).copied());
        let mut snap = EngineSnapshot {
            up: true,
            ..Default::default()
        };
        match found {
            EngineKind::Vllm => {
                snap.waiting = get(&["vllm:num_requests_waiting"]);
                snap.running = get(&["vllm:num_requests_running"]);
                snap.kv_usage = get(&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]);
                snap.preemptions_total = get(&["vllm:num_preemptions_total", "vllm:num_preemptions"]);
            }
            EngineKind::Tgi => {
                snap.waiting = get(&["tgi_queue_size"]);
                snap.running = get(&["tgi_batch_current_size"]);
            }
            EngineKind::Llamacpp => {
                snap.waiting = get(&["llamacpp:requests_deferred"]);
                snap.running = get(&["llamacpp:requests_processing"]);
                snap.kv_usage = get(&["llamacpp:kv_cache_usage_ratio"]);
                if let Ok((200, slots)) = self.get(client, &format!("{}/slots", self.root), timeout).await {
                    snap.slots = serde_json::from_str::<Vec<serde_json::Value>>(&slots)
                        .ok()
                        .map(|s| s.len() as u64);
                }
            }
            _ => {}
        }
        snap
    }

    async fn read_ollama(&self, client: &reqwest::Client, timeout: Duration) -> EngineSnapshot {
        match self.get(client, &format!("{}/api/ps", self.root), timeout).await {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let offloaded = v["models"].as_array().is_some_and(|ms| {
                    ms.iter().any(|m| {
                        let name_matches = m["name"]
                            .as_str()
                            .is_some_and(|n| n == self.model || n.starts_with(&format!("{}:", self.model)));
                        let (size, vram) = (m["size"].as_u64().unwrap_or(0), m["size_vram"].as_u64().unwrap_or(0));
                        name_matches && vram < size
                    })
                });
                EngineSnapshot {
                    up: true,
                    offloaded,
                    ..Default::default()
                }
            }
            Ok((status, _)) => EngineSnapshot {
                up: false,
                error: Some(format!("/api/ps answered {status}")),
                ..Default::default()
            },
            Err(e) => EngineSnapshot {
                up: false,
                error: Some(e),
                ..Default::default()
            },
        }
    }
}
