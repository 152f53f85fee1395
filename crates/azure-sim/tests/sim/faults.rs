//! Injected faults: 5xx, 429, dropped connections and failed operations, each counted; a
//! retrying client gets through at moderate rates and the world stays consistent; the control
//! API and Entra are never faulted.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

async fn faults_injected(s: &Sim) -> u64 {
    s.stats().await["faults_injected"].as_u64().unwrap()
}

#[tokio::test]
async fn http_5xx_faults() {
    let s = spawn_sim(json!({})).await;
    s.create_rg("rg").await;
    s.set_config(json!({"faults": {"http_5xx_rate": 1.0}}))
        .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = s.get(&s.rg_path("rg")).await;
        assert!(matches!(r.status, 500 | 503), "{r:#?}");
        assert!(!r.code().is_empty() && !r.message().is_empty(), "{r:#?}");
        seen.insert(r.status);
    }
    // Writes too.
    let r = s
        .put(&s.rg_path("rg2"), &json!({"location": LOCATION}))
        .await;
    assert!(matches!(r.status, 500 | 503), "{r:#?}");
    assert_eq!(faults_injected(&s).await, 21);
    s.set_config(json!({"faults": {"http_5xx_rate": 0.0}}))
        .await;
    s.get(&s.rg_path("rg")).await.expect(200);
    s.get(&s.rg_path("rg2")).await.expect(404);
    assert!(!seen.is_empty());
}

#[tokio::test]
async fn http_429_faults() {
    let s = spawn_sim(json!({})).await;
    s.set_config(json!({"faults": {"http_429_rate": 1.0}}))
        .await;
    for _ in 0..5 {
        let r = s.get(&format!("{}/resourcegroups", s.sub_path())).await;
        r.expect(429);
        assert!(!r.code().is_empty(), "{r:#?}");
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(wait >= 1);
    }
    let st = s.stats().await;
    assert_eq!(st["faults_injected"], 5);
    assert_eq!(st["throttled_429"], 5);
}

#[tokio::test]
async fn dropped_connections() {
    let s = spawn_sim(json!({})).await;
    s.create_rg("rg").await;
    s.set_config(json!({"faults": {"drop_rate": 1.0}})).await;
    for _ in 0..6 {
        let r = s
            .try_send(
                Method::GET,
                &with_api(&s.rg_path("rg"), API),
                Some(&s.token),
                None,
            )
            .await;
        assert!(r.is_err(), "expected a transport error, got {r:#?}");
    }
    let r = s
        .try_send(
            Method::PUT,
            &with_api(&s.rg_path("rg2"), API),
            Some(&s.token),
            Some(&json!({"location": LOCATION})),
        )
        .await;
    assert!(r.is_err(), "{r:#?}");
    assert_eq!(faults_injected(&s).await, 7);
    // The same client keeps working once the faults stop.
    s.set_config(json!({"faults": {"drop_rate": 0.0}})).await;
    s.get(&s.rg_path("rg")).await.expect(200);
}

#[tokio::test]
async fn operation_faults_fail_the_create() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    s.set_config(json!({"faults": {"operation_fail_rate": 1.0}}))
        .await;
    let before = faults_injected(&s).await;
    let r = s
        .put(&s.vm_path("rg", "vm1"), &vm_body(&subnet, "vm1", SIZE))
        .await;
    r.expect(201);
    let op = s.poll_op(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(op["status"], "Failed", "{op:#}");
    assert!(!op["error"]["code"].as_str().unwrap().is_empty());
    let vm = s.get(&s.vm_path("rg", "vm1")).await;
    assert_eq!(vm.body["properties"]["provisioningState"], "Failed");
    // Its NIC stays with it until it is deleted.
    s.get(&s.nic_path("rg", "vm1-nic")).await.expect(200);
    assert_eq!(faults_injected(&s).await, before + 1);
    assert!(s.stats().await["operations_failed"].as_u64().unwrap() >= 1);
    // Failed VMs can be deleted, taking their NIC and disk.
    s.set_config(json!({"faults": {"operation_fail_rate": 0.0}}))
        .await;
    let r = s.delete(&s.vm_path("rg", "vm1")).await;
    s.wait_op_ok(&r).await;
    s.get(&s.nic_path("rg", "vm1-nic")).await.expect(404);
}

