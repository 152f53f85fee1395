//! The control API: resources, stats (shape as in DESIGN.md), config merge with unknown keys
//! refused, and reset.

use reqwest::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn resources_lists_the_whole_world() {
    let s = spawn_sim(json!({})).await;
    assert!(s.resources().await.is_empty());
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    let all = s.resources().await;
    let mut types: Vec<&str> = all.iter().map(|r| r["type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "Microsoft.Compute/disks",
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Network/networkInterfaces",
            "Microsoft.Network/virtualNetworks",
            "Microsoft.Network/virtualNetworks/subnets",
            "Microsoft.Resources/resourceGroups",
        ]
    );
    for r in &all {
        assert!(r["id"].as_str().unwrap().starts_with("/subscriptions/"));
        assert!(r["properties"].is_object(), "{r:#}");
    }
    let vm = all
        .iter()
        .find(|r| r["type"] == "Microsoft.Compute/virtualMachines")
        .unwrap();
    assert_eq!(vm["tags"]["renderburst-pool"], "p1");
    assert_eq!(power_of(vm).as_deref(), Some("running"));
}

#[tokio::test]
async fn stats_shape() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    s.vm_action_ok("rg", "vm1", "deallocate").await;
    s.patch(&s.nic_path("rg", "vm1-nic"), &json!({"tags": {"a": "b"}}))
        .await
        .expect(200);
    let r = s.delete(&s.vm_path("rg", "vm1")).await;
    s.wait_op_ok(&r).await;
    let st = s.stats().await;
    let req = st["requests"].as_object().expect("requests object");
    for m in ["GET", "PUT", "PATCH", "POST", "DELETE"] {
        assert!(req[m].is_u64(), "requests.{m}: {st:#}");
    }
    assert_eq!(req["PUT"], 3, "RG, VNet, VM: {st:#}");
    assert_eq!(req["POST"], 1);
    assert_eq!(req["PATCH"], 1);
    assert_eq!(req["DELETE"], 1);
    assert!(req["GET"].as_u64().unwrap() >= 2);
    let by_type = st["by_type"].as_object().expect("by_type object");
    let vms = &by_type["Microsoft.Compute/virtualMachines"];
    assert_eq!(vms["PUT"], 1, "{st:#}");
    assert_eq!(vms["POST"], 1);
    assert_eq!(vms["DELETE"], 1);
    assert_eq!(by_type["Microsoft.Network/networkInterfaces"]["PATCH"], 1);
    assert_eq!(by_type["Microsoft.Resources/resourceGroups"]["PUT"], 1);
    assert_eq!(st["throttled_429"], 0);
    assert_eq!(st["faults_injected"], 0);
}

/// `last_write_unix_ms` moves with writes only (reads leave it), and `vm_power` counts VMs
/// by power state: what the reaction and converge benchmarks poll.
#[tokio::test]
async fn stats_time_the_last_write_and_count_vms_by_power() {
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let s = spawn_sim(json!({})).await;
    let st = s.stats().await;
    assert_eq!(st["last_write_unix_ms"], json!(null), "{st:#}");
    assert_eq!(st["vm_power"], json!({}), "{st:#}");
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    s.create_vm_ok("rg", "vm2", &vm_body(&subnet, "vm2", SIZE))
        .await;
    let before = unix_ms();
    s.vm_action_ok("rg", "vm1", "deallocate").await;
    let after = unix_ms();
    let st = s.stats().await;
    let last = st["last_write_unix_ms"]
        .as_u64()
        .expect("a time after writes");
    assert!(
        (before..=after).contains(&last),
        "{before} <= {last} <= {after}"
    );
    assert_eq!(st["vm_power"], json!({"deallocated": 1, "running": 1}));
    // Reads do not move it.
    s.get(&s.vm_path("rg", "vm1")).await.expect(200);
    assert_eq!(s.stats().await["last_write_unix_ms"], last);
}

/// `/_sim/config` needs no token, so it never shows the client secret: neither on GET nor
/// in a PUT's answer. Putting back what a GET showed leaves the secret as it was.
#[tokio::test]
async fn config_never_shows_the_client_secret() {
    let s = spawn_sim(json!({"identity": {"client_secret": "do-not-show-me"}})).await;
    assert_eq!(s.secret, "do-not-show-me");
    let shown = s.send(Method::GET, "/_sim/config", None, None).await;
    shown.expect(200);
    assert!(!shown.text.contains("do-not-show-me"), "{}", shown.text);
    assert!(shown.body["identity"].get("client_secret").is_none());
    assert_eq!(shown.body["identity"]["client_id"], json!(s.client_id));
    let put = s
        .send(Method::PUT, "/_sim/config", None, Some(&shown.body))
        .await;
    put.expect(200);
    assert!(!put.text.contains("do-not-show-me"), "{}", put.text);
    // The secret still works, and only it.
    s.fetch_token(ARM_SCOPE).await;
    s.token_request(&s.tenant, "wrong", ARM_SCOPE)
        .await
        .expect(401);
    // A PUT may still set it (write-only).
    let put = s
        .send(
            Method::PUT,
            "/_sim/config",
            None,
            Some(&json!({"identity": {"client_secret": "rotated-secret"}})),
        )
        .await;
    put.expect(200);
    assert!(!put.text.contains("rotated-secret"), "{}", put.text);
    s.token_request(&s.tenant, "rotated-secret", ARM_SCOPE)
        .await
        .expect(200);
}

