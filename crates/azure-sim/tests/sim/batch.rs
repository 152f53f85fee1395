//! Azure Batch: accounts and pools on ARM (synchronous PUT with ETag, resize toward targets,
//! retired application licenses, account core quotas, long-running DELETE) and the data
//! plane (list nodes, remove nodes) at the account endpoint.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

fn account_path(s: &Sim, acct: &str) -> String {
    format!(
        "{}/providers/Microsoft.Batch/batchAccounts/{acct}",
        s.rg_path("rg")
    )
}

fn pool_path(s: &Sim, acct: &str, pool: &str) -> String {
    format!("{}/pools/{pool}", account_path(s, acct))
}

fn pool_body(dedicated: u64, spot: u64) -> Value {
    json!({"properties": {
        "vmSize": "STANDARD_D2S_V5",
        "deploymentConfiguration": {"virtualMachineConfiguration": {
            "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
            "nodeAgentSkuId": "batch.node.ubuntu 24.04"
        }},
        "scaleSettings": {"fixedScale": {"targetDedicatedNodes": dedicated, "targetLowPriorityNodes": spot}}
    }})
}

async fn create_account(s: &Sim, acct: &str) -> Value {
    s.create_rg("rg").await;
    let r = s
        .put(&account_path(s, acct), &json!({"location": LOCATION}))
        .await;
    assert!(matches!(r.status, 200 | 201), "{r:#?}");
    r.body
}

/// Polls the pool until it is Steady; returns it.
async fn steady(s: &Sim, path: &str) -> Value {
    eventually(&format!("pool {path} to be Steady"), async || {
        let r = s.get(path).await;
        r.expect(200);
        (r.body["properties"]["allocationState"] == "Steady").then_some(r.body)
    })
    .await
}

fn counts(pool: &Value) -> (u64, u64) {
    (
        pool["properties"]["currentDedicatedNodes"]
            .as_u64()
            .unwrap(),
        pool["properties"]["currentLowPriorityNodes"]
            .as_u64()
            .unwrap(),
    )
}

#[tokio::test]
async fn account_endpoint_is_on_the_simulator() {
    let s = spawn_sim(json!({})).await;
    let acct = create_account(&s, "renderacct").await;
    let port = s.sim.local_addr().port();
    assert_eq!(
        acct["properties"]["accountEndpoint"],
        json!(format!("127.0.0.1:{port}/batch/renderacct"))
    );
    let r = s.get(&account_path(&s, "renderacct")).await;
    r.expect(200);
    assert_eq!(r.body["type"], "Microsoft.Batch/batchAccounts");
    // Account names are lowercase letters and digits.
    s.put(
        &account_path(&s, "Bad_Name"),
        &json!({"location": LOCATION}),
    )
    .await
    .expect_arm_4xx();
}

#[tokio::test]
async fn pool_scales_to_targets_and_nodes_can_be_removed() {
    let s = spawn_sim(json!({})).await;
    create_account(&s, "acct").await;
    let path = pool_path(&s, "acct", "pool1");
    let r = s.put(&path, &pool_body(2, 3)).await;
    r.expect(200);
    let etag = r.header("etag").expect("ETag").to_owned();
    assert_eq!(r.body["etag"], json!(etag));
    assert_eq!(r.body["properties"]["allocationState"], "Resizing");
    let p = steady(&s, &path).await;
    assert_eq!(counts(&p), (2, 3), "{p:#}");
    let fixed = &p["properties"]["scaleSettings"]["fixedScale"];
    assert_eq!(fixed["targetDedicatedNodes"], 2);
    assert_eq!(fixed["targetLowPriorityNodes"], 3);
    assert_eq!(
        p["properties"]["resizeOperationStatus"]["errors"],
        json!([])
    );

    // The data plane, with a Batch token.
    let batch = s.fetch_token(BATCH_SCOPE).await;
    let nodes_url = with_api("/batch/acct/pools/pool1/nodes", BATCH_DATA_API);
    let r = s.send(Method::GET, &nodes_url, Some(&batch), None).await;
    r.expect(200);
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_none()
    );
    let nodes = r.body["value"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 5);
    assert!(nodes.iter().all(|n| n["state"] == "idle"), "{nodes:#?}");
    let dedicated: Vec<String> = nodes
        .iter()
        .filter(|n| n["isDedicated"] == true)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    let spot: Vec<String> = nodes
        .iter()
        .filter(|n| n["isDedicated"] == false)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!((dedicated.len(), spot.len()), (2, 3));
    let victims = vec![dedicated[0].clone(), spot[0].clone()];
    // Slow enough to watch the nodes leave.
    s.set_config(json!({"latency_ms": {"batch_node": 1000}}))
        .await;

    let rm = with_api("/batch/acct/pools/pool1/removenodes", BATCH_DATA_API);
    let r = s
        .send(
            Method::POST,
            &rm,
            Some(&batch),
            Some(&json!({"nodeList": victims, "nodeDeallocationOption": "requeue"})),
        )
        .await;
    r.expect(202);
    // They are leaving, then gone.
    let r = s.send(Method::GET, &nodes_url, Some(&batch), None).await;
    let leaving: Vec<&str> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "leavingpool")
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = victims.iter().map(String::as_str).collect();
    want.sort();
    let mut got = leaving.clone();
    got.sort();
    assert_eq!(got, want, "{r:#?}");
    // Not steady while nodes leave: a second remove is refused.
    s.send(
        Method::POST,
        &rm,
        Some(&batch),
        Some(&json!({"nodeList": [dedicated[1]]})),
    )
    .await
    .expect(409);
    let p = steady(&s, &path).await;
    assert_eq!(counts(&p), (1, 2), "{p:#}");
    let fixed = &p["properties"]["scaleSettings"]["fixedScale"];
    assert_eq!(fixed["targetDedicatedNodes"], 1);
    assert_eq!(fixed["targetLowPriorityNodes"], 2);
    let r = s.send(Method::GET, &nodes_url, Some(&batch), None).await;
    let ids: Vec<&str> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(victims.iter().all(|v| !ids.contains(&v.as_str())));
    // Removing a node that is gone.
    let r = s
        .send(
            Method::POST,
            &rm,
            Some(&batch),
            Some(&json!({"nodeList": [victims[0]]})),
        )
        .await;
    assert_eq!(r.status, 404, "{r:#?}");
}

