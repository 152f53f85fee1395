//! Create-request throughput and latency (issue 5, "Benchmark"): the real router served on
//! 127.0.0.1 with a real store on a temporary SQLite file, driven by a closed-loop load
//! generator: K keep-alive connections, each sending `POST /v1/pools/{pool}/requests` as soon
//! as its previous answer arrived.
//!
//! ```text
//! cargo bench -p renderburst-api --bench requests
//! RB_BENCH_REQUESTS=20000 RB_BENCH_CONCURRENCY=32 cargo bench -p renderburst-api --bench requests
//! cargo bench -p renderburst-api --bench requests -- --serve   # serve only, for wrk
//! ```
//!
//! It reports requests/s, p50/p90/p99/max latency and the number of non-201 answers (which
//! must be 0), once with the admin token (a constant-time hash compare) and once with a
//! requester token stored in the database (found in the store's in-memory copy of the
//! token table). The generator shares the
//! machine's cores with the server; `--serve` keeps only the server running and prints its
//! address and tokens, so that an external generator such as `wrk` can measure the server's
//! own capacity.
//!
//! Run by `cargo test --benches` (without `--bench`), it only does a quick smoke run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api::{ApiState, sha256_hex};
use reqwest::StatusCode;
use serde_json::json;
use store::Store;
use tokio::sync::{Notify, watch};

const ADMIN_TOKEN: &str = "bench-admin-token";
const REQUESTER_TOKEN: &str = "bench-requester-token";
const POOL: &str = "bench";

struct Server {
    base: String,
    dir: std::path::PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the real API on its own multi-threaded runtime (as the daemon runs it), with a fresh
/// database holding a requester token and, once `create_pool` ran, the pool.
fn start_server() -> Server {
    let dir = std::env::temp_dir().join(format!("renderburst-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = dir.join("renderburst.db");
    let base = runtime.block_on(async {
        let store = Arc::new(Store::open(&db).await.unwrap());
        store
            .insert_token("farm-manager", "requester", &sha256_hex(REQUESTER_TOKEN))
            .await
            .unwrap();
        let (_ready_tx, ready) = watch::channel(true);
        let wake = Arc::new(Notify::new());
        // Stands in for the controller: consumes the wake-ups.
        tokio::spawn({
            let wake = wake.clone();
            async move {
                loop {
                    wake.notified().await;
                }
            }
        });
        let state = ApiState {
            store,
            wake,
            admin_token_sha256: sha256_hex(ADMIN_TOKEN),
            ready,
            status: Arc::new(|| json!({})),
            metrics: Arc::new(String::new),
            bootstrap: Arc::new(Default::default()),
            secret_names: Arc::new(Default::default()),
            resolve_secret: Arc::new(|_| Err("no secrets in the benchmark".into())),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            api::serve(listener, state, std::future::pending())
                .await
                .unwrap();
        });
        base
    });
    Server {
        base,
        dir,
        _runtime: runtime,
    }
}

async fn create_pool(http: &reqwest::Client, base: &str) {
    let spec = json!({
        "name": POOL,
        "mode": "vm",
        "vm_sizes": ["Standard_NC4as_T4_v3"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest",
        "min": 0,
        "max": 1000,
    });
    let resp = http
        .post(format!("{base}/v1/pools"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "creating the pool");
}

struct Run {
    elapsed: Duration,
    /// Per-request latency, sorted.
    latencies: Vec<Duration>,
    not_created: usize,
    errors: usize,
}

/// Sends `total` creates over `concurrency` connections, each waiting for its answer before
/// sending the next.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    token: &'static str,
    total: usize,
    concurrency: usize,
) -> Run {
    let url: Arc<str> = format!("{base}/v1/pools/{POOL}/requests").into();
    let body: &'static [u8] = br#"{"count":1,"ttl_seconds":600,"job":"bench"}"#;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total / concurrency + 1);
            let (mut not_created, mut errors) = (0, 0);
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let sent = Instant::now();
                let result = http
                    .post(&*url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match result {
                    Ok(resp) => {
                        let status = resp.status();
                        // Read the whole answer: the latency is until the client has it.
                        let _ = resp.bytes().await;
                        latencies.push(sent.elapsed());
                        if status != StatusCode::CREATED {
                            not_created += 1;
                        }
                    }
                    Err(_) => {
                        latencies.push(sent.elapsed());
                        errors += 1;
                    }
                }
            }
            (latencies, not_created, errors)
        }));
    }
    let mut run = Run {
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(total),
        not_created: 0,
        errors: 0,
    };
    for worker in workers {
        let (latencies, not_created, errors) = worker.await.unwrap();
        run.latencies.extend(latencies);
        run.not_created += not_created;
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    run
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(label: &str, run: &Run) {
    let n = run.latencies.len();
    println!(
        "{label:<28} {n:>6} requests in {:>6.2} s: {:>8.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  non-201 {}  errors {}",
        run.elapsed.as_secs_f64(),
        n as f64 / run.elapsed.as_secs_f64(),
        ms(percentile(&run.latencies, 50.0)),
        ms(percentile(&run.latencies, 90.0)),
        ms(percentile(&run.latencies, 99.0)),
        ms(run.latencies.last().copied().unwrap_or_default()),
        run.not_created,
        run.errors,
    );
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve_only = args.iter().any(|a| a == "--serve");
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: a quick smoke run then.
    let benching = args.iter().any(|a| a == "--bench") || serve_only;
    let total = env_usize("RB_BENCH_REQUESTS", if benching { 20_000 } else { 200 });
    let warmup = env_usize("RB_BENCH_WARMUP", if benching { 2_000 } else { 20 });
    let concurrency = env_usize("RB_BENCH_CONCURRENCY", 32).max(1);

    let server = start_server();
    // The generator runs on one thread of its own, leaving the server its runtime.
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    client.block_on(create_pool(&http, &server.base));

    if serve_only {
        println!("serving {} (pool {POOL:?})", server.base);
        println!("admin token:     {ADMIN_TOKEN}");
        println!("requester token: {REQUESTER_TOKEN}");
        println!("POST {}/v1/pools/{POOL}/requests", server.base);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    println!(
        "POST /v1/pools/{{pool}}/requests, {concurrency} connections, {total} requests after {warmup} warm-up"
    );
    let mut failed = false;
    for (label, token) in [
        ("admin token (config hash)", ADMIN_TOKEN),
        ("requester token (stored)", REQUESTER_TOKEN),
    ] {
        client.block_on(async {
            let warm = drive(&http, &server.base, token, warmup, concurrency).await;
            failed |= warm.not_created + warm.errors > 0;
            let run = drive(&http, &server.base, token, total, concurrency).await;
            report(label, &run);
            failed |= run.not_created + run.errors > 0;
        });
    }
    if failed {
        eprintln!("some requests were not answered 201");
        std::process::exit(1);
    }
}
