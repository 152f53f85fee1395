//! `mode: batch` pools: observe the Azure Batch pool (management plane) and its nodes (data
//! plane), keep the inventory and the Batch bookkeeping in the store, and execute what the
//! pure Batch planner (`rb_core::batch`) decided.
//!
//! Batch nodes live in the `vms` inventory under their Batch node id (what a node sees as
//! `AZ_BATCH_NODE_ID`), with the Batch node state as `power_state`, so heartbeats, drain and
//! `GET /v1/nodes` treat them like VMs.
//!
//! Writes follow the VM executor's rules: an intent before every call (`batch:{pool}` for the
//! pool itself, the node id for a removal), the pool's DELETE operation stored for recovery,
//! and the outcome recorded. The create is a GET then a PUT, under a name that never changes,
//! so a daemon killed at any point adopts the pool it (or its previous run) created and never
//! makes a second one.
//!
//! One concern a file, as on the VM side of the controller:
//! - `observe`: the account list, the pool and its nodes into the store (inventory, Batch
//!   state, the pool's observation, task status `batch:{pool}`), resize errors,
//!   enrollment-token age;
//! - `bodies`: the Batch pool body and its start tasks (what is sent to Azure);
//! - `execute`: dispatching the plan's Batch actions, the pool writes and node removals;
//! - `gc`: garbage collection of Batch pools no pool wants;
//! - `backend`: the steps above behind the reconciler's [`crate::backend::PoolBackend`].
//!
//! This file keeps what they share: where a pool's Batch pool lives, ownership, the error
//! constructors, and the intent kinds recovery resolves by observation.

mod backend;
mod bodies;
mod execute;
mod gc;
mod observe;

use arm_model::batch::Pool;
use azure::{ArmError, ErrorKind};
use rb_core::batch::batch_pool_name;
use rb_core::{ActionKind, BatchSpec, PoolSpec, TAG_OWNER};

use crate::Shared;

pub(crate) use backend::BatchPools;
pub use bodies::pool_model;
use execute::dispatch;
use gc::collect_garbage;
use observe::{ACCOUNT_NOT_FOUND, observe, observe_accounts};

struct Target<'a> {
    b: &'a BatchSpec,
    rg: String,
    account: &'a str,
    name: &'a str,
}

fn target<'a>(sh: &Shared, spec: &'a PoolSpec) -> Option<Target<'a>> {
    let b = spec.batch.as_ref()?;
    Some(Target {
        b,
        rg: b
            .resource_group
            .clone()
            .unwrap_or_else(|| sh.cfg.resource_group.clone()),
        account: &b.account,
        name: batch_pool_name(spec),
    })
}

/// Whether a Batch pool carries our owner id (tag or metadata).
fn owned_by(pool: &Pool, owner: &str) -> bool {
    let tagged = pool.tags.as_ref().is_some_and(|t| {
        t.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(TAG_OWNER) && v == owner)
    });
    let meta = pool
        .properties
        .as_ref()
        .and_then(|p| p.metadata.as_ref())
        .is_some_and(|m| m.iter().any(|i| i.name == TAG_OWNER && i.value == owner));
    tagged || meta
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn config_err(message: impl Into<String>) -> ArmError {
    ArmError::new(ErrorKind::Config, "Config", message)
}

fn decode_err(message: impl Into<String>) -> ArmError {
    ArmError::new(ErrorKind::Decode, "DecodeError", message)
}

/// Whether recovery resolves this intent kind by observation rather than by looking up a VM.
pub(crate) fn is_batch_kind(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::CreatePool
            | ActionKind::ResizePool
            | ActionKind::RemoveNode
            | ActionKind::DeletePool
            | ActionKind::StopResize
            | ActionKind::RotateEnrollToken
    )
}
