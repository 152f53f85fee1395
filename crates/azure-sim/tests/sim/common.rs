//! The test harness: a simulator on loopback, a client that trusts its CA, a fresh ARM token,
//! request helpers that return status, headers and JSON body, and bounded polling.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use azure_sim::{SimConfig, Simulator};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// Every wait in these tests is bounded by this; a transition that does not happen in time
/// fails the test with a message saying what was awaited.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(10);

pub const API: &str = "2025-04-01";
pub const COMPUTE_API: &str = "2026-04-01";
pub const BATCH_API: &str = "2025-06-01";
pub const BATCH_DATA_API: &str = "2024-07-01.20.0";
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub const BATCH_SCOPE: &str = "https://batch.core.windows.net/.default";
pub const LOCATION: &str = "westeurope";
pub const SIZE: &str = "Standard_D2s_v5";

/// Latencies of a few milliseconds, so that transitions happen quickly but still
/// asynchronously.
pub fn fast_latencies() -> Value {
    json!({"latency_ms": {
        "vm_create": 20, "vm_start": 20, "vm_deallocate": 20, "vm_delete": 20,
        "nic": 5, "disk": 5, "batch_node": 20, "eviction": 20
    }})
}

/// One answer: status, headers and the body (JSON if it parses, else `Value::Null`).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an ARM error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// Asserts the status, printing the whole answer if it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected answer: {self:#?}");
        self
    }

    /// Asserts an ARM-shaped error with this status and code.
    #[track_caller]
    pub fn expect_err(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.code(), code, "unexpected error code: {self:#?}");
        assert!(
            !self.message().is_empty(),
            "ARM errors carry a message: {self:#?}"
        );
        self
    }

    /// Asserts that the answer is a 4xx with an ARM error body (`error.code`, `error.message`).
    #[track_caller]
    pub fn expect_arm_4xx(&self) -> &Self {
        assert!(
            (400..500).contains(&self.status),
            "expected a 4xx, got {self:#?}"
        );
        assert!(
            !self.code().is_empty() && !self.message().is_empty(),
            "expected an ARM error body: {self:#?}"
        );
        self
    }
}

pub struct Sim {
    pub sim: Simulator,
    pub http: reqwest::Client,
    pub base: String,
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
    pub sub: String,
    pub token: String,
}

/// Starts a simulator with fast latencies plus `patch` (a `/_sim/config` merge-patch) and
/// returns a client holding a fresh ARM token.
pub async fn spawn_sim(patch: Value) -> Sim {
    let cfg = SimConfig::default()
        .merged(&fast_latencies())
        .and_then(|c| c.merged(&patch))
        .expect("valid test config");
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("simulator starts");
    let http = client_for(sim.ca_pem());
    let id = sim.identity();
    let mut s = Sim {
        base: sim.base_url().to_owned(),
        http,
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

/// A reqwest client that trusts only the simulator's CA.
pub fn client_for(ca_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM parses");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client builds")
}

/// Waits until `f` returns `Some`, polling every [`POLL`] up to [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub fn with_api(path: &str, api: &str) -> String {
    if path.contains("api-version=") {
        path.to_owned()
    } else if path.contains('?') {
        format!("{path}&api-version={api}")
    } else {
        format!("{path}?api-version={api}")
    }
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        body,
    }
}

