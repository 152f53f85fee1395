//! Requests per second through the ARM pipeline against the simulator on loopback, with the
//! rate governor enabled and disabled, and the pipeline's overhead per request over a bare
//! `reqwest` GET with the same token and TLS set-up.
//!
//! Run: `cargo bench -p azure --bench pipeline` (env BENCH_REQUESTS, default 4000).

use std::time::{Duration, Instant};

use azure::{ArmClient, AzureConfig, CredentialConfig, GovernorLimits};
use azure_core::credentials::Secret;
use azure_sim::{SimConfig, Simulator};
use serde_json::json;

const CONCURRENCY: usize = 16;

fn client(sim: &Simulator, governor: bool) -> ArmClient {
    let id = sim.identity();
    let mut cfg = AzureConfig::new(
        id.subscription_id.clone(),
        CredentialConfig::ClientSecret {
            tenant_id: id.tenant_id.clone(),
            client_id: id.client_id.clone(),
            client_secret: Secret::new(id.client_secret.clone()),
        },
    );
    cfg.arm_endpoint = sim.base_url().to_owned();
    cfg.authority_host = sim.base_url().to_owned();
    cfg.extra_ca_pem = Some(sim.ca_pem().as_bytes().to_vec());
    cfg.governor_enabled = governor;
    // Limits far above what loopback can reach, so the governor's cost is measured, not
    // its pacing.
    cfg.governor = GovernorLimits {
        reads_bucket: 1e9,
        reads_per_s: 1e9,
        ..GovernorLimits::default()
    };
    ArmClient::new(cfg).expect("client")
}

async fn run_pipeline(c: &ArmClient, total: usize) -> (f64, Duration) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let c = c.clone();
        let n = total / CONCURRENCY;
        tasks.spawn(async move {
            let mut lat = Duration::ZERO;
            for _ in 0..n {
                let t = Instant::now();
                c.get_resource_group("bench")
                    .await
                    .expect("get")
                    .expect("exists");
                lat += t.elapsed();
            }
            lat
        });
    }
    let mut lat = Duration::ZERO;
    while let Some(l) = tasks.join_next().await {
        lat += l.expect("task");
    }
    let elapsed = start.elapsed();
    (total as f64 / elapsed.as_secs_f64(), lat / total as u32)
}

async fn run_raw(sim: &Simulator, token: &str, total: usize) -> (f64, Duration) {
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let url = format!(
        "{}/subscriptions/{}/resourceGroups/bench?api-version=2025-04-01",
        sim.base_url(),
        sim.identity().subscription_id
    );
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (http, url, token) = (http.clone(), url.clone(), token.to_owned());
        let n = total / CONCURRENCY;
        tasks.spawn(async move {
            let mut lat = Duration::ZERO;
            for _ in 0..n {
                let t = Instant::now();
                let r = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("send");
                assert!(r.status().is_success());
                r.bytes().await.expect("body");
                lat += t.elapsed();
            }
            lat
        });
    }
    let mut lat = Duration::ZERO;
    while let Some(l) = tasks.join_next().await {
        lat += l.expect("task");
    }
    (
        total as f64 / start.elapsed().as_secs_f64(),
        lat / total as u32,
    )
}

fn main() {
    let total: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = SimConfig::default()
            .merged(&json!({"limits": {"reads_bucket": 1e9, "reads_per_s": 1e9}}))
            .expect("config");
        let sim = Simulator::start("127.0.0.1:0".parse().expect("addr"), cfg).await.expect("sim");
        let on = client(&sim, true);
        let off = client(&sim, false);
        on.ensure_resource_group("bench", "westeurope", &Default::default()).await.expect("rg");
        // Warm up connections and tokens.
        run_pipeline(&on, CONCURRENCY * 20).await;
        run_pipeline(&off, CONCURRENCY * 20).await;
        let id = sim.identity();
        let token: serde_json::Value = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).expect("ca"))
            .build()
            .expect("client")
            .post(format!("{}/{}/oauth2/v2.0/token", sim.base_url(), id.tenant_id))
            .form(&[
                ("client_id", id.client_id.as_str()),
                ("client_secret", id.client_secret.as_str()),
                ("grant_type", "client_credentials"),
                ("scope", "https://management.azure.com/.default"),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let token = token["access_token"].as_str().expect("access_token").to_owned();
        run_raw(&sim, &token, CONCURRENCY * 20).await;

        println!("{total} GETs, {CONCURRENCY} concurrent callers, simulator on loopback (HTTPS)");
        println!("{:<28} {:>12} {:>16}", "", "requests/s", "mean latency");
        let mut rows = Vec::new();
        for round in 0..3 {
            let raw = run_raw(&sim, &token, total).await;
            let gov_on = run_pipeline(&on, total).await;
            let gov_off = run_pipeline(&off, total).await;
            rows.push((raw, gov_on, gov_off));
            let _ = round;
        }
        // Report the median round by governor-on throughput.
        rows.sort_by(|a, b| a.1.0.total_cmp(&b.1.0));
        let (raw, gov_on, gov_off) = rows[1];
        for (name, (rps, lat)) in [("bare reqwest", raw), ("pipeline, governor on", gov_on), ("pipeline, governor off", gov_off)] {
            println!("{name:<28} {rps:>12.0} {:>13.0} µs", lat.as_secs_f64() * 1e6);
        }
        println!(
            "pipeline overhead per request: {:.0} µs with the governor, {:.0} µs without (latency over bare reqwest)",
            (gov_on.1.as_secs_f64() - raw.1.as_secs_f64()) * 1e6,
            (gov_off.1.as_secs_f64() - raw.1.as_secs_f64()) * 1e6
        );
    });
}
