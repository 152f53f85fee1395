//! The inventory brought in line with what Azure shows, after each observation: VMs seen
//! are recorded as Azure shows them (an in-flight create Azure already shows failed stays
//! `creating` until its outcome is recorded), VMs gone are forgotten, attributed to our own
//! delete, or counted as Spot evictions, by the intent journal.

use std::collections::{HashMap, HashSet};

use rb_core::task::Task;
use rb_core::{NodeState, PoolMode, UnixSeconds};
use store::VmRecord;

use crate::observe::Observation;
use crate::{Shared, execute};

/// Brings the inventory in line with what Azure shows.
pub(crate) async fn sync(
    sh: &Shared,
    obs: &Observation,
    in_flight: &HashSet<String>,
    now: UnixSeconds,
) -> Result<(), store::StoreError> {
    let store = &sh.store;
    let known: HashMap<String, VmRecord> = store
        .list_vms(None)
        .await?
        .into_iter()
        .map(|k| (k.name.to_ascii_lowercase(), k))
        .collect();
    // Rows that changed, written in one transaction at the end: at 5,000 VMs one commit per
    // VM per activation was most of an activation's time.
    let mut changed: Vec<VmRecord> = Vec::new();
    // Batch pools' nodes are not VMs: `batch::observe` keeps their rows.
    let pools: HashMap<String, rb_core::PoolSpec> = store
        .list_pools()
        .await?
        .into_iter()
        .filter(|p| p.spec.mode == PoolMode::Vm)
        .map(|p| (p.spec.name.clone(), p.spec))
        .collect();
    let mut seen = HashSet::new();
    for vm in obs.vms.values() {
        if !pools.contains_key(&vm.pool) {
            continue; // Not a pool we manage: the garbage collector's business.
        }
        let key = vm.name.to_ascii_lowercase();
        seen.insert(key.clone());
        let old = known.get(&key);
        // A Spot VM we left running that Azure shows deallocated, with nothing of ours in
        // flight on it: evicted under the Deallocate policy.
        if let Some(o) = old
            && vm.state == NodeState::Deallocated
            && vm.priority == rb_core::Priority::Spot
            && matches!(
                o.state,
                NodeState::Running | NodeState::Starting | NodeState::Deallocating
            )
            && !in_flight.contains(&key)
            && !last_write_was(
                sh,
                &vm.name,
                &[rb_core::ActionKind::Deallocate, rb_core::ActionKind::Delete],
            )
            .await?
        {
            evicted(sh, &vm.pool, &vm.name, "deallocate", &vm.size).await?;
        }
        // A create of ours still in flight that Azure already shows failed stays
        // `creating` until the executor records the outcome (the operation's poll comes
        // after the listing): that outcome may mark the offering unavailable, and a
        // `failed` node here would have the planner send a replacement create to the same
        // offering first (seen under load: two creates into a size that had run out).
        let state = if vm.state == NodeState::Failed
            && in_flight.contains(&key)
            && old.is_some_and(|o| o.state == NodeState::Creating)
        {
            NodeState::Creating
        } else {
            vm.state
        };
        let started_at = match (vm.state, old.and_then(|o| o.started_at)) {
            (NodeState::Running, Some(t)) if old.is_some_and(|o| o.state == NodeState::Running) => {
                Some(t)
            }
            (NodeState::Running, _) => Some(now),
            (_, t) => t,
        };
        let deallocated_at = match (vm.state, old.and_then(|o| o.deallocated_at)) {
            (NodeState::Deallocated, Some(t))
                if old.is_some_and(|o| o.state == NodeState::Deallocated) =>
            {
                Some(t)
            }
            (NodeState::Deallocated, _) => Some(now),
            (_, t) => t,
        };
        let row = VmRecord {
            name: vm.name.clone(),
            pool: vm.pool.clone(),
            size: vm.size.clone(),
            priority: vm.priority,
            state,
            power_state: vm.power.clone(),
            azure_id: Some(vm.id.clone()),
            failed_code: vm.failed_code.clone(),
            created_at: old.map_or(now, |o| o.created_at),
            started_at,
            deallocated_at,
            last_seen: Some(now),
            last_heartbeat: None,
            busy: false,
            draining: false,
            registered_at: None,
            node_seen_at: None,
        };
        if old.is_none_or(|o| needs_write(o, &row)) {
            changed.push(row);
        }
    }
    store.upsert_vms(&changed).await?;
    for (key, k) in known.iter().filter(|(_, k)| pools.contains_key(&k.pool)) {
        let key = key.clone();
        if seen.contains(&key) || in_flight.contains(&key) || k.state == NodeState::Missing {
            continue;
        }
        // Gone, and our last write on it was a delete (the journal outlives restarts,
        // where memory does not): our delete, whose outcome a stop cut short of recording.
        // A parked VM deleted by someone else is still out-of-band.
        if last_write_was(sh, &k.name, &[rb_core::ActionKind::Delete]).await? {
            tracing::info!(pool = %k.pool, node = %k.name, "gone after our own delete");
            store.delete_vm(&k.name).await?;
            continue;
        }
        // A Spot VM of a pool whose eviction policy is Delete: Azure deletes the VM and
        // its disks when it evicts it, so vanishing is what an eviction looks like.
        let policy_delete = pools.get(&k.pool).is_some_and(|p| {
            p.priority == rb_core::Priority::Spot
                && p.spot.eviction_policy == rb_core::spec::EvictionPolicy::Delete
        });
        if k.priority == rb_core::Priority::Spot
            && policy_delete
            && matches!(
                k.state,
                NodeState::Running | NodeState::Starting | NodeState::Deleting
            )
        {
            evicted(sh, &k.pool, &k.name, "delete", &k.size).await?;
            store.delete_vm(&k.name).await?;
            continue;
        }
        // In the inventory, not in Azure, nothing of ours in flight: deleted outside
        // renderburst.
        let mut gone = k.clone();
        gone.state = NodeState::Missing;
        store.upsert_vm(&gone).await?;
    }
    Ok(())
}

