//! Every scenario of `renderburst-bench` at a small size, through the binary with `--json`:
//! the daemon runs as a child process against the in-process simulator, and each JSON line
//! has the documented fields with sensible values. Sizes are small so this stays well under
//! 30 s; the real numbers come from release runs (README, "Benchmarks").

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The daemon binary, built (or found up to date) by the same cargo that runs this test, so
/// the benchmark never measures a stale daemon. Built as `cargo test --workspace` builds it
/// (every member's tests selected, so dev-dependencies' features are unified the same way:
/// tokio's `test-util`): under the README's test command this finds the binary that command
/// just built, where `cargo build -p renderburst` compiled a second copy of tokio and of
/// everything above it (about 100 s of a clean CI run). Run alone (`cargo test -p
/// renderburst-bench`), it builds the workspace's tests first.
fn renderburst() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bench = PathBuf::from(env!("CARGO_BIN_EXE_renderburst-bench"));
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--workspace", "--tests", "--bins"])
            .args(if bench.parent().is_some_and(|d| d.ends_with("release")) {
                &["--release"][..]
            } else {
                &[][..]
            })
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build --workspace --tests --bins failed"
        );
        let bin = bench.with_file_name(format!("renderburst{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
}

fn bench(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_renderburst-bench"))
        .arg("--json")
        .arg("--renderburst")
        .arg(renderburst())
        .args(args)
        .output()
        .expect("run renderburst-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "no JSON for {args:?}; stderr:\n{stderr}");
    lines
}

fn has_common_fields(v: &Value) {
    for k in [
        "scenario",
        "vms",
        "wall_s",
        "lower_bound_s",
        "ratio",
        "arm_requests",
        "throttled_429",
        "cpu_s",
        "peak_rss_mib",
    ] {
        assert!(v.get(k).is_some(), "field {k} missing: {v}");
    }
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number: {v}"))
}

/// The daemon's own numbers, read from /proc: plausible for a live process.
fn daemon_usage_is_plausible(v: &Value) {
    let cpu = f(v, "cpu_s");
    assert!(cpu > 0.0 && cpu < 60.0, "cpu_s {cpu}: {v}");
    let rss = f(v, "peak_rss_mib");
    assert!(rss > 1.0 && rss < 4096.0, "peak_rss_mib {rss}: {v}");
}

#[test]
fn converge_small_pools() {
    let lines = bench(&["converge", "--vms", "4,8"]);
    assert_eq!(lines.len(), 2, "one line per size: {lines:?}");
    for (v, n) in lines.iter().zip([4, 8]) {
        has_common_fields(v);
        assert_eq!(v["scenario"], "converge");
        assert_eq!(v["vms"], n);
        let ratio = f(v, "ratio");
        assert!(ratio.is_finite() && ratio >= 1.0, "ratio {ratio}: {v}");
        // Under every bucket's burst the bound is one create and one deallocation latency.
        assert!((f(v, "lower_bound_s") - 1.3).abs() < 1e-9, "{v}");
        assert!((f(v, "wall_s") / f(v, "lower_bound_s") - ratio).abs() < 1e-9);
        // One create (PUT) and one deallocate (POST) per VM at least; no deletes.
        let writes = v["arm_requests"]["write"].as_u64().expect("write count");
        assert!(writes >= 2 * n, "{v}");
        assert_eq!(v["arm_requests"]["delete"], 0, "{v}");
        assert_eq!(v["throttled_429"], 0, "{v}");
        daemon_usage_is_plausible(v);
        assert_eq!(v["phases"].as_array().map(Vec::len), Some(2), "{v}");
    }
}

/// The same through Compute Schedule: one request each way for 6 VMs (the ARM writes), the
/// bulk bound, and nothing created twice or left behind.
#[test]
fn converge_in_bulk_small() {
    let v = &bench(&["converge", "--vms", "6", "--bulk", "on"])[0];
    has_common_fields(v);
    assert_eq!(v["bulk"], true, "{v}");
    // Under every bucket's burst: the service's second, then one create and one deallocation.
    assert!((f(v, "lower_bound_s") - 3.3).abs() < 1e-9, "{v}");
    assert!((f(v, "per_vm_lower_bound_s") - 1.3).abs() < 1e-9, "{v}");
    let counts = &v["arm_requests"];
    assert!(
        counts["write"].as_u64().unwrap_or(0) < 12,
        "not one write per VM: {v}"
    );
    assert_eq!(v["vm_creates"], 6, "{v}");
    assert_eq!(v["vm_creates_repeated"], serde_json::json!({}), "{v}");
    assert_eq!(v["orphans"], serde_json::json!([]), "{v}");
    assert_eq!(v["throttled_429"], 0, "{v}");
}

#[test]
fn throttle_small_pool() {
    let v = &bench(&["throttle", "--vms", "8"])[0];
    has_common_fields(v);
    assert_eq!(v["scenario"], "throttle");
    assert_eq!(v["vms"], 8);
    assert_eq!(v["bucket"]["burst"], 5.0, "{v}");
    assert_eq!(v["bucket"]["per_s"], 4.0, "{v}");
    // The tight bucket's bound: (8 − 5) / 4 + 0.8 up, (8 − 5) / 4 + 0.5 down.
    assert!((f(v, "lower_bound_s") - 2.8).abs() < 1e-9, "{v}");
    let ratio = f(v, "ratio");
    assert!(ratio.is_finite() && ratio >= 1.0, "ratio {ratio}: {v}");
    assert!((f(v, "wall_s") / f(v, "lower_bound_s") - ratio).abs() < 1e-9);
    let writes = v["arm_requests"]["write"].as_u64().expect("write count");
    assert!(writes >= 16, "{v}");
    assert!(
        v["throttled_429"].is_u64() && v["throttled_429_startup"].is_u64(),
        "{v}"
    );
    // What the daemon's governor believes about the write bucket is reported.
    assert!(v["governor_writes"].is_object(), "{v}");
    daemon_usage_is_plausible(v);
    assert_eq!(v["phases"].as_array().map(Vec::len), Some(2), "{v}");
}

#[test]
fn reaction_and_restart_small() {
    let r = &bench(&["reaction", "--steady", "2", "--repeats", "3"])[0];
    has_common_fields(r);
    assert_eq!(r["scenario"], "reaction");
    assert_eq!(r["samples_ms"].as_array().map(Vec::len), Some(3), "{r}");
    let (median, max) = (f(r, "median_s"), f(r, "max_s"));
    assert!(median >= 0.0 && median <= max && max < 30.0, "{r}");
    assert!(r["ratio"].is_null() && r["lower_bound_s"].is_null(), "{r}");
    daemon_usage_is_plausible(r);

    let s = &bench(&["restart", "--vms", "12"])[0];
    has_common_fields(s);
    assert_eq!(s["scenario"], "restart");
    assert_eq!(s["vms"], 12);
    assert_eq!(s["pages_expected"], 2, "{s}");
    let reads = s["arm_requests"]["read"].as_u64().expect("read count");
    assert!(
        reads >= 2,
        "a restarted daemon lists Azure before it is ready: {s}"
    );
    assert_eq!(s["throttled_429"], 0, "{s}");
    assert!(f(s, "wall_s") > 0.0, "{s}");
    daemon_usage_is_plausible(s);
}

#[test]
fn plan_small_farm() {
    let v = &bench(&[
        "plan",
        "--pools",
        "4",
        "--vms-per-pool",
        "200",
        "--runs",
        "3",
    ])[0];
    has_common_fields(v);
    assert_eq!(v["scenario"], "plan");
    assert_eq!(v["vms"], 800);
    assert!(
        f(v, "wall_s") > 0.0 && f(v, "per_pool_median_s") > 0.0,
        "{v}"
    );
    assert!(
        f(v, "per_pool_median_s") <= f(v, "per_pool_slowest_s"),
        "{v}"
    );
    assert!(v["actions_per_round"].as_u64().unwrap() > 0, "{v}");
    assert!(v["cpu_s"].is_null() && v["arm_requests"].is_null(), "{v}");
}

#[test]
fn missing_daemon_binary_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_renderburst-bench"))
        .args([
            "converge",
            "--vms",
            "1",
            "--renderburst",
            "/nonexistent/renderburst",
        ])
        .output()
        .expect("run renderburst-bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/renderburst"), "{stderr}");
}

