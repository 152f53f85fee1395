//! `restart`: the daemon SIGKILLed with N VMs (default 2,000) running under management and
//! started again on the same database: ARM requests until `/readyz` answers 200, 429s in that
//! time, and reads against the pages an activation lists (two paged lists per activation —
//! the resource group's resources and the subscription's VM power states — of
//! `ceil(N / page size)` pages each).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{self, World};
use crate::report::{Row, Table, num};

/// Paged list calls per activation (see ARCHITECTURE.md: resource-group list, subscription
/// `statusOnly` list).
pub const LISTS_PER_ACTIVATION: u64 = 2;

pub async fn run(renderburst: std::path::PathBuf, n: u64) -> anyhow::Result<Value> {
    let mut w = World::start(renderburst, "restart").await?;
    w.start_daemon().await?;
    w.create_pool("bench", n as usize).await?;
    // No simulator call builds VMs in bulk, so the daemon scales up (Azure's limits apply:
    // about (N − 200) / 10 s).
    w.call(
        reqwest::Method::POST,
        "/v1/pools/bench/scale",
        Some(json!({"target": n})),
    )
    .await?;
    let deadline = Duration::from_secs_f64(crate::converge::lower_bound_up(n) * 10.0 + 60.0);
    let start = w.stats().await?;
    let up = w
        .wait_for("scale up", Duration::from_millis(250), deadline, |st| {
            harness::power(st, "running") == n
        })
        .await?;
    // Steady, and ARM's read bucket full again (250 at 25/s: at most 10 s for what the scale-up
    // took) so the restart starts from the state a long-running daemon leaves.
    let reads = harness::by_class(&up, &start)["read"].as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs_f64(
        (reads as f64).min(250.0) / 25.0 + 2.0,
    ))
    .await;
    let page_size = w
        .sim_http
        .get(format!("{}/_sim/config", w.sim.base_url()))
        .send()
        .await?
        .json::<Value>()
        .await?["paging"]["page_size"]
        .as_u64()
        .unwrap_or(50)
        .max(1);

    w.kill_daemon()?;
    let before = w.stats().await?;
    let to_ready = w.start_daemon().await?;
    let after = w.stats().await?;
    let usage = w.daemon_usage()?;
    w.stop().await;

    let counts = harness::by_class(&after, &before);
    let reads = counts["read"].as_u64().unwrap_or(0);
    let pages = n.div_ceil(page_size) * LISTS_PER_ACTIVATION;
    Ok(json!({
        "scenario": "restart",
        "vms": n,
        "wall_s": to_ready.as_secs_f64(),
        "lower_bound_s": null,
        "ratio": null,
        "arm_requests": counts,
        "throttled_429": harness::throttled(&after, &before),
        "cpu_s": usage.cpu_s,
        "peak_rss_mib": usage.peak_rss_mib,
        "page_size": page_size,
        "pages_expected": pages,
        "reads_per_page": reads as f64 / pages as f64,
        "gets_by_type": harness::gets_by_type(&after, &before)
            .into_iter()
            .map(|(t, n)| json!([t, n]))
            .collect::<Vec<_>>(),
    }))
}

pub fn table(v: &Value) -> Table {
    Table {
        title: format!(
            "restart: daemon SIGKILLed with {} VMs running, started again until /readyz is 200",
            v["vms"]
        ),
        header: vec![
            "to ready s",
            "reads",
            "writes",
            "deletes",
            "pages expected",
            "reads/page",
            "429s",
            "daemon CPU s",
            "peak RSS MiB",
        ],
        rows: vec![Row(vec![
            num(&v["wall_s"], 2),
            v["arm_requests"]["read"].to_string(),
            v["arm_requests"]["write"].to_string(),
            v["arm_requests"]["delete"].to_string(),
            v["pages_expected"].to_string(),
            num(&v["reads_per_page"], 2),
            v["throttled_429"].to_string(),
            num(&v["cpu_s"], 2),
            num(&v["peak_rss_mib"], 1),
        ])],
        notes: vec![
            format!(
                "pages expected: ceil({} VMs / page size {}) x {} lists per activation",
                v["vms"], v["page_size"], LISTS_PER_ACTIVATION
            ),
            format!("GETs by type: {}", v["gets_by_type"]),
        ],
    }
}
