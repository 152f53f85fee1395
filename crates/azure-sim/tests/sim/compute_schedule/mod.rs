//! Compute Schedule (`Microsoft.ComputeSchedule`, 2025-05-01): bulk create, start, deallocate
//! and delete through the same VM model as single requests; operation states, errors, the
//! retry policy and cancel; validation; throttling.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

mod failures;

const CS_API: &str = "2025-05-01";

/// Fast scheduling; retries far enough apart that only the manual clock reaches them.
pub fn cs_config() -> Value {
    json!({"compute_schedule": {"schedule_delay_ms": 5, "retry_interval_ms": 60_000}})
}

pub async fn cs(s: &Sim, action: &str, body: &Value) -> Resp {
    let path = format!(
        "{}/providers/Microsoft.ComputeSchedule/locations/{LOCATION}/virtualMachines{action}",
        s.sub_path()
    );
    s.send(
        Method::POST,
        &with_api(&path, CS_API),
        Some(&s.token),
        Some(body),
    )
    .await
}

/// A create request for `names` in resource group `rg`: the VM body of `vm_body` as the
/// base profile, each VM's name and NIC in its override.
pub fn create_request(s: &Sim, rg: &str, names: &[&str], retry: Value) -> Value {
    let subnet = s.subnet_id(rg);
    let mut base = vm_body(&subnet, "base", SIZE);
    base["resourcegroupName"] = json!(rg);
    base["computeApiVersion"] = json!("2025-04-01");
    let overrides: Vec<Value> = names
        .iter()
        .map(|n| {
            let per_vm = vm_body(&subnet, n, SIZE);
            json!({"name": n, "properties": {
                "osProfile": {"computerName": n},
                "storageProfile": {"osDisk": per_vm["properties"]["storageProfile"]["osDisk"]},
                "networkProfile": per_vm["properties"]["networkProfile"],
            }})
        })
        .collect();
    json!({
        "resourceConfigParameters": {
            "baseProfile": base,
            "resourceOverrides": overrides,
            "resourceCount": names.len(),
        },
        "executionParameters": {"retryPolicy": retry},
        "correlationid": "create-1",
    })
}

pub fn ids_request(ids: &[String]) -> Value {
    json!({
        "executionParameters": {"retryPolicy": {"retryCount": 0, "retryWindowInMinutes": 5}},
        "resources": {"ids": ids},
        "correlationid": "c-1",
    })
}

pub fn op_ids(r: &Resp) -> Vec<String> {
    r.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {r:#?}"))
        .iter()
        .filter_map(|x| x["operation"]["operationId"].as_str().map(str::to_owned))
        .collect()
}

/// Polls the operations' status until every one is terminal; returns the last answer's
/// operations by id order.
pub async fn wait_terminal(s: &Sim, ids: &[String]) -> Vec<Value> {
    eventually("Compute Schedule operations to finish", async || {
        let r = cs(
            s,
            "GetOperationStatus",
            &json!({"operationIds": ids, "correlationid": "poll"}),
        )
        .await;
        r.expect(200);
        let ops: Vec<Value> = r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["operation"].clone())
            .collect();
        ops.iter()
            .all(|o| {
                matches!(
                    o["state"].as_str(),
                    Some("Succeeded" | "Failed" | "Cancelled")
                )
            })
            .then_some(ops)
    })
    .await
}