fn chaos_common(v: &Value, scenario: &str) {
    assert_eq!(v["scenario"], scenario, "{v}");
    assert!(f(v, "wall_s") > 0.0, "{v}");
    assert_eq!(v["violations"], serde_json::json!([]), "{v}");
    let actions = v["actions"].as_object().expect("actions");
    // The run's first pass takes every kind of action, however slow the machine.
    for k in [
        "scale",
        "request",
        "release",
        "faults_on",
        "capacity",
        "evict",
    ] {
        assert!(actions.get(k).is_some(), "no {k} action: {v}");
    }
    assert!(v["vm_creates"].as_u64().unwrap() > 0, "{v}");
    // Which requests a fault hits is the simulator's (unseeded) dice, so a quarter-minute
    // run may draw none; that the faults were switched on is in `actions`.
    assert!(v["faults_injected"].as_u64().is_some(), "{v}");
    for pool in ["chaos-a", "chaos-b"] {
        let p = &v["pools"][pool];
        assert!(p["desired"].as_u64().is_some(), "{v}");
        assert_eq!(p["desired"], p["running"], "{v}");
    }
}

/// A short chaos soak with a fixed seed: the audit finds nothing (the binary would exit 1
/// naming each violation, failing `bench`).
#[test]
fn chaos_short_soak_passes_the_audit() {
    let v = &bench(&["chaos", "--minutes", "0.25", "--seed", "8"])[0];
    chaos_common(v, "chaos");
    assert_eq!(v["restarts"], 0, "{v}");
    assert!(v["integrity_check"].is_null(), "{v}");
}

