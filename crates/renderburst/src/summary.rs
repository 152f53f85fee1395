//! Summaries for people of what the API answers: `renderburst status`, `pool show`, and the
//! few words a pool list says about what a pool is doing.
//!
//! Pure functions from the API's JSON to lines, so unit tests pin the wording; the client
//! fetches and prints. Conditions go through `output::condition`, which reads both of their
//! shapes.
//!
//! Over 600 lines: a fifth of it is the unit tests that pin the wording.

use serde_json::Value;

use crate::output::{self, Align, Table};

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Nodes of a pool that still exist in some state (what a deletion waits for).
pub fn nodes_left(status: &Value) -> u64 {
    [
        "running",
        "creating",
        "starting",
        "stopped",
        "deallocating",
        "deallocated",
        "deleting",
        "failed",
        "preempted",
    ]
    .iter()
    .map(|k| n(status, k))
    .sum()
}

/// What a pool is doing, in a few words: `steady`, `scaling up: 2 creating`,
/// `stuck at 16/20: NoCapacity`, `deleting: 3 nodes left`...
pub fn happening(pool: &Value) -> String {
    let s = &pool["status"];
    if pool["deleting"] == true {
        return format!("deleting: {} nodes left", nodes_left(s));
    }
    let desired = n(s, "desired");
    let running = n(s, "running");
    let coming = n(s, "creating") + n(s, "starting");
    let leaving = n(s, "deallocating") + n(s, "deleting");
    let mut parts = Vec::new();
    if coming > 0 {
        let mut what = Vec::new();
        for k in ["creating", "starting"] {
            if n(s, k) > 0 {
                what.push(format!("{} {k}", n(s, k)));
            }
        }
        parts.push(format!("scaling up: {}", what.join(", ")));
    } else if running < desired {
        let types = output::condition_types(s);
        if types == "-" {
            parts.push(format!("below desired at {running}/{desired}"));
        } else {
            parts.push(format!("stuck at {running}/{desired}: {types}"));
        }
    }
    if leaving > 0 {
        let mut what = Vec::new();
        for k in ["deallocating", "deleting"] {
            if n(s, k) > 0 {
                what.push(format!("{} {k}", n(s, k)));
            }
        }
        parts.push(format!("scaling down: {}", what.join(", ")));
    } else if coming == 0 && running > desired {
        parts.push(format!(
            "{} above desired (busy or not idle long enough)",
            running - desired
        ));
    }
    if n(s, "registering") > 0 {
        parts.push(format!("{} registering", n(s, "registering")));
    }
    if n(s, "failed") > 0 {
        parts.push(format!("{} failed", n(s, "failed")));
    }
    if parts.is_empty() {
        "steady".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A pool's last error on one line: `AllocationFailed: message (at 2026-...)`, or `None`.
pub fn last_error(status: &Value) -> Option<String> {
    let e = &status["last_error"];
    if e.is_null() {
        return None;
    }
    let code = e["code"].as_str().unwrap_or("error");
    let message = e["message"].as_str().unwrap_or("");
    let mut out = format!("{code}: {message}");
    match &e["at"] {
        Value::Null => {}
        Value::Number(t) if t.is_i64() => {
            out.push_str(&format!(
                " (at {})",
                unix_to_rfc3339(t.as_i64().unwrap_or(0))
            ));
        }
        at => out.push_str(&format!(" (at {})", output::time(at))),
    }
    Some(out)
}

/// Live requested nodes by pool, from `GET /v1/requests`.
pub fn requested_by_pool(requests: &Value) -> std::collections::BTreeMap<String, u64> {
    let mut by_pool = std::collections::BTreeMap::new();
    for r in requests["requests"].as_array().into_iter().flatten() {
        if r["state"].as_str().is_none_or(|s| s == "live")
            && let Some(p) = r["pool"].as_str()
        {
            *by_pool.entry(p.to_owned()).or_insert(0) += n(r, "count");
        }
    }
    by_pool
}

/// `renderburst pool list`: bounds, what renders (requested, ready), and conditions.
pub fn pool_table(pools: &Value, requested: &std::collections::BTreeMap<String, u64>) -> Table {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("MODE", Align::Left),
        ("MIN", Align::Right),
        ("MAX", Align::Right),
        ("TARGET", Align::Right),
        ("REQUESTED", Align::Right),
        ("DESIRED", Align::Right),
        ("RUNNING", Align::Right),
        ("READY", Align::Right),
        ("HAPPENING", Align::Left),
        ("CONDITIONS", Align::Left),
    ]);
    for p in pools["pools"].as_array().into_iter().flatten() {
        let s = &p["status"];
        let name = p["name"].as_str().unwrap_or("");
        t.row(vec![
            name.to_owned(),
            output::text(&p["mode"]),
            n(p, "min").to_string(),
            n(p, "max").to_string(),
            n(p, "target").to_string(),
            requested.get(name).copied().unwrap_or(0).to_string(),
            n(s, "desired").to_string(),
            n(s, "running").to_string(),
            n(s, "ready").to_string(),
            happening(p),
            output::condition_types(s),
        ]);
    }
    t
}

