//! The render managers' and admins' surface (issue 5): node requests, heartbeats and drain,
//! tokens and roles, events. The real router on 127.0.0.1:0, a real store, reqwest.
//!
//! Every bad request is checked for its 4xx JSON error naming the field, an unchanged store
//! and no wake-up of the controller.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use rb_core::NodeState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn pool_spec(name: &str, max: u32) -> Value {
    with(
        with(spec(name), "max", json!(max)),
        "idle_timeout_seconds",
        json!(0),
    )
}

fn schedule_spec(name: &str, pool: &str) -> rb_core::ScheduleSpec {
    rb_core::ScheduleSpec::from_json(
        json!({"name": name, "pool": pool, "cron": "30 7 * * *", "timezone": "UTC", "set": {"max": 5}})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

/// The smallest role a route needs (the documented role table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Needs {
    Nothing,
    Viewer,
    Requester,
    Admin,
    /// Requester or admin, or the node's own token (heartbeats).
    NodeOrRequester,
    /// Admin, or the node's own token (registration).
    NodeOrAdmin,
    /// The enrollment token of the node's Batch pool, and nothing else.
    Enroll,
}

/// Who calls, in the role matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    BadToken,
    Viewer,
    Requester,
    Admin,
    /// The fixture node's own token.
    OwnNode,
    /// The token of another node of the same pool.
    OtherNode,
    /// The enrollment token of the fixture's pool.
    OwnEnroller,
    /// The enrollment token of another pool.
    OtherEnroller,
}

/// The documented role table: who may call a route that needs `needs`.
fn allowed(needs: Needs, who: Who) -> bool {
    use Needs as N;
    match (needs, who) {
        (N::Nothing, _) => true,
        (N::Enroll, w) => w == Who::OwnEnroller,
        (_, Who::NoToken | Who::BadToken | Who::OtherNode) => false,
        (_, Who::OwnEnroller | Who::OtherEnroller) => false,
        (N::NodeOrRequester, w) => matches!(w, Who::Requester | Who::Admin | Who::OwnNode),
        (N::NodeOrAdmin, w) => matches!(w, Who::Admin | Who::OwnNode),
        (_, Who::OwnNode) => false,
        (N::Viewer, _) => true,
        (N::Requester, w) => matches!(w, Who::Requester | Who::Admin),
        (N::Admin, w) => w == Who::Admin,
    }
}

/// What each cell of the matrix gets to work on, fresh, so that only auth decides.
struct Fixture {
    pool: String,
    node: String,
    /// A node of the pool without a token yet (enrollment).
    fresh: String,
    request: String,
    token: String,
    schedule: String,
    n: usize,
}

type Call = (Method, String, Option<Value>);

/// Every route the API serves, with a valid call and its success status.
#[allow(clippy::type_complexity)]
fn routes() -> Vec<(
    &'static str,
    Needs,
    StatusCode,
    Box<dyn Fn(&Fixture) -> Call>,
)> {
    use Needs::*;
    vec![
        (
            "GET /healthz",
            Nothing,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/healthz".into(), None)),
        ),
        (
            "GET /readyz",
            Nothing,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/readyz".into(), None)),
        ),
        // Open on loopback, where these tests run; elsewhere they need a token
        // (`metrics_and_openapi_need_a_token_off_loopback`).
        (
            "GET /metrics",
            Nothing,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/metrics".into(), None)),
        ),
        (
            "GET /openapi.json",
            Nothing,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/openapi.json".into(), None)),
        ),
        (
            "GET /v1/pools",
            Viewer,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/v1/pools".into(), None)),
        ),
        (
            "POST /v1/pools",
            Admin,
            StatusCode::CREATED,
            Box::new(|f| {
                (
                    Method::POST,
                    "/v1/pools".into(),
                    Some(pool_spec(&format!("new{}", f.n), 20)),
                )
            }),
        ),
        (
            "GET /v1/pools/{name}",
            Viewer,
            StatusCode::OK,
            Box::new(|f| (Method::GET, format!("/v1/pools/{}", f.pool), None)),
        ),
        (
            "PUT /v1/pools/{name}",
            Admin,
            StatusCode::OK,
            Box::new(|f| {
                (
                    Method::PUT,
                    format!("/v1/pools/{}", f.pool),
                    Some(pool_spec(&f.pool, 12)),
                )
            }),
        ),
        (
            "DELETE /v1/pools/{name}",
            Admin,
            StatusCode::ACCEPTED,
            Box::new(|f| (Method::DELETE, format!("/v1/pools/{}", f.pool), None)),
        ),
        (
            "POST /v1/pools/{name}/scale",
            Admin,
            StatusCode::ACCEPTED,
            Box::new(|f| {
                (
                    Method::POST,
                    format!("/v1/pools/{}/scale", f.pool),
                    Some(json!({"target": 1})),
                )
            }),
        ),
        (
            "GET /v1/pools/{name}/plan",
            Viewer,
            StatusCode::OK,
            Box::new(|f| (Method::GET, format!("/v1/pools/{}/plan", f.pool), None)),
        ),
        (
            "POST /v1/pools/{name}/requests",
            Requester,
            StatusCode::CREATED,
            Box::new(|f| {
                (
                    Method::POST,
                    format!("/v1/pools/{}/requests", f.pool),
                    Some(json!({"count": 2, "job": "shot-010"})),
                )
            }),
        ),
        (
            "GET /v1/requests",
            Viewer,
            StatusCode::OK,
            Box::new(|f| {
                (
                    Method::GET,
                    format!("/v1/requests?pool={}&all=true", f.pool),
                    None,
                )
            }),
        ),
        (
            "DELETE /v1/requests/{id}",
            Requester,
            StatusCode::OK,
            Box::new(|f| (Method::DELETE, format!("/v1/requests/{}", f.request), None)),
        ),
        (
            "GET /v1/nodes",
            Viewer,
            StatusCode::OK,
            Box::new(|f| (Method::GET, format!("/v1/nodes?pool={}", f.pool), None)),
        ),
        (
            "GET /v1/pools/{name}/bootstrap",
            Admin,
            StatusCode::OK,
            Box::new(|f| (Method::GET, format!("/v1/pools/{}/bootstrap", f.pool), None)),
        ),
        (
            "POST /v1/nodes/{name}/register",
            NodeOrAdmin,
            StatusCode::OK,
            Box::new(|f| {
                (
                    Method::POST,
                    format!("/v1/nodes/{}/register", f.node),
                    Some(json!({"hostname": f.node})),
                )
            }),
        ),
        (
            "POST /v1/nodes/{name}/enroll",
            Enroll,
            StatusCode::OK,
            Box::new(|f| (Method::POST, format!("/v1/nodes/{}/enroll", f.fresh), None)),
        ),
        (
            "PUT /v1/nodes/{name}/heartbeat",
            NodeOrRequester,
            StatusCode::OK,
            Box::new(|f| {
                (
                    Method::PUT,
                    format!("/v1/nodes/{}/heartbeat", f.node),
                    Some(json!({"busy": true})),
                )
            }),
        ),
        (
            "POST /v1/nodes/{name}/drain",
            Admin,
            StatusCode::ACCEPTED,
            Box::new(|f| (Method::POST, format!("/v1/nodes/{}/drain", f.node), None)),
        ),
        (
            "GET /v1/offerings/unavailable",
            Viewer,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/v1/offerings/unavailable".into(), None)),
        ),
        (
            "DELETE /v1/offerings/unavailable",
            Admin,
            StatusCode::OK,
            Box::new(|_| (Method::DELETE, "/v1/offerings/unavailable".into(), None)),
        ),
        (
            "DELETE /v1/nodes/{name}/drain",
            Admin,
            StatusCode::OK,
            Box::new(|f| (Method::DELETE, format!("/v1/nodes/{}/drain", f.node), None)),
        ),
        (
            "GET /v1/tokens",
            Admin,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/v1/tokens".into(), None)),
        ),
        (
            "POST /v1/tokens",
            Admin,
            StatusCode::CREATED,
            Box::new(|f| {
                (
                    Method::POST,
                    "/v1/tokens".into(),
                    Some(json!({"name": format!("new-{}", f.n), "role": "viewer"})),
                )
            }),
        ),
        (
            "DELETE /v1/tokens/{name}",
            Admin,
            StatusCode::OK,
            Box::new(|f| (Method::DELETE, format!("/v1/tokens/{}", f.token), None)),
        ),
        (
            "GET /v1/schedules",
            Viewer,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/v1/schedules".into(), None)),
        ),
        (
            "POST /v1/schedules",
            Admin,
            StatusCode::CREATED,
            Box::new(|f| {
                (
                    Method::POST,
                    "/v1/schedules".into(),
                    Some(
                        json!({"name": format!("new-{}", f.n), "pool": f.pool, "cron": "0 20 * * MON-FRI",
                                "timezone": "Europe/London", "set": {"max": 0}}),
                    ),
                )
            }),
        ),
        (
            "GET /v1/schedules/{name}",
            Viewer,
            StatusCode::OK,
            Box::new(|f| (Method::GET, format!("/v1/schedules/{}", f.schedule), None)),
        ),
        (
            "DELETE /v1/schedules/{name}",
            Admin,
            StatusCode::OK,
            Box::new(|f| {
                (
                    Method::DELETE,
                    format!("/v1/schedules/{}", f.schedule),
                    None,
                )
            }),
        ),
        (
            "GET /v1/events",
            Viewer,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/v1/events?after=0&limit=10".into(), None)),
        ),
        (
            "GET /v1/status",
            Viewer,
            StatusCode::OK,
            Box::new(|_| (Method::GET, "/v1/status".into(), None)),
        ),
    ]
}

