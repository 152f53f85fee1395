//! How stored state is shown: a pool is its spec plus `status`, `deleting` and `generation`;
//! a node is the subset of its inventory row that clients need. Timestamps are RFC 3339 (UTC).

use std::collections::BTreeMap;

use rb_core::task::{BOOTSTRAP_ERROR, Task, TaskKey, TaskStatuses};
use rb_core::{NodeState, UnixSeconds};
use serde::Serialize;
use serde_json::{Value, json};
use store::{Event, PoolRecord, RequestRecord, TokenRecord, VmRecord};
use utoipa::ToSchema;

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
    /// Batch pools: Spot nodes preempted now (Batch reallocates them). VM pools: Spot VMs
    /// Azure has evicted since the pool was created (each logged as `node.evicted`; the
    /// planner replaces the capacity).
    pub preempted: u32,
    /// Running nodes that count as ready capacity: every running node, except in a pool with
    /// a `bootstrap` section, where only those that registered.
    pub ready: u32,
    /// Running nodes of a bootstrap pool that have not registered yet.
    pub registering: u32,
    /// What an admin should know (`Blocked`, `NoCapacity`, `AtMax`...), each
    /// `{"type", "message", "since"}`; `since` stays the same while the condition persists.
    pub conditions: Vec<rb_core::Condition>,
    /// The pool's `generation` the controller last planned from: once it is at least the
    /// generation a change answered, the status reflects that change. Null before the first
    /// activation.
    pub observed_generation: Option<i64>,
    pub last_error: Value,
    /// Batch pools only: what the controller last saw of the Azure Batch pool
    /// (`{"account","pool","exists","allocation_state","targets","current","resize_errors",
    /// "preempted","preempted_total",...}`); null for VM pools.
    pub batch: Value,
}

impl PoolStatus {
    /// `desired` is the store's desired count now (`Store::desired`, live requests included);
    /// `vms` are the pool's inventory rows; `tasks` the stored task statuses.
    pub fn new(record: &PoolRecord, desired: u32, vms: &[&VmRecord], tasks: &TaskStatuses) -> Self {
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
        if record.spec.mode == rb_core::PoolMode::Vm {
            status.preempted = tasks
                .get(&Task::evictions(name))
                .map_or(0, |e| u32::try_from(e.total).unwrap_or(u32::MAX));
        }
        // Conditions as objects, or split from the strings an older version stored.
        let activation = tasks.get(&Task::pool(name));
        status.observed_generation = activation.as_ref().map(|a| a.observed_generation);
        status.conditions = activation.map(|a| a.conditions).unwrap_or_default();
        // Shown as stored, whichever version wrote them.
        status.last_error = tasks
            .raw(&TaskKey::PoolError(name.clone()))
            .cloned()
            .unwrap_or(Value::Null);
        status.batch = tasks
            .raw(&TaskKey::BatchPool(name.clone()))
            .cloned()
            .unwrap_or(Value::Null);
        status
    }
}

/// A pool as the API shows it: its spec's fields, plus `status`, `deleting` and
/// `generation`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pool {
    pub name: String,
    pub mode: rb_core::PoolMode,
    pub vm_sizes: Vec<String>,
    pub priority: rb_core::Priority,
    pub spot: rb_core::SpotSpec,
    pub image: String,
    pub os: rb_core::Os,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub idle_timeout_seconds: u64,
    pub scale_down_stabilization_seconds: u64,
    pub scale_down: rb_core::ScaleDown,
    pub tags: BTreeMap<String, String>,
    /// `mode: batch` pools only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub batch: Option<rb_core::BatchSpec>,
    /// License servers (Batch pools: through the start task).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub licenses: Vec<rb_core::LicenseServer>,
    /// What a new node does on its first boot (`PoolSpec`'s section), shown whole to admins
    /// only: to viewers and requesters `{"redacted": true}` when the pool has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub bootstrap: Option<ShownBootstrap>,
    pub status: PoolStatus,
    /// Deletion requested: the pool drains to zero resources, then disappears.
    pub deleting: bool,
    /// Bumped by every change of the spec.
    pub generation: i64,
}

/// A pool's `bootstrap` section as a caller may see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ShownBootstrap {
    /// The section, to admins.
    Section(Box<rb_core::BootstrapSpec>),
    /// `{"redacted": true}`: there is one, for admins' eyes only.
    Redacted(Redacted),
}

/// That there is something here the caller may not see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Redacted {
    /// Always true.
    pub redacted: bool,
}

