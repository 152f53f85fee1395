//! What a pool's plan reads, owned: the store builds it from its rows (and the writes the
//! controller has in flight), core plans from it. The store holds no policy and the planner
//! no IO; the controller and the API's what-if plan the same snapshot the same way.

use serde::{Deserialize, Serialize};

use crate::batch::{BatchInput, BatchNodeView, BatchPoolView, plan_batch};
use crate::plan::{NodeView, Plan, PlanInput, ReusableName, plan};
use crate::{Hold, PoolSpec, Unavailable, UnixSeconds};

/// A pool's state as the planner reads it, per kind of pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PoolSnapshot {
    Vm(VmSnapshot),
    Batch(BatchSnapshot),
}

/// A `mode: vm` pool: its inventory and what its creates may be named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSnapshot {
    pub desired: u32,
    pub nodes: Vec<NodeView>,
    /// Offerings avoided now (every pool's: capacity and quota are the subscription's).
    pub unavailable: Vec<Unavailable>,
    /// The pool's next fresh node index.
    pub next_index: u64,
    pub deleting: bool,
    /// Names of failed creates kept for the next creates.
    pub reusable: Vec<ReusableName>,
}

/// A `mode: batch` pool: its last observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSnapshot {
    pub desired: u32,
    /// The controller has observed the Batch pool at least once (an unobserved pool is not a
    /// missing one: nothing is planned before).
    pub observed: bool,
    pub pool: Option<BatchPoolView>,
    pub nodes: Vec<BatchNodeView>,
    pub unavailable: Vec<Unavailable>,
    pub empty_since: Option<UnixSeconds>,
    pub pool_in_flight: bool,
    pub deleting: bool,
}

impl PoolSnapshot {
    pub fn desired(&self) -> u32 {
        match self {
            PoolSnapshot::Vm(s) => s.desired,
            PoolSnapshot::Batch(s) => s.desired,
        }
    }

    /// The VM pool's next fresh index, which its plan's fresh names start from: what the
    /// store checks when it reserves them ([`crate::plan::Plan`] creates name their VMs).
    pub fn next_index(&self) -> Option<u64> {
        match self {
            PoolSnapshot::Vm(s) => Some(s.next_index),
            PoolSnapshot::Batch(_) => None,
        }
    }

    /// The pool's plan now. `hold` is the controller's backoff of VM creates; a Batch pool's
    /// holds apply to its plan afterwards ([`crate::apply_holds`]).
    pub fn plan(&self, spec: &PoolSpec, hold: Option<&Hold>, now: UnixSeconds) -> Plan {
        match self {
            PoolSnapshot::Vm(s) => plan(&PlanInput {
                spec,
                desired: s.desired,
                nodes: &s.nodes,
                unavailable: &s.unavailable,
                next_index: s.next_index,
                deleting: s.deleting,
                hold,
                reusable: &s.reusable,
                now,
            }),
            PoolSnapshot::Batch(s) if !s.observed => Plan {
                desired: s.desired,
                conditions: vec![
                    "NotObserved: the Batch pool has not been observed yet".to_string(),
                ],
                ..Plan::default()
            },
            PoolSnapshot::Batch(s) => plan_batch(&BatchInput {
                spec,
                desired: s.desired,
                pool: s.pool.as_ref(),
                nodes: &s.nodes,
                unavailable: &s.unavailable,
                empty_since: s.empty_since,
                pool_in_flight: s.pool_in_flight,
                deleting: s.deleting,
                now,
            }),
        }
    }
}
