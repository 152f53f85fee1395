//! The in-process world the end-to-end tests share: an azure-sim over HTTPS on loopback, a
//! temp dir with the daemon's config and SQLite file, and a client for the daemon's API.
//! Assertions read the simulator's ground truth (`/_sim/resources`), not what the daemon says.

use std::path::PathBuf;

use azure_sim::{SimConfig, Simulator};
use renderburst::config::Config;
use renderburst::serve;
use serde_json::{Value, json};

pub struct World {
    pub sim: Simulator,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rb-e2e-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub async fn world(tag: &str, sim_patch: Value) -> World {
    let cfg = SimConfig::default()
        .merged(&json!({"latency_ms": {"vm_create": 60, "vm_start": 30, "vm_deallocate": 30, "vm_delete": 30,
                                      "nic": 5, "disk": 10, "eviction": 20}}))
        .unwrap()
        .merged(&sim_patch)
        .unwrap();
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let dir = temp_dir(tag);
    std::fs::write(dir.join("ca.pem"), sim.ca_pem()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    World { sim, dir, http }
}

impl World {
    /// The daemon in-process on its config, its API on a free loopback port.
    pub async fn serve(&self) -> (serve::Daemon, Api) {
        let daemon = serve::start(self.config(), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let api = Api::new(daemon.api_addr);
        (daemon, api)
    }

    /// A daemon config pointing at this world's simulator.
    pub fn config_toml(&self, listen: &str) -> String {
        let id = self.sim.identity();
        format!(
            r#"[server]
listen = "{listen}"
[store]
url = "sqlite://{db}"
[controller]
reconcile_interval_seconds = 1
gc_grace_seconds = 2
[auth]
admin_token = "e2e-admin-token-0123456789"
[azure]
subscription_id = "{sub}"
tenant_id = "{tenant}"
client_id = "{client}"
client_secret = "{secret}"
arm_endpoint = "{url}"
authority_host = "{url}"
ca_cert_file = "{ca}"
resource_group = "burst"
ensure_network = true
"#,
            db = self.dir.join("renderburst.db").display(),
            sub = id.subscription_id,
            tenant = id.tenant_id,
            client = id.client_id,
            secret = id.client_secret,
            url = self.sim.base_url(),
            ca = self.dir.join("ca.pem").display(),
        )
    }

    pub fn config(&self) -> Config {
        self.config_with(|toml| toml)
    }

    /// The daemon's configuration, edited by `edit` (more keys, other values).
    pub fn config_with(&self, edit: impl FnOnce(String) -> String) -> Config {
        let path = self.dir.join("renderburst.toml");
        std::fs::write(&path, edit(self.config_toml("127.0.0.1:0"))).unwrap();
        Config::load(Some(&path)).unwrap()
    }

    /// As [`World::serve`], on a configuration edited by `edit`.
    pub async fn serve_with(&self, edit: impl FnOnce(String) -> String) -> (serve::Daemon, Api) {
        let daemon = serve::start(self.config_with(edit), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let api = Api::new(daemon.api_addr);
        (daemon, api)
    }

    /// Merges `patch` into the simulator's configuration (`PUT /_sim/config`).
    pub async fn sim_config(&self, patch: Value) {
        self.control(reqwest::Method::PUT, "/_sim/config", Some(patch))
            .await;
    }

    /// Moves the simulator's clock `ms` ahead at once (`POST /_sim/clock`): Azure's
    /// latencies pass without the test waiting them out.
    pub async fn advance_sim_clock(&self, ms: u64) {
        self.control(
            reqwest::Method::POST,
            "/_sim/clock",
            Some(serde_json::json!({"advance_ms": ms})),
        )
        .await;
    }

    /// Every resource of type `ty` tagged with `pool` (`renderburst-pool`).
    pub async fn tagged(&self, ty: &str, pool: &str) -> Vec<Value> {
        self.resources(ty)
            .await
            .into_iter()
            .filter(|v| v["tags"]["renderburst-pool"] == pool)
            .collect()
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn resources(&self, ty: &str) -> Vec<Value> {
        let all = self
            .control(reqwest::Method::GET, "/_sim/resources", None)
            .await;
        all["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == ty)
            .cloned()
            .collect()
    }

    pub async fn vms(&self, pool: &str) -> Vec<Value> {
        self.resources("Microsoft.Compute/virtualMachines")
            .await
            .into_iter()
            .filter(|v| v["tags"]["renderburst-pool"] == pool)
            .collect()
    }

    pub async fn vm_puts(&self) -> u64 {
        let s = self
            .control(reqwest::Method::GET, "/_sim/stats", None)
            .await;
        s["by_type"]["Microsoft.Compute/virtualMachines"]["PUT"]
            .as_u64()
            .unwrap_or(0)
    }
}

pub fn power(vm: &Value) -> String {
    vm["properties"]["instanceView"]["statuses"]
        .as_array()
        .and_then(|s| {
            s.iter().find_map(|s| {
                s["code"]
                    .as_str()?
                    .strip_prefix("PowerState/")
                    .map(str::to_owned)
            })
        })
        .unwrap_or_default()
}

pub fn provisioning(vm: &Value) -> String {
    vm["properties"]["provisioningState"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Counts (running, deallocated, other) of a pool's VMs.
pub fn census(vms: &[Value]) -> (usize, usize, usize) {
    let running = vms
        .iter()
        .filter(|v| power(v) == "running" && provisioning(v) == "Succeeded")
        .count();
    let deallocated = vms
        .iter()
        .filter(|v| power(v) == "deallocated" && provisioning(v) == "Succeeded")
        .count();
    (running, deallocated, vms.len() - running - deallocated)
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth("e2e-admin-token-0123456789");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    pub async fn scale(&self, pool: &str, target: u32) {
        self.ok(
            reqwest::Method::POST,
            &format!("/v1/pools/{pool}/scale"),
            Some(json!({"target": target})),
        )
        .await;
    }
}

/// Whether a pool (as `GET /v1/pools/{name}` shows it) has a condition of type `ty`,
/// whether conditions are "Type: message" strings or `{"type", ...}` objects.
pub fn has_condition(pool: &Value, ty: &str) -> bool {
    conditions_of(&pool["status"]["conditions"], ty)
}

/// Whether a conditions array holds one of type `ty` (strings or objects).
pub fn conditions_of(conditions: &Value, ty: &str) -> bool {
    conditions.as_array().is_some_and(|cs| {
        cs.iter().any(|c| match c {
            Value::String(s) => s.split(':').next() == Some(ty),
            other => other["type"] == ty,
        })
    })
}

pub fn pool_spec(name: &str, sizes: &[&str], max: u32) -> Value {
    json!({"name": name, "mode": "vm", "vm_sizes": sizes, "image": "Canonical:ubuntu-24_04-lts:server:latest",
           "max": max, "idle_timeout_seconds": 0, "tags": {"show": "e2e"}})
}

/// Every NIC and disk of ours belongs to a VM that exists.
pub async fn assert_no_orphans(w: &World) {
    assert_owned_by_vms(
        &w.resources("Microsoft.Compute/virtualMachines").await,
        &w.resources("Microsoft.Network/networkInterfaces").await,
        &w.resources("Microsoft.Compute/disks").await,
    );
}

/// Every NIC and disk in these simulator listings belongs to one of these VMs.
pub fn assert_owned_by_vms(vms: &[Value], nics: &[Value], disks: &[Value]) {
    let vms: Vec<String> = vms
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for nic in nics {
        let owner = nic["properties"]["virtualMachine"]["id"]
            .as_str()
            .map(str::to_ascii_lowercase);
        assert!(
            owner.is_some_and(|o| vms.contains(&o)),
            "orphan NIC {}",
            nic["name"]
        );
    }
    for disk in disks {
        let owner = disk["managedBy"].as_str().map(str::to_ascii_lowercase);
        assert!(
            owner.is_some_and(|o| vms.contains(&o)),
            "orphan disk {}",
            disk["name"]
        );
    }
}