#[tokio::test]
async fn control_api_and_entra_are_never_faulted() {
    let s = spawn_sim(json!({})).await;
    s.set_config(json!({"faults": {"http_5xx_rate": 1.0, "http_429_rate": 1.0, "drop_rate": 1.0}}))
        .await;
    for _ in 0..10 {
        s.stats().await;
        s.resources().await;
        s.sim_get("/_sim/config").await;
        s.fetch_token(ARM_SCOPE).await;
        s.send(
            Method::GET,
            &format!("/{}/v2.0/.well-known/openid-configuration", s.tenant),
            None,
            None,
        )
        .await
        .expect(200);
    }
    assert_eq!(faults_injected(&s).await, 0);
}

/// Retries an ARM request through 5xx, 429 and dropped connections (ignoring Retry-After to
/// keep the test fast); returns the first other answer.
async fn retrying(s: &Sim, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let url = with_api(
        path,
        if path.contains("Microsoft.Compute") {
            COMPUTE_API
        } else if path.contains("Microsoft.Network") {
            "2026-03-01"
        } else {
            API
        },
    );
    for _ in 0..200 {
        match s.try_send(method.clone(), &url, Some(&s.token), body).await {
            Ok(r) if !matches!(r.status, 429 | 500 | 502 | 503) => return r,
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
    panic!("{method} {path}: no success in 200 attempts");
}

async fn retry_poll_op(s: &Sim, url: &str) -> Value {
    eventually("the operation to finish through faults", async || {
        let r = retrying(s, Method::GET, url, None).await;
        r.expect(200);
        let st = r.body["status"].as_str().unwrap().to_owned();
        (st != "InProgress").then_some(r.body)
    })
    .await
}

#[tokio::test]
async fn retrying_client_gets_through_and_the_world_stays_consistent() {
    let s = spawn_sim(json!({})).await;
    s.set_config(json!({"faults": {"http_5xx_rate": 0.3, "http_429_rate": 0.3, "drop_rate": 0.3}}))
        .await;
    let rg = s.rg_path("rg");
    let r = retrying(&s, Method::PUT, &rg, Some(&json!({"location": LOCATION}))).await;
    assert!(matches!(r.status, 200 | 201), "{r:#?}");
    let vnet = format!("{rg}/providers/Microsoft.Network/virtualNetworks/vnet");
    let r = retrying(
        &s,
        Method::PUT,
        &vnet,
        Some(&json!({"location": LOCATION, "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/20"}}]}})),
    )
    .await;
    assert!(matches!(r.status, 200 | 201), "{r:#?}");
    let subnet = s.subnet_id("rg");
    for i in 0..3 {
        let name = format!("vm{i}");
        let path = s.vm_path("rg", &name);
        // A PUT whose answer was lost is retried: the retry answers 200/201 for the same VM.
        let r = retrying(&s, Method::PUT, &path, Some(&vm_body(&subnet, &name, SIZE))).await;
        assert!(matches!(r.status, 200 | 201), "{r:#?}");
        let op = retry_poll_op(&s, r.header("azure-asyncoperation").unwrap()).await;
        assert_eq!(op["status"], "Succeeded", "{op:#}");
    }
    // Delete one, through faults as well.
    let r = retrying(&s, Method::DELETE, &s.vm_path("rg", "vm0"), None).await;
    if r.status == 202 {
        let op = retry_poll_op(&s, r.header("azure-asyncoperation").unwrap()).await;
        assert_eq!(op["status"], "Succeeded");
    } else {
        r.expect(204);
    }
    let r = retrying(&s, Method::DELETE, &s.vm_path("rg", "vm0"), None).await;
    r.expect(204);
    assert!(faults_injected(&s).await > 0);

    // The world as the control API sees it: exactly what the client asked for.
    s.set_config(json!({"faults": {"http_5xx_rate": 0.0, "http_429_rate": 0.0, "drop_rate": 0.0}}))
        .await;
    let all = s.resources().await;
    let count = |t: &str| all.iter().filter(|r| r["type"] == t).count();
    assert_eq!(count("Microsoft.Resources/resourceGroups"), 1);
    assert_eq!(count("Microsoft.Network/virtualNetworks"), 1);
    assert_eq!(count("Microsoft.Network/virtualNetworks/subnets"), 1);
    assert_eq!(count("Microsoft.Compute/virtualMachines"), 2, "{all:#?}");
    assert_eq!(count("Microsoft.Network/networkInterfaces"), 2, "{all:#?}");
    assert_eq!(count("Microsoft.Compute/disks"), 2, "{all:#?}");
    assert_eq!(all.len(), 9);
    for r in all
        .iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachines")
    {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["properties"]["provisioningState"], "Succeeded");
        let nic = s.get(&s.nic_path("rg", &format!("{name}-nic"))).await;
        assert!(
            nic.body["properties"]["virtualMachine"]["id"]
                .as_str()
                .unwrap()
                .ends_with(name)
        );
        let disk = s.get(&s.disk_path("rg", &format!("{name}-osdisk"))).await;
        assert!(disk.body["managedBy"].as_str().unwrap().ends_with(name));
    }
}