/// `renderburst pool show`: the pool, its nodes, why it is where it is, and the plan's next
/// steps (or why there are none while it is short).
pub fn pool_lines(pool: &Value, plan: &Value, requested: u64) -> Vec<String> {
    let s = &pool["status"];
    let name = pool["name"].as_str().unwrap_or("");
    let mut out = Vec::new();
    let sizes: Vec<&str> = pool["vm_sizes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push(format!(
        "pool {name}: {} pool of {}, {} priority, {} image {}",
        output::text(&pool["mode"]),
        if sizes.is_empty() {
            "-".to_owned()
        } else {
            sizes.join(", ")
        },
        output::text(&pool["priority"]),
        output::text(&pool["os"]),
        output::text(&pool["image"]),
    ));
    let field = |label: &str, value: String| format!("  {label:<12}{value}");
    out.push(field(
        "bounds:",
        format!(
            "min {}, max {}, target {}; requested {requested}; desired {}",
            n(pool, "min"),
            n(pool, "max"),
            n(pool, "target"),
            n(s, "desired")
        ),
    ));
    let mut nodes = vec![format!(
        "{} running ({} ready)",
        n(s, "running"),
        n(s, "ready")
    )];
    for k in [
        "registering",
        "creating",
        "starting",
        "stopped",
        "deallocating",
        "deallocated",
        "deleting",
        "failed",
        "preempted",
    ] {
        if n(s, k) > 0 {
            nodes.push(format!("{} {k}", n(s, k)));
        }
    }
    out.push(field("nodes:", nodes.join(", ")));
    out.push(field("happening:", happening(pool)));
    if let Some(b) = s["batch"].as_object() {
        let mut parts = Vec::new();
        for k in ["account", "pool", "allocation_state"] {
            if let Some(v) = b.get(k).and_then(Value::as_str) {
                parts.push(format!("{k} {v}"));
            }
        }
        for k in ["targets", "current"] {
            if let Some(v) = b.get(k).filter(|v| !v.is_null()) {
                parts.push(format!("{k} {}", compact(v)));
            }
        }
        out.push(field("batch:", parts.join(", ")));
    }
    let conditions = output::conditions(s);
    if conditions.is_empty() {
        out.push(field("conditions:", "none".into()));
    } else {
        out.push("  conditions:".into());
        for c in &conditions {
            out.push(format!("    {c}"));
        }
    }
    if let Some(e) = last_error(s) {
        out.push(field("last error:", e));
    }
    // Writes the controller holds back after failures (its backoff), with when it tries
    // again: the answer to "why is nothing happening?" while a pool is Blocked.
    let held = plan["held"].as_array().cloned().unwrap_or_default();
    if !held.is_empty() {
        out.push("  held:".into());
        for h in &held {
            let steps = h["steps"].as_u64().unwrap_or(0);
            out.push(format!(
                "    {}: {} failed in a row ({}), {} until {}",
                output::text(&h["kind"]),
                h["attempts"].as_u64().unwrap_or(0),
                output::text(&h["code"]),
                if steps > 0 {
                    format!("{steps} held")
                } else {
                    "next try one at a time".to_owned()
                },
                output::text(&h["until"]),
            ));
        }
    }
    let actions = plan["actions"].as_array().cloned().unwrap_or_default();
    if actions.is_empty() {
        let active = n(plan, "active");
        let desired = n(plan, "desired");
        if active < desired {
            out.push(format!(
                "  next steps: none it can take: {active} of {desired} nodes, because:"
            ));
            let mut reasons: Vec<String> = plan["conditions"]
                .as_array()
                .map(|a| a.iter().map(output::condition_line).collect())
                .unwrap_or_default();
            for c in s["conditions"].as_array().into_iter().flatten() {
                let line = output::condition_line(c);
                if !reasons.contains(&line) {
                    reasons.push(line);
                }
            }
            if reasons.is_empty() {
                reasons.push("no reason recorded yet (the next activation will say)".into());
            }
            for r in reasons {
                out.push(format!("    {r}"));
            }
        } else {
            out.push("  next steps: nothing to do".into());
        }
    } else {
        out.push("  next steps:".into());
        for a in actions {
            let mut what = format!(
                "{} {}",
                a["kind"].as_str().unwrap_or(""),
                a["node"].as_str().unwrap_or("")
            );
            let extra: Vec<&str> = [&a["size"], &a["priority"]]
                .into_iter()
                .filter_map(Value::as_str)
                .collect();
            if !extra.is_empty() {
                what.push_str(&format!(" ({})", extra.join(", ")));
            }
            out.push(format!(
                "    {}: {}",
                what.trim_end(),
                a["reason"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

/// `{"dedicated":1,"spot":2}` → `dedicated 1 spot 2`; other values as JSON.
fn compact(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k} {}", compact(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `renderburst node list`: columns as wide as their content (Batch node ids are long).
pub fn node_table(v: &Value) -> Table {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("POOL", Align::Left),
        ("STATE", Align::Left),
        ("IP", Align::Left),
        ("SIZE", Align::Left),
        ("PRIORITY", Align::Left),
        ("BUSY", Align::Left),
        ("DRAINING", Align::Left),
    ]);
    for n in v["nodes"].as_array().into_iter().flatten() {
        t.row(vec![
            output::text(&n["name"]),
            output::text(&n["pool"]),
            output::text(&n["state"]),
            output::text(&n["private_ip"]),
            output::text(&n["size"]),
            output::text(&n["priority"]),
            output::yes_no(&n["busy"]),
            output::yes_no(&n["draining"]),
        ]);
    }
    t
}

/// `renderburst status`: the reconciler's last activation, ARM traffic and throttling, each
/// pool on a line, and the errors.
pub fn status_lines(status: &Value, pools: &Value) -> Vec<String> {
    let c = &status["controller"];
    let r = &c["reconciler"];
    let mut out = Vec::new();
    if r.is_null() || r["number"].is_null() {
        out.push("reconciler: no activation yet".to_owned());
    } else {
        let started = r["started_at"]
            .as_i64()
            .map(unix_to_rfc3339)
            .unwrap_or_else(|| output::time(&r["started_at"]));
        out.push(format!(
            "reconciler: activation {} at {started}, took {} ms: {} VMs observed, {} actions",
            n(r, "number"),
            n(r, "duration_ms"),
            n(r, "observed_vms"),
            n(r, "actions"),
        ));
    }
    let a = &c["arm_requests"];
    out.push(format!(
        "azure: {} requests, {} retried, {} throttled (429)",
        n(a, "attempts"),
        n(a, "retries"),
        n(a, "throttled_429"),
    ));
    out.push(format!("throttling: {}", throttling(&c["arm_governor"])));
    out.push(format!(
        "resources: tagged renderburst-owner={} in resource group {}",
        output::text(&c["owner_id"]),
        output::text(&c["resource_group"])
    ));
    out.push(String::new());
    if pools["pools"].as_array().is_none_or(|a| a.is_empty()) {
        out.push("no pools".into());
    } else {
        let mut t = Table::new(&[
            ("POOL", Align::Left),
            ("DESIRED", Align::Right),
            ("RUNNING", Align::Right),
            ("READY", Align::Right),
            ("HAPPENING", Align::Left),
            ("CONDITIONS", Align::Left),
        ]);
        for p in pools["pools"].as_array().into_iter().flatten() {
            let s = &p["status"];
            // One line per pool: the conditions without their times (`pool show` has them).
            let conds: Vec<String> = s["conditions"]
                .as_array()
                .map(|a| a.iter().map(output::condition_line).collect())
                .unwrap_or_default();
            t.row(vec![
                p["name"].as_str().unwrap_or("").to_owned(),
                n(s, "desired").to_string(),
                n(s, "running").to_string(),
                n(s, "ready").to_string(),
                happening(p),
                if conds.is_empty() {
                    "-".into()
                } else {
                    conds.join("; ")
                },
            ]);
        }
        out.extend(t.lines());
    }
    let mut errors: Vec<String> = r["errors"]
        .as_array()
        .map(|a| a.iter().map(output::text).collect())
        .unwrap_or_default();
    for p in pools["pools"].as_array().into_iter().flatten() {
        if let Some(e) = last_error(&p["status"]) {
            errors.push(format!("{}: {e}", p["name"].as_str().unwrap_or("")));
        }
    }
    out.push(String::new());
    if errors.is_empty() {
        out.push("errors: none".into());
    } else {
        out.push("errors:".into());
        for e in errors {
            out.push(format!("  {e}"));
        }
    }
    out
}

/// The ARM governor's snapshot in words: classes held after a 429 and buckets run dry now,
/// and 429s so far; `none` when requests go at once.
fn throttling(governor: &Value) -> String {
    if governor["enabled"] == false {
        return "pacing off (arm governor disabled)".to_owned();
    }
    let mut now = Vec::new();
    let mut throttled_total = 0;
    for c in governor["classes"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("?");
        throttled_total += n(c, "throttled_total");
        if let Some(held) = c["held_for_s"].as_f64().filter(|s| *s > 0.0) {
            now.push(format!("{name} held for {held:.0} s after a 429"));
        } else if c["tokens"].as_f64().is_some_and(|t| t < 1.0) {
            now.push(format!(
                "{name} paced (bucket empty, {}/s)",
                c["refill_per_s"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    let mut out = if now.is_empty() {
        "none now".to_owned()
    } else {
        now.join(", ")
    };
    if throttled_total > 0 {
        out.push_str(&format!("; {throttled_total} answered 429 so far"));
    }
    out
}

/// Unix seconds as RFC 3339 UTC (`2026-01-02T03:04:05Z`).
pub fn unix_to_rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(status: Value) -> Value {
        json!({"name": "maya", "mode": "vm", "vm_sizes": ["Standard_D8s_v5"], "priority": "spot",
               "os": "linux", "image": "Canonical:ubuntu-24_04-lts:server:latest",
               "min": 0, "max": 20, "target": 16, "deleting": false, "status": status})
    }

    #[test]
    fn a_pool_short_of_capacity_says_it_is_stuck_and_why() {
        let p = pool(json!({"desired": 20, "running": 16, "ready": 16,
            "conditions": [{"type": "NoCapacity", "message": "Standard_D8s_v5 has no Spot capacity", "since": "2026-01-02T03:04:05Z"}]}));
        assert_eq!(happening(&p), "stuck at 16/20: NoCapacity");
        let plan = json!({"actions": [], "conditions": ["NoCapacity: Standard_D8s_v5 has no Spot capacity"],
                          "active": 16, "desired": 20});
        let lines = pool_lines(&p, &plan, 4).join("\n");
        assert!(
            lines.contains("next steps: none it can take: 16 of 20 nodes, because:"),
            "{lines}"
        );
        // The reason once, without its time, though the plan and the status both carry it.
        let reason = "    NoCapacity: Standard_D8s_v5 has no Spot capacity";
        assert_eq!(lines.lines().filter(|l| *l == reason).count(), 1, "{lines}");
        assert!(lines.contains("requested 4; desired 20"), "{lines}");
        assert!(!lines.contains("nothing to do"), "{lines}");
    }

    #[test]
    fn held_writes_say_what_failed_and_when_it_is_tried_again() {
        let p = pool(json!({"desired": 2, "running": 0,
            "conditions": [{"type": "Blocked", "message": "InvalidResourceReference: subnet not found; fix: check azure.subnet_id", "since": "2026-01-02T03:04:05Z"}]}));
        let plan = json!({"actions": [], "active": 0, "desired": 2, "held_until": "2026-01-02T03:09:05Z",
            "held": [{"kind": "create", "steps": 2, "until": "2026-01-02T03:09:05Z", "attempts": 4,
                      "code": "InvalidResourceReference", "condition": {"type": "Blocked"}}]});
        let lines = pool_lines(&p, &plan, 0).join("\n");
        assert!(
            lines.contains("  held:\n    create: 4 failed in a row (InvalidResourceReference), 2 held until 2026-01-02T03:09:05Z"),
            "{lines}"
        );
        let none = pool_lines(&p, &json!({"actions": [], "held": []}), 0).join("\n");
        assert!(!none.contains("held:"), "{none}");
    }

    #[test]
    fn happening_in_words() {
        assert_eq!(
            happening(&pool(json!({"desired": 2, "running": 2}))),
            "steady"
        );
        assert_eq!(
            happening(&pool(json!({"desired": 4, "running": 2, "creating": 2}))),
            "scaling up: 2 creating"
        );
        assert_eq!(
            happening(&pool(json!({"desired": 0, "running": 1, "deleting": 1}))),
            "scaling down: 1 deleting"
        );
        let mut deleting = pool(json!({"running": 1, "deleting": 2}));
        deleting["deleting"] = json!(true);
        assert_eq!(happening(&deleting), "deleting: 3 nodes left");
    }

    #[test]
    fn long_batch_node_names_fit() {
        let nodes = json!({"nodes": [
            {"name": "tvm-1234567890_1-20260102t030405z", "pool": "vray", "state": "running",
             "private_ip": "10.0.0.4", "size": "Standard_D2s_v5", "priority": "spot",
             "busy": true, "draining": false},
            {"name": "maya-00001", "pool": "maya", "state": "draining", "private_ip": null,
             "size": "Standard_D8s_v5", "priority": "regular", "busy": false, "draining": true}]});
        assert_eq!(
            node_table(&nodes).lines(),
            vec![
                "NAME                               POOL  STATE     IP        SIZE             PRIORITY  BUSY  DRAINING",
                "tvm-1234567890_1-20260102t030405z  vray  running   10.0.0.4  Standard_D2s_v5  spot      yes   no",
                "maya-00001                         maya  draining  -         Standard_D8s_v5  regular   no    yes",
            ]
        );
    }

    #[test]
    fn throttling_in_words() {
        let quiet = json!({"enabled": true, "classes": [
            {"name": "reads", "tokens": 250.0, "refill_per_s": 25.0, "held_for_s": null, "throttled_total": 0}]});
        assert_eq!(throttling(&quiet), "none now");
        let busy = json!({"enabled": true, "classes": [
            {"name": "writes", "tokens": 0.2, "refill_per_s": 10.0, "held_for_s": null, "throttled_total": 1},
            {"name": "put_vm", "tokens": 3.0, "refill_per_s": 1.0, "held_for_s": 12.4, "throttled_total": 2}]});
        assert_eq!(
            throttling(&busy),
            "writes paced (bucket empty, 10/s), put_vm held for 12 s after a 429; 3 answered 429 so far"
        );
    }

    #[test]
    fn rfc3339_from_unix() {
        assert_eq!(unix_to_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_to_rfc3339(1_767_323_045), "2026-01-02T03:04:05Z");
        assert_eq!(unix_to_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn requested_counts_live_requests_only() {
        let r = json!({"requests": [{"pool": "maya", "count": 3, "state": "live"},
                                    {"pool": "maya", "count": 2, "state": "expired"},
                                    {"pool": "vray", "count": 1, "state": "live"}]});
        let by = requested_by_pool(&r);
        assert_eq!((by["maya"], by["vray"]), (3, 1));
    }
}
