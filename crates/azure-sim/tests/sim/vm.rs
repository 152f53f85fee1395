//! Virtual machines: the create LRO, instance view, inline NIC and OS disk, power actions with
//! both polling headers, the busy-VM 409, and delete with `deleteOption` cascade or detach.

use serde_json::{Value, json};

use crate::common::*;

fn same_id(a: &Value, b: &str) -> bool {
    a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// Posts a VM action and checks the 202 carries both polling headers; returns the answer.
async fn action(s: &Sim, rg: &str, vm: &str, action: &str) -> Resp {
    let r = s
        .post(&format!("{}/{action}", s.vm_path(rg, vm)), None)
        .await;
    r.expect(202);
    assert!(r.text.is_empty(), "202 has no body: {r:#?}");
    let aao = r
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    let loc = r.header("location").expect("Location");
    assert!(aao.starts_with("https://") && loc.starts_with("https://"));
    assert!(loc.contains("monitor=true"), "{loc}");
    assert!(loc.contains("api-version="), "{loc}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    r
}

#[tokio::test]
async fn lifecycle_with_inline_nic_and_disk() {
    let s = spawn_sim(json!({"latency_ms": {"vm_create": 1000}})).await;
    let subnet = s.create_network("rg").await;
    let vm = s.vm_path("rg", "vm1");
    let nic = s.nic_path("rg", "vm1-nic");
    let disk = s.disk_path("rg", "vm1-osdisk");

    // Create: 201, Creating, Azure-AsyncOperation.
    let r = s.put(&vm, &vm_body(&subnet, "vm1", SIZE)).await;
    r.expect(201);
    assert_eq!(r.body["properties"]["provisioningState"], "Creating");
    assert_eq!(r.body["id"], json!(vm));
    let aao = r
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation")
        .to_owned();
    assert!(aao.starts_with("https://") && aao.contains("api-version="));
    let op = s.get(&aao).await;
    op.expect(200);
    assert_eq!(op.body["status"], "InProgress", "{op:#?}");
    assert!(op.body["startTime"].is_string());
    assert!(op.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let g = s.get(&vm).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Creating");
    let done = s.poll_op(&aao).await;
    assert_eq!(done["status"], "Succeeded", "{done:#}");
    assert!(done["startTime"].is_string() && done["endTime"].is_string());

    // GET, with and without the instance view.
    let g = s.get(&format!("{vm}?$expand=instanceView")).await;
    g.expect(200);
    assert_eq!(g.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(power_of(&g.body).as_deref(), Some("running"), "{g:#?}");
    let codes: Vec<&str> = g.body["properties"]["instanceView"]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["code"].as_str())
        .collect();
    assert!(codes.contains(&"ProvisioningState/succeeded"), "{codes:?}");
    let plain = s.get(&vm).await;
    assert!(plain.body["properties"].get("instanceView").is_none());
    assert_eq!(plain.body["tags"]["renderburst-pool"], "p1");
    assert_eq!(
        plain.body["properties"]["hardwareProfile"]["vmSize"],
        json!(SIZE)
    );
    assert!(
        plain.body["properties"]["osProfile"]
            .get("adminPassword")
            .is_none()
    );

    // The inline NIC and the OS disk exist and are attached.
    let n = s.get(&nic).await;
    n.expect(200);
    assert!(
        same_id(&n.body["properties"]["virtualMachine"]["id"], &vm),
        "{n:#?}"
    );
    assert!(
        same_id(
            &plain.body["properties"]["networkProfile"]["networkInterfaces"][0]["id"],
            &nic
        ),
        "{plain:#?}"
    );
    let d = s.get(&disk).await;
    d.expect(200);
    assert!(same_id(&d.body["managedBy"], &vm), "{d:#?}");
    assert_eq!(d.body["properties"]["diskState"], "Attached");
    assert!(same_id(
        &plain.body["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"],
        &disk
    ));
    // An attached NIC cannot be deleted.
    s.delete(&nic).await.expect_err(400, "NicInUse");
    s.get(&nic).await.expect(200);

    // Deallocate slowly enough to see it running.
    s.set_config(json!({"latency_ms": {"vm_deallocate": 1000}}))
        .await;
    let r = action(&s, "rg", "vm1", "deallocate").await;
    let loc = r.header("location").unwrap().to_owned();
    let aao = r.header("azure-asyncoperation").unwrap().to_owned();
    s.get(&loc).await.expect(202);
    // A second action while one runs.
    for other in ["start", "deallocate", "powerOff", "restart"] {
        s.post(&format!("{vm}/{other}"), None)
            .await
            .expect_err(409, "OperationNotAllowed");
    }
    s.poll_location(&loc).await.expect(200);
    assert_eq!(s.poll_op(&aao).await["status"], "Succeeded");
    assert_eq!(
        s.power_state("rg", "vm1").await.as_deref(),
        Some("deallocated")
    );
    // Location keeps answering 200 once done.
    s.get(&loc).await.expect(200);
    s.set_config(json!({"latency_ms": {"vm_deallocate": 20}}))
        .await;

    // start, powerOff, start, restart.
    for (act, power) in [
        ("start", "running"),
        ("powerOff", "stopped"),
        ("start", "running"),
        ("restart", "running"),
    ] {
        let r = action(&s, "rg", "vm1", act).await;
        let loc = r.header("location").unwrap().to_owned();
        s.poll_location(&loc).await.expect(200);
        assert_eq!(
            s.poll_op(r.header("azure-asyncoperation").unwrap()).await["status"],
            "Succeeded"
        );
        assert_eq!(
            s.power_state("rg", "vm1").await.as_deref(),
            Some(power),
            "after {act}"
        );
    }

    // Delete: 202 with both headers; afterwards VM, NIC and disk are gone.
    let r = s.delete(&vm).await;
    r.expect(202);
    assert!(r.header("location").unwrap().contains("monitor=true"));
    s.wait_op_ok(&r).await;
    s.get(&vm).await.expect_err(404, "ResourceNotFound");
    s.get(&nic).await.expect_err(404, "ResourceNotFound");
    s.get(&disk).await.expect_err(404, "ResourceNotFound");
    // Deleting a VM that is not there.
    s.delete(&vm).await.expect(204);
    s.delete(&s.vm_path("rg", "never-was")).await.expect(204);
    assert_eq!(
        s.resources_of("Microsoft.Compute/virtualMachines")
            .await
            .len(),
        0
    );
}

#[tokio::test]
async fn delete_with_detach_leaves_nic_and_disk_detached() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let mut body = vm_body(&subnet, "vm1", SIZE);
    body["properties"]["storageProfile"]["osDisk"]["deleteOption"] = json!("Detach");
    body["properties"]["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["deleteOption"] =
        json!("Detach");
    s.create_vm_ok("rg", "vm1", &body).await;
    let vm = s.get(&s.vm_path("rg", "vm1")).await;
    assert_eq!(
        vm.body["properties"]["storageProfile"]["osDisk"]["deleteOption"],
        "Detach"
    );
    let r = s.delete(&s.vm_path("rg", "vm1")).await;
    r.expect(202);
    s.wait_op_ok(&r).await;
    s.get(&s.vm_path("rg", "vm1")).await.expect(404);

    let nic = s.get(&s.nic_path("rg", "vm1-nic")).await;
    nic.expect(200);
    assert!(
        nic.body["properties"].get("virtualMachine").is_none(),
        "{nic:#?}"
    );
    let disk = s.get(&s.disk_path("rg", "vm1-osdisk")).await;
    disk.expect(200);
    assert!(disk.body.get("managedBy").is_none(), "{disk:#?}");
    assert_eq!(disk.body["properties"]["diskState"], "Unattached");

    // Now detached, the NIC can be deleted.
    let r = s.delete(&s.nic_path("rg", "vm1-nic")).await;
    r.expect(202);
    s.wait_op_ok(&r).await;
    s.get(&s.nic_path("rg", "vm1-nic")).await.expect(404);
    let r = s.delete(&s.disk_path("rg", "vm1-osdisk")).await;
    r.expect(202);
    s.wait_op_ok(&r).await;
    s.get(&s.disk_path("rg", "vm1-osdisk")).await.expect(404);
}

#[tokio::test]
async fn vm_with_nic_by_reference() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let nic = s.nic_path("rg", "nic-a");
    let r = s
        .put(
            &nic,
            &json!({"location": LOCATION, "properties": {"ipConfigurations": [
                {"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}]}}),
        )
        .await;
    r.expect(201);
    s.wait_op_ok(&r).await;
    let ip = &r.body["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"];
    assert!(ip.as_str().unwrap().starts_with("10."), "{r:#?}");

    let by_ref = |name: &str, delete_option: Option<&str>| {
        let mut b = vm_body(&subnet, name, SIZE);
        let mut nref = json!({"id": nic, "properties": {"primary": true}});
        if let Some(d) = delete_option {
            nref["properties"]["deleteOption"] = json!(d);
        }
        b["properties"]["networkProfile"] = json!({"networkInterfaces": [nref]});
        b
    };
    s.create_vm_ok("rg", "vm1", &by_ref("vm1", None)).await;
    let n = s.get(&nic).await;
    assert!(same_id(
        &n.body["properties"]["virtualMachine"]["id"],
        &s.vm_path("rg", "vm1")
    ));
    // The NIC is in use: a second VM cannot take it, and it cannot be deleted.
    s.put(&s.vm_path("rg", "vm2"), &by_ref("vm2", None))
        .await
        .expect_err(400, "NicInUse");
    s.get(&s.vm_path("rg", "vm2")).await.expect(404);
    s.delete(&nic).await.expect_err(400, "NicInUse");

    // Deleting the VM detaches the NIC (no deleteOption means Detach).
    let r = s.delete(&s.vm_path("rg", "vm1")).await;
    s.wait_op_ok(&r).await;
    let n = s.get(&nic).await;
    n.expect(200);
    assert!(n.body["properties"].get("virtualMachine").is_none());

    // Reused by a VM that takes it with deleteOption Delete: it goes with that VM.
    s.create_vm_ok("rg", "vm2", &by_ref("vm2", Some("Delete")))
        .await;
    let r = s.delete(&s.vm_path("rg", "vm2")).await;
    s.wait_op_ok(&r).await;
    s.get(&nic).await.expect(404);
}

#[tokio::test]
async fn create_validation() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let vm = s.vm_path("rg", "vm1");
    let mut b = vm_body(&subnet, "vm1", SIZE);
    b.as_object_mut().unwrap().remove("location");
    s.put(&vm, &b).await.expect_err(400, "LocationRequired");
    let mut b = vm_body(&subnet, "vm1", SIZE);
    b["properties"]["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"]
        [0]["properties"]["subnet"]["id"] = json!(s.subnet_id("other"));
    s.put(&vm, &b)
        .await
        .expect_err(400, "InvalidResourceReference");
    let mut b = vm_body(&subnet, "vm1", SIZE);
    b["properties"]["evictionPolicy"] = json!("Delete");
    s.put(&vm, &b).await.expect_err(
        400,
        "EvictionPolicyCanBeSetOnlyOnLowPriorityVirtualMachines",
    );
    // Nothing half-created.
    assert!(
        s.resources_of("Microsoft.Network/networkInterfaces")
            .await
            .is_empty()
    );
    assert!(s.resources_of("Microsoft.Compute/disks").await.is_empty());
    // A repeated PUT of an existing VM is an update (200), not a second create.
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    let mut b = vm_body(&subnet, "vm1", SIZE);
    b["tags"]["extra"] = json!("1");
    let r = s.put(&vm, &b).await;
    r.expect(200);
    s.wait_op_ok(&r).await;
    assert_eq!(s.get(&vm).await.body["tags"]["extra"], "1");
    assert_eq!(
        s.resources_of("Microsoft.Network/networkInterfaces")
            .await
            .len(),
        1
    );
}