/// Two SIGKILLs during a short soak: the daemon restarts on the same database each time, the
/// audit finds nothing and SQLite's integrity check answers ok.
#[test]
fn crashloop_two_kills_passes_the_audit() {
    let v = &bench(&[
        "crashloop",
        "--kills",
        "2",
        "--minutes",
        "0.25",
        "--seed",
        "8",
    ])[0];
    chaos_common(v, "crashloop");
    assert_eq!(v["restarts"], 2, "{v}");
    assert_eq!(v["integrity_check"], "ok", "{v}");
}

/// The missing-subnet case for a quarter minute (too short for the 150 s window): Blocked
/// with the code, `pool scale --wait` fails with it, creates stay within the target's names,
/// and the pool converges once the subnet exists (`--check` would exit 1 otherwise).
#[test]
fn blocked_short_run_holds() {
    let v = &bench(&["blocked", "--minutes", "0.25", "--target", "3", "--check"])[0];
    has_common_fields(v);
    assert_eq!(v["scenario"], "blocked", "{v}");
    assert_eq!(v["violations"], serde_json::json!([]), "{v}");
    assert!(v["vm_puts_window"].as_u64().unwrap() >= 3, "{v}");
    assert!(
        v["blocked_condition"]["message"]
            .as_str()
            .unwrap()
            .starts_with("InvalidResourceReference"),
        "{v}"
    );
    assert_ne!(v["wait_exit_code"], 0, "{v}");
    assert_eq!(
        v["names_used"],
        serde_json::json!(["maya-00001", "maya-00002", "maya-00003"]),
        "{v}"
    );
    assert!(f(v, "converge_s") > 0.0, "{v}");
    daemon_usage_is_plausible(v);
}

#[test]
fn chaos_minutes_must_be_positive() {
    let out = Command::new(env!("CARGO_BIN_EXE_renderburst-bench"))
        .args(["chaos", "--minutes", "0"])
        .output()
        .expect("run renderburst-bench");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--minutes"), "{stderr}");
}
