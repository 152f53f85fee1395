//! `throttle`: a pool scaled 0 → N and back to 0 against a subscription whose ARM write bucket
//! is far smaller than Azure's default (another tool writing on the same subscription, or a
//! lower limit), without telling the daemon: it must learn the bucket from the
//! `x-ms-ratelimit-remaining-subscription-writes` headers instead of bouncing off it.
//!
//! The simulator's bucket is set through `PUT /_sim/config` (`limits.writes_bucket`,
//! `limits.writes_per_s`) before the daemon starts; the daemon's own configuration keeps
//! Azure's published defaults. Reported: 429s over the whole run (start-up included, from
//! `/_sim/stats`), wall time against the lower bound of the real bucket (the formula of
//! [`converge::lower_bound`]), and what the daemon's governor believes about the write bucket
//! at the end (`/v1/status`).

use serde_json::{Value, json};

use crate::converge::{self, Bucket, COMPUTE_DELETE_VM, COMPUTE_PUT_VM};
use crate::harness::{self, VM_CREATE_MS, VM_DEALLOCATE_MS, World};
use crate::report::{Table, num};

/// The bucket of the case: 5 burst, 4 per second. Creates (PUT) and deallocations
/// (POST) both draw on it.
pub const TIGHT_WRITES: Bucket = Bucket {
    burst: 5.0,
    per_s: 4.0,
};

pub fn lower_bound_up(n: u64, writes: Bucket) -> f64 {
    converge::lower_bound(n, &[writes, COMPUTE_PUT_VM], VM_CREATE_MS as f64 / 1000.0)
}

pub fn lower_bound_down(n: u64, writes: Bucket) -> f64 {
    converge::lower_bound(
        n,
        &[writes, COMPUTE_DELETE_VM],
        VM_DEALLOCATE_MS as f64 / 1000.0,
    )
}

/// The governor's view of one class in `/v1/status` (`controller.arm_governor.classes`).
fn governor_class(status: &Value, name: &str) -> Value {
    status["controller"]["arm_governor"]["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

pub async fn run(renderburst: std::path::PathBuf, n: u64, writes: Bucket) -> anyhow::Result<Value> {
    let mut w = World::start(renderburst, "throttle").await?;
    w.put_sim_config(
        json!({"limits": {"writes_bucket": writes.burst, "writes_per_s": writes.per_s}}),
    )
    .await?;
    let start = w.stats().await?;
    w.start_daemon().await?;
    w.create_pool("bench", n as usize).await?;
    let bounds = (lower_bound_up(n, writes), lower_bound_down(n, writes));
    let r = converge::up_and_down(&w, n, writes, bounds).await?;
    let status = w
        .call(reqwest::Method::GET, "/v1/status", None)
        .await
        .unwrap_or(Value::Null);
    let usage = w.daemon_usage()?;
    w.stop().await;

    let learned = governor_class(&status, "writes");
    let counts = r.counts();
    let wall = r.up_s + r.down_s;
    let lower = bounds.0 + bounds.1;
    Ok(json!({
        "scenario": "throttle",
        "vms": n,
        "bucket": {"burst": writes.burst, "per_s": writes.per_s},
        "wall_s": wall,
        "lower_bound_s": lower,
        "ratio": wall / lower,
        "arm_requests": counts,
        "arm_requests_per_vm": converge::per_vm(&counts, n),
        // Every 429 the simulator answered since before the daemon started: its start-up
        // writes draw on the same small bucket.
        "throttled_429": harness::throttled(&r.after_down, &start),
        "throttled_429_startup": harness::throttled(&r.before, &start),
        "cpu_s": usage.cpu_s,
        "peak_rss_mib": usage.peak_rss_mib,
        "refill_wait_s": r.refill_wait_s,
        "governor_writes": {
            "capacity": learned["capacity"],
            "refill_per_s": learned["refill_per_s"],
            "learned_capacity": learned["learned_capacity"],
            "learned_refill_per_s": learned["learned_refill_per_s"],
            "throttled_total": learned["throttled_total"],
        },
        "phases": r.phases(n, bounds),
    }))
}

pub fn table(v: &Value) -> Table {
    let n = v["vms"].as_u64().unwrap_or(0);
    let g = &v["governor_writes"];
    Table {
        title: format!(
            "throttle: 0 -> {n} VMs and back, ARM write bucket {} burst + {}/s (the daemon not told)",
            num(&v["bucket"]["burst"], 0),
            num(&v["bucket"]["per_s"], 1)
        ),
        header: converge::PHASE_HEADER.to_vec(),
        rows: converge::phase_rows(v, n),
        notes: vec![
            format!(
                "429s over the whole run: {} (start-up: {}); daemon: {} CPU s, peak RSS {} MiB",
                v["throttled_429"],
                v["throttled_429_startup"],
                num(&v["cpu_s"], 2),
                num(&v["peak_rss_mib"], 1)
            ),
            format!(
                "the governor's write bucket at the end: capacity {}, refill {}/s (learned: {}, {}/s)",
                num(&g["capacity"], 1),
                num(&g["refill_per_s"], 2),
                num(&g["learned_capacity"], 1),
                num(&g["learned_refill_per_s"], 2)
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_of_the_tight_bucket() {
        // (40 − 5) / 4 + 0.8 up, + 0.5 down.
        assert!((lower_bound_up(40, TIGHT_WRITES) - 9.55).abs() < 1e-9);
        assert!((lower_bound_down(40, TIGHT_WRITES) - 9.25).abs() < 1e-9);
        // Under the burst: one latency.
        assert!((lower_bound_up(5, TIGHT_WRITES) - 0.8).abs() < 1e-9);
    }
}
