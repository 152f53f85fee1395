//! Node activity and drain: what render managers (or the nodes themselves) tell the planner
//! about work in progress, so scale-down never takes a busy node.
//!
//! - `PUT /v1/nodes/{name}/heartbeat {"busy": bool}` (requester): records the heartbeat. A
//!   busy node is never removed by scale-down or pool deletion while its heartbeat is believed
//!   (rb_core's `BUSY_HEARTBEAT_TTL_SECONDS`, or the idle timeout if longer). The controller
//!   is woken, and an event recorded, only when `busy` changes: heartbeats arrive every few
//!   seconds from every node, and neither the reconciler nor the audit log should churn on them.
//! - `POST /v1/nodes/{name}/drain` (admin): the node gets no new work and is removed
//!   (deallocated or deleted, per `scale_down`) as soon as it is not busy, whatever the desired
//!   count. Drain is an operator action that removes capacity, so requesters may not.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use store::{NewEvent, Store, VmRecord};

use crate::auth::{Admin, Requester};
use crate::error::ApiError;
use crate::extract::{JsonBody, NodeName, object_fields};
use crate::view::{self, node_json};
use crate::{ApiState, audit};

const CODE: &str = "invalid_heartbeat";

/// `{"busy": bool}` and nothing else; 422 naming `busy` (or the unknown field) otherwise.
fn parse_heartbeat(body: &Value) -> Result<bool, ApiError> {
    let fields = object_fields(body, &["busy"], CODE)?;
    match fields.get("busy") {
        Some(Value::Bool(busy)) => Ok(*busy),
        Some(other) => Err(ApiError::unprocessable(
            CODE,
            format!("busy must be true or false, got {other}"),
        )
        .with_field("busy")),
        None => Err(ApiError::unprocessable(CODE, "missing field \"busy\"").with_field("busy")),
    }
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
    security(("bearer" = ["requester", "admin"])),
    params(("name" = String, Path, description = "Node name: a VM name, or a Batch node id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    request_body = crate::openapi::HeartbeatBody,
    responses(
        (status = 200, description = "The node", body = crate::openapi::Node),
        (status = 404, description = "No such node", body = crate::openapi::ErrorBody),
        (status = 422, description = "Invalid body", body = crate::openapi::ErrorBody),
    )
)]
pub async fn heartbeat(
    Requester(caller): Requester,
    NodeName(name): NodeName,
    State(st): State<ApiState>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let busy = parse_heartbeat(&body.value)?;
    let before = existing(&st.store, &name).await?;
    st.store.set_heartbeat(&name, busy, view::now()).await?;
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

/// `POST /v1/nodes/{name}/drain` → 202 with the node (`"draining": true`); 404 if unknown.
/// No body is needed. Repeating it is harmless.
#[utoipa::path(
    post,
    path = "/v1/nodes/{name}/drain",
    tag = "nodes",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Node name: a VM name, or a Batch node id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    responses(
        (status = 202, description = "Draining", body = crate::openapi::Node),
        (status = 404, description = "No such node", body = crate::openapi::ErrorBody),
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

#[cfg(test)]
mod tests {
    use super::*;

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
