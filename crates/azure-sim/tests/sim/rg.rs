//! Resource groups: create, read, HEAD, the 404 for resources under a missing group, and the
//! long-running DELETE that removes everything inside.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn put_get_head() {
    let s = spawn_sim(json!({})).await;
    let rg = s.rg_path("render-rg");
    let r = s
        .put(&rg, &json!({"location": LOCATION, "tags": {"k": "v"}}))
        .await;
    r.expect(201);
    assert_eq!(r.body["name"], "render-rg");
    assert_eq!(r.body["location"], LOCATION);
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    let r = s
        .put(&rg, &json!({"location": LOCATION, "tags": {"k": "w"}}))
        .await;
    r.expect(200);
    assert_eq!(r.body["tags"]["k"], "w");

    let r = s.get(&rg).await;
    r.expect(200);
    assert_eq!(r.body["id"], json!(rg));
    assert_eq!(r.body["type"], "Microsoft.Resources/resourceGroups");
    assert_eq!(r.body["tags"]["k"], "w");
    // Case-insensitive lookup keeps the stored casing.
    let r = s.get(&s.rg_path("RENDER-RG")).await;
    r.expect(200);
    assert_eq!(r.body["name"], "render-rg");

    s.head(&rg).await.expect(204);
    s.head(&s.rg_path("nope")).await.expect(404);
    s.get(&s.rg_path("nope"))
        .await
        .expect_err(404, "ResourceGroupNotFound");
    // PUT without a location.
    s.put(&s.rg_path("noloc"), &json!({}))
        .await
        .expect_err(400, "LocationRequired");
    // The list shows the group.
    let r = s.get(&format!("{}/resourcegroups", s.sub_path())).await;
    r.expect(200);
    let names: Vec<_> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("render-rg")]);
}

#[tokio::test]
async fn resources_under_a_missing_group_are_resource_group_not_found() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.subnet_id("ghost");
    for r in [
        s.get(&s.vm_path("ghost", "vm")).await,
        s.put(&s.vm_path("ghost", "vm"), &vm_body(&subnet, "vm", SIZE))
            .await,
        s.delete(&s.vm_path("ghost", "vm")).await,
        s.post(&format!("{}/start", s.vm_path("ghost", "vm")), None)
            .await,
        s.get(&format!(
            "{}/providers/Microsoft.Compute/virtualMachines",
            s.rg_path("ghost")
        ))
        .await,
        s.put(
            &s.nic_path("ghost", "nic"),
            &json!({"location": LOCATION, "properties": {}}),
        )
        .await,
        s.get(&format!("{}/resources", s.rg_path("ghost"))).await,
    ] {
        r.expect_err(404, "ResourceGroupNotFound");
    }
}

#[tokio::test]
async fn delete_is_long_running_and_removes_everything_inside() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("doomed").await;
    s.create_vm_ok("doomed", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    let keep = s.create_network("keep").await;
    s.create_vm_ok("keep", "vm1", &vm_body(&keep, "vm1", SIZE))
        .await;
    let before = s.resources().await.len();
    // Slow enough to watch the delete run.
    s.set_config(json!({"latency_ms": {"vm_delete": 1000}}))
        .await;

    let r = s.delete(&s.rg_path("doomed")).await;
    r.expect(202);
    let loc = r.header("location").expect("Location").to_owned();
    assert!(loc.starts_with("https://"), "absolute Location: {loc}");
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
    );
    // While it runs: Location answers 202, and the group reports Deleting.
    let first = s.get(&loc).await;
    first.expect(202);
    let g = s.get(&s.rg_path("doomed")).await;
    if g.status == 200 {
        assert_eq!(g.body["properties"]["provisioningState"], "Deleting");
    }
    let done = s.poll_location(&loc).await;
    done.expect(200);

    s.get(&s.rg_path("doomed"))
        .await
        .expect_err(404, "ResourceGroupNotFound");
    s.head(&s.rg_path("doomed")).await.expect(404);
    let left = s.resources().await;
    assert!(
        left.iter().all(|r| !r["id"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("/resourcegroups/doomed")),
        "left behind: {left:#?}"
    );
    // rg, vnet, subnet, vm, nic, disk of the other group remain.
    assert_eq!(left.len(), before / 2, "{left:#?}");
    s.get(&s.vm_path("keep", "vm1")).await.expect(200);
    // Deleting it again: the group is gone.
    s.delete(&s.rg_path("doomed")).await.expect(404);
}
