//! The Batch planner: a pure function from a `mode: batch` pool's spec, its desired count, the
//! Batch pool Azure shows and its nodes, to the actions of one activation, each with a reason.
//!
//! Batch allocates the nodes itself; renderburst only sets the pool's fixed-scale targets and
//! removes specific nodes. Rules, in the order they apply:
//! - nothing is done while an operation on the Batch pool is in flight, or the pool is not
//!   renderburst's (no owner tag and not adopted by `existing_pool`), or Batch is deleting it;
//! - no Batch pool: a persistent pool is created at once, an auto pool on the first demand,
//!   with its first targets in the same PUT; an adopted pool is never created;
//! - an auto pool that has been empty (no nodes, targets 0, desired 0) for
//!   `auto_delete_after_seconds` is deleted;
//! - while Batch resizes (`allocationState` not Steady) nothing else is done;
//! - the desired count splits into Spot first (up to `spot_cap`, dedicated keep at least
//!   `dedicated_floor`) and dedicated for the rest; while Batch cannot allocate Spot nodes
//!   (a resize error made the offering unavailable) and the spec allows it, dedicated nodes
//!   make up the shortfall;
//! - targets are never lowered below the nodes that exist, so Batch never picks a node to
//!   remove: scale-down removes *specific* nodes through the data plane, idle ones only (by
//!   heartbeat, as for VM pools), failed and drained ones at once, preempted and still-starting
//!   ones before working ones, newest first;
//! - the targets never ask Batch for more nodes than the desired count;
//! - the creation gate ([`crate::gate`]) caps how far the targets rise above the Batch pool's
//!   (a new pool's first targets above zero), Spot first, and shows its conditions then.

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::offerings::Unavailable;
use crate::plan::{ActionKind, NodeState, NodeView, Step};
use crate::spec::{PoolSpec, Priority};

/// What a Batch pool's plan does: writes on the Batch pool itself (one at a time, the intent
/// on [`pool_intent_node`]) and removals of specific nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchActionKind {
    /// Create the Batch pool (management plane PUT, with its first targets).
    CreatePool,
    /// Set the Batch pool's fixed-scale targets (management plane PATCH).
    ResizePool,
    /// Remove one Batch node (data plane `removenodes`; the executor groups them).
    RemoveNode,
    /// Delete the Batch pool (management plane DELETE, long-running).
    DeletePool,
    /// Stop the Batch pool's resize (management plane `stopResize`), so new targets can be set.
    StopResize,
    /// Replace the enrollment token in the Batch pool's start task (management plane PATCH);
    /// decided by the Batch controller from the token's age, not by the planner.
    RotateEnrollToken,
}

impl From<BatchActionKind> for ActionKind {
    fn from(k: BatchActionKind) -> Self {
        match k {
            BatchActionKind::CreatePool => ActionKind::CreatePool,
            BatchActionKind::ResizePool => ActionKind::ResizePool,
            BatchActionKind::RemoveNode => ActionKind::RemoveNode,
            BatchActionKind::DeletePool => ActionKind::DeletePool,
            BatchActionKind::StopResize => ActionKind::StopResize,
            BatchActionKind::RotateEnrollToken => ActionKind::RotateEnrollToken,
        }
    }
}

/// One thing a Batch pool's plan does, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAction {
    pub kind: BatchActionKind,
    /// The node to remove, or [`pool_intent_node`] for a write on the Batch pool.
    pub node: String,
    /// For CreatePool and ResizePool: the fixed-scale targets to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<BatchTargets>,
    pub reason: String,
}

impl Step for BatchAction {
    fn kind(&self) -> ActionKind {
        self.kind.into()
    }
    fn node(&self) -> &str {
        &self.node
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

/// The resize error Batch reports after a `stopResize`.
pub const RESIZE_STOPPED: &str = "ResizeStopped";

/// A Batch pool's fixed-scale targets (or current counts).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchTargets {
    pub dedicated: u32,
    /// `targetLowPriorityNodes`: Spot nodes.
    pub spot: u32,
}

impl BatchTargets {
    pub fn total(&self) -> u32 {
        self.dedicated.saturating_add(self.spot)
    }
}

/// A resize error Batch reported (`resizeOperationStatus.errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeErrorView {
    pub code: String,
    pub message: String,
}