#[tokio::test]
async fn role_matrix_every_route_by_every_kind_of_caller() {
    let app = spawn_app().await;
    app.ready.send_replace(true);
    let callers = [
        Who::NoToken,
        Who::BadToken,
        Who::Viewer,
        Who::Requester,
        Who::Admin,
        Who::OwnNode,
        Who::OtherNode,
        Who::OwnEnroller,
        Who::OtherEnroller,
    ];
    let mut n = 0;
    let mut bad_peer = 0u8;
    for (route, needs, success, call) in routes() {
        for who in callers {
            n += 1;
            // A fresh pool, node, request and token for every cell.
            let fx = Fixture {
                pool: format!("m{n}"),
                node: format!("m{n}-00001"),
                fresh: format!("m{n}-00003"),
                request: String::new(),
                token: format!("victim-{n}"),
                schedule: format!("s{n}"),
                n,
            };
            // A bootstrap pool: its nodes have tokens of their own.
            let bootstrap_pool = with(pool_spec(&fx.pool, 20), "bootstrap", json!({}));
            app.store
                .create_pool(
                    &rb_core::PoolSpec::from_json(bootstrap_pool.to_string().as_bytes()).unwrap(),
                )
                .await
                .unwrap();
            app.add_vm(&fx.node, &fx.pool, NodeState::Running).await;
            let other = format!("m{n}-00002");
            app.add_vm(&other, &fx.pool, NodeState::Running).await;
            let own_token = format!("rbn_own{n}");
            let other_token = format!("rbn_other{n}");
            for (node, token) in [(&fx.node, &own_token), (&other, &other_token)] {
                app.store
                    .set_node_token(node, &api::sha256_hex(token), api_now())
                    .await
                    .unwrap();
            }
            app.add_vm(&fx.fresh, &fx.pool, NodeState::Running).await;
            app.store
                .set_enroll_until(&fx.fresh, api_now() + 600)
                .await
                .unwrap();
            // Enrollment tokens: this pool's, and a pool next door's.
            let own_enroller = format!("rbp_own{n}");
            let other_enroller = format!("rbp_other{n}");
            let next_door = format!("e{n}");
            app.store
                .create_pool(
                    &rb_core::PoolSpec::from_json(
                        with(pool_spec(&next_door, 2), "bootstrap", json!({}))
                            .to_string()
                            .as_bytes(),
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
            for (pool, token) in [(&fx.pool, &own_enroller), (&next_door, &other_enroller)] {
                app.store
                    .set_pool_enroll_token(pool, &api::sha256_hex(token), api_now())
                    .await
                    .unwrap();
            }
            let token = match who {
                Who::NoToken => None,
                Who::BadToken => Some("rb_not-a-token"),
                Who::Viewer => Some(VIEWER_TOKEN),
                Who::Requester => Some(REQUESTER_TOKEN),
                Who::Admin => Some(ADMIN_TOKEN),
                Who::OwnNode => Some(own_token.as_str()),
                Who::OtherNode => Some(other_token.as_str()),
                Who::OwnEnroller => Some(own_enroller.as_str()),
                Who::OtherEnroller => Some(other_enroller.as_str()),
            };
            // Made by the requester token: a requester releases only its own requests
            // (`requesters_see_and_release_only_their_own_requests`).
            let request = app
                .store
                .create_request(
                    &fx.pool,
                    1,
                    600,
                    "seed",
                    None,
                    "farm-manager",
                    Some(&api::sha256_hex(REQUESTER_TOKEN)),
                    api_now(),
                )
                .await
                .unwrap();
            app.store
                .insert_token(&fx.token, "viewer", &api::sha256_hex(&fx.token))
                .await
                .unwrap();
            app.store
                .create_schedule(&schedule_spec(&fx.schedule, &fx.pool))
                .await
                .unwrap();
            let fx = Fixture {
                request: request.id,
                ..fx
            };

            let (method, path, body) = call(&fx);
            let before = app.snapshot().await;
            let got = if who == Who::BadToken {
                // Each bad token from an address of its own: the throttle for bad tokens
                // (`bad_tokens_from_one_peer_are_slowed_and_counted`) must not decide here.
                bad_peer += 1;
                call_from(&app, [127, 0, 1, bad_peer], method, &path, token, body).await
            } else {
                app.call(method, &path, token, body).await
            };
            if allowed(needs, who) {
                assert_eq!(got.0, success, "{route} as {who:?}: {}", got.1);
            } else if matches!(who, Who::NoToken | Who::BadToken) {
                assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
                assert_eq!(
                    app.snapshot().await,
                    before,
                    "{route} as {who:?} changed something"
                );
            } else {
                assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
                assert_eq!(
                    app.snapshot().await,
                    before,
                    "{route} as {who:?} changed something"
                );
            }
        }
        // A token whose role this version does not know may do nothing but the open routes.
        if needs != Needs::Nothing {
            let fx = Fixture {
                pool: "m1".into(),
                node: "m1-00001".into(),
                fresh: "m1-00003".into(),
                request: uuid_like(),
                token: "victim-1".into(),
                schedule: "s1".into(),
                n: 0,
            };
            let (method, path, body) = call(&fx);
            let got = app.call(method, &path, Some(ODD_ROLE_TOKEN), body).await;
            assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        }
    }
}

/// The roles a `Needs` admits, as the document names them.
fn roles_for(needs: Needs) -> Vec<&'static str> {
    match needs {
        Needs::Nothing => vec![],
        Needs::Viewer => vec!["admin", "requester", "viewer"],
        Needs::Requester => vec!["admin", "requester"],
        Needs::Admin => vec!["admin"],
        Needs::NodeOrRequester => vec!["admin", "node", "requester"],
        Needs::NodeOrAdmin => vec!["admin", "node"],
        Needs::Enroll => vec!["enroll"],
    }
}

/// The document cannot drift from the router: its operations are exactly the routes of the
/// role-matrix table (which the matrix test proves are served, with these roles), each with
/// the table's roles as its security; and every documented operation is routed (no 404 from
/// the fallback, no 405).
#[tokio::test]
async fn openapi_lists_every_served_route_with_its_security() {
    let app = spawn_app().await;
    app.ready.send_replace(true);
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["error"]), "{error}");

    let mut documented = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert(format!("{} {path}", method.to_uppercase()), op.clone());
            }
        }
    }
    let table: std::collections::BTreeMap<String, Needs> = routes()
        .into_iter()
        .map(|(route, needs, _, _)| (route.to_string(), needs))
        .collect();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        table.keys().collect::<Vec<_>>(),
        "documented operations vs the served routes of the role-matrix table"
    );
    for (route, op) in &documented {
        let needs = table[route];
        let mut roles: Vec<&str> = op["x-roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{route}: no x-roles"))
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        roles.sort_unstable();
        assert_eq!(roles, roles_for(needs), "{route}: x-roles");
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{route}: no security"));
        let open = security.iter().any(|r| r == &json!({}));
        assert_eq!(open, needs == Needs::Nothing, "{route}: {security:?}");
        if needs != Needs::Nothing {
            let mut scopes: Vec<&str> = security
                .iter()
                .flat_map(|r| r["bearer"].as_array().unwrap())
                .map(|r| r.as_str().unwrap())
                .collect();
            scopes.sort_unstable();
            assert_eq!(scopes, roles_for(needs), "{route}: bearer scopes");
            assert!(op["responses"]["401"].is_object(), "{route}: no 401");
            assert!(op["responses"]["403"].is_object(), "{route}: no 403");
        }
        assert!(
            op["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{route}: no description"
        );
        assert_eq!(
            op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{route}: the error schema"
        );
        let success = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .any(|code| code.starts_with('2'));
        assert!(success, "{route}: no success response");

        // Routed: probe it with made-up parameters.
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", &uuid_like()).replace("{name}", "zz");
        let got = app
            .admin(Method::from_bytes(method.as_bytes()).unwrap(), &path, None)
            .await;
        let fallback = got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no such endpoint"));
        assert!(
            got.0 != StatusCode::METHOD_NOT_ALLOWED && !fallback,
            "{route} is documented but not served: {got:?}"
        );
    }
    for route in [
        "POST /v1/pools",
        "PUT /v1/pools/{name}",
        "POST /v1/pools/{name}/scale",
        "POST /v1/pools/{name}/requests",
        "PUT /v1/nodes/{name}/heartbeat",
        "POST /v1/nodes/{name}/register",
        "POST /v1/tokens",
        "POST /v1/schedules",
    ] {
        let body = &documented[route]["requestBody"]["content"]["application/json"]["schema"];
        assert!(body["$ref"].is_string(), "{route}: no request body");
    }
}

