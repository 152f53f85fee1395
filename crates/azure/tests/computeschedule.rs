//! Bulk VM operations (Compute Schedule) through the client's pipeline, against the
//! simulator over HTTPS with real tokens.

use std::time::{Duration, Instant};

use arm_model::compute::VirtualMachine;
use arm_model::computeschedule::{BaseProfile, ResourceOperation, RetryPolicy};
use azure::{
    ArmClient, AzureConfig, CreateBatch, CredentialConfig, ErrorKind, PollOptions, bulk_error,
};
use azure_core::credentials::Secret;
use azure_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const RG: &str = "render";
const LOCATION: &str = "westeurope";
const SIZE: &str = "Standard_D2s_v5";

struct Env {
    sim: Simulator,
    client: ArmClient,
    http: reqwest::Client,
}

async fn env(patch: Value) -> Env {
    let cfg = SimConfig::default()
        .merged(
            &json!({"latency_ms": {"vm_create": 20, "vm_start": 10, "vm_deallocate": 10,
                                       "vm_delete": 10, "nic": 2, "disk": 5},
                        "compute_schedule": {"schedule_delay_ms": 5, "retry_interval_ms": 60_000}}),
        )
        .and_then(|c| c.merged(&patch))
        .unwrap();
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let id = sim.identity();
    let mut c = AzureConfig::new(
        id.subscription_id.clone(),
        CredentialConfig::ClientSecret {
            tenant_id: id.tenant_id.clone(),
            client_id: id.client_id.clone(),
            client_secret: Secret::new(id.client_secret.clone()),
        },
    );
    c.arm_endpoint = sim.base_url().to_owned();
    c.authority_host = sim.base_url().to_owned();
    c.extra_ca_pem = Some(sim.ca_pem().as_bytes().to_vec());
    c.poll = PollOptions {
        default_interval: Duration::from_millis(20),
        max_interval: Some(Duration::from_millis(20)),
    };
    let client = ArmClient::new(c).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    Env { sim, client, http }
}

impl Env {
    async fn stats(&self) -> Value {
        let url = format!("{}/_sim/stats", self.sim.base_url());
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn network(&self) -> String {
        let c = &self.client;
        c.ensure_resource_group(RG, LOCATION, &Default::default())
            .await
            .unwrap();
        let vnet = serde_json::from_value(json!({"location": LOCATION, "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "nodes", "properties": {"addressPrefix": "10.0.0.0/18"}}]}}))
        .unwrap();
        let vnet = c.ensure_vnet(RG, "farm", &vnet).await.unwrap();
        vnet.properties.unwrap().subnets.unwrap()[0]
            .id
            .clone()
            .unwrap()
    }

    fn vm_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.client.subscription_id()
        )
    }

    /// Polls until every operation is terminal (bounded; the simulator's latencies are ms).
    async fn wait(&self, ids: &[String]) -> Vec<ResourceOperation> {
        let start = Instant::now();
        loop {
            let results = self.client.operation_status(LOCATION, ids).await.unwrap();
            if results
                .iter()
                .all(|r| r.operation.as_ref().is_some_and(|o| o.is_terminal()))
            {
                return results;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "still running: {results:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The profile the VMs share: what a VM PUT carries, with the resource group beside it.
fn base(subnet: &str) -> BaseProfile {
    let vm: VirtualMachine = serde_json::from_value(json!({
        "location": LOCATION,
        "tags": {"renderburst-pool": "bulk"},
        "properties": {
            "hardwareProfile": {"vmSize": SIZE},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete",
                           "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}},
            "osProfile": {"adminUsername": "render", "linuxConfiguration": {"disablePasswordAuthentication": true}},
            "networkProfile": {"networkApiVersion": "2020-11-01", "networkInterfaceConfigurations": [{
                "name": "base-nic", "properties": {"primary": true, "deleteOption": "Delete",
                "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": subnet}}}]}}]}
        }
    }))
    .unwrap();
    BaseProfile {
        resource_group_name: RG.into(),
        compute_api_version: Some("2025-04-01".into()),
        vm,
    }
}

/// Each VM's own name, computer name and NIC.
fn overrides(subnet: &str, names: &[&str]) -> Vec<VirtualMachine> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value(json!({"name": n, "properties": {
                "osProfile": {"computerName": n},
                "networkProfile": {"networkApiVersion": "2020-11-01", "networkInterfaceConfigurations": [{
                    "name": format!("{n}-nic"), "properties": {"primary": true, "deleteOption": "Delete",
                    "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": subnet}}}]}}]}}}))
            .unwrap()
        })
        .collect()
}

fn no_retry() -> RetryPolicy {
    RetryPolicy {
        retry_count: Some(0),
        retry_window_in_minutes: Some(5),
    }
}

fn op_ids(results: &[ResourceOperation]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| r.operation.as_ref().map(|o| o.operation_id.clone()))
        .collect()
}

