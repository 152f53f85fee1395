//! Node activity and drain: what render managers (or the nodes themselves) tell the planner
//! about work in progress, so scale-down never takes a busy node.
//!
//! - `PUT /v1/nodes/{name}/heartbeat {"busy": bool}` (requester): records the heartbeat. A
//!   busy node is never removed by scale-down or pool deletion while its heartbeat is believed
//!   (rb_core's `BUSY_HEARTBEAT_TTL_SECONDS`, or the idle timeout if longer). The controller
//!   is woken, and an event recorded, only when `busy` changes: heartbeats arrive every few
//!   seconds from every node, and neither the reconciler nor the audit log should churn on them.
//!   A node may beat with its own token (bootstrap pools): its body may then be `{}`, a
//!   liveness report that records `node_seen_at` and leaves `busy` to the render manager.
//! - `POST /v1/nodes/{name}/register` (the node's own token, or admin): a booting node of a
//!   pool with a `bootstrap` section announces itself; from then on it counts as ready
//!   capacity. One event and one wake-up the first time; repeating it (after a reboot) only
//!   records that the node called. A node token acting on another node is a 403.
//! - `POST /v1/nodes/{name}/enroll` (a Batch pool's enrollment token): a Batch node of a
//!   pool with a `bootstrap` section, running its start task, trades the pool's token for its
//!   own node token, once, and gets its bootstrap script (secrets resolved) as `text/plain`.
//!   The node must be in the pool's node list as the controller last saw it: a 404 wakes the
//!   controller to look again (at most once per [`ENROLL_WAKE_GAP`], whatever the names),
//!   and the start task retries. Only within `[bootstrap] enroll_window_seconds` of the
//!   node's allocation (the controller stores the deadline when it lists the node): after
//!   that, 403. A second enrollment of the same
//!   node is a 409, so the pool's token, readable by anyone who can read the Batch pool,
//!   cannot fetch the secrets of a node that already has them.
//! - `POST /v1/nodes/{name}/drain` (admin): the node gets no new work and is removed
//!   (deallocated or deleted, per `scale_down`) as soon as it is not busy, whatever the desired
//!   count. Drain is an operator action that removes capacity, so requesters may not.
//!   `DELETE /v1/nodes/{name}/drain` (admin) cancels it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{NewEvent, Store, VmRecord};
use utoipa::ToSchema;

use crate::auth::{Admin, Enroller, NodeOrAdmin, NodeOrRequester};
use crate::error::ApiError;
use crate::extract::{Body, NodeName, RequestBody};
use crate::view::{self, Node, node_json};
use crate::{ApiState, audit};

const CODE: &str = "invalid_heartbeat";

/// Least time between two wake-ups of the controller by enrollments of nodes it has not
/// listed. A real node that booted before the controller's last listing waits at most this
/// (its start task retries for minutes); a flood of made-up names costs Azure one listing per
/// gap instead of one per request (2,000 made-up names cost 444 reads in 5 s without it).
pub const ENROLL_WAKE_GAP: Duration = Duration::from_secs(5);

/// When an enrollment of an unlisted node last woke the controller (one per router).
#[derive(Debug, Default)]
pub struct EnrollWakes {
    last: Mutex<Option<Instant>>,
}

impl EnrollWakes {
    /// Whether a wake-up at `now` is allowed; if so, it is counted as done.
    pub fn due(&self, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|l| now.saturating_duration_since(l) < ENROLL_WAKE_GAP) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// `PUT /v1/nodes/{name}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// Required, except from a node's own token, where `{}` reports liveness only.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = bool, required = true)]
    pub busy: Option<bool>,
}

impl RequestBody for HeartbeatBody {
    const CODE: &'static str = CODE;
}

/// `{"busy": bool}` and nothing else; 422 naming `busy` (or the unknown field) otherwise.
#[cfg(test)]
fn parse_heartbeat(body: &serde_json::Value) -> Result<bool, ApiError> {
    parse_heartbeat_from(body, false).map(|b| b.unwrap_or_default())
}

