//! Lists: by resource group (with `$expand=instanceView`), by subscription with
//! `statusOnly=true`, `nextLink` paging, and the generic resources list with a tag filter.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::*;

/// Follows `nextLink` from `first`; returns the pages.
async fn all_pages(s: &Sim, first: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        assert!(pages.len() < 50, "runaway paging");
        let r = s.get(&url).await;
        r.expect(200);
        next = r.body["nextLink"].as_str().map(str::to_owned);
        pages.push(r.body);
    }
    pages
}

fn names(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_by_group_and_by_subscription() {
    let s = spawn_sim(json!({})).await;
    let a = s.create_network("rg-a").await;
    let b = s.create_network("rg-b").await;
    s.create_vm_ok("rg-a", "a1", &vm_body(&a, "a1", SIZE)).await;
    s.create_vm_ok("rg-a", "a2", &vm_body(&a, "a2", SIZE)).await;
    s.create_vm_ok("rg-b", "b1", &vm_body(&b, "b1", SIZE)).await;
    s.vm_action_ok("rg-a", "a2", "deallocate").await;

    // By group, plain: no instance view.
    let vms = format!(
        "{}/providers/Microsoft.Compute/virtualMachines",
        s.rg_path("rg-a")
    );
    let r = s.get(&vms).await;
    r.expect(200);
    let mut n = names(&r.body);
    n.sort();
    assert_eq!(n, ["a1", "a2"]);
    assert!(r.body.get("nextLink").is_none_or(Value::is_null));
    for vm in r.body["value"].as_array().unwrap() {
        assert!(vm["properties"].get("instanceView").is_none());
        assert!(vm["properties"]["hardwareProfile"].is_object());
    }
    // By group with the instance view: power states in one call.
    let r = s.get(&format!("{vms}?$expand=instanceView")).await;
    r.expect(200);
    let power: BTreeMap<String, String> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_owned(), power_of(v).unwrap()))
        .collect();
    assert_eq!(power["a1"], "running");
    assert_eq!(power["a2"], "deallocated");

    // By subscription with statusOnly: identity and statuses only.
    let r = s
        .get(&format!(
            "{}/providers/Microsoft.Compute/virtualMachines?statusOnly=true",
            s.sub_path()
        ))
        .await;
    r.expect(200);
    let items = r.body["value"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for vm in items {
        let top: Vec<&str> = vm.as_object().unwrap().keys().map(String::as_str).collect();
        for k in &top {
            assert!(
                ["id", "name", "type", "location", "properties"].contains(k),
                "unexpected field {k} in a statusOnly item: {vm:#}"
            );
        }
        let props = vm["properties"].as_object().unwrap();
        for k in props.keys() {
            assert!(
                ["instanceView", "vmId"].contains(&k.as_str()),
                "unexpected property {k} in a statusOnly item: {vm:#}"
            );
        }
        let iv = vm["properties"]["instanceView"].as_object().unwrap();
        assert_eq!(iv.keys().collect::<Vec<_>>(), ["statuses"], "{vm:#}");
        assert!(power_of(vm).is_some(), "{vm:#}");
        assert_eq!(vm["type"], "Microsoft.Compute/virtualMachines");
        assert_eq!(vm["location"], LOCATION);
    }
    // By subscription, plain: every VM with its model.
    let r = s
        .get(&format!(
            "{}/providers/Microsoft.Compute/virtualMachines",
            s.sub_path()
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    assert!(r.body["value"][0]["properties"]["storageProfile"].is_object());
    // NICs and disks list by group too.
    let r = s
        .get(&format!(
            "{}/providers/Microsoft.Network/networkInterfaces",
            s.rg_path("rg-b")
        ))
        .await;
    assert_eq!(names(&r.body), ["b1-nic"]);
    let r = s
        .get(&format!(
            "{}/providers/Microsoft.Compute/disks",
            s.rg_path("rg-a")
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn paging_over_seven_vms() {
    let s = spawn_sim(json!({"paging": {"page_size": 3}})).await;
    let subnet = s.create_network("rg").await;
    for i in 0..7 {
        let name = format!("vm{i}");
        let r = s
            .put(&s.vm_path("rg", &name), &vm_body(&subnet, &name, SIZE))
            .await;
        r.expect(201);
    }
    let first = with_api(
        &format!(
            "{}/providers/Microsoft.Compute/virtualMachines?statusOnly=true",
            s.sub_path()
        ),
        COMPUTE_API,
    );
    let pages = all_pages(&s, &first).await;
    assert_eq!(pages.len(), 3, "{pages:#?}");
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["value"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    for p in &pages[..2] {
        let next = p["nextLink"].as_str().unwrap();
        assert!(
            next.starts_with(&format!("{}/subscriptions/", s.base)),
            "absolute nextLink: {next}"
        );
        assert!(
            next.contains(&format!("api-version={COMPUTE_API}")),
            "{next}"
        );
        assert!(next.contains("statusOnly=true"), "{next}");
    }
    assert!(pages[2].get("nextLink").is_none_or(Value::is_null));
    let mut seen: Vec<String> = pages.iter().flat_map(names).collect();
    seen.sort();
    let want: Vec<String> = (0..7).map(|i| format!("vm{i}")).collect();
    assert_eq!(seen, want, "every VM exactly once");
    // Every page of a statusOnly list is statusOnly.
    for p in &pages {
        for vm in p["value"].as_array().unwrap() {
            assert!(vm["properties"].get("storageProfile").is_none(), "{vm:#}");
        }
    }
    // By group, expanded, pages the same way.
    let pages = all_pages(
        &s,
        &format!(
            "{}/providers/Microsoft.Compute/virtualMachines?$expand=instanceView",
            s.rg_path("rg")
        ),
    )
    .await;
    assert_eq!(pages.len(), 3);
    assert!(
        pages[0]["nextLink"]
            .as_str()
            .unwrap()
            .contains("expand=instanceView")
    );
    let n: usize = pages
        .iter()
        .map(|p| p["value"].as_array().unwrap().len())
        .sum();
    assert_eq!(n, 7);
}

#[tokio::test]
async fn generic_resources_list_filters_by_tag() {
    let s = spawn_sim(json!({})).await;
    let subnet = s.create_network("rg").await;
    let mut b1 = vm_body(&subnet, "vm1", SIZE);
    b1["tags"] = json!({"k": "v"});
    let mut b2 = vm_body(&subnet, "vm2", SIZE);
    b2["tags"] = json!({"k": "other"});
    let mut b3 = vm_body(&subnet, "vm3", SIZE);
    b3["tags"] = json!({"z": "v"});
    for (n, b) in [("vm1", &b1), ("vm2", &b2), ("vm3", &b3)] {
        s.put(&s.vm_path("rg", n), b).await.expect(201);
    }
    let r = s
        .get(&format!(
            "{}/resources?$filter=tagName eq 'k' and tagValue eq 'v'",
            s.sub_path()
        ))
        .await;
    r.expect(200);
    assert_eq!(names(&r.body), ["vm1"]);
    assert_eq!(
        r.body["value"][0]["type"],
        "Microsoft.Compute/virtualMachines"
    );
    assert_eq!(r.body["value"][0]["tags"]["k"], "v");
    let r = s
        .get(&format!(
            "{}/resources?$filter=tagName eq 'k'",
            s.sub_path()
        ))
        .await;
    let mut n = names(&r.body);
    n.sort();
    assert_eq!(n, ["vm1", "vm2"]);
    // Scoped to a group, and by type.
    let r = s
        .get(&format!(
            "{}/resources?$filter=resourceType eq 'Microsoft.Network/networkInterfaces'",
            s.rg_path("rg")
        ))
        .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);
    // Filters the simulator does not understand are refused, not ignored.
    s.get(&format!(
        "{}/resources?$filter=location eq 'westeurope'",
        s.sub_path()
    ))
    .await
    .expect_err(400, "InvalidFilterInQueryString");
}
