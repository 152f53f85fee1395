//! `blocked`: issue 13's missing-subnet case measured with the daemon's defaults. The
//! configuration names a subnet that does not exist (`[azure] ensure_network = false`,
//! `subnet_id` in a resource group nobody made) and leaves `[controller]
//! error_backoff_max_seconds` at its default (900 s). The admin runs
//! `renderburst pool scale POOL TARGET --wait` (the CLI, as a child process) and the scenario
//! records:
//!
//! - the simulator's VM PUTs (`/_sim/stats`, `by_type`) at 150 s and at the end of M minutes,
//!   and when each one came (the retry schedule as seen by ARM);
//! - how long until the pool shows a `Blocked` condition, and the condition;
//! - how long until `pool scale --wait` exits, its exit code and what it said;
//! - the events the daemon wrote in those minutes (all, and its `arm.error`s), and the node
//!   names its failed creates used (names burned);
//!
//! then the admin creates the subnet (through ARM, as `az network vnet create` would) and
//! scales again (an admin's change retries at once), and the scenario records how long until
//! the pool runs TARGET VMs and `Blocked` is gone.
//!
//! `--check` fails the run (exit 1) when the Must-hold does not: more than 12 VM PUTs
//! in the first 150 s, no `Blocked` condition, `--wait` not failing within a minute, or the
//! pool not converging once the subnet exists.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::harness::{self, ADMIN_TOKEN, World};
use crate::report::{Row, Table, num};

const POOL: &str = "maya";
/// The Must-hold's window and bound.
pub const WINDOW_S: u64 = 150;
pub const MAX_PUTS_IN_WINDOW: u64 = 12;
/// `--wait` must fail within this (the Must-hold: "within a minute").
const WAIT_FAIL_BOUND_S: f64 = 60.0;
const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
/// Where the admin's network lives: another resource group than the daemon's.
const NET_RG: &str = "studio-net";
const VNET: &str = "studio-vnet";
const SUBNET: &str = "render-nodes";
/// The daemon's default `[azure] location` (the bench's configuration names none).
const LOCATION: &str = "westeurope";
const RESOURCES_API: &str = "2025-04-01";
const NETWORK_API: &str = "2025-07-01";

pub struct Opts {
    pub minutes: f64,
    pub target: u64,
    pub check: bool,
}

fn vm_puts(st: &Value) -> u64 {
    st["by_type"][VM_TYPE]["PUT"].as_u64().unwrap_or(0)
}

fn blocked_condition(pool: &Value) -> Option<Value> {
    pool["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Blocked")
        .cloned()
}

