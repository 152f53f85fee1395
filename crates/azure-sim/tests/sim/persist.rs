//! A persistent simulator (`Simulator::start_persistent`): its world, address, CA and tokens
//! outlive the process; what was in flight when it stopped has finished when it comes back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use azure_sim::{SimConfig, Simulator};
use serde_json::json;

use crate::common::*;

fn temp_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "azure-sim-persist-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("world.azure-sim.json")
}

fn config() -> SimConfig {
    SimConfig::default()
        .merged(&fast_latencies())
        .unwrap()
        .merged(&json!({"latency_ms": {"vm_create": 400, "batch_node": 400}}))
        .unwrap()
}

/// A client of a persistent simulator, with a fresh ARM token.
async fn start(path: &Path) -> Sim {
    let sim = Simulator::start_persistent(path, "127.0.0.1:0".parse().unwrap(), config())
        .await
        .expect("the persistent simulator starts");
    let id = sim.identity();
    let mut s = Sim {
        base: sim.base_url().to_owned(),
        http: client_for(sim.ca_pem()),
        tenant: id.tenant_id,
        client_id: id.client_id,
        secret: id.client_secret,
        sub: id.subscription_id,
        token: String::new(),
        sim,
    };
    s.token = s.fetch_token(ARM_SCOPE).await;
    s
}

#[tokio::test]
async fn a_persistent_simulator_comes_back_with_its_world_address_ca_and_tokens() {
    let path = temp_file("restart");
    let s = start(&path).await;
    assert_eq!(s.sim.state_file(), Some(path.as_path()));
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "done", &vm_body(&subnet, "done", SIZE))
        .await;
    // A create still in flight when the simulator stops.
    let r = s
        .put(
            &s.vm_path("rg", "inflight"),
            &vm_body(&subnet, "inflight", SIZE),
        )
        .await;
    r.expect(201);
    let op_url = r.header("azure-asyncoperation").unwrap().to_owned();
    // A Batch pool resizing to two Spot nodes.
    let account = format!(
        "{}/providers/Microsoft.Batch/batchAccounts/acct",
        s.rg_path("rg")
    );
    let r = s.put(&account, &json!({"location": LOCATION})).await;
    assert!(matches!(r.status, 200 | 201), "{r:#?}");
    let endpoint = r.body["properties"]["accountEndpoint"].clone();
    assert!(endpoint.is_string(), "{r:#?}");
    let pool = format!("{account}/pools/p");
    let r = s
        .put(
            &pool,
            &json!({"properties": {
                "vmSize": "STANDARD_D2S_V5",
                "deploymentConfiguration": {"virtualMachineConfiguration": {
                    "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                    "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
                "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 2}}}}),
        )
        .await;
    assert!(matches!(r.status, 200 | 201), "{r:#?}");
    let vm_id = s.get(&s.vm_path("rg", "done")).await.body["properties"]["vmId"].clone();
    let (base, ca, old_token) = (s.base.clone(), s.sim.ca_pem().to_owned(), s.token.clone());

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file holds custom data and keys");

    s.sim.shutdown().await;
    // Stopped longer than the create and the Batch nodes take.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = start(&path).await;
    assert_eq!(s.base, base, "the same address");
    assert_eq!(s.sim.ca_pem(), ca, "the same CA");
    // A token of the previous run still works, and the world is as it was, advanced.
    let r = s
        .send(
            reqwest::Method::GET,
            &with_api(&s.vm_path("rg", "done"), COMPUTE_API),
            Some(&old_token),
            None,
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["properties"]["vmId"], vm_id);
    assert_eq!(
        s.power_state("rg", "inflight").await.as_deref(),
        Some("running"),
        "the create in flight finished while stopped"
    );
    let op = s.get(&op_url).await;
    op.expect(200);
    assert_eq!(op.body["status"], "Succeeded", "{op:#?}");
    let p = s.get(&pool).await;
    p.expect(200);
    assert_eq!(p.body["properties"]["allocationState"], "Steady");
    assert_eq!(p.body["properties"]["currentLowPriorityNodes"], 2);
    let acct = s.get(&account).await;
    assert_eq!(acct.body["properties"]["accountEndpoint"], endpoint);
    let stats = s.stats().await;
    assert_eq!(stats["vm_creates"], 2, "statistics persist: {stats}");
    s.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn a_write_is_saved_within_moments_without_a_shutdown() {
    let path = temp_file("debounce");
    let s = start(&path).await;
    s.create_rg("kept").await;
    // No shutdown: the write is on disk shortly after it was answered.
    eventually("the resource group in the state file", async || {
        let text = std::fs::read_to_string(&path).ok()?;
        text.contains("/resourceGroups/kept").then_some(())
    })
    .await;
    s.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn a_saved_address_in_use_or_an_unreadable_file_is_an_error_that_says_so() {
    let path = temp_file("in-use");
    let s = start(&path).await;
    let addr = s.sim.local_addr();
    s.sim.shutdown().await;
    let holder = std::net::TcpListener::bind(addr).unwrap();
    let err = Simulator::start_persistent(&path, "127.0.0.1:0".parse().unwrap(), config())
        .await
        .err()
        .expect("the saved address is taken");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&addr.to_string())
            && msg.contains("in use")
            && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    drop(holder);

    std::fs::write(&path, "not json").unwrap();
    let err = Simulator::start_persistent(&path, "127.0.0.1:0".parse().unwrap(), config())
        .await
        .err()
        .expect("garbage is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn compute_schedule_operations_outlive_a_restart_and_finish_while_stopped() {
    let path = temp_file("bulk");
    let s = start(&path).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "b", &vm_body(&subnet, "b", SIZE))
        .await;
    let location = format!(
        "{}/providers/Microsoft.ComputeSchedule/locations/{LOCATION}",
        s.sub_path()
    );
    let r = s
        .post(
            &format!("{location}/virtualMachinesExecuteDeallocate"),
            Some(
                &json!({"executionParameters": {}, "resources": {"ids": [s.vm_path("rg", "b")]},
                         "correlationid": "p"}),
            ),
        )
        .await;
    r.expect(200);
    let op = r.body["results"][0]["operation"]["operationId"]
        .as_str()
        .unwrap()
        .to_owned();
    s.sim.shutdown().await;
    let s = start(&path).await;
    // Its first attempt was due a second after the request (the default scheduling delay).
    s.sim.advance_clock(Duration::from_secs(2));
    let r = s
        .post(
            &format!("{location}/virtualMachinesGetOperationStatus"),
            Some(&json!({"operationIds": [op], "correlationid": "p"})),
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.body["results"][0]["operation"]["state"], "Succeeded",
        "{r:#?}"
    );
    assert_eq!(
        s.power_state("rg", "b").await.as_deref(),
        Some("deallocated")
    );
    s.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