#[tokio::test]
async fn bulk_create_builds_each_vm_as_its_put_would_and_bulk_delete_removes_them() {
    let s = spawn_sim(cs_config()).await;
    s.create_network("rg").await;
    let names = ["bulk-0", "bulk-1", "bulk-2"];
    let r = cs(
        &s,
        "ExecuteCreate",
        &create_request(&s, "rg", &names, json!({})),
    )
    .await;
    r.expect(200);
    assert_eq!(r.body["description"], "Create Resource request");
    assert_eq!(r.body["type"], "VirtualMachines");
    assert_eq!(r.body["location"], LOCATION);
    let first = &r.body["results"][0];
    assert!(first["errorCode"].is_null(), "{r:#?}");
    assert_eq!(first["operation"]["opType"], "Create");
    assert_eq!(first["operation"]["state"], "PendingScheduling");
    assert_eq!(first["operation"]["deadlineType"], "InitiateAt");
    assert!(
        first["resourceId"]
            .as_str()
            .unwrap()
            .ends_with("/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/bulk-0")
    );
    // Every call is an ARM write; Compute's headers are not on it.
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );
    assert!(r.header("x-ms-ratelimit-remaining-resource").is_none());
    let ids = op_ids(&r);
    assert_eq!(ids.len(), 3);

    for op in wait_terminal(&s, &ids).await {
        assert_eq!(op["state"], "Succeeded", "{op:#}");
        assert!(op["completedAt"].is_string(), "{op:#}");
    }
    for n in names {
        let vm = s.get(&s.vm_path("rg", n)).await;
        vm.expect(200);
        assert_eq!(
            vm.body["tags"]["renderburst-pool"], "p1",
            "tags from the base profile"
        );
        assert_eq!(vm.body["properties"]["osProfile"]["computerName"], n);
        assert_eq!(s.power_state("rg", n).await.as_deref(), Some("running"));
        s.get(&s.nic_path("rg", &format!("{n}-nic")))
            .await
            .expect(200);
        s.get(&s.disk_path("rg", &format!("{n}-osdisk")))
            .await
            .expect(200);
    }
    let stats = s.stats().await;
    assert_eq!(stats["vm_creates"], 3);
    assert_eq!(stats["vm_creates_repeated"], json!({}));
    assert_eq!(
        stats["by_type"]["Microsoft.ComputeSchedule/virtualMachinesExecuteCreate"]["POST"],
        1
    );
    assert_eq!(stats["compute_schedule"]["requests"]["ExecuteCreate"], 1);
    assert_eq!(stats["compute_schedule"]["operations"]["Create"], 3);

    let vm_ids: Vec<String> = names
        .iter()
        .map(|n| format!("{}{}", s.vm_path("rg", n), ""))
        .collect();
    let r = cs(&s, "ExecuteDelete", &ids_request(&vm_ids)).await;
    r.expect(200);
    assert_eq!(r.body["results"][0]["operation"]["opType"], "Delete");
    for op in wait_terminal(&s, &op_ids(&r)).await {
        assert_eq!(op["state"], "Succeeded", "{op:#}");
    }
    for n in names {
        s.get(&s.vm_path("rg", n)).await.expect(404);
        // deleteOption: Delete took the NIC and the disk along.
        s.get(&s.nic_path("rg", &format!("{n}-nic")))
            .await
            .expect(404);
        s.get(&s.disk_path("rg", &format!("{n}-osdisk")))
            .await
            .expect(404);
    }
}

#[tokio::test]
async fn bulk_deallocate_and_start_change_power_states() {
    let s = spawn_sim(cs_config()).await;
    let subnet = s.create_network("rg").await;
    let mut ids = Vec::new();
    for n in ["p-0", "p-1"] {
        s.create_vm_ok("rg", n, &vm_body(&subnet, n, SIZE)).await;
        ids.push(s.vm_path("rg", n));
    }
    let r = cs(&s, "ExecuteDeallocate", &ids_request(&ids)).await;
    r.expect(200);
    assert_eq!(r.body["description"], "Deallocate Resource request");
    for op in wait_terminal(&s, &op_ids(&r)).await {
        assert_eq!(
            (op["state"].as_str(), op["opType"].as_str()),
            (Some("Succeeded"), Some("Deallocate"))
        );
    }
    for n in ["p-0", "p-1"] {
        assert_eq!(s.power_state("rg", n).await.as_deref(), Some("deallocated"));
    }
    let r = cs(&s, "ExecuteStart", &ids_request(&ids)).await;
    r.expect(200);
    for op in wait_terminal(&s, &op_ids(&r)).await {
        assert_eq!(op["state"], "Succeeded", "{op:#}");
    }
    for n in ["p-0", "p-1"] {
        assert_eq!(s.power_state("rg", n).await.as_deref(), Some("running"));
    }
}

