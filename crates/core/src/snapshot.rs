//! What a pool's plan reads, owned: the store builds it from its rows (and the writes the
//! controller has in flight), core plans from it. The store holds no policy and the planner
//! no IO; the controller and the API's what-if plan the same snapshot the same way.

use serde::{Deserialize, Serialize};

use crate::batch::{BatchAction, BatchInput, BatchNodeView, BatchPoolView, plan_batch};
use crate::gate::CreateGate;
use crate::plan::{NodeView, Plan, PlanInput, ReusableName, VmAction, plan};
use crate::{PoolSpec, Unavailable, UnixSeconds};

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
    /// Nodes whose own Compute bucket has no room now: the controller fills it from its ARM
    /// client's governor (the store cannot know), the what-if leaves it empty.
    #[serde(default)]
    pub no_room: std::collections::BTreeSet<String>,
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
    /// The pool's plan now, typed by its backend, through the creation `gate`; the holds on
    /// other kinds of write apply afterwards ([`PoolPlan::apply_holds`]).
    pub fn plan(&self, spec: &PoolSpec, gate: &CreateGate, now: UnixSeconds) -> PoolPlan {
        match self {
            PoolSnapshot::Vm(s) => PoolPlan::Vm(s.plan(spec, gate, now)),
            PoolSnapshot::Batch(s) => PoolPlan::Batch(s.plan(spec, gate, now)),
        }
    }
}

impl VmSnapshot {
    /// The VM pool's plan through the creation `gate` (the planner holds creates itself, so
    /// probes get fresh names).
    pub fn plan(&self, spec: &PoolSpec, gate: &CreateGate, now: UnixSeconds) -> Plan<VmAction> {
        plan(&PlanInput {
            spec,
            desired: self.desired,
            nodes: &self.nodes,
            unavailable: &self.unavailable,
            next_index: self.next_index,
            deleting: self.deleting,
            gate,
            reusable: &self.reusable,
            no_room: &self.no_room,
            now,
        })
    }
}

impl BatchSnapshot {
    /// The Batch pool's plan through the creation `gate`; nothing before the pool has been
    /// observed once.
    pub fn plan(&self, spec: &PoolSpec, gate: &CreateGate, now: UnixSeconds) -> Plan<BatchAction> {
        if !self.observed {
            return Plan {
                desired: self.desired,
                conditions: vec![
                    "NotObserved: the Batch pool has not been observed yet".to_string(),
                ],
                ..Plan::default()
            };
        }
        plan_batch(&BatchInput {
            spec,
            desired: self.desired,
            pool: self.pool.as_ref(),
            nodes: &self.nodes,
            unavailable: &self.unavailable,
            empty_since: self.empty_since,
            pool_in_flight: self.pool_in_flight,
            deleting: self.deleting,
            gate,
            now,
        })
    }
}

/// A pool's plan, typed by its backend (what the API's what-if shows, whatever the pool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PoolPlan {
    Vm(Plan<VmAction>),
    Batch(Plan<BatchAction>),
}

impl PoolPlan {
    /// Applies the controller's holds ([`crate::apply_holds`]) to whichever plan this is.
    pub fn apply_holds(&mut self, holds: &[(crate::ActionKind, crate::Hold)], now: UnixSeconds) {
        match self {
            PoolPlan::Vm(p) => {
                crate::apply_holds(p, holds, now);
            }
            PoolPlan::Batch(p) => {
                crate::apply_holds(p, holds, now);
            }
        }
    }

    /// How many of the plan's actions are writes of `kind`.
    pub fn count(&self, kind: crate::ActionKind) -> usize {
        use crate::plan::Step;
        match self {
            PoolPlan::Vm(p) => p.actions.iter().filter(|a| a.kind() == kind).count(),
            PoolPlan::Batch(p) => p.actions.iter().filter(|a| a.kind() == kind).count(),
        }
    }
}