pub async fn run(renderburst: std::path::PathBuf, o: &Opts) -> anyhow::Result<Value> {
    let t_start = Instant::now();
    let mut w = World::start(renderburst, "blocked").await?;
    let sub = w.sim.identity().subscription_id.clone();
    let location = LOCATION;
    let subnet_id = format!(
        "/subscriptions/{sub}/resourceGroups/{NET_RG}/providers/Microsoft.Network/virtualNetworks/{VNET}/subnets/{SUBNET}"
    );
    // The daemon's resource group exists (an admin made it); the configured subnet does not.
    w.arm_put(
        &format!("/subscriptions/{sub}/resourceGroups/bench?api-version={RESOURCES_API}"),
        json!({"location": location}),
    )
    .await?;
    w.subnet_id = Some(subnet_id.clone());
    w.start_daemon().await?;
    w.create_pool(POOL, o.target as usize).await?;

    let token_file = w.dir.join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n"))?;
    let before = w.stats().await?;
    let puts0 = vm_puts(&before);
    let t0 = Instant::now();
    // The admin's command: scale and wait.
    let mut cli = tokio::process::Command::new(w.renderburst())
        .args(["pool", "scale", POOL, &o.target.to_string(), "--wait"])
        .args(["--timeout", "300", "--api", &w.api, "--token-file"])
        .arg(&token_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run renderburst pool scale --wait")?;
    let mut cli_out = cli.stdout.take();
    let mut cli_err = cli.stderr.take();
    let read_out = tokio::spawn(async move { read_all(&mut cli_out).await });
    let read_err = tokio::spawn(async move { read_all(&mut cli_err).await });

    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let window = Duration::from_secs(WINDOW_S).min(total);
    let mut blocked: Option<(f64, Value)> = None;
    let mut wait_exit: Option<(f64, i32)> = None;
    let mut puts_window: Option<u64> = None;
    // (seconds since the scale, VM PUTs so far) whenever the count moved.
    let mut put_times: Vec<(f64, u64)> = Vec::new();
    let mut last_puts = 0u64;
    let mut next_note = Duration::from_secs(60);
    loop {
        let elapsed = t0.elapsed();
        let st = w.stats().await?;
        let puts = vm_puts(&st) - puts0;
        if puts != last_puts {
            put_times.push((elapsed.as_secs_f64(), puts));
            last_puts = puts;
        }
        if puts_window.is_none() && elapsed >= window {
            puts_window = Some(puts);
        }
        if blocked.is_none() {
            let p = w
                .call(reqwest::Method::GET, &format!("/v1/pools/{POOL}"), None)
                .await?;
            if let Some(c) = blocked_condition(&p) {
                blocked = Some((elapsed.as_secs_f64(), c));
            }
        }
        if wait_exit.is_none()
            && let Some(status) = cli.try_wait()?
        {
            wait_exit = Some((elapsed.as_secs_f64(), status.code().unwrap_or(-1)));
        }
        if elapsed >= total && puts_window.is_some() {
            break;
        }
        if elapsed >= next_note {
            eprintln!(
                "  {:>4.0} s: {puts} VM PUTs, Blocked {}, --wait {}",
                elapsed.as_secs_f64(),
                blocked
                    .as_ref()
                    .map_or("not yet".into(), |(s, _)| format!("after {s:.1} s")),
                wait_exit.map_or("still waiting".into(), |(s, c)| format!(
                    "exited {c} after {s:.1} s"
                )),
            );
            next_note += Duration::from_secs(60);
        }
        // Fine-grained while things happen, then idle.
        let every = if blocked.is_some() && wait_exit.is_some() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(200)
        };
        tokio::time::sleep(every).await;
    }
    if wait_exit.is_none() {
        // Still waiting after the whole run (its own timeout is 300 s): stop it.
        let _ = cli.start_kill();
    }
    let _ = cli.wait().await;
    let wait_stdout = read_out.await.unwrap_or_default();
    let wait_stderr = read_err.await.unwrap_or_default();
    let after = w.stats().await?;
    let puts_total = vm_puts(&after) - puts0;
    let events = w.all_events().await?;
    let kinds = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
    let mut names: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "arm.error" && e["data"]["action"] == "create")
        .filter_map(|e| e["node"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();

    // The admin creates the subnet and scales again.
    eprintln!("blocked: creating the subnet, scaling again ...");
    w.arm_put(
        &format!("/subscriptions/{sub}/resourceGroups/{NET_RG}?api-version={RESOURCES_API}"),
        json!({"location": location}),
    )
    .await?;
    w.arm_put(
        &format!(
            "/subscriptions/{sub}/resourceGroups/{NET_RG}/providers/Microsoft.Network/virtualNetworks/{VNET}?api-version={NETWORK_API}"
        ),
        json!({"location": location, "properties": {
            "addressSpace": {"addressPrefixes": ["10.80.0.0/16"]},
            "subnets": [{"name": SUBNET, "properties": {"addressPrefix": "10.80.0.0/18"}}]}}),
    )
    .await?;
    let c0 = Instant::now();
    w.call(
        reqwest::Method::POST,
        &format!("/v1/pools/{POOL}/scale"),
        Some(json!({"target": o.target})),
    )
    .await?;
    let mut converge_s = None;
    let mut unblocked_s = None;
    let deadline = Duration::from_secs(300);
    while c0.elapsed() < deadline && (converge_s.is_none() || unblocked_s.is_none()) {
        let st = w.stats().await?;
        if converge_s.is_none() && harness::power(&st, "running") == o.target {
            converge_s = Some(c0.elapsed().as_secs_f64());
        }
        if unblocked_s.is_none() {
            let p = w
                .call(reqwest::Method::GET, &format!("/v1/pools/{POOL}"), None)
                .await?;
            if blocked_condition(&p).is_none() {
                unblocked_s = Some(c0.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = w.stats().await?;
    let puts_to_converge = vm_puts(&end) - vm_puts(&after);
    let usage = w.daemon_usage().ok();
    let wall_s = t_start.elapsed().as_secs_f64();

    let mut violations = Vec::new();
    let puts_window = puts_window.unwrap_or(puts_total);
    if window.as_secs() >= WINDOW_S && puts_window > MAX_PUTS_IN_WINDOW {
        violations.push(format!(
            "{puts_window} VM PUTs in the first {WINDOW_S} s (at most {MAX_PUTS_IN_WINDOW})"
        ));
    }
    match &blocked {
        None => violations.push("the pool never showed a Blocked condition".into()),
        Some((_, c))
            if !c["message"]
                .as_str()
                .unwrap_or_default()
                .contains("InvalidResourceReference") =>
        {
            violations.push(format!(
                "the Blocked condition does not name the error: {c}"
            ));
        }
        Some(_) => {}
    }
    match wait_exit {
        Some((s, code)) if code != 0 && s <= WAIT_FAIL_BOUND_S => {}
        Some((s, code)) => violations.push(format!(
            "pool scale --wait exited {code} after {s:.1} s (expected non-zero within {WAIT_FAIL_BOUND_S} s)"
        )),
        None => violations.push("pool scale --wait never exited".into()),
    }
    if converge_s.is_none() {
        violations.push(format!(
            "the pool did not converge to {} VMs within {} s of the subnet's creation",
            o.target,
            deadline.as_secs()
        ));
    }
    if unblocked_s.is_none() {
        violations.push("Blocked did not clear once the subnet existed".into());
    }
    if !violations.is_empty() {
        eprintln!("daemon log tail:\n{}", w.log_tail());
    }
    w.stop().await;
    Ok(json!({
        "scenario": "blocked",
        "vms": o.target,
        "wall_s": wall_s,
        "lower_bound_s": null,
        "ratio": null,
        "arm_requests": harness::by_class(&end, &before),
        "throttled_429": harness::throttled(&end, &before),
        "minutes": o.minutes,
        "target": o.target,
        "error_backoff_max_seconds": 900,
        "window_s": window.as_secs(),
        "vm_puts_window": puts_window,
        "vm_puts_total": puts_total,
        "put_times_s": put_times.iter().map(|(s, n)| json!([ (s * 10.0).round() / 10.0, n])).collect::<Vec<_>>(),
        "blocked_s": blocked.as_ref().map(|(s, _)| *s),
        "blocked_condition": blocked.map(|(_, c)| c),
        "wait_exit_code": wait_exit.map(|(_, c)| c),
        "wait_fail_s": wait_exit.map(|(s, _)| s),
        "wait_stdout": wait_stdout.trim(),
        "wait_stderr": last_line(&wait_stderr),
        "events": events.len(),
        "arm_error_events": kinds("arm.error"),
        "blocked_events": kinds("pool.blocked"),
        "names_used": names,
        "converge_s": converge_s,
        "unblocked_s": unblocked_s,
        "vm_puts_to_converge": puts_to_converge,
        "cpu_s": usage.map(|u| u.cpu_s),
        "peak_rss_mib": usage.map(|u| u.peak_rss_mib),
        "check": o.check,
        "violations": violations,
    }))
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut Option<R>) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = String::new();
    if let Some(r) = r.as_mut() {
        let _ = r.read_to_string(&mut s).await;
    }
    s
}

/// What the CLI said last (a progress line per change comes before the error).
fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

pub fn table(v: &Value) -> Table {
    let mut notes = vec![
        format!(
            "VM PUTs over time (s, total): {}",
            v["put_times_s"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}:{}", p[0], p[1]))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        format!(
            "Blocked: {}",
            v["blocked_condition"]["message"].as_str().unwrap_or("-")
        ),
        format!(
            "pool scale --wait exited {} and said: {}",
            v["wait_exit_code"],
            v["wait_stderr"].as_str().unwrap_or_default()
        ),
        format!(
            "events written: {} ({} arm.error, {} pool.blocked); names the failed creates used: {}",
            v["events"],
            v["arm_error_events"],
            v["blocked_events"],
            v["names_used"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        format!(
            "after the subnet was created: {} VM PUTs to converge, Blocked cleared after {} s",
            v["vm_puts_to_converge"],
            num(&v["unblocked_s"], 1)
        ),
    ];
    let violations: Vec<String> = v["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| format!("VIOLATION: {}", x.as_str().unwrap_or_default()))
        .collect();
    if violations.is_empty() {
        notes.push(format!(
            "Must-hold: ok (at most {MAX_PUTS_IN_WINDOW} VM PUTs in {WINDOW_S} s, Blocked with the code, \
             --wait fails within {WAIT_FAIL_BOUND_S} s, converges once the subnet exists)"
        ));
    }
    notes.extend(violations);
    Table {
        title: format!(
            "blocked: a missing subnet, target {}, {} min, default backoff cap (900 s)",
            v["target"], v["minutes"]
        ),
        header: vec![
            "PUTs first 150 s",
            "PUTs total",
            "events",
            "Blocked after s",
            "--wait fails after s",
            "converge s",
        ],
        rows: vec![Row(vec![
            v["vm_puts_window"].to_string(),
            v["vm_puts_total"].to_string(),
            v["events"].to_string(),
            num(&v["blocked_s"], 1),
            num(&v["wait_fail_s"], 1),
            num(&v["converge_s"], 1),
        ])],
        notes,
    }
}
