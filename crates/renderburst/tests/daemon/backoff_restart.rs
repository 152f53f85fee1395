//! Issue 13 item 1, follow-up: a pool's backoff survives the daemon. It lived in controller
//! memory, so a restart retried at once (a full attempt) and a crash-looping daemon retried at
//! full speed. Now a pool Blocked on a missing subnet stays Blocked across SIGTERM and SIGKILL
//! restarts with its original `since`, its hold continues (no VM PUT before it lapses, then
//! one probe), the what-if plan shows the hold, and creating the subnet plus a scale clears
//! it and the pool converges.
//!
//! The daemon runs as a child process (`renderburst serve`), stopped with real signals; the
//! simulator runs in the test, and the test reads its ground truth (`/_sim/stats`).

use crate::common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::world::*;
use common::{eventually, free_port, spawn_daemon, wait_answers};
use renderburst::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

/// The pool's target.
const N: u32 = 4;
/// The shortened `[controller] error_backoff_max_seconds`: holds of 10, 20, then 30 s (less
/// up to a quarter of jitter).
const CAP: u64 = 30;

/// Kills the child daemon if the test fails half-way.
struct Daemon(Option<Child>);

impl Daemon {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a running daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn unix_of(rfc3339: &Value) -> i64 {
    time::OffsetDateTime::parse(
        rfc3339.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 time")
    .unix_timestamp()
}

/// SIGTERM, and the exit that follows.
fn terminate(child: &mut Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An ARM client of the test's own, as an admin's tools: it makes the resource group, and
/// later the subnet the daemon is configured with.
fn admin_arm(w: &World) -> azure::ArmClient {
    let id = w.sim.identity();
    let mut a = azure::AzureConfig::new(
        id.subscription_id.clone(),
        azure::CredentialConfig::ClientSecret {
            tenant_id: id.tenant_id.clone(),
            client_id: id.client_id.clone(),
            client_secret: azure_core::credentials::Secret::new(id.client_secret.clone()),
        },
    );
    a.arm_endpoint = w.sim.base_url().to_owned();
    a.authority_host = w.sim.base_url().to_owned();
    a.extra_ca_pem = Some(w.sim.ca_pem().as_bytes().to_vec());
    azure::ArmClient::new(a).unwrap()
}

fn condition<'a>(pool: &'a Value, kind: &str) -> Option<&'a Value> {
    pool["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The what-if plan's hold of the pool's creates, if any.
async fn create_hold(api: &Api) -> Option<(Value, Value)> {
    let plan = api.ok(Method::GET, "/v1/pools/maya/plan", None).await;
    let held = plan["held"]
        .as_array()?
        .iter()
        .find(|h| h["kind"] == "create")?
        .clone();
    Some((plan, held))
}

/// Waits for an activation of the daemon that started at or after `since` (unix seconds),
/// then returns the pool as the API shows it.
async fn pool_after_activation(api: &Api, since: i64) -> Value {
    eventually("an activation of the restarted daemon", 60, || async {
        let (status, s) = api.call(Method::GET, "/v1/status", None).await;
        let started = s["controller"]["reconciler"]["started_at"].as_i64()?;
        (status == 200 && started >= since).then_some(())
    })
    .await;
    // The activation's pool status is written before the next one starts; one more round
    // makes sure it is this process's.
    let n = api.ok(Method::GET, "/v1/status", None).await["controller"]["reconciler"]["number"]
        .as_u64()
        .unwrap_or(0);
    eventually("the next activation", 60, || async {
        let s = api.ok(Method::GET, "/v1/status", None).await;
        (s["controller"]["reconciler"]["number"].as_u64()? > n).then_some(())
    })
    .await;
    api.ok(Method::GET, "/v1/pools/maya", None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_pool_stays_blocked_and_held_across_restarts_then_clears() {
    let w = world("backoff-restart", json!({})).await;
    let subnet_id = format!(
        "/subscriptions/{}/resourceGroups/studio-net/providers/Microsoft.Network/virtualNetworks/studio-vnet/subnets/render-nodes",
        w.sim.identity().subscription_id
    );
    let port = free_port();
    let toml = w
        .config_toml(&format!("127.0.0.1:{port}"))
        .replace(
            "ensure_network = true\n",
            &format!("ensure_network = false\nsubnet_id = \"{subnet_id}\"\n"),
        )
        .replace(
            "[controller]\n",
            &format!("[controller]\nerror_backoff_max_seconds = {CAP}\n"),
        );
    let cfg_path = w.dir.join("renderburst.toml");
    std::fs::write(&cfg_path, toml).unwrap();
    let location = Config::load(Some(&cfg_path))
        .unwrap()
        .azure
        .unwrap()
        .location;
    // The daemon's resource group exists (an admin made it); the configured subnet does not.
    let arm = admin_arm(&w);
    renderburst::network::ensure(&arm, "burst", &location, "e2e", None)
        .await
        .unwrap();

    let mut daemon = Daemon(Some(spawn_daemon(&cfg_path)));
    let api = Api::new(([127, 0, 0, 1], port).into());
    wait_answers(&api.http, &api.base).await;
    api.ok(
        Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 8)),
    )
    .await;
    let puts0 = w.vm_puts().await;
    api.scale("maya", N).await;
    let blocked = eventually("the pool is Blocked", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/maya", None).await;
        condition(&p, "Blocked").cloned()
    })
    .await;
    let since = blocked["since"].clone();
    println!("Blocked since {since}: {}", blocked["message"]);

    // Wait for a hold long enough to restart within it: the third failed attempt's (22.5 to
    // 30 s) or a later one, with at least 12 s left.
    let (plan, held) = eventually("a long hold", 120, || async {
        let (plan, held) = create_hold(&api).await?;
        let until = unix_of(&held["until"]);
        (held["attempts"].as_u64()? >= 3 && until - unix_now() >= 12).then_some((plan, held))
    })
    .await;
    let until = unix_of(&held["until"]);
    let attempts = held["attempts"].as_u64().unwrap();
    println!("hold: {held}");
    // The what-if plan shows the hold: no create it would take now, what is held, until
    // when, and why (the pool's condition, with its since).
    assert!(
        !plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "create"),
        "{plan}"
    );
    assert_eq!(held["steps"], N, "{held}");
    assert_eq!(held["code"], "InvalidResourceReference");
    assert_eq!(held["condition"]["type"], "Blocked");
    assert_eq!(held["condition"]["since"], since);
    assert!(
        held["condition"]["message"]
            .as_str()
            .unwrap()
            .contains("azure.subnet_id")
    );
    assert_eq!(plan["held_until"], held["until"]);
    assert!(
        plan["conditions"].as_array().unwrap().iter().any(|c| {
            let c = c.as_str().unwrap_or_default();
            c.starts_with("Blocked: InvalidResourceReference")
                && c.contains("next create attempt at")
        }),
        "{plan}"
    );