/// A pool as the API shows it, from its stored record (see [`PoolStatus::new`] for the rest).
pub fn pool_json(
    record: &PoolRecord,
    desired: u32,
    vms: &[&VmRecord],
    tasks: &TaskStatuses,
) -> Pool {
    // Every field named: a field added to the spec does not compile until it is shown.
    let rb_core::PoolSpec {
        name,
        mode,
        vm_sizes,
        priority,
        spot,
        image,
        os,
        min,
        max,
        target,
        idle_timeout_seconds,
        scale_down_stabilization_seconds,
        scale_down,
        tags,
        batch,
        licenses,
        bootstrap,
    } = record.spec.clone();
    Pool {
        name,
        mode,
        vm_sizes,
        priority,
        spot,
        image,
        os,
        min,
        max,
        target,
        idle_timeout_seconds,
        scale_down_stabilization_seconds,
        scale_down,
        tags,
        batch,
        licenses,
        bootstrap: bootstrap.map(|b| ShownBootstrap::Section(Box::new(b))),
        status: PoolStatus::new(record, desired, vms, tasks),
        deleting: record.deleting,
        generation: record.generation,
    }
}

/// What viewers and requesters see in place of a `bootstrap` section: that there is one, and
/// nothing of it (domain account and OU, shares and their accounts, the render client's
/// command, secret names are the admins').
pub fn redacted_bootstrap() -> Value {
    json!({ "redacted": true })
}

/// Redacts a pool, for a caller who may not see its bootstrap: the section, and a last
/// error that comes from rendering it (it names fields and secrets).
pub fn redact_pool(pool: &mut Pool) {
    if pool.bootstrap.is_some() {
        pool.bootstrap = Some(ShownBootstrap::Redacted(Redacted { redacted: true }));
    }
    redact_bootstrap_error(&mut pool.status.last_error);
}

/// A pool's last error (`{"code","message","at"}`, as a pool status and `GET /v1/status`
/// show it) without its message when it comes from rendering a bootstrap.
pub fn redact_bootstrap_error(error: &mut Value) {
    if error.get("code").and_then(Value::as_str) == Some(BOOTSTRAP_ERROR) {
        error["message"] = Value::from(BOOTSTRAP_ERROR_REDACTED);
    }
}

const BOOTSTRAP_ERROR_REDACTED: &str =
    "a node's bootstrap could not be rendered; the details are shown to admins";

/// Redacts an event, for a caller who may not see bootstrap sections: the spec a `pool.*`
/// event carries (`data.spec`, or `data` itself for the configuration file's), the bootstrap
/// change its message describes, and the message of a bootstrap failure.
pub fn redact_event(event: &mut EventView) {
    if event.kind.starts_with("pool.") {
        for pointer in ["/spec/bootstrap", "/bootstrap"] {
            if let Some(b) = event.data.pointer_mut(pointer)
                && !b.is_null()
            {
                *b = redacted_bootstrap();
            }
        }
        event.message = redact_bootstrap_change(&event.message);
    }
    if event.data.pointer("/code").and_then(Value::as_str) == Some(BOOTSTRAP_ERROR) {
        let action = event.data.pointer("/action").and_then(Value::as_str);
        event.message = match (action, event.node.as_deref()) {
            (Some(action), Some(node)) => {
                format!("{action} {node} failed: {BOOTSTRAP_ERROR}: {BOOTSTRAP_ERROR_REDACTED}")
            }
            _ => BOOTSTRAP_ERROR_REDACTED.to_string(),
        };
    }
}

