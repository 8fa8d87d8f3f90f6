//! A standalone OpenAI-shaped upstream for benchmarks and scripted tests.
//! `switchyard-mock [--port 9000] [--name mock] [--latency-ms 0] [--no-record]`

use clap::Parser;
use switchyard::mock::{router_standalone, Behaviour};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 9000)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value = "mock")]
    name: String,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 3)]
    chunks: usize,
    #[arg(long)]
    no_record: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let b = Behaviour {
        latency_ms: a.latency_ms,
        chunks: Some(a.chunks),
        record: Some(!a.no_record),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port)).await?;
    eprintln!(
        "switchyard-mock {} listening on http://{}",
        a.name,
        listener.local_addr()?
    );
    switchyard::mock::serve(listener, router_standalone(&a.name, b)).await
}
