//! Helpers for the gateway's own background threads (ledger writer, request log).

/// Nice 10 for the calling thread (Linux keeps a nice value per thread; elsewhere a no-op):
/// on a box the gateway shares with its load, request threads win the CPU.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "background thread keeps normal priority");
    }
}
