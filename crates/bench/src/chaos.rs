//! `chaos` and `crashloop`: for M minutes, random actions against the daemon's API and the
//! simulator (pool scale changes, node requests made and released, Spot evictions,
//! out-of-band VM deletions through ARM, injected faults and capacity exhaustion), with
//! `crashloop` also SIGKILLing the daemon K times at random moments and starting it again on
//! the same database. Then quiesce (faults off, capacity restored), wait for convergence and
//! audit:
//!
//! - **desired == actual**: for every pool, the VMs running in the simulator with the pool's
//!   tag, and the daemon's own `status.running`, equal `status.desired`; nothing left creating,
//!   starting, deallocating, deleting or failed.
//! - **no orphans**: no VM without a live pool's tag, no VM in provisioning state `Failed`, no
//!   NIC without a VM, no disk without a VM (`managedBy`).
//! - **no duplicate creates**: the simulator's `vm_creates_repeated` (VM names PUT-created again
//!   whose previous create had succeeded) is empty.
//! - **every ARM error seen is in the event log**: an error is *seen* by the daemon when a
//!   poll of a failed asynchronous operation answered the failure (the simulator's
//!   `failures_reported`, by code, counted once per operation). For every code, the event log
//!   holds at least as many `arm.error` events with that `data.code`. Transient request
//!   errors (5xx, 429, dropped connections) that the client's retries absorbed are not errors
//!   the daemon saw; those it gave up on are logged too but cannot be told apart by the
//!   simulator, so they only add events.
//! - `crashloop` only: `PRAGMA integrity_check` answers `ok` on the database, opened read-only
//!   after the daemon stopped.
//!
//! Capacity exhaustion hits the pools' preferred size only; their second size always has
//! room (see `FALLBACK`). Out-of-band deletions are made only while no fault is set, so they cannot fail and every
//! failed operation is the daemon's own. The seed drives the bench's choices; the simulator's
//! own dice (which request a fault hits) are not seeded, so two runs with one seed differ in
//! detail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::harness::World;
use crate::report::{Row, Table, num};

/// The pools' preferred size: the one capacity exhaustion hits.
const SIZE: &str = "Standard_D4s_v5";
/// Their fallback size, never exhausted: the daemon avoids a size that failed for capacity
/// for an hour (`UnavailableReason::Capacity`), so a pool with no other size could not
/// converge within the audit's deadline once capacity is back.
const FALLBACK: &str = "Standard_D2s_v5";
/// Pools and their `max`: small, so a short run converges quickly. The second is Spot.
const POOLS: [(&str, u64); 2] = [("chaos-a", 8), ("chaos-b", 5)];
const COMPUTE_API: &str = "2025-04-01";

pub struct Opts {
    pub minutes: f64,
    pub seed: u64,
    /// SIGKILLs of the daemon (0: `chaos`).
    pub kills: u32,
    /// Every write through Compute Schedule (`[controller] bulk = "always"`); else the
    /// daemon's default.
    pub bulk: bool,
}

#[derive(Default)]
struct Tally {
    actions: BTreeMap<&'static str, u64>,
    api_errors: u64,
    restarts: u32,
}

