//! Issue 13 item 2 for Batch pools: `pool delete --force` forgets a pool only once nothing
//! tagged with it remains in Azure, and says what remains while something does. `stuck.rs`
//! shows it for a VM pool's VMs; here what remains is the Batch pool itself, whose deletion
//! takes a while (the simulator's Batch latency raised to 20 s once the pool runs nodes).

use crate::common;
use common::world::*;
use common::{cli, eventually};

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token-0123456789";
const ACCOUNT: &str = "rbfarm";
const BATCH_POOLS: &str = "Microsoft.Batch/batchAccounts/pools";

fn batch_spec(name: &str) -> Value {
    json!({"name": name, "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "priority": "spot",
           "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 4, "idle_timeout_seconds": 0,
           "batch": {"account": ACCOUNT, "node_agent_sku_id": "batch.node.ubuntu 24.04"}})
}

/// The simulator's Batch pool `name`, if it exists (deleting or not).
async fn batch_pool(w: &World, name: &str) -> Option<Value> {
    w.resources(BATCH_POOLS)
        .await
        .into_iter()
        .find(|p| p["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refuses_while_the_batch_pool_remains_and_forgets_once_it_is_gone() {
    let w = world("stuck-batch", json!({"latency_ms": {"batch_node": 200}})).await;
    // `[azure]` is the configuration's last section: the daemon makes the Batch account.
    let (daemon, api) = w
        .serve_with(|toml| format!("{toml}batch_account = \"{ACCOUNT}\"\n"))
        .await;
    api.ok(Method::POST, "/v1/pools", Some(batch_spec("maya")))
        .await;
    api.scale("maya", 2).await;
    eventually("the Batch pool runs 2 Spot nodes", 120, || async {
        let p = batch_pool(&w, "maya").await?;
        let props = &p["properties"];
        (props["currentLowPriorityNodes"] == 2 && props["allocationState"] == "Steady")
            .then_some(())
    })
    .await;
    let p = batch_pool(&w, "maya").await.unwrap();
    assert_eq!(p["tags"]["renderburst-pool"], "maya", "{p}");

    // From now on Batch takes 20 s to remove nodes and to delete a pool: the Batch pool stays
    // in Azure, tagged, while --force is asked.
    w.sim_config(json!({"latency_ms": {"batch_node": 20000}}))
        .await;
    let started = Instant::now();
    let (code, out, err) = tokio::time::timeout(
        Duration::from_secs(120),
        cli(
            &api.base,
            TOKEN,
            &w.dir,
            &[
                "pool",
                "delete",
                "maya",
                "--force",
                "--wait",
                "--timeout",
                "100",
            ],
        ),
    )
    .await
    .expect("pool delete --force --wait hangs");
    println!(
        "pool delete --force exited {code} after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        err.lines().last().unwrap_or_default()
    );
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("not forgotten")
            && err.contains(&format!("Batch pool maya in account {ACCOUNT}")),
        "{err}"
    );
    let (status, p) = api.call(Method::GET, "/v1/pools/maya", None).await;
    assert_eq!(
        status, 200,
        "the pool is not forgotten while its Batch pool remains"
    );
    assert!(has_condition(&p, "ForceDeleteBlocked"), "{p}");
    assert!(
        batch_pool(&w, "maya").await.is_some(),
        "the Batch pool is still in Azure"
    );

    // Once Batch has deleted the pool, nothing tagged remains and the pool is forgotten.
    // The simulator's clock steps 5 s at every poll, so Azure's 20 s deletes pass without
    // the test waiting them out.
    eventually("maya is forgotten", 120, || async {
        w.advance_sim_clock(5_000).await;
        let (status, _) = api.call(Method::GET, "/v1/pools/maya", None).await;
        (status == 404).then_some(())
    })
    .await;
    println!(
        "forgotten {:.1} s after --force was asked",
        started.elapsed().as_secs_f64()
    );
    assert!(batch_pool(&w, "maya").await.is_none());
    assert!(w.tagged(BATCH_POOLS, "maya").await.is_empty());
    let v = api.ok(Method::GET, "/v1/events?limit=1000", None).await;
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    println!("events: {kinds:?}");
    daemon.stop().await;
}
