//! `converge`: a pool scaled 0 → N and back to 0 against the simulator with Azure's request
//! limits; wall time ÷ lower bound, ARM requests per VM by class, 429s, daemon CPU and peak
//! RSS.
//!
//! Lower bound of a phase: for every bucket its operations draw on, max(0, operations −
//! burst) ÷ refill; the largest, plus one operation latency. Creates draw on ARM's
//! subscription writes (200 burst, 10/s) and Compute's PutVM bucket (1,500 burst, 500/min);
//! deallocations (POSTs) on ARM writes and Compute's DeleteVM bucket (same size). The bound
//! assumes full buckets, so the way back starts once the write bucket has refilled from the
//! way up.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, VM_CREATE_MS, VM_DEALLOCATE_MS, World};
use crate::report::{Row, Table, num};

/// A token bucket: burst and refill per second.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub burst: f64,
    pub per_s: f64,
}

pub const ARM_WRITES: Bucket = Bucket {
    burst: 200.0,
    per_s: 10.0,
};
pub const COMPUTE_PUT_VM: Bucket = Bucket {
    burst: 1500.0,
    per_s: 500.0 / 60.0,
};
pub const COMPUTE_DELETE_VM: Bucket = Bucket {
    burst: 1500.0,
    per_s: 500.0 / 60.0,
};

/// max over buckets of max(0, ops − burst) ÷ refill, plus one operation latency.
pub fn lower_bound(ops: u64, buckets: &[Bucket], latency_s: f64) -> f64 {
    buckets
        .iter()
        .map(|b| (ops as f64 - b.burst).max(0.0) / b.per_s)
        .fold(0.0, f64::max)
        + latency_s
}

pub fn lower_bound_up(n: u64) -> f64 {
    lower_bound(
        n,
        &[ARM_WRITES, COMPUTE_PUT_VM],
        VM_CREATE_MS as f64 / 1000.0,
    )
}

pub fn lower_bound_down(n: u64) -> f64 {
    lower_bound(
        n,
        &[ARM_WRITES, COMPUTE_DELETE_VM],
        VM_DEALLOCATE_MS as f64 / 1000.0,
    )
}

/// VMs per Compute Schedule request (docs/compute-schedule.md: 1-100 per request).
pub const BULK_PER_REQUEST: u64 = 100;

/// How long Compute Schedule waits before it starts an operation, as the simulator models
/// it (`compute_schedule.schedule_delay_ms`, default 1 s: live deadlines are about a second
/// after the request; docs/compute-schedule.md).
pub const BULK_SCHEDULE_DELAY_S: f64 = 1.0;

/// In bulk, ARM's write bucket sees one write per request (ceil(N / 100)) and Compute's
/// buckets one operation per VM (the simulator shares them with single writes), so:
/// max(ceil(N / 100) over ARM writes, N over Compute's bucket of the kind) + the service's
/// scheduling delay + one operation latency.
pub fn lower_bound_bulk(n: u64, compute: Bucket, latency_ms: u64) -> f64 {
    let requests = n.div_ceil(BULK_PER_REQUEST);
    let arm = (requests as f64 - ARM_WRITES.burst).max(0.0) / ARM_WRITES.per_s;
    let compute = (n as f64 - compute.burst).max(0.0) / compute.per_s;
    arm.max(compute) + BULK_SCHEDULE_DELAY_S + latency_ms as f64 / 1000.0
}

pub fn lower_bound_up_bulk(n: u64) -> f64 {
    lower_bound_bulk(n, COMPUTE_PUT_VM, VM_CREATE_MS)
}

pub fn lower_bound_down_bulk(n: u64) -> f64 {
    lower_bound_bulk(n, COMPUTE_DELETE_VM, VM_DEALLOCATE_MS)
}

fn per_vm(counts: &Value, n: u64) -> Value {
    let f = |k: &str| counts[k].as_u64().unwrap_or(0) as f64 / n.max(1) as f64;
    json!({"read": f("read"), "write": f("write"), "delete": f("delete")})
}

