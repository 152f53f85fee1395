//! Issue 13 item 1: a permanent error is not retried at full speed. A configured subnet that
//! does not exist (`ensure_network = false`) made every VM create fail with
//! `InvalidResourceReference`: 6,241 VM PUTs in ten minutes, names up to `maya-06244`, no
//! condition, and `pool scale --wait` hung. Now the pool is `Blocked` (code and fix) within
//! an activation, its creates back off, names are reused, `--wait` fails with the reason,
//! and creating the subnet lets the pool converge.

use crate::common;

use std::time::{Duration, Instant};

use common::world::*;
use common::{cli, eventually};
use renderburst::config::Config;
use renderburst::serve;
use serde_json::Value;

/// The pool's target in the test.
const N: u64 = 4;
/// The shortened `[controller] error_backoff_max_seconds`: holds of 10 s then 20 s (less up
/// to a quarter of jitter) show the doubling and the cap within a short window.
const CAP: u64 = 20;
/// The window whose creates are counted.
const WINDOW: u64 = 45;

fn condition<'a>(pool: &'a Value, kind: &str) -> Option<&'a Value> {
    pool["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_subnet_blocks_the_pool_backs_off_and_clears_once_created() {
    // What the default cap gives, the Must-hold: the first attempt creates the
    // target, each later attempt one probe (worst case of jitter).
    let in_150 = controller::backoff::attempts_within(150, 900);
    let in_600 = controller::backoff::attempts_within(600, 900);
    println!(
        "default cap 900 s, target {N}: at most {} VM PUTs in the first 150 s ({in_150} attempts), \
         {} in ten minutes ({in_600} attempts)",
        N + u64::from(in_150) - 1,
        N + u64::from(in_600) - 1
    );
    assert!(N + u64::from(in_150) - 1 <= 12, "the Must-hold's bound");

    let w = world("blocked", serde_json::json!({})).await;
    let subnet_id = format!(
        "/subscriptions/{}/resourceGroups/studio-net/providers/Microsoft.Network/virtualNetworks/studio-vnet/subnets/render-nodes",
        w.sim.identity().subscription_id
    );
    let base = w.config_toml("127.0.0.1:0");
    assert!(base.contains("ensure_network = true\n"));
    let toml = base
        .replace(
            "ensure_network = true\n",
            &format!("ensure_network = false\nsubnet_id = \"{subnet_id}\"\n"),
        )
        .replace(
            "[controller]\n",
            &format!("[controller]\nerror_backoff_max_seconds = {CAP}\n"),
        );
    let path = w.dir.join("renderburst.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(Some(&path)).unwrap();
    let location = cfg.azure.as_ref().unwrap().location.clone();
    let daemon = serve::start(cfg, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let arm = daemon.controller.arm().clone();
    // The daemon's resource group exists (an admin made it); the configured subnet does not.
    renderburst::network::ensure(&arm, "burst", &location, "e2e", None)
        .await
        .unwrap();
    let api = Api::new(daemon.api_addr);
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 8)),
    )
    .await;

    let puts_before = w.vm_puts().await;
    let t0 = Instant::now();
    api.scale("maya", N as u32).await;
    let blocked = eventually("the pool is Blocked", 20, || async {
        let p = api.ok(reqwest::Method::GET, "/v1/pools/maya", None).await;
        condition(&p, "Blocked").cloned()
    })
    .await;
    let to_blocked = t0.elapsed();
    println!("Blocked after {:.1} s: {blocked}", to_blocked.as_secs_f64());
    let message = blocked["message"].as_str().unwrap();
    assert!(
        message.starts_with("InvalidResourceReference: "),
        "{message}"
    );
    assert!(message.contains("fix: "), "{message}");
    assert!(message.contains("azure.subnet_id"), "{message}");
    assert!(blocked["since"].as_str().unwrap().ends_with('Z'));
    let since = blocked["since"].clone();

    // The window: the first attempt's creates, then one probe per hold.
    eventually("the window has passed", WINDOW + 30, || async {
        (t0.elapsed() >= Duration::from_secs(WINDOW)).then_some(())
    })
    .await;
    let puts = w.vm_puts().await - puts_before;
    let attempts = controller::backoff::attempts_within(WINDOW, CAP);
    let bound = N + u64::from(attempts) - 1;
    println!(
        "VM PUTs in the first {} s: {puts} (bound {bound}: {attempts} attempts with cap {CAP} s)",
        t0.elapsed().as_secs()
    );
    assert!(puts >= N, "the first attempt creates the target: {puts}");
    assert!(
        puts <= bound,
        "{puts} VM PUTs in {WINDOW} s, at most {bound}"
    );
    assert!(puts > N, "the pool retried after its hold: {puts}");
    let p = api.ok(reqwest::Method::GET, "/v1/pools/maya", None).await;
    let still = condition(&p, "Blocked").expect("still blocked");
    assert_eq!(still["since"], since, "since stays while Blocked lasts");
    assert!(
        p["status"]["observed_generation"].as_i64().unwrap() >= p["generation"].as_i64().unwrap()
    );

    // Names are not burned: every create used one of the target's names.
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await;
    let events = events["events"].as_array().unwrap().clone();
    let allowed: Vec<String> = (1..=N).map(|i| format!("maya-{i:05}")).collect();
    // (Creates' errors: those of listing before the resource group existed name no node.)
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "arm.error" && e["data"]["action"] == "create")
        .collect();
    assert!(!failed.is_empty());
    for e in &failed {
        let node = e["node"].as_str().unwrap_or_default();
        assert!(allowed.iter().any(|a| a == node), "name burned: {node}");
    }
    let blocked_events = events
        .iter()
        .filter(|e| e["kind"] == "pool.blocked")
        .count();
    assert_eq!(blocked_events, 1, "one event per transition, not per retry");

    // `pool scale --wait` fails with the reason, well within a minute.
    let started = Instant::now();
    let (code, out, err) = cli(
        &api.base,
        "e2e-admin-token-0123456789",
        &w.dir,
        &[
            "pool",
            "scale",
            "maya",
            &N.to_string(),
            "--wait",
            "--timeout",
            "300",
        ],
    )
    .await;
    let took = started.elapsed();
    println!(
        "scale --wait exited {code} after {:.1} s: {err}",
        took.as_secs_f64()
    );
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    assert!(
        err.contains("pool maya is blocked: InvalidResourceReference"),
        "{err}"
    );
    assert!(err.contains("fix: "), "{err}");
    assert!(took < Duration::from_secs(60), "{took:?}");

    // The admin creates the subnet: the next attempt succeeds, Blocked clears, the pool
    // converges.
    let configured = rb_core::arm_names::SubnetId::parse(&subnet_id).unwrap();
    renderburst::network::ensure(&arm, "burst", &location, "e2e", Some(&configured))
        .await
        .unwrap();
    eventually("the pool converges", 120, || async {
        (census(&w.vms("maya").await) == (N as usize, 0, 0)).then_some(())
    })
    .await;
    eventually("Blocked clears", 30, || async {
        let p = api.ok(reqwest::Method::GET, "/v1/pools/maya", None).await;
        condition(&p, "Blocked").is_none().then_some(())
    })
    .await;
    let names: Vec<String> = w
        .vms("maya")
        .await
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    for n in &names {
        assert!(allowed.contains(n), "name burned: {n} (of {names:?})");
    }
    let events = api
        .ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "pool.unblocked"),
        "pool.unblocked is logged"
    );
    println!("total VM PUTs: {}", w.vm_puts().await - puts_before);
    daemon.stop().await;
}
