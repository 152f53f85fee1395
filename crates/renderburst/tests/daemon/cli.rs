//! The CLI as a farm admin reads it: the real `renderburst` binary against a real daemon
//! (in-process, on port 0, with azure-sim over HTTPS; or as a child process where the test is
//! about the process itself). Outputs are compared with golden files under `tests/golden/`
//! (`UPDATE_GOLDEN=1` rewrites them, see `common/golden.rs`); messages are asserted by the
//! words a person needs.
//!
//! Every wait polls the API for the state it needs; nothing sleeps and hopes.

use std::path::PathBuf;
use std::process::Stdio;

use azure_sim::{SimConfig, Simulator};
use renderburst::config::Config;
use renderburst::serve;
use serde_json::{Value, json};

use crate::common;
#[path = "common/golden.rs"]
mod golden;
use common::eventually;

const TOKEN: &str = "cli-admin-token-0123456789";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rb-cli-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct World {
    _sim: Simulator,
    dir: PathBuf,
    daemon: Option<serve::Daemon>,
    base: String,
    http: reqwest::Client,
}

/// A simulator with short latencies (and `sim_patch`), and the daemon in-process on it.
async fn world(tag: &str, sim_patch: Value) -> World {
    world_with(tag, sim_patch, "").await
}

/// As [`world`], with more lines for the `[azure]` section (`batch_account = ...`).
async fn world_with(tag: &str, sim_patch: Value, azure_extra: &str) -> World {
    let cfg = SimConfig::default()
        .merged(
            &json!({"latency_ms": {"vm_create": 60, "vm_start": 30, "vm_deallocate": 30,
                                      "vm_delete": 30, "nic": 5, "disk": 10, "batch_node": 200}}),
        )
        .unwrap()
        .merged(&sim_patch)
        .unwrap();
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let dir = temp_dir(tag);
    std::fs::write(dir.join("ca.pem"), sim.ca_pem()).unwrap();
    let id = sim.identity();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
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
{azure_extra}
"#,
        db = dir.join("renderburst.db").display(),
        sub = id.subscription_id,
        tenant = id.tenant_id,
        client = id.client_id,
        secret = id.client_secret,
        url = sim.base_url(),
        ca = dir.join("ca.pem").display(),
    );
    let path = dir.join("renderburst.toml");
    std::fs::write(&path, toml).unwrap();
    let daemon = serve::start(
        Config::load(Some(&path)).unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let base = format!("http://{}", daemon.api_addr);
    World {
        _sim: sim,
        dir,
        daemon: Some(daemon),
        base,
        http: reqwest::Client::new(),
    }
}

impl World {
    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        common::cli(&self.base, TOKEN, &self.dir, args).await
    }

    /// The CLI with `--api` as given (`common::cli` passes the daemon's URL itself).
    async fn cli_at(&self, api: &str, args: &[&str]) -> (i32, String, String) {
        let token = self.dir.join("cli.token");
        std::fs::write(&token, TOKEN).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
            .args(args)
            .args(["--api", api, "--token-file"])
            .arg(&token)
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Writes a pool spec file and returns its path.
    fn spec_file(&self, name: &str, spec: &Value) -> String {
        let path = self.dir.join(format!("{name}.json"));
        std::fs::write(&path, spec.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    }

    async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }
}

fn pool_spec(name: &str, size: &str, target: u32) -> Value {
    json!({"name": name, "mode": "vm", "vm_sizes": [size],
           "image": "Canonical:ubuntu-24_04-lts:server:latest",
           "max": 4, "target": target, "idle_timeout_seconds": 0})
}

