//! How stored state is shown: a pool is its spec plus `status`, `deleting` and `generation`;
//! a node is the subset of its inventory row that clients need. Timestamps are RFC 3339 (UTC).

use std::collections::HashMap;

use rb_core::{NodeState, UnixSeconds};
use serde::Serialize;
use serde_json::{Value, json};
use store::{Event, PoolRecord, RequestRecord, TokenRecord, VmRecord};

/// Task-status name under which the controller stores a pool's last activation (a JSON object
/// with a `"conditions"` array).
pub fn pool_task(pool: &str) -> String {
    format!("pool:{pool}")
}

/// Task-status name under which the controller stores a Batch pool's observation summary.
pub fn batch_task(pool: &str) -> String {
    format!("batch:{pool}")
}

/// Task-status name under which the controller stores a pool's last error
/// (`{"code","message","at"}`).
pub fn pool_error_task(pool: &str) -> String {
    format!("pool-error:{pool}")
}

/// A pool's `status` (DESIGN.md section 5): node counts by state, conditions and last error.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    pub desired: u32,
    pub running: u32,
    pub creating: u32,
    pub starting: u32,
    /// Powered off but still allocated (and billed): not renderburst's doing.
    pub stopped: u32,
    pub deallocating: u32,
    pub deallocated: u32,
    pub deleting: u32,
    pub failed: u32,
    /// Batch Spot nodes preempted now (Batch reallocates them).
    pub preempted: u32,
    /// Running nodes that count as ready capacity: every running node, except in a pool with
    /// a `bootstrap` section, where only those that registered.
    pub ready: u32,
    /// Running nodes of a bootstrap pool that have not registered yet.
    pub registering: u32,
    pub conditions: Vec<Value>,
    pub last_error: Value,
    /// Batch pools only: what the controller last saw of the Azure Batch pool
    /// (`{"account","pool","exists","allocation_state","targets","current","resize_errors",
    /// "preempted","preempted_total",...}`); null for VM pools.
    pub batch: Value,
}

impl PoolStatus {
    /// `desired` is the store's desired count now (`Store::desired`, live requests included);
    /// `vms` are the pool's inventory rows; `tasks` maps task-status names to their JSON.
    pub fn new(
        record: &PoolRecord,
        desired: u32,
        vms: &[&VmRecord],
        tasks: &HashMap<String, Value>,
    ) -> Self {
        let mut status = PoolStatus {
            desired,
            ..Default::default()
        };
        let bootstrap = record.spec.bootstrap.is_some();
        for vm in vms.iter().filter(|v| v.state == NodeState::Running) {
            if !bootstrap || vm.registered_at.is_some() {
                status.ready += 1;
            } else {
                status.registering += 1;
            }
        }
        for vm in vms {
            let count = match vm.state {
                NodeState::Creating => &mut status.creating,
                NodeState::Starting => &mut status.starting,
                NodeState::Running => &mut status.running,
                NodeState::Stopped => &mut status.stopped,
                NodeState::Deallocating => &mut status.deallocating,
                NodeState::Deallocated => &mut status.deallocated,
                NodeState::Deleting => &mut status.deleting,
                NodeState::Failed => &mut status.failed,
                NodeState::Preempted => &mut status.preempted,
                // Gone from Azure; the controller replaces and forgets it.
                NodeState::Missing => continue,
            };
            *count += 1;
        }
        let name = &record.spec.name;
        status.conditions = tasks
            .get(&pool_task(name))
            .and_then(|t| t.get("conditions"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        status.last_error = tasks
            .get(&pool_error_task(name))
            .cloned()
            .unwrap_or(Value::Null);
        status.batch = tasks.get(&batch_task(name)).cloned().unwrap_or(Value::Null);
        status
    }
}

/// A pool as the API shows it: its spec's fields, plus `status`, `deleting`, `generation`.
pub fn pool_json(
    record: &PoolRecord,
    desired: u32,
    vms: &[&VmRecord],
    tasks: &HashMap<String, Value>,
) -> Value {
    let mut pool = serde_json::to_value(&record.spec).unwrap_or_else(|_| json!({}));
    if let Value::Object(fields) = &mut pool {
        let status = serde_json::to_value(PoolStatus::new(record, desired, vms, tasks))
            .unwrap_or(Value::Null);
        fields.insert("status".into(), status);
        fields.insert("deleting".into(), Value::Bool(record.deleting));
        fields.insert("generation".into(), Value::from(record.generation));
    }
    pool
}

/// A node of `GET /v1/nodes`. `state` is the inventory state, except that a running node
/// marked for drain shows as `draining`.
pub fn node_json(vm: &VmRecord) -> Value {
    let state = if vm.draining && vm.state == NodeState::Running {
        Value::from("draining")
    } else {
        serde_json::to_value(vm.state).unwrap_or(Value::Null)
    };
    json!({
        "name": vm.name,
        "pool": vm.pool,
        "state": state,
        "size": vm.size,
        "priority": vm.priority,
        "busy": vm.busy,
        "draining": vm.draining,
        "last_heartbeat": vm.last_heartbeat.map(rfc3339),
        "azure_id": vm.azure_id,
        "registered_at": vm.registered_at.map(rfc3339),
        "node_seen_at": vm.node_seen_at.map(rfc3339),
    })
}

/// A node request: `{id, pool, count, ttl_seconds, requester, job, created_at, expires_at,
/// released_at, released_by, state}`, `state` being `live`, `expired` or `released` at `now`.
pub fn request_json(r: &RequestRecord, now: UnixSeconds) -> Value {
    let state = if r.released_at.is_some() {
        "released"
    } else if r.is_live(now) {
        "live"
    } else {
        "expired"
    };
    json!({
        "id": r.id,
        "pool": r.pool,
        "count": r.count,
        "ttl_seconds": r.ttl_seconds(),
        "requester": r.requester,
        "job": r.job,
        "created_at": rfc3339(r.created_at),
        "expires_at": rfc3339(r.expires_at),
        "released_at": r.released_at.map(rfc3339),
        "released_by": r.released_by,
        "state": state,
    })
}

/// An event of `GET /v1/events`.
pub fn event_json(e: &Event) -> Value {
    json!({
        "id": e.id,
        "at": rfc3339(e.at),
        "kind": e.kind,
        "pool": e.pool,
        "node": e.node,
        "actor": e.actor,
        "message": e.message,
        "data": e.data,
    })
}

/// A token as listed: never its hash.
pub fn token_json(t: &TokenRecord) -> Value {
    json!({ "name": t.name, "role": t.role, "created_at": rfc3339(t.created_at) })
}

/// Unix seconds as RFC 3339 (`2024-05-01T12:00:00Z`); the number itself if out of range.
pub fn rfc3339(t: UnixSeconds) -> Value {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or_else(|| Value::from(t), Value::from)
}

/// Now, in Unix seconds.
pub fn now() -> UnixSeconds {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(1_700_000_000), json!("2023-11-14T22:13:20Z"));
    }
}
