//! `reaction`: with a pool at a steady state (node requests holding `steady` VMs running, no
//! ARM write for a while), the time from `POST /v1/pools/{name}/requests` for one more node to
//! the first ARM write the simulator receives. Measured with the simulator's
//! `last_write_unix_ms` (the wall clock of its latest write), polled every 2 ms: when more
//! than one write landed between two polls the time is of the latest of them, so a
//! measurement can only err long, by at most the poll interval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde_json::{Value, json};

use crate::harness::{self, World};
use crate::report::{Row, Table, num};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits until `running` VMs run and no ARM write came for `quiet`.
async fn settle(w: &World, running: u64, quiet: Duration) -> anyhow::Result<Value> {
    let quiet_ms = quiet.as_millis() as u64;
    w.wait_for(
        "steady state",
        Duration::from_millis(50),
        Duration::from_secs(120),
        |st| {
            harness::power(st, "running") == running
                && st["last_write_unix_ms"]
                    .as_u64()
                    .is_some_and(|t| unix_ms().saturating_sub(t) >= quiet_ms)
        },
    )
    .await
}

pub async fn run(
    renderburst: std::path::PathBuf,
    steady: u64,
    repeats: u64,
) -> anyhow::Result<Value> {
    let mut w = World::start(renderburst, "reaction").await?;
    w.start_daemon().await?;
    let max = steady + repeats;
    w.create_pool("react", max as usize).await?;
    let request = |count: u64| {
        w.call(
            reqwest::Method::POST,
            "/v1/pools/react/requests",
            Some(json!({"count": count, "ttl_seconds": 3600, "requester": "bench"})),
        )
    };
    if steady > 0 {
        request(steady).await?;
    }
    let before = w.stats().await?;
    let mut times_ms = Vec::new();
    for i in 0..repeats {
        settle(&w, steady + i, Duration::from_secs(1)).await?;
        let t0 = unix_ms();
        request(1).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let first = loop {
            let st = w.stats().await?;
            if let Some(t) = st["last_write_unix_ms"].as_u64().filter(|t| *t >= t0) {
                break t;
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "no ARM write within 30 s of a node request; daemon log:\n{}",
                    w.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        times_ms.push(first - t0);
    }
    let after = settle(&w, steady + repeats, Duration::from_secs(1)).await?;
    let usage = w.daemon_usage()?;
    w.stop().await;

    let mut sorted = times_ms.clone();
    sorted.sort_unstable();
    let median_s = sorted.get(sorted.len() / 2).map(|ms| *ms as f64 / 1000.0);
    let max_s = sorted.last().map(|ms| *ms as f64 / 1000.0);
    Ok(json!({
        "scenario": "reaction",
        "vms": steady + repeats,
        "repeats": repeats,
        "wall_s": median_s,
        "median_s": median_s,
        "max_s": max_s,
        "samples_ms": times_ms,
        "lower_bound_s": null,
        "ratio": null,
        "arm_requests": harness::by_class(&after, &before),
        "throttled_429": harness::throttled(&after, &before),
        "cpu_s": usage.cpu_s,
        "peak_rss_mib": usage.peak_rss_mib,
    }))
}

pub fn table(v: &Value) -> Table {
    Table {
        title: format!(
            "reaction: node request -> first ARM write, {} requests of 1 node on a steady pool",
            v["repeats"]
        ),
        header: vec![
            "median ms",
            "max ms",
            "429s",
            "daemon CPU s",
            "peak RSS MiB",
        ],
        rows: vec![Row(vec![
            num(&(v["median_s"].as_f64().map(|s| s * 1000.0).into()), 0),
            num(&(v["max_s"].as_f64().map(|s| s * 1000.0).into()), 0),
            v["throttled_429"].to_string(),
            num(&v["cpu_s"], 2),
            num(&v["peak_rss_mib"], 1),
        ])],
        notes: vec![format!("samples ms: {}", v["samples_ms"])],
    }
}
