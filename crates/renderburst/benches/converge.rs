//! The controller scaling a pool 0 → N (default 500) and back to 0 against the simulator with
//! Azure's real request limits, reporting wall time ÷ lower bound and ARM requests per VM.
//!
//! Lower bound of a scale-up: for every bucket a create draws on (ARM writes: 200 burst,
//! 10/s; Compute's create bucket: 1,500 burst, 500/min), max(0, creates − burst) ÷ refill;
//! the largest, plus one VM-create latency.
//!
//! Run: `cargo bench -p renderburst --bench converge` (env CONVERGE_VMS=500).

use std::time::{Duration, Instant};

use azure_sim::{SimConfig, Simulator};
use renderburst::config::Config;
use serde_json::{Value, json};

const VM_CREATE_MS: u64 = 800;

async fn census(http: &reqwest::Client, sim: &str) -> (usize, usize, usize) {
    let all: Value = http
        .get(format!("{sim}/_sim/resources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vms: Vec<&Value> = all["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachines")
        .collect();
    let power = |v: &Value| {
        v["properties"]["instanceView"]["statuses"]
            .as_array()
            .and_then(|s| {
                s.iter().find_map(|s| {
                    s["code"]
                        .as_str()?
                        .strip_prefix("PowerState/")
                        .map(str::to_owned)
                })
            })
    };
    let running = vms
        .iter()
        .filter(|v| power(v).as_deref() == Some("running"))
        .count();
    let deallocated = vms
        .iter()
        .filter(|v| power(v).as_deref() == Some("deallocated"))
        .count();
    (vms.len(), running, deallocated)
}

async fn stats(http: &reqwest::Client, sim: &str) -> Value {
    http.get(format!("{sim}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn delta(after: &Value, before: &Value, ptr: &str) -> u64 {
    after.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
        - before.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("CONVERGE_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let cfg = SimConfig::default()
            .merged(&json!({"latency_ms": {"vm_create": VM_CREATE_MS, "vm_deallocate": 500, "vm_start": 500}}))
            .unwrap();
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
        let dir = std::env::temp_dir().join(format!("rb-converge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), sim.ca_pem()).unwrap();
        let id = sim.identity();
        let toml = format!(
            "[store]\nurl = \"sqlite://{db}\"\n[auth]\nadmin_token = \"bench-admin-token-0123456789\"\n[azure]\nsubscription_id = \"{s}\"\ntenant_id = \"{t}\"\nclient_id = \"{c}\"\nclient_secret = \"{x}\"\narm_endpoint = \"{u}\"\nauthority_host = \"{u}\"\nca_cert_file = \"{ca}\"\nresource_group = \"bench\"\nensure_network = true\n",
            db = dir.join("bench.db").display(), s = id.subscription_id, t = id.tenant_id, c = id.client_id,
            x = id.client_secret, u = sim.base_url(), ca = dir.join("ca.pem").display()
        );
        std::fs::write(dir.join("bench.toml"), toml).unwrap();
        let cfg = Config::load(Some(&dir.join("bench.toml"))).unwrap();
        let daemon = renderburst::serve::start(cfg, Some("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let api = format!("http://{}", daemon.api_addr);
        let api_http = reqwest::Client::new();
        let call = |method: reqwest::Method, path: &str, body: Value| {
            api_http.request(method, format!("{api}{path}")).bearer_auth("bench-admin-token-0123456789").json(&body).send()
        };
        let r = call(reqwest::Method::POST, "/v1/pools", json!({"name": "bench", "mode": "vm", "vm_sizes": ["Standard_D4s_v5"],
            "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": n, "idle_timeout_seconds": 0})).await.unwrap();
        assert!(r.status().is_success());
        let base = sim.base_url().to_owned();

        let before = stats(&http, &base).await;
        let t0 = Instant::now();
        assert!(call(reqwest::Method::POST, "/v1/pools/bench/scale", json!({"target": n})).await.unwrap().status().is_success());
        loop {
            let (total, running, _) = census(&http, &base).await;
            if running == n {
                break;
            }
            if t0.elapsed().as_secs().is_multiple_of(10) {
                eprintln!("{:>4.0} s: {total} VMs, {running} running", t0.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let up = t0.elapsed().as_secs_f64();
        let after_up = stats(&http, &base).await;

        // The lower bound assumes full buckets; the scale-up emptied ARM's write bucket
        // (200 tokens at 10/s), so let it refill before timing the way back.
        tokio::time::sleep(Duration::from_secs(21)).await;
        let t1 = Instant::now();
        assert!(call(reqwest::Method::POST, "/v1/pools/bench/scale", json!({"target": 0})).await.unwrap().status().is_success());
        loop {
            let (_, running, deallocated) = census(&http, &base).await;
            if deallocated == n {
                break;
            }
            if t1.elapsed().as_secs().is_multiple_of(10) {
                eprintln!("{:>4.0} s: {running} running, {deallocated} deallocated", t1.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let down = t1.elapsed().as_secs_f64();
        let after_down = stats(&http, &base).await;

        let writes_bound = (n as f64 - 200.0).max(0.0) / 10.0;
        let compute_bound = (n as f64 - 1500.0).max(0.0) / (500.0 / 60.0);
        let lower_up = writes_bound.max(compute_bound) + VM_CREATE_MS as f64 / 1000.0;
        // Deallocations draw on ARM writes (POST) and Compute's delete bucket.
        let lower_down = (n as f64 - 200.0).max(0.0) / 10.0 + 0.5;
        let per_vm = |a: &Value, b: &Value, m: &str| delta(a, b, &format!("/requests/{m}")) as f64 / n as f64;
        println!("scale 0 -> {n} VMs and back to 0, against azure-sim with Azure's request limits");
        println!("{:<12} {:>8} {:>14} {:>7} {:>10} {:>10} {:>10} {:>6}", "phase", "wall s", "lower bound s", "ratio", "GET/VM", "PUT/VM", "POST/VM", "429s");
        for (phase, wall, lower, a, b) in [("0 -> N", up, lower_up, &after_up, &before), ("N -> 0", down, lower_down, &after_down, &after_up)] {
            println!(
                "{phase:<12} {wall:>8.1} {lower:>14.1} {:>7.2} {:>10.2} {:>10.2} {:>10.2} {:>6}",
                wall / lower,
                per_vm(a, b, "GET"),
                per_vm(a, b, "PUT"),
                per_vm(a, b, "POST"),
                delta(a, b, "/throttled_429"),
            );
        }
        // Where the reads went, by resource type (operation polls are their own type).
        for (phase, a, b) in [("0 -> N", &after_up, &before), ("N -> 0", &after_down, &after_up)] {
            let mut by_type: Vec<(String, u64)> = a["by_type"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(ty, m)| (ty.clone(), m["GET"].as_u64().unwrap_or(0) - b["by_type"][ty]["GET"].as_u64().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect();
            by_type.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            println!("{phase}: GETs by type: {by_type:?}");
        }
        let status: Value = call(reqwest::Method::GET, "/v1/status", json!({})).await.unwrap().json().await.unwrap();
        println!("activations: {}", status["controller"]["reconciler"]["number"]);
        daemon.stop().await;
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}