#[tokio::test]
async fn a_farm_is_created_stopped_started_and_deleted_in_bulk() {
    let e = env(json!({})).await;
    let subnet = e.network().await;
    let names = ["n-0", "n-1", "n-2"];
    let batch = CreateBatch {
        base: base(&subnet),
        overrides: overrides(&subnet, &names),
        retry: no_retry(),
    };
    let resp = e.client.execute_create(LOCATION, &batch).await.unwrap();
    let results = resp.results.unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|r| bulk_error(r).is_none()),
        "{results:#?}"
    );
    let ids = op_ids(&results);
    for r in e.wait(&ids).await {
        assert_eq!(r.operation.unwrap().state(), "Succeeded");
    }
    for n in names {
        let vm = e
            .client
            .get_vm(RG, n, false)
            .await
            .unwrap()
            .expect("created");
        assert_eq!(vm.tags.unwrap()["renderburst-pool"], "bulk");
    }
    let vm_ids: Vec<String> = names.iter().map(|n| e.vm_id(n)).collect();

    for (step, power) in [("deallocate", "deallocated"), ("start", "running")] {
        let resp = match step {
            "deallocate" => {
                e.client
                    .execute_deallocate(LOCATION, &vm_ids, no_retry())
                    .await
            }
            _ => e.client.execute_start(LOCATION, &vm_ids, no_retry()).await,
        }
        .unwrap();
        for r in e.wait(&op_ids(&resp.results.unwrap())).await {
            assert_eq!(r.operation.unwrap().state(), "Succeeded", "{step}");
        }
        let vm = e.client.get_vm(RG, "n-1", true).await.unwrap().unwrap();
        let iv = vm.properties.unwrap().instance_view.unwrap();
        let want = format!("PowerState/{power}");
        assert!(
            iv.statuses
                .iter()
                .flatten()
                .any(|s| s.code.as_deref() == Some(want.as_str())),
            "{step}: {iv:#?}"
        );
    }

    let resp = e
        .client
        .execute_delete(LOCATION, &vm_ids, no_retry())
        .await
        .unwrap();
    let ids = op_ids(&resp.results.unwrap());
    for r in e.wait(&ids).await {
        assert_eq!(r.operation.unwrap().state(), "Succeeded");
    }
    for n in names {
        assert!(e.client.get_vm(RG, n, false).await.unwrap().is_none());
    }
    // Each failed attempt is listed; these had none.
    let errors = e.client.operation_errors(LOCATION, &ids).await.unwrap();
    assert!(
        errors
            .iter()
            .all(|r| r.operation_errors.as_deref() == Some(&[][..]))
    );
    let stats = e.stats().await;
    assert_eq!(stats["vm_creates"], 3);
    assert_eq!(stats["compute_schedule"]["requests"]["ExecuteCreate"], 1);
    assert_eq!(stats["throttled_429"], 0);
}

#[tokio::test]
async fn per_vm_failures_classify_like_single_requests() {
    let e = env(json!({"quota": {"families": {"standardDSv5Family": 2}}})).await;
    let subnet = e.network().await;
    let batch = CreateBatch {
        base: base(&subnet),
        overrides: overrides(&subnet, &["q-0", "q-1"]),
        retry: no_retry(),
    };
    let resp = e.client.execute_create(LOCATION, &batch).await.unwrap();
    let done = e.wait(&op_ids(&resp.results.unwrap())).await;
    let errors: Vec<_> = done.iter().filter_map(bulk_error).collect();
    assert_eq!(errors.len(), 1, "{done:#?}");
    assert!(errors[0].is_quota(), "{:?}", errors[0]);
    assert_eq!(errors[0].kind, ErrorKind::Operation);
    assert_eq!(errors[0].quota().unwrap().limit, Some(2));

    // A VM that does not exist is refused in the answer, not failed later.
    let resp = e
        .client
        .execute_start(LOCATION, &[e.vm_id("nope")], no_retry())
        .await
        .unwrap();
    let r = &resp.results.unwrap()[0];
    assert!(r.operation.is_none());
    assert!(bulk_error(r).unwrap().is_not_found());
}

#[tokio::test]
async fn operations_not_yet_started_can_be_cancelled() {
    let e = env(json!({"compute_schedule": {"schedule_delay_ms": 600_000}})).await;
    let subnet = e.network().await;
    let batch = CreateBatch {
        base: base(&subnet),
        overrides: overrides(&subnet, &["c-0"]),
        retry: no_retry(),
    };
    let resp = e.client.execute_create(LOCATION, &batch).await.unwrap();
    let ids = op_ids(&resp.results.unwrap());
    let cancelled = e.client.cancel_operations(LOCATION, &ids).await.unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0].operation.as_ref().unwrap().state(),
        "Cancelled"
    );
    assert_eq!(
        bulk_error(&cancelled[0]).unwrap().code,
        "OperationCancelledByUser"
    );
    assert!(e.client.get_vm(RG, "c-0", false).await.unwrap().is_none());
}

#[tokio::test]
async fn batches_beyond_the_documented_limits_are_refused_without_a_request() {
    let e = env(json!({})).await;
    let ids: Vec<String> = (0..101).map(|i| e.vm_id(&format!("v{i}"))).collect();
    let before = e.stats().await["requests"]["POST"].as_u64().unwrap();
    let err = e
        .client
        .execute_start(LOCATION, &ids, no_retry())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    let bad = RetryPolicy {
        retry_count: Some(8),
        retry_window_in_minutes: Some(30),
    };
    assert!(
        e.client
            .execute_delete(LOCATION, &ids[..1], bad)
            .await
            .is_err()
    );
    assert_eq!(
        e.stats().await["requests"]["POST"].as_u64().unwrap(),
        before
    );
    // The service's own check answers the same limit as an ARM error.
    let url = format!(
        "{}/subscriptions/{}/providers/Microsoft.ComputeSchedule/locations/{LOCATION}/virtualMachinesExecuteStart?api-version=2025-05-01",
        e.sim.base_url(),
        e.client.subscription_id()
    );
    let resp = e
        .client
        .request(
            http::Method::POST,
            url::Url::parse(&url).unwrap(),
            Some(&json!({"executionParameters": {}, "resources": {"ids": ids}, "correlationid": "x"})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (resp.status, resp.code.as_str()),
        (Some(400), "InvalidParameter")
    );
}
