//! `/v1/schedules` over the real router and a real store: create, read (with the next firing
//! in the zone and in UTC), delete, and every bad input refused naming its field with nothing
//! stored.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn night(name: &str) -> Value {
    json!({"name": name, "pool": "maya", "cron": "0 20 * * MON-FRI",
           "timezone": "America/New_York", "set": {"max": 0}})
}

fn parse(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        v.as_str().unwrap_or_else(|| panic!("not a time: {v}")),
        &Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn schedules_are_created_shown_with_their_next_firing_and_deleted() {
    let app = spawn_app().await;
    let (status, _) = app
        .admin(Method::POST, "/v1/pools", Some(spec("maya")))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, created) = app
        .admin(Method::POST, "/v1/schedules", Some(night("night")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["cron"], "0 20 * * MON-FRI");
    assert_eq!(created["set"], json!({"max": 0}));
    assert!(created.get("pool_tag").is_none(), "{created}");
    assert_eq!(created["last_firing_utc"], Value::Null);
    // The next firing, in UTC and in New York: the same instant, at 20:00 there, on a weekday.
    let utc = parse(&created["next_firing_utc"]);
    let local = parse(&created["next_firing_local"]);
    assert_eq!(utc, local);
    assert_eq!(utc.offset().whole_seconds(), 0);
    assert!(
        [-4 * 3600, -5 * 3600].contains(&local.offset().whole_seconds()),
        "{local}"
    );
    assert_eq!((local.hour(), local.minute()), (20, 0));
    assert!(!matches!(
        local.weekday(),
        time::Weekday::Saturday | time::Weekday::Sunday
    ));
    assert!(utc > OffsetDateTime::now_utc());
    assert!(
        utc - OffsetDateTime::now_utc() <= time::Duration::days(4),
        "the next weekday 20:00"
    );

    // Readers see it.
    let (status, list) = app
        .call(Method::GET, "/v1/schedules", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(list["schedules"][0]["name"], "night");
    let (status, one) = app
        .call(
            Method::GET,
            "/v1/schedules/night",
            Some(REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (status, &one["next_firing_utc"]),
        (StatusCode::OK, &created["next_firing_utc"])
    );

    // A tag selector needs no pool to exist yet.
    let tagged = json!({"name": "warm", "pool_tag": {"show": "ep101"}, "cron": "0 30 7 * * MON-FRI",
                        "timezone": "Europe/London", "set": {"target": 10}});
    let (status, body) = app.admin(Method::POST, "/v1/schedules", Some(tagged)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["pool_tag"], json!({"show": "ep101"}));
    assert_eq!(parse(&body["next_firing_local"]).second(), 0);

    let events = app.store.events_after(0, 100).await.unwrap();
    let made = events
        .iter()
        .find(|e| e.kind == "schedule.created")
        .unwrap();
    assert_eq!(made.actor, "admin");
    assert!(made.message.contains("sets max=0"), "{}", made.message);

    let (status, gone) = app.admin(Method::DELETE, "/v1/schedules/night", None).await;
    assert_eq!((status, &gone["name"]), (StatusCode::OK, &json!("night")));
    let got = app.admin(Method::GET, "/v1/schedules/night", None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app.admin(Method::DELETE, "/v1/schedules/night", None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    assert!(
        app.store
            .events_after(0, 100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "schedule.deleted" && e.actor == "admin")
    );
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (status, _) = app
        .admin(Method::POST, "/v1/pools", Some(spec("maya")))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .admin(Method::POST, "/v1/schedules", Some(night("taken")))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The pool's creation woke the controller; a schedule does not (the scheduler hears
    // of it from the store).
    assert!(app.woken().await);
    assert!(app.not_woken().await);
    let with = |key: &str, value: Value| {
        let mut v = night("n");
        if value.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = value;
        }
        v
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases: Vec<(&str, Value, StatusCode, &str, Option<&str>)> = vec![
        (
            "bad cron",
            with("cron", json!("0 25 * * *")),
            unprocessable,
            "invalid_schedule",
            Some("cron"),
        ),
        (
            "four fields",
            with("cron", json!("0 20 * *")),
            unprocessable,
            "invalid_schedule",
            Some("cron"),
        ),
        (
            "never fires",
            with("cron", json!("0 0 30 2 *")),
            unprocessable,
            "invalid_schedule",
            Some("cron"),
        ),
        (
            "cron not a string",
            with("cron", json!(5)),
            unprocessable,
            "invalid_schedule",
            Some("cron"),
        ),
        (
            "no cron",
            with("cron", Value::Null),
            unprocessable,
            "invalid_schedule",
            Some("cron"),
        ),
        (
            "unknown zone",
            with("timezone", json!("Mars/Olympus")),
            unprocessable,
            "invalid_schedule",
            Some("timezone"),
        ),
        (
            "offset, not a zone",
            with("timezone", json!("+01:00")),
            unprocessable,
            "invalid_schedule",
            Some("timezone"),
        ),
        (
            "empty set",
            with("set", json!({})),
            unprocessable,
            "invalid_schedule",
            Some("set"),
        ),
        (
            "negative max",
            with("set", json!({"max": -1})),
            unprocessable,
            "invalid_schedule",
            Some("set.max"),
        ),
        (
            "min above max",
            with("set", json!({"min": 3, "max": 1})),
            unprocessable,
            "invalid_schedule",
            Some("set.min"),
        ),
        (
            "unknown set key",
            with("set", json!({"maximum": 1})),
            unprocessable,
            "invalid_schedule",
            Some("set.maximum"),
        ),
        (
            "unknown key",
            with("when", json!("night")),
            unprocessable,
            "invalid_schedule",
            Some("when"),
        ),
        (
            "bad name",
            with("name", json!("Night Off")),
            unprocessable,
            "invalid_schedule",
            Some("name"),
        ),
        (
            "pool and pool_tag",
            with("pool_tag", json!({"a": "b"})),
            unprocessable,
            "invalid_schedule",
            Some("pool_tag"),
        ),
        (
            "neither",
            with("pool", Value::Null),
            unprocessable,
            "invalid_schedule",
            Some("pool"),
        ),
        (
            "unknown pool",
            with("pool", json!("nosuch")),
            StatusCode::NOT_FOUND,
            "not_found",
            Some("pool"),
        ),
        (
            "name taken",
            night("taken"),
            StatusCode::CONFLICT,
            "conflict",
            Some("name"),
        ),
    ];
    for (what, body, status, code, field) in cases {
        let before = app.snapshot().await;
        let got = app.admin(Method::POST, "/v1/schedules", Some(body)).await;
        assert_eq!(got.0, status, "{what}: {}", got.1);
        assert_error(&got, status, code, field);
        assert_eq!(app.snapshot().await, before, "{what} stored something");
        assert!(app.not_woken().await, "{what} woke the controller");
    }
    let got = app
        .raw(
            Method::POST,
            "/v1/schedules",
            Some("application/json"),
            b"{not json".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json", None);
    let got = app.admin(Method::GET, "/v1/schedules/Bad!", None).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    let got = app
        .call(
            Method::POST,
            "/v1/schedules",
            Some(VIEWER_TOKEN),
            Some(night("v")),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
}
