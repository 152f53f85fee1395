//! Schedules of the configuration file against schedules created through the API (issue 13,
//! item 8 follow-up): a `[[schedules]]` tag selector that sets `max` differently, at the same
//! minute, on a pool carrying the tag as a schedule created through the API is refused at
//! start, naming the file, the key, both schedules and the pool; nothing is stored. The
//! in-process world of the e2e tests.

use serde_json::json;

use crate::common;
use common::eventually;
use common::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_schedule_clashing_with_an_api_schedule_stops_the_start() {
    let w = world("schedule-clash", json!({})).await;
    let (daemon, api) = w.serve().await;
    // pool_spec tags its pools show=e2e.
    api.ok(
        reqwest::Method::POST,
        "/v1/pools",
        Some(pool_spec("maya", &["Standard_D4s_v5"], 4)),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        "/v1/schedules",
        Some(
            json!({"name": "night", "pool": "maya", "cron": "0 20 * * *",
                    "timezone": "UTC", "set": {"max": 0}}),
        ),
    )
    .await;
    daemon.stop().await;
    let db = w.dir.join("renderburst.db");
    eventually("the database unlocked", 30, || async {
        let s = store::Store::open(&db).await.ok()?;
        s.close().await;
        Some(())
    })
    .await;

    let with_schedule = |max: u32| {
        move |toml: String| {
            format!(
                "{toml}\n[[schedules]]\nname = \"show-night\"\npool_tag = {{ show = \"e2e\" }}\n\
                 cron = \"0 20 * * *\"\ntimezone = \"UTC\"\nset = {{ max = {max} }}\n"
            )
        }
    };
    let cfg = w.config_with(with_schedule(5));
    let file = cfg.source.clone();
    let err = match renderburst::serve::start(cfg, Some("127.0.0.1:0".parse().unwrap())).await {
        Ok(d) => {
            d.stop().await;
            panic!("a clashing [[schedules]] entry was accepted");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&file)
            && err.contains("schedules[0] (show-night).set.max")
            && err.contains("\"show-night\" and \"night\"")
            && err.contains("pool maya (tagged show=e2e)"),
        "{err}"
    );
    let store = eventually("the database unlocked", 30, || async {
        store::Store::open(&db).await.ok()
    })
    .await;
    let names: Vec<String> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    assert_eq!(names, ["night"], "nothing stored");
    store.close().await;

    // Agreeing with it, the same entry starts.
    let (daemon, api) = w.serve_with(with_schedule(0)).await;
    let listed = api.ok(reqwest::Method::GET, "/v1/schedules", None).await;
    assert_eq!(listed["schedules"].as_array().unwrap().len(), 2, "{listed}");
    daemon.stop().await;
}