    // SIGTERM, and serve again on the same database.
    let puts_at_stop = w.vm_puts().await;
    terminate(daemon.child());
    let restarted = unix_now();
    daemon.0 = Some(spawn_daemon(&cfg_path));
    wait_answers(&api.http, &api.base).await;
    let p = pool_after_activation(&api, restarted).await;
    let still = condition(&p, "Blocked").expect("still Blocked after the restart");
    assert_eq!(
        still["since"], since,
        "the condition keeps its since: {still}"
    );
    let (_, held_again) = create_hold(&api).await.expect("still held");
    assert_eq!(unix_of(&held_again["until"]), until, "the same hold");
    assert_eq!(held_again["attempts"].as_u64(), Some(attempts));
    println!(
        "restarted at {restarted}; the hold runs until {until} ({} s left)",
        until - unix_now()
    );
    // No VM PUT while the hold lasts (the planner holds while now < until).
    let mut samples = 0;
    while unix_now() < until {
        assert_eq!(
            w.vm_puts().await,
            puts_at_stop,
            "a VM PUT within the hold, after the restart"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("no VM PUT between the restart and the hold's end ({samples} samples)");
    // Then one probe, not the whole gap: the streak goes on.
    let (_, after) = eventually("the probe after the hold", 60, || async {
        let (plan, held) = create_hold(&api).await?;
        (held["attempts"].as_u64()? > attempts).then_some((plan, held))
    })
    .await;
    assert_eq!(
        w.vm_puts().await,
        puts_at_stop + 1,
        "one probe after the hold, not {N} creates"
    );
    let next_until = unix_of(&after["until"]);

    // A crash (SIGKILL) and a start: still held, same since, no attempt at start.
    let puts_at_kill = w.vm_puts().await;
    daemon.child().kill().unwrap();
    daemon.child().wait().unwrap();
    let crashed = unix_now();
    daemon.0 = Some(spawn_daemon(&cfg_path));
    wait_answers(&api.http, &api.base).await;
    let p = pool_after_activation(&api, crashed).await;
    let still = condition(&p, "Blocked").expect("still Blocked after SIGKILL");
    assert_eq!(still["since"], since);
    if unix_now() < next_until {
        assert_eq!(
            w.vm_puts().await,
            puts_at_kill,
            "no VM PUT at start while the pool is held"
        );
    }
    let events = api.ok(Method::GET, "/v1/events?limit=1000", None).await;
    let blocked_events = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "pool.blocked")
        .count();
    assert_eq!(blocked_events, 1, "one pool.blocked across restarts");

    // The admin creates the subnet and scales: the hold opens, the creates succeed, Blocked
    // clears and the pool converges on names that were never burned.
    let configured = rb_core::arm_names::SubnetId::parse(&subnet_id).unwrap();
    renderburst::network::ensure(&arm, "burst", &location, "e2e", Some(&configured))
        .await
        .unwrap();
    api.scale("maya", N).await;
    eventually("the pool converges", 120, || async {
        (census(&w.vms("maya").await) == (N as usize, 0, 0)).then_some(())
    })
    .await;
    eventually("Blocked clears and nothing is held", 30, || async {
        let p = api.ok(Method::GET, "/v1/pools/maya", None).await;
        let plan = api.ok(Method::GET, "/v1/pools/maya/plan", None).await;
        (condition(&p, "Blocked").is_none() && plan["held"] == json!([])).then_some(())
    })
    .await;
    let allowed: Vec<String> = (1..=N).map(|i| format!("maya-{i:05}")).collect();
    for v in w.vms("maya").await {
        let name = v["name"].as_str().unwrap().to_owned();
        assert!(allowed.contains(&name), "name burned: {name}");
    }
    println!(
        "VM PUTs: {} in all ({} before the first restart)",
        w.vm_puts().await - puts0,
        puts_at_stop - puts0
    );
    terminate(daemon.child());
    daemon.0 = None;
}