pub async fn run(renderburst: std::path::PathBuf, o: &Opts) -> anyhow::Result<Value> {
    let scenario = if o.kills > 0 { "crashloop" } else { "chaos" };
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let mut w = World::start(renderburst, scenario).await?;
    if o.bulk {
        w.bulk = Some("always");
    }
    w.start_daemon().await?;
    // `chaos-a` regular, `chaos-b` Spot (what `/_sim/evict` evicts).
    for ((name, max), priority) in POOLS.into_iter().zip(["regular", "spot"]) {
        w.call(
            reqwest::Method::POST,
            "/v1/pools",
            Some(
                json!({"name": name, "mode": "vm", "vm_sizes": [SIZE, FALLBACK],
                        "priority": priority,
                        "image": "Canonical:ubuntu-24_04-lts:server:latest",
                        "max": max, "idle_timeout_seconds": 0}),
            ),
        )
        .await?;
    }
    let chaos_for = Duration::from_secs_f64(o.minutes * 60.0);
    let mut kills: Vec<Duration> = (0..o.kills)
        .map(|_| chaos_for.mul_f64(0.05 + 0.9 * rng.f64()))
        .collect();
    kills.sort();
    kills.reverse(); // popped from the end, earliest first
    let mut t = Tally::default();
    let mut requests: Vec<String> = Vec::new();
    let mut faults_on = false;
    let mut token: Option<String> = None;
    // A first pass takes every kind of action once, in this order, so that even a short run
    // on a slow machine (each action waits for the API, a restart for the daemon) exercises
    // them all; the seed's dice take over after it. The roll picks the `match` arm below.
    let mut first_pass: Vec<u32> = vec![
        25, // request
        0,  // scale
        55, // evict
        65, // out-of-band delete (faults still off)
        87, // capacity exhaustion
        75, // faults on
        42, // release
    ];
    first_pass.reverse(); // popped from the end
    let start = Instant::now();
    // Time alone does not end the run: every kill happens and the first pass completes.
    while start.elapsed() < chaos_for || !kills.is_empty() || !first_pass.is_empty() {
        if kills.last().is_some_and(|k| start.elapsed() >= *k) {
            kills.pop();
            w.kill_daemon()?;
            // Down for a moment, as a crashing service is before systemd restarts it.
            tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
            w.start_daemon().await?;
            t.restarts += 1;
        }
        let (pool, max) = POOLS[rng.usize(..POOLS.len())];
        let forced = first_pass.pop();
        let roll = forced.unwrap_or_else(|| rng.u32(0..100));
        let what = match roll {
            0..25 => {
                let target = rng.u64(0..=max);
                let ok = w
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/pools/{pool}/scale"),
                        Some(json!({"target": target})),
                    )
                    .await;
                t.api_errors += u64::from(ok.is_err());
                "scale"
            }
            // At most three live requests, so desired follows the scale target too rather
            // than sitting at max.
            25..55 if requests.len() >= 3 || (42..55).contains(&roll) && !requests.is_empty() => {
                let id = requests.swap_remove(rng.usize(..requests.len()));
                let ok = w
                    .call(reqwest::Method::DELETE, &format!("/v1/requests/{id}"), None)
                    .await;
                t.api_errors += u64::from(ok.is_err());
                "release"
            }
            25..42 => {
                let r = w
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/pools/{pool}/requests"),
                        Some(json!({"count": rng.u64(1..=3), "ttl_seconds": 3600,
                                    "requester": "chaos"})),
                    )
                    .await;
                match r.ok().and_then(|v| v["id"].as_str().map(str::to_owned)) {
                    Some(id) => requests.push(id),
                    None => t.api_errors += 1,
                }
                "request"
            }
            55..65 => {
                sim_post(&w, "/_sim/evict", json!({"count": 1})).await?;
                "evict"
            }
            65..75 if !faults_on => {
                if delete_random_vm(&w, &mut rng, &mut token).await? {
                    "oob_delete"
                } else {
                    "oob_delete_none"
                }
            }
            75..87 => {
                faults_on = !faults_on;
                let patch = if faults_on {
                    json!({"faults": {
                        "http_5xx_rate": 0.05 * rng.f64(),
                        "http_429_rate": 0.05 * rng.f64(),
                        "drop_rate": 0.03 * rng.f64(),
                        "operation_fail_rate": 0.15 * rng.f64()}})
                } else {
                    faults_off()
                };
                sim_put_config(&w, patch).await?;
                if faults_on { "faults_on" } else { "faults_off" }
            }
            87..95 => {
                // Capacity exhaustion: room for a few VMs of the size at once, or plenty.
                let cap = if forced.is_some() || rng.bool() {
                    rng.u64(0..=4)
                } else {
                    1_000_000
                };
                sim_put_config(&w, json!({"capacity": {SIZE: cap}})).await?;
                "capacity"
            }
            _ => "idle",
        };
        *t.actions.entry(what).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(50..400))).await;
    }
    // Quiesce.
    sim_put_config(&w, faults_off()).await?;
    sim_put_config(&w, json!({"capacity": {SIZE: 1_000_000}})).await?;
    let chaos_s = start.elapsed().as_secs_f64();
    let q0 = Instant::now();
    let deadline = Duration::from_secs(300);
    let mut next_note = Duration::from_secs(10);
    let mut violations = loop {
        let v = audit(&w).await?;
        if v.is_empty() || q0.elapsed() > deadline {
            break v;
        }
        if q0.elapsed() >= next_note {
            eprintln!(
                "  {:>4.0} s quiesced: {} left, e.g. {}",
                q0.elapsed().as_secs_f64(),
                v.len(),
                v[0]
            );
            next_note += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let converge_s = q0.elapsed().as_secs_f64();
    // The event log is read after convergence: every failure polled by then is in it or never.
    violations.extend(audit_events(&w).await?);
    let stats = w.stats().await?;
    let mut pools = serde_json::Map::new();
    for (name, _) in POOLS {
        let p = w
            .call(reqwest::Method::GET, &format!("/v1/pools/{name}"), None)
            .await?;
        pools.insert(
            name.into(),
            json!({"desired": p["status"]["desired"], "running": p["status"]["running"]}),
        );
    }
    let mut integrity = Value::Null;
    if o.kills > 0 {
        w.kill_daemon()?;
        let answer = integrity_check(&w.dir.join("bench.db")).await?;
        if answer != ["ok"] {
            violations.push(format!("PRAGMA integrity_check: {}", answer.join("; ")));
        }
        integrity = json!(answer.join("; "));
    }
    if !violations.is_empty() {
        eprintln!("daemon log tail:\n{}", w.log_tail());
    }
    w.stop().await;
    Ok(json!({
        "scenario": scenario,
        "seed": o.seed,
        "minutes": o.minutes,
        "kills": o.kills,
        "restarts": t.restarts,
        "wall_s": t0.elapsed().as_secs_f64(),
        "chaos_s": chaos_s,
        "converge_s": converge_s,
        "pools": pools,
        "actions": t.actions,
        "api_errors": t.api_errors,
        "faults_injected": stats["faults_injected"],
        "throttled_429": stats["throttled_429"],
        // Compute's per-VM bucket of each operation group (12 burst, 4 a minute, as the
        // simulator models it) bounds this at 16: the most operations one VM was granted
        // within a minute by one group's bucket, and which VM and group.
        "vm_ops_per_minute_max": stats["vm_ops_per_minute_max"],
        "vm_ops_per_minute_max_vm": stats["vm_ops_per_minute_max_vm"],
        "operations_failed": stats["operations_failed"],
        "failures_reported": stats["failures_reported"],
        "evictions": stats["evictions"],
        "vm_creates": stats["vm_creates"],
        "arm_requests": crate::harness::by_class(&stats, &json!({})),
        "integrity_check": integrity,
        "violations": violations,
    }))
}

fn faults_off() -> Value {
    json!({"faults": {"http_5xx_rate": 0.0, "http_429_rate": 0.0, "drop_rate": 0.0,
                      "operation_fail_rate": 0.0}})
}

async fn sim_post(w: &World, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = w
        .sim_http
        .post(format!("{}{path}", w.sim.base_url()))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    anyhow::ensure!(r.status().is_success(), "POST {path}: {}", r.status());
    Ok(r.json().await?)
}

async fn sim_put_config(w: &World, patch: Value) -> anyhow::Result<()> {
    let r = w
        .sim_http
        .put(format!("{}/_sim/config", w.sim.base_url()))
        .json(&patch)
        .send()
        .await
        .context("PUT /_sim/config")?;
    anyhow::ensure!(
        r.status().is_success(),
        "PUT /_sim/config {patch}: {}",
        r.status()
    );
    Ok(())
}

pub async fn resources(w: &World) -> anyhow::Result<Vec<Value>> {
    let r: Value = w
        .sim_http
        .get(format!("{}/_sim/resources", w.sim.base_url()))
        .send()
        .await
        .context("GET /_sim/resources")?
        .json()
        .await?;
    Ok(r["resources"].as_array().cloned().unwrap_or_default())
}

fn is_type(r: &Value, t: &str) -> bool {
    r["type"]
        .as_str()
        .is_some_and(|x| x.eq_ignore_ascii_case(t))
}

fn pool_tag(r: &Value) -> Option<&str> {
    r["tags"][rb_core::TAG_POOL].as_str()
}

/// Deletes one of the pools' VMs behind the daemon's back, through ARM; false if none.
async fn delete_random_vm(
    w: &World,
    rng: &mut fastrand::Rng,
    token: &mut Option<String>,
) -> anyhow::Result<bool> {
    let vms: Vec<String> = resources(w)
        .await?
        .into_iter()
        .filter(|r| is_type(r, "Microsoft.Compute/virtualMachines") && pool_tag(r).is_some())
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    if vms.is_empty() {
        return Ok(false);
    }
    if token.is_none() {
        *token = Some(w.arm_token().await?);
    }
    let id = &vms[rng.usize(..vms.len())];
    let r = w
        .sim_http
        .delete(format!(
            "{}{id}?api-version={COMPUTE_API}",
            w.sim.base_url()
        ))
        .bearer_auth(token.as_deref().unwrap_or_default())
        .send()
        .await
        .context("out-of-band DELETE")?;
    // 202/200/204 deleted; 404 gone already; 409 busy with another operation; 429 the VM's
    // (or the subscription's) bucket is empty, as any client of the subscription may be
    // told: that outsider tries later, it is not the daemon's fault.
    anyhow::ensure!(
        r.status().is_success() || matches!(r.status().as_u16(), 404 | 409 | 429),
        "out-of-band DELETE {id}: {}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    Ok(true)
}

/// Every audit but the event log's: the violations found now (empty when converged).
async fn audit(w: &World) -> anyhow::Result<Vec<String>> {
    let mut v = Vec::new();
    let res = resources(w).await?;
    let pools: Vec<&str> = POOLS.iter().map(|(n, _)| *n).collect();
    for pool in &pools {
        let p = w
            .call(reqwest::Method::GET, &format!("/v1/pools/{pool}"), None)
            .await?;
        let s = &p["status"];
        let desired = s["desired"].as_u64().unwrap_or(u64::MAX);
        let running_sim = res
            .iter()
            .filter(|r| is_type(r, "Microsoft.Compute/virtualMachines"))
            .filter(|r| pool_tag(r) == Some(pool))
            .filter(|r| power_of(r) == Some("running"))
            .count() as u64;
        if running_sim != desired {
            v.push(format!(
                "pool {pool}: desired {desired}, {running_sim} VMs running in Azure"
            ));
        }
        if s["running"].as_u64() != Some(desired) {
            v.push(format!(
                "pool {pool}: desired {desired}, the daemon counts {} running",
                s["running"]
            ));
        }
        for k in ["creating", "starting", "deallocating", "deleting", "failed"] {
            if s[k].as_u64().unwrap_or(0) > 0 {
                v.push(format!("pool {pool}: {} {k} after quiescing", s[k]));
            }
        }
    }
    v.extend(leftovers(&res, &pools));
    let st = w.stats().await?;
    for (name, n) in st["vm_creates_repeated"].as_object().into_iter().flatten() {
        v.push(format!("VM {name} created {n} times"));
    }
    Ok(v)
}

/// What the simulator's resources hold that no pool of `pools` wants: VMs without a live
/// pool's tag or left `Failed`, NICs without a VM, disks nobody manages.
pub fn leftovers(res: &[Value], pools: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for r in res {
        let name = r["name"].as_str().unwrap_or("?");
        if is_type(r, "Microsoft.Compute/virtualMachines") {
            match pool_tag(r) {
                Some(p) if pools.contains(&p) => {}
                other => v.push(format!("orphaned VM {name} (pool tag {other:?})")),
            }
            if r["properties"]["provisioningState"] == "Failed" {
                v.push(format!("VM {name} left in provisioning state Failed"));
            }
        } else if is_type(r, "Microsoft.Network/networkInterfaces") {
            if r["properties"]["virtualMachine"].is_null() {
                v.push(format!("orphaned NIC {name}"));
            }
        } else if is_type(r, "Microsoft.Compute/disks") && r["managedBy"].is_null() {
            v.push(format!("orphaned disk {name}"));
        }
    }
    v
}

fn power_of(vm: &Value) -> Option<&str> {
    vm["properties"]["instanceView"]["statuses"]
        .as_array()?
        .iter()
        .filter_map(|s| s["code"].as_str())
        .find_map(|c| c.strip_prefix("PowerState/"))
}

/// Failed operations the daemon polled, by code, against `arm.error` events by `data.code`.
async fn audit_events(w: &World) -> anyhow::Result<Vec<String>> {
    let mut logged: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = 0i64;
    loop {
        let page = w
            .call(
                reqwest::Method::GET,
                &format!("/v1/events?after={after}&limit=1000"),
                None,
            )
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            if e["kind"] == "arm.error"
                && let Some(code) = e["data"]["code"].as_str()
            {
                *logged.entry(code.to_owned()).or_default() += 1;
            }
        }
        let next = page["next_after"].as_i64().unwrap_or(after);
        if events.is_empty() || next == after {
            break;
        }
        after = next;
    }
    let st = w.stats().await?;
    let mut v = Vec::new();
    for (code, n) in st["failures_reported"].as_object().into_iter().flatten() {
        let n = n.as_u64().unwrap_or(0);
        let got = logged.get(code).copied().unwrap_or(0);
        if got < n {
            v.push(format!(
                "ARM error {code}: the daemon saw {n} failed operations, the event log has {got} arm.error events"
            ));
        }
    }
    Ok(v)
}

async fn integrity_check(db: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open {} read-only", db.display()))?;
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .context("PRAGMA integrity_check")?;
    Ok(rows)
}

pub fn table(v: &Value) -> Table {
    let actions = v["actions"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let violations: Vec<String> = v["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| format!("VIOLATION: {}", x.as_str().unwrap_or_default()))
        .collect();
    let mut notes = vec![
        format!("actions: {actions}"),
        format!("pools at the end: {}", v["pools"]),
        format!(
            "failed operations the daemon polled, by code: {}",
            v["failures_reported"]
        ),
        format!(
            "most operations one VM was granted within a minute by one group's bucket (at most 16): {} ({})",
            v["vm_ops_per_minute_max"], v["vm_ops_per_minute_max_vm"]
        ),
    ];
    if violations.is_empty() {
        notes.push("audit: ok (desired == actual, no orphans, no duplicate creates, every ARM error seen is logged)".into());
    }
    notes.extend(violations);
    Table {
        title: format!(
            "{}: {} min of chaos, seed {}, {} kills",
            v["scenario"].as_str().unwrap_or_default(),
            v["minutes"],
            v["seed"],
            v["kills"]
        ),
        header: vec![
            "wall s",
            "converge s",
            "restarts",
            "faults",
            "429s",
            "ops failed",
            "VM creates",
            "API errors",
            "integrity",
            "violations",
        ],
        rows: vec![Row(vec![
            num(&v["wall_s"], 1),
            num(&v["converge_s"], 1),
            v["restarts"].to_string(),
            v["faults_injected"].to_string(),
            v["throttled_429"].to_string(),
            v["operations_failed"].to_string(),
            v["vm_creates"].to_string(),
            v["api_errors"].to_string(),
            v["integrity_check"].as_str().unwrap_or("-").to_owned(),
            v["violations"].as_array().map_or(0, Vec::len).to_string(),
        ])],
        notes,
    }
}
