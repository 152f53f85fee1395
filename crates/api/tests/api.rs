//! The API as a client sees it: the real router served on 127.0.0.1:0, a real store on a
//! temporary SQLite file, requests over HTTP with reqwest.
//!
//! Every bad request is checked twice: the 4xx JSON error names the right field, and the
//! store (pools, inventory, events, task statuses, tokens) is exactly as it was, with no
//! wake-up sent to the controller.

mod common;

use common::*;
use rb_core::NodeState;
use rb_core::task::TaskKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn health_is_open_and_readiness_waits_for_the_controller() {
    let app = spawn_app().await;
    let got = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(got, (StatusCode::OK, json!({"status": "ok"})));

    let got = app.call(Method::GET, "/readyz", None, None).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "not_ready", None);

    app.ready.send_replace(true);
    let got = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(got, (StatusCode::OK, json!({"status": "ready"})));
}

#[tokio::test]
async fn tokens_are_required_and_roles_enforced() {
    let app = spawn_app().await;
    app.create(spec("maya")).await;
    let before = app.snapshot().await;

    // No token, a wrong token, a malformed header: 401, for reads and writes alike.
    for (method, path) in [
        (Method::GET, "/v1/pools"),
        (Method::GET, "/v1/pools/maya"),
        (Method::GET, "/v1/nodes"),
        (Method::GET, "/v1/status"),
        (Method::GET, "/v1/pools/maya/plan"),
        (Method::DELETE, "/v1/pools/maya"),
    ] {
        let got = app.call(method.clone(), path, None, None).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
        let got = app
            .call(method.clone(), path, Some("not-a-token"), None)
            .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    let resp = app
        .http
        .get(format!("{}/v1/pools", app.base))
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_error(
        &read(resp).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    );

    // Authentication comes before validation: an invalid body without a token is still a 401.
    let got = app
        .call(Method::POST, "/v1/pools", None, Some(json!({"bogus": 1})))
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);

    // Viewers and requesters read; only admins change pools.
    for token in [VIEWER_TOKEN, REQUESTER_TOKEN] {
        let (status, _) = app.call(Method::GET, "/v1/pools", Some(token), None).await;
        assert_eq!(status, StatusCode::OK);
        let got = app
            .call(
                Method::POST,
                "/v1/pools/maya/scale",
                Some(token),
                Some(json!({"target": 2})),
            )
            .await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        let got = app
            .call(Method::POST, "/v1/pools", Some(token), Some(spec("other")))
            .await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        let got = app
            .call(
                Method::PUT,
                "/v1/pools/maya",
                Some(token),
                Some(spec("maya")),
            )
            .await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        let got = app
            .call(Method::DELETE, "/v1/pools/maya", Some(token), None)
            .await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
    }
    // A token whose role this version does not know may do nothing.
    let got = app
        .call(Method::GET, "/v1/pools", Some(ODD_ROLE_TOKEN), None)
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);

    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
}