/// `bootstrap OLD → NEW` in a `pool.replaced` message (`field old → new, ...`, values in
/// JSON) becomes `bootstrap changed`. Messages written since this version say only that;
/// older ones carried the values.
pub fn redact_bootstrap_change(message: &str) -> String {
    const KEY: &str = "bootstrap ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(KEY) {
        let starts_field = at == 0 || rest[..at].ends_with(": ") || rest[..at].ends_with(", ");
        let after = &rest[at + KEY.len()..];
        match starts_field.then(|| change_len(after)).flatten() {
            Some(len) => {
                out.push_str(&rest[..at]);
                out.push_str("bootstrap changed");
                rest = &after[len..];
            }
            None => {
                out.push_str(&rest[..at + KEY.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The length of `OLD → NEW` (two JSON values) at the start of `text`, if it is one.
fn change_len(text: &str) -> Option<usize> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    values.next()?.ok()?;
    let old_end = values.byte_offset();
    let arrow = text[old_end..].strip_prefix(" → ")?;
    let mut new = serde_json::Deserializer::from_str(arrow).into_iter::<Value>();
    new.next()?.ok()?;
    Some(text.len() - arrow.len() + new.byte_offset())
}

/// A node: the subset of its inventory row that clients need.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Node {
    pub name: String,
    pub pool: String,
    /// creating, starting, running, draining, stopped, deallocating, deallocated, deleting,
    /// failed, preempted, missing.
    pub state: String,
    pub size: String,
    pub priority: rb_core::Priority,
    pub busy: bool,
    pub draining: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat: Option<Rfc3339>,
    pub azure_id: Option<String>,
    /// When the node registered with its own token (bootstrap pools).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub registered_at: Option<Rfc3339>,
    /// The last call the node made with its own token.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub node_seen_at: Option<Rfc3339>,
    /// The node's private IP address, as Batch's node list gives it or as the node said when
    /// it registered; null when neither has (`GET /v1/nodes` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub private_ip: Option<Option<String>>,
}

/// A node as shown. `state` is the inventory state, except that a running node marked for
/// drain shows as `draining`.
pub fn node_json(vm: &VmRecord) -> Node {
    let state = if vm.draining && vm.state == NodeState::Running {
        "draining".to_string()
    } else {
        serde_json::to_value(vm.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    Node {
        name: vm.name.clone(),
        pool: vm.pool.clone(),
        state,
        size: vm.size.clone(),
        priority: vm.priority,
        busy: vm.busy,
        draining: vm.draining,
        last_heartbeat: vm.last_heartbeat.map(Rfc3339),
        azure_id: vm.azure_id.clone(),
        registered_at: vm.registered_at.map(Rfc3339),
        node_seen_at: vm.node_seen_at.map(Rfc3339),
        private_ip: None,
    }
}

/// A node request (lease).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeRequest {
    pub id: String,
    pub pool: String,
    pub count: u32,
    pub ttl_seconds: i64,
    pub requester: String,
    pub job: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Rfc3339,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Rfc3339,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub released_at: Option<Rfc3339>,
    pub released_by: Option<String>,
    /// live, expired or released.
    pub state: String,
}

/// A node request, `state` being `live`, `expired` or `released` at `now`.
pub fn request_json(r: &RequestRecord, now: UnixSeconds) -> NodeRequest {
    let state = if r.released_at.is_some() {
        "released"
    } else if r.is_live(now) {
        "live"
    } else {
        "expired"
    };
    NodeRequest {
        id: r.id.clone(),
        pool: r.pool.clone(),
        count: r.count,
        ttl_seconds: r.ttl_seconds(),
        requester: r.requester.clone(),
        job: r.job.clone(),
        created_at: Rfc3339(r.created_at),
        expires_at: Rfc3339(r.expires_at),
        released_at: r.released_at.map(Rfc3339),
        released_by: r.released_by.clone(),
        state: state.to_string(),
    }
}

/// An entry of the audit and event log.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    pub id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Rfc3339,
    pub kind: String,
    pub pool: Option<String>,
    pub node: Option<String>,
    pub actor: String,
    pub message: String,
    pub data: Value,
}

/// An event of `GET /v1/events`.
pub fn event_json(e: &Event) -> EventView {
    EventView {
        id: e.id,
        at: Rfc3339(e.at),
        kind: e.kind.clone(),
        pool: e.pool.clone(),
        node: e.node.clone(),
        actor: e.actor.clone(),
        message: e.message.clone(),
        data: e.data.clone(),
    }
}

/// A token as listed (never its hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Token {
    pub name: String,
    pub role: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Rfc3339,
}

/// A token as listed: never its hash.
pub fn token_json(t: &TokenRecord) -> Token {
    Token {
        name: t.name.clone(),
        role: t.role.clone(),
        created_at: Rfc3339(t.created_at),
    }
}

/// A time in Unix seconds, shown as RFC 3339 ([`rfc3339`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub UnixSeconds);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        rfc3339(self.0).serialize(serializer)
    }
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

/// `GET /v1/pools/{name}/plan`: what the next activation would do — the plan with the
/// controller's holds applied, as the controller would take it — and what those holds keep
/// back, until when and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    /// What the activation would do, in order, each with its reason.
    pub actions: Vec<PlannedStep>,
    /// Why the pool cannot reach its desired count now, or other facts an admin should see
    /// (`"NoCapacity: ..."`, `"AtMax"`...): stable type, human text after.
    pub conditions: Vec<String>,
    /// Nodes counted toward the desired count (creating, starting, running, not draining).
    pub active: u32,
    pub desired: u32,
    /// Running nodes that did not register in time (bootstrap pools): deleted and replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zombies: Vec<String>,
    /// The pool's writes held back after failures (the controller's backoff), one per kind
    /// of write with a failure streak; empty when nothing is held.
    pub held: Vec<HeldWrites>,
    /// The earliest time a held write is tried again (RFC 3339), when the plan holds back
    /// steps it would otherwise take; null otherwise.
    pub held_until: Option<String>,
}