#[tokio::test]
async fn config_merges_and_refuses_unknown_keys() {
    let s = spawn_sim(json!({})).await;
    let before = s.sim_get("/_sim/config").await;
    assert_eq!(before["latency_ms"]["vm_create"], 20);
    // Each bad patch, and the key its error must name. The last one is partly valid: the
    // valid part must not be applied either.
    for (bad, key) in [
        (json!({"latency_ms": {"vm_creat": 5}}), "vm_creat"),
        (json!({"nonsense": 1}), "nonsense"),
        (json!({"faults": {"drop_rate": 1.5}}), "drop_rate"),
        (
            json!({"latency_ms": {"vm_create": 1}, "quota": {"regional_cpus": 4}}),
            "regional_cpus",
        ),
    ] {
        let r = s.send(Method::PUT, "/_sim/config", None, Some(&bad)).await;
        r.expect(400);
        assert!(r.text.contains(key), "error should name {key}: {r:#?}");
        assert_eq!(s.sim_get("/_sim/config").await, before, "config unchanged");
    }
    let r = s.send(Method::PUT, "/_sim/config", None, None).await;
    r.expect(400);
    // A valid patch changes only what it names.
    let after = s
        .set_config(json!({"quota": {"regional_vcpus": 8}, "paging": {"page_size": 2}}))
        .await;
    assert_eq!(after["quota"]["regional_vcpus"], 8);
    assert_eq!(after["paging"]["page_size"], 2);
    assert_eq!(after["latency_ms"], before["latency_ms"]);
    assert_eq!(s.sim_get("/_sim/config").await, after);
    // And it takes effect.
    for i in 0..3 {
        s.create_rg(&format!("rg{i}")).await;
    }
    let r = s.get(&format!("{}/resourcegroups", s.sub_path())).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 2);
    assert!(r.body["nextLink"].is_string());
}

#[tokio::test]
async fn reset_empties_everything() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    s.set_config(json!({"quota": {"regional_vcpus": 2}})).await;
    assert!(!s.resources().await.is_empty());
    let r = s.send(Method::POST, "/_sim/reset", None, None).await;
    assert!(matches!(r.status, 200 | 204), "{r:#?}");
    assert!(s.resources().await.is_empty());
    let st = s.stats().await;
    assert_eq!(st["requests"]["PUT"], 0, "{st:#}");
    assert_eq!(
        s.sim_get("/_sim/config").await["quota"]["regional_vcpus"],
        json!(null)
    );
    s.get(&s.rg_path("rg"))
        .await
        .expect_err(404, "ResourceGroupNotFound");
    // Tokens issued before the reset still work, and the world is usable again.
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
}

/// The manual clock (`/_sim/clock`): a ten-minute create completes as soon as the clock is
/// moved past it, without waiting, and what the simulator stamps reads as the later time.
#[tokio::test]
async fn the_clock_moves_past_a_latency_at_once() {
    let mut latencies = fast_latencies();
    latencies["latency_ms"]["vm_create"] = json!(600_000);
    let s = spawn_sim(latencies).await;
    let subnet = s.create_network("rg").await;
    let r = s
        .put(&s.vm_path("rg", "vm1"), &vm_body(&subnet, "vm1", SIZE))
        .await;
    r.expect(201);
    let aao = r.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(s.get(&aao).await.body["status"], "InProgress");
    assert_eq!(s.sim_get("/_sim/clock").await["ahead_ms"], 0);

    let before = time::OffsetDateTime::now_utc();
    let r = s
        .send(
            Method::POST,
            "/_sim/clock",
            None,
            Some(&json!({"advance_ms": 600_001})),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["ahead_ms"], 600_001, "{r:#?}");
    let op = s.get(&aao).await.body;
    assert_eq!(op["status"], "Succeeded", "{op:#}");
    let end = time::OffsetDateTime::parse(
        op["endTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        end - before >= time::Duration::minutes(10),
        "the operation ended at the simulator's time: {end} (real {before})"
    );
    let vm = s.get(&s.vm_path("rg", "vm1")).await.body;
    assert_eq!(vm["properties"]["provisioningState"], "Succeeded", "{vm:#}");

    // Refused: a negative, a too large and an unknown field; the clock did not move.
    for (body, field) in [
        (json!({"advance_ms": -1}), "advance_ms"),
        (json!({"advance_ms": 86_400_001u64}), "advance_ms"),
        (json!({"advance_ms": 1, "back": true}), "back"),
    ] {
        let r = s.send(Method::POST, "/_sim/clock", None, Some(&body)).await;
        r.expect(400);
        assert_eq!(r.body["error"]["field"], field, "{r:#?}");
    }
    // A reset keeps the clock where it is: time does not go back.
    s.send(Method::POST, "/_sim/reset", None, None).await;
    assert_eq!(s.sim_get("/_sim/clock").await["ahead_ms"], 600_001);
}
