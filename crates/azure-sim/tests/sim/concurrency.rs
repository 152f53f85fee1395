//! Many clients at once: every create lands exactly once and nothing answers 5xx.

use std::sync::Arc;

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_vm_creates() {
    let s = Arc::new(spawn_sim(json!({})).await);
    let subnet = s.create_network("rg").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let s = s.clone();
        let subnet = subnet.clone();
        tasks.spawn(async move {
            let name = format!("vm{i:02}");
            let r = s
                .put(&s.vm_path("rg", &name), &vm_body(&subnet, &name, SIZE))
                .await;
            assert!(r.status < 500, "{name}: {r:#?}");
            r.expect(201);
            // A plain loop: `eventually`'s async closure is not `Send` for `spawn`.
            let aao = r.header("azure-asyncoperation").unwrap().to_owned();
            let start = std::time::Instant::now();
            loop {
                let op = s.get(&aao).await;
                op.expect(200);
                match op.body["status"].as_str() {
                    Some("InProgress") => {}
                    Some("Succeeded") => break,
                    _ => panic!("{name}: {op:#?}"),
                }
                assert!(start.elapsed() < DEADLINE, "{name}: create did not finish");
                tokio::time::sleep(POLL).await;
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.expect("task panicked");
    }
    let all = s.resources().await;
    let count = |t: &str| all.iter().filter(|r| r["type"] == t).count();
    assert_eq!(count("Microsoft.Compute/virtualMachines"), 50);
    assert_eq!(count("Microsoft.Network/networkInterfaces"), 50);
    assert_eq!(count("Microsoft.Compute/disks"), 50);
    let r = s
        .get(&format!(
            "{}/providers/Microsoft.Compute/virtualMachines?$expand=instanceView",
            s.rg_path("rg")
        ))
        .await;
    let vms = r.body["value"].as_array().unwrap();
    assert_eq!(vms.len(), 50);
    assert!(
        vms.iter()
            .all(|v| power_of(v).as_deref() == Some("running"))
    );
    // Distinct private IPs.
    let mut ips: Vec<String> = all
        .iter()
        .filter(|r| r["type"] == "Microsoft.Network/networkInterfaces")
        .map(|n| {
            n["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50);
    let st = s.stats().await;
    assert_eq!(
        st["by_type"]["Microsoft.Compute/virtualMachines"]["PUT"],
        50
    );
}
