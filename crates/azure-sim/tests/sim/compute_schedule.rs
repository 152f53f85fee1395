//! Compute Schedule (`Microsoft.ComputeSchedule`, 2025-05-01): bulk create, start, deallocate
//! and delete through the same VM model as single requests; operation states, errors, the
//! retry policy and cancel; validation; throttling.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

const CS_API: &str = "2025-05-01";

/// Fast scheduling; retries far enough apart that only the manual clock reaches them.
fn cs_config() -> Value {
    json!({"compute_schedule": {"schedule_delay_ms": 5, "retry_interval_ms": 60_000}})
}

async fn cs(s: &Sim, action: &str, body: &Value) -> Resp {
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
fn create_request(s: &Sim, rg: &str, names: &[&str], retry: Value) -> Value {
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

fn ids_request(ids: &[String]) -> Value {
    json!({
        "executionParameters": {"retryPolicy": {"retryCount": 0, "retryWindowInMinutes": 5}},
        "resources": {"ids": ids},
        "correlationid": "c-1",
    })
}

fn op_ids(r: &Resp) -> Vec<String> {
    r.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {r:#?}"))
        .iter()
        .filter_map(|x| x["operation"]["operationId"].as_str().map(str::to_owned))
        .collect()
}

/// Polls the operations' status until every one is terminal; returns the last answer's
/// operations by id order.
async fn wait_terminal(s: &Sim, ids: &[String]) -> Vec<Value> {
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

#[tokio::test]
async fn capacity_and_quota_fail_per_vm_and_errors_name_each_attempt() {
    let s = spawn_sim(
        json!({"compute_schedule": {"schedule_delay_ms": 5}, "capacity": {SIZE: 1},
               "quota": {"families": {"standardDSv5Family": 4}}}),
    )
    .await;
    s.create_network("rg").await;
    let r = cs(
        &s,
        "ExecuteCreate",
        &create_request(&s, "rg", &["c-0", "c-1"], json!({"retryCount": 0})),
    )
    .await;
    r.expect(200);
    let ids = op_ids(&r);
    let ops = wait_terminal(&s, &ids).await;
    let states: Vec<&str> = ops.iter().map(|o| o["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Succeeded", "Failed"], "{ops:#?}");
    assert_eq!(
        ops[1]["resourceOperationError"]["errorCode"],
        "AllocationFailed"
    );
    // The failed VM stays, in provisioning state Failed, as after a failed PUT.
    let vm = s.get(&s.vm_path("rg", "c-1")).await;
    vm.expect(200);
    assert_eq!(vm.body["properties"]["provisioningState"], "Failed");
    let r = cs(&s, "GetOperationErrors", &json!({"operationIds": [ids[1]]})).await;
    r.expect(200);
    let res = &r.body["results"][0];
    assert_eq!(res["operationId"], ids[1].as_str());
    assert!(res["creationTime"].is_string() && res["activationTime"].is_string());
    let errors = res["operationErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["errorCode"], "AllocationFailed");
    assert!(errors[0]["crpOperationId"].is_string());
    assert_eq!(
        errors[0]["azureOperationName"],
        "Microsoft.Compute/virtualMachines/write"
    );
    assert_eq!(s.stats().await["failures_reported"]["AllocationFailed"], 1);

    // Quota: the family holds 4 vCPUs, two running D2s_v5 take them all.
    s.set_config(json!({"capacity": {SIZE: 100}})).await;
    let r = cs(
        &s,
        "ExecuteCreate",
        &create_request(
            &s,
            "rg",
            &["q-0", "q-1"],
            json!({"retryCount": 3, "retryWindowInMinutes": 30}),
        ),
    )
    .await;
    let ops = wait_terminal(&s, &op_ids(&r)).await;
    let ok = ops.iter().filter(|o| o["state"] == "Succeeded").count();
    let quota: Vec<&Value> = ops.iter().filter(|o| o["state"] == "Failed").collect();
    assert_eq!((ok, quota.len()), (1, 1), "{ops:#?}");
    let err = &quota[0]["resourceOperationError"];
    assert_eq!(err["errorCode"], "OperationNotAllowed");
    assert!(
        err["errorDetails"]
            .as_str()
            .unwrap()
            .contains("Family Cores quota"),
        "{err:#}"
    );
    // Quota is not transient: no retry was spent on it.
    assert_eq!(s.stats().await["compute_schedule"]["retries"], 0);
}

#[tokio::test]
async fn the_retry_policy_tries_again_within_its_window() {
    let s = spawn_sim(
        json!({"compute_schedule": {"schedule_delay_ms": 5, "retry_interval_ms": 60_000},
                              "capacity": {SIZE: 0}}),
    )
    .await;
    s.create_network("rg").await;
    let req = create_request(
        &s,
        "rg",
        &["r-0"],
        json!({"retryCount": 2, "retryWindowInMinutes": 5}),
    );
    let r = cs(&s, "ExecuteCreate", &req).await;
    let ids = op_ids(&r);
    assert_eq!(
        r.body["results"][0]["operation"]["retryPolicy"]["retryCount"],
        2
    );
    // The first attempt fails for want of capacity; the operation waits for its retry.
    eventually("the first attempt to fail", async || {
        let r = cs(&s, "GetOperationErrors", &json!({"operationIds": ids})).await;
        (r.body["results"][0]["operationErrors"]
            .as_array()
            .map(Vec::len)
            == Some(1))
        .then_some(())
    })
    .await;
    let r = cs(
        &s,
        "GetOperationStatus",
        &json!({"operationIds": ids, "correlationid": "x"}),
    )
    .await;
    assert_eq!(
        r.body["results"][0]["operation"]["state"],
        "PendingScheduling"
    );
    // Capacity comes back; a minute later the retry creates the VM (the same VM: one create).
    s.set_config(json!({"capacity": {SIZE: 10}})).await;
    s.sim.advance_clock(Duration::from_secs(61));
    let ops = wait_terminal(&s, &ids).await;
    assert_eq!(ops[0]["state"], "Succeeded", "{ops:#?}");
    assert_eq!(s.power_state("rg", "r-0").await.as_deref(), Some("running"));
    let stats = s.stats().await;
    assert_eq!(stats["compute_schedule"]["retries"], 1);
    assert_eq!(stats["vm_creates"], 1);

    // With no capacity, retries stop at the end of the window: a 4-minute interval leaves
    // room for one retry in 5 minutes.
    s.set_config(
        json!({"capacity": {SIZE: 1}, "compute_schedule": {"retry_interval_ms": 240_000}}),
    )
    .await;
    let req = create_request(
        &s,
        "rg",
        &["r-1"],
        json!({"retryCount": 7, "retryWindowInMinutes": 5}),
    );
    let ids = op_ids(&cs(&s, "ExecuteCreate", &req).await);
    for attempts in 1..=2 {
        eventually("an attempt to fail", async || {
            let r = cs(&s, "GetOperationErrors", &json!({"operationIds": ids})).await;
            let n = r.body["results"][0]["operationErrors"]
                .as_array()
                .map(Vec::len);
            (n == Some(attempts)).then_some(())
        })
        .await;
        s.sim.advance_clock(Duration::from_secs(241));
    }
    let ops = wait_terminal(&s, &ids).await;
    assert_eq!(ops[0]["state"], "Failed", "{ops:#?}");
    let r = cs(&s, "GetOperationErrors", &json!({"operationIds": ids})).await;
    assert_eq!(
        r.body["results"][0]["operationErrors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn cancel_stops_operations_that_have_not_started() {
    let s = spawn_sim(json!({"compute_schedule": {"schedule_delay_ms": 600_000}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "k", &vm_body(&subnet, "k", SIZE))
        .await;
    let r = cs(
        &s,
        "ExecuteDeallocate",
        &ids_request(&[s.vm_path("rg", "k")]),
    )
    .await;
    let ids = op_ids(&r);
    let r = cs(
        &s,
        "CancelOperations",
        &json!({"operationIds": [ids[0], "unknown"], "correlationid": "x"}),
    )
    .await;
    r.expect(200);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only what was cancelled: {r:#?}");
    let op = &results[0]["operation"];
    assert_eq!(op["state"], "Cancelled");
    assert_eq!(
        op["resourceOperationError"]["errorCode"],
        "OperationCancelledByUser"
    );
    assert!(op["completedAt"].is_string());
    // Cancelled for good: the deadline passing changes nothing, the VM keeps running.
    s.sim.advance_clock(Duration::from_secs(700));
    let ops = wait_terminal(&s, &ids).await;
    assert_eq!(ops[0]["state"], "Cancelled");
    assert_eq!(s.power_state("rg", "k").await.as_deref(), Some("running"));
    cs(&s, "CancelOperations", &json!({"operationIds": ids}))
        .await
        .expect_err(400, "InvalidRequestContent");
}

#[tokio::test]
async fn bulk_calls_take_arm_writes_and_vms_wait_for_compute_tokens_without_429() {
    // A Put VM bucket of one token refilling one every three minutes (1/1500 of Azure's).
    let s = spawn_sim(json!({"compute_schedule": {"schedule_delay_ms": 5},
                              "limits": {"compute_factor": 0.000_666_7}}))
    .await;
    s.create_network("rg").await;
    let r = cs(
        &s,
        "ExecuteCreate",
        &create_request(&s, "rg", &["t-0", "t-1"], json!({})),
    )
    .await;
    let ids = op_ids(&r);
    // The first VM takes the token; the second waits for the next one instead of failing.
    eventually("the first VM to be created", async || {
        let r = cs(
            &s,
            "GetOperationStatus",
            &json!({"operationIds": ids, "correlationid": "x"}),
        )
        .await;
        (r.body["results"][0]["operation"]["state"] == "Succeeded").then_some(())
    })
    .await;
    let r = cs(
        &s,
        "GetOperationStatus",
        &json!({"operationIds": ids, "correlationid": "x"}),
    )
    .await;
    assert_eq!(
        r.body["results"][1]["operation"]["state"],
        "PendingScheduling"
    );
    // A direct PUT meanwhile finds Compute's bucket spent.
    let subnet = s.subnet_id("rg");
    s.put(
        &s.vm_path("rg", "direct"),
        &vm_body(&subnet, "direct", SIZE),
    )
    .await
    .expect_err(429, "OperationNotAllowed");
    s.sim.advance_clock(Duration::from_secs(200));
    let ops = wait_terminal(&s, &ids).await;
    assert_eq!(ops[1]["state"], "Succeeded", "{ops:#?}");
    assert_eq!(
        s.stats().await["throttled_429"],
        1,
        "only the direct PUT was refused"
    );

    // Each call is one ARM write: three writes in the bucket, the fourth call waits.
    s.set_config(json!({"limits": {"writes_bucket": 3, "writes_per_s": 0.01}}))
        .await;
    for _ in 0..3 {
        cs(
            &s,
            "GetOperationStatus",
            &json!({"operationIds": ids, "correlationid": "x"}),
        )
        .await
        .expect(200);
    }
    cs(
        &s,
        "GetOperationStatus",
        &json!({"operationIds": ids, "correlationid": "x"}),
    )
    .await
    .expect_err(429, "SubscriptionRequestsThrottled");
}