#[cfg(test)]
fn parse_heartbeat_from(
    body: &serde_json::Value,
    liveness_allowed: bool,
) -> Result<Option<bool>, ApiError> {
    check_heartbeat(
        crate::extract::decode(body.clone(), CODE)?,
        liveness_allowed,
    )
}

/// `busy`, which may be absent only with `liveness_allowed` (a node's own token).
fn check_heartbeat(body: HeartbeatBody, liveness_allowed: bool) -> Result<Option<bool>, ApiError> {
    match body.busy {
        None if !liveness_allowed => {
            Err(ApiError::unprocessable(CODE, "missing field \"busy\"").with_field("busy"))
        }
        busy => Ok(busy),
    }
}

const REGISTER_CODE: &str = "invalid_registration";

/// Longest `hostname` and `ip` of a registration, in bytes.
const MAX_ABOUT_BYTES: usize = 255;

/// `POST /v1/nodes/{name}/register`: what the node says about itself (both optional), for
/// the event.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[serde(
        default,
        deserialize_with = "crate::extract::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(required = false, nullable = false, max_length = 255)]
    pub hostname: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::extract::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(required = false, nullable = false, max_length = 255)]
    pub ip: Option<String>,
}

impl RequestBody for RegisterBody {
    const CODE: &'static str = REGISTER_CODE;
}

/// Each member a string of at most 255 bytes without control characters: 422 naming it.
fn check_registration(body: RegisterBody) -> Result<RegisterBody, ApiError> {
    for (key, value) in [("hostname", &body.hostname), ("ip", &body.ip)] {
        if let Some(s) = value
            && (s.len() > MAX_ABOUT_BYTES || s.chars().any(char::is_control))
        {
            return Err(ApiError::unprocessable(
                REGISTER_CODE,
                format!("{key} must be a string of at most 255 characters"),
            )
            .with_field(key));
        }
    }
    Ok(body)
}

#[cfg(test)]
fn parse_registration(body: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    let about = check_registration(crate::extract::decode(body.clone(), REGISTER_CODE)?)?;
    Ok(serde_json::to_value(about).unwrap_or_default())
}

async fn existing(store: &Store, name: &str) -> Result<VmRecord, ApiError> {
    store
        .get_vm(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("node {name:?} does not exist")))
}

