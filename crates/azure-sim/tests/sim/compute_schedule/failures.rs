//! Compute Schedule when things go wrong or wait: capacity and quota per VM, the retry
//! policy, cancel, and throttling.

use std::time::Duration;

use serde_json::{Value, json};

use super::{create_request, cs, ids_request, op_ids, wait_terminal};
use crate::common::*;

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
