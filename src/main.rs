use clap::Parser;
use std::process::ExitCode;
use switchyard::app::AppState;
use switchyard::cli::{self, Cli, Command};
use switchyard::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check { config }) = &cli.command {
        let path = cli::config_path(config.as_deref());
        return match Config::load(&path) {
            Ok(c) => {
                print!("{}", cli::describe(&c));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = cli.serve;
    let path = cli::config_path(args.config.as_deref());
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    cli::default_database(&mut config);
    let _logs = switchyard::telemetry::init(args.json_logs || config.litellm.json_logs, args.debug);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    for d in &config.disabled {
        tracing::warn!("model_list[{}] ({}): disabled: {}", d.index, d.model_name, d.reason);
    }
    let host = match cli::listen_host(args.host.as_deref(), config.general.master_key.is_some()) {
        Ok(h) => h,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    // Decides whether /metrics needs the master key (see api::metrics).
    config.general.listen_host = Some(host.clone());
    if config.general.master_key.is_none() {
        tracing::warn!("no master key set: listening on {host} only, without authentication (set SWITCHYARD_MASTER_KEY to serve other hosts)");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(args.num_workers.filter(|n| *n > 0).unwrap_or_else(cli::default_workers));
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let groups = {
            let mut g: Vec<&str> = config.deployments.iter().map(|d| d.model_name.as_str()).collect();
            g.sort_unstable();
            g.dedup();
            g.len()
        };
        let n_deployments = config.deployments.len();
        let state = match AppState::new(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = format!("{host}:{}", args.port);
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "switchyard {} listening on http://{addr} ({groups} model groups, {n_deployments} deployments, config {})",
            env!("CARGO_PKG_VERSION"),
            path.display()
        );
        match cli::serve(listener, state, cli::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