fn phase(name: &str, wall: f64, lower: f64, after: &Value, before: &Value, n: u64) -> Value {
    let counts = harness::by_class(after, before);
    json!({
        "phase": name,
        "wall_s": wall,
        "lower_bound_s": lower,
        "ratio": wall / lower,
        "arm_requests": counts,
        "arm_requests_per_vm": per_vm(&counts, n),
        "throttled_429": harness::throttled(after, before),
        "gets_by_type": harness::gets_by_type(after, before)
            .into_iter()
            .map(|(t, n)| json!([t, n]))
            .collect::<Vec<_>>(),
    })
}

pub async fn run(renderburst: std::path::PathBuf, n: u64, bulk: bool) -> anyhow::Result<Value> {
    let mut w = World::start(renderburst, "converge").await?;
    w.bulk = Some(if bulk { "always" } else { "off" });
    w.start_daemon().await?;
    let (bound_up, bound_down) = if bulk {
        (lower_bound_up_bulk(n), lower_bound_down_bulk(n))
    } else {
        (lower_bound_up(n), lower_bound_down(n))
    };
    w.create_pool("bench", n as usize).await?;
    // Generous deadlines: ten times the bound plus a minute.
    let deadline = |lb: f64| Duration::from_secs_f64(lb * 10.0 + 60.0);
    let poll = Duration::from_millis(100);

    let before = w.stats().await?;
    let t0 = Instant::now();
    w.call(
        reqwest::Method::POST,
        "/v1/pools/bench/scale",
        Some(json!({"target": n})),
    )
    .await?;
    let after_up = w
        .wait_for("0 -> N", poll, deadline(bound_up), |st| {
            harness::power(st, "running") == n
        })
        .await?;
    let up = t0.elapsed().as_secs_f64();

    // The bound assumes full buckets: wait until ARM's write bucket has refilled from what
    // the way up took from it (at most a full bucket, 20 s at 10/s), counted from the last
    // write of the way up.
    let taken = harness::writes(&after_up) - harness::writes(&before);
    let refill = (taken as f64).min(ARM_WRITES.burst) / ARM_WRITES.per_s + 1.0;
    tokio::time::sleep(Duration::from_secs_f64(refill)).await;

    let mid = w.stats().await?;
    let t1 = Instant::now();
    w.call(
        reqwest::Method::POST,
        "/v1/pools/bench/scale",
        Some(json!({"target": 0})),
    )
    .await?;
    let after_down = w
        .wait_for("N -> 0", poll, deadline(bound_down), |st| {
            harness::power(st, "deallocated") == n
        })
        .await?;
    let down = t1.elapsed().as_secs_f64();
    let usage = w.daemon_usage()?;
    let orphans = crate::chaos::leftovers(&crate::chaos::resources(&w).await?, &["bench"]);
    w.stop().await;

    let mut phases = vec![
        phase("up", up, bound_up, &after_up, &before, n),
        phase("down", down, bound_down, &after_down, &mid, n),
    ];
    for (p, per_vm) in phases
        .iter_mut()
        .zip([lower_bound_up(n), lower_bound_down(n)])
    {
        p["per_vm_lower_bound_s"] = json!(per_vm);
        p["ratio_to_per_vm_bound"] = json!(p["wall_s"].as_f64().unwrap_or(0.0) / per_vm);
    }
    let mut counts = harness::by_class(&after_up, &before);
    let down_counts = harness::by_class(&after_down, &mid);
    for k in ["read", "write", "delete"] {
        counts[k] = json!(counts[k].as_u64().unwrap_or(0) + down_counts[k].as_u64().unwrap_or(0));
    }
    let wall = up + down;
    let lower = bound_up + bound_down;
    let per_vm_lower = lower_bound_up(n) + lower_bound_down(n);
    Ok(json!({
        "scenario": "converge",
        "vms": n,
        "bulk": bulk,
        "per_vm_lower_bound_s": per_vm_lower,
        "ratio_to_per_vm_bound": wall / per_vm_lower,
        "vm_creates": after_down["vm_creates"].clone(),
        "vm_creates_repeated": after_down["vm_creates_repeated"].clone(),
        "orphans": orphans,
        "wall_s": wall,
        "lower_bound_s": lower,
        "ratio": wall / lower,
        "arm_requests": counts,
        "arm_requests_per_vm": per_vm(&counts, n),
        "throttled_429": harness::throttled(&after_up, &before) + harness::throttled(&after_down, &mid),
        "cpu_s": usage.cpu_s,
        "peak_rss_mib": usage.peak_rss_mib,
        "refill_wait_s": refill,
        "phases": phases,
    }))
}

