//! The planner: a pure function from a pool's spec, its desired count, what Azure shows and
//! what renderburst is already doing, to the actions of one activation, each with a reason.

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::offerings::Unavailable;
use crate::spec::{PoolSpec, Priority};

/// A node's state as observed in Azure (or in flight through renderburst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Creating,
    Starting,
    Running,
    /// Powered off but still allocated (and billed): not renderburst's doing.
    Stopped,
    Deallocating,
    Deallocated,
    Deleting,
    /// Provisioning failed (for example AllocationFailed on create).
    Failed,
    /// In renderburst's inventory but no longer in Azure (deleted or evicted outside).
    Missing,
}

/// One VM of the pool, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    /// VM size, canonical casing.
    pub size: String,
    pub priority: Priority,
    pub state: NodeState,
    /// ARM error code when `state` is Failed.
    pub failed_code: Option<String>,
    pub created_at: UnixSeconds,
    /// When it last started running (creation counts); None if never ran.
    pub started_at: Option<UnixSeconds>,
    /// Last heartbeat from the render manager or the node, and what it said.
    pub last_heartbeat: Option<UnixSeconds>,
    pub busy: bool,
    /// Marked for drain: gets no new work, leaves when idle.
    pub draining: bool,
    /// renderburst has an operation in flight on it (an open intent): leave it alone.
    pub in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Create a VM (one ARM write: NIC and OS disk inline, `deleteOption: Delete`).
    Create,
    Start,
    Deallocate,
    Delete,
    /// Drop a Missing node from the inventory (no ARM call).
    Forget,
}

/// One thing to do, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// VM name; for Create, the new deterministic name.
    pub node: String,
    /// For Create: the size and priority chosen.
    pub size: Option<String>,
    pub priority: Option<Priority>,
    pub reason: String,
}

/// Everything the planner needs. No IO handles, no clock.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub spec: &'a PoolSpec,
    pub desired: u32,
    pub nodes: &'a [NodeView],
    pub unavailable: &'a [Unavailable],
    /// The next free node index for new names (`{pool}-{index:05}`); the store keeps it so
    /// names are never reused.
    pub next_index: u64,
    /// The pool is being deleted: remove every node (busy ones once idle).
    pub deleting: bool,
    pub now: UnixSeconds,
}

/// The plan of one activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Why the pool cannot reach its desired count now, or other facts an admin should
    /// see (`"NoCapacity: ..."`, `"AtMax"`...). Stable prefixes, human text after.
    pub conditions: Vec<String>,
    /// Nodes counted toward the desired count (creating, starting, running, not draining).
    pub active: u32,
    pub desired: u32,
}

/// The VM name for a node index: `{pool}-{index:05}`.
pub fn node_name(pool: &str, index: u64) -> String {
    format!("{pool}-{index:05}")
}

/// Plans one activation of one pool.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let _ = input;
    todo!("the planner is being written")
}
