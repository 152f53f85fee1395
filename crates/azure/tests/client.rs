//! The ARM client against the simulator over HTTPS, with real tokens: typed operations,
//! long-running operations, errors, faults, throttling and credentials.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arm_model::compute::VirtualMachine;
use azure::{
    ArmClient, AzureConfig, CredentialConfig, ErrorKind, GovernorLimits, Operation, PollOptions,
    TagFilter,
};
use azure_core::credentials::Secret;
use azure_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const RG: &str = "render";

struct Env {
    sim: Simulator,
    client: ArmClient,
    http: reqwest::Client,
}

/// Fast latencies for tests; `patch` is merged on top (same shape as PUT /_sim/config).
fn sim_config(patch: Value) -> SimConfig {
    let base = SimConfig::default()
        .merged(&json!({"latency_ms": {"vm_create": 20, "vm_start": 10, "vm_deallocate": 10, "vm_delete": 10,
                                      "nic": 2, "disk": 5, "batch_node": 10, "eviction": 5}}))
        .unwrap();
    base.merged(&patch).unwrap()
}

fn client_config(sim: &Simulator, secret: &str) -> AzureConfig {
    let id = sim.identity();
    let mut cfg = AzureConfig::new(
        id.subscription_id.clone(),
        CredentialConfig::ClientSecret {
            tenant_id: id.tenant_id.clone(),
            client_id: id.client_id.clone(),
            client_secret: Secret::new(secret.to_owned()),
        },
    );
    cfg.arm_endpoint = sim.base_url().to_owned();
    cfg.authority_host = sim.base_url().to_owned();
    cfg.extra_ca_pem = Some(sim.ca_pem().as_bytes().to_vec());
    cfg.poll = PollOptions {
        default_interval: Duration::from_millis(20),
        max_interval: Some(Duration::from_millis(20)),
    };
    cfg.pipeline.base_backoff = Duration::from_millis(10);
    cfg.pipeline.max_backoff = Duration::from_millis(200);
    cfg
}

async fn env(patch: Value) -> Env {
    env_with(patch, |_| {}).await
}

async fn env_with(patch: Value, tweak: impl FnOnce(&mut AzureConfig)) -> Env {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), sim_config(patch))
        .await
        .unwrap();
    let mut cfg = client_config(&sim, "sim-secret");
    tweak(&mut cfg);
    let client = ArmClient::new(cfg).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    Env { sim, client, http }
}

impl Env {
    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn sim_config(&self, patch: Value) {
        self.control(reqwest::Method::PUT, "/_sim/config", Some(patch))
            .await;
    }

    async fn stats(&self) -> Value {
        self.control(reqwest::Method::GET, "/_sim/stats", None)
            .await
    }