/// How stale a row's `last_seen` may get before an unchanged row is written again (nothing
/// reads it finer; at 5,000 VMs rewriting every row costs a large transaction).
const LAST_SEEN_RESOLUTION: UnixSeconds = 300;

/// Whether an observed row differs from the stored one in what the controller writes
/// (`upsert_vm` keeps the node API's columns), or its `last_seen` is older than
/// [`LAST_SEEN_RESOLUTION`].
fn needs_write(old: &VmRecord, new: &VmRecord) -> bool {
    old.pool != new.pool
        || old.size != new.size
        || old.priority != new.priority
        || old.state != new.state
        || old.power_state != new.power_state
        || old.azure_id != new.azure_id
        || old.failed_code != new.failed_code
        || old.created_at != new.created_at
        || old.started_at != new.started_at
        || old.deallocated_at != new.deallocated_at
        || old
            .last_seen
            .is_none_or(|t| new.last_seen.unwrap_or(t) - t >= LAST_SEEN_RESOLUTION)
}

/// Whether renderburst's last write on the node (by the intent journal) was one of
/// `kinds` and did not fail: then what Azure shows now is our doing.
async fn last_write_was(
    sh: &Shared,
    node: &str,
    kinds: &[rb_core::ActionKind],
) -> Result<bool, store::StoreError> {
    let last = sh.store.last_intent_for(node).await?;
    Ok(last.is_some_and(|i| {
        kinds.contains(&i.kind) && !matches!(i.outcome, Some(store::IntentOutcome::Failed { .. }))
    }))
}

/// A Spot VM of a VM pool was evicted: an event and the pool's eviction count (shown as
/// the pool's `status.preempted`), not an out-of-band delete.
///
/// Azure says what an eviction does, per the VM's `evictionPolicy`, not that one
/// happened: "Deallocate" leaves the VM stopped-deallocated with its disks, "Delete"
/// removes the VM and its disks (Microsoft Learn, "Azure Spot Virtual Machines",
/// https://learn.microsoft.com/azure/virtual-machines/spot-vms, section "Eviction
/// policy"). So an eviction is inferred from the stored state and the intent journal:
/// a Spot VM we last started or created that Azure now shows deallocated, or that is gone
/// from a pool whose policy is Delete.
async fn evicted(
    sh: &Shared,
    pool: &str,
    node: &str,
    policy: &str,
    size: &str,
) -> Result<(), store::StoreError> {
    let total = sh.store.bump_task_counter(&Task::evictions(pool)).await?;
    tracing::info!(pool, node, policy, "Spot VM evicted");
    let what = if policy == "delete" {
        "deleted it"
    } else {
        "deallocated it"
    };
    let _ = execute::event(
            sh,
            "node.evicted",
            Some(pool),
            Some(node),
            &format!("Spot VM evicted by Azure, which {what} (eviction policy {policy}); the pool replaces the capacity"),
            serde_json::json!({"eviction_policy": policy, "size": size, "evictions_total": total}),
        )
        .await;
    Ok(())
}