#[tokio::test]
async fn etag_if_match_and_scale_down() {
    let s = spawn_sim(json!({})).await;
    create_account(&s, "acct").await;
    let path = pool_path(&s, "acct", "pool1");
    let r = s.put(&path, &pool_body(1, 0)).await;
    r.expect(200);
    let etag = r.header("etag").unwrap().to_owned();
    steady(&s, &path).await;
    // A stale ETag: 412, nothing changes.
    let url = s.url(&with_api(&path, BATCH_API));
    let r = s
        .http
        .patch(&url)
        .bearer_auth(&s.token)
        .header("if-match", "W/\"0x8DC0000000000DEAD\"")
        .json(&pool_body(4, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body:#}");
    let p = s.get(&path).await;
    assert_eq!(
        p.body["properties"]["scaleSettings"]["fixedScale"]["targetDedicatedNodes"],
        1
    );
    // The current ETag: 200 with a new ETag.
    let r = s
        .http
        .patch(&url)
        .bearer_auth(&s.token)
        .header("if-match", &etag)
        .json(&pool_body(3, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(counts(&steady(&s, &path).await), (3, 0));
    // Scale down through ARM.
    s.put(&path, &pool_body(0, 0)).await.expect(200);
    assert_eq!(counts(&steady(&s, &path).await), (0, 0));
}

#[tokio::test]
async fn application_licenses_are_retired() {
    let s = spawn_sim(json!({})).await;
    create_account(&s, "acct").await;
    let mut b = pool_body(1, 0);
    b["properties"]["applicationLicenses"] = json!(["maya", "arnold"]);
    let r = s.put(&pool_path(&s, "acct", "pool1"), &b).await;
    r.expect(400);
    assert!(r.message().contains("2024"), "{}", r.message());
    assert!(r.message().to_lowercase().contains("retired"));
    s.get(&pool_path(&s, "acct", "pool1"))
        .await
        .expect_err(404, "ResourceNotFound");
}

#[tokio::test]
async fn account_spot_quota_leaves_resize_errors() {
    let s = spawn_sim(json!({"quota": {"batch_spot_vcpus": 4}})).await;
    create_account(&s, "acct").await;
    let path = pool_path(&s, "acct", "pool1");
    s.put(&path, &pool_body(1, 3)).await.expect(200);
    let p = steady(&s, &path).await;
    let (d, spot) = counts(&p);
    assert_eq!(d, 1);
    assert!(spot < 3, "{p:#}");
    assert_eq!(spot, 2, "4 vCPUs hold two 2-vCPU nodes");
    let errors = p["properties"]["resizeOperationStatus"]["errors"]
        .as_array()
        .unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["code"] == "AccountLowPriorityCoreQuotaReached"),
        "{errors:#?}"
    );
    assert_eq!(
        p["properties"]["scaleSettings"]["fixedScale"]["targetLowPriorityNodes"],
        3
    );
}

#[tokio::test]
async fn pool_delete_is_long_running() {
    let s = spawn_sim(json!({})).await;
    create_account(&s, "acct").await;
    let path = pool_path(&s, "acct", "pool1");
    s.put(&path, &pool_body(1, 0)).await.expect(200);
    steady(&s, &path).await;
    // Slow enough to watch the delete run.
    s.set_config(json!({"latency_ms": {"batch_node": 1000}}))
        .await;
    let r = s.delete(&path).await;
    r.expect(202);
    let loc = r.header("location").expect("Location").to_owned();
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    s.get(&loc).await.expect(202);
    let p = s.get(&path).await;
    p.expect(200);
    assert_eq!(p.body["properties"]["provisioningState"], "Deleting");
    // Updating a pool being deleted is refused.
    s.put(&path, &pool_body(2, 0)).await.expect_arm_4xx();
    let done = s.poll_location(&loc).await;
    assert!(matches!(done.status, 200 | 204), "{done:#?}");
    s.get(&path).await.expect_err(404, "ResourceNotFound");
    s.delete(&path).await.expect(204);
    let batch = s.fetch_token(BATCH_SCOPE).await;
    let r = s
        .send(
            Method::GET,
            &with_api("/batch/acct/pools/pool1/nodes", BATCH_DATA_API),
            Some(&batch),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn preempted_spot_nodes_are_reported_and_reallocated_in_place() {
    let s = spawn_sim(json!({"latency_ms": {"batch_node": 50, "eviction": 300}})).await;
    create_account(&s, "acct").await;
    let path = pool_path(&s, "acct", "pool1");
    s.put(&path, &pool_body(1, 3)).await.expect(200);
    steady(&s, &path).await;
    let r = s
        .send(
            Method::POST,
            "/_sim/batch/preempt",
            None,
            Some(&json!({"count": 5, "pool": "pool1"})),
        )
        .await;
    r.expect(200);
    let preempted: Vec<String> = r.body["preempted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(preempted.len(), 3, "only the Spot nodes: {preempted:?}");
    assert_eq!(s.stats().await["batch_preemptions"], 3);
    // Preempted nodes keep counting and the pool stays Steady (no resize is running).
    let p = s.get(&path).await.body;
    assert_eq!(p["properties"]["allocationState"], "Steady", "{p:#}");
    assert_eq!(counts(&p), (1, 3));
    let batch = s.fetch_token(BATCH_SCOPE).await;
    let nodes_url = with_api("/batch/acct/pools/pool1/nodes", BATCH_DATA_API);
    let r = s.send(Method::GET, &nodes_url, Some(&batch), None).await;
    let states: Vec<(String, String)> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for id in &preempted {
        assert!(
            states.contains(&(id.clone(), "preempted".into())),
            "{states:?}"
        );
    }
    // Batch reallocates them under the same ids.
    eventually("the preempted nodes to be idle again", async || {
        let r = s.send(Method::GET, &nodes_url, Some(&batch), None).await;
        let nodes = r.body["value"].as_array().unwrap().clone();
        (nodes.len() == 4 && nodes.iter().all(|n| n["state"] == "idle")).then_some(())
    })
    .await;
    // Bad bodies name the field.
    let r = s
        .send(
            Method::POST,
            "/_sim/batch/preempt",
            None,
            Some(&json!({"count": -1})),
        )
        .await;
    r.expect(400);
    assert_eq!(r.body["error"]["field"], "count");
}

#[tokio::test]
async fn a_resize_after_quota_is_raised_reaches_the_target() {
    let s = spawn_sim(json!({"quota": {"batch_spot_vcpus": 4}})).await;
    create_account(&s, "acct").await;
    let path = pool_path(&s, "acct", "pool1");
    s.put(&path, &pool_body(0, 4)).await.expect(200);
    let p = steady(&s, &path).await;
    assert_eq!(counts(&p), (0, 2));
    s.set_config(json!({"quota": {"batch_spot_vcpus": 100}}))
        .await;
    // The same targets again: Batch tries once more.
    s.patch(&path, &json!({"properties": {"scaleSettings": {"fixedScale": {
        "targetDedicatedNodes": 0, "targetLowPriorityNodes": 4, "nodeDeallocationOption": "TaskCompletion"}}}}))
        .await
        .expect(200);
    let p = steady(&s, &path).await;
    assert_eq!(counts(&p), (0, 4));
    assert_eq!(
        p["properties"]["resizeOperationStatus"]["errors"],
        json!([])
    );
    assert_eq!(
        p["properties"]["scaleSettings"]["fixedScale"]["nodeDeallocationOption"],
        "TaskCompletion"
    );
}