    /// Resources of an ARM type in the simulator (ground truth, no ARM call).
    async fn count(&self, ty: &str) -> usize {
        let all = self
            .control(reqwest::Method::GET, "/_sim/resources", None)
            .await;
        all["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == ty)
            .count()
    }

    async fn network(&self) -> String {
        let c = &self.client;
        c.ensure_resource_group(RG, "westeurope", &Default::default())
            .await
            .unwrap();
        let vnet = serde_json::from_value(json!({"location": "westeurope", "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "nodes", "properties": {"addressPrefix": "10.0.0.0/18"}}]}}))
        .unwrap();
        let vnet = c.ensure_vnet(RG, "farm", &vnet).await.unwrap();
        let subnets = vnet.properties.unwrap().subnets;
        subnets.unwrap()[0].id.clone().unwrap()
    }
}

fn vm(name: &str, subnet: &str, size: &str, spot: bool) -> VirtualMachine {
    let mut props = json!({
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {
            "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
            "osDisk": {"name": format!("{name}-os"), "createOption": "FromImage", "deleteOption": "Delete",
                       "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}},
        "osProfile": {"computerName": name, "adminUsername": "render", "customData": "IyEvYmluL3NoCg=="},
        "networkProfile": {"networkApiVersion": "2022-11-01", "networkInterfaceConfigurations": [{
            "name": format!("{name}-nic"),
            "properties": {"primary": true, "deleteOption": "Delete",
                           "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": subnet}}}]}}]},
    });
    if spot {
        props["priority"] = json!("Spot");
        props["evictionPolicy"] = json!("Deallocate");
        props["billingProfile"] = json!({"maxPrice": -1});
    }
    serde_json::from_value(json!({"location": "westeurope", "tags": {"renderburst-pool": "maya", "renderburst-owner": "test"},
                                  "properties": props}))
    .unwrap()
}

fn power(vm: &VirtualMachine) -> Option<String> {
    vm.properties
        .as_ref()?
        .instance_view
        .as_ref()?
        .power_state()
        .map(str::to_owned)
}

#[tokio::test]
async fn typed_operations_round_trip() {
    let e = env(json!({})).await;
    let c = &e.client;
    let subnet = e.network().await;
    // ensure_* is idempotent.
    assert_eq!(e.network().await, subnet);
    let nsg = serde_json::from_value(
        json!({"location": "westeurope", "properties": {"securityRules": []}}),
    )
    .unwrap();
    c.ensure_nsg(RG, "render-nsg", &nsg).await.unwrap();

    let (first, op) = c
        .create_or_update_vm(
            RG,
            "maya-0001",
            &vm("maya-0001", &subnet, "Standard_D4s_v5", false),
        )
        .await
        .unwrap();
    assert_eq!(
        first
            .unwrap()
            .properties
            .unwrap()
            .provisioning_state
            .as_deref(),
        Some("Creating")
    );
    let done: VirtualMachine = serde_json::from_value(op.wait(c).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        done.properties.unwrap().provisioning_state.as_deref(),
        Some("Succeeded")
    );
    let got = c.get_vm(RG, "maya-0001", true).await.unwrap().unwrap();
    assert_eq!(power(&got).as_deref(), Some("running"));
    assert!(c.get_vm(RG, "nope", false).await.unwrap().is_none());

    let tag = TagFilter {
        name: "RenderBurst-Pool".into(),
        value: Some("maya".into()),
    };
    assert_eq!(c.list_vms_tagged(RG, &tag, true).await.unwrap().len(), 1);
    let other = TagFilter {
        name: "renderburst-pool".into(),
        value: Some("houdini".into()),
    };
    assert!(
        c.list_vms_tagged(RG, &other, false)
            .await
            .unwrap()
            .is_empty()
    );
    let status = c.list_vm_status().collect_all().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(power(&status[0]).as_deref(), Some("running"));
    assert_eq!(c.list_nics(Some(RG), None).await.unwrap().len(), 1);
    assert_eq!(c.list_disks(RG, None).await.unwrap().len(), 1);

    c.deallocate_vm(RG, "maya-0001")
        .await
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    assert_eq!(
        power(&c.get_vm(RG, "maya-0001", true).await.unwrap().unwrap()).as_deref(),
        Some("deallocated")
    );
    c.start_vm(RG, "maya-0001")
        .await
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    c.restart_vm(RG, "maya-0001")
        .await
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    c.power_off_vm(RG, "maya-0001")
        .await
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    assert_eq!(
        power(&c.get_vm(RG, "maya-0001", true).await.unwrap().unwrap()).as_deref(),
        Some("stopped")
    );

    c.delete_vm(RG, "maya-0001")
        .await
        .unwrap()
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    assert!(c.get_vm(RG, "maya-0001", false).await.unwrap().is_none());
    assert!(
        c.list_nics(Some(RG), None).await.unwrap().is_empty(),
        "the NIC went with the VM"
    );
    assert!(
        c.list_disks(RG, None).await.unwrap().is_empty(),
        "the OS disk went with the VM"
    );
    assert!(
        c.delete_vm(RG, "maya-0001").await.unwrap().is_none(),
        "NotFound on delete is success"
    );
    assert!(c.delete_nic(RG, "never-was").await.unwrap().is_none());
    assert!(c.delete_disk(RG, "never-was").await.unwrap().is_none());
}

#[tokio::test]
async fn batch_pools_and_nodes() {
    let e = env(json!({})).await;
    let c = &e.client;
    let subnet = e.network().await;
    // The Batch account is set up outside renderburst; create it through ARM directly.
    let token_url = format!(
        "{}/{}/oauth2/v2.0/token",
        e.sim.base_url(),
        e.sim.identity().tenant_id
    );
    let id = e.sim.identity();
    let tok: Value = e
        .http
        .post(token_url)
        .form(&[
            ("client_id", id.client_id.as_str()),
            ("client_secret", "sim-secret"),
            ("grant_type", "client_credentials"),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acct_url = format!(
        "{}/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.Batch/batchAccounts/rbfarm?api-version=2025-06-01",
        e.sim.base_url(),
        id.subscription_id
    );
    let r = e
        .http
        .put(acct_url)
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .json(&json!({"location": "westeurope"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let account = c.get_batch_account(RG, "rbfarm").await.unwrap().unwrap();
    let endpoint = account.properties.unwrap().account_endpoint.unwrap();

    let pool = serde_json::from_value(json!({"properties": {
        "vmSize": "Standard_NC4as_T4_v3",
        "deploymentConfiguration": {"virtualMachineConfiguration": {
            "imageReference": {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"},
            "nodeAgentSkuId": "batch.node.ubuntu 22.04"}},
        "networkConfiguration": {"subnetId": subnet},
        "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 0}}}}))
    .unwrap();
    c.create_pool(RG, "rbfarm", "maya", &pool).await.unwrap();
    c.resize_pool(RG, "rbfarm", "maya", 1, 3, "TaskCompletion")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = c
            .get_pool(RG, "rbfarm", "maya")
            .await
            .unwrap()
            .unwrap()
            .properties
            .unwrap();
        if p.allocation_state.as_deref() == Some("Steady") {
            assert_eq!(
                (p.current_dedicated_nodes, p.current_low_priority_nodes),
                (Some(1), Some(3))
            );
            break;
        }
        assert!(Instant::now() < deadline, "pool never became steady");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let nodes = c
        .list_batch_nodes(&endpoint, "maya")
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(nodes.len(), 4);
    let spot: Vec<String> = nodes
        .iter()
        .filter(|n| n.is_dedicated == Some(false))
        .take(2)
        .filter_map(|n| n.id.clone())
        .collect();
    c.remove_batch_nodes(&endpoint, "maya", &spot, "TaskCompletion")
        .await
        .unwrap();
    let p = c.get_pool(RG, "rbfarm", "maya").await.unwrap().unwrap();
    let fixed = p
        .properties
        .unwrap()
        .scale_settings
        .unwrap()
        .fixed_scale
        .unwrap();
    assert_eq!(
        fixed.target_low_priority_nodes,
        Some(1),
        "removing nodes lowers the target"
    );
    c.delete_pool(RG, "rbfarm", "maya")
        .await
        .unwrap()
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    assert!(c.get_pool(RG, "rbfarm", "maya").await.unwrap().is_none());
    assert!(c.delete_pool(RG, "rbfarm", "maya").await.unwrap().is_none());
}

#[tokio::test]
async fn errors_are_typed_sync_and_async() {
    let e = env(json!({"quota": {"families": {"standardNCASv3_T4Family": 8}}, "capacity": {"Standard_D2s_v5": 1}})).await;
    let c = &e.client;
    let subnet = e.network().await;

    // Quota: synchronous 409, with the figures parsed.
    c.create_or_update_vm(
        RG,
        "gpu-1",
        &vm("gpu-1", &subnet, "Standard_NC8as_T4_v3", false),
    )
    .await
    .unwrap()
    .1
    .wait(c)
    .await
    .unwrap();
    let err = c
        .create_or_update_vm(
            RG,
            "gpu-2",
            &vm("gpu-2", &subnet, "Standard_NC4as_T4_v3", false),
        )
        .await
        .unwrap_err();
    assert!(
        err.is_quota() && !err.is_capacity() && !err.is_retryable(),
        "{err}"
    );
    assert_eq!(err.kind, ErrorKind::Http);
    let q = err.quota().unwrap();
    assert_eq!(
        (q.family.as_deref(), q.limit, q.usage, q.required),
        (Some("standardNCASv3_T4Family"), Some(8), Some(8), Some(4))
    );

    // Unknown size: synchronous capacity-class error.
    let err = c
        .create_or_update_vm(RG, "odd", &vm("odd", &subnet, "Standard_Nope_v9", false))
        .await
        .unwrap_err();
    assert!(err.is_capacity(), "{err}");
    assert_eq!(err.code, "SkuNotAvailable");

    // Capacity on create: the PUT is accepted, the operation fails.
    c.create_or_update_vm(RG, "cpu-1", &vm("cpu-1", &subnet, "Standard_D2s_v5", false))
        .await
        .unwrap()
        .1
        .wait(c)
        .await
        .unwrap();
    let (_, op) = c
        .create_or_update_vm(RG, "cpu-2", &vm("cpu-2", &subnet, "Standard_D2s_v5", false))
        .await
        .unwrap();
    let err = op.wait(c).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Operation);
    assert!(err.is_capacity(), "{err}");
    assert_eq!(err.code, "AllocationFailed");

    // Capacity on start: the same error type.
    c.deallocate_vm(RG, "cpu-1")
        .await
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    c.delete_vm(RG, "cpu-2")
        .await
        .unwrap()
        .unwrap()
        .wait(c)
        .await
        .unwrap();
    c.create_or_update_vm(RG, "cpu-3", &vm("cpu-3", &subnet, "Standard_D2s_v5", false))
        .await
        .unwrap()
        .1
        .wait(c)
        .await
        .unwrap();
    let err = c
        .start_vm(RG, "cpu-1")
        .await
        .unwrap()
        .wait(c)
        .await
        .unwrap_err();
    assert!(
        err.is_capacity() && err.kind == ErrorKind::Operation,
        "{err}"
    );

    // NotFound, sync.
    let err = c.start_vm(RG, "ghost").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = c.start_vm("no-such-rg", "ghost").await.unwrap_err();
    assert!(
        err.is_not_found() && err.code == "ResourceGroupNotFound",
        "{err}"
    );

    // Conflict: a second operation on a busy VM.
    e.sim_config(json!({"latency_ms": {"vm_deallocate": 5000}}))
        .await;
    let _running = c.deallocate_vm(RG, "cpu-3").await.unwrap();
    let err = c.start_vm(RG, "cpu-3").await.unwrap_err();
    assert!(err.is_conflict() && !err.is_retryable(), "{err}");
    assert!(err.request_id.is_some() && err.client_request_id.is_some());

    // Async failure that is not capacity.
    e.sim_config(json!({"faults": {"operation_fail_rate": 1.0}}))
        .await;
    let (_, op) = c
        .create_or_update_vm(RG, "flaky", &vm("flaky", &subnet, "Standard_D4s_v5", false))
        .await
        .unwrap();
    let err = op.wait(c).await.unwrap_err();
    assert!(
        err.kind == ErrorKind::Operation && !err.is_capacity() && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn an_operation_resumes_in_a_new_client() {
    let e = env(json!({"latency_ms": {"vm_create": 300}})).await;
    let subnet = e.network().await;
    let (_, op) = e
        .client
        .create_or_update_vm(
            RG,
            "resume-1",
            &vm("resume-1", &subnet, "Standard_D4s_v5", true),
        )
        .await
        .unwrap();
    let saved = serde_json::to_string(&op).unwrap();
    assert!(
        matches!(op.poll(&e.client).await.unwrap(), azure::Poll::Pending(_)),
        "still running when saved"
    );
    drop(op);
    // A daemon restart: a new client, new governor, new tokens.
    let fresh = ArmClient::new(client_config(&e.sim, "sim-secret")).unwrap();
    let restored: Operation = serde_json::from_str(&saved).unwrap();
    let body = restored.wait(&fresh).await.unwrap().unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(body["properties"]["priority"], "Spot");
}

#[tokio::test]
async fn creates_survive_5xx_and_dropped_connections_without_duplicates() {
    let e = env(json!({})).await;
    let subnet = e.network().await;
    e.sim_config(json!({"faults": {"http_5xx_rate": 0.2, "drop_rate": 0.1}}))
        .await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = e.client.clone();
        let body = vm(&format!("node-{i:04}"), &subnet, "Standard_D2s_v5", true);
        tasks.spawn(async move {
            let name = format!("node-{i:04}");
            let (_, op) = c.create_or_update_vm(RG, &name, &body).await?;
            op.wait(&c).await
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Err(err) = r.unwrap() {
            failures.push(err.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} creates failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let stats = e.stats().await;
    e.sim_config(json!({"faults": {"http_5xx_rate": 0.0, "drop_rate": 0.0}}))
        .await;
    assert!(
        stats["faults_injected"].as_u64().unwrap() > 20,
        "faults were injected: {stats}"
    );
    assert_eq!(e.count("Microsoft.Compute/virtualMachines").await, 200);
    assert_eq!(
        e.count("Microsoft.Network/networkInterfaces").await,
        200,
        "no duplicate NICs"
    );
    assert_eq!(
        e.count("Microsoft.Compute/disks").await,
        200,
        "no duplicate disks"
    );
}

#[tokio::test]
async fn the_governor_paces_reads_instead_of_bouncing() {
    let limits = json!({"reads_bucket": 20.0, "reads_per_s": 100.0});
    let e = env_with(json!({"limits": limits}), |cfg| {
        cfg.governor = GovernorLimits {
            reads_bucket: 20.0,
            reads_per_s: 100.0,
            ..GovernorLimits::default()
        };
    })
    .await;
    e.client
        .ensure_resource_group(RG, "westeurope", &Default::default())
        .await
        .unwrap();
    let before = e.stats().await["throttled_429"].as_u64().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let c = e.client.clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                c.get_resource_group(RG).await.unwrap().unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let after = e.stats().await["throttled_429"].as_u64().unwrap();
    assert!(
        after - before <= 5,
        "500 reads from 50 tasks met {} 429s",
        after - before
    );
    let snap = e.client.governor();
    let reads = snap.classes.iter().find(|c| c.name == "reads").unwrap();
    assert!(
        reads.waited_total_s > 1.0,
        "the governor made callers wait: {reads:?}"
    );
}

#[tokio::test]
async fn after_a_429_no_request_of_that_class_goes_before_retry_after() {
    let e = env(json!({})).await;
    e.client
        .ensure_resource_group(RG, "westeurope", &Default::default())
        .await
        .unwrap();
    let gets_before = e.stats().await["requests"]["GET"].as_u64().unwrap();
    // Every ARM request is refused with Retry-After: 1 until we lift the fault.
    e.sim_config(json!({"faults": {"http_429_rate": 1.0}}))
        .await;
    let c = e.client.clone();
    let first = tokio::spawn(async move { c.get_resource_group(RG).await });
    // Wait (by polling the governor, not the clock) until the 429 has been seen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while e
        .client
        .governor()
        .classes
        .iter()
        .find(|c| c.name == "reads")
        .unwrap()
        .held_for_s
        .is_none()
    {
        assert!(Instant::now() < deadline, "no 429 was seen");
        tokio::task::yield_now().await;
    }
    // The hold ends no earlier than `t + held_for_s` (the snapshot is taken after `t`).
    let t = Instant::now();
    let held_for = e
        .client
        .governor()
        .classes
        .iter()
        .find(|c| c.name == "reads")
        .unwrap()
        .held_for_s
        .unwrap();
    let hold_end = t + Duration::from_secs_f64(held_for);
    e.sim_config(json!({"faults": {"http_429_rate": 0.0}}))
        .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = e.client.clone();
        tasks.spawn(async move {
            c.get_resource_group(RG).await.unwrap();
            Instant::now()
        });
    }
    while let Some(done) = tasks.join_next().await {
        assert!(
            done.unwrap() >= hold_end,
            "a read was answered before the Retry-After hold ended"
        );
    }
    first.await.unwrap().unwrap();
    let gets = e.stats().await["requests"]["GET"].as_u64().unwrap() - gets_before;
    assert_eq!(
        gets, 12,
        "one refused, one retried, ten waited: no bouncing"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_a_clear_credential_error_without_a_storm() {
    let e = env(json!({})).await;
    let bad = Arc::new(ArmClient::new(client_config(&e.sim, "not-the-secret")).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let c = bad.clone();
        tasks.spawn(async move { c.get_resource_group(RG).await.unwrap_err() });
    }
    let id = e.sim.identity();
    while let Some(err) = tasks.join_next().await {
        let err = err.unwrap();
        assert_eq!(err.kind, ErrorKind::Credential);
        let text = err.to_string();
        assert!(
            text.contains(&id.tenant_id) && text.contains(&id.client_id),
            "{text}"
        );
        assert!(text.contains("AADSTS7000215"), "{text}");
        assert!(
            !text.contains("not-the-secret") && !format!("{err:?}").contains("not-the-secret"),
            "{text}"
        );
    }
    assert_eq!(bad.token_refreshes(), 1, "20 callers, one token request");
    assert_eq!(
        e.stats().await["requests"]["GET"].as_u64().unwrap(),
        0,
        "nothing reached ARM without a token"
    );
    assert!(!format!("{bad:?}").contains("not-the-secret"));
}
