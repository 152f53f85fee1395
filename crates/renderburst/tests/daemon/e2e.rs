//! End to end: the real daemon (in-process, or as a child process for crash tests) with its
//! HTTP API on port 0, a SQLite file in a temp dir, and azure-sim over HTTPS. Assertions
//! look at the simulator's ground truth (`/_sim/resources`), not at what the daemon says.

use renderburst::config::Config;
use renderburst::serve;
use serde_json::{Value, json};

use crate::common;
use common::eventually;
use common::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_down_up_and_delete_reuses_deallocated_vms() {
    let w = world("scale", json!({})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 20)),
    )
    .await;

    api.scale("maya", 12).await;
    eventually("12 running VMs", 60, || async {
        (census(&w.vms("maya").await) == (12, 0, 0)).then_some(())
    })
    .await;
    let vms = w.vms("maya").await;
    let subnet = w
        .resources("Microsoft.Network/virtualNetworks/subnets")
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    let nics = w.resources("Microsoft.Network/networkInterfaces").await;
    let disks = w.resources("Microsoft.Compute/disks").await;
    assert_eq!(
        (nics.len(), disks.len()),
        (12, 12),
        "one NIC and one OS disk per VM"
    );
    for nic in &nics {
        let s = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        assert_eq!(s, subnet, "every NIC is in the render subnet");
    }
    for vm in &vms {
        assert_eq!(vm["tags"]["show"], "e2e");
        assert!(
            vm["tags"]["renderburst-owner"]
                .as_str()
                .is_some_and(|o| !o.is_empty())
        );
    }
    let creates = w.vm_puts().await;
    assert_eq!(creates, 12, "one ARM write per VM created");

    api.scale("maya", 4).await;
    eventually("4 running, 8 deallocated", 60, || async {
        (census(&w.vms("maya").await) == (4, 8, 0)).then_some(())
    })
    .await;

    api.scale("maya", 10).await;
    eventually("10 running, 2 deallocated", 60, || async {
        (census(&w.vms("maya").await) == (10, 2, 0)).then_some(())
    })
    .await;
    assert_eq!(
        w.vm_puts().await,
        creates,
        "scale-up started deallocated VMs: zero new creates"
    );

    let (status, _) = api
        .call(reqwest::Method::DELETE, "/v1/pools/maya", None)
        .await;
    assert_eq!(status, 202);
    eventually("the pool and all its resources gone", 60, || async {
        let gone = w.vms("maya").await.is_empty()
            && w.resources("Microsoft.Network/networkInterfaces")
                .await
                .is_empty()
            && w.resources("Microsoft.Compute/disks").await.is_empty()
            && api
                .call(reqwest::Method::GET, "/v1/pools/maya", None)
                .await
                .0
                == 404;
        gone.then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_size_out_of_capacity_falls_to_the_second() {
    let w = world("capacity", json!({"capacity": {"Standard_D2s_v5": 2}})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec(
            "nuke",
            &["Standard_D2s_v5", "Standard_D4s_v5"],
            10,
        )),
    )
    .await;
    api.scale("nuke", 5).await;
    eventually("5 running VMs, no failed ones left", 60, || async {
        let vms = w.vms("nuke").await;
        (census(&vms) == (5, 0, 0)).then_some(())
    })
    .await;
    let sizes: Vec<String> = w
        .vms("nuke")
        .await
        .iter()
        .map(|v| {
            v["properties"]["hardwareProfile"]["vmSize"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        sizes.iter().filter(|s| *s == "Standard_D2s_v5").count(),
        2,
        "{sizes:?}"
    );
    assert_eq!(
        sizes.iter().filter(|s| *s == "Standard_D4s_v5").count(),
        3,
        "{sizes:?}"
    );
    let pool = api.ok(reqwest::Method::GET, "/v1/pools/nuke", None).await;
    let said = pool["status"].to_string();
    assert!(
        said.contains("AllocationFailed") && said.contains("Standard_D2s_v5"),
        "the status says why: {said}"
    );

    // The admin sees the size avoided; once capacity is back, clearing the mark makes the
    // next VMs the preferred size again (without it they would be D4s for the hour).
    let (code, out, err) = cli(&api, &w.dir, &["offerings"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Standard_D2s_v5")
            && out.contains("capacity")
            && out.contains("(all VM pools)"),
        "{out}"
    );
    w.control(
        reqwest::Method::PUT,
        "/_sim/config",
        Some(json!({"capacity": {"Standard_D2s_v5": 100}})),
    )
    .await;
    let (code, out, err) = cli(&api, &w.dir, &["offerings", "clear"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1 unavailable offerings cleared"), "{out}");
    api.scale("nuke", 7).await;
    eventually("7 running VMs, the 2 new ones D2s", 60, || async {
        let vms = w.vms("nuke").await;
        let d2 = vms
            .iter()
            .filter(|v| v["properties"]["hardwareProfile"]["vmSize"] == "Standard_D2s_v5")
            .count();
        (census(&vms) == (7, 0, 0) && d2 == 4).then_some(())
    })
    .await;
    assert_no_orphans(&w).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_spot_capacity_is_replaced_without_exceeding_max() {
    let w = world("spot", json!({})).await;
    let (daemon, api) = w.serve().await;
    let mut spec = pool_spec("houdini", &["Standard_D4s_v5"], 6);
    spec["priority"] = json!("spot");
    spec["target"] = json!(6);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;
    eventually("6 running Spot VMs", 60, || async {
        (census(&w.vms("houdini").await) == (6, 0, 0)).then_some(())
    })
    .await;
    let mut total = 0;
    for round in 0..3 {
        let evicted = w
            .control(
                reqwest::Method::POST,
                "/_sim/evict",
                Some(json!({"count": 2 + round})),
            )
            .await;
        assert_eq!(evicted["evicted"].as_array().unwrap().len(), 2 + round);
        total += 2 + round as u64;
        eventually("the evictions happened", 30, || async {
            let n = w.control(reqwest::Method::GET, "/_sim/stats", None).await["evictions"]
                .as_u64()
                .unwrap();
            (n == total).then_some(())
        })
        .await;
        // Watch until it has recovered, checking the cap on every look.
        eventually("evicted capacity replaced", 60, || async {
            let vms = w.vms("houdini").await;
            let (running, _, _) = census(&vms);
            assert!(
                vms.len() <= 6 && running <= 6,
                "more than max: {} VMs, {running} running",
                vms.len()
            );
            (running == 6).then_some(())
        })
        .await;
    }
    assert!(
        w.control(reqwest::Method::GET, "/_sim/stats", None).await["evictions"]
            .as_u64()
            .unwrap()
            >= 9
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_scaling_leave_an_exact_state_and_no_orphans() {
    let w = world("faults", json!({})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("katana", &["Standard_D4s_v5"], 20)),
    )
    .await;
    w.control(reqwest::Method::PUT, "/_sim/config", Some(json!({"faults": {
        "http_5xx_rate": 0.1, "http_429_rate": 0.05, "drop_rate": 0.05, "operation_fail_rate": 0.1}}))).await;
    for target in [10u32, 3, 8] {
        api.scale("katana", target).await;
        eventually(&format!("{target} running under faults"), 90, || async {
            let (running, _, other) = census(&w.vms("katana").await);
            (running == target as usize && other == 0).then_some(())
        })
        .await;
    }
    let injected = w.control(reqwest::Method::GET, "/_sim/stats", None).await["faults_injected"]
        .as_u64()
        .unwrap();
    assert!(injected > 0, "faults were injected");
    w.control(reqwest::Method::PUT, "/_sim/config", Some(json!({"faults": {
        "http_5xx_rate": 0.0, "http_429_rate": 0.0, "drop_rate": 0.0, "operation_fail_rate": 0.0}}))).await;
    // Leftovers of failed operations are collected after the grace period.
    eventually("no orphans", 60, || async {
        let vms = w.resources("Microsoft.Compute/virtualMachines").await.len();
        let nics = w
            .resources("Microsoft.Network/networkInterfaces")
            .await
            .len();
        let disks = w.resources("Microsoft.Compute/disks").await.len();
        (nics == vms && disks == vms).then_some(())
    })
    .await;
    assert_no_orphans(&w).await;
    let (running, _, other) = census(&w.vms("katana").await);
    assert_eq!((running, other), (8, 0));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_scale_up_restarts_without_duplicates_or_orphans() {
    let w = world("crash", json!({"latency_ms": {"vm_create": 1500}})).await;
    let port = common::free_port();
    let cfg_path = w.dir.join("renderburst.toml");
    std::fs::write(&cfg_path, w.config_toml(&format!("127.0.0.1:{port}"))).unwrap();
    let spawn = || common::spawn_daemon(&cfg_path);
    let api = Api::new(format!("127.0.0.1:{port}").parse().unwrap());
    let mut child = spawn();
    common::wait_answers(&api.http, &api.base).await;
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("crash", &["Standard_D4s_v5"], 30)),
    )
    .await;
    api.scale("crash", 20).await;
    // Kill it while creates are in flight.
    eventually("creates under way", 30, || async {
        (!w.vms("crash").await.is_empty()).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn();
    eventually("20 running VMs after the restart", 90, || async {
        (census(&w.vms("crash").await) == (20, 0, 0)).then_some(())
    })
    .await;
    assert_eq!(w.vm_puts().await, 20, "no VM was created twice");
    assert_eq!(
        w.resources("Microsoft.Compute/virtualMachines").await.len(),
        20
    );
    assert_no_orphans(&w).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A create the previous process started and that failed while it was down is an ARM error
/// the restarted daemon sees when it follows the operation: it is in the event log as
/// `arm.error` with its code, like one seen live (found by `renderburst-bench crashloop`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_that_failed_across_a_restart_is_logged_as_an_arm_error() {
    // No capacity for the size: every create is accepted and fails when it ends, 3 s later.
    let w = world(
        "recovered-failure",
        json!({"latency_ms": {"vm_create": 3000}, "capacity": {"Standard_D4s_v5": 0}}),
    )
    .await;
    let port = common::free_port();
    let cfg_path = w.dir.join("renderburst.toml");
    std::fs::write(&cfg_path, w.config_toml(&format!("127.0.0.1:{port}"))).unwrap();
    let spawn = || common::spawn_daemon(&cfg_path);
    let api = Api::new(format!("127.0.0.1:{port}").parse().unwrap());
    let mut child = spawn();
    common::wait_answers(&api.http, &api.base).await;
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("lost", &["Standard_D4s_v5"], 5)),
    )
    .await;
    api.scale("lost", 3).await;
    eventually("3 creates accepted", 30, || async {
        (w.vms("lost").await.len() == 3).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn();
    // The restarted daemon follows the three operations to their failure...
    eventually("the 3 failures polled", 60, || async {
        let st = w.control(reqwest::Method::GET, "/_sim/stats", None).await;
        (st["failures_reported"]["AllocationFailed"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    // ... and logs each, on the node it was creating (replacements get new names).
    eventually(
        "arm.error AllocationFailed for lost-00001..3",
        30,
        || async {
            let ev = api
                .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
                .await;
            let logged = |node: &str| {
                ev["events"].as_array().is_some_and(|es| {
                    es.iter().any(|e| {
                        e["kind"] == "arm.error"
                            && e["node"] == node
                            && e["data"]["code"] == "AllocationFailed"
                    })
                })
            };
            ["lost-00001", "lost-00002", "lost-00003"]
                .iter()
                .all(|n| logged(n))
                .then_some(())
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs the CLI against `api`; returns (exit code, stdout, stderr).
async fn cli(api: &Api, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    common::cli(&api.base, "e2e-admin-token-0123456789", dir, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_applies_scales_waits_lists_and_deletes() {
    let w = world("cli", json!({})).await;
    let (daemon, api) = w.serve().await;

    // `ready` needs no token: what systemd and container health checks run.
    let ready = |api: String, wait: &'static str| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
            .args(["ready", "--api", &api, "--wait", wait])
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = ready(api.base.clone(), "60").await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.trim(), "ready");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, out) = ready(nobody, "0").await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not ready: cannot reach"), "{out}");

    let spec_file = w.dir.join("arnold.toml");
    std::fs::write(
        &spec_file,
        "name = \"arnold\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D8s_v5\"]\nimage = \"Canonical:ubuntu-24_04-lts:server:latest\"\nmax = 4\nidle_timeout_seconds = 0\n",
    )
    .unwrap();
    let (code, out, err) = cli(
        &api,
        &w.dir,
        &["pool", "apply", "-f", spec_file.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pool arnold created"), "{out}");

    let (code, out, err) = cli(
        &api,
        &w.dir,
        &["pool", "scale", "arnold", "2", "--wait", "--timeout", "60"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2/2 running"), "{out}");
    assert_eq!(
        census(&w.vms("arnold").await),
        (2, 0, 0),
        "--wait returned only once converged"
    );

    let (code, out, _) = cli(&api, &w.dir, &["pool", "list", "-o", "json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pools"][0]["status"]["running"], 2);
    let (code, out, _) = cli(&api, &w.dir, &["node", "list", "--pool", "arnold"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("arnold-")).count(),
        2,
        "{out}"
    );
    let (code, out, _) = cli(&api, &w.dir, &["status", "-o", "json"]).await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert!(
        status["controller"]["reconciler"]["number"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // The owner id in the status is what the VMs are tagged with (the orphan audit's filter).
    let owner = status["controller"]["owner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!owner.is_empty());
    for vm in w.vms("arnold").await {
        assert_eq!(vm["tags"]["renderburst-owner"], owner.as_str(), "{vm}");
    }

    // Errors: a target above max is refused with the API's words, exit 1; bad usage is 2.
    let (code, _, err) = cli(&api, &w.dir, &["pool", "scale", "arnold", "99"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("target"), "{err}");
    let (code, _, _) = cli(&api, &w.dir, &["pool", "scale", "arnold"]).await;
    assert_eq!(code, 2);

    let (code, out, err) = cli(
        &api,
        &w.dir,
        &["pool", "delete", "arnold", "--wait", "--timeout", "60"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(w.vms("arnold").await.is_empty());
    daemon.stop().await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The simulator's power state of one VM by name ("" if it is gone).
async fn power_of(w: &World, pool: &str, name: &str) -> String {
    w.vms(pool)
        .await
        .iter()
        .find(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(power)
        .unwrap_or_default()
}

async fn activation_number(api: &Api) -> u64 {
    let s = api.ok(reqwest::Method::GET, "/v1/status", None).await;
    s["controller"]["reconciler"]["number"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_survives_a_scale_to_zero_until_it_reports_idle() {
    let w = world("busy", json!({})).await;
    let (daemon, api) = w.serve().await;
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("katana", &["Standard_D4s_v5"], 4)),
    )
    .await;
    api.scale("katana", 2).await;
    let nodes: Vec<String> = eventually(
        "2 running nodes, in Azure and in the inventory",
        60,
        || async {
            let v = api
                .ok(reqwest::Method::GET, "/v1/nodes?pool=katana", None)
                .await;
            let running: Vec<String> = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["state"] == "running")
                .map(|n| n["name"].as_str().unwrap().to_string())
                .collect();
            (running.len() == 2 && census(&w.vms("katana").await) == (2, 0, 0)).then_some(running)
        },
    )
    .await;
    let (busy, other) = (&nodes[0], &nodes[1]);

    let node = api
        .ok(
            reqwest::Method::PUT,
            &format!("/v1/nodes/{busy}/heartbeat"),
            Some(json!({"busy": true})),
        )
        .await;
    assert_eq!(node["busy"], true);
    api.scale("katana", 0).await;

    // The idle node goes at once (idle timeout 0); the busy one stays, activation after
    // activation.
    eventually("the idle node deallocated", 30, || async {
        assert_eq!(
            power_of(&w, "katana", busy).await,
            "running",
            "the busy node was touched"
        );
        (power_of(&w, "katana", other).await == "deallocated").then_some(())
    })
    .await;
    let from = activation_number(&api).await;
    eventually("three more activations", 30, || async {
        assert_eq!(
            power_of(&w, "katana", busy).await,
            "running",
            "the busy node was touched"
        );
        (activation_number(&api).await >= from + 3).then_some(())
    })
    .await;
    assert_eq!(census(&w.vms("katana").await), (1, 1, 0));
    let plan = api
        .ok(reqwest::Method::GET, "/v1/pools/katana/plan", None)
        .await;
    assert_eq!(plan["desired"], 0);
    assert!(plan["actions"].as_array().unwrap().is_empty(), "{plan}");

    // Idle: it goes.
    api.ok(
        reqwest::Method::PUT,
        &format!("/v1/nodes/{busy}/heartbeat"),
        Some(json!({"busy": false})),
    )
    .await;
    eventually("the formerly busy node deallocated", 30, || async {
        (census(&w.vms("katana").await) == (0, 2, 0)).then_some(())
    })
    .await;
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"] == busy.as_str())
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"node.busy") && kinds.contains(&"node.idle"),
        "{kinds:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_stop_counting_within_one_reconcile_interval() {
    const INTERVAL: i64 = 1; // reconcile_interval_seconds in World::config_toml
    const SLACK: i64 = 2;
    let w = world("expiry", json!({})).await;
    let (daemon, api) = w.serve().await;
    // Expiry is what is tested: no stabilization window holds the count up after it.
    let mut nuke = pool_spec("nuke", &["Standard_D4s_v5"], 4);
    nuke["scale_down_stabilization_seconds"] = json!(0);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(nuke)).await;
    // The server stamps expires_at in whole seconds between these two instants, plus the ttl.
    let before = unix_now();
    let (status, request) = api
        .call(
            reqwest::Method::POST,
            "/v1/pools/nuke/requests",
            Some(json!({"count": 2, "ttl_seconds": 2, "job": "comp-v003"})),
        )
        .await;
    let (earliest_expiry, expires_at) = (before + 2, unix_now() + 2);
    assert_eq!(status, 201, "{request}");
    assert_eq!(request["ttl_seconds"], 2);

    // The request brings nodes up although the target is 0.
    eventually("2 VMs made for the request", 30, || async {
        (w.vms("nuke").await.len() == 2).then_some(())
    })
    .await;

    // Once it expires, both the API and the controller's next activation stop counting it.
    let controller_desired =
        |s: &Value| s["controller"]["reconciler"]["pools"]["nuke"]["desired"].as_u64();
    eventually("the controller planned desired 0", 30, || async {
        let pool = api.ok(reqwest::Method::GET, "/v1/pools/nuke", None).await;
        let status = api.ok(reqwest::Method::GET, "/v1/status", None).await;
        let now = unix_now();
        if now < earliest_expiry {
            assert_eq!(pool["status"]["desired"], 2, "the live request counts");
            return None;
        }
        let done = pool["status"]["desired"] == 0 && controller_desired(&status) == Some(0);
        assert!(
            done || now <= expires_at + INTERVAL + SLACK,
            "still counted {} s after expiry: pool {} controller {:?}",
            now - expires_at,
            pool["status"],
            controller_desired(&status)
        );
        done.then_some(())
    })
    .await;
    eventually("the pool scaled back down", 30, || async {
        (census(&w.vms("nuke").await) == (0, 2, 0)).then_some(())
    })
    .await;
    let (_, list) = api
        .call(reqwest::Method::GET, "/v1/requests?pool=nuke", None)
        .await;
    assert_eq!(list["requests"], json!([]), "no live request left");
    daemon.stop().await;
}

/// The running nodes of a pool, by name, as the daemon's inventory and Azure agree.
async fn running_nodes(api: &Api, w: &World, pool: &str, count: usize) -> Vec<String> {
    eventually(&format!("{count} running nodes of {pool}"), 60, || async {
        let v = api
            .ok(
                reqwest::Method::GET,
                &format!("/v1/nodes?pool={pool}"),
                None,
            )
            .await;
        let running: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "running")
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        (running.len() == count && census(&w.vms(pool).await) == (count, 0, 0)).then_some(running)
    })
    .await
}

/// Waits until the stopped daemon's last holder of the store is gone (`Daemon::stop` does not
/// wait for the executor's background polls, which release the database a moment later).
async fn wait_unlocked(w: &World) {
    let db = w.dir.join("renderburst.db");
    eventually("the database unlocked", 30, || async {
        match store::Store::open(&db).await {
            Ok(s) => {
                s.close().await;
                Some(())
            }
            Err(_) => None,
        }
    })
    .await;
}

async fn pool_bounds(api: &Api, pool: &str) -> (u64, u64, u64) {
    let p = api
        .ok(reqwest::Method::GET, &format!("/v1/pools/{pool}"), None)
        .await;
    let n = |k: &str| p[k].as_u64().unwrap();
    (n("min"), n("max"), n("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_takes_a_pool_to_zero_and_back_sparing_busy_nodes() {
    let w = world("schedule", json!({})).await;
    let (daemon, api) = w.serve().await;
    let mut spec = pool_spec("redshift", &["Standard_D4s_v5"], 4);
    spec["target"] = json!(2);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;
    let nodes = running_nodes(&api, &w, "redshift", 2).await;
    let (busy, other) = (&nodes[0], &nodes[1]);
    api.ok(
        reqwest::Method::PUT,
        &format!("/v1/nodes/{busy}/heartbeat"),
        Some(json!({"busy": true})),
    )
    .await;

    // Night: every 3 seconds, max 0 (created with the CLI).
    let (code, out, err) = cli(
        &api,
        &w.dir,
        &[
            "schedule",
            "create",
            "night",
            "--pool",
            "redshift",
            "--cron",
            "*/3 * * * * *",
            "--timezone",
            "Europe/London",
            "--max",
            "0",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("next firing"), "{out}");
    eventually("the schedule set max 0", 30, || async {
        (pool_bounds(&api, "redshift").await == (0, 0, 0)).then_some(())
    })
    .await;
    // The idle node goes; the busy one stays until it reports idle.
    eventually("the idle node deallocated", 30, || async {
        assert_eq!(
            power_of(&w, "redshift", busy).await,
            "running",
            "the busy node was touched"
        );
        (power_of(&w, "redshift", other).await == "deallocated").then_some(())
    })
    .await;
    let from = activation_number(&api).await;
    eventually("two more activations", 30, || async {
        assert_eq!(power_of(&w, "redshift", busy).await, "running");
        (activation_number(&api).await >= from + 2).then_some(())
    })
    .await;
    api.ok(
        reqwest::Method::PUT,
        &format!("/v1/nodes/{busy}/heartbeat"),
        Some(json!({"busy": false})),
    )
    .await;
    eventually("the pool at zero", 30, || async {
        (census(&w.vms("redshift").await) == (0, 2, 0)).then_some(())
    })
    .await;

    // What readers see: the last firing, and the next in the zone and in UTC.
    let (code, out, err) = cli(&api, &w.dir, &["schedule", "list", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let night = &listed["schedules"][0];
    assert_eq!(night["name"], "night");
    assert!(night["last_firing_utc"].is_string(), "{night}");
    assert!(
        night["last_outcome"]
            .as_str()
            .is_some_and(|o| o.contains("max=0")),
        "{night}"
    );
    assert!(night["next_firing_local"].is_string() && night["next_firing_utc"].is_string());
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await;
    let scheduled: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "pool.scheduled")
        .collect();
    assert_eq!(
        scheduled.len(),
        1,
        "one change, however often it fired: {scheduled:?}"
    );
    assert_eq!(scheduled[0]["actor"], "night");
    assert_eq!(scheduled[0]["pool"], "redshift");

    let (code, out, err) = cli(&api, &w.dir, &["schedule", "show", "night"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Europe/London") && out.contains("next firing:") && out.contains("max=0"),
        "{out}"
    );
    // A bad pattern is refused naming the field, and nothing is stored.
    let (code, out, err) = cli(
        &api,
        &w.dir,
        &[
            "schedule",
            "create",
            "bad",
            "--pool",
            "redshift",
            "--cron",
            "0 25 * * *",
            "--timezone",
            "UTC",
            "--max",
            "1",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("422") && err.contains("cron"), "{err}");
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/schedules/bad", None)
        .await;
    assert_eq!(status, 404);

    // Morning: back to 2 nodes; the deallocated ones are started again.
    let (code, out, err) = cli(&api, &w.dir, &["schedule", "delete", "night"]).await;
    assert_eq!(code, 0, "{out}{err}");
    api.ok(
        reqwest::Method::POST,
        "/v1/schedules",
        Some(
            json!({"name": "morning", "pool": "redshift", "cron": "*/3 * * * * *",
                    "timezone": "America/New_York", "set": {"max": 4, "target": 2}}),
        ),
    )
    .await;
    eventually("the schedule set max 4 target 2", 30, || async {
        (pool_bounds(&api, "redshift").await == (0, 4, 2)).then_some(())
    })
    .await;
    eventually("2 running again", 60, || async {
        (census(&w.vms("redshift").await) == (2, 0, 0)).then_some(())
    })
    .await;
    assert_eq!(
        w.vm_puts().await,
        2,
        "started the deallocated VMs, created none"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_missed_while_stopped_is_applied_at_start_and_survives_restarts() {
    let w = world("catchup", json!({})).await;
    let pool = r#"
[[pools]]
name = "vray"
mode = "vm"
vm_sizes = ["Standard_D4s_v5"]
image = "Canonical:ubuntu-24_04-lts:server:latest"
max = 3
target = 2
idle_timeout_seconds = 0
"#;
    let path = w.dir.join("renderburst.toml");
    let config = || Config::load(Some(&path)).unwrap();

    // The pool's nodes come up.
    std::fs::write(&path, w.config_toml("127.0.0.1:0") + pool).unwrap();
    let daemon = serve::start(config(), Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    running_nodes(&Api::new(daemon.api_addr), &w, "vray", 2).await;
    daemon.stop().await;
    wait_unlocked(&w).await;

    // The file gets a schedule that fires once a day, 15 seconds from now (UTC); a daemon
    // learns it, and stops before it fires.
    let fire_at = unix_now() + 15;
    let t = time::OffsetDateTime::from_unix_timestamp(fire_at).unwrap();
    let schedule = format!(
        "\n[[schedules]]\nname = \"lights-out\"\npool = \"vray\"\ncron = \"{} {} {} * * *\"\ntimezone = \"UTC\"\nset = {{ max = 0 }}\n",
        t.second(),
        t.minute(),
        t.hour()
    );
    std::fs::write(&path, w.config_toml("127.0.0.1:0") + pool + &schedule).unwrap();
    let daemon = serve::start(config(), Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let api = Api::new(daemon.api_addr);
    let s = api
        .ok(reqwest::Method::GET, "/v1/schedules/lights-out", None)
        .await;
    let next = time::OffsetDateTime::parse(
        s["next_firing_utc"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(next.unix_timestamp(), fire_at, "{s}");
    assert_eq!(s["last_firing_utc"], Value::Null);
    daemon.stop().await;
    assert!(
        unix_now() < fire_at,
        "the daemon took too long to start and stop: the test needs it down across the firing"
    );

    // Down across the firing.
    eventually("the firing time passed", 40, || async {
        (unix_now() > fire_at + 1).then_some(())
    })
    .await;
    wait_unlocked(&w).await;
    let daemon = serve::start(config(), Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let api = Api::new(daemon.api_addr);
    // Applied before the start returned (before the first activation).
    assert_eq!(pool_bounds(&api, "vray").await, (0, 0, 0));
    let s = api
        .ok(reqwest::Method::GET, "/v1/schedules/lights-out", None)
        .await;
    let last = time::OffsetDateTime::parse(
        s["last_firing_utc"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(last.unix_timestamp(), fire_at, "{s}");
    eventually("the pool at zero", 60, || async {
        (census(&w.vms("vray").await) == (0, 2, 0)).then_some(())
    })
    .await;
    daemon.stop().await;

    // Restarted again: the file says max 3, but the day's firing still holds.
    wait_unlocked(&w).await;
    let daemon = serve::start(config(), Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let api = Api::new(daemon.api_addr);
    assert_eq!(pool_bounds(&api, "vray").await, (0, 0, 0));
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await;
    let fired: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "pool.scheduled" && e["actor"] == "lights-out")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert!(fired[1].contains("re-applied"), "{fired:?}");
    let from = activation_number(&api).await;
    eventually("two activations", 30, || async {
        (activation_number(&api).await >= from + 2).then_some(())
    })
    .await;
    assert_eq!(
        census(&w.vms("vray").await),
        (0, 2, 0),
        "nothing was started"
    );
    daemon.stop().await;
}

/// Node bootstrap end to end: every VM gets its own token in its customData; the simulator's
/// VMs boot by calling the register URL with the token they find there (Linux cloud-init and
/// Windows PowerShell alike); a VM that never registers is reported and replaced after the
/// pool's `register_timeout_seconds`; secrets (resolved from a file by the daemon) appear in
/// no API answer or event, and the CLI previews the script with secrets and token masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booting_nodes_register_with_their_own_token_and_a_zombie_is_replaced() {
    let w = world(
        "boot",
        json!({"boot": {"enabled": true, "never_register": ["arnold-00002"]}}),
    )
    .await;
    let secret_file = w.dir.join("smb.password");
    std::fs::write(&secret_file, "s3cret-from-a-file\n").unwrap();
    // Declared by the operator; the spec names it.
    let path = w.dir.join("renderburst.toml");
    let toml = format!(
        "{}[secrets.smb]\nfile = \"{}\"\n",
        w.config_toml("127.0.0.1:0"),
        secret_file.display()
    );
    std::fs::write(&path, toml).unwrap();
    let daemon = serve::start(
        Config::load(Some(&path)).unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let api = Api::new(daemon.api_addr);
    let mut spec = pool_spec("arnold", &["Standard_D4s_v5"], 6);
    spec["bootstrap"] = json!({
        "time_zone": "Europe/Berlin",
        "hosts": [{"ip": "10.1.0.5", "names": ["license01"]}],
        "mounts": [{"kind": "smb", "source": "//filer/projects", "target": "/mnt/projects",
                    "username": "render", "password": {"secret": "smb"}}],
        "firewall_ports": [{"port": 7774}],
        "env": {"RLM_LICENSE": "5053@license01"},
        "render_client": {"command": "/opt/rr/bin/rrClient -nogui"},
        "register_timeout_seconds": 8
    });
    spec["licenses"] = json!([{"name": "arnold", "variable": "ADSKFLEX_LICENSE_FILE", "server": "27000@lic.studio.lan"}]);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;
    let mut win = pool_spec("winrr", &["Standard_D4s_v5"], 2);
    win["os"] = json!("windows");
    win["image"] = json!("MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest");
    win["bootstrap"] =
        json!({"env": {"RLM_LICENSE": "5053@license01"}, "register_timeout_seconds": 8});
    api.ok(reqwest::Method::POST, "/v1/pools", Some(win)).await;

    // Before any node exists, the preview shows what node 1 would get, masked.
    let (code, script, err) = cli(
        &api,
        &w.dir,
        &["pool", "bootstrap", "arnold", "--node-preview"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(script.starts_with("#cloud-config\n"), "{script}");
    assert!(script.contains(&format!(
        "RENDERBURST_REGISTER_URL='http://{}/v1/nodes/arnold-00001/register'",
        daemon.api_addr
    )));
    assert!(script.contains("RENDERBURST_NODE_TOKEN='********'"));
    assert!(script.contains("password=********"));
    // The pool's license servers are in the node's environment.
    assert!(
        script.contains("ADSKFLEX_LICENSE_FILE=\"27000@lic.studio.lan\""),
        "{script}"
    );
    assert!(!script.contains("s3cret"));
    assert!(err.contains("masked"), "{err}");

    api.scale("arnold", 3).await;
    api.scale("winrr", 1).await;

    // The healthy nodes register with the token from their customData.
    let registered = |nodes: &Value, name: &str| {
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == name && n["registered_at"].is_string())
    };
    eventually(
        "arnold-00001, arnold-00003 and winrr-00001 registered",
        60,
        || async {
            let nodes = api.ok(reqwest::Method::GET, "/v1/nodes", None).await;
            ["arnold-00001", "arnold-00003", "winrr-00001"]
                .iter()
                .all(|n| registered(&nodes, n))
                .then_some(())
        },
    )
    .await;
    // The one that never registers is reported and replaced by a node that does.
    eventually("arnold-00002 replaced by a registered node", 90, || async {
        let nodes = api
            .ok(reqwest::Method::GET, "/v1/nodes?pool=arnold", None)
            .await;
        let names: Vec<&str> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["registered_at"].is_string() && n["state"] == "running")
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        let gone = !w
            .vms("arnold")
            .await
            .iter()
            .any(|v| v["name"] == "arnold-00002");
        (gone && names.len() == 3 && !names.contains(&"arnold-00002")).then_some(())
    })
    .await;
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?after=0&limit=1000", None)
        .await;
    let events = events["events"].as_array().unwrap();
    let zombie = events
        .iter()
        .find(|e| e["kind"] == "node.zombie" && e["node"] == "arnold-00002")
        .expect("a node.zombie event for arnold-00002");
    assert!(
        zombie["message"]
            .as_str()
            .unwrap()
            .contains("without registering")
    );
    let first = events
        .iter()
        .find(|e| e["kind"] == "node.registered" && e["node"] == "arnold-00001")
        .expect("a node.registered event for arnold-00001");
    assert_eq!(first["actor"], "node:arnold-00001");
    let pool = api.ok(reqwest::Method::GET, "/v1/pools/arnold", None).await;
    assert_eq!(pool["status"]["ready"], 3, "{pool}");
    let stats = w.control(reqwest::Method::GET, "/_sim/stats", None).await;
    assert!(
        stats["boots"]["registered"].as_u64().unwrap() >= 4,
        "{stats}"
    );
    assert_eq!(stats["boots"]["never"], 1, "{stats}");
    assert_eq!(stats["boots"]["failed"], 0, "{stats}");
    // The secret stays in the spec as a reference: never in answers or events.
    let everything = format!(
        "{pool}{}{}",
        Value::Array(events.clone()),
        api.ok(reqwest::Method::GET, "/v1/nodes", None).await
    );
    assert!(!everything.contains("s3cret"), "a secret leaked");
    assert!(!everything.contains("rbn_"), "a node token leaked");
    // ARM never answers customData or unattend content.
    for vm in w.resources("Microsoft.Compute/virtualMachines").await {
        let os = &vm["properties"]["osProfile"];
        assert!(os.get("customData").is_none(), "{vm}");
        assert!(!vm.to_string().contains("AutoLogon><Password"), "{vm}");
    }
    daemon.stop().await;
}

/// Issue 12 item 12: `ensure_network` with `subnet_id` ensures that subnet (its resource
/// group, virtual network and subnet as the id names them) instead of the daemon's own
/// `renderburst-vnet`, so the nodes are created where the configuration says and the pool
/// converges. Before, every create failed with `InvalidResourceReference`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_network_with_a_configured_subnet_ensures_that_subnet() {
    let w = world("own-subnet", json!({})).await;
    let subnet_id = format!(
        "/subscriptions/{}/resourceGroups/studio-net/providers/Microsoft.Network/virtualNetworks/studio-vnet/subnets/render-nodes",
        w.sim.identity().subscription_id
    );
    let path = w.dir.join("renderburst.toml");
    std::fs::write(
        &path,
        format!(
            "{}subnet_id = \"{subnet_id}\"\n",
            w.config_toml("127.0.0.1:0")
        ),
    )
    .unwrap();
    let daemon = serve::start(
        Config::load(Some(&path)).unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let api = Api::new(daemon.api_addr);
    let subnets = w
        .resources("Microsoft.Network/virtualNetworks/subnets")
        .await;
    let ids: Vec<String> = subnets
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(
        ids,
        vec![subnet_id.to_ascii_lowercase()],
        "the configured subnet is the only one ensured"
    );
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 4)),
    )
    .await;
    api.scale("maya", 2).await;
    eventually("2 running VMs", 60, || async {
        (census(&w.vms("maya").await) == (2, 0, 0)).then_some(())
    })
    .await;
    for nic in w.resources("Microsoft.Network/networkInterfaces").await {
        let s = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        assert_eq!(s, subnet_id.to_ascii_lowercase());
    }
    daemon.stop().await;
}
