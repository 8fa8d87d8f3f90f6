//! Host CPU and memory through `sysinfo`, for `/status` and health.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReading {
    pub at_ms: u64,
    pub cpu_pct: f32,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
}

#[derive(Default)]
pub struct Host {
    /// `None` where sysinfo cannot read this system; readings are then zero.
    sys: Option<sysinfo::System>,
    tried: bool,
}

impl Host {
    pub fn read(&mut self, now_ms: u64) -> HostReading {
        if !self.tried {
            self.tried = true;
            self.sys = sysinfo::System::new()
                .map_err(|e| tracing::warn!("no host readings: {e}"))
                .ok();
        }
        let Some(sys) = self.sys.as_mut() else {
            return HostReading {
                at_ms: now_ms.max(1),
                ..Default::default()
            };
        };
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        HostReading {
            at_ms: now_ms.max(1),
            cpu_pct: sys.global_cpu_usage(),
            memory_used_mb: sys.used_memory() / (1 << 20),
            memory_total_mb: sys.total_memory() / (1 << 20),
        }
    }
}
