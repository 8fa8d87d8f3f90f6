//! Drives a bursty workload through one gateway and reports what the routing policy did:
//! share served locally, latency, errors, cloud cost, and the local engine's utilisation during
//! bursts (sampled from its `/metrics`). Bounded: a fixed number of requests, then it stops.
//!
//! `switchyard-sim --url URL --local-metrics URL --capacity K [--bursts 3 --burst-size 12
//!  --gap-ms 3000 --singles 10 --max-tokens 48 --price-in 2.5e-6 --price-out 1e-5]`

use clap::Parser;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long)]
    local_metrics: String,
    #[arg(long, default_value_t = 2)]
    capacity: usize,
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    #[arg(long, default_value_t = 12)]
    burst_size: usize,
    #[arg(long, default_value_t = 3000)]
    gap_ms: u64,
    #[arg(long, default_value_t = 10)]
    singles: usize,
    #[arg(long, default_value_t = 48)]
    max_tokens: u64,
    /// Cloud price per input / output token (GPT-4o's by default).
    #[arg(long, default_value_t = 2.5e-6)]
    price_in: f64,
    #[arg(long, default_value_t = 1e-5)]
    price_out: f64,
}

#[derive(Clone, Copy)]
struct Done {
    latency: Duration,
    ok: bool,
    cloud: bool,
    cost: f64,
}

async fn one(client: &reqwest::Client, a: &Args, i: usize) -> Done {
    let body = json!({"model": "sim", "max_tokens": a.max_tokens,
        "messages": [{"role": "user", "content": format!("request {i}: tell me something about gateways and gpus")}]});
    let t = Instant::now();
    let r = client
        .post(&a.url)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let Ok(r) = r else {
        return Done {
            latency: t.elapsed(),
            ok: false,
            cloud: false,
            cost: 0.0,
        };
    };
    let cloud = r.headers().get("x-switchyard-route").is_some_and(|v| v == "cloud");
    let ok = r.status().is_success();
    let v: Value = r.json().await.unwrap_or_default();
    let latency = t.elapsed();
    let cost = if cloud {
        v["usage"]["prompt_tokens"].as_f64().unwrap_or(0.0) * a.price_in
            + v["usage"]["completion_tokens"].as_f64().unwrap_or(0.0) * a.price_out
    } else {
        0.0
    };
    Done {
        latency,
        ok,
        cloud,
        cost,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let a = Arc::new(Args::parse());
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");

    // Sample the local engine's running count while bursts are in flight.
    let sampling = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (client, a, sampling, samples, stop) = (
            client.clone(),
            a.clone(),
            sampling.clone(),
            samples.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if sampling.load(Ordering::Relaxed) {
                    if let Ok(r) = client
                        .get(&a.local_metrics)
                        .timeout(Duration::from_millis(200))
                        .send()
                        .await
                    {
                        let text = r.text().await.unwrap_or_default();
                        let running: f64 = text
                            .lines()
                            .filter(|l| {
                                l.starts_with("vllm:num_requests_running")
                                    || l.starts_with("llamacpp:requests_processing")
                            })
                            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                            .sum();
                        if let Ok(mut s) = samples.lock() {
                            s.push((running / a.capacity as f64).min(1.0));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut burst_done: Vec<Done> = Vec::new();
    let mut all: Vec<Done> = Vec::new();
    for b in 0..a.bursts {
        sampling.store(true, Ordering::Relaxed);
        let tasks: Vec<_> = (0..a.burst_size)
            .map(|i| {
                let (client, a) = (client.clone(), a.clone());
                tokio::spawn(async move { one(&client, &a, b * 100 + i).await })
            })
            .collect();
        for t in tasks {
            if let Ok(d) = t.await {
                burst_done.push(d);
            }
        }
        sampling.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    for i in 0..a.singles {
        all.push(one(&client, &a, 1000 + i).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;

    let singles_local = all.iter().filter(|d| d.ok && !d.cloud).count();
    all.extend(burst_done.iter().copied());
    let mut lat: Vec<f64> = all.iter().map(|d| d.latency.as_secs_f64() * 1000.0).collect();
    lat.sort_by(|x, y| x.total_cmp(y));
    let mut burst_lat: Vec<f64> = burst_done.iter().map(|d| d.latency.as_secs_f64() * 1000.0).collect();
    burst_lat.sort_by(|x, y| x.total_cmp(y));
    let util = samples
        .lock()
        .map(|s| {
            if s.is_empty() {
                0.0
            } else {
                s.iter().sum::<f64>() / s.len() as f64
            }
        })
        .unwrap_or(0.0);
    let out = json!({
        "requests": all.len(),
        "served_local": all.iter().filter(|d| d.ok && !d.cloud).count(),
        "served_cloud": all.iter().filter(|d| d.ok && d.cloud).count(),
        "errors": all.iter().filter(|d| !d.ok).count(),
        "singles_local": singles_local,
        "singles": a.singles,
        "p50_ms": pct(&lat, 0.5),
        "p99_ms": pct(&lat, 0.99),
        "burst_p90_ms": pct(&burst_lat, 0.9),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "cloud_cost_usd": all.iter().map(|d| d.cost).sum::<f64>(),
        "local_utilisation_in_bursts": util,
    });
    println!("{out}");
}
