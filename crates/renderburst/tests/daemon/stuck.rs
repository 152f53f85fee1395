//! Nothing gets stuck (issue 13, item 2): a Batch pool whose account does not exist says so
//! as a condition, and deleting it completes, since Azure saying the account is not there
//! means nothing of the pool can be left.

use crate::common;
use common::world::*;
use common::{cli, eventually};

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token-0123456789";

fn batch_spec(name: &str, account: &str) -> Value {
    json!({"name": name, "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "priority": "spot",
           "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 4, "idle_timeout_seconds": 0,
           "batch": {"account": account, "node_agent_sku_id": "batch.node.ubuntu 24.04"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_pool_whose_account_does_not_exist_says_so_and_can_be_deleted() {
    let w = world("stuck", json!({})).await;
    // No Batch account configured and no Batch pool yet: the controller has not listed the
    // accounts, so the handler cannot know the account is missing and accepts the pool.
    let (daemon, api) = w.serve().await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("broken", "nosuchaccount")),
    )
    .await;
    api.scale("broken", 2).await;
    let p = eventually("the pool shows BatchAccountNotFound", 60, || async {
        let p = api.ok(Method::GET, "/v1/pools/broken", None).await;
        has_condition(&p, "BatchAccountNotFound").then_some(p)
    })
    .await;
    let text = p["status"]["conditions"].to_string();
    assert!(
        text.contains("nosuchaccount") && text.contains("batch.account"),
        "{text}"
    );

    // `pool delete --wait` ends, and the pool is gone.
    let started = Instant::now();
    let (code, out, err) = tokio::time::timeout(
        Duration::from_secs(120),
        cli(
            &api.base,
            TOKEN,
            &w.dir,
            &["pool", "delete", "broken", "--wait"],
        ),
    )
    .await
    .expect("pool delete --wait hangs");
    assert_eq!(code, 0, "{out}\n{err}");
    let (status, _) = api.call(Method::GET, "/v1/pools/broken", None).await;
    assert_eq!(status, 404);
    eprintln!(
        "stuck: the broken pool was deleted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Now that the controller has listed the accounts, the same mistake is refused at once.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/pools",
            Some(batch_spec("broken", "nosuchaccount")),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "batch.account", "{body}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_pool_with_a_linux_image_is_refused_naming_the_image() {
    let w = world("stuck-os", json!({})).await;
    let (daemon, api) = w.serve().await;
    let mut spec = pool_spec("winlin", &["Standard_D4s_v5"], 2);
    spec["os"] = json!("windows");
    let (status, body) = api.call(Method::POST, "/v1/pools", Some(spec)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "image", "{body}");
    let mut spec = pool_spec("linwin", &["Standard_D4s_v5"], 2);
    spec["image"] = json!("MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest");
    let (status, body) = api.call(Method::POST, "/v1/pools", Some(spec)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "image", "{body}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refuses_while_something_tagged_remains_and_forgets_once_nothing_does() {
    let w = world("stuck-force", json!({})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 4)),
    )
    .await;
    api.scale("maya", 2).await;
    eventually("maya has 2 running VMs", 120, || async {
        let (running, _, other) = census(&w.vms("maya").await);
        (running == 2 && other == 0).then_some(())
    })
    .await;
    // Deletes now take 20 s: the VMs stay in Azure, tagged, while --force is asked.
    w.sim_config(json!({"latency_ms": {"vm_delete": 20000}}))
        .await;
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
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("not forgotten")
            && err.contains("VM maya-00001")
            && err.contains("VM maya-00002"),
        "{err}"
    );
    let (status, p) = api.call(Method::GET, "/v1/pools/maya", None).await;
    assert_eq!(
        status, 200,
        "the pool is not forgotten while its VMs remain"
    );
    assert!(has_condition(&p, "ForceDeleteBlocked"), "{p}");
    // Once the deletes are done, nothing tagged remains and the pool is forgotten.
    // The simulator's clock steps 5 s at every poll, so Azure's 20 s deletes pass without
    // the test waiting them out.
    eventually("maya is forgotten", 120, || async {
        w.advance_sim_clock(5_000).await;
        let (status, _) = api.call(Method::GET, "/v1/pools/maya", None).await;
        (status == 404).then_some(())
    })
    .await;
    assert!(
        w.tagged("Microsoft.Compute/virtualMachines", "maya")
            .await
            .is_empty()
    );
    daemon.stop().await;
}
