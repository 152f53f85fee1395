//! The event log tells the truth (issue 13, item 5): `renderburst events` prints the newest
//! N, one pool's, and `--follow` from now; the controller's own deletes stay its own across a
//! restart; a Spot eviction is logged and counted as one. The in-process world of the e2e
//! tests, with the CLI run as the binary.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::common;
use common::eventually;
use common::world::*;

const ADMIN: &str = "e2e-admin-token-0123456789";

async fn cli(api: &Api, w: &World, args: &[&str]) -> (i32, String, String) {
    common::cli(&api.base, ADMIN, &w.dir, args).await
}

/// Every event the API holds (oldest first), at most 1000.
async fn all_events(api: &Api) -> Vec<Value> {
    api.ok(reqwest::Method::GET, "/v1/events?limit=1000", None)
        .await["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

async fn activation_number(api: &Api) -> u64 {
    let s = api.ok(reqwest::Method::GET, "/v1/status", None).await;
    s["controller"]["reconciler"]["number"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until the stopped daemon's last holder of the store is gone.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_prints_the_newest_n_one_pool_and_follows_from_now() {
    let w = world("events-cli", json!({})).await;
    let (daemon, api) = w.serve().await;
    let mut maya = pool_spec("maya", &["Standard_D4s_v5"], 10);
    maya["target"] = json!(4);
    let mut houdini = pool_spec("houdini", &["Standard_D4s_v5"], 10);
    houdini["target"] = json!(2);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(maya)).await;
    api.ok(reqwest::Method::POST, "/v1/pools", Some(houdini))
        .await;
    eventually("both pools running", 60, || async {
        (census(&w.vms("maya").await) == (4, 0, 0) && census(&w.vms("houdini").await) == (2, 0, 0))
            .then_some(())
    })
    .await;
    // More history than a page of 5, or 20, can hold: scale a few times.
    for target in [5, 3, 6, 4] {
        api.scale("maya", target).await;
    }
    let before = eventually("enough history to cut", 60, || async {
        let all = all_events(&api).await;
        let ids = ids(&all);
        (ids.len() > 20).then_some(ids)
    })
    .await;

    // --limit 5: exactly the 5 newest, oldest of them first.
    let (code, out, err) = cli(&api, &w, &["events", "--limit", "5", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let printed = ids(&json_lines(&out));
    let after = ids(&all_events(&api).await);
    assert_eq!(printed.len(), 5, "{out}");
    assert!(printed.windows(2).all(|p| p[0] < p[1]), "{printed:?}");
    let newest_then: Vec<i64> = after
        .iter()
        .copied()
        .filter(|id| *id <= printed[4])
        .collect();
    assert_eq!(
        printed,
        newest_then[newest_then.len() - 5..],
        "the newest 5 when it ran"
    );
    assert!(printed[4] >= *before.last().unwrap());
    // As a table too: five lines, nothing else.
    let (code, out, err) = cli(&api, &w, &["events", "--limit", "5"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    // The default is the newest 20.
    let (code, out, _) = cli(&api, &w, &["events"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 20.min(after.len()), "{out}");

    // --pool: that pool's events only, all of them.
    let (code, out, err) = cli(
        &api,
        &w,
        &[
            "events", "--pool", "houdini", "--limit", "1000", "-o", "json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let houdini_events = json_lines(&out);
    let expected = all_events(&api)
        .await
        .into_iter()
        .filter(|e| {
            e["pool"] == "houdini"
                && e["id"].as_i64() <= houdini_events.last().and_then(|e| e["id"].as_i64())
        })
        .count();
    assert!(!houdini_events.is_empty());
    assert!(
        houdini_events.iter().all(|e| e["pool"] == "houdini"),
        "{out}"
    );
    assert_eq!(houdini_events.len(), expected);

    // --since: history from a point in time; a bad value names the field.
    let (code, out, _) = cli(&api, &w, &["events", "--since", "1h", "-o", "json"]).await;
    assert_eq!(code, 0);
    assert!(
        json_lines(&out).len() >= before.len(),
        "everything is newer than an hour"
    );
    let (code, _, err) = cli(&api, &w, &["events", "--since", "yesterday"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("since"), "{err}");
    let (status, body) = api
        .call(reqwest::Method::GET, "/v1/events?order=sideways", None)
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("order"))
    );

    // --follow: from now. Nothing of the history, then what happens next.
    let last_before = *all_events(&api)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect::<Vec<_>>()
        .last()
        .unwrap();
    let token = w.dir.join("follow.token");
    std::fs::write(&token, ADMIN).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args([
            "events",
            "--follow",
            "-o",
            "json",
            "--api",
            &api.base,
            "--token-file",
        ])
        .arg(&token)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Scale until the follower shows it: the first scale may land before it asked where
    // "now" is, so keep changing the target until one of ours comes through.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    let mut target = 5;
    'seen: loop {
        assert!(
            Instant::now() < deadline,
            "the follower never showed the scale: {printed:?}"
        );
        api.scale("maya", target).await;
        target = if target == 5 { 4 } else { 5 };
        let wait = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let line = line.unwrap().expect("the follower exited");
                    let e: Value = serde_json::from_str(&line).unwrap();
                    let scaled = e["kind"] == "pool.scaled";
                    printed.push(e);
                    if scaled {
                        break 'seen;
                    }
                }
                _ = &mut wait => break,
            }
        }
    }
    child.kill().await.unwrap();
    let old: Vec<&Value> = printed
        .iter()
        .filter(|e| e["id"].as_i64().unwrap() <= last_before)
        .collect();
    assert!(old.is_empty(), "--follow printed history: {old:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_deletes_stay_ours_across_a_restart() {
    // Deletes take 5 s, so the stop lands while they are in flight.
    let w = world("events-restart", json!({"latency_ms": {"vm_delete": 5000}})).await;
    let (daemon, api) = w.serve().await;
    let mut spec = pool_spec("maya", &["Standard_D4s_v5"], 10);
    spec["target"] = json!(4);
    spec["scale_down"] = json!("delete");
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;
    eventually("4 running", 60, || async {
        (census(&w.vms("maya").await) == (4, 0, 0)).then_some(())
    })
    .await;
    api.scale("maya", 1).await;
    let doomed: Vec<String> = eventually("3 deletes decided", 30, || async {
        let nodes: Vec<String> = all_events(&api)
            .await
            .iter()
            .filter(|e| e["kind"] == "plan.delete")
            .map(|e| e["node"].as_str().unwrap().to_owned())
            .collect();
        (nodes.len() == 3).then_some(nodes)
    })
    .await;
    // Each decision carries its intent.
    for e in all_events(&api)
        .await
        .iter()
        .filter(|e| e["kind"] == "plan.delete")
    {
        assert!(e["data"]["intent"].as_i64().is_some(), "{e}");
    }
    daemon.stop().await;
    wait_unlocked(&w).await;
    assert_eq!(
        w.vms("maya").await.len(),
        4,
        "the stop came before the deletes ended"
    );

    let (daemon, api) = w.serve().await;
    eventually("1 VM left, in Azure and in the inventory", 90, || async {
        let nodes = api
            .ok(reqwest::Method::GET, "/v1/nodes?pool=maya", None)
            .await;
        (w.vms("maya").await.len() == 1 && nodes["nodes"].as_array().unwrap().len() == 1)
            .then_some(())
    })
    .await;
    // Let a few activations pass over the gone VMs.
    let n = activation_number(&api).await;
    eventually("three more activations", 30, || async {
        (activation_number(&api).await >= n + 3).then_some(())
    })
    .await;
    let events = all_events(&api).await;
    for node in &doomed {
        let about: Vec<&Value> = events
            .iter()
            .filter(|e| e["node"] == node.as_str())
            .collect();
        let outside: Vec<&&Value> = about
            .iter()
            .filter(|e| {
                e["kind"] == "vm.forget"
                    || e["message"]
                        .as_str()
                        .unwrap()
                        .contains("outside renderburst")
            })
            .collect();
        assert!(
            outside.is_empty(),
            "{node}: our delete logged as out-of-band: {outside:?}"
        );
        assert!(
            about
                .iter()
                .any(|e| e["kind"] == "vm.delete" && e["data"]["recovered"] == true),
            "{node}: the delete finished after the restart is logged as ours: {about:?}"
        );
    }
    daemon.stop().await;
}

/// Evicts one Spot VM of a single-pool world and checks the log and the count.
async fn eviction_is_logged_and_counted(policy: &str) {
    let w = world(&format!("events-evict-{policy}"), json!({})).await;
    let (daemon, api) = w.serve().await;
    let mut spec = pool_spec("houdini", &["Standard_D4s_v5"], 3);
    spec["priority"] = json!("spot");
    spec["spot"] = json!({"eviction_policy": policy});
    spec["target"] = json!(3);
    api.ok(reqwest::Method::POST, "/v1/pools", Some(spec)).await;
    eventually("3 running Spot VMs", 60, || async {
        let nodes = api
            .ok(reqwest::Method::GET, "/v1/nodes?pool=houdini", None)
            .await;
        let running = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "running")
            .count();
        (census(&w.vms("houdini").await) == (3, 0, 0) && running == 3).then_some(())
    })
    .await;
    let evicted = w
        .control(
            reqwest::Method::POST,
            "/_sim/evict",
            Some(json!({"count": 1})),
        )
        .await;
    let id = evicted["evicted"][0].as_str().unwrap();
    let node = id.rsplit('/').next().unwrap().to_owned();
    let event = eventually("the eviction logged", 30, || async {
        all_events(&api)
            .await
            .into_iter()
            .find(|e| e["kind"] == "node.evicted" && e["node"] == node.as_str())
    })
    .await;
    assert_eq!(event["data"]["eviction_policy"], policy);
    eventually("the pool counts it", 30, || async {
        let p = api
            .ok(reqwest::Method::GET, "/v1/pools/houdini", None)
            .await;
        (p["status"]["preempted"] == 1).then_some(())
    })
    .await;
    eventually("the capacity back", 60, || async {
        (census(&w.vms("houdini").await).0 == 3).then_some(())
    })
    .await;
    let events = all_events(&api).await;
    let outside: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["kind"] == "vm.forget"
                || e["message"]
                    .as_str()
                    .unwrap()
                    .contains("outside renderburst")
        })
        .collect();
    assert!(
        outside.is_empty(),
        "an eviction logged as out-of-band: {outside:?}"
    );
    let p = api
        .ok(reqwest::Method::GET, "/v1/pools/houdini", None)
        .await;
    assert_eq!(p["status"]["preempted"], 1, "counted once");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_spot_vm_is_logged_as_an_eviction_and_counted() {
    eviction_is_logged_and_counted("deallocate").await;
    eviction_is_logged_and_counted("delete").await;
}
