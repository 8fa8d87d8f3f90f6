//! GPU readings through NVML (`nvml-wrapper`, loaded at run time), behind a trait so tests and
//! hosts without a driver use scripted readings instead.
//!
//! NVML is read for hazards, not as the load signal: utilisation sits near 100% under continuous
//! batching and the engine pre-allocates VRAM. What matters: thermal/power throttling, a
//! temperature limit, and VRAM held by processes other than the engine (a second tenant on a
//! rented box), taken as every compute process but the one holding the most memory.

use serde::Serialize;
use std::sync::Mutex;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub name: String,
    pub utilization_pct: u32,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
    pub temperature_c: u32,
    pub power_w: f64,
    /// Active throttle reasons other than idle/app clocks (e.g. `hw_thermal_slowdown`).
    pub throttle: Vec<String>,
    /// VRAM of compute processes other than the largest one (the engine).
    pub foreign_vram_mb: u64,
}

pub trait GpuSource: Send + Sync {
    fn read(&self) -> Result<Vec<GpuReading>, String>;
}

/// Readings set by a test (or a recording), returned as they are.
pub struct ScriptedGpu {
    readings: Mutex<Result<Vec<GpuReading>, String>>,
}

impl ScriptedGpu {
    pub fn new(readings: Vec<GpuReading>) -> Self {
        ScriptedGpu {
            readings: Mutex::new(Ok(readings)),
        }
    }

    pub fn set(&self, r: Result<Vec<GpuReading>, String>) {
        if let Ok(mut g) = self.readings.lock() {
            *g = r;
        }
    }
}

impl GpuSource for ScriptedGpu {
    fn read(&self) -> Result<Vec<GpuReading>, String> {
        self.readings.lock().map_err(|e| e.to_string())?.clone()
    }
}

pub struct NvmlGpu {
    nvml: nvml_wrapper::Nvml,
}

impl NvmlGpu {
    /// Loads `libnvidia-ml.so.1`; fails (and the caller goes on without GPU readings) when
    /// there is no NVIDIA driver.
    pub fn open() -> Result<Self, String> {
        nvml_wrapper::Nvml::init()
            .map(|nvml| NvmlGpu { nvml })
            .map_err(|e| e.to_string())
    }
}

impl GpuSource for NvmlGpu {
    fn read(&self) -> Result<Vec<GpuReading>, String> {
        use nvml_wrapper::bitmasks::device::ThrottleReasons as T;
        use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let n = self.nvml.device_count().map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let d = self.nvml.device_by_index(i).map_err(|e| e.to_string())?;
            let mem = d.memory_info().map_err(|e| e.to_string())?;
            let mut throttle = Vec::new();
            if let Ok(r) = d.current_throttle_reasons() {
                for (flag, name) in [
                    (T::HW_SLOWDOWN, "hw_slowdown"),
                    (T::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
                    (T::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
                    (T::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown"),
                    (T::SW_POWER_CAP, "sw_power_cap"),
                ] {
                    if r.contains(flag) {
                        throttle.push(name.to_string());
                    }
                }
            }
            let mut per_process: Vec<u64> = d
                .running_compute_processes()
                .unwrap_or_default()
                .iter()
                .map(|p| match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => b,
                    UsedGpuMemory::Unavailable => 0,
                })
                .collect();
            per_process.sort_unstable();
            per_process.pop();
            out.push(GpuReading {
                index: i,
                name: d.name().unwrap_or_default(),
                utilization_pct: d.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                memory_used_mb: mem.used / (1 << 20),
                memory_total_mb: mem.total / (1 << 20),
                temperature_c: d.temperature(TemperatureSensor::Gpu).unwrap_or(0),
                power_w: d.power_usage().map(|mw| mw as f64 / 1000.0).unwrap_or(0.0),
                throttle,
                foreign_vram_mb: per_process.iter().sum::<u64>() / (1 << 20),
            });
        }
        Ok(out)
    }
}
