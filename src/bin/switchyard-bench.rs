//! A closed-loop HTTP load generator for chat completions endpoints (used by `scripts/bench.sh`).
//!
//! `switchyard-bench --url http://127.0.0.1:4000/v1/chat/completions --concurrency 16
//!  --duration 5 [--warmup 1] [--stream] [--responses [--no-store]] [--model M] [--requests N] [--json]`
//!
//! N workers each send the same small chat request back to back (the next one as soon as the
//! previous answer is read to its end) over keep-alive connections. Latencies of the requests
//! started after the warm-up are kept in microseconds, one `Vec` per worker, and merged at the
//! end. With `--stream` the request asks for SSE and the time to the first body bytes (TTFT) is
//! kept as well. Non-2xx answers, transport errors and broken bodies count as errors.
//!
//! Helper modes for the script:
//! - `--wait-ready [--since-ns T0] [--ready-timeout S]`: POSTs the request every 1 ms until a
//!   200 comes back, then prints the milliseconds since `T0` (Unix nanoseconds, e.g.
//!   `date +%s%N` taken just before the server was spawned), or since this process started.
//! - `--free-port`: prints a free TCP port on 127.0.0.1.

use bytes::Bytes;
use clap::Parser;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(name = "switchyard-bench", about = "Closed-loop load generator for chat completions")]
struct Args {
    /// Full URL of a chat completions endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4000/v1/chat/completions")]
    url: String,
    /// Number of workers, each with its own request in flight.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, short = 'd', default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds (requests sent but not recorded).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send `"stream": true` and measure time to first body bytes too.
    #[arg(long)]
    stream: bool,
    /// Send a Responses body (`input`, `max_output_tokens`) instead of a chat body: for
    /// `/v1/responses`.
    #[arg(long)]
    responses: bool,
    /// With `--responses`: send `"store": false` (Codex's turns), so a gateway with the response
    /// store on does not store the answers.
    #[arg(long)]
    no_store: bool,
    /// The `model` the request names.
    #[arg(long, default_value = "bench")]
    model: String,
    /// Stop after this many measured requests (successes and errors).
    #[arg(long)]
    requests: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Bearer token to send, if the endpoint needs one.
    #[arg(long, env = "BENCH_API_KEY")]
    api_key: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Runtime worker threads (the generator shares the cores with what it measures).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Poll the URL every 1 ms until a 200, print the elapsed milliseconds, and exit.
    #[arg(long)]
    wait_ready: bool,
    /// With --wait-ready: the start instant as Unix nanoseconds (`date +%s%N`).
    #[arg(long)]
    since_ns: Option<u128>,
    /// With --wait-ready: give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    ready_timeout: f64,
    /// Print a free TCP port on 127.0.0.1 and exit.
    #[arg(long)]
    free_port: bool,
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    lat_us: Vec<u32>,
    ttft_us: Vec<u32>,
    errors: u64,
    /// Responses received with any HTTP status, warm-up included: what reached the gateway.
    answered: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.free_port {
        return match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => {
                println!("{}", a.port());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.concurrency == 0 {
        eprintln!("error: --concurrency must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs_f64(args.timeout))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let request = match build_request(&client, &args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.wait_ready {
        return runtime.block_on(wait_ready(client, request, &args));
    }
    runtime.block_on(load(client, request, &args))
}

/// The chat (or, with `--responses`, Responses) body every request sends.
fn request_body(args: &Args) -> String {
    let model = serde_json::Value::from(args.model.as_str());
    let stream = if args.stream { r#","stream":true"# } else { "" };
    if args.responses {
        let store = if args.no_store { r#","store":false"# } else { "" };
        format!(r#"{{"model":{model},"input":"hello","max_output_tokens":16{stream}{store}}}"#)
    } else {
        format!(r#"{{"model":{model},"messages":[{{"role":"user","content":"hello"}}],"max_tokens":16{stream}}}"#)
    }
}

fn build_request(client: &reqwest::Client, args: &Args) -> Result<reqwest::Request, String> {
    let body = Bytes::from(request_body(args));
    let mut rb = client
        .post(&args.url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body);
    if let Some(key) = &args.api_key {
        rb = rb.bearer_auth(key);
    }
    rb.build().map_err(|e| format!("bad request for {}: {e}", args.url))
}

async fn wait_ready(client: reqwest::Client, request: reqwest::Request, args: &Args) -> ExitCode {
    let started = Instant::now();
    let give_up = started + Duration::from_secs_f64(args.ready_timeout);
    loop {
        let req = request.try_clone().expect("static body clones");
        let last_err = match client.execute(req).await {
            Ok(resp) if resp.status().as_u16() == 200 => {
                let _ = resp.bytes().await;
                let ms = match args.since_ns {
                    Some(t0) => {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_nanos();
                        now.saturating_sub(t0) as f64 / 1e6
                    }
                    None => started.elapsed().as_secs_f64() * 1e3,
                };
                println!("{ms:.1}");
                return ExitCode::SUCCESS;
            }
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= give_up {
            eprintln!(
                "error: {} not ready after {}s: {last_err}",
                args.url, args.ready_timeout
            );
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn load(client: reqwest::Client, request: reqwest::Request, args: &Args) -> ExitCode {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let deadline = measure_from + Duration::from_secs_f64(args.duration.max(0.0));
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let capacity = 4096;

    let mut handles = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let client = client.clone();
        let request = request.try_clone().expect("static body clones");
        let budget = budget.clone();
        let stream = args.stream;
        handles.push(tokio::spawn(async move {
            let mut out = WorkerResult {
                lat_us: Vec::with_capacity(capacity),
                ttft_us: Vec::with_capacity(if stream { capacity } else { 0 }),
                errors: 0,
                answered: 0,
            };
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let measured = t0 >= measure_from;
                if measured {
                    // Take one from the request budget; stop when none is left.
                    if budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_err()
                    {
                        break;
                    }
                }
                let req = request.try_clone().expect("static body clones");
                let result = one(&client, req, t0).await;
                if !matches!(result, Err(true)) {
                    out.answered += 1;
                }
                match result {
                    Ok((total, ttft)) => {
                        if measured {
                            out.lat_us.push(micros(total));
                            if stream {
                                out.ttft_us.push(micros(ttft));
                            }
                        }
                    }
                    Err(transport) => {
                        if measured {
                            out.errors += 1;
                        }
                        if transport {
                            // Keep a refused connection from spinning the shared cores.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
            }
            out
        }));
    }

    let mut all = WorkerResult::default();
    let mut worker_failures = 0u64;
    for h in handles {
        match h.await {
            Ok(r) => {
                all.lat_us.extend_from_slice(&r.lat_us);
                all.ttft_us.extend_from_slice(&r.ttft_us);
                all.errors += r.errors;
                all.answered += r.answered;
            }
            Err(_) => worker_failures += 1,
        }
    }
    let end = Instant::now();
    // The measured window runs from the end of the warm-up until the last worker is done (the
    // requests in flight at the deadline are let finish), or until the budget ran out.
    let window = end.saturating_duration_since(measure_from).as_secs_f64();
    all.errors += worker_failures;
    all.lat_us.sort_unstable();
    all.ttft_us.sort_unstable();

    let n = all.lat_us.len() as u64;
    let rps = if window > 0.0 { n as f64 / window } else { 0.0 };
    let mean = all
        .lat_us
        .iter()
        .map(|&v| u64::from(v))
        .sum::<u64>()
        .checked_div(n)
        .unwrap_or(0);
    let p = |v: &[u32], q: f64| percentile(v, q);
    if args.json {
        let ttft = |q: f64| {
            if args.stream {
                serde_json::json!(p(&all.ttft_us, q))
            } else {
                serde_json::Value::Null
            }
        };
        let out = serde_json::json!({
            "url": args.url,
            "concurrency": args.concurrency,
            "stream": args.stream,
            "duration_s": window,
            "requests": n,
            "errors": all.errors,
            "answered": all.answered,
            "rps": (rps * 10.0).round() / 10.0,
            "mean_us": mean,
            "p50_us": p(&all.lat_us, 50.0),
            "p90_us": p(&all.lat_us, 90.0),
            "p99_us": p(&all.lat_us, 99.0),
            "max_us": all.lat_us.last().copied(),
            "ttft_p50_us": ttft(50.0),
            "ttft_p99_us": ttft(99.0),
        });
        println!("{out}");
    } else {
        let f = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |x| format!("{x}"));
        println!(
            "{} c={} stream={}: {n} ok, {} errors in {window:.2}s = {rps:.1} req/s",
            args.url, args.concurrency, args.stream, all.errors
        );
        println!(
            "latency us: mean {mean} p50 {} p90 {} p99 {} max {}",
            f(p(&all.lat_us, 50.0)),
            f(p(&all.lat_us, 90.0)),
            f(p(&all.lat_us, 99.0)),
            f(all.lat_us.last().copied()),
        );
        if args.stream {
            println!(
                "ttft us: p50 {} p99 {}",
                f(p(&all.ttft_us, 50.0)),
                f(p(&all.ttft_us, 99.0)),
            );
        }
    }
    if n == 0 && all.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One request read to its end: `Ok((total, time to first body bytes))`, or `Err(transport)`
/// where `transport` is false for a non-2xx answer.
async fn one(client: &reqwest::Client, req: reqwest::Request, t0: Instant) -> Result<(Duration, Duration), bool> {
    let mut resp = client.execute(req).await.map_err(|_| true)?;
    let ok = resp.status().is_success();
    let mut first = None;
    // Drain chunk by chunk: nothing is collected, and the first chunk marks TTFT.
    loop {
        match resp.chunk().await {
            Ok(Some(_)) => {
                if first.is_none() {
                    first = Some(t0.elapsed());
                }
            }
            Ok(None) => break,
            Err(_) => return Err(true),
        }
    }
    if !ok {
        return Err(false);
    }
    let total = t0.elapsed();
    Ok((total, first.unwrap_or(total)))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}