pub fn table(v: &Value) -> Table {
    let n = v["vms"].as_u64().unwrap_or(0);
    let mut rows = Vec::new();
    let row = |label: &str, p: &Value| {
        Row(vec![
            label.to_owned(),
            num(&p["wall_s"], 1),
            num(&p["lower_bound_s"], 1),
            num(&p["ratio"], 2),
            num(&p["arm_requests_per_vm"]["read"], 2),
            num(&p["arm_requests_per_vm"]["write"], 2),
            num(&p["arm_requests_per_vm"]["delete"], 2),
            p["throttled_429"].to_string(),
        ])
    };
    for p in v["phases"].as_array().into_iter().flatten() {
        let label = match p["phase"].as_str() {
            Some("up") => format!("0 -> {n}"),
            _ => format!("{n} -> 0"),
        };
        rows.push(row(&label, p));
    }
    rows.push(row("total", v));
    let mut notes = vec![format!(
        "daemon: {} CPU s, peak RSS {} MiB; write bucket refill wait before the way back: {} s",
        num(&v["cpu_s"], 2),
        num(&v["peak_rss_mib"], 1),
        num(&v["refill_wait_s"], 1)
    )];
    if v["bulk"] == true {
        notes.push(format!(
            "bulk: {} s against the per-VM bound {} s (ratio {})",
            num(&v["wall_s"], 1),
            num(&v["per_vm_lower_bound_s"], 1),
            num(&v["ratio_to_per_vm_bound"], 2)
        ));
    }
    let c = &v["careful_script"];
    if c.is_object() {
        notes.push(format!(
            "careful SDK script, same phases: {} s (ratio {}: up {}, down {}), reads/VM {}, 429s {}; renderburst / script {}",
            num(&c["wall_s"], 2),
            num(&c["ratio"], 2),
            num(&c["up_ratio"], 2),
            num(&c["down_ratio"], 2),
            num(&c["arm_requests_per_vm"]["read"], 2),
            c["throttled_429"],
            num(&v["vs_careful_script"], 2)
        ));
    }
    for p in v["phases"].as_array().into_iter().flatten() {
        notes.push(format!(
            "{} GETs by type: {}",
            p["phase"], p["gets_by_type"]
        ));
    }
    Table {
        title: format!("converge: 0 -> {n} VMs and back, against azure-sim with Azure's limits"),
        header: vec![
            "phase",
            "wall s",
            "lower bound s",
            "ratio",
            "read/VM",
            "write/VM",
            "delete/VM",
            "429s",
        ],
        rows,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_the_largest_bucket() {
        // Under every burst: one latency.
        assert!((lower_bound_up(100) - 0.8).abs() < 1e-9);
        assert!((lower_bound_down(100) - 0.5).abs() < 1e-9);
        // ARM writes dominate: (500 − 200) / 10 + 0.8.
        assert!((lower_bound_up(500) - 30.8).abs() < 1e-9);
        // (2000 − 200) / 10 = 180 beats Compute's (2000 − 1500) / (500/60) = 60.
        assert!((lower_bound_up(2000) - 180.8).abs() < 1e-9);
        // At 10,000 Compute's bucket dominates: (10000 − 1500) / (500/60) = 1020 s against
        // ARM's (10000 − 200) / 10 = 980 s.
        assert!((lower_bound_up(10_000) - 1020.8).abs() < 1e-6);
        // In bulk, 2,000 creates are 20 ARM writes: Compute's PutVM bucket sets the pace,
        // (2000 − 1500) / (500/60) = 60 s, plus the service's 1 s and one create.
        assert!((lower_bound_up_bulk(2000) - 61.8).abs() < 1e-9);
        assert!((lower_bound_down_bulk(2000) - 61.5).abs() < 1e-9);
        assert!((lower_bound_up_bulk(100) - 1.8).abs() < 1e-9);
    }
}
