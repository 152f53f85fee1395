//! Issue 13 item 1, follow-up: Batch pool writes back off as VM creates do. A Batch pool
//! whose create Azure refuses for good (a `vmSize` Batch does not offer: 400
//! `InvalidPropertyValue`, target `vmSize`) was created again every activation. Now the pool
//! is `Blocked` with the code and the fix, its creates are held 10 s doubling up to the cap
//! (one `pool.blocked` event), the what-if plan shows the held create, and deleting the pool
//! still completes.
//!
//! The API refuses a size it does not know, so the pool is stored before the daemon starts,
//! as one accepted when its size was still offered (a size later retired, or one Batch does
//! not offer in the region): the store as the daemon would have written it.

use crate::common;

use std::time::{Duration, Instant};

use common::eventually;
use common::world::*;
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNT: &str = "rbfarm";
/// The shortened `[controller] error_backoff_max_seconds`.
const CAP: u64 = 10;
/// The window whose Batch pool creates are counted.
const WINDOW: u64 = 40;

/// Writes (PUT, PATCH, POST, DELETE) to Batch pools the simulator answered.
async fn batch_pool_writes(w: &World) -> u64 {
    let s = w.control(Method::GET, "/_sim/stats", None).await;
    s["by_type"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(ty, _)| ty.eq_ignore_ascii_case("Microsoft.Batch/batchAccounts/pools"))
        .flat_map(|(_, methods)| methods.as_object().into_iter().flatten())
        .filter(|(m, _)| m.as_str() != "GET")
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

fn condition<'a>(pool: &'a Value, kind: &str) -> Option<&'a Value> {
    pool["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_pool_refused_for_good_backs_off_shows_its_hold_and_can_be_deleted() {
    let w = world("backoff-batch", json!({})).await;
    let spec = json!({"name": "nuke", "mode": "batch", "vm_sizes": ["Standard_Bogus_v9"],
                      "priority": "spot", "image": "Canonical:ubuntu-24_04-lts:server:latest",
                      "max": 4, "idle_timeout_seconds": 0, "tags": {"show": "e2e"},
                      "batch": {"account": ACCOUNT, "node_agent_sku_id": "batch.node.ubuntu 24.04"}});
    {
        let store = store::Store::open(&w.dir.join("renderburst.db"))
            .await
            .unwrap();
        let spec: rb_core::PoolSpec = serde_json::from_value(spec).unwrap();
        store.create_pool(&spec).await.unwrap();
        store.close().await;
    }
    let (daemon, api) = w
        .serve_with(|toml| {
            toml.replace(
                "ensure_network = true\n",
                &format!("ensure_network = true\nbatch_account = \"{ACCOUNT}\"\n"),
            )
            .replace(
                "[controller]\n",
                &format!("[controller]\nerror_backoff_max_seconds = {CAP}\n"),
            )
        })
        .await;
    let writes0 = batch_pool_writes(&w).await;
    let t0 = Instant::now();
    api.scale("nuke", 2).await;
    let blocked = eventually("the Batch pool is Blocked", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/nuke", None).await;
        condition(&p, "Blocked").cloned()
    })
    .await;
    println!(
        "Blocked after {:.1} s: {blocked}",
        t0.elapsed().as_secs_f64()
    );
    let message = blocked["message"].as_str().unwrap();
    assert!(
        message.starts_with("Batch pool create fails with InvalidPropertyValue: "),
        "{message}"
    );
    assert!(message.contains("fix: "), "{message}");
    let since = blocked["since"].clone();

    // The what-if plan: the create is held, until when and why.
    let (plan, held) = eventually("the plan shows the held create", 30, || async {
        let plan = api.ok(Method::GET, "/v1/pools/nuke/plan", None).await;
        let held = plan["held"]
            .as_array()?
            .iter()
            .find(|h| h["kind"] == "create_pool" && h["steps"] == 1)?
            .clone();
        Some((plan, held))
    })
    .await;
    println!("plan while held: {plan}");
    assert!(plan["actions"].as_array().unwrap().is_empty(), "{plan}");
    assert_eq!(held["code"], "InvalidPropertyValue");
    assert_eq!(held["condition"]["type"], "Blocked");
    assert_eq!(held["condition"]["since"], since);
    assert_eq!(plan["held_until"], held["until"]);
    assert!(
        plan["conditions"].as_array().unwrap().iter().any(|c| c
            .as_str()
            .unwrap_or_default()
            .contains("next Batch pool create attempt at")),
        "{plan}"
    );

    // Over the window: the first attempt, then one per hold (10 s less up to a quarter).
    eventually("the window has passed", WINDOW + 30, || async {
        (t0.elapsed() >= Duration::from_secs(WINDOW)).then_some(())
    })
    .await;
    let writes = batch_pool_writes(&w).await - writes0;
    let attempts = controller::backoff::attempts_within(WINDOW, CAP);
    println!(
        "Batch pool writes in the first {} s: {writes} (bound {attempts} with cap {CAP} s; \
         the reconcile interval is 1 s)",
        t0.elapsed().as_secs()
    );
    assert!(writes >= 2, "the pool retried after its hold: {writes}");
    assert!(
        writes <= u64::from(attempts),
        "{writes} Batch pool writes in {WINDOW} s, at most {attempts}"
    );
    let p = api.ok(Method::GET, "/v1/pools/nuke", None).await;
    assert_eq!(
        condition(&p, "Blocked").expect("still Blocked")["since"],
        since
    );
    let events = api
        .ok(Method::GET, "/v1/events?pool=nuke&limit=1000", None)
        .await;
    let blocked_events = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "pool.blocked")
        .count();
    assert_eq!(blocked_events, 1, "one event per transition, not per retry");

    // Deleting the pool completes: nothing of it exists in Azure.
    api.ok(Method::DELETE, "/v1/pools/nuke", None).await;
    eventually("the pool is gone", 60, || async {
        let (status, _) = api.call(Method::GET, "/v1/pools/nuke", None).await;
        (status == 404).then_some(())
    })
    .await;
    daemon.stop().await;
}
