//! Node addresses (`node_addresses`, migration 0010): recorded for inventory rows only, kept
//! when unchanged, replaced when changed, and gone with their VM.

use rb_core::{NodeState, PoolSpec, Priority};
use store::{Store, VmRecord};

mod common;

use common::TempDir;

fn vm(name: &str) -> VmRecord {
    VmRecord {
        name: name.to_string(),
        pool: "maya".to_string(),
        size: "Standard_D8s_v5".to_string(),
        priority: Priority::Regular,
        state: NodeState::Running,
        power_state: None,
        azure_id: None,
        failed_code: None,
        created_at: 1_000,
        started_at: None,
        deallocated_at: None,
        last_seen: None,
        last_heartbeat: None,
        busy: false,
        draining: false,
        registered_at: None,
        node_seen_at: None,
    }
}

#[tokio::test]
async fn addresses_follow_their_nodes() {
    let dir = TempDir::new("addresses");
    let store = Store::open(&dir.db()).await.unwrap();
    let spec: PoolSpec = serde_json::from_value(serde_json::json!({
        "name": "maya", "mode": "vm", "vm_sizes": ["Standard_D8s_v5"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 4}))
    .unwrap();
    store.create_pool(&spec).await.unwrap();
    store.upsert_vm(&vm("maya-00001")).await.unwrap();

    let ip = |n: &str, a: &str| (n.to_string(), a.to_string());
    store
        .set_node_ips(&[ip("maya-00001", "10.0.0.4"), ip("nobody", "10.0.0.5")])
        .await
        .unwrap();
    let ips = store.node_ips().await.unwrap();
    assert_eq!(ips.get("maya-00001").map(String::as_str), Some("10.0.0.4"));
    assert!(!ips.contains_key("nobody"), "only inventory rows: {ips:?}");

    store
        .set_node_ips(&[ip("maya-00001", "10.0.0.9")])
        .await
        .unwrap();
    assert_eq!(store.node_ips().await.unwrap()["maya-00001"], "10.0.0.9");

    store.delete_vm("maya-00001").await.unwrap();
    assert!(store.node_ips().await.unwrap().is_empty());
}