/// A call from another loopback address (Linux answers for all of 127.0.0.0/8).
async fn call_from(
    app: &App,
    from: [u8; 4],
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    let mut req = http.request(method, format!("{}{path}", app.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    read(req.send().await.unwrap()).await
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

fn api_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn desired(app: &App, pool: &str) -> u64 {
    let (status, body) = app
        .admin(Method::GET, &format!("/v1/pools/{pool}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["status"]["desired"].as_u64().unwrap()
}

#[tokio::test]
async fn node_requests_add_to_desired_until_released_or_expired() {
    let app = spawn_app().await;
    app.create(with(pool_spec("maya", 8), "target", json!(1)))
        .await;
    assert_eq!(desired(&app, "maya").await, 1);

    // Create: 201 with the lease; requester defaults to the token's name; ttl to an hour.
    let (status, r) = app
        .call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(REQUESTER_TOKEN),
            Some(json!({"count": 3, "job": "ep101-sq020"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert!(app.woken().await);
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(
        (
            r["pool"].clone(),
            r["count"].clone(),
            r["ttl_seconds"].clone(),
            r["requester"].clone(),
            r["job"].clone(),
            r["state"].clone()
        ),
        (
            json!("maya"),
            json!(3),
            json!(3600),
            json!("farm-manager"),
            json!("ep101-sq020"),
            json!("live")
        )
    );
    let created = time_of(&r["created_at"]);
    assert_eq!(time_of(&r["expires_at"]), created + 3600);
    assert_eq!(desired(&app, "maya").await, 3, "max(target 1, requests 3)");
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert_eq!(plan["desired"], 3, "the what-if plan counts requests too");

    // Another, with a chosen requester, a short ttl: they add up.
    let (status, short) = app
        .call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(ADMIN_TOKEN),
            Some(json!({"count": 2, "ttl_seconds": 1, "requester": "deadline-repo-2"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    assert!(app.woken().await);
    assert_eq!(short["requester"], "deadline-repo-2");
    assert_eq!(short["job"], Value::Null);
    let expires = time_of(&short["expires_at"]);
    assert_eq!(
        app.store
            .live_request_sum("maya", expires - 1)
            .await
            .unwrap(),
        5
    );
    // Expiry needs nobody: once now passes expires_at it stops counting.
    assert_eq!(
        app.store.live_request_sum("maya", expires).await.unwrap(),
        3
    );
    // The desired count follows live requests down once they have stayed lower for the
    // pool's scale-down stabilization window (300 s by default).
    let record = app.store.get_pool("maya").await.unwrap().unwrap();
    let window = record.spec.scale_down_stabilization_seconds as i64;
    assert_eq!(window, 300);
    assert_eq!(app.store.desired(&record, expires).await.unwrap(), 5);
    assert_eq!(
        app.store.desired(&record, expires + window).await.unwrap(),
        3
    );
    assert_eq!(
        app.store
            .desired(&record, created + 3600 + window)
            .await
            .unwrap(),
        1,
        "back to target"
    );

    // The events name the caller.
    let events = app.store.events_after(0, 100).await.unwrap();
    let ev: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        ev[1..],
        [
            ("request.created", "farm-manager"),
            ("request.created", "admin")
        ]
    );
    assert_eq!(events[1].data["id"], id.as_str());

    // List: the live ones by default, per pool or all; viewers may read.
    let (status, list) = app
        .call(
            Method::GET,
            "/v1/requests?pool=maya",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()));

    // Release: 200 with the released request, desired drops, again is harmless.
    let (status, rel) = app
        .call(
            Method::DELETE,
            &format!("/v1/requests/{id}"),
            Some(REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rel}");
    assert!(app.woken().await);
    assert_eq!(
        (rel["state"].clone(), rel["released_by"].clone()),
        (json!("released"), json!("farm-manager"))
    );
    assert!(rel["released_at"].is_string());
    assert!(app.store.live_request_sum("maya", api_now()).await.unwrap() <= 2);
    let (status, again) = app
        .call(
            Method::DELETE,
            &format!("/v1/requests/{}", id.to_uppercase()),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["released_by"], "farm-manager",
        "the first release stays"
    );
    assert!(app.woken().await);
    let (_, list) = app.admin(Method::GET, "/v1/requests", None).await;
    assert!(
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != id.as_str())
    );
    let (_, all) = app.admin(Method::GET, "/v1/requests?all=true", None).await;
    assert!(
        all["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["state"] == "released")
    );

    // A pool being deleted takes no requests: 409; its desired is 0.
    app.admin(Method::DELETE, "/v1/pools/maya", None).await;
    assert!(app.woken().await);
    let got = app
        .call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(REQUESTER_TOKEN),
            Some(json!({"count": 1})),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None);
    assert_eq!(desired(&app, "maya").await, 0);
}

fn time_of(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

#[tokio::test]
async fn bad_node_requests_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.create(pool_spec("maya", 8)).await;
    let (_, live) = app
        .call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(REQUESTER_TOKEN),
            Some(json!({"count": 1})),
        )
        .await;
    assert!(app.woken().await);
    let live = live["id"].as_str().unwrap().to_string();
    let before = app.snapshot().await;

    let post = |body: Value| {
        app.call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(REQUESTER_TOKEN),
            Some(body),
        )
    };
    for (body, field) in [
        (json!({}), "count"),
        (json!({"count": 0}), "count"),
        (json!({"count": 9}), "count"),
        (json!({"count": -2}), "count"),
        (json!({"count": "2"}), "count"),
        (json!({"count": 5_000_000_000u64}), "count"),
        (json!({"count": 1, "ttl_seconds": 0}), "ttl_seconds"),
        (json!({"count": 1, "ttl_seconds": 604_801}), "ttl_seconds"),
        (json!({"count": 1, "ttl_seconds": 1.5}), "ttl_seconds"),
        (json!({"count": 1, "requester": ""}), "requester"),
        (
            json!({"count": 1, "requester": "x".repeat(201)}),
            "requester",
        ),
        (json!({"count": 1, "job": "x".repeat(201)}), "job"),
        (json!({"count": 1, "job": ["a"]}), "job"),
        (json!({"count": 1, "pool": "other"}), "pool"),
        (json!([{"count": 1}]), "body"),
    ] {
        let got = post(body.clone()).await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some(field),
        );
    }
    let got = app
        .call(
            Method::POST,
            "/v1/pools/nosuch/requests",
            Some(REQUESTER_TOKEN),
            Some(json!({"count": 1})),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app
        .call(
            Method::POST,
            "/v1/pools/Bad_Name/requests",
            Some(REQUESTER_TOKEN),
            Some(json!({"count": 1})),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    let got = app
        .raw(
            Method::POST,
            "/v1/pools/maya/requests",
            Some("text/plain"),
            b"{\"count\":1}".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_content_type", None);
    let got = app
        .raw(
            Method::POST,
            "/v1/pools/maya/requests",
            Some("application/json"),
            b"{\"count\":".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json", None);

    // Release: unknown id 404, malformed id 400 naming it.
    let got = app
        .call(
            Method::DELETE,
            &format!("/v1/requests/{}", uuid_like()),
            Some(REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app
        .call(
            Method::DELETE,
            "/v1/requests/not-a-uuid",
            Some(REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_id", Some("id"));

    // List: bad parameters.
    let got = app.admin(Method::GET, "/v1/requests?all=yes", None).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_query",
        Some("all"),
    );
    let got = app
        .admin(Method::GET, "/v1/requests?pool=nosuch", None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", Some("pool"));
    let got = app.admin(Method::GET, "/v1/requests?color=red", None).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_query", Some("color"));

    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
    assert_eq!(
        app.store
            .list_requests(None, false, api_now())
            .await
            .unwrap()[0]
            .id,
        live
    );
}

#[derive(Clone, Copy)]
enum Act {
    Create(u32),
    ReleaseOldest,
    ReleaseAll,
    Nothing,
}

/// What requester `i` does at step `k`: the live sum goes 5, 20 (= max), far above max,
/// then down through the range below max, so both sides of the clamp are seen.
fn act(i: usize, k: usize) -> Act {
    match k {
        0 if i < 5 => Act::Create(1),
        1 if i < 15 => Act::Create(1),
        2 => Act::Create(1 + (i % 2) as u32),
        3 if i.is_multiple_of(2) => Act::ReleaseOldest,
        3 => Act::Create(3),
        4 => Act::ReleaseOldest,
        5 => Act::ReleaseAll,
        6 if i < 6 => Act::Create(2),
        7 if i < 2 => Act::ReleaseOldest,
        8 if i % 10 == 3 => Act::Create(1),
        _ => Act::Nothing,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requesters_never_lose_or_double_count_a_request() {
    const REQUESTERS: usize = 50;
    const STEPS: usize = 9;
    const MAX: u64 = 20;
    let app = Arc::new(spawn_app().await);
    // Counting is what is tested here: no stabilization window, desired is the live sum.
    let mut spec = pool_spec("maya", MAX as u32);
    spec["scale_down_stabilization_seconds"] = json!(0);
    app.create(spec).await;
    let live_sum = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let released = Arc::new(AtomicU64::new(0));
    let (saw_below, saw_clamped) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTERS));
    let mut tasks = Vec::new();
    for i in 0..REQUESTERS {
        let (app, live_sum, created, released, barrier) = (
            app.clone(),
            live_sum.clone(),
            created.clone(),
            released.clone(),
            barrier.clone(),
        );
        let (saw_below, saw_clamped) = (saw_below.clone(), saw_clamped.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine: Vec<(String, u64)> = Vec::new();
            let token = if i % 5 == 0 { ADMIN_TOKEN } else { REQUESTER_TOKEN };
            for k in 0..STEPS {
                // All requesters change the pool at once...
                let release = |id: String, count: u64| {
                    let app = app.clone();
                    let (live_sum, released) = (live_sum.clone(), released.clone());
                    async move {
                        let (status, body) = app.call(Method::DELETE, &format!("/v1/requests/{id}"), Some(token), None).await;
                        assert_eq!(status, StatusCode::OK, "{body}");
                        live_sum.fetch_sub(count, Ordering::SeqCst);
                        released.fetch_add(1, Ordering::SeqCst);
                    }
                };
                match act(i, k) {
                    Act::Create(count) => {
                        let body = json!({"count": count, "ttl_seconds": 600, "job": format!("job-{i}-{k}")});
                        let (status, r) = app.call(Method::POST, "/v1/pools/maya/requests", Some(token), Some(body)).await;
                        assert_eq!(status, StatusCode::CREATED, "{r}");
                        live_sum.fetch_add(u64::from(count), Ordering::SeqCst);
                        created.fetch_add(1, Ordering::SeqCst);
                        mine.push((r["id"].as_str().unwrap().to_string(), u64::from(count)));
                    }
                    Act::ReleaseOldest if !mine.is_empty() => {
                        let (id, count) = mine.remove(0);
                        release(id, count).await;
                    }
                    Act::ReleaseAll => {
                        for (id, count) in mine.drain(..) {
                            release(id, count).await;
                        }
                    }
                    _ => {}
                }
                barrier.wait().await;
                // ...then, with nothing in flight, every one of them reads the pool: desired
                // is the clamp of exactly the live sum.
                let sum = live_sum.load(Ordering::SeqCst);
                let (status, pool) = app.call(Method::GET, "/v1/pools/maya", Some(VIEWER_TOKEN), None).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(pool["status"]["desired"].as_u64().unwrap(), sum.min(MAX), "step {k}, live sum {sum}");
                if sum < MAX {
                    saw_below.store(true, Ordering::SeqCst);
                } else if sum > MAX {
                    saw_clamped.store(true, Ordering::SeqCst);
                }
                if i == 0 {
                    let (_, plan) = app.call(Method::GET, "/v1/pools/maya/plan", Some(VIEWER_TOKEN), None).await;
                    assert_eq!(plan["desired"].as_u64().unwrap(), sum.min(MAX), "step {k}");
                }
                barrier.wait().await;
            }
            mine.iter().map(|(_, c)| *c).sum::<u64>()
        }));
    }
    let mut still_mine = 0;
    for t in tasks {
        still_mine += t.await.unwrap();
    }
    assert!(saw_below.load(Ordering::SeqCst) && saw_clamped.load(Ordering::SeqCst));

    // The database against the ledger: every create is a row, every release marked, the
    // live rows are exactly created minus released.
    let now = api_now();
    let (created, released) = (
        created.load(Ordering::SeqCst),
        released.load(Ordering::SeqCst),
    );
    let live = app
        .store
        .list_requests(Some("maya"), false, now)
        .await
        .unwrap();
    let all = app
        .store
        .list_requests(Some("maya"), true, now)
        .await
        .unwrap();
    assert_eq!(all.len() as u64, created);
    assert_eq!(
        all.iter().filter(|r| r.released_at.is_some()).count() as u64,
        released
    );
    assert_eq!(live.len() as u64, created - released);
    let live_total: u64 = live.iter().map(|r| u64::from(r.count)).sum();
    assert_eq!(live_total, still_mine);
    assert_eq!(live_total, live_sum.load(Ordering::SeqCst));
    assert_eq!(
        app.store.live_request_sum("maya", now).await.unwrap(),
        live_total
    );
    // And one audit event per call.
    let events = app.store.events_after(0, 100_000).await.unwrap();
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count() as u64;
    assert_eq!(
        (count("request.created"), count("request.released")),
        (created, released)
    );
}

#[tokio::test]
async fn heartbeats_keep_busy_nodes_and_drain_removes_idle_ones() {
    let app = spawn_app().await;
    app.create(pool_spec("maya", 4)).await;
    app.add_vm("maya-00001", "maya", NodeState::Running).await;
    app.add_vm("maya-00002", "maya", NodeState::Running).await;
    let deallocations = |plan: &Value| -> Vec<String> {
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "deallocate")
            .map(|a| a["node"].as_str().unwrap().to_string())
            .collect()
    };
    // Target 0, idle timeout 0: both idle nodes would go.
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert_eq!(deallocations(&plan), ["maya-00002", "maya-00001"]);

    // Busy: 200 with the node, an event naming the caller, a wake-up; the plan keeps it.
    let (status, node) = app
        .call(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            Some(REQUESTER_TOKEN),
            Some(json!({"busy": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{node}");
    assert_eq!(
        (
            node["name"].clone(),
            node["busy"].clone(),
            node["state"].clone()
        ),
        (json!("maya-00001"), json!(true), json!("running"))
    );
    assert!(node["last_heartbeat"].is_string());
    assert!(app.woken().await);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (
            last.kind.as_str(),
            last.actor.as_str(),
            last.node.as_deref()
        ),
        ("node.busy", "farm-manager", Some("maya-00001"))
    );
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert_eq!(
        deallocations(&plan),
        ["maya-00002"],
        "a busy node is never removed"
    );

    // The same again: stored, but no wake-up and no event (heartbeats are frequent).
    let events = app.store.events_after(0, 100).await.unwrap().len();
    let (status, _) = app
        .call(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            Some(ADMIN_TOKEN),
            Some(json!({"busy": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(app.not_woken().await);
    assert_eq!(app.store.events_after(0, 100).await.unwrap().len(), events);

    // Idle: woken, and the plan lets it go.
    let (status, node) = app
        .call(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            Some(REQUESTER_TOKEN),
            Some(json!({"busy": false})),
        )
        .await;
    assert_eq!(
        (status, node["busy"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert!(app.woken().await);
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert_eq!(deallocations(&plan).len(), 2);

    // Drain (admin): 202, shown as draining, removed even when desired wants it.
    app.admin(
        Method::POST,
        "/v1/pools/maya/scale",
        Some(json!({"target": 2})),
    )
    .await;
    assert!(app.woken().await);
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert!(deallocations(&plan).is_empty());
    let (status, node) = app
        .admin(Method::POST, "/v1/nodes/maya-00002/drain", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{node}");
    assert_eq!(
        (node["state"].clone(), node["draining"].clone()),
        (json!("draining"), json!(true))
    );
    assert!(app.woken().await);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("node.drain", "admin")
    );
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert_eq!(deallocations(&plan), ["maya-00002"]);
    let (status, _) = app
        .admin(Method::POST, "/v1/nodes/maya-00002/drain", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "again is harmless");
    assert!(app.woken().await);

    // Undrain (admin): the node is kept again; a second time changes nothing.
    let (status, node) = app
        .admin(Method::DELETE, "/v1/nodes/maya-00002/drain", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{node}");
    assert_eq!(node["draining"], json!(false), "{node}");
    assert!(app.woken().await);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("node.undrain", "admin")
    );
    let (_, plan) = app.admin(Method::GET, "/v1/pools/maya/plan", None).await;
    assert!(deallocations(&plan).is_empty(), "{plan}");
    let before = app.snapshot().await;
    let (status, _) = app
        .admin(Method::DELETE, "/v1/nodes/maya-00002/drain", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
    let got = app
        .admin(Method::DELETE, "/v1/nodes/maya-09999/drain", None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);

    // Errors: each names its field and changes nothing.
    let before = app.snapshot().await;
    let beat = |path: &'static str, body: Value| {
        app.call(Method::PUT, path, Some(REQUESTER_TOKEN), Some(body))
    };
    for (body, field) in [
        (json!({}), "busy"),
        (json!({"busy": "yes"}), "busy"),
        (json!({"busy": 1}), "busy"),
        (json!({"busy": null}), "busy"),
        (json!({"busy": true, "frame": 12}), "frame"),
        (json!(true), "body"),
    ] {
        let got = beat("/v1/nodes/maya-00001/heartbeat", body).await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_heartbeat",
            Some(field),
        );
    }
    let got = beat("/v1/nodes/maya-09999/heartbeat", json!({"busy": true})).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = beat("/v1/nodes/-bad!/heartbeat", json!({"busy": true})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    let got = app
        .raw(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            None,
            b"{\"busy\":true}".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_content_type", None);
    let got = app
        .admin(Method::POST, "/v1/nodes/maya-09999/drain", None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app
        .admin(
            Method::POST,
            &format!("/v1/nodes/{}/drain", "a".repeat(129)),
            None,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    // A Batch node id (72 characters) is a well-formed name: unknown here, so 404.
    let batch_node = format!("tvmps_{}_d", "0123456789abcdef".repeat(4));
    let got = app
        .admin(Method::POST, &format!("/v1/nodes/{batch_node}/drain"), None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app
        .admin(Method::GET, "/v1/nodes/maya-00001/drain", None)
        .await;
    assert_error(
        &got,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);
}

#[tokio::test]
async fn tokens_are_created_shown_once_listed_without_secrets_and_revoked() {
    let app = spawn_app().await;
    app.create(pool_spec("maya", 4)).await;
    let (status, made) = app
        .admin(
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "deadline", "role": "requester"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    assert!(
        token.starts_with("rb_")
            && token.len() == 43
            && token[3..].chars().all(|c| c.is_ascii_alphanumeric()),
        "{token}"
    );
    assert_eq!(
        (made["name"].clone(), made["role"].clone()),
        (json!("deadline"), json!("requester"))
    );
    assert!(made["created_at"].is_string());
    // Stored as its hash only.
    let stored = app.store.list_tokens().await.unwrap();
    let row = stored.iter().find(|t| t.name == "deadline").unwrap();
    assert_eq!(row.token_hash, api::sha256_hex(&token));
    assert!(
        !app.snapshot().await.contains(&token),
        "the token itself is never stored"
    );
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("token.created", "admin")
    );
    assert!(!format!("{last:?}").contains(&token));

    // It works, with its role.
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(&token),
            Some(json!({"count": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let got = app
        .call(
            Method::POST,
            "/v1/pools/maya/scale",
            Some(&token),
            Some(json!({"target": 1})),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("request.created", "deadline")
    );
    // An admin token made through the API is an admin.
    let (_, ops) = app
        .admin(
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "ops.team_1", "role": "admin"})),
        )
        .await;
    let (status, _) = app
        .call(
            Method::GET,
            "/v1/tokens",
            Some(ops["token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Listed: names, roles, times; never a hash or a token.
    let (status, list) = app.admin(Method::GET, "/v1/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ci-viewer", "deadline", "farm-manager", "odd", "ops.team_1"]
    );
    for t in list["tokens"].as_array().unwrap() {
        let mut keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["created_at", "name", "role"]);
    }
    assert!(!list.to_string().contains(&row.token_hash));

    // Bad input: 4xx naming the field, nothing stored.
    let before = app.snapshot().await;
    for (body, status, code, field) in [
        (
            json!({"name": "deadline", "role": "viewer"}),
            StatusCode::CONFLICT,
            "conflict",
            "name",
        ),
        (
            json!({"name": "admin", "role": "admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "name",
        ),
        (
            json!({"name": "Deadline", "role": "viewer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "name",
        ),
        (
            json!({"name": "x".repeat(65), "role": "viewer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "name",
        ),
        (
            json!({"role": "viewer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "name",
        ),
        (
            json!({"name": "ci2", "role": "root"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "role",
        ),
        (
            json!({"name": "ci2"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "role",
        ),
        (
            json!({"name": "ci2", "role": "viewer", "token": "mine"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_spec",
            "token",
        ),
    ] {
        let got = app.admin(Method::POST, "/v1/tokens", Some(body)).await;
        assert_error(&got, status, code, Some(field));
    }
    let got = app.admin(Method::DELETE, "/v1/tokens/nosuch", None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = app.admin(Method::DELETE, "/v1/tokens/admin", None).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_token_spec",
        Some("name"),
    );
    let got = app.admin(Method::DELETE, "/v1/tokens/Bad!", None).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_name", Some("name"));
    assert_eq!(app.snapshot().await, before);

    // Revoke: 200 with what was revoked, the token stops working at once, again is 404.
    let (status, gone) = app.admin(Method::DELETE, "/v1/tokens/deadline", None).await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert_eq!(
        (gone["name"].clone(), gone["role"].clone()),
        (json!("deadline"), json!("requester"))
    );
    let got = app.call(Method::GET, "/v1/pools", Some(&token), None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("token.revoked", "admin")
    );
    let got = app.admin(Method::DELETE, "/v1/tokens/deadline", None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn events_page_with_after_and_limit() {
    let app = spawn_app().await;
    for name in ["a", "b", "c", "d", "e"] {
        app.create(pool_spec(name, 2)).await;
    }
    let (status, page) = app
        .call(Method::GET, "/v1/events?limit=2", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let first = &events[0];
    assert_eq!(
        (
            first["kind"].clone(),
            first["pool"].clone(),
            first["actor"].clone(),
            first["node"].clone()
        ),
        (
            json!("pool.created"),
            json!("a"),
            json!("admin"),
            Value::Null
        )
    );
    assert!(first["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(first["data"]["spec"].is_object());
    time_of(&first["at"]);
    assert_eq!(page["next_after"], events[1]["id"]);

    // Following next_after walks the log without gaps or repeats; at the end it stays put.
    let mut seen: Vec<String> = events
        .iter()
        .map(|e| e["pool"].as_str().unwrap().to_string())
        .collect();
    let mut after = page["next_after"].as_i64().unwrap();
    loop {
        let (_, page) = app
            .admin(
                Method::GET,
                &format!("/v1/events?after={after}&limit=2"),
                None,
            )
            .await;
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            assert_eq!(page["next_after"], after);
            break;
        }
        seen.extend(
            events
                .iter()
                .map(|e| e["pool"].as_str().unwrap().to_string()),
        );
        after = page["next_after"].as_i64().unwrap();
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let (_, all) = app.admin(Method::GET, "/v1/events", None).await;
    assert_eq!(
        all["events"].as_array().unwrap().len(),
        5,
        "default limit 100"
    );
    let (_, page) = app
        .admin(Method::GET, "/v1/events?limit=1000&after=0", None)
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 5);

    let before = app.snapshot().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        ("after=1.5", "after"),
        ("before=-1", "before"),
        ("since=3", "since"),
        ("since=yesterday", "since"),
        ("order=newest", "order"),
        ("pool=", "pool"),
    ] {
        let got = app
            .admin(Method::GET, &format!("/v1/events?{query}"), None)
            .await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            Some(field),
        );
    }
    let got = app.admin(Method::GET, "/v1/events?tail=3", None).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "bad_query", Some("tail"));
    assert_eq!(app.snapshot().await, before);
}

/// `/metrics` and `/openapi.json` are open to loopback peers only; from anywhere else they
/// need a valid token. The router is called in-process with the peer address it would get
/// from `into_make_service_with_connect_info` (no traffic leaves the process).
#[tokio::test]
async fn metrics_and_openapi_need_a_token_off_loopback() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    use tower::ServiceExt;

    let app = spawn_app().await;
    let state = app_state(app.store.clone(), app.wake.clone(), app.ready.subscribe());
    let router = api::router(state);
    let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let local6: SocketAddr = "[::1]:40000".parse().unwrap();
    for path in ["/metrics", "/openapi.json"] {
        for (peer, token, want) in [
            (Some(remote), None, StatusCode::UNAUTHORIZED),
            (
                Some(remote),
                Some("rb_not-a-token"),
                StatusCode::UNAUTHORIZED,
            ),
            (Some(remote), Some(ODD_ROLE_TOKEN), StatusCode::FORBIDDEN),
            (Some(remote), Some(VIEWER_TOKEN), StatusCode::OK),
            (Some(remote), Some(ADMIN_TOKEN), StatusCode::OK),
            (None, None, StatusCode::UNAUTHORIZED),
            (Some(local), None, StatusCode::OK),
            (Some(local6), Some("rb_not-a-token"), StatusCode::OK),
        ] {
            let mut request = axum::http::Request::get(path);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let mut request = request.body(axum::body::Body::empty()).unwrap();
            if let Some(peer) = peer {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(
                response.status().as_u16(),
                want.as_u16(),
                "{path} from {peer:?} with {token:?}"
            );
        }
    }
}

/// `/metrics`: pool gauges counted as the pool status counts them, open intents, the API's
/// latency by route template (never a raw path), and the binary's text appended.
#[tokio::test]
async fn metrics_show_pools_intents_latency_and_the_binarys_part() {
    let app = spawn_app().await;
    app.create(with(pool_spec("maya", 8), "target", json!(1)))
        .await;
    app.add_vm("maya-00001", "maya", NodeState::Running).await;
    app.add_vm("maya-00002", "maya", NodeState::Deallocated)
        .await;
    app.add_vm("maya-00003", "maya", NodeState::Creating).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/pools/maya/requests",
            Some(REQUESTER_TOKEN),
            Some(json!({"count": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.admin(Method::GET, "/v1/pools/maya", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.admin(Method::GET, "/v1/pools/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.admin(Method::GET, "/no/such/thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let response = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let (_, pool) = app.admin(Method::GET, "/v1/pools/maya", None).await;
    for line in [
        "renderburst_pool_desired_nodes{pool=\"maya\"} 3".to_string(),
        format!(
            "renderburst_pool_nodes{{pool=\"maya\",state=\"running\"}} {}",
            pool["status"]["running"]
        ),
        "renderburst_pool_nodes{pool=\"maya\",state=\"deallocated\"} 1".into(),
        "renderburst_pool_nodes{pool=\"maya\",state=\"creating\"} 1".into(),
        "renderburst_pool_nodes{pool=\"maya\",state=\"failed\"} 0".into(),
        "renderburst_pool_nodes{pool=\"maya\",state=\"preempted\"} 0".into(),
        "renderburst_open_intents 0".into(),
        "renderburst_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/pools/{name}\",status=\"2xx\"} 1".into(),
        "renderburst_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/pools/{name}\",status=\"4xx\"} 1".into(),
        "renderburst_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/pools/{name}/requests\",status=\"2xx\"} 1".into(),
        "renderburst_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"4xx\"} 1".into(),
        "# TYPE renderburst_http_request_duration_seconds histogram".into(),
        "renderburst_test_binary 7".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    for secret in ["maya-0000", "/v1/pools/maya", "/no/such", "farm-manager"] {
        assert!(!text.contains(secret), "{secret:?} in\n{text}");
    }
    // Every sample line is `name{labels} value` with a declared family.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
    }
}

/// A booting node registers and beats with its own token; that token can do nothing else,
/// and nothing to another node.
#[tokio::test]
async fn node_tokens_register_and_beat_their_own_node_only() {
    let app = spawn_app().await;
    app.ready.send_replace(true);
    let pool = with(pool_spec("maya", 5), "bootstrap", json!({}));
    assert_eq!(
        app.admin(Method::POST, "/v1/pools", Some(pool)).await.0,
        StatusCode::CREATED
    );
    app.add_vm("maya-00001", "maya", NodeState::Running).await;
    app.add_vm("maya-00002", "maya", NodeState::Running).await;
    let token = "rbn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    app.store
        .set_node_token("maya-00001", &api::sha256_hex(token), api_now())
        .await
        .unwrap();
    let _ = app.woken().await;

    // The pool counts the node as registering, not ready.
    let (_, pool) = app.admin(Method::GET, "/v1/pools/maya", None).await;
    assert_eq!(
        (&pool["status"]["ready"], &pool["status"]["registering"]),
        (&json!(0), &json!(2))
    );

    // Another node's path: 403, nothing changes.
    let before = app.snapshot().await;
    for (method, path, body) in [
        (Method::POST, "/v1/nodes/maya-00002/register", json!({})),
        (
            Method::PUT,
            "/v1/nodes/maya-00002/heartbeat",
            json!({"busy": true}),
        ),
    ] {
        let got = app.call(method, path, Some(token), Some(body)).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another node"),
            "{got:?}"
        );
    }
    // Any other route: 403 saying what a node token is for.
    for (method, path) in [
        (Method::GET, "/v1/pools"),
        (Method::GET, "/v1/nodes"),
        (Method::POST, "/v1/nodes/maya-00001/drain"),
        (Method::GET, "/v1/pools/maya/bootstrap"),
    ] {
        let got = app.call(method, path, Some(token), None).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only register its own node"),
            "{path}: {got:?}"
        );
    }
    assert_eq!(app.snapshot().await, before);
    assert!(app.not_woken().await);

    // Register: 200, an event naming the node as actor, and a wake-up; the pool counts it.
    let got = app
        .call(
            Method::POST,
            "/v1/nodes/maya-00001/register",
            Some(token),
            Some(json!({"hostname": "maya-00001"})),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    assert!(got.1["registered_at"].is_string(), "{got:?}");
    assert!(app.woken().await);
    let (_, events) = app.admin(Method::GET, "/v1/events?after=0", None).await;
    let registered: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "node.registered")
        .collect();
    assert_eq!(registered.len(), 1, "{events}");
    assert_eq!(registered[0]["actor"], "node:maya-00001");
    assert_eq!(registered[0]["data"]["hostname"], "maya-00001");
    assert!(!events.to_string().contains(token));
    let (_, pool) = app.admin(Method::GET, "/v1/pools/maya", None).await;
    assert_eq!(
        (&pool["status"]["ready"], &pool["status"]["registering"]),
        (&json!(1), &json!(1))
    );
    // Again (a reboot): no second event, no wake-up.
    let got = app
        .call(
            Method::POST,
            "/v1/nodes/maya-00001/register",
            Some(token),
            Some(json!({})),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK);
    assert!(app.not_woken().await);

    // Liveness heartbeats from the node leave `busy` to the render manager.
    app.call(
        Method::PUT,
        "/v1/nodes/maya-00001/heartbeat",
        Some(REQUESTER_TOKEN),
        Some(json!({"busy": true})),
    )
    .await;
    let got = app
        .call(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            Some(token),
            Some(json!({})),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    assert_eq!(got.1["busy"], true);
    assert!(got.1["node_seen_at"].is_string());
    // `{}` is only a node's liveness report: a requester must say busy or not.
    let got = app
        .call(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            Some(REQUESTER_TOKEN),
            Some(json!({})),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_heartbeat",
        Some("busy"),
    );
    // A bad registration body names the field.
    let got = app
        .call(
            Method::POST,
            "/v1/nodes/maya-00001/register",
            Some(token),
            Some(json!({"hostname": 5})),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_registration",
        Some("hostname"),
    );

    // The token dies with its VM.
    app.store.delete_vm("maya-00001").await.unwrap();
    let got = app
        .call(
            Method::PUT,
            "/v1/nodes/maya-00001/heartbeat",
            Some(token),
            Some(json!({})),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
}

#[tokio::test]
async fn the_bootstrap_preview_masks_secrets_and_the_token() {
    let app = spawn_app().await;
    app.ready.send_replace(true);
    let section = json!({
        "mounts": [{"kind": "smb", "source": "//filer/projects", "target": "/mnt/projects",
                    "username": "render", "password": {"secret": "unset"}}],
        "env": {"RLM_LICENSE": "5053@license01"},
        "render_client": {"command": "/opt/rr/bin/rrClient"}
    });
    let pool = with(pool_spec("maya", 5), "bootstrap", section);
    assert_eq!(
        app.admin(Method::POST, "/v1/pools", Some(pool)).await.0,
        StatusCode::CREATED
    );
    let (status, preview) = app
        .admin(Method::GET, "/v1/pools/maya/bootstrap", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["format"], "cloud-init");
    assert_eq!(preview["node"], "maya-00001");
    let script = preview["script"].as_str().unwrap();
    assert!(script.starts_with("#cloud-config\n"));
    assert!(
        script.contains("RENDERBURST_NODE_TOKEN='********'"),
        "{script}"
    );
    assert!(script.contains("password=********"));
    assert!(
        script.contains(
            "RENDERBURST_REGISTER_URL='http://10.0.0.4:7878/v1/nodes/maya-00001/register'"
        )
    );
    assert!(script.contains("10.0.0.4 renderburst"));
    assert!(script.contains("timezone: Europe/Berlin"));
    assert!(!script.contains("resolved"));
    assert_eq!(
        preview["unresolved_secrets"],
        json!(["bootstrap.mounts[0].password (unset)"])
    );
    assert!(preview["custom_data_bytes"].as_u64().unwrap() < 64 * 1024);

    // Without a section: 404 naming it. A bad section is refused when the pool is written.
    assert_eq!(
        app.admin(Method::POST, "/v1/pools", Some(pool_spec("plain", 5)))
            .await
            .0,
        StatusCode::CREATED
    );
    let got = app
        .admin(Method::GET, "/v1/pools/plain/bootstrap", None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", Some("bootstrap"));
    let bad = with(
        pool_spec("bad", 5),
        "bootstrap",
        json!({"mounts": [{"kind": "smb", "source": "filer", "target": "/mnt/p"}]}),
    );
    let got = app.admin(Method::POST, "/v1/pools", Some(bad)).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("bootstrap.mounts[0].source"),
    );
    let inline = with(
        pool_spec("inline", 5),
        "bootstrap",
        json!({"admin": {"username": "artist", "password": "hunter2"}}),
    );
    let got = app.admin(Method::POST, "/v1/pools", Some(inline)).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("bootstrap.admin.password"),
    );
}

fn batch_bootstrap_pool(name: &str, password: &str) -> Value {
    json!({
        "name": name, "mode": "batch", "vm_sizes": ["Standard_D4s_v5"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 4,
        "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04"},
        "licenses": [{"name": "nuke", "variable": "foundry_LICENSE", "server": "4101@lic"}],
        "bootstrap": {"mounts": [{"kind": "smb", "source": "//filer/projects", "target": "/mnt/p",
                                  "username": "render", "password": {"secret": password}}]}
    })
}

/// A Batch node trades its pool's enrollment token, once, for its own node token and its
/// script; an unknown node wakes the controller; a secret the daemon cannot resolve fails
/// the enrollment without spending it.
#[tokio::test]
async fn batch_nodes_enroll_once_with_their_pool_s_token() {
    let app = spawn_app().await;
    app.ready.send_replace(true);
    app.create(batch_bootstrap_pool("nuke", "smb_pw")).await;
    let pool_token = "rbp_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    app.store
        .set_pool_enroll_token("nuke", &api::sha256_hex(pool_token), api_now())
        .await
        .unwrap();
    let _ = app.woken().await;

    // Booted before the controller listed it: 404, and the controller is asked to look.
    let enroll = |node: &str| format!("/v1/nodes/{node}/enroll");
    let got = app
        .call(Method::POST, &enroll("tvmps_1"), Some(pool_token), None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    assert!(app.woken().await);

    // Listed by the controller, which gives each node its enrollment window.
    app.add_vm("tvmps_1", "nuke", NodeState::Running).await;
    app.add_vm("tvmps_2", "nuke", NodeState::Running).await;
    for node in ["tvmps_1", "tvmps_2"] {
        app.store
            .set_enroll_until(node, api_now() + 600)
            .await
            .unwrap();
    }
    let (status, script) = app
        .call(Method::POST, &enroll("tvmps_1"), Some(pool_token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{script}");
    let script = script.as_str().unwrap().to_string();
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains("password=resolved"), "{script}");
    assert!(script.contains("foundry_LICENSE"), "{script}");
    assert!(
        script.contains(
            r"RENDERBURST_REGISTER_URL='\''http://10.0.0.4:7878/v1/nodes/tvmps_1/register'\''"
        ),
        "{script}"
    );
    assert!(!script.contains(pool_token));
    let at = script.find(r"RENDERBURST_NODE_TOKEN='\''rbn_").unwrap()
        + r"RENDERBURST_NODE_TOKEN='\''".len();
    let node_token: String = script[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert_eq!(node_token.len(), 44, "{node_token}");

    // The node token registers its own node, and no other.
    let got = app
        .call(
            Method::POST,
            "/v1/nodes/tvmps_1/register",
            Some(&node_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let got = app
        .call(
            Method::POST,
            "/v1/nodes/tvmps_2/register",
            Some(&node_token),
            Some(json!({})),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
    // The enrollment token does nothing else.
    let got = app
        .call(
            Method::POST,
            "/v1/nodes/tvmps_2/register",
            Some(pool_token),
            Some(json!({})),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);

    // Once per node: the second enrollment is a 409 and the first token still works.
    let before = app.snapshot().await;
    let got = app
        .call(Method::POST, &enroll("tvmps_1"), Some(pool_token), None)
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None);
    assert_eq!(app.snapshot().await, before);
    let got = app
        .call(
            Method::PUT,
            "/v1/nodes/tvmps_1/heartbeat",
            Some(&node_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);

    let (_, events) = app.admin(Method::GET, "/v1/events?limit=500", None).await;
    let enrolled: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "node.enrolled")
        .collect();
    assert_eq!(enrolled.len(), 1, "{events}");
    assert_eq!(enrolled[0]["actor"], "enroll:nuke");
    assert_eq!(enrolled[0]["node"], "tvmps_1");
    assert!(!events.to_string().contains("resolved"), "{events}");

    // A secret the daemon cannot resolve: 503 naming the field (the start task retries), the
    // enrollment not spent.
    app.create(batch_bootstrap_pool("comp", "unset")).await;
    let comp_token = "rbp_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    app.store
        .set_pool_enroll_token("comp", &api::sha256_hex(comp_token), api_now())
        .await
        .unwrap();
    app.add_vm("tvmps_9", "comp", NodeState::Running).await;
    app.store
        .set_enroll_until("tvmps_9", api_now() + 600)
        .await
        .unwrap();
    let got = app
        .call(Method::POST, &enroll("tvmps_9"), Some(comp_token), None)
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "bootstrap_unavailable",
        Some("bootstrap.mounts[0].password"),
    );
    // Another pool's node: 403.
    let got = app
        .call(Method::POST, &enroll("tvmps_2"), Some(comp_token), None)
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
    // Once the daemon has the secret (here: the spec names one it has), the node enrolls.
    // Adding or removing the section would change the start task: 422.
    let mut fixed = batch_bootstrap_pool("comp", "smb_pw");
    let got = app
        .admin(Method::PUT, "/v1/pools/comp", Some(fixed.clone()))
        .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    let (status, script) = app
        .call(Method::POST, &enroll("tvmps_9"), Some(comp_token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{script}");
    fixed.as_object_mut().unwrap().remove("bootstrap");
    let got = app.admin(Method::PUT, "/v1/pools/comp", Some(fixed)).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        Some("bootstrap"),
    );
}

/// A spec names only secrets the daemon's configuration declares: the old forms that named
/// the daemon's environment or files (its own Azure credential among them), and undeclared
/// names, are 422s naming the field, and nothing is stored.
#[tokio::test]
async fn pool_specs_name_declared_secrets_only() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    for (secret, says) in [
        (
            "env:RENDERBURST__AZURE__CLIENT_SECRET",
            "no longer accepted",
        ),
        (
            "file:/etc/renderburst/renderburst.toml",
            "no longer accepted",
        ),
        ("not_declared", "[secrets.not_declared]"),
        ("Bad.Name", "not a secret name"),
    ] {
        let got = app
            .admin(
                Method::POST,
                "/v1/pools",
                Some(batch_bootstrap_pool("nuke", secret)),
            )
            .await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            Some("bootstrap.mounts[0].password.secret"),
        );
        assert!(got.1.to_string().contains(says), "{secret}: {}", got.1);
    }
    assert_eq!(app.snapshot().await, before);
    let got = app
        .admin(
            Method::POST,
            "/v1/pools",
            Some(batch_bootstrap_pool("nuke", "smb_pw")),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
}

/// The pool's token is readable by anyone with ARM read on the Batch pool, so it enrolls
/// only nodes the controller listed in that pool, within their window after allocation: a
/// listed node whose window closed, or one listed without a window, gets no script, and the
/// refusal spends nothing (no token, no event).
#[tokio::test]
async fn enrollment_is_refused_outside_the_node_s_window() {
    let app = spawn_app().await;
    app.ready.send_replace(true);
    app.create(batch_bootstrap_pool("nuke", "smb_pw")).await;
    let pool_token = "rbp_WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW";
    app.store
        .set_pool_enroll_token("nuke", &api::sha256_hex(pool_token), api_now())
        .await
        .unwrap();
    let enroll = |node: &str| format!("/v1/nodes/{node}/enroll");
    app.add_vm("tvmps_late", "nuke", NodeState::Running).await;
    app.store
        .set_enroll_until("tvmps_late", api_now() - 1)
        .await
        .unwrap();
    app.add_vm("tvmps_nowindow", "nuke", NodeState::Running)
        .await;
    let before = app.snapshot().await;
    for node in ["tvmps_late", "tvmps_nowindow"] {
        let got = app
            .call(Method::POST, &enroll(node), Some(pool_token), None)
            .await;
        assert_error(&got, StatusCode::FORBIDDEN, "enroll_window_closed", None);
        assert!(!got.1.to_string().contains("resolved"), "{}", got.1);
    }
    assert_eq!(app.snapshot().await, before);
    // Within its window, the same node enrolls.
    app.store
        .set_enroll_until("tvmps_late", api_now() + 600)
        .await
        .unwrap();
    let (status, script) = app
        .call(Method::POST, &enroll("tvmps_late"), Some(pool_token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{script}");
}

/// Unavailable offerings are listed (subscription-wide and per Batch pool) and an admin can
/// clear them; the clear is recorded and wakes the controller; a second clear has nothing to
/// do.
#[tokio::test]
async fn unavailable_offerings_are_listed_and_cleared_by_an_admin() {
    use rb_core::{Offering, Priority, Unavailable, UnavailableReason};
    let app = spawn_app().await;
    app.ready.send_replace(true);
    app.create(batch_bootstrap_pool("nuke", "smb_pw")).await;
    let _ = app.woken().await;
    let now = api_now();
    app.store
        .set_unavailable(&Unavailable::new(
            Offering::new("Standard_NC4as_T4_v3", Priority::Spot),
            UnavailableReason::Capacity,
            "AllocationFailed",
            now,
        ))
        .await
        .unwrap();
    app.store
        .put_batch_state(&store::BatchState {
            pool: "nuke".into(),
            unavailable: vec![Unavailable::new(
                Offering::new("Standard_D4s_v5", Priority::Spot),
                UnavailableReason::Quota,
                "AccountLowPriorityCoreQuotaReached",
                now,
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, list) = app
        .call(
            Method::GET,
            "/v1/offerings/unavailable",
            Some(VIEWER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let marks = list["unavailable"].as_array().unwrap();
    assert_eq!(marks.len(), 2, "{list}");
    assert_eq!(marks[0]["pool"], Value::Null);
    assert_eq!(marks[0]["reason"], "capacity");
    assert_eq!(marks[1]["pool"], "nuke");
    assert_eq!(marks[1]["code"], "AccountLowPriorityCoreQuotaReached");
    assert!(marks[1]["until"].as_str().unwrap().ends_with('Z'), "{list}");

    let (status, got) = app
        .admin(Method::DELETE, "/v1/offerings/unavailable", None)
        .await;
    assert_eq!((status, got), (StatusCode::OK, json!({"cleared": 2})));
    assert!(app.woken().await);
    let last = app.store.events_after(0, 100).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("offerings.cleared", "admin")
    );
    let (_, list) = app
        .admin(Method::GET, "/v1/offerings/unavailable", None)
        .await;
    assert_eq!(list, json!({"unavailable": []}));
    let before = app.snapshot().await;
    let (_, got) = app
        .admin(Method::DELETE, "/v1/offerings/unavailable", None)
        .await;
    assert_eq!(got, json!({"cleared": 0}));
    assert!(app.not_woken().await);
    assert_eq!(app.snapshot().await, before);
}

/// A second requester token, for requests made by someone else.
const OTHER_REQUESTER_TOKEN: &str = "other-requester-test-token";

/// A node request belongs to the token that made it, not to the `requester` label of its
/// body: requester B neither sees nor releases requester A's (a 404, as for a request that
/// does not exist); admins and viewers see them all, and an admin releases any.
#[tokio::test]
async fn requesters_see_and_release_only_their_own_requests() {
    let app = spawn_app().await;
    app.store
        .insert_token(
            "other-manager",
            "requester",
            &api::sha256_hex(OTHER_REQUESTER_TOKEN),
        )
        .await
        .unwrap();
    app.create(pool_spec("maya", 10)).await;
    let ask = |token: &'static str, label: &str| {
        let body = json!({"count": 1, "requester": label});
        let app = &app;
        async move {
            let (status, body) = app
                .call(
                    Method::POST,
                    "/v1/pools/maya/requests",
                    Some(token),
                    Some(body),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    let a = ask(REQUESTER_TOKEN, "deadline").await;
    // B claims A's label: a label is not an owner.
    let b = ask(OTHER_REQUESTER_TOKEN, "deadline").await;
    let ids = |token: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .call(Method::GET, "/v1/requests?all=true", Some(token), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(REQUESTER_TOKEN).await, vec![a.clone()]);
    assert_eq!(ids(OTHER_REQUESTER_TOKEN).await, vec![b.clone()]);
    assert_eq!(ids(VIEWER_TOKEN).await, vec![a.clone(), b.clone()]);
    assert_eq!(ids(ADMIN_TOKEN).await, vec![a.clone(), b.clone()]);
    let (_, filtered) = app
        .call(
            Method::GET,
            "/v1/requests?pool=maya",
            Some(OTHER_REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_eq!(filtered["requests"].as_array().unwrap().len(), 1);

    // Nor through the event log: B sees its own request's event, not A's; admins see both.
    let log = |token: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .call(Method::GET, "/v1/events?limit=1000", Some(token), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body.to_string()
        }
    };
    let seen = log(OTHER_REQUESTER_TOKEN).await;
    assert!(seen.contains(&b) && !seen.contains(&a), "{seen}");
    assert!(seen.contains("pool.created"), "{seen}");
    let seen = log(ADMIN_TOKEN).await;
    assert!(seen.contains(&a) && seen.contains(&b), "{seen}");

    // B cannot release A's request, and cannot tell it from one that does not exist.
    let before = app.snapshot().await;
    let theirs = app
        .call(
            Method::DELETE,
            &format!("/v1/requests/{a}"),
            Some(OTHER_REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_error(&theirs, StatusCode::NOT_FOUND, "not_found", None);
    let nobody = app
        .call(
            Method::DELETE,
            &format!("/v1/requests/{}", uuid_like()),
            Some(OTHER_REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        theirs.1["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&a, "ID"),
        nobody.1["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&uuid_like(), "ID")
    );
    assert_eq!(app.snapshot().await, before);
    assert_eq!(desired(&app, "maya").await, 2);

    // A releases its own; the admin releases B's.
    let (status, released) = app
        .call(
            Method::DELETE,
            &format!("/v1/requests/{a}"),
            Some(REQUESTER_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (status, released["state"].as_str()),
        (StatusCode::OK, Some("released"))
    );
    let (status, released) = app
        .admin(Method::DELETE, &format!("/v1/requests/{b}"), None)
        .await;
    assert_eq!(
        (status, released["released_by"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    assert_eq!(desired(&app, "maya").await, 0);

    // A token revoked and made again under the same name does not inherit the requests.
    app.store.delete_token("farm-manager").await.unwrap();
    app.store
        .insert_token(
            "farm-manager",
            "requester",
            &api::sha256_hex("reissued-requester-token"),
        )
        .await
        .unwrap();
    let (_, mine) = app
        .call(
            Method::GET,
            "/v1/requests?all=true",
            Some("reissued-requester-token"),
            None,
        )
        .await;
    assert_eq!(mine["requests"], json!([]));
}

/// The `bootstrap` section names the farm's accounts, shares and client command: admins see
/// it whole; viewers and requesters see that there is one, in pools and in events, and
/// nothing of it.
#[tokio::test]
async fn viewers_and_requesters_get_pool_specs_with_bootstrap_redacted() {
    let app = spawn_app().await;
    let section = json!({
        "mounts": [{"kind": "nfs", "source": "filer-secret-name:/projects", "target": "/mnt/projects"}],
        "env": {"STUDIO_SHARE": "filer-secret-name"},
        "render_client": {"command": "/opt/rr/bin/rrClient -server filer-secret-name"}
    });
    app.create(with(pool_spec("maya", 5), "bootstrap", section.clone()))
        .await;
    app.create(pool_spec("plain", 5)).await;
    let changed = with(
        with(pool_spec("maya", 6), "bootstrap", section.clone()),
        "bootstrap",
        json!({"render_client": {"command": "/opt/rr/bin/rrClient -server filer-secret-name -v"}}),
    );
    let (status, body) = app
        .admin(Method::PUT, "/v1/pools/maya", Some(changed))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for token in [VIEWER_TOKEN, REQUESTER_TOKEN, ADMIN_TOKEN] {
        let admin = token == ADMIN_TOKEN;
        let (_, one) = app
            .call(Method::GET, "/v1/pools/maya", Some(token), None)
            .await;
        let (_, all) = app.call(Method::GET, "/v1/pools", Some(token), None).await;
        let (_, events) = app
            .call(Method::GET, "/v1/events?limit=1000", Some(token), None)
            .await;
        let listed = all["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "maya")
            .unwrap();
        let plain = all["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "plain")
            .unwrap();
        assert!(plain["bootstrap"].is_null(), "{plain}");
        if admin {
            assert_eq!(
                one["bootstrap"]["render_client"]["command"],
                "/opt/rr/bin/rrClient -server filer-secret-name -v"
            );
            assert_eq!(listed["bootstrap"], one["bootstrap"]);
        } else {
            assert_eq!(
                one["bootstrap"],
                json!({"redacted": true}),
                "{token}: {one}"
            );
            assert_eq!(listed["bootstrap"], json!({"redacted": true}), "{token}");
            // Everything else of the pool is there.
            assert_eq!(one["max"], 6);
        }
        let events_text = events.to_string();
        assert!(
            events_text.contains("pool.created") && events_text.contains("pool.replaced"),
            "{events_text}"
        );
        assert_eq!(
            events_text.contains("filer-secret-name"),
            admin,
            "{token}: {events_text}"
        );
        for text in [one.to_string(), all.to_string()] {
            assert_eq!(text.contains("filer-secret-name"), admin, "{token}: {text}");
        }
    }
}

/// Bad tokens from one peer: the first few answered 401 at once, then 429 with Retry-After,
/// late; counted in `/metrics`. A good token from the same peer is served (not 429), and a
/// missing header is not a guess.
#[tokio::test]
async fn bad_tokens_from_one_peer_are_slowed_and_counted() {
    let app = spawn_app().await;
    let from = [127, 0, 2, 1];
    for i in 0..10 {
        let got = call_from(
            &app,
            from,
            Method::GET,
            "/v1/pools",
            Some(&format!("rb_guess{i}")),
            None,
        )
        .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    for _ in 0..3 {
        let got = call_from(&app, from, Method::GET, "/v1/pools", None, None).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let resp = http
        .get(format!("{}/v1/pools", app.base))
        .bearer_auth("rb_guess10")
        .send()
        .await
        .unwrap();
    let throttled_after = started.elapsed();
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    assert_error(
        &read(resp).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_bad_tokens",
        None,
    );
    // Good tokens from the same peer are not held back.
    let started = std::time::Instant::now();
    for token in [ADMIN_TOKEN, VIEWER_TOKEN] {
        let got = call_from(&app, from, Method::GET, "/v1/pools", Some(token), None).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    }
    let good = started.elapsed() / 2;
    // The same, from a peer nobody throttles: the baseline (both include a new connection).
    let started = std::time::Instant::now();
    for token in [ADMIN_TOKEN, VIEWER_TOKEN] {
        let got = call_from(
            &app,
            [127, 0, 2, 3],
            Method::GET,
            "/v1/pools",
            Some(token),
            None,
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    }
    let baseline = started.elapsed() / 2;
    // Another peer's bad token is answered at once, 401.
    let got = call_from(
        &app,
        [127, 0, 2, 2],
        Method::GET,
        "/v1/pools",
        Some("rb_x"),
        None,
    )
    .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let (_, metrics) = app.call(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("\nrenderburst_auth_failures_total 12\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nrenderburst_auth_throttled_total 1\n"),
        "{metrics}"
    );
    // Not asserted (no timing in tests): shown with --nocapture.
    eprintln!(
        "11th bad token answered after {throttled_after:?}; a good token from the throttled \
         peer in {good:?}, from a fresh peer in {baseline:?}"
    );
}
