//! The ARM front door: api-version, request bodies, routing, and hostile input (huge or odd
//! names, bad escapes, oversized bodies), which must always get an ARM-shaped 4xx.

use reqwest::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let s = spawn_sim(json!({})).await;
    let path = format!("{}/resourceGroups", s.sub_path());
    s.send(Method::GET, &path, Some(&s.token), None)
        .await
        .expect_err(400, "MissingApiVersionParameter");
    for bad in ["latest", "2025-4-01", "2025-04-01x", ""] {
        s.send(
            Method::GET,
            &format!("{path}?api-version={bad}"),
            Some(&s.token),
            None,
        )
        .await
        .expect_err(400, "InvalidApiVersionParameter");
    }
    // Any well-formed version is accepted.
    for good in ["2026-04-01", "2019-01-01", "2024-03-01-preview"] {
        s.get(&format!("{path}?api-version={good}"))
            .await
            .expect(200);
    }
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_invalid_request_content() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let vm = s.vm_path("rg", "vm1");
    // Not JSON.
    let r = s
        .http
        .put(s.url(&with_api(&vm, COMPUTE_API)))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"location\": \"westeurope\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidRequestContent", "{body:#}");
    // JSON, but not an object.
    s.put(&vm, &json!([1, 2]))
        .await
        .expect_err(400, "InvalidRequestContent");
    // Wrong types in a VM body.
    let mut b = vm_body(&subnet, "vm1", SIZE);
    b["properties"]["hardwareProfile"]["vmSize"] = json!(5);
    s.put(&vm, &b)
        .await
        .expect_err(400, "InvalidRequestContent");
    let mut b = vm_body(&subnet, "vm1", SIZE);
    b["properties"]["networkProfile"] = json!("eth0");
    s.put(&vm, &b)
        .await
        .expect_err(400, "InvalidRequestContent");
    // A wrongly typed resource group body.
    s.put(
        &s.rg_path("rg2"),
        &json!({"location": "westeurope", "tags": ["a"]}),
    )
    .await
    .expect_err(400, "InvalidRequestContent");
    // Nothing was created by any of these.
    assert!(
        s.resources_of("Microsoft.Compute/virtualMachines")
            .await
            .is_empty()
    );
    s.get(&s.rg_path("rg2"))
        .await
        .expect_err(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn unknown_paths_and_types_get_arm_errors() {
    let s = spawn_sim(json!({})).await;
    s.create_rg("rg").await;
    for path in [
        format!("{}/providers/Microsoft.Nope/things/x", s.rg_path("rg")),
        format!(
            "{}/providers/Microsoft.Compute/virtualMachinez/x",
            s.rg_path("rg")
        ),
        format!("{}/whatever", s.rg_path("rg")),
        "/not/an/arm/path".to_owned(),
        format!("{}/bogus", s.sub_path()),
    ] {
        s.get(&path).await.expect_arm_4xx();
        s.put(&path, &json!({"location": LOCATION}))
            .await
            .expect_arm_4xx();
    }
    // Unknown subscription.
    s.get("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups")
        .await
        .expect_err(404, "SubscriptionNotFound");
    // Unknown VM action.
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    s.post(&format!("{}/explode", s.vm_path("rg", "vm1")), None)
        .await
        .expect_arm_4xx();
    // A missing VM.
    s.get(&s.vm_path("rg", "nope"))
        .await
        .expect_err(404, "ResourceNotFound");
    // Operation ids that do not exist.
    s.get(&format!(
        "{}/providers/Microsoft.Compute/locations/westeurope/operations/nope",
        s.sub_path()
    ))
    .await
    .expect_err(404, "OperationNotFound");
}

#[tokio::test]
async fn hostile_names_get_arm_shaped_4xx() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let huge = "a".repeat(10 * 1024);
    // Names ARM refuses: too long, reserved characters, control characters, bad endings,
    // and percent escapes that are not UTF-8.
    let refused = [
        huge.clone(),
        "bad%3Fname".to_owned(),
        "bad%2Fname".to_owned(),
        "%FF%FE%FD".to_owned(),
        "%C3%28".to_owned(),
        "%00nul".to_owned(),
        "trailing.".to_owned(),
        "sp%20ace%20".to_owned(),
        "%25%25".to_owned(),
        "%".to_owned(),
        "%zz".to_owned(),
        "a%3Cb%3E".to_owned(),
    ];
    for name in &refused {
        let short = &name[..name.len().min(40)];
        let rg = s.rg_path(name);
        let r = s.put(&rg, &json!({"location": LOCATION})).await;
        assert_eq!(r.status, 400, "PUT RG {short}: {r:#?}");
        r.expect_arm_4xx();
        s.get(&rg).await.expect_arm_4xx();
        s.head(&rg).await.expect(404);
        // Resources under an existing group.
        let vm = s.vm_path("rg", name);
        let r = s.put(&vm, &vm_body(&subnet, "vm", SIZE)).await;
        assert_eq!(r.status, 400, "PUT VM {short}: {r:#?}");
        r.expect_arm_4xx();
        s.get(&vm).await.expect_arm_4xx();
        let r = s.delete(&vm).await;
        assert!(
            r.status == 204 || (400..500).contains(&r.status),
            "DELETE {short}: {r:#?}"
        );
        s.post(&format!("{vm}/start"), None).await.expect_arm_4xx();
        let nic = s.nic_path("rg", name);
        s.put(
            &nic,
            &json!({"location": LOCATION, "properties": {"ipConfigurations": [
            {"name": "ip", "properties": {"subnet": {"id": subnet}}}]}}),
        )
        .await
        .expect_arm_4xx();
        // In the query string.
        let r = s
            .get(&format!(
                "{}/resources?$filter=tagName eq '{name}'",
                s.sub_path()
            ))
            .await;
        assert!(r.status == 200 || (400..500).contains(&r.status), "{r:#?}");
    }
    // Unusual but valid Unicode names work end to end.
    for (name, decoded) in [
        ("caf%C3%A9-render", "café-render"),
        ("%E6%B8%B2%E6%9F%93", "渲染"),
    ] {
        s.create_network(name).await;
        let rg = s.get(&s.rg_path(name)).await;
        rg.expect(200);
        assert_eq!(rg.body["name"], decoded);
        // Ids in bodies are not percent-encoded.
        let subnet = s.subnet_id(decoded);
        s.create_vm_ok(name, "vm", &vm_body(&subnet, "vm", SIZE))
            .await;
        let vm = s.get(&s.vm_path(name, "vm")).await;
        vm.expect(200);
        assert_eq!(vm.body["id"], json!(s.vm_path(decoded, "vm")));
    }
    assert_eq!(
        s.resources_of("Microsoft.Compute/virtualMachines")
            .await
            .len(),
        2
    );
    // A name that is too long for a VM but fine as a URL.
    s.put(
        &s.vm_path("rg", &"v".repeat(65)),
        &vm_body(&subnet, "v", SIZE),
    )
    .await
    .expect_err(400, "InvalidResourceName");
    assert_eq!(
        s.resources_of("Microsoft.Compute/virtualMachines")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn bodies_over_4_mb_are_413() {
    let s = spawn_sim(json!({})).await;
    s.create_rg("rg").await;
    let big = "x".repeat(4 * 1024 * 1024 + 10);
    let body = json!({"location": LOCATION, "tags": {"big": big}});
    let r = s.put(&s.rg_path("rg2"), &body).await;
    r.expect(413);
    assert!(!r.code().is_empty(), "{r:#?}");
    // The connection (or a new one) still works.
    s.get(&s.rg_path("rg")).await.expect(200);
    s.get(&s.rg_path("rg2"))
        .await
        .expect_err(404, "ResourceGroupNotFound");
}
