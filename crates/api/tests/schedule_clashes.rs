//! Schedule clashes across targets (issue 13, item 8): a schedule by tag and one by pool that
//! set the same bound differently at the same minute on a pool carrying the tag are refused
//! with a 422 naming the field, both schedules and the pool, whichever is created second;
//! a pool without the tag, or agreeing values, are no clash. Real router, real store.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn by_pool(name: &str, pool: &str, max: u32) -> Value {
    json!({"name": name, "pool": pool, "cron": "0 20 * * *", "timezone": "UTC",
           "set": {"max": max}})
}

fn by_tag(name: &str, tags: Value, max: u32) -> Value {
    // The same instant as 20:00 UTC, written in another zone.
    json!({"name": name, "pool_tag": tags, "cron": "0 21 * * *", "timezone": "Africa/Lagos",
           "set": {"max": max}})
}

#[tokio::test]
async fn a_tag_schedule_and_a_pool_schedule_clash_on_a_pool_carrying_the_tag() {
    let app = spawn_app().await;
    // `maya` carries show=ep101 (the common spec); `vray` does not.
    for pool in [
        spec("maya"),
        with(spec("vray"), "tags", json!({"show": "ep102"})),
    ] {
        let (status, body) = app.admin(Method::POST, "/v1/pools", Some(pool)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/schedules",
            Some(by_pool("night", "maya", 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Tag second: refused, naming both schedules, the pool and the field.
    let got = app
        .admin(
            Method::POST,
            "/v1/schedules",
            Some(by_tag("show-night", json!({"show": "ep101"}), 6)),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_schedule",
        Some("set.max"),
    );
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"show-night\" and \"night\"")
            && message.contains("pool maya (tagged show=ep101)")
            && message.contains("to 6 and 0"),
        "{message}"
    );
    let (_, listed) = app.admin(Method::GET, "/v1/schedules", None).await;
    assert_eq!(
        listed["schedules"].as_array().unwrap().len(),
        1,
        "nothing stored"
    );

    // A tag only `vray` carries sets no pool `night` sets; agreeing values are no clash.
    for (name, tags, max) in [
        ("other-show", json!({"show": "ep102"}), 6),
        ("agree", json!({"show": "ep101"}), 0),
    ] {
        let (status, body) = app
            .admin(Method::POST, "/v1/schedules", Some(by_tag(name, tags, max)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    }

    // Pool second: a schedule for `vray` meets `other-show` there (tag first, pool second).
    let got = app
        .admin(
            Method::POST,
            "/v1/schedules",
            Some(by_pool("vray-night", "vray", 2)),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_schedule",
        Some("set.max"),
    );
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"vray-night\" and \"other-show\"")
            && message.contains("pool vray (tagged show=ep102)"),
        "{message}"
    );
}