/// `PUT /v1/nodes/{name}/heartbeat` `{"busy": bool}` → 200 with the node; 404 if unknown.
#[utoipa::path(
    put,
    path = "/v1/nodes/{name}/heartbeat",
    tag = "nodes",
    security(("bearer" = ["requester", "admin", "node"])),
    params(("name" = String, Path, description = "Node name: a VM name, or a Batch node id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    request_body = HeartbeatBody,
    responses(
        (status = 200, description = "The node", body = Node),
        (status = 404, description = "No such node", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid body", body = crate::error::ErrorBody),
    )
)]
pub async fn heartbeat(
    NodeOrRequester(caller): NodeOrRequester,
    NodeName(name): NodeName,
    State(st): State<ApiState>,
    Body(body): Body<HeartbeatBody>,
) -> Result<Json<Node>, ApiError> {
    caller.check_node(&name)?;
    let own = caller.node.is_some();
    let busy = check_heartbeat(body, own)?;
    let before = existing(&st.store, &name).await?;
    let now = view::now();
    if own {
        st.store.set_node_seen(&name, now).await?;
    }
    let Some(busy) = busy else {
        // Liveness only, from the node itself.
        let after = existing(&st.store, &name).await?;
        return Ok(Json(node_json(&after)));
    };
    st.store.set_heartbeat(&name, busy, now).await?;
    if before.busy != busy {
        let (kind, message) = if busy {
            (
                "node.busy",
                "node reports work in progress: it will not be removed",
            )
        } else {
            ("node.idle", "node reports it is idle")
        };
        audit(
            &st,
            NewEvent {
                kind: kind.into(),
                pool: Some(before.pool.clone()),
                node: Some(name.clone()),
                actor: caller.name,
                message: message.into(),
                data: json!({ "busy": busy }),
            },
        )
        .await;
        st.wake.notify_one();
    }
    let after = existing(&st.store, &name).await?;
    Ok(Json(node_json(&after)))
}

/// `POST /v1/nodes/{name}/register` `{"hostname"?, "ip"?}` → 200 with the node; 404 if
/// unknown; 403 with another node's token.
#[utoipa::path(
    post,
    path = "/v1/nodes/{name}/register",
    tag = "nodes",
    security(("bearer" = ["admin", "node"])),
    params(("name" = String, Path, description = "Node (VM) name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    request_body = RegisterBody,
    responses(
        (status = 200, description = "Registered: the node counts as ready capacity", body = Node),
        (status = 404, description = "No such node", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid body", body = crate::error::ErrorBody),
    )
)]
pub async fn register(
    NodeOrAdmin(caller): NodeOrAdmin,
    NodeName(name): NodeName,
    State(st): State<ApiState>,
    Body(body): Body<RegisterBody>,
) -> Result<Json<Node>, ApiError> {
    caller.check_node(&name)?;
    let about = check_registration(body)?;
    let before = existing(&st.store, &name).await?;
    st.store.register_node(&name, view::now()).await?;
    // What the node says its address is, for node listings; only a well-formed IP.
    if let Some(ip) = about.ip.as_deref()
        && ip.parse::<std::net::IpAddr>().is_ok()
    {
        st.store
            .set_node_ips(&[(name.clone(), ip.to_owned())])
            .await?;
    }
    if before.registered_at.is_none() {
        tracing::info!(node = %name, pool = %before.pool, "node registered");
        audit(
            &st,
            NewEvent {
                kind: "node.registered".into(),
                pool: Some(before.pool.clone()),
                node: Some(name.clone()),
                actor: caller.name,
                message: "node bootstrapped and registered: it counts as ready capacity".into(),
                data: serde_json::to_value(&about).unwrap_or_default(),
            },
        )
        .await;
        st.wake.notify_one();
    }
    let after = existing(&st.store, &name).await?;
    Ok(Json(node_json(&after)))
}

/// `POST /v1/nodes/{name}/enroll` (no body) → 200 `text/plain`: the node's bootstrap script,
/// with its new node token. 404 if the node is not (yet) in the pool's node list, 403 if it
/// is in another pool or its enrollment window (`[bootstrap] enroll_window_seconds` after its
/// allocation) has closed, 409 if it enrolled already or the pool has no bootstrap section, 503
/// naming the field if the daemon cannot resolve one of the section's secrets (the start
/// task retries; the enrollment is not spent).
#[utoipa::path(
    post,
    path = "/v1/nodes/{name}/enroll",
    tag = "nodes",
    security(("bearer" = ["enroll"])),
    params(("name" = String, Path, description = "Batch node id (AZ_BATCH_NODE_ID)", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "Enrolled: the node's bootstrap script (shell on Linux, PowerShell on Windows)", body = String, content_type = "text/plain"),
        (status = 403, description = "The node is in another pool, or its enrollment window closed", body = crate::error::ErrorBody),
        (status = 404, description = "Not in the pool's node list (yet): retry", body = crate::error::ErrorBody),
        (status = 409, description = "Enrolled already, or the pool has no bootstrap section", body = crate::error::ErrorBody),
        (status = 503, description = "The daemon cannot resolve a secret of the section: retry", body = crate::error::ErrorBody),
    )
)]
pub async fn enroll(
    Enroller(caller): Enroller,
    NodeName(name): NodeName,
    State(st): State<ApiState>,
    Extension(wakes): Extension<Arc<EnrollWakes>>,
) -> Result<Response, ApiError> {
    use rb_core::bootstrap;
    let pool = caller.pool.clone().unwrap_or_default();
    let Some(node) = st.store.get_vm(&name).await? else {
        // The node booted before the controller listed it: look soon; the start task
        // retries. Anyone holding the pool's token can send names nobody will ever list, so
        // they wake the controller (which lists Azure) at most once per ENROLL_WAKE_GAP.
        if wakes.due(Instant::now()) {
            st.wake.notify_one();
        }
        return Err(ApiError::not_found(format!(
            "node {name:?} is not in Batch pool {pool:?}'s node list yet; retry shortly"
        )));
    };
    if node.pool != pool {
        return Err(ApiError::forbidden(format!(
            "this enrollment token belongs to pool {pool:?}; node {name:?} is not one of its nodes"
        )));
    }
    // The pool's token is readable by anyone who can read the Batch pool: it is worth
    // something only for a listed node, shortly after Batch allocated it.
    let now = view::now();
    if st
        .store
        .enroll_until(&name)
        .await?
        .is_none_or(|until| now > until)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "enroll_window_closed",
            format!(
                "node {name:?} may no longer enroll: a node enrolls within [bootstrap] enroll_window_seconds of its allocation; one that did not is replaced"
            ),
        ));
    }
    let record = st
        .store
        .get_pool(&pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pool {pool:?} does not exist")))?;
    let Some(section) = record.spec.node_bootstrap() else {
        return Err(ApiError::conflict(format!(
            "pool {pool:?} has no bootstrap section any more"
        )));
    };
    // Render before storing the token: a secret the daemon cannot resolve fails the
    // enrollment without spending the node's one chance.
    let token = store::random_token(crate::auth::NODE_TOKEN_PREFIX);
    // Secrets are read from files or the environment: off the async runtime.
    let (defaults, resolve) = (st.bootstrap.clone(), st.resolve_secret.clone());
    let (os, for_pool, for_node, for_token) =
        (record.spec.os, pool.clone(), name.clone(), token.clone());
    let script = tokio::task::spawn_blocking(move || {
        let ctx = defaults.node(&for_pool, &for_node, &for_token);
        bootstrap::render_enrollment_script(&section, os, &ctx, &|r| resolve(r))
    })
    .await
    .map_err(|e| ApiError::internal("cannot render the node's bootstrap", &e))?
    .map_err(|e| {
            tracing::error!(node = %name, pool = %pool, field = %e.field, error = %e.message, "cannot render a node's bootstrap");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "bootstrap_unavailable",
                format!("the daemon cannot render this node's bootstrap: {}: {}", e.field, e.message),
            )
            .with_field(e.field)
        })?;
    st.store
        .enroll_node_token(&name, &crate::auth::sha256_hex(&token), view::now())
        .await
        .map_err(|e| match e {
            store::StoreError::Conflict { .. } => ApiError::conflict(format!(
                "node {name:?} enrolled already; a node enrolls once (a reimaged node is replaced)"
            )),
            other => ApiError::from_store(other),
        })?;
    tracing::info!(node = %name, pool = %pool, "Batch node enrolled");
    audit(
        &st,
        NewEvent {
            kind: "node.enrolled".into(),
            pool: Some(pool.clone()),
            node: Some(name.clone()),
            actor: caller.name,
            message: "Batch node enrolled: it got its node token and bootstrap script".into(),
            data: json!({"os": record.spec.os}),
        },
    )
    .await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        script,
    )
        .into_response())
}