impl Sim {
    /// `https://127.0.0.1:PORT` + path (paths start with `/`; absolute URLs pass through).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn sub_path(&self) -> String {
        format!("/subscriptions/{}", self.sub)
    }

    pub fn rg_path(&self, rg: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{rg}", self.sub)
    }

    pub fn vm_path(&self, rg: &str, vm: &str) -> String {
        format!(
            "{}/providers/Microsoft.Compute/virtualMachines/{vm}",
            self.rg_path(rg)
        )
    }

    pub fn nic_path(&self, rg: &str, nic: &str) -> String {
        format!(
            "{}/providers/Microsoft.Network/networkInterfaces/{nic}",
            self.rg_path(rg)
        )
    }

    pub fn disk_path(&self, rg: &str, disk: &str) -> String {
        format!(
            "{}/providers/Microsoft.Compute/disks/{disk}",
            self.rg_path(rg)
        )
    }

    pub fn subnet_id(&self, rg: &str) -> String {
        format!(
            "{}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default",
            self.rg_path(rg)
        )
    }

    /// Client-credentials token for `scope`.
    pub async fn fetch_token(&self, scope: &str) -> String {
        let r = self.token_request(&self.tenant, &self.secret, scope).await;
        r.expect(200);
        r.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn token_request(&self, tenant: &str, secret: &str, scope: &str) -> Resp {
        let r = self
            .http
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("token request");
        to_resp(r).await
    }

    /// Any request, with an optional bearer token and JSON body; transport errors panic.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        self.try_send(method.clone(), url, token, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: transport error {e:?}"))
    }

    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self.http.request(method, self.url(url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Ok(to_resp(req.send().await?).await)
    }

    /// ARM request with the ARM token; `api-version` is added unless the path has one.
    pub async fn arm(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let url = with_api(path, api_for(path));
        self.send(method, &url, Some(&self.token), body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.arm(Method::GET, path, None).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.arm(Method::HEAD, path, None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.arm(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.arm(Method::PATCH, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Resp {
        self.arm(Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.arm(Method::DELETE, path, None).await
    }

    /// Polls an `Azure-AsyncOperation` URL until the status is terminal; returns the final
    /// status body. Checks the body shape on every poll.
    pub async fn poll_op(&self, url: &str) -> Value {
        eventually(&format!("operation {url} to finish"), async || {
            let r = self.get(url).await;
            r.expect(200);
            let status = r.body["status"]
                .as_str()
                .unwrap_or_else(|| panic!("operation status without status: {r:#?}"));
            assert!(
                r.body["startTime"].is_string(),
                "operation status without startTime: {r:#?}"
            );
            match status {
                "InProgress" => None,
                "Succeeded" | "Failed" | "Canceled" => Some(r.body),
                other => panic!("unexpected operation status {other}: {r:#?}"),
            }
        })
        .await
    }

    /// Polls a `Location` URL until it stops answering 202; returns that last answer.
    pub async fn poll_location(&self, url: &str) -> Resp {
        eventually(
            &format!("Location {url} to stop answering 202"),
            async || {
                let r = self.get(url).await;
                (r.status != 202).then_some(r)
            },
        )
        .await
    }

    /// Like `poll_op`, asserting the operation succeeded.
    pub async fn wait_op_ok(&self, r: &Resp) {
        let aao = r
            .header("azure-asyncoperation")
            .unwrap_or_else(|| panic!("no Azure-AsyncOperation: {r:#?}"))
            .to_owned();
        let op = self.poll_op(&aao).await;
        assert_eq!(op["status"], "Succeeded", "operation failed: {op:#}");
    }

    // ---- the control API ----

    pub async fn sim_get(&self, path: &str) -> Value {
        let r = self.send(Method::GET, path, None, None).await;
        r.expect(200);
        r.body
    }

    pub async fn set_config(&self, patch: Value) -> Value {
        let r = self
            .send(Method::PUT, "/_sim/config", None, Some(&patch))
            .await;
        r.expect(200);
        r.body
    }

    pub async fn stats(&self) -> Value {
        self.sim_get("/_sim/stats").await
    }

    pub async fn resources(&self) -> Vec<Value> {
        self.sim_get("/_sim/resources").await["resources"]
            .as_array()
            .expect("resources array")
            .clone()
    }

    /// Resources of an ARM type (case-insensitive) in the whole simulator.
    pub async fn resources_of(&self, arm_type: &str) -> Vec<Value> {
        self.resources()
            .await
            .into_iter()
            .filter(|r| {
                r["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(arm_type))
            })
            .collect()
    }

    // ---- building blocks ----

    pub async fn create_rg(&self, rg: &str) {
        let r = self
            .put(&self.rg_path(rg), &json!({"location": LOCATION}))
            .await;
        assert!(matches!(r.status, 200 | 201), "RG create: {r:#?}");
    }

    /// A resource group with a VNet `vnet` holding subnet `default`; returns the subnet id.
    pub async fn create_network(&self, rg: &str) -> String {
        self.create_rg(rg).await;
        let vnet = format!(
            "{}/providers/Microsoft.Network/virtualNetworks/vnet",
            self.rg_path(rg)
        );
        let r = self
            .put(
                &vnet,
                &json!({"location": LOCATION, "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                    "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/20"}}]
                }}),
            )
            .await;
        assert!(matches!(r.status, 200 | 201), "VNet create: {r:#?}");
        self.subnet_id(rg)
    }

    pub async fn power_state(&self, rg: &str, vm: &str) -> Option<String> {
        let r = self
            .get(&format!("{}?$expand=instanceView", self.vm_path(rg, vm)))
            .await;
        if r.status == 404 {
            return None;
        }
        r.expect(200);
        power_of(&r.body)
    }

    /// Creates a VM from `body` and waits for its create to succeed.
    pub async fn create_vm_ok(&self, rg: &str, name: &str, body: &Value) {
        let r = self.put(&self.vm_path(rg, name), body).await;
        r.expect(201);
        self.wait_op_ok(&r).await;
    }

    /// Runs a VM action (start, deallocate…) and waits for it to succeed.
    pub async fn vm_action_ok(&self, rg: &str, name: &str, action: &str) {
        let r = self
            .post(&format!("{}/{action}", self.vm_path(rg, name)), None)
            .await;
        r.expect(202);
        self.wait_op_ok(&r).await;
    }
}

/// The api-version a path's resource provider would get from its SDK.
fn api_for(path: &str) -> &'static str {
    let p = path.to_ascii_lowercase();
    if p.contains("microsoft.batch") {
        BATCH_API
    } else if p.contains("microsoft.compute") {
        COMPUTE_API
    } else if p.contains("microsoft.network") {
        "2026-03-01"
    } else {
        API
    }
}

/// `PowerState/<x>` → `x`, from a VM with its instance view.
pub fn power_of(vm: &Value) -> Option<String> {
    vm["properties"]["instanceView"]["statuses"]
        .as_array()?
        .iter()
        .filter_map(|s| s["code"].as_str())
        .find_map(|c| c.strip_prefix("PowerState/"))
        .map(str::to_owned)
}

/// A Linux VM with an inline NIC (`{name}-nic`) and an OS disk (`{name}-osdisk`), both
/// `deleteOption: Delete`.
pub fn vm_body(subnet_id: &str, name: &str, size: &str) -> Value {
    json!({
        "location": LOCATION,
        "tags": {"renderburst-pool": "p1", "renderburst-owner": "tests"},
        "properties": {
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"name": format!("{name}-osdisk"), "createOption": "FromImage", "deleteOption": "Delete",
                           "managedDisk": {"storageAccountType": "Premium_LRS"}}
            },
            "osProfile": {"computerName": name, "adminUsername": "render", "linuxConfiguration": {"disablePasswordAuthentication": true}},
            "networkProfile": {
                "networkApiVersion": "2020-11-01",
                "networkInterfaceConfigurations": [{
                    "name": format!("{name}-nic"),
                    "properties": {"primary": true, "deleteOption": "Delete", "ipConfigurations": [
                        {"name": "ipconfig1", "properties": {"subnet": {"id": subnet_id}}}
                    ]}
                }]
            }
        }
    })
}

/// The same as a Spot VM with the given eviction policy.
pub fn spot_body(subnet_id: &str, name: &str, size: &str, eviction: &str) -> Value {
    let mut b = vm_body(subnet_id, name, size);
    b["properties"]["priority"] = json!("Spot");
    b["properties"]["evictionPolicy"] = json!(eviction);
    b["properties"]["billingProfile"] = json!({"maxPrice": -1});
    b
}