#[tokio::test]
async fn bad_requests_are_refused_whole_with_arm_errors() {
    let s = spawn_sim(cs_config()).await;
    s.create_network("rg").await;
    let vm = s.vm_path("rg", "v");
    let too_many: Vec<String> = (0..101)
        .map(|i| s.vm_path("rg", &format!("v{i}")))
        .collect();
    cs(&s, "ExecuteStart", &ids_request(&too_many))
        .await
        .expect_err(400, "InvalidParameter");
    cs(&s, "ExecuteStart", &ids_request(&[]))
        .await
        .expect_err(400, "InvalidParameter");
    let mut no_correlation = ids_request(std::slice::from_ref(&vm));
    no_correlation
        .as_object_mut()
        .unwrap()
        .remove("correlationid");
    let r = cs(&s, "ExecuteStart", &no_correlation).await;
    r.expect_err(400, "InvalidRequestContent");
    assert!(r.message().contains("correlationid"), "{r:#?}");
    // ...which delete does not require.
    cs(&s, "ExecuteDelete", &no_correlation).await.expect(200);
    for (count, window) in [(8, 30), (-1, 30), (2, 121), (2, 4)] {
        let mut b = ids_request(std::slice::from_ref(&vm));
        b["executionParameters"]["retryPolicy"] =
            json!({"retryCount": count, "retryWindowInMinutes": window});
        let r = cs(&s, "ExecuteDeallocate", &b).await;
        r.expect_err(400, "InvalidParameter");
        assert!(
            r.body["error"]["target"]
                .as_str()
                .unwrap()
                .contains("retryPolicy"),
            "{r:#?}"
        );
    }
    cs(&s, "ExecuteStart", &ids_request(&["vm1".into()]))
        .await
        .expect_err(400, "InvalidParameter");
    cs(&s, "ExecuteStart", &ids_request(&[vm.clone(), vm.clone()]))
        .await
        .expect_err(400, "InvalidParameter");
    cs(&s, "ExecuteStart", &json!({"resources": "nope"}))
        .await
        .expect_err(400, "InvalidRequestContent");
    let mut big = create_request(&s, "rg", &["a"], json!({}));
    big["resourceConfigParameters"]["resourceCount"] = json!(101);
    cs(&s, "ExecuteCreate", &big)
        .await
        .expect_err(400, "InvalidParameter");
    let mut no_params = create_request(&s, "rg", &["a"], json!({}));
    no_params
        .as_object_mut()
        .unwrap()
        .remove("executionParameters");
    cs(&s, "ExecuteCreate", &no_params)
        .await
        .expect_err(400, "InvalidRequestContent");
    let missing_rg = create_request(&s, "nope", &["a"], json!({}));
    cs(&s, "ExecuteCreate", &missing_rg)
        .await
        .expect_err(404, "ResourceGroupNotFound");
    cs(
        &s,
        "ExecuteHibernate",
        &ids_request(std::slice::from_ref(&vm)),
    )
    .await
    .expect_err(400, "InvalidResourceType");
    cs(&s, "ExecuteNothing", &json!({}))
        .await
        .expect_err(400, "InvalidResourceType");
    let path = format!(
        "{}/providers/Microsoft.ComputeSchedule/locations/{LOCATION}/virtualMachinesGetOperationStatus",
        s.sub_path()
    );
    s.send(Method::GET, &with_api(&path, CS_API), Some(&s.token), None)
        .await
        .expect_err(405, "MethodNotAllowed");
    cs(
        &s,
        "GetOperationStatus",
        &json!({"operationIds": [], "correlationid": "x"}),
    )
    .await
    .expect_err(400, "InvalidParameter");
    // Nothing was created by any of it.
    assert!(
        s.resources_of("Microsoft.Compute/virtualMachines")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn vms_the_service_cannot_act_on_are_answered_with_an_error_code_and_no_operation() {
    let s = spawn_sim(json!({"compute_schedule": {"schedule_delay_ms": 600_000}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "here", &vm_body(&subnet, "here", SIZE))
        .await;
    let here = s.vm_path("rg", "here");
    let gone = s.vm_path("rg", "gone");
    let r = cs(
        &s,
        "ExecuteDeallocate",
        &ids_request(&[here.clone(), gone.clone()]),
    )
    .await;
    r.expect(200);
    let results = r.body["results"].as_array().unwrap();
    let missing = results.iter().find(|x| x["resourceId"] == gone).unwrap();
    assert_eq!(missing["errorCode"], "ResourceNotFound");
    assert!(missing["operation"].is_null());
    let pending = op_ids(&r);
    assert_eq!(pending.len(), 1);
    // A second request for a VM whose operation has not finished: a conflict.
    let r = cs(
        &s,
        "ExecuteStart",
        &ids_request(std::slice::from_ref(&here)),
    )
    .await;
    r.expect(200);
    assert_eq!(r.body["results"][0]["errorCode"], "Conflict");
    // Unknown operation ids are answered as such.
    let r = cs(
        &s,
        "GetOperationStatus",
        &json!({"operationIds": ["no-such-op", pending[0]], "correlationid": "x"}),
    )
    .await;
    r.expect(200);
    assert_eq!(r.body["results"][0]["errorCode"], "OperationNotFound");
    assert_eq!(
        r.body["results"][1]["operation"]["state"],
        "PendingScheduling"
    );
    let stats = s.stats().await;
    assert_eq!(stats["compute_schedule"]["rejected"]["ResourceNotFound"], 1);
    assert_eq!(stats["compute_schedule"]["rejected"]["Conflict"], 1);
}