/// `POST /v1/nodes/{name}/drain` → 202 with the node (`"draining": true`); 404 if unknown.
/// No body is needed. Repeating it is harmless.
#[utoipa::path(
    post,
    path = "/v1/nodes/{name}/drain",
    tag = "nodes",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Node name: a VM name, or a Batch node id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    responses(
        (status = 202, description = "Draining", body = Node),
        (status = 404, description = "No such node", body = crate::error::ErrorBody),
    )
)]
pub async fn drain(
    Admin(caller): Admin,
    NodeName(name): NodeName,
    State(st): State<ApiState>,
) -> Result<Response, ApiError> {
    let before = existing(&st.store, &name).await?;
    st.store.set_draining(&name, true).await?;
    let message = if before.draining {
        "drain requested again (already draining)"
    } else {
        "drain requested: no new work; removed once not busy"
    };
    audit(
        &st,
        NewEvent {
            kind: "node.drain".into(),
            pool: Some(before.pool.clone()),
            node: Some(name.clone()),
            actor: caller.name,
            message: message.into(),
            data: json!({}),
        },
    )
    .await;
    st.wake.notify_one();
    let after = existing(&st.store, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(node_json(&after))).into_response())
}

/// `DELETE /v1/nodes/{name}/drain` → 200 with the node (`"draining": false`); 404 if
/// unknown. Cancels a drain: the node takes work again and is kept or removed by the usual
/// rules. A node already removed by the drain stays removed (a deallocated VM can be
/// started again when demand needs it). Repeating it is harmless.
#[utoipa::path(
    delete,
    path = "/v1/nodes/{name}/drain",
    tag = "nodes",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Node name: a VM name, or a Batch node id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "No longer draining", body = Node),
        (status = 404, description = "No such node", body = crate::error::ErrorBody),
    )
)]
pub async fn undrain(
    Admin(caller): Admin,
    NodeName(name): NodeName,
    State(st): State<ApiState>,
) -> Result<Json<Node>, ApiError> {
    let before = existing(&st.store, &name).await?;
    if before.draining {
        st.store.set_draining(&name, false).await?;
        audit(
            &st,
            NewEvent {
                kind: "node.undrain".into(),
                pool: Some(before.pool.clone()),
                node: Some(name.clone()),
                actor: caller.name,
                message: "drain cancelled: the node takes work again".into(),
                data: json!({}),
            },
        )
        .await;
        st.wake.notify_one();
    }
    let after = existing(&st.store, &name).await?;
    Ok(Json(node_json(&after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_may_beat_without_busy_and_register_with_a_little_about_themselves() {
        assert_eq!(parse_heartbeat_from(&json!({}), true).unwrap(), None);
        assert_eq!(
            parse_heartbeat_from(&json!({"busy": true}), true).unwrap(),
            Some(true)
        );
        assert!(parse_heartbeat_from(&json!({}), false).is_err());
        assert_eq!(
            parse_registration(&json!({"hostname": "maya-00001"})).unwrap(),
            json!({"hostname": "maya-00001"})
        );
        assert_eq!(parse_registration(&json!({})).unwrap(), json!({}));
        for (body, field) in [
            (json!({"hostname": 7}), "hostname"),
            (json!({"ip": "a\nb"}), "ip"),
            (json!({"token": "x"}), "token"),
        ] {
            let err = parse_registration(&body).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
    }

    #[test]
    fn unlisted_enrollments_wake_the_controller_once_per_gap() {
        let wakes = EnrollWakes::default();
        let t0 = Instant::now();
        assert!(wakes.due(t0));
        assert!(!wakes.due(t0 + Duration::from_millis(10)));
        assert!(!wakes.due(t0 + ENROLL_WAKE_GAP - Duration::from_millis(1)));
        assert!(wakes.due(t0 + ENROLL_WAKE_GAP));
        assert!(!wakes.due(t0 + ENROLL_WAKE_GAP + Duration::from_secs(1)));
    }

    #[test]
    fn heartbeats_are_busy_booleans_alone() {
        assert!(parse_heartbeat(&json!({"busy": true})).unwrap());
        assert!(!parse_heartbeat(&json!({"busy": false})).unwrap());
        for (body, field) in [
            (json!({}), "busy"),
            (json!({"busy": "true"}), "busy"),
            (json!({"busy": 1}), "busy"),
            (json!({"busy": null}), "busy"),
            (json!({"busy": true, "job": "x"}), "job"),
            (json!("busy"), "body"),
        ] {
            let err = parse_heartbeat(&body).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
    }
}