#[tokio::test]
async fn pool_lifecycle_create_read_replace_scale_plan_delete() {
    let app = spawn_app().await;

    // Create: 201, defaults filled in, a status, an event with the caller, a wake-up.
    let resp = app
        .http
        .post(format!("{}/v1/pools", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&spec("maya"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "/v1/pools/maya");
    let (status, pool) = read(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    assert_eq!(pool["name"], "maya");
    assert_eq!(pool["priority"], "regular");
    assert_eq!(pool["idle_timeout_seconds"], 900);
    assert_eq!(pool["target"], 0);
    assert_eq!(pool["deleting"], false);
    assert_eq!(pool["generation"], 1);
    assert_eq!(
        pool["status"],
        json!({"desired": 0, "running": 0, "creating": 0, "starting": 0, "stopped": 0,
               "deallocating": 0, "deallocated": 0, "deleting": 0, "failed": 0, "preempted": 0,
               "ready": 0, "registering": 0, "conditions": [], "observed_generation": null,
               "last_error": null, "batch": null})
    );
    assert!(app.woken().await);
    let events = app.store.events_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("pool.created", "admin")
    );
    assert_eq!(
        events[0].message,
        "pool created: regular nodes of Standard_NC4as_T4_v3 or Standard_NC8as_T4_v3, min 0 max 10 target 0"
    );
    assert_eq!(events[0].pool.as_deref(), Some("maya"));

    // Read it back, alone and in the list.
    let (status, got) = app
        .call(Method::GET, "/v1/pools/maya", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!((status, &got), (StatusCode::OK, &pool));
    app.create(spec("blender")).await;
    let (status, list) = app
        .call(Method::GET, "/v1/pools", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blender", "maya"]);
    assert!(list["pools"][1]["status"].is_object());

    // Replace: the new spec is stored, the generation moves, the event says what changed.
    let (status, got) = app
        .admin(
            Method::PUT,
            "/v1/pools/maya",
            Some(with(spec("maya"), "max", json!(20))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(
        (got["max"].clone(), got["generation"].clone()),
        (json!(20), json!(2))
    );
    assert!(app.woken().await);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "pool.replaced");
    assert!(last.message.contains("max 10 → 20"), "{}", last.message);

    // Scale: 202, the target is stored, the desired count follows.
    let (status, got) = app
        .admin(
            Method::POST,
            "/v1/pools/maya/scale",
            Some(json!({"target": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{got}");
    assert_eq!(got["target"], 3);
    assert_eq!(got["status"]["desired"], 3);
    assert!(app.woken().await);
    assert_eq!(
        app.store
            .get_pool("maya")
            .await
            .unwrap()
            .unwrap()
            .spec
            .target,
        3
    );
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.message.as_str()),
        ("pool.scaled", "target 0 → 3")
    );

    // Plan: from the store alone, three creates with reasons.
    let (status, plan) = app
        .call(Method::GET, "/v1/pools/maya/plan", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["desired"], 3);
    let actions = plan["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "{plan}");
    assert!(
        actions
            .iter()
            .all(|a| a["kind"] == "create" && a["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );
    assert!(plan["conditions"].is_array());
    // Planning is a read: no event, no wake-up.
    assert!(app.not_woken().await);

    // Delete: 202, marked deleting, wants nothing; the pool stays until the controller is done.
    let (status, got) = app.admin(Method::DELETE, "/v1/pools/maya", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{got}");
    assert_eq!(got["deleting"], true);
    assert_eq!(got["status"]["desired"], 0);
    assert!(app.woken().await);
    assert!(app.store.get_pool("maya").await.unwrap().unwrap().deleting);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "pool.deleting");
    // Deleting again is harmless.
    let (status, _) = app.admin(Method::DELETE, "/v1/pools/maya", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(app.woken().await);

    // A pool being deleted cannot be scaled or replaced.
    let before = app.snapshot().await;
    let got = app
        .admin(
            Method::POST,
            "/v1/pools/maya/scale",
            Some(json!({"target": 1})),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None);
    let got = app
        .admin(Method::PUT, "/v1/pools/maya", Some(spec("maya")))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None);
    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
}

#[tokio::test]
async fn pool_status_counts_nodes_and_shows_the_controllers_findings() {
    let app = spawn_app().await;
    app.create(with(spec("maya"), "target", json!(4))).await;
    app.add_vm("maya-00001", "maya", NodeState::Running).await;
    app.add_vm("maya-00002", "maya", NodeState::Running).await;
    app.add_vm("maya-00003", "maya", NodeState::Deallocated)
        .await;
    app.add_vm("maya-00004", "maya", NodeState::Failed).await;
    app.add_vm("maya-00005", "maya", NodeState::Missing).await;
    app.add_vm("maya-00006", "maya", NodeState::Stopped).await;
    app.store
        .put_task_json(&TaskKey::Pool("maya".into()), &json!({"desired": 4, "active": 2, "actions": [], "observed_generation": 1,
                                              "conditions": [{"type": "Blocked", "message": "InvalidResourceReference: no subnet", "since": "2024-01-01T00:00:00Z"},
                                                             "NoCapacity: Standard_NC4as_T4_v3 until later"]}))
        .await
        .unwrap();
    app.store
        .put_task_json(&TaskKey::PoolError("maya".into()), &json!({"code": "AllocationFailed", "message": "no capacity", "at": "2024-01-01T00:00:00Z"}))
        .await
        .unwrap();
    let (status, pool) = app
        .call(Method::GET, "/v1/pools/maya", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        pool["status"],
        json!({"desired": 4, "running": 2, "creating": 0, "starting": 0, "stopped": 1,
               "deallocating": 0, "deallocated": 1, "deleting": 0, "failed": 1, "preempted": 0,
               "ready": 2, "registering": 0,
               // Objects as the controller writes them; a string from an older status is split.
               "conditions": [{"type": "Blocked", "message": "InvalidResourceReference: no subnet", "since": "2024-01-01T00:00:00Z"},
                              {"type": "NoCapacity", "message": "Standard_NC4as_T4_v3 until later", "since": null}],
               "observed_generation": 1,
               "last_error": {"code": "AllocationFailed", "message": "no capacity", "at": "2024-01-01T00:00:00Z"},
               "batch": null})
    );
}

#[tokio::test]
async fn nodes_are_listed_per_pool() {
    let app = spawn_app().await;
    app.create(spec("maya")).await;
    app.create(spec("blender")).await;
    app.add_vm("maya-00001", "maya", NodeState::Running).await;
    app.add_vm("blender-00001", "blender", NodeState::Deallocated)
        .await;
    app.store
        .set_heartbeat("maya-00001", true, 1_700_000_000)
        .await
        .unwrap();
    app.store.set_draining("maya-00001", true).await.unwrap();
    app.store
        .set_node_ips(&[("maya-00001".into(), "10.0.0.4".into())])
        .await
        .unwrap();

    let (status, all) = app
        .call(Method::GET, "/v1/nodes", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["nodes"].as_array().unwrap().len(), 2);

    let (status, maya) = app
        .call(Method::GET, "/v1/nodes?pool=maya", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        maya,
        json!({"nodes": [{
            "name": "maya-00001", "pool": "maya", "state": "draining", "size": "Standard_NC4as_T4_v3",
            "priority": "regular", "busy": true, "draining": true,
            "last_heartbeat": "2023-11-14T22:13:20Z",
            "azure_id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/maya-00001",
            "registered_at": null, "node_seen_at": null, "private_ip": "10.0.0.4"
        }]})
    );
    let (_, blender) = app
        .call(
            Method::GET,
            "/v1/nodes?pool=blender",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(blender["nodes"][0]["state"], "deallocated");
    assert_eq!(blender["nodes"][0]["last_heartbeat"], Value::Null);
    assert_eq!(blender["nodes"][0]["private_ip"], Value::Null);

    // An empty filter means every pool.
    let (_, empty) = app
        .call(Method::GET, "/v1/nodes?pool=", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(empty, all);

    let before = app.snapshot().await;
    let got = app
        .call(
            Method::GET,
            "/v1/nodes?pool=houdini",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", Some("pool"));
    let got = app
        .call(
            Method::GET,
            "/v1/nodes?pool=maya&colour=blue",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_query", Some("colour"));
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn status_shows_the_controller_pools_and_tasks() {
    let app = spawn_app().await;
    app.create(spec("maya")).await;
    app.create(spec("blender")).await;
    app.store
        .put_task_json(
            &TaskKey::Pool("maya".into()),
            &json!({"desired": 0, "conditions": []}),
        )
        .await
        .unwrap();
    app.store
        .put_task_json(&TaskKey::Reconciler, &json!({"number": 7, "errors": []}))
        .await
        .unwrap();

    let (status, got) = app
        .call(Method::GET, "/v1/status", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(
        got["controller"],
        json!({"reconciler": {"number": 7}, "governor": {"writes": 200}})
    );
    assert_eq!(
        got["pools"],
        json!({"blender": null, "maya": {"desired": 0, "conditions": []}})
    );
    let tasks = got["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{got}");
    assert_eq!(tasks[0]["name"], "reconciler");
    assert_eq!(tasks[0]["status"], json!({"number": 7, "errors": []}));
    assert!(
        tasks[0]["updated_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[tokio::test]
async fn bad_pool_specs_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.create(spec("maya")).await;
    let before = app.snapshot().await;

    let mut no_image = spec("nopic");
    no_image.as_object_mut().unwrap().remove("image");
    let cases: Vec<(&str, Value, StatusCode, &str, Option<&str>)> = vec![
        (
            "upper-case name",
            spec("Maya"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("name"),
        ),
        (
            "name too long",
            spec("abcdefghijklmnopqrstu"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("name"),
        ),
        (
            "name with underscore",
            spec("maya_spot"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("name"),
        ),
        (
            "min above max",
            with(with(spec("a"), "min", json!(5)), "max", json!(2)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("min"),
        ),
        (
            "target above max",
            with(spec("a"), "target", json!(11)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("target"),
        ),
        (
            "target below min",
            with(with(spec("a"), "min", json!(2)), "target", json!(1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("target"),
        ),
        (
            "target above a max of zero",
            with(with(spec("a"), "max", json!(0)), "target", json!(1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("target"),
        ),
        (
            "negative max",
            with(spec("a"), "max", json!(-1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("max"),
        ),
        (
            "unknown size",
            with(spec("a"), "vm_sizes", json!(["Standard_Imaginary_v9"])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("vm_sizes"),
        ),
        (
            "no sizes",
            with(spec("a"), "vm_sizes", json!([])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("vm_sizes"),
        ),
        (
            "unknown field",
            with(spec("a"), "colour", json!("blue")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("colour"),
        ),
        (
            "unknown nested field",
            with(spec("a"), "spot", json!({"bid": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("spot.bid"),
        ),
        (
            "missing field",
            no_image,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("image"),
        ),
        (
            "bad enum",
            with(spec("a"), "priority", json!("cheap")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("priority"),
        ),
        (
            "bad image",
            with(spec("a"), "image", json!("ubuntu")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("image"),
        ),
        (
            "reserved tag",
            with(spec("a"), "tags", json!({"renderburst-pool": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("tags.renderburst-pool"),
        ),
        (
            "not an object",
            json!([1, 2]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("body"),
        ),
        (
            "duplicate",
            spec("maya"),
            StatusCode::CONFLICT,
            "conflict",
            Some("name"),
        ),
        (
            "batch pool with two sizes",
            with(
                batch_spec("b"),
                "vm_sizes",
                json!(["Standard_D4s_v5", "Standard_D8s_v5"]),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("vm_sizes"),
        ),
        (
            "batch pool without its section",
            with(batch_spec("b"), "batch", Value::Null),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("batch"),
        ),
        (
            "batch pool asking for application licenses",
            {
                let mut b = batch_spec("b");
                b["batch"]["applicationLicenses"] = json!(["maya"]);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("batch.application_licenses"),
        ),
        (
            "batch pool with an unknown batch field",
            {
                let mut b = batch_spec("b");
                b["batch"]["formula"] = json!("$TargetDedicatedNodes = 1");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("batch.formula"),
        ),
    ];
    for (what, body, status, code, field) in cases {
        let got = app.admin(Method::POST, "/v1/pools", Some(body)).await;
        assert_error(&got, status, code, field);
        assert_eq!(app.snapshot().await, before, "{what} changed the store");
        assert!(app.not_woken().await, "{what} woke the controller");
    }

    // Malformed JSON, wrong or missing content type, oversize body.
    let got = app
        .raw(
            Method::POST,
            "/v1/pools",
            Some("application/json"),
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json", None);
    let got = app
        .raw(
            Method::POST,
            "/v1/pools",
            Some("text/plain"),
            spec("a").to_string().into_bytes(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_content_type", None);
    let got = app
        .raw(
            Method::POST,
            "/v1/pools",
            None,
            spec("a").to_string().into_bytes(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_content_type", None);
    let huge = with(spec("a"), "tags", json!({"note": "x".repeat(70 * 1024)}));
    let got = app
        .raw(
            Method::POST,
            "/v1/pools",
            Some("application/json"),
            huge.to_string().into_bytes(),
        )
        .await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None);

    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);

    // The retirement is explained, with the alternative.
    let mut b = batch_spec("b");
    b["batch"]["applicationLicenses"] = json!(["maya"]);
    let got = app.admin(Method::POST, "/v1/pools", Some(b)).await;
    let message = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("retired") && message.contains("2024") && message.contains("licenses"),
        "{message}"
    );
    let got = app
        .admin(
            Method::POST,
            "/v1/pools",
            Some(with(
                batch_spec("b"),
                "vm_sizes",
                json!(["Standard_D4s_v5", "Standard_D8s_v5"]),
            )),
        )
        .await;
    let message = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("another pool"), "{message}");
    // A valid one is accepted, and shows its batch section back.
    let got = app
        .admin(Method::POST, "/v1/pools", Some(batch_spec("b")))
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["batch"]["account"], "rbfarm");
    assert_eq!(got.1["batch"]["lifecycle"], "persistent");
    assert_eq!(got.1["licenses"][0]["variable"], "ADSKFLEX_LICENSE_FILE");

    // What Batch fixes at creation cannot be replaced; what renderburst decides can.
    let before = app.snapshot().await;
    for (field, body) in [
        ("mode", with(spec("b"), "name", json!("b"))),
        ("batch.account", {
            let mut b = batch_spec("b");
            b["batch"]["account"] = json!("otherfarm");
            b
        }),
        (
            "vm_sizes",
            with(batch_spec("b"), "vm_sizes", json!(["Standard_D8s_v5"])),
        ),
    ] {
        let got = app.admin(Method::PUT, "/v1/pools/b", Some(body)).await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some(field),
        );
        assert_eq!(app.snapshot().await, before, "{field} changed the store");
    }
    let got = app
        .admin(
            Method::PUT,
            "/v1/pools/b",
            Some(with(batch_spec("b"), "max", json!(8))),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
}

fn batch_spec(name: &str) -> Value {
    json!({"name": name, "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "priority": "spot",
           "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 10,
           "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04",
                     "spot_fallback_to_dedicated": true},
           "licenses": [{"name": "arnold", "variable": "ADSKFLEX_LICENSE_FILE", "server": "27000@lic"}]})
}

#[tokio::test]
async fn bad_replacements_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.create(spec("maya")).await;
    let before = app.snapshot().await;

    let got = app
        .admin(Method::PUT, "/v1/pools/maya", Some(spec("blender")))
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("name"),
    );
    let got = app
        .admin(
            Method::PUT,
            "/v1/pools/maya",
            Some(with(spec("maya"), "min", json!(11))),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("min"),
    );
    let got = app
        .admin(
            Method::PUT,
            "/v1/pools/maya",
            Some(with(spec("maya"), "vm_sizes", json!(["Standard_Nope"]))),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("vm_sizes"),
    );
    let got = app
        .admin(
            Method::PUT,
            "/v1/pools/maya",
            Some(with(spec("maya"), "extra", json!(1))),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("extra"),
    );
    let got = app
        .admin(Method::PUT, "/v1/pools/houdini", Some(spec("houdini")))
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app
        .admin(Method::PUT, "/v1/pools/Maya", Some(spec("Maya")))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    let got = app
        .raw(
            Method::PUT,
            "/v1/pools/maya",
            Some("application/json"),
            b"not json".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json", None);
    let huge = with(spec("maya"), "image", json!("x".repeat(65 * 1024)));
    let got = app
        .raw(
            Method::PUT,
            "/v1/pools/maya",
            Some("application/json"),
            huge.to_string().into_bytes(),
        )
        .await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None);

    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
}

#[tokio::test]
async fn bad_scales_are_refused_naming_target_and_change_nothing() {
    let app = spawn_app().await;
    app.create(with(
        with(spec("maya"), "min", json!(2)),
        "target",
        json!(2),
    ))
    .await;
    let before = app.snapshot().await;

    for (body, code, field) in [
        (json!({"target": 11}), "invalid_target", "target"),
        (json!({"target": 1}), "invalid_target", "target"),
        (json!({"target": -1}), "invalid_target", "target"),
        (json!({"target": 2.5}), "invalid_target", "target"),
        (json!({"target": "3"}), "invalid_target", "target"),
        (
            json!({"target": 5_000_000_000_u64}),
            "invalid_target",
            "target",
        ),
        (json!({}), "invalid_target", "target"),
        (
            json!({"target": 3, "force": true}),
            "invalid_target",
            "force",
        ),
        (json!(3), "invalid_target", "body"),
    ] {
        let got = app
            .admin(Method::POST, "/v1/pools/maya/scale", Some(body.clone()))
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, code, Some(field));
        assert_eq!(app.snapshot().await, before, "{body} changed the store");
    }
    let got = app
        .admin(
            Method::POST,
            "/v1/pools/houdini/scale",
            Some(json!({"target": 1})),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app
        .admin(
            Method::POST,
            "/v1/pools/-bad/scale",
            Some(json!({"target": 1})),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    let got = app
        .raw(
            Method::POST,
            "/v1/pools/maya/scale",
            Some("application/json"),
            b"{target: 3}".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json", None);
    let got = app
        .raw(
            Method::POST,
            "/v1/pools/maya/scale",
            Some("text/plain"),
            b"{\"target\": 3}".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_content_type", None);
    let huge = format!("{{\"target\": 3, \"pad\": \"{}\"}}", "x".repeat(65 * 1024));
    let got = app
        .raw(
            Method::POST,
            "/v1/pools/maya/scale",
            Some("application/json"),
            huge.into_bytes(),
        )
        .await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None);

    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
}

#[tokio::test]
async fn bad_names_missing_pools_unknown_routes_and_wrong_methods() {
    let app = spawn_app().await;
    app.create(spec("maya")).await;
    let before = app.snapshot().await;

    for path in [
        "/v1/pools/Maya",
        "/v1/pools/9lives",
        "/v1/pools/maya-",
        "/v1/pools/Maya/plan",
    ] {
        let got = app.admin(Method::GET, path, None).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    }
    let got = app.admin(Method::DELETE, "/v1/pools/Maya", None).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    for (method, path) in [
        (Method::GET, "/v1/pools/houdini"),
        (Method::GET, "/v1/pools/houdini/plan"),
        (Method::DELETE, "/v1/pools/houdini"),
    ] {
        let got = app.admin(method, path, None).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    }

    // Unknown routes: 404 JSON, with or without a token.
    for path in ["/v1/nope", "/v2/pools", "/", "/v1/pools/maya/extra"] {
        let got = app.call(Method::GET, path, None, None).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    }

    // Wrong methods: 405 JSON with an Allow header.
    for (method, path) in [
        (Method::PATCH, "/v1/pools/maya"),
        (Method::DELETE, "/v1/pools"),
        (Method::GET, "/v1/pools/maya/scale"),
        (Method::POST, "/v1/pools/maya/plan"),
        (Method::POST, "/v1/nodes"),
        (Method::PUT, "/v1/status"),
        (Method::POST, "/healthz"),
    ] {
        let resp = app
            .http
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.headers().contains_key("allow"), "{method} {path}");
        assert_error(
            &read(resp).await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        );
    }

    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
}
