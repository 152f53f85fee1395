//! Batch pools end to end: the real daemon (in-process, or a child process for the crash
//! test) with its HTTP API on port 0, a SQLite file in a temp dir, and azure-sim over HTTPS.
//! Assertions read the simulator's ground truth: the pool from `/_sim/resources`, its nodes
//! from the Batch data plane with a Batch token.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use azure_sim::{SimConfig, Simulator};
use renderburst::config::Config;
use renderburst::serve;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common;
use common::eventually;

const ACCOUNT: &str = "rbfarm";
const TOKEN: &str = "e2e-admin-token-0123456789";

struct World {
    sim: Simulator,
    dir: PathBuf,
    http: reqwest::Client,
}

async fn world(tag: &str, sim_patch: Value) -> World {
    let cfg = SimConfig::default()
        .merged(&json!({"latency_ms": {"batch_node": 200, "eviction": 100}}))
        .unwrap()
        .merged(&sim_patch)
        .unwrap();
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "rb-batch-e2e-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), sim.ca_pem()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    World { sim, dir, http }
}

impl World {
    /// The daemon in-process on its config, its API on a free loopback port.
    async fn serve(&self) -> (serve::Daemon, Api) {
        let daemon = serve::start(self.config(), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let api = Api::new(daemon.api_addr);
        (daemon, api)
    }

    fn config_toml(&self, listen: &str) -> String {
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
admin_token = "{TOKEN}"
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
batch_account = "{ACCOUNT}"
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

    fn config(&self) -> Config {
        self.config_with(|toml| toml)
    }

    /// The daemon's configuration, edited by `edit` (more sections, other values).
    fn config_with(&self, edit: impl FnOnce(String) -> String) -> Config {
        let path = self.dir.join("renderburst.toml");
        std::fs::write(&path, edit(self.config_toml("127.0.0.1:0"))).unwrap();
        Config::load(Some(&path)).unwrap()
    }

    /// As [`World::serve`], on a configuration edited by `edit`.
    async fn serve_with(&self, edit: impl FnOnce(String) -> String) -> (serve::Daemon, Api) {
        let daemon = serve::start(self.config_with(edit), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let api = Api::new(daemon.api_addr);
        (daemon, api)
    }

    /// GET requests the simulator has answered (ARM and the Batch data plane).
    async fn reads(&self) -> u64 {
        let s = self.control(Method::GET, "/_sim/stats", None).await;
        s["requests"]["GET"].as_u64().unwrap()
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
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

    /// The Batch pools in the simulator, with their properties.
    async fn batch_pools(&self) -> Vec<Value> {
        let all = self.control(Method::GET, "/_sim/resources", None).await;
        all["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "Microsoft.Batch/batchAccounts/pools")
            .cloned()
            .collect()
    }

    async fn batch_pool(&self, name: &str) -> Option<Value> {
        self.batch_pools()
            .await
            .into_iter()
            .find(|p| p["name"] == name)
    }

    async fn pool_puts(&self) -> u64 {
        let s = self.control(Method::GET, "/_sim/stats", None).await;
        s["by_type"]["Microsoft.Batch/batchAccounts/pools"]["PUT"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A token from the simulator's Entra ID for `scope`.
    async fn token(&self, scope: &str) -> String {
        let id = self.sim.identity();
        let token: Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.sim.base_url(),
                id.tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id.client_id.as_str()),
                ("client_secret", id.client_secret.as_str()),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a Batch pool through ARM, as someone else (or a lost run) would.
    async fn put_pool(&self, name: &str, tags: Value) {
        let token = self.token("https://management.azure.com/.default").await;
        let url = format!(
            "{}/subscriptions/{}/resourceGroups/burst/providers/Microsoft.Batch/batchAccounts/{ACCOUNT}/pools/{name}?api-version=2025-06-01",
            self.sim.base_url(),
            self.sim.identity().subscription_id
        );
        let body = json!({"tags": tags, "properties": {
            "vmSize": "Standard_D4s_v5",
            "deploymentConfiguration": {"virtualMachineConfiguration": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 1}}}});
        let r = self
            .http
            .put(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// The pool's nodes from the Batch data plane: (id, state, dedicated).
    async fn nodes(&self, pool: &str) -> Vec<(String, String, bool)> {
        let token = self.token("https://batch.core.windows.net/.default").await;
        let mut url = format!(
            "{}/batch/{ACCOUNT}/pools/{pool}/nodes?api-version=2024-07-01.20.0",
            self.sim.base_url()
        );
        let mut out = Vec::new();
        loop {
            let page: Value = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for n in page["value"].as_array().cloned().unwrap_or_default() {
                out.push((
                    n["id"].as_str().unwrap().to_owned(),
                    n["state"].as_str().unwrap().to_owned(),
                    n["isDedicated"].as_bool().unwrap(),
                ));
            }
            match page["odata.nextLink"].as_str() {
                Some(next) => url = next.to_owned(),
                None => return out,
            }
        }
    }
}

/// (targetDedicated, targetSpot, currentDedicated, currentSpot, allocationState) of a pool.
fn scale(p: &Value) -> (u64, u64, u64, u64, String) {
    let props = &p["properties"];
    let fixed = &props["scaleSettings"]["fixedScale"];
    (
        fixed["targetDedicatedNodes"].as_u64().unwrap(),
        fixed["targetLowPriorityNodes"].as_u64().unwrap(),
        props["currentDedicatedNodes"].as_u64().unwrap(),
        props["currentLowPriorityNodes"].as_u64().unwrap(),
        props["allocationState"].as_str().unwrap().to_owned(),
    )
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// For checks that something does NOT happen: longer than the garbage collector's grace
    /// (2 s) and the auto-delete time, and at least two whole activations, however slow the
    /// machine.
    async fn quiet_period(&self) {
        let activation = || async {
            self.ok(Method::GET, "/v1/status", None).await["controller"]["reconciler"]["number"]
                .as_u64()
                .unwrap()
        };
        let start = activation().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        eventually("three more activations", 60, || async {
            (activation().await >= start + 3).then_some(())
        })
        .await;
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    async fn scale(&self, pool: &str, target: u32) {
        self.ok(
            Method::POST,
            &format!("/v1/pools/{pool}/scale"),
            Some(json!({"target": target})),
        )
        .await;
    }

    async fn heartbeat(&self, node: &str, busy: bool) {
        self.ok(
            Method::PUT,
            &format!("/v1/nodes/{node}/heartbeat"),
            Some(json!({"busy": busy})),
        )
        .await;
    }

    async fn events(&self) -> Vec<Value> {
        let v = self.ok(Method::GET, "/v1/events?limit=1000", None).await;
        v["events"].as_array().cloned().unwrap_or_default()
    }
}

fn batch_spec(name: &str, max: u32, batch: Value) -> Value {
    let mut b = json!({"account": ACCOUNT, "node_agent_sku_id": "batch.node.ubuntu 24.04"});
    for (k, v) in batch.as_object().unwrap() {
        b[k] = v.clone();
    }
    json!({"name": name, "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "priority": "spot",
           "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": max, "idle_timeout_seconds": 0,
           "tags": {"show": "e2e"}, "batch": b,
           "licenses": [{"name": "arnold", "variable": "ADSKFLEX_LICENSE_FILE", "server": "27000@lic.studio.lan"}]})
}

/// Waits until the simulator's pool is Steady with these targets and as many nodes.
async fn settled(w: &World, pool: &str, dedicated: u64, spot: u64) -> Value {
    eventually(
        &format!("{pool}: Steady at {dedicated} dedicated + {spot} Spot"),
        90,
        || async {
            let p = w.batch_pool(pool).await?;
            (scale(&p) == (dedicated, spot, dedicated, spot, "Steady".into())).then_some(p)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_pool_scales_0_20_5_0_removing_idle_nodes_only() {
    let w = world("scale", json!({})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("maya", 30, json!({}))),
    )
    .await;
    // Persistent: created at once, at zero, with what the spec says.
    let p = settled(&w, "maya", 0, 0).await;
    assert!(
        p["tags"]["renderburst-owner"]
            .as_str()
            .is_some_and(|o| !o.is_empty())
    );
    assert_eq!(p["tags"]["show"], "e2e");
    let props = &p["properties"];
    assert_eq!(
        props["scaleSettings"]["fixedScale"]["nodeDeallocationOption"],
        "TaskCompletion"
    );
    assert_eq!(
        props["startTask"]["environmentSettings"],
        json!([{"name": "ADSKFLEX_LICENSE_FILE", "value": "27000@lic.studio.lan"}])
    );

    api.scale("maya", 20).await;
    settled(&w, "maya", 0, 20).await;
    let nodes = w.nodes("maya").await;
    assert_eq!(nodes.len(), 20);
    assert!(nodes.iter().all(|(_, s, d)| s == "idle" && !d), "{nodes:?}");
    // The daemon lists them as nodes, under their Batch node ids.
    let listed = eventually("the daemon lists 20 running nodes", 30, || async {
        let v = api.ok(Method::GET, "/v1/nodes?pool=maya", None).await;
        let running: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "running")
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        (running.len() == 20).then_some(running)
    })
    .await;
    let mut ids: Vec<String> = nodes.iter().map(|(id, _, _)| id.clone()).collect();
    ids.sort();
    let mut names = listed.clone();
    names.sort();
    assert_eq!(ids, names);

    // One node is busy: scale-down takes idle ones only.
    let busy = ids[7].clone();
    api.heartbeat(&busy, true).await;
    api.scale("maya", 5).await;
    settled(&w, "maya", 0, 5).await;
    let left = w.nodes("maya").await;
    assert_eq!(left.len(), 5);
    assert!(
        left.iter().any(|(id, _, _)| *id == busy),
        "the busy node survived: {left:?}"
    );

    api.scale("maya", 0).await;
    let p = settled(&w, "maya", 0, 1).await;
    assert_eq!(scale(&p).3, 1);
    let left = w.nodes("maya").await;
    assert_eq!(
        left.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>(),
        vec![busy.clone()],
        "only the busy node is left"
    );
    eventually(
        "the status says a node is waiting to be idle",
        30,
        || async {
            let pool = api.ok(Method::GET, "/v1/pools/maya", None).await;
            let conds = condition_texts(&pool);
            conds.contains("WaitingForIdle: 1").then_some(())
        },
    )
    .await;

    api.heartbeat(&busy, false).await;
    settled(&w, "maya", 0, 0).await;
    assert!(w.nodes("maya").await.is_empty());
    // Persistent: it stays at zero.
    api.quiet_period().await;
    assert!(w.batch_pool("maya").await.is_some());
    assert_eq!(w.pool_puts().await, 1, "created once");
    let kinds: Vec<String> = api
        .events()
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.iter().any(|k| k == "batch.pool_created"));
    assert!(
        kinds.iter().filter(|k| *k == "batch.node_removed").count() == 20,
        "{kinds:?}"
    );

    // Deleting the renderburst pool deletes the Batch pool it created.
    let (status, _) = api.call(Method::DELETE, "/v1/pools/maya", None).await;
    assert_eq!(status, 202);
    eventually(
        "the pool gone from the daemon and from Batch",
        60,
        || async {
            let gone = w.batch_pool("maya").await.is_none()
                && api.call(Method::GET, "/v1/pools/maya", None).await.0 == 404;
            gone.then_some(())
        },
    )
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_quota_is_reported_and_dedicated_nodes_make_up_the_shortfall() {
    // 16 Spot vCPUs: four 4-vCPU nodes.
    let w = world("quota", json!({"quota": {"batch_spot_vcpus": 16}})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec(
            "vray",
            10,
            json!({"spot_fallback_to_dedicated": true}),
        )),
    )
    .await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("nofall", 10, json!({}))),
    )
    .await;
    settled(&w, "vray", 0, 0).await;
    // Two jobs want 12 together: clamped to max, 10.
    for job in ["shot-10", "shot-20"] {
        api.ok(
            Method::POST,
            "/v1/pools/vray/requests",
            Some(json!({"count": 6, "ttl_seconds": 600, "requester": "deadline", "job": job})),
        )
        .await;
    }
    // Spot stops at 4; 6 dedicated make up the shortfall, up to max.
    settled(&w, "vray", 6, 4).await;
    let nodes = w.nodes("vray").await;
    assert_eq!(nodes.iter().filter(|(_, _, d)| *d).count(), 6);
    assert_eq!(nodes.iter().filter(|(_, _, d)| !*d).count(), 4);

    // The error is in the pool's status and in the events.
    let pool = api.ok(Method::GET, "/v1/pools/vray", None).await;
    let status = pool["status"].to_string();
    assert_eq!(
        pool["status"]["last_error"]["code"], "AccountLowPriorityCoreQuotaReached",
        "{status}"
    );
    eventually("the status says Spot fell back to dedicated", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/vray", None).await;
        condition_texts(&p)
            .contains("SpotFallback: Batch could not allocate 6 Spot nodes (AccountLowPriorityCoreQuotaReached")
            .then_some(())
    })
    .await;
    let events = api.events().await;
    assert!(
        events.iter().any(|e| e["kind"] == "batch.resize_error"
            && e["pool"] == "vray"
            && e["data"]["code"] == "AccountLowPriorityCoreQuotaReached"),
        "{events:#?}"
    );
    // And in `renderburst pool show`.
    let token = w.dir.join("cli.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["pool", "show", "vray", "--api", &api.base, "--token-file"])
        .arg(&token)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("AccountLowPriorityCoreQuotaReached"),
        "{text}"
    );

    // Without fallback the shortfall stays a shortfall: the quota is used up by vray.
    api.scale("nofall", 3).await;
    eventually("nofall reports its Spot shortfall", 60, || async {
        let p = api.ok(Method::GET, "/v1/pools/nofall", None).await;
        let s = p["status"].to_string();
        (s.contains("SpotShortfall") && s.contains("AccountLowPriorityCoreQuotaReached"))
            .then_some(())
    })
    .await;
    let p = w.batch_pool("nofall").await.unwrap();
    assert_eq!(
        (scale(&p).0, scale(&p).2),
        (0, 0),
        "no dedicated nodes: {p:#}"
    );

    // Preempted Spot nodes are counted and come back (slowly enough to be seen).
    w.control(
        Method::PUT,
        "/_sim/config",
        Some(json!({"latency_ms": {"eviction": 3000}})),
    )
    .await;
    let pre = w
        .control(
            Method::POST,
            "/_sim/batch/preempt",
            Some(json!({"count": 2, "pool": "vray"})),
        )
        .await;
    assert_eq!(pre["preempted"].as_array().unwrap().len(), 2);
    eventually("the preemptions counted", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/vray", None).await;
        (p["status"]["batch"]["preempted_total"] == 2).then_some(())
    })
    .await;
    let events = api.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["kind"] == "batch.preempted")
            .count(),
        2
    );
    eventually("the preempted nodes reallocated", 30, || async {
        let n = w.nodes("vray").await;
        (n.len() == 10 && n.iter().all(|(_, s, _)| s == "idle")).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_pool_comes_with_demand_and_goes_when_idle_a_persistent_one_stays() {
    let w = world("auto", json!({})).await;
    let (daemon, api) = w.serve().await;
    // Demand leaving is what is tested: no stabilization window.
    let mut houdini = batch_spec(
        "houdini",
        8,
        json!({"lifecycle": "auto", "auto_delete_after_seconds": 3}),
    );
    houdini["scale_down_stabilization_seconds"] = json!(0);
    api.ok(Method::POST, "/v1/pools", Some(houdini)).await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("keep", 8, json!({"lifecycle": "persistent"}))),
    )
    .await;
    settled(&w, "keep", 0, 0).await;
    eventually("the auto pool waits for demand", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/houdini", None).await;
        p["status"]["conditions"]
            .to_string()
            .contains("AutoPoolAbsent")
            .then_some(())
    })
    .await;
    assert!(w.batch_pool("houdini").await.is_none());

    let req = api
        .ok(
            Method::POST,
            "/v1/pools/houdini/requests",
            Some(json!({"count": 3, "ttl_seconds": 600, "requester": "deadline"})),
        )
        .await;
    settled(&w, "houdini", 0, 3).await;
    // The pool cannot be empty before the request is released.
    let released = Instant::now();
    api.ok(
        Method::DELETE,
        &format!("/v1/requests/{}", req["id"].as_str().unwrap()),
        None,
    )
    .await;
    settled(&w, "houdini", 0, 0).await;
    eventually(
        "the auto pool deleted after its idle period",
        60,
        || async { w.batch_pool("houdini").await.is_none().then_some(()) },
    )
    .await;
    assert!(
        released.elapsed() >= Duration::from_secs(3),
        "deleted only after being empty for auto_delete_after_seconds ({:?})",
        released.elapsed()
    );
    assert!(
        w.batch_pool("keep").await.is_some(),
        "the persistent pool stays"
    );
    eventually("the deletion in the events", 30, || async {
        let events = api.events().await;
        events
            .iter()
            .any(|e| e["kind"] == "batch.pool_deleted" && e["pool"] == "houdini")
            .then_some(())
    })
    .await;
    // The next demand brings it back.
    api.scale("houdini", 2).await;
    settled(&w, "houdini", 0, 2).await;
    assert!(w.batch_pool("keep").await.is_some());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_resize_adopts_the_existing_batch_pool() {
    let w = world("crash", json!({"latency_ms": {"batch_node": 2500}})).await;
    let port = common::free_port();
    let cfg_path = w.dir.join("renderburst.toml");
    std::fs::write(&cfg_path, w.config_toml(&format!("127.0.0.1:{port}"))).unwrap();
    let spawn = || common::spawn_daemon(&cfg_path);
    let api = Api::new(format!("127.0.0.1:{port}").parse().unwrap());
    let mut child = spawn();
    common::wait_answers(&api.http, &api.base).await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("crash", 30, json!({}))),
    )
    .await;
    api.scale("crash", 20).await;
    // Kill it while Batch is resizing toward 20.
    eventually("the pool resizing toward 20", 30, || async {
        let p = w.batch_pool("crash").await?;
        let (_, spot, _, _, state) = scale(&p);
        (spot == 20 && state == "Resizing").then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn();
    settled(&w, "crash", 0, 20).await;
    // It keeps managing the same pool after the restart.
    api.scale("crash", 6).await;
    settled(&w, "crash", 0, 6).await;
    assert_eq!(w.batch_pools().await.len(), 1, "no second Batch pool");
    assert_eq!(w.pool_puts().await, 1, "the pool was created once");
    assert_eq!(w.nodes("crash").await.len(), 6);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_batch_pools_of_ours_are_collected_others_left_alone() {
    let w = world("gc", json!({})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("keep", 4, json!({}))),
    )
    .await;
    let keep = settled(&w, "keep", 0, 0).await;
    let owner = keep["tags"]["renderburst-owner"]
        .as_str()
        .unwrap()
        .to_owned();
    // One left by a lost run of this daemon, one of someone else's, and one that only looks
    // like ours.
    w.put_pool(
        "stray",
        json!({"renderburst-owner": owner, "renderburst-pool": "gone"}),
    )
    .await;
    w.put_pool("theirs", json!({"renderburst-owner": "another-daemon"}))
        .await;
    w.put_pool("legacy", json!({})).await;
    eventually("the stray pool collected", 60, || async {
        w.batch_pool("stray").await.is_none().then_some(())
    })
    .await;
    for name in ["keep", "theirs", "legacy"] {
        assert!(w.batch_pool(name).await.is_some(), "{name} was left alone");
    }
    eventually("the collection in the events", 30, || async {
        api.events()
            .await
            .iter()
            .any(|e| {
                e["kind"] == "gc.batch_pool" && e["message"].as_str().unwrap().contains("stray")
            })
            .then_some(())
    })
    .await;
    // An existing pool is adopted by name, never recreated or deleted.
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("adopt", 4, json!({"existing_pool": "legacy"}))),
    )
    .await;
    api.scale("adopt", 2).await;
    settled(&w, "legacy", 0, 2).await;
    let (status, _) = api.call(Method::DELETE, "/v1/pools/adopt", None).await;
    assert_eq!(status, 202);
    eventually(
        "the adopting pool gone, the adopted one at zero",
        60,
        || async {
            let gone = api.call(Method::GET, "/v1/pools/adopt", None).await.0 == 404;
            let p = w.batch_pool("legacy").await?;
            (gone && scale(&p) == (0, 0, 0, 0, "Steady".into())).then_some(())
        },
    )
    .await;
    api.quiet_period().await;
    assert!(w.batch_pool("legacy").await.is_some(), "never deleted");
    assert_eq!(
        w.pool_puts().await,
        4,
        "keep + the three made by hand, nothing else"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_that_moves_during_a_resize_stops_it_instead_of_waiting() {
    // Slow nodes: a resize toward 20 takes 4 s in the simulator.
    let w = world("moving", json!({"latency_ms": {"batch_node": 4000}})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(batch_spec("nuke", 30, json!({}))),
    )
    .await;
    settled(&w, "nuke", 0, 0).await;
    api.scale("nuke", 20).await;
    eventually("the pool growing toward 20", 30, || async {
        let p = w.batch_pool("nuke").await?;
        let (_, spot, _, _, state) = scale(&p);
        (spot == 20 && state == "Resizing").then_some(())
    })
    .await;
    // The job was cancelled: 3 are enough. The resize is stopped, then the targets set.
    api.scale("nuke", 3).await;
    settled(&w, "nuke", 0, 3).await;
    let events = api.events().await;
    assert!(
        events.iter().any(|e| e["kind"] == "batch.resize_stopped"),
        "{events:#?}"
    );
    // Our own stop is not reported as a failure.
    assert!(
        !events.iter().any(|e| e["kind"] == "batch.resize_error"),
        "{events:#?}"
    );
    let pool = api.ok(Method::GET, "/v1/pools/nuke", None).await;
    assert_eq!(pool["status"]["last_error"], Value::Null, "{pool}");
    daemon.stop().await;
}

/// Bootstrap on a Batch pool end to end: the Batch pool's start task carries only the
/// daemon's URL and the pool's enrollment token (no secret, no license value); the
/// simulator's nodes run it (enroll with that token, get their script back, register with
/// the node token found in it); nodes that never register are reported and replaced; a node
/// enrolls once; secrets and tokens appear in no API answer or event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_nodes_enroll_through_the_start_task_and_zombies_are_replaced() {
    // Booting starts off: the first nodes never register.
    let w = world("boot", json!({"boot": {"enabled": false}})).await;
    let secret_file = w.dir.join("smb.password");
    std::fs::write(&secret_file, "s3cret-from-a-file\n").unwrap();
    // Declared by the operator; the spec names it.
    let (daemon, api) = w
        .serve_with(|t| format!("{t}[secrets.smb]\nfile = \"{}\"\n", secret_file.display()))
        .await;
    let mut spec = batch_spec("nuke", 4, json!({}));
    spec["bootstrap"] = json!({
        "mounts": [{"kind": "smb", "source": "//filer/projects", "target": "/mnt/projects",
                    "username": "render", "password": {"secret": "smb"}}],
        "env": {"RLM_LICENSE": "5053@license01"},
        "render_client": {"command": "/opt/nuke/render-client"},
        "register_timeout_seconds": 3
    });
    api.ok(Method::POST, "/v1/pools", Some(spec)).await;

    // The preview: the script a node gets when it enrolls, and the start task, masked.
    let (code, script, err) = common::cli(
        &api.base,
        TOKEN,
        &w.dir,
        &["pool", "bootstrap", "nuke", "--node-preview"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains("password=********"), "{script}");
    assert!(script.contains("ADSKFLEX_LICENSE_FILE"), "{script}");
    assert!(
        script.contains(r"RENDERBURST_NODE_TOKEN='\''********'\''"),
        "{script}"
    );
    assert!(err.contains("# start task: /bin/bash -c"), "{err}");
    assert!(
        err.contains("# start task environment: RENDERBURST_POOL_TOKEN=********"),
        "{err}"
    );
    assert!(!script.contains("s3cret") && !err.contains("s3cret"));

    // The persistent pool is created at once, with renderburst's start task.
    let pool = settled(&w, "nuke", 0, 0).await;
    let task = &pool["properties"]["startTask"];
    let env: Vec<(String, String)> = task["environmentSettings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["RENDERBURST_API_URL", "RENDERBURST_POOL_TOKEN"],
        "{task}"
    );
    assert_eq!(env[0].1, api.base);
    let pool_token = env[1].1.clone();
    assert!(pool_token.starts_with("rbp_"), "{task}");
    assert_eq!(task["userIdentity"]["autoUser"]["elevationLevel"], "Admin");
    let text = pool.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("27000@lic"),
        "{text}"
    );

    // A node the daemon has not listed: 404, retried by the start task.
    let enroll = |node: &str| {
        api.http
            .post(format!("{}/v1/nodes/{node}/enroll", api.base))
            .bearer_auth(&pool_token)
            .send()
    };
    assert_eq!(enroll("tvmps_nobody").await.unwrap().status(), 404);

    // Two nodes that never register: reported and removed after 3 s.
    api.scale("nuke", 2).await;
    let zombies: Vec<String> = eventually("two zombies reported", 90, || async {
        let z: Vec<String> = api
            .events()
            .await
            .iter()
            .filter(|e| e["kind"] == "node.zombie")
            .map(|e| e["node"].as_str().unwrap().to_owned())
            .collect();
        (z.len() >= 2).then_some(z)
    })
    .await;

    // Booting on: the replacements enroll, register and count as ready.
    w.control(
        Method::PUT,
        "/_sim/config",
        Some(json!({"boot": {"enabled": true}})),
    )
    .await;
    let ready: Vec<String> = eventually("two registered nodes, no zombie left", 90, || async {
        let nodes = api.ok(Method::GET, "/v1/nodes?pool=nuke", None).await;
        let ready: Vec<String> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["registered_at"].is_string() && n["state"] == "running")
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        let listed: Vec<String> = w
            .nodes("nuke")
            .await
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        let clean = listed.len() == 2
            && ready.len() == 2
            && listed.iter().all(|id| ready.contains(id))
            && !zombies.iter().any(|z| listed.contains(z));
        clean.then_some(ready)
    })
    .await;
    let pool = api.ok(Method::GET, "/v1/pools/nuke", None).await;
    assert_eq!(pool["status"]["ready"], 2, "{pool}");
    let events = api.events().await;
    for node in &ready {
        let enrolled = events
            .iter()
            .find(|e| e["kind"] == "node.enrolled" && e["node"] == node.as_str())
            .unwrap_or_else(|| panic!("no node.enrolled event for {node}"));
        assert_eq!(enrolled["actor"], "enroll:nuke");
        assert!(
            events.iter().any(|e| e["kind"] == "node.registered"
                && e["node"] == node.as_str()
                && e["actor"] == format!("node:{node}")),
            "no node.registered for {node}"
        );
    }
    let stats = w.control(Method::GET, "/_sim/stats", None).await;
    assert!(
        stats["boots"]["registered"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert_eq!(stats["boots"]["failed"], 0, "{stats}");

    // Once per node: the pool's token cannot fetch a registered node's script again.
    assert_eq!(enroll(&ready[0]).await.unwrap().status(), 409);

    // No secret and no token in any answer or event.
    let everything = format!(
        "{pool}{}{}",
        Value::Array(events),
        api.ok(Method::GET, "/v1/nodes", None).await
    );
    assert!(!everything.contains("s3cret"), "a secret leaked");
    assert!(!everything.contains("rbn_"), "a node token leaked");
    assert!(!everything.contains("rbp_"), "the enrollment token leaked");
    daemon.stop().await;
}

/// The start task's enrollment token of a Batch pool, as anyone with ARM read sees it.
fn pool_token_of(pool: &Value) -> String {
    pool["properties"]["startTask"]["environmentSettings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "RENDERBURST_POOL_TOKEN")
        .and_then(|e| e["value"].as_str())
        .unwrap()
        .to_owned()
}

/// Someone who read the pool token floods enrollments of names the daemon never listed. Each
/// unknown name used to wake the controller, which re-listed Azure at once (2,000 bogus
/// enrollments made 324 ARM requests in 11 s); now an unknown name wakes it at most once per
/// few seconds, so the simulator's read count stays near the quiet baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_enrollments_do_not_make_the_daemon_relist_azure() {
    let w = world("bogus", json!({"boot": {"enabled": false}})).await;
    // A long interval: only wake-ups make activations during the flood.
    let (daemon, api) = w
        .serve_with(|t| {
            t.replace(
                "reconcile_interval_seconds = 1",
                "reconcile_interval_seconds = 120",
            )
        })
        .await;
    let mut spec = batch_spec("flood", 4, json!({}));
    spec["bootstrap"] = json!({});
    api.ok(Method::POST, "/v1/pools", Some(spec)).await;
    let pool = settled(&w, "flood", 0, 0).await;
    let token = pool_token_of(&pool);
    // The pool write's own wake-up has run its activation.
    let activation = || async {
        api.ok(Method::GET, "/v1/status", None).await["controller"]["reconciler"]["number"]
            .as_u64()
            .unwrap()
    };
    eventually("the activation after the pool write", 30, || async {
        (activation().await >= 2).then_some(())
    })
    .await;

    // 2,000 enrollments spread over 5 s (10 senders, one each every 25 ms), as a script
    // would send them: a burst would only show that wake-ups coalesce.
    const BOGUS: usize = 2000;
    const SENDERS: usize = 10;
    let before = w.reads().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..SENDERS {
        let http = api.http.clone();
        let base = api.base.clone();
        let token = token.clone();
        tasks.spawn(async move {
            let mut codes = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(25));
            for i in (worker..BOGUS).step_by(SENDERS) {
                pace.tick().await;
                let r = http
                    .post(format!("{base}/v1/nodes/tvmps_bogus{i:05}/enroll"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                codes.push(r.status().as_u16());
            }
            codes
        });
    }
    let mut codes = Vec::new();
    while let Some(c) = tasks.join_next().await {
        codes.extend(c.unwrap());
    }
    let took = started.elapsed();
    assert!(codes.iter().all(|c| *c == 404), "{codes:?}");
    // Whatever the last wake-up started has finished: the next status is a later number.
    let last = activation().await;
    let after_flood = w.reads().await;
    let reads = after_flood - before;
    eprintln!(
        "{BOGUS} bogus enrollments in {:.1} s: {reads} ARM/Batch reads, reconciler at activation {last}",
        took.as_secs_f64()
    );
    // One activation reads a handful of pages (VMs, power states, the Batch pool, its nodes,
    // garbage lists); wake-ups at most every 5 s allow took/5 + 2 activations.
    let allowed = 12 * (took.as_secs() / 5 + 2);
    assert!(
        reads <= allowed,
        "{reads} reads for {BOGUS} bogus enrollments in {took:?} (allowed {allowed})"
    );
    daemon.stop().await;
}

/// The enrollment token rotates: the start task gets a new one through ARM (a PATCH of the
/// pool), the new one enrolls at once, the one it replaced still enrolls during the overlap
/// (a node allocated before the rotation carries it), and after the overlap it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrollment_token_rotates_and_the_old_one_works_for_an_overlap() {
    let w = world("rotate", json!({"boot": {"enabled": false}})).await;
    let (daemon, api) = w
        .serve_with(|t| {
            format!(
                "{t}[bootstrap]\nenroll_window_seconds = 20\nenroll_token_rotate_seconds = 5\nenroll_token_overlap_seconds = 20\n"
            )
        })
        .await;
    let mut spec = batch_spec("spin", 4, json!({}));
    spec["bootstrap"] = json!({});
    api.ok(Method::POST, "/v1/pools", Some(spec)).await;
    let first = pool_token_of(&settled(&w, "spin", 0, 0).await);
    api.scale("spin", 2).await;
    settled(&w, "spin", 0, 2).await;
    let listed: Vec<String> = eventually("the daemon lists both nodes", 30, || async {
        let v = api.ok(Method::GET, "/v1/nodes?pool=spin", None).await;
        let names: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;
    let second = eventually("the start task carries a new token", 30, || async {
        let token = pool_token_of(&w.batch_pool("spin").await?);
        (token != first).then_some(token)
    })
    .await;
    assert!(second.starts_with("rbp_"));
    let enroll = |node: &str, token: &str| {
        api.http
            .post(format!("{}/v1/nodes/{node}/enroll", api.base))
            .bearer_auth(token.to_owned())
            .send()
    };
    // The new token at once; the old one during the overlap.
    let r = enroll(&listed[0], &second).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = enroll(&listed[1], &first).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stats = w.control(Method::GET, "/_sim/stats", None).await;
    assert!(
        stats["by_type"]["Microsoft.Batch/batchAccounts/pools"]["PATCH"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{stats}"
    );
    // After the overlap the old token is no token at all.
    eventually("the first token refused", 60, || async {
        let r = enroll("tvmps_anyone", &first).await.unwrap();
        (r.status() == 401).then_some(())
    })
    .await;
    let events = api.events().await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "batch.enroll_token_rotated"),
        "{events:?}"
    );
    assert!(!Value::Array(events).to_string().contains("rbp_"));
    daemon.stop().await;
}

/// A pool's conditions as `Type: message` lines, joined.
fn condition_texts(pool: &serde_json::Value) -> String {
    pool["status"]["conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(renderburst::client::condition_text)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
