//! Drain does what it says (issue 13, item 6): a drained idle node is removed (per the pool's
//! `scale_down`) within a few reconcile intervals and replaced while the pool still needs the
//! capacity; a busy drained node stays until it reports idle. The in-process world of the
//! e2e tests.

use serde_json::{Value, json};

use crate::common;
use common::eventually;
use common::world::*;

async fn nodes(api: &Api, pool: &str) -> Vec<Value> {
    api.ok(
        reqwest::Method::GET,
        &format!("/v1/nodes?pool={pool}"),
        None,
    )
    .await["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

async fn node(api: &Api, pool: &str, name: &str) -> Option<Value> {
    nodes(api, pool)
        .await
        .into_iter()
        .find(|n| n["name"] == name)
}

async fn activation_number(api: &Api) -> u64 {
    let s = api.ok(reqwest::Method::GET, "/v1/status", None).await;
    s["controller"]["reconciler"]["number"]
        .as_u64()
        .unwrap_or(0)
}

/// A pool of `target` running nodes (idle timeout 0), with the names of its running nodes.
async fn running_pool(
    w: &World,
    api: &Api,
    pool: &str,
    target: u32,
    scale_down: &str,
) -> Vec<String> {
    let mut spec = pool_spec(pool, &["Standard_D4s_v5"], 10);
    spec["target"] = json!(target);
    spec["scale_down"] = json!(scale_down);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;
    eventually(&format!("{target} running nodes of {pool}"), 60, || async {
        let running: Vec<String> = nodes(api, pool)
            .await
            .iter()
            .filter(|n| n["state"] == "running")
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        (running.len() == target as usize && census(&w.vms(pool).await) == (target as usize, 0, 0))
            .then_some(running)
    })
    .await
}

/// Drains an idle node of a pool that still wants 3: it is removed within a few reconcile
/// intervals (1 s here) and a replacement brings the pool back to 3 running.
async fn an_idle_drained_node_is_removed_and_replaced(scale_down: &str) {
    let w = world(&format!("drain-{scale_down}"), json!({})).await;
    let (daemon, api) = w.serve().await;
    let running = running_pool(&w, &api, "maya", 3, scale_down).await;
    let drained = running[0].clone();
    let v = api
        .ok(
            reqwest::Method::POST,
            &format!("/v1/nodes/{drained}/drain"),
            None,
        )
        .await;
    assert_eq!(v["draining"], true);
    // The API says so while it lasts (what `node list` shows as DRAINING).
    let start = activation_number(&api).await;
    eventually("the drained node removed and replaced", 30, || async {
        let vms = w.vms("maya").await;
        let ours = vms.iter().find(|v| v["name"] == drained.as_str());
        let removed = match scale_down {
            "delete" => ours.is_none(),
            _ => ours.is_some_and(|v| power(v) == "deallocated"),
        };
        (removed && census(&vms).0 == 3).then_some(())
    })
    .await;
    let took = activation_number(&api).await - start;
    assert!(
        took <= 10,
        "removed and replaced within a few activations, took {took}"
    );
    match scale_down {
        "delete" => {
            eventually("the deleted node gone from the inventory", 30, || async {
                node(&api, "maya", &drained).await.is_none().then_some(())
            })
            .await;
        }
        _ => {
            // The drain is over once the node is deallocated: an ordinary parked node.
            let n = eventually("the drain over", 30, || async {
                node(&api, "maya", &drained)
                    .await
                    .filter(|n| n["state"] == "deallocated" && n["draining"] == false)
            })
            .await;
            assert_eq!(n["draining"], false);
        }
    }
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await;
    let about: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"] == drained.as_str())
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(about.contains(&"node.drain"), "{about:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_drained_node_is_deallocated_or_deleted_per_scale_down_and_replaced() {
    an_idle_drained_node_is_removed_and_replaced("deallocate").await;
    an_idle_drained_node_is_removed_and_replaced("delete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_drained_node_stays_until_it_is_idle() {
    let w = world("drain-busy", json!({})).await;
    let (daemon, api) = w.serve().await;
    let running = running_pool(&w, &api, "katana", 2, "deallocate").await;
    let busy = running[0].clone();
    api.ok(
        reqwest::Method::PUT,
        &format!("/v1/nodes/{busy}/heartbeat"),
        Some(json!({"busy": true})),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        &format!("/v1/nodes/{busy}/drain"),
        None,
    )
    .await;
    // Shown as draining, and a replacement comes (the drained node does not count).
    eventually("draining, and replaced while it works", 30, || async {
        let n = node(&api, "katana", &busy).await?;
        (n["state"] == "draining" && n["draining"] == true && census(&w.vms("katana").await).0 == 3)
            .then_some(())
    })
    .await;
    let start = activation_number(&api).await;
    eventually("five activations with the busy node kept", 30, || async {
        (activation_number(&api).await >= start + 5).then_some(())
    })
    .await;
    let vm = w
        .vms("katana")
        .await
        .into_iter()
        .find(|v| v["name"] == busy.as_str())
        .unwrap();
    assert_eq!(
        power(&vm),
        "running",
        "a busy drained node is never removed"
    );

    api.ok(
        reqwest::Method::PUT,
        &format!("/v1/nodes/{busy}/heartbeat"),
        Some(json!({"busy": false})),
    )
    .await;
    eventually("removed once idle, the pool at 2 running", 30, || async {
        let vms = w.vms("katana").await;
        let gone = vms
            .iter()
            .find(|v| v["name"] == busy.as_str())
            .is_none_or(|v| power(v) == "deallocated");
        (gone && census(&vms).0 == 2).then_some(())
    })
    .await;
    daemon.stop().await;
}
