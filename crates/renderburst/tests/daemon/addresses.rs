//! VM nodes' private IPs without bootstrap (issue 13, item 7 follow-up): a VM pool whose
//! nodes never register shows each node's private IP, read from its NIC (one NIC listing per
//! resource group, not a read per VM), in `GET /v1/nodes` and in `renderburst node list`;
//! the addresses are in the subnet's prefix, past Azure's reserved first four, unique, the
//! ones the NICs carry, and go with their nodes. The in-process world of the e2e tests.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::common;
use common::world::*;
use common::{cli, eventually};

async fn nodes(api: &Api) -> Vec<Value> {
    api.ok(reqwest::Method::GET, "/v1/nodes?pool=maya", None)
        .await["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// (network, prefix length) of `a.b.c.d/n`.
fn prefix(cidr: &str) -> (u32, u32) {
    let (addr, len) = cidr.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = u32::MAX << (32 - len);
    (u32::from(addr.parse::<Ipv4Addr>().unwrap()) & mask, len)
}

/// Each VM's private IP as the simulator's NICs show it, by VM name.
async fn nic_ips(w: &World) -> HashMap<String, String> {
    w.resources("Microsoft.Network/networkInterfaces")
        .await
        .iter()
        .filter_map(|nic| {
            let vm = nic["properties"]["virtualMachine"]["id"].as_str()?;
            let ip = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
                .as_str()?;
            Some((vm.rsplit('/').next()?.to_owned(), ip.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_nodes_without_bootstrap_show_their_nics_private_ip() {
    let w = world("addresses", json!({})).await;
    let (daemon, api) = w.serve().await;
    let mut spec = pool_spec("maya", &["Standard_D4s_v5"], 6);
    assert!(spec.get("bootstrap").is_none(), "no node ever registers");
    spec["target"] = json!(4);
    spec["scale_down"] = json!("delete");
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;

    let listed = eventually("4 running nodes of maya with their IPs", 90, || async {
        let all = nodes(&api).await;
        (all.len() == 4
            && all
                .iter()
                .all(|n| n["state"] == "running" && n["private_ip"].is_string()))
        .then_some(all)
    })
    .await;
    assert!(
        listed.iter().all(|n| n["registered_at"].is_null()),
        "from the NICs, not from registrations: {listed:?}"
    );

    // The subnet renderburst ensured, and its prefix.
    let subnets = w
        .resources("Microsoft.Network/virtualNetworks/subnets")
        .await;
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    let cidr = subnets[0]["properties"]["addressPrefix"].as_str().unwrap();
    let (network, len) = prefix(cidr);
    let size = 1u32 << (32 - len);
    let truth = nic_ips(&w).await;
    let mut seen = HashSet::new();
    for n in &listed {
        let name = n["name"].as_str().unwrap();
        let ip = n["private_ip"].as_str().unwrap();
        let a = u32::from(ip.parse::<Ipv4Addr>().unwrap());
        assert!(
            a >= network + 4 && a < network + size - 1,
            "{name}: {ip} in {cidr}, past the reserved first four, before the broadcast"
        );
        assert!(seen.insert(ip.to_owned()), "{ip} given twice: {listed:?}");
        assert_eq!(truth.get(name).map(String::as_str), Some(ip), "{name}");
    }

    // `renderburst node list` shows each under IP.
    let (code, out, err) = cli(
        &api.base,
        "e2e-admin-token-0123456789",
        &w.dir,
        &["node", "list", "--pool", "maya"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    let ip_column = lines[0].find("IP").unwrap();
    for n in &listed {
        let name = n["name"].as_str().unwrap();
        let ip = n["private_ip"].as_str().unwrap();
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in\n{out}"));
        assert_eq!(row.find(ip), Some(ip_column), "{ip} under IP:\n{out}");
    }

    // Scaled down (scale_down = delete): the removed nodes and their addresses are gone; the
    // kept ones keep theirs.
    api.scale("maya", 2).await;
    let kept = eventually(
        "maya down to 2 nodes in Azure and in the API",
        90,
        || async {
            let all = nodes(&api).await;
            (all.len() == 2 && w.vms("maya").await.len() == 2).then_some(all)
        },
    )
    .await;
    if kept
        .iter()
        .any(|n| !listed.iter().any(|l| l["name"] == n["name"]))
    {
        let events = api
            .ok(reqwest::Method::GET, "/v1/events?limit=200", None)
            .await;
        panic!("a node kept that was not listed before: {kept:?}\nevents: {events:#}");
    }
    for n in &kept {
        let before = listed
            .iter()
            .find(|l| l["name"] == n["name"])
            .unwrap_or_else(|| panic!("{n} kept but not among the 4 listed before: {listed:?}"));
        assert_eq!(n["private_ip"], before["private_ip"], "{n}");
    }
    daemon.stop().await;
    // The database holds the kept nodes' addresses and no others.
    let db = w.dir.join("renderburst.db");
    let store = eventually("the database unlocked", 30, || async {
        store::Store::open(&db).await.ok()
    })
    .await;
    let stored = store.node_ips().await.unwrap();
    let expected: HashMap<String, String> = kept
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["private_ip"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(stored, expected);
    store.close().await;
}
