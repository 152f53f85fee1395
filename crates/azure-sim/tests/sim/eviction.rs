//! Spot evictions: `simulateEviction` per eviction policy, refusal on regular VMs, and the
//! control API's bulk eviction.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn eviction_with_deallocate_policy_keeps_the_vm_deallocated() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "s1", &spot_body(&subnet, "s1", SIZE, "Deallocate"))
        .await;
    let r = s
        .post(&format!("{}/simulateEviction", s.vm_path("rg", "s1")), None)
        .await;
    r.expect(204);
    eventually("the Spot VM to be deallocated", async || {
        (s.power_state("rg", "s1").await.as_deref() == Some("deallocated")).then_some(())
    })
    .await;
    let vm = s.get(&s.vm_path("rg", "s1")).await;
    vm.expect(200);
    assert_eq!(vm.body["properties"]["provisioningState"], "Succeeded");
    // The disk stays, still attached.
    let d = s.get(&s.disk_path("rg", "s1-osdisk")).await;
    d.expect(200);
    assert!(d.body["managedBy"].is_string());
    // Not restarted by itself; a deallocated VM cannot be evicted again.
    s.post(&format!("{}/simulateEviction", s.vm_path("rg", "s1")), None)
        .await
        .expect_err(409, "OperationNotAllowed");
    assert_eq!(s.stats().await["evictions"], 1);
    // The client may start it again.
    s.vm_action_ok("rg", "s1", "start").await;
    assert_eq!(s.power_state("rg", "s1").await.as_deref(), Some("running"));
}

#[tokio::test]
async fn eviction_with_delete_policy_removes_vm_and_disk() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "s1", &spot_body(&subnet, "s1", SIZE, "Delete"))
        .await;
    s.post(&format!("{}/simulateEviction", s.vm_path("rg", "s1")), None)
        .await
        .expect(204);
    eventually("the evicted VM to disappear", async || {
        (s.get(&s.vm_path("rg", "s1")).await.status == 404).then_some(())
    })
    .await;
    s.get(&s.disk_path("rg", "s1-osdisk"))
        .await
        .expect_err(404, "ResourceNotFound");
    s.get(&s.nic_path("rg", "s1-nic")).await.expect(404);
    assert_eq!(s.stats().await["evictions"], 1);
}

#[tokio::test]
async fn simulate_eviction_on_a_regular_vm_is_refused() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "r1", &vm_body(&subnet, "r1", SIZE))
        .await;
    let r = s
        .post(&format!("{}/simulateEviction", s.vm_path("rg", "r1")), None)
        .await;
    r.expect_err(409, "OperationNotAllowed");
    assert_eq!(s.power_state("rg", "r1").await.as_deref(), Some("running"));
    s.post(
        &format!("{}/simulateEviction", s.vm_path("rg", "nope")),
        None,
    )
    .await
    .expect_err(404, "ResourceNotFound");
    assert_eq!(s.stats().await["evictions"], 0);
}

#[tokio::test]
async fn control_api_evicts_some_spot_vms() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    for n in ["s1", "s2", "s3"] {
        s.create_vm_ok("rg", n, &spot_body(&subnet, n, SIZE, "Deallocate"))
            .await;
    }
    s.create_vm_ok("rg", "r1", &vm_body(&subnet, "r1", SIZE))
        .await;
    let r = s
        .send(
            reqwest::Method::POST,
            "/_sim/evict",
            None,
            Some(&json!({"count": 2})),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["evicted"].as_array().unwrap().len(), 2, "{r:#?}");
    let states = eventually("two Spot VMs to be deallocated", async || {
        let mut states = Vec::new();
        for n in ["s1", "s2", "s3"] {
            states.push(s.power_state("rg", n).await.unwrap());
        }
        (states.iter().filter(|p| *p == "deallocated").count() == 2).then_some(states)
    })
    .await;
    assert_eq!(
        states.iter().filter(|p| *p == "running").count(),
        1,
        "{states:?}"
    );
    assert_eq!(s.power_state("rg", "r1").await.as_deref(), Some("running"));
    assert_eq!(s.stats().await["evictions"], 2);
    // Only one is left to evict.
    let r = s
        .send(
            reqwest::Method::POST,
            "/_sim/evict",
            None,
            Some(&json!({"count": 5})),
        )
        .await;
    assert_eq!(r.body["evicted"].as_array().unwrap().len(), 1, "{r:#?}");
    eventually("the last Spot VM to be evicted", async || {
        (s.stats().await["evictions"] == 3).then_some(())
    })
    .await;
    // A bad count is refused.
    s.send(
        reqwest::Method::POST,
        "/_sim/evict",
        None,
        Some(&json!({"count": -1})),
    )
    .await
    .expect(400);
}
