//! vCPU quotas (synchronous 409s with the messages clients classify on), unknown sizes, and
//! per-size capacity (asynchronous `AllocationFailed`, for creates and starts alike).

use serde_json::json;

use crate::common::*;

/// No VM, NIC or disk of this name exists.
async fn nothing_left(s: &Sim, rg: &str, vm: &str) {
    s.get(&s.vm_path(rg, vm)).await.expect(404);
    s.get(&s.nic_path(rg, &format!("{vm}-nic")))
        .await
        .expect(404);
    s.get(&s.disk_path(rg, &format!("{vm}-osdisk")))
        .await
        .expect(404);
}

#[tokio::test]
async fn regional_quota() {
    let s = spawn_sim(json!({"quota": {"regional_vcpus": 4}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "a", &vm_body(&subnet, "a", SIZE))
        .await;
    s.create_vm_ok("rg", "b", &vm_body(&subnet, "b", SIZE))
        .await;
    let r = s
        .put(&s.vm_path("rg", "c"), &vm_body(&subnet, "c", SIZE))
        .await;
    r.expect_err(409, "OperationNotAllowed");
    assert!(
        r.message().contains("Total Regional Cores quota"),
        "{}",
        r.message()
    );
    assert!(r.message().contains("Current Limit: 4"), "{}", r.message());
    nothing_left(&s, "rg", "c").await;
    // A 4-vCPU VM does not fit either; Spot VMs do not count against it.
    s.put(
        &s.vm_path("rg", "d"),
        &vm_body(&subnet, "d", "Standard_D4s_v5"),
    )
    .await
    .expect_err(409, "OperationNotAllowed");
    s.create_vm_ok("rg", "s", &spot_body(&subnet, "s", SIZE, "Deallocate"))
        .await;

    // Deallocating a regular VM frees its cores.
    s.vm_action_ok("rg", "a", "deallocate").await;
    s.create_vm_ok("rg", "c", &vm_body(&subnet, "c", SIZE))
        .await;
    // Now the quota is full again: starting the deallocated VM is refused synchronously.
    let r = s
        .post(&format!("{}/start", s.vm_path("rg", "a")), None)
        .await;
    r.expect_err(409, "OperationNotAllowed");
    assert!(r.message().contains("Total Regional Cores quota"));
    assert_eq!(
        s.power_state("rg", "a").await.as_deref(),
        Some("deallocated")
    );
    // After deleting one, it starts.
    let r = s.delete(&s.vm_path("rg", "b")).await;
    s.wait_op_ok(&r).await;
    s.vm_action_ok("rg", "a", "start").await;
    assert_eq!(s.power_state("rg", "a").await.as_deref(), Some("running"));
}

#[tokio::test]
async fn family_quota() {
    let s = spawn_sim(json!({"quota": {"families": {"standardDSv5Family": 4}}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "a", &vm_body(&subnet, "a", "Standard_D4s_v5"))
        .await;
    let r = s
        .put(&s.vm_path("rg", "b"), &vm_body(&subnet, "b", SIZE))
        .await;
    r.expect_err(409, "OperationNotAllowed");
    assert!(
        r.message().contains("standardDSv5Family Cores quota"),
        "{}",
        r.message()
    );
    assert!(r.message().contains("Family Cores quota"));
    nothing_left(&s, "rg", "b").await;
    // Another family is not limited.
    s.create_vm_ok("rg", "c", &vm_body(&subnet, "c", "Standard_D2as_v5"))
        .await;
}

#[tokio::test]
async fn spot_quota() {
    let s = spawn_sim(json!({"quota": {"spot_vcpus": 4, "regional_vcpus": 2}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "s1", &spot_body(&subnet, "s1", SIZE, "Deallocate"))
        .await;
    s.create_vm_ok("rg", "s2", &spot_body(&subnet, "s2", SIZE, "Delete"))
        .await;
    let r = s
        .put(
            &s.vm_path("rg", "s3"),
            &spot_body(&subnet, "s3", SIZE, "Deallocate"),
        )
        .await;
    r.expect_err(409, "OperationNotAllowed");
    assert!(r.message().contains("LowPriorityCores"), "{}", r.message());
    nothing_left(&s, "rg", "s3").await;
    // Regular cores are separate.
    s.create_vm_ok("rg", "r1", &vm_body(&subnet, "r1", SIZE))
        .await;
    // Deallocated Spot VMs still count against the Spot quota.
    s.vm_action_ok("rg", "s1", "deallocate").await;
    s.put(
        &s.vm_path("rg", "s3"),
        &spot_body(&subnet, "s3", SIZE, "Deallocate"),
    )
    .await
    .expect_err(409, "OperationNotAllowed");
}

#[tokio::test]
async fn unknown_size_is_sku_not_available() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let r = s
        .put(
            &s.vm_path("rg", "x"),
            &vm_body(&subnet, "x", "Standard_Imaginary_v9"),
        )
        .await;
    r.expect_err(409, "SkuNotAvailable");
    assert_eq!(r.body["error"]["target"], "sku.name");
    nothing_left(&s, "rg", "x").await;
    // Size names are case-insensitive.
    s.create_vm_ok("rg", "y", &vm_body(&subnet, "y", "standard_d2S_V5"))
        .await;
}

#[tokio::test]
async fn capacity_fails_creates_and_starts_asynchronously() {
    let s = spawn_sim(json!({"capacity": {"Standard_D2s_v5": 1}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "first", &vm_body(&subnet, "first", SIZE))
        .await;
    // The second create is accepted, then fails.
    let r = s
        .put(
            &s.vm_path("rg", "second"),
            &vm_body(&subnet, "second", SIZE),
        )
        .await;
    r.expect(201);
    let op = s.poll_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op["status"], "Failed", "{op:#}");
    assert_eq!(op["error"]["code"], "AllocationFailed", "{op:#}");
    assert!(!op["error"]["message"].as_str().unwrap().is_empty());
    let vm = s
        .get(&format!(
            "{}?$expand=instanceView",
            s.vm_path("rg", "second")
        ))
        .await;
    vm.expect(200);
    assert_eq!(vm.body["properties"]["provisioningState"], "Failed");
    let statuses = vm.body["properties"]["instanceView"]["statuses"].to_string();
    assert!(statuses.contains("AllocationFailed"), "{statuses}");
    // Other sizes are not limited.
    s.create_vm_ok("rg", "other", &vm_body(&subnet, "other", "Standard_D4s_v5"))
        .await;

    // Deallocate the first: the second can start.
    s.vm_action_ok("rg", "first", "deallocate").await;
    s.vm_action_ok("rg", "second", "start").await;
    let vm = s.get(&s.vm_path("rg", "second")).await;
    assert_eq!(vm.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        s.power_state("rg", "second").await.as_deref(),
        Some("running")
    );
    // Now the first cannot: the start is accepted and fails, Location reports the error.
    let r = s
        .post(&format!("{}/start", s.vm_path("rg", "first")), None)
        .await;
    r.expect(202);
    let op = s.poll_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], "AllocationFailed");
    let loc = s.poll_location(r.header("location").unwrap()).await;
    assert!(loc.status >= 400, "{loc:#?}");
    assert_eq!(loc.code(), "AllocationFailed");
    assert_eq!(
        s.power_state("rg", "first").await.as_deref(),
        Some("deallocated")
    );
}
