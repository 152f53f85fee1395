//! Issue 13 item 1: "Failed creates never burn new names (a failed VM of that name is
//! deleted first)". The missing-subnet test (`blocked.rs`) cannot show the deletion: ARM
//! refuses a missing subnet synchronously, so no VM is left behind. Here every create's
//! long-running operation fails (`faults.operation_fail_rate`), which leaves the VM in Azure
//! in provisioning state `Failed` with its NIC and disk, as Azure does. Once creates succeed
//! again the pool converges with the names it reserved first (`maya-00001`, `maya-00002`),
//! each failed VM deleted before its name was created again (the simulator's
//! `vm_failed_lifecycle`), and nothing is left orphaned.

use crate::common;

use common::eventually;
use common::world::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The backoff cap, shortened: a transient failure's holds are 10 s doubling to
/// min(this, 120 s), so the probe after the faults stop comes within 10 s.
const CAP: u64 = 10;

/// The names the pool reserves for a target of 2.
const NAMES: [&str; 2] = ["maya-00001", "maya-00002"];

/// Creates of `node` whose failure the daemon logged.
fn failed_creates<'a>(events: &'a [Value], node: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "arm.error" && e["data"]["action"] == "create")
        .filter(|e| e["node"] == node)
        .collect()
}

/// Where a failed VM's name was created (or PUT) again while the failed VM still existed:
/// after `create failed`, the next `create` or `update` must come after a `deleted`.
fn reused_without_delete(lifecycle: &[String]) -> Option<usize> {
    let mut failed_vm_present = false;
    for (i, what) in lifecycle.iter().enumerate() {
        match what.as_str() {
            "create failed" => failed_vm_present = true,
            "deleted" => failed_vm_present = false,
            "create" | "update" if failed_vm_present => return Some(i),
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_vm_is_deleted_before_its_name_is_created_again() {
    let w = world("reuse", json!({"faults": {"operation_fail_rate": 1.0}})).await;
    let (daemon, api) = w
        .serve_with(|toml| {
            toml.replace(
                "[controller]\n",
                &format!("[controller]\nerror_backoff_max_seconds = {CAP}\n"),
            )
        })
        .await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 4)),
    )
    .await;
    api.scale("maya", 2).await;

    // Both creates fail: the daemon logs each, the pool backs off, and Azure keeps the two
    // VMs in provisioning state Failed.
    eventually("both creates failed and were logged", 60, || async {
        let v = api.ok(Method::GET, "/v1/events?limit=1000", None).await;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        NAMES
            .iter()
            .all(|n| !failed_creates(&events, n).is_empty())
            .then_some(())
    })
    .await;
    let p = eventually("the pool shows BackingOff", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/maya", None).await;
        has_condition(&p, "BackingOff").then_some(p)
    })
    .await;
    println!("while failing: {}", p["status"]["conditions"]);
    assert!(
        !has_condition(&p, "Blocked"),
        "a failed operation (InternalExecutionError) is not permanent: {p}"
    );
    let st = w.control(Method::GET, "/_sim/stats", None).await;
    for n in NAMES {
        let l = &st["vm_failed_lifecycle"][n];
        assert!(
            l.as_array()
                .is_some_and(|l| l.iter().any(|x| x == "create failed")),
            "{n}: {l}"
        );
    }

    // A probe after the hold fails as well: the name is tried again (its failed VM deleted
    // first), not a new one.
    eventually("a probe failed too", 60, || async {
        let st = w.control(Method::GET, "/_sim/stats", None).await;
        st["vm_failed_lifecycle"]
            .as_object()?
            .values()
            .any(|l| {
                l.as_array()
                    .is_some_and(|l| l.iter().filter(|x| *x == "create failed").count() >= 2)
            })
            .then_some(())
    })
    .await;

    // Creates succeed again: the pool converges on the names it reserved.
    w.sim_config(json!({"faults": {"operation_fail_rate": 0.0}}))
        .await;
    eventually("maya runs 2 VMs", 120, || async {
        (census(&w.vms("maya").await) == (2, 0, 0)).then_some(())
    })
    .await;
    let mut names: Vec<String> = w
        .vms("maya")
        .await
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, NAMES, "no new names burned");
    eventually("BackingOff clears", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/maya", None).await;
        (!has_condition(&p, "BackingOff")).then_some(())
    })
    .await;

    // The simulator saw each failed VM deleted before its name was created again, and no
    // other name created.
    let st = w.control(Method::GET, "/_sim/stats", None).await;
    let lifecycles = st["vm_failed_lifecycle"].as_object().unwrap().clone();
    println!("lifecycles of the failed names: {lifecycles:?}");
    let mut failed_names: Vec<&str> = lifecycles.keys().map(String::as_str).collect();
    failed_names.sort();
    assert_eq!(failed_names, NAMES, "{lifecycles:?}");
    for (name, l) in &lifecycles {
        let l: Vec<String> = serde_json::from_value(l.clone()).unwrap();
        assert_eq!(
            reused_without_delete(&l),
            None,
            "{name} created again over its failed VM: {l:?}"
        );
        assert!(
            l.iter().any(|x| x == "delete") && l.iter().any(|x| x == "deleted"),
            "{name}: the failed VM was deleted: {l:?}"
        );
        assert_eq!(
            l.last().map(String::as_str),
            Some("create succeeded"),
            "{name}: {l:?}"
        );
    }
    assert_eq!(st["vm_creates_repeated"], json!({}), "{st}");
    let v = api.ok(Method::GET, "/v1/events?limit=1000", None).await;
    let events = v["events"].as_array().cloned().unwrap_or_default();
    for e in events
        .iter()
        .filter(|e| e["kind"] == "arm.error" && e["data"]["action"] == "create")
    {
        let node = e["node"].as_str().unwrap_or_default();
        assert!(NAMES.contains(&node), "name burned: {node}");
    }
    println!(
        "failed creates logged: {} of maya-00001, {} of maya-00002",
        failed_creates(&events, NAMES[0]).len(),
        failed_creates(&events, NAMES[1]).len()
    );

    // Nothing left behind: no VM in Failed, every NIC and disk belongs to a VM.
    let all = w.resources("Microsoft.Compute/virtualMachines").await;
    assert!(
        all.iter().all(|v| provisioning(v) == "Succeeded"),
        "{all:?}"
    );
    assert_no_orphans(&w).await;
    assert_eq!(w.resources("Microsoft.Compute/disks").await.len(), 2);
    assert_eq!(
        w.resources("Microsoft.Network/networkInterfaces")
            .await
            .len(),
        2
    );
    daemon.stop().await;
}

#[test]
fn a_create_over_a_failed_vm_is_caught() {
    let l = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        reused_without_delete(&l(&[
            "create",
            "create failed",
            "delete",
            "deleted",
            "create",
            "create succeeded"
        ])),
        None
    );
    assert_eq!(
        reused_without_delete(&l(&["create", "create failed", "create"])),
        Some(2)
    );
    assert_eq!(
        reused_without_delete(&l(&["create", "create failed", "delete", "update"])),
        Some(3)
    );
}