/// `/_sim/stats` counts VM creates by name (an idempotent retry of the PUT is no create; a
/// create after a delete is, and the name shows in `vm_creates_repeated`) and failed
/// operations once per operation when a poll of its status answers the failure.
#[tokio::test]
async fn creates_by_name_and_reported_failures() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let body = vm_body(&subnet, "vm1", SIZE);
    let r = s.put(&s.vm_path("rg", "vm1"), &body).await;
    r.expect(201);
    s.put(&s.vm_path("rg", "vm1"), &body).await; // a retry of the same create
    s.wait_op_ok(&r).await;
    let st = s.stats().await;
    assert_eq!(st["vm_creates"], 1, "{st:#}");
    assert_eq!(st["vm_creates_repeated"], json!({}), "{st:#}");
    let d = s.delete(&s.vm_path("rg", "vm1")).await;
    s.wait_op_ok(&d).await;
    s.set_config(json!({"faults": {"operation_fail_rate": 1.0}}))
        .await;
    let r = s.put(&s.vm_path("rg", "vm1"), &body).await;
    r.expect(201);
    let st = s.stats().await;
    assert_eq!(st["vm_creates"], 2, "{st:#}");
    assert_eq!(st["vm_creates_repeated"], json!({"vm1": 2}), "{st:#}");
    assert_eq!(st["failures_reported"], json!({}), "not polled yet: {st:#}");
    let aao = r.header("azure-asyncoperation").unwrap().to_owned();
    let op = s.poll_op(&aao).await;
    assert_eq!(op["status"], "Failed", "{op:#}");
    s.poll_op(&aao).await; // polled again: still one failure reported
    let code = op["error"]["code"].as_str().unwrap().to_owned();
    let st = s.stats().await;
    assert_eq!(st["failures_reported"], json!({code: 1}), "{st:#}");
    // vm1's first create succeeded, so its second create stays a repeat.
    assert_eq!(st["vm_creates_repeated"], json!({"vm1": 2}), "{st:#}");

    // A name whose create failed may be created again once the failed VM is deleted: that
    // reuse is no repeat (clients reuse reserved names instead of burning new ones).
    let body2 = vm_body(&subnet, "vm2", SIZE);
    let r = s.put(&s.vm_path("rg", "vm2"), &body2).await;
    r.expect(201);
    let aao = r.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(s.poll_op(&aao).await["status"], "Failed");
    let d = s.delete(&s.vm_path("rg", "vm2")).await;
    s.wait_op_ok(&d).await;
    s.set_config(json!({"faults": {"operation_fail_rate": 0.0}}))
        .await;
    let r = s.put(&s.vm_path("rg", "vm2"), &body2).await;
    r.expect(201);
    s.wait_op_ok(&r).await;
    let st = s.stats().await;
    assert_eq!(st["vm_creates_repeated"], json!({"vm1": 2}), "{st:#}");
    // What happened to each name whose create failed, in order: vm2 was deleted before its
    // name was created again.
    assert_eq!(
        st["vm_failed_lifecycle"],
        json!({"vm1": ["create", "create failed"],
               "vm2": ["create", "create failed", "delete", "deleted", "create", "create succeeded"]}),
        "{st:#}"
    );
}