/// The Batch pool as Azure shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPoolView {
    /// Tagged with our owner id, or adopted through `batch.existing_pool`.
    pub owned: bool,
    /// `provisioningState` is Deleting.
    pub deleting: bool,
    /// `allocationState` is Steady.
    pub steady: bool,
    pub targets: BatchTargets,
    pub current: BatchTargets,
    pub resize_errors: Vec<ResizeErrorView>,
}

/// One node of the Batch pool. `node.name` is the Batch node id; `node.priority` is Regular
/// for dedicated nodes and Spot for Spot nodes; `node.state` is mapped from the Batch state
/// by [`node_state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchNodeView {
    pub node: NodeView,
    /// The Batch node state as listed (`idle`, `running`, `creating`...).
    pub batch_state: String,
}

impl BatchNodeView {
    fn dedicated(&self) -> bool {
        self.node.priority == Priority::Regular
    }
}

/// Maps a Batch node state to renderburst's node states.
pub fn node_state(batch_state: &str) -> NodeState {
    match batch_state.to_ascii_lowercase().as_str() {
        "creating" => NodeState::Creating,
        "starting" | "waitingforstarttask" | "rebooting" | "reimaging" | "upgradingos" => {
            NodeState::Starting
        }
        "idle" | "running" | "offline" => NodeState::Running,
        "leavingpool" => NodeState::Deleting,
        "preempted" => NodeState::Preempted,
        "starttaskfailed" | "unusable" => NodeState::Failed,
        "deallocating" => NodeState::Deallocating,
        "deallocated" => NodeState::Deallocated,
        // "unknown": the node agent lost contact; Batch recovers it or marks it unusable.
        _ => NodeState::Starting,
    }
}

/// Everything the Batch planner needs. No IO handles, no clock.
#[derive(Debug, Clone)]
pub struct BatchInput<'a> {
    pub spec: &'a PoolSpec,
    pub desired: u32,
    /// The Batch pool, or None when Azure has none of that name.
    pub pool: Option<&'a BatchPoolView>,
    pub nodes: &'a [BatchNodeView],
    /// This pool's offerings Batch could not allocate lately (its size, Spot or regular).
    pub unavailable: &'a [Unavailable],
    /// Since when the pool has had no nodes and zero targets (auto lifecycle).
    pub empty_since: Option<UnixSeconds>,
    /// An operation on the Batch pool itself (create, resize, delete) is in flight.
    pub pool_in_flight: bool,
    /// The renderburst pool is being deleted.
    pub deleting: bool,
    /// Every reason the pool may not grow now ([`crate::gate`]): targets are not raised
    /// above the Batch pool's while it is closed, by at most what it lets through otherwise.
    pub gate: &'a crate::gate::CreateGate,
    pub now: UnixSeconds,
}

/// The `node` of intents about the Batch pool itself (create, resize, delete). `:` never
/// appears in node names, so it cannot collide with a VM or a Batch node. It names intents
/// (the `intents` table) and reads like the task-status key of the pool's observation,
/// [`crate::task::TaskKey::BatchPool`], but the two are unrelated: stored intents keep this
/// name, so it never changes.
pub fn pool_intent_node(pool: &str) -> String {
    format!("batch:{pool}")
}

/// The Batch pool's name in Azure: the adopted pool's, else the renderburst pool's.
pub fn batch_pool_name(spec: &PoolSpec) -> &str {
    spec.batch
        .as_ref()
        .and_then(|b| b.existing_pool.as_deref())
        .unwrap_or(&spec.name)
}

/// How the desired count splits between dedicated and Spot nodes, before any fallback.
pub fn split(spec: &PoolSpec, desired: u32) -> BatchTargets {
    let Some(b) = &spec.batch else {
        return BatchTargets {
            dedicated: desired,
            spot: 0,
        };
    };
    if spec.priority != Priority::Spot {
        return BatchTargets {
            dedicated: desired,
            spot: 0,
        };
    }
    let floor = b.dedicated_floor.min(desired);
    let spot = (desired - floor).min(b.spot_cap.unwrap_or(u32::MAX));
    BatchTargets {
        dedicated: desired - spot,
        spot,
    }
}

mod plan;
#[cfg(test)]
mod tests;

pub use plan::plan_batch;
