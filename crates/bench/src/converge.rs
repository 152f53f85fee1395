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

pub fn per_vm(counts: &Value, n: u64) -> Value {
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

/// What one way up (0 → N) and back (N → 0) measured: wall times and the simulator's stats
/// around each phase.
pub struct UpAndDown {
    pub up_s: f64,
    pub down_s: f64,
    pub before: Value,
    pub after_up: Value,
    pub mid: Value,
    pub after_down: Value,
    /// Seconds waited between the phases for the write bucket to refill.
    pub refill_wait_s: f64,
}

/// Scales the pool `bench` (created by the caller, daemon running) 0 → N, waits until
/// `writes` has refilled from what the way up took (the bounds assume full buckets), then
/// N → 0. `bounds` are the phases' lower bounds, for deadlines.
pub async fn up_and_down(
    w: &World,
    n: u64,
    writes: Bucket,
    bounds: (f64, f64),
) -> anyhow::Result<UpAndDown> {
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
        .wait_for("0 -> N", poll, deadline(bounds.0), |st| {
            harness::power(st, "running") == n
        })
        .await?;
    let up_s = t0.elapsed().as_secs_f64();

    // The bound assumes full buckets: wait until the write bucket has refilled from what
    // the way up took from it (at most a full bucket), counted from the last write of the
    // way up.
    let taken = harness::writes(&after_up) - harness::writes(&before);
    let refill_wait_s = (taken as f64).min(writes.burst) / writes.per_s + 1.0;
    tokio::time::sleep(Duration::from_secs_f64(refill_wait_s)).await;

    let mid = w.stats().await?;
    let t1 = Instant::now();
    w.call(
        reqwest::Method::POST,
        "/v1/pools/bench/scale",
        Some(json!({"target": 0})),
    )
    .await?;
    let after_down = w
        .wait_for("N -> 0", poll, deadline(bounds.1), |st| {
            harness::power(st, "deallocated") == n
        })
        .await?;
    Ok(UpAndDown {
        up_s,
        down_s: t1.elapsed().as_secs_f64(),
        before,
        after_up,
        mid,
        after_down,
        refill_wait_s,
    })
}

impl UpAndDown {
    /// The two phases, each against its bound.
    pub fn phases(&self, n: u64, bounds: (f64, f64)) -> Vec<Value> {
        vec![
            phase("up", self.up_s, bounds.0, &self.after_up, &self.before, n),
            phase(
                "down",
                self.down_s,
                bounds.1,
                &self.after_down,
                &self.mid,
                n,
            ),
        ]
    }

    /// ARM requests of both phases by class.
    pub fn counts(&self) -> Value {
        let mut counts = harness::by_class(&self.after_up, &self.before);
        let down = harness::by_class(&self.after_down, &self.mid);
        for k in ["read", "write", "delete"] {
            counts[k] = json!(counts[k].as_u64().unwrap_or(0) + down[k].as_u64().unwrap_or(0));
        }
        counts
    }

    /// 429s of both phases.
    pub fn throttled(&self) -> u64 {
        harness::throttled(&self.after_up, &self.before)
            + harness::throttled(&self.after_down, &self.mid)
    }
}

pub async fn run(renderburst: std::path::PathBuf, n: u64, bulk: bool) -> anyhow::Result<Value> {
    let mut w = World::start(renderburst, "converge").await?;
    w.bulk = Some(if bulk { "always" } else { "off" });
    w.start_daemon().await?;
    w.create_pool("bench", n as usize).await?;
    let per_vm_bounds = (lower_bound_up(n), lower_bound_down(n));
    let bounds = if bulk {
        (lower_bound_up_bulk(n), lower_bound_down_bulk(n))
    } else {
        per_vm_bounds
    };
    let r = up_and_down(&w, n, ARM_WRITES, bounds).await?;
    let usage = w.daemon_usage()?;
    let orphans = crate::chaos::leftovers(&crate::chaos::resources(&w).await?, &["bench"]);
    w.stop().await;

    let counts = r.counts();
    let wall = r.up_s + r.down_s;
    let lower = bounds.0 + bounds.1;
    let per_vm_lower = per_vm_bounds.0 + per_vm_bounds.1;
    let mut phases = r.phases(n, bounds);
    for (p, per_vm) in phases.iter_mut().zip([per_vm_bounds.0, per_vm_bounds.1]) {
        p["per_vm_lower_bound_s"] = json!(per_vm);
        p["ratio_to_per_vm_bound"] = json!(p["wall_s"].as_f64().unwrap_or(0.0) / per_vm);
    }
    Ok(json!({
        "scenario": "converge",
        "vms": n,
        "bulk": bulk,
        "wall_s": wall,
        "lower_bound_s": lower,
        "ratio": wall / lower,
        "per_vm_lower_bound_s": per_vm_lower,
        "ratio_to_per_vm_bound": wall / per_vm_lower,
        "arm_requests": counts,
        "arm_requests_per_vm": per_vm(&counts, n),
        "throttled_429": r.throttled(),
        "vm_creates": r.after_down["vm_creates"].clone(),
        "vm_creates_repeated": r.after_down["vm_creates_repeated"].clone(),
        "orphans": orphans,
        "cpu_s": usage.cpu_s,
        "peak_rss_mib": usage.peak_rss_mib,
        "refill_wait_s": r.refill_wait_s,
        "phases": phases,
    }))
}

/// The columns of [`phase_rows`].
pub const PHASE_HEADER: [&str; 8] = [
    "phase",
    "wall s",
    "lower bound s",
    "ratio",
    "read/VM",
    "write/VM",
    "delete/VM",
    "429s",
];

/// One row per phase of `v["phases"]` and a total row from `v` itself.
pub fn phase_rows(v: &Value, n: u64) -> Vec<Row> {
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
    let mut rows: Vec<Row> = v["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let label = match p["phase"].as_str() {
                Some("up") => format!("0 -> {n}"),
                _ => format!("{n} -> 0"),
            };
            row(&label, p)
        })
        .collect();
    rows.push(row("total", v));
    rows
}

pub fn table(v: &Value) -> Table {
    let n = v["vms"].as_u64().unwrap_or(0);
    let rows = phase_rows(v, n);
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
        header: PHASE_HEADER.to_vec(),
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