impl PlanView {
    /// The plan of either backend as the API shows it (one list of steps, whatever the pool).
    pub fn new(
        plan: &rb_core::PoolPlan,
        held: Vec<HeldWrites>,
        held_until: Option<String>,
    ) -> Self {
        use rb_core::PoolPlan;
        let (actions, conditions, active, desired, zombies) = match plan {
            PoolPlan::Vm(p) => (
                p.actions
                    .iter()
                    .map(|a| PlannedStep {
                        size: a.size.clone(),
                        priority: a.priority,
                        ..PlannedStep::of(a)
                    })
                    .collect(),
                &p.conditions,
                p.active,
                p.desired,
                &p.zombies,
            ),
            PoolPlan::Batch(p) => (
                p.actions
                    .iter()
                    .map(|a| PlannedStep {
                        targets: a.targets,
                        ..PlannedStep::of(a)
                    })
                    .collect(),
                &p.conditions,
                p.active,
                p.desired,
                &p.zombies,
            ),
        };
        Self {
            actions,
            conditions: conditions.clone(),
            active,
            desired,
            zombies: zombies.clone(),
            held,
            held_until,
        }
    }
}

/// One step of a plan: a write (or, `forget`, a bookkeeping step) on a node or Batch pool.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlannedStep {
    pub kind: rb_core::ActionKind,
    /// The VM or Batch node; for a create, the name the plan reserves; for a write on a
    /// Batch pool, `batch:{pool}`.
    pub node: String,
    /// VM creates: the size and priority chosen (null otherwise).
    pub size: Option<String>,
    pub priority: Option<rb_core::Priority>,
    /// Batch pool creates and resizes: the fixed-scale targets to set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<rb_core::BatchTargets>,
    pub reason: String,
}

impl PlannedStep {
    fn of(a: &impl rb_core::Step) -> Self {
        Self {
            kind: a.kind(),
            node: a.node().to_owned(),
            size: None,
            priority: None,
            targets: None,
            reason: a.reason().to_owned(),
        }
    }
}

/// One kind of write the controller holds for a pool after failed attempts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HeldWrites {
    /// The kind of write held (`create`, `start`, `deallocate`, `delete`, `create_pool`,
    /// `resize_pool`, `delete_pool`, `stop_resize`).
    pub kind: rb_core::ActionKind,
    /// Steps the plan wants now that the hold keeps back (0: none wanted, or the hold has
    /// lapsed and the next attempt is due).
    pub steps: u32,
    /// Writes of this kind are not tried before then (RFC 3339); after it, while the
    /// failures last, one at a time.
    pub until: String,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// The last failure's ARM error code.
    pub code: String,
    /// Why: the pool's condition (`Blocked`, with what to fix, or `BackingOff`), with the
    /// time the streak's condition appeared.
    pub condition: rb_core::Condition,
}

/// Now, in Unix seconds.
pub fn now() -> UnixSeconds {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_changes_are_cut_from_messages() {
        assert_eq!(
            redact_bootstrap_change(
                "pool spec replaced: bootstrap {\"domain\":{\"ou\":\"OU=Render, DC=x\"}} → null, max 5 → 6"
            ),
            "pool spec replaced: bootstrap changed, max 5 → 6"
        );
        assert_eq!(
            redact_bootstrap_change(
                "pool spec replaced: max 5 → 6, bootstrap null → {\"env\":{\"A\":\"x → y\"}}"
            ),
            "pool spec replaced: max 5 → 6, bootstrap changed"
        );
        for same in [
            "pool spec replaced, unchanged",
            "pool created: 2 nodes, bootstrap ",
            "tags {\"a\":\"bootstrap x\"} → {}",
        ] {
            assert_eq!(redact_bootstrap_change(same), same);
        }
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(1_700_000_000), json!("2023-11-14T22:13:20Z"));
    }
}
