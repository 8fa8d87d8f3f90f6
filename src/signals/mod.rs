//! What the host feels like: engine load per local deployment, GPU readings, host CPU/memory.
//!
//! Background tasks poll each source on its own interval and stamp every reading with the
//! router clock; readers never wait on a poll. A reading older than `stale_after_ms` counts as
//! unknown, never as idle (see `routing::local_first`). Only a `local-first` router polls.

pub mod engine;
pub mod gpu;
pub mod host;
pub mod prometheus;

use crate::app::AppState;
use crate::config::Config;
use engine::EngineSignal;
use gpu::{GpuReading, GpuSource};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuSnapshot {
    /// Router clock ms of the reading; 0 = never.
    pub at_ms: u64,
    pub gpus: Vec<GpuReading>,
    pub error: Option<String>,
}

pub struct Signals {
    engines: HashMap<usize, Arc<EngineSignal>>,
    gpu_source: Option<Arc<dyn GpuSource>>,
    /// Why there are no GPU readings, when there are none.
    pub gpu_note: Option<String>,
    gpu: RwLock<GpuSnapshot>,
    host: Mutex<host::Host>,
    host_reading: RwLock<host::HostReading>,
}

impl Signals {
    /// One engine signal per local deployment. `gpu` is `Err(why)` when NVML is unavailable.
    pub fn new(config: &Config, gpu: Result<Arc<dyn GpuSource>, String>) -> Self {
        let engines = config
            .deployments
            .iter()
            .filter(|d| d.is_local())
            .map(|d| (d.index, Arc::new(EngineSignal::new(d))))
            .collect();
        let (gpu_source, gpu_note) = match gpu {
            Ok(g) => (Some(g), None),
            Err(why) => (None, Some(why)),
        };
        Signals {
            engines,
            gpu_source,
            gpu_note,
            gpu: RwLock::new(GpuSnapshot::default()),
            host: Mutex::new(host::Host::default()),
            host_reading: RwLock::new(host::HostReading::default()),
        }
    }

    pub fn engine(&self, index: usize) -> Option<&Arc<EngineSignal>> {
        self.engines.get(&index)
    }

    pub fn gpu(&self) -> GpuSnapshot {
        self.gpu.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn host(&self) -> host::HostReading {
        self.host_reading.read().map(|h| h.clone()).unwrap_or_default()
    }

    /// Reads GPUs and host once (NVML calls block, so this runs on the blocking pool).
    fn read_gpu_and_host(&self, now_ms: u64) {
        if let Some(src) = &self.gpu_source {
            let snap = match src.read() {
                Ok(gpus) => GpuSnapshot {
                    at_ms: now_ms.max(1),
                    gpus,
                    error: None,
                },
                Err(e) => GpuSnapshot {
                    at_ms: 0,
                    gpus: vec![],
                    error: Some(e),
                },
            };
            if let Ok(mut g) = self.gpu.write() {
                *g = snap;
            }
        }
        let reading = self.host.lock().map(|mut h| h.read(now_ms)).unwrap_or_default();
        if let Ok(mut h) = self.host_reading.write() {
            *h = reading;
        }
    }
}

/// Opens NVML, or says once why the gateway goes on without GPU readings.
pub fn open_gpu() -> Result<Arc<dyn GpuSource>, String> {
    match gpu::NvmlGpu::open() {
        Ok(g) => Ok(Arc::new(g)),
        Err(e) => {
            let why = format!("no NVIDIA driver or NVML ({e}): routing on engine metrics and in-flight counts only");
            tracing::warn!("{why}");
            Err(why)
        }
    }
}

/// Starts the pollers; the caller owns the handles and aborts them at shutdown.
pub fn spawn(state: Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(signals) = state.signals.clone() else {
        return vec![];
    };
    let lf = &state.config.router.local_first;
    let engine_every = Duration::from_millis(lf.engine_poll_ms);
    let gpu_every = Duration::from_millis(lf.gpu_poll_ms);
    let mut tasks = Vec::new();
    let engines: Vec<Arc<EngineSignal>> = signals.engines.values().cloned().collect();
    if !engines.is_empty() {
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
            let timeout = (engine_every * 2).min(Duration::from_secs(1));
            let mut tick = tokio::time::interval(engine_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                futures_util::future::join_all(engines.iter().map(|e| {
                    let now = st.router.now_ms();
                    let client = &client;
                    async move { e.poll(client, timeout, now).await }
                }))
                .await;
            }
        }));
    }
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(gpu_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (sig, now) = (signals.clone(), st.router.now_ms());
            let _ = tokio::task::spawn_blocking(move || sig.read_gpu_and_host(now)).await;
        }
    }));
    tasks
}