/// The pool as the API shows it, once `done` holds for it and its plan is empty.
async fn settled(w: &World, pool: &str, done: fn(&Value) -> bool) {
    eventually(&format!("pool {pool} settles"), 90, || async {
        let p = w.get(&format!("/v1/pools/{pool}")).await;
        let plan = w.get(&format!("/v1/pools/{pool}/plan")).await;
        let quiet = plan["actions"].as_array().is_some_and(Vec::is_empty);
        (quiet && done(&p)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_summaries_read_well() {
    // vray's only size has room for one VM: its second create fails for capacity, and the
    // pool is stuck at 1/2 with a reason.
    let w = world("tables", json!({"capacity": {"Standard_D2s_v5": 1}})).await;

    let maya = w.spec_file("maya", &pool_spec("maya", "Standard_D8s_v5", 2));
    let (code, out, err) = w.cli(&["pool", "apply", "-f", &maya]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "pool maya created\n");
    let (code, out, err) = w.cli(&["pool", "apply", "-f", &maya]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "pool maya unchanged\n",
        "an unchanged re-apply says so"
    );
    // One VM first, then a second that cannot fit: the failing name is always vray-00002.
    let vray = w.spec_file("vray", &pool_spec("vray", "Standard_D2s_v5", 1));
    let (code, _, err) = w.cli(&["pool", "apply", "-f", &vray]).await;
    assert_eq!(code, 0, "{err}");
    settled(&w, "vray", |p| p["status"]["running"] == 1).await;
    let (code, out, err) = w.cli(&["pool", "scale", "vray", "2"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "pool vray: target set to 2\n"),
        "{err}"
    );

    let (code, out, err) = w
        .cli(&["request", "create", "maya", "1", "--job", "ep101-sh010"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.trim().is_empty(), "the request id: {out}");

    settled(&w, "maya", |p| {
        let s = &p["status"];
        s["running"] == 2 && s["ready"] == 2 && s["creating"] == 0
    })
    .await;
    settled(&w, "vray", |p| {
        let s = &p["status"];
        s["running"] == 1
            && s["creating"] == 0
            && s["failed"] == 0
            && s["deleting"] == 0
            && s["conditions"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
    // And every node's private IP known (from its NIC) for `node list`.
    eventually("the failed VM is gone", 60, || async {
        let nodes = w.get("/v1/nodes").await;
        let all = nodes["nodes"].as_array().cloned().unwrap_or_default();
        (all.len() == 3
            && all
                .iter()
                .all(|n| n["state"] == "running" && n["private_ip"].is_string()))
        .then_some(())
    })
    .await;

    let (code, out, err) = w.cli(&["pool", "list"]).await;
    assert_eq!(code, 0, "{err}");
    golden::check("pool_list", &out);
    let (code, out, err) = w.cli(&["request", "list"]).await;
    assert_eq!(code, 0, "{err}");
    golden::check("request_list", &out);
    let (code, out, err) = w.cli(&["node", "list"]).await;
    assert_eq!(code, 0, "{err}");
    golden::check("node_list", &out);
    let (code, out, err) = w.cli(&["pool", "show", "maya"]).await;
    assert_eq!(code, 0, "{err}");
    golden::check("pool_show_steady", &out);
    let (code, out, err) = w.cli(&["pool", "show", "vray"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("nothing to do"),
        "a stuck pool says why: {out}"
    );
    golden::check("pool_show_stuck", &out);
    let (code, out, err) = w.cli(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    golden::check("status", &out);
    let (code, out, _) = w.cli(&["status", "-o", "json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("status -o json is JSON");
    assert!(v["controller"]["reconciler"]["number"].as_u64().unwrap() >= 1);

    let (code, out, err) = w
        .cli(&["token", "create", "--role", "viewer", "--name", "ci"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("rb_"), "{out}");
    let (code, out, err) = w.cli(&["token", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('"'), "times without JSON quotes: {out}");
    golden::check("token_list", &out);

    // Deleting with --wait says how it goes (stderr when not a terminal) and when it is done.
    let (code, out, err) = w
        .cli(&["pool", "delete", "vray", "--wait", "--timeout", "90"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("deleting pool vray: "), "{err}");
    assert!(err.contains("nodes left"), "{err}");
    golden::check("pool_delete_wait", &out);

    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_name_the_field_and_the_fix() {
    let w = world("messages", json!({})).await;
    let maya = w.spec_file("maya", &pool_spec("maya", "Standard_D8s_v5", 0));
    let (code, _, err) = w.cli(&["pool", "apply", "-f", &maya]).await;
    assert_eq!(code, 0, "{err}");

    // max: -5 → the field and "must be 0 or more", not serde's words.
    let mut bad = pool_spec("maya", "Standard_D8s_v5", 0);
    bad["max"] = json!(-5);
    let bad = w.spec_file("bad", &bad);
    let (code, _, err) = w.cli(&["pool", "apply", "-f", &bad]).await;
    assert_eq!(code, 1);
    assert!(err.contains("max: must be 0 or more, got -5"), "{err}");
    assert!(!err.contains("expected u32"), "{err}");

    // --ttl beyond the API's limit: refused by the CLI, naming the limit (usage error: 2).
    let (code, _, err) = w
        .cli(&["request", "create", "maya", "1", "--ttl", "8d"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("limit of 7 days"), "{err}");

    // A bad cron names the field and the part.
    let (code, _, err) = w
        .cli(&[
            "schedule",
            "create",
            "night",
            "--pool",
            "maya",
            "--cron",
            "0 25 * * *",
            "--timezone",
            "UTC",
            "--max",
            "0",
        ])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cron") && err.contains("hour 25 is out of range 0–23"),
        "{err}"
    );

    // Two schedules setting max differently at the same minute: the second is refused,
    // naming both.
    let (code, _, err) = w
        .cli(&[
            "schedule",
            "create",
            "night",
            "--pool",
            "maya",
            "--cron",
            "0 20 * * *",
            "--timezone",
            "UTC",
            "--max",
            "0",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = w
        .cli(&[
            "schedule",
            "create",
            "late",
            "--pool",
            "maya",
            "--cron",
            "0 20 * * MON-FRI",
            "--timezone",
            "UTC",
            "--max",
            "3",
        ])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("\"late\"") && err.contains("\"night\"") && err.contains("set.max"),
        "{err}"
    );
    let (code, out, err) = w.cli(&["schedule", "list"]).await;
    assert_eq!(code, 0, "{err}");
    golden::check("schedule_list", &out);

    // --api without a scheme: loopback gets http://, anything else is told what to add.
    let bare = w.base.trim_start_matches("http://").to_owned();
    let (code, out, err) = w.cli_at(&bare, &["status"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = w.cli_at("10.1.2.3:7878", &["status"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("add https://"), "{err}");

    w.stop().await;
}

/// Batch node ids are long and random: `node list` widens its NAME column to them, and shows
/// the private IP Batch's node list gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_nodes_fit_node_list_with_their_ip() {
    let w = world_with("batch", json!({}), "batch_account = \"rbfarm\"").await;
    let spec = json!({"name": "vray", "mode": "batch", "vm_sizes": ["Standard_D4s_v5"],
        "priority": "regular", "image": "Canonical:ubuntu-24_04-lts:server:latest",
        "max": 2, "target": 2, "idle_timeout_seconds": 0,
        "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04"}});
    let file = w.spec_file("vray", &spec);
    let (code, _, err) = w.cli(&["pool", "apply", "-f", &file]).await;
    assert_eq!(code, 0, "{err}");
    eventually("two Batch nodes with addresses", 90, || async {
        let nodes = w.get("/v1/nodes?pool=vray").await;
        let all = nodes["nodes"].as_array().cloned().unwrap_or_default();
        (all.len() == 2 && all.iter().all(|n| n["private_ip"].is_string())).then_some(())
    })
    .await;

    let (code, out, err) = w.cli(&["node", "list", "--pool", "vray"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let ip_column = lines[0].find("IP").unwrap();
    let pool_column = lines[0].find("POOL").unwrap();
    for row in &lines[1..] {
        let name = row.split_whitespace().next().unwrap();
        assert!(name.len() > 30, "the whole Batch node id: {row}");
        assert_eq!(
            row.find("10.0."),
            Some(ip_column),
            "IP under its header:\n{out}"
        );
        assert_eq!(
            row.find(" vray ").map(|i| i + 1),
            Some(pool_column),
            "{out}"
        );
    }
    w.stop().await;
}

/// The daemon as a child process on the embedded simulator, for what is about the process:
/// logs without colour codes when stderr is a file, and clients on a closed pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_quietly_and_logs_have_no_colour() {
    let dir = temp_dir("pipe");
    let port = common::free_port();
    let cfg = dir.join("renderburst.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n[auth]\nadmin_token = \"{TOKEN}\"\n",
            dir.join("renderburst.db").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_answers(&reqwest::Client::new(), &base).await;

    let token = dir.join("cli.token");
    std::fs::write(&token, TOKEN).unwrap();
    // A pool, so `events` has lines to write (its output still goes through `println!`,
    // which the panic hook keeps quiet on a closed pipe).
    let created = reqwest::Client::new()
        .post(format!("{base}/v1/pools"))
        .bearer_auth(TOKEN)
        .json(&pool_spec("maya", "Standard_D8s_v5", 0))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    for args in [
        &["node", "list"][..],
        &["pool", "list"],
        &["status"],
        &["events"],
    ] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
            .args(args)
            .arg("--api")
            .arg(&base)
            .arg("--token-file")
            .arg(&token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} says nothing: {err}");
    }

    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let logged = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(logged.contains("INFO"), "{logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "no colour codes in a file: {logged}"
    );
}

/// A port in use stops `serve` before it creates its database or admin token.
#[test]
fn a_port_in_use_is_found_before_anything_is_created() {
    let dir = temp_dir("port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = dir.join("renderburst.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{}\"\n[store]\nurl = \"sqlite://{}\"\n",
            taken.local_addr().unwrap(),
            dir.join("renderburst.db").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "renderburst.toml")
        .collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
}

/// What needs no daemon: completions, the man page, help texts, usage errors.
#[test]
fn completions_man_page_and_help() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains("renderburst") && out.contains("schedule") && out.contains("drain"),
            "{shell}: {out}"
        );
    }
    let (code, out, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(".ie") || out.contains(".TH renderburst"),
        "{out}"
    );
    let dir = temp_dir("man");
    let (code, _, err) = run(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("renderburst.1").exists());
    assert!(dir.join("renderburst-pool.1").exists());

    let (code, out, _) = run(&["token", "create", "--help"]);
    assert_eq!(code, 0);
    golden::check("help_token_create", &out);
    let (code, out, _) = run(&["schedule", "create", "--help"]);
    assert_eq!(code, 0);
    golden::check("help_schedule_create", &out);
    let (code, out, _) = run(&["node", "list", "--help"]);
    assert_eq!(code, 0);
    golden::check("help_node_list", &out);
    let (code, _, err) = run(&["token", "create", "--role", "root", "--name", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("admin") && err.contains("viewer"), "{err}");
}
