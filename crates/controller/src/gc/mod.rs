//! The garbage collector: anything of ours that no pool wants is removed after a grace
//! period — VMs tagged with our owner id whose pool is gone, and NICs or OS disks named like
//! ours that no VM uses (left by a failed create or a VM deleted with `Detach`).
//!
//! Inline NICs and OS disks do not carry the VM's tags, so they are recognised by name
//! (`{pool}-{index:05}-nic`, `{pool}-{index:05}-os`) inside our resource group, and only
//! once they have been seen detached for the whole grace period.
//!
//! The same NIC listing gives our VMs their private IP addresses (`node list`'s IP column):
//! no read per VM, one paged list of the resource group's NICs at the sweep's cadence, or
//! sooner (at most every [`ADDRESS_LIST_INTERVAL`]) while a VM of ours has no known address.
//! The NIC's address is Azure's truth and replaces what a node said at registration; an
//! address goes with its node's inventory row.
//!
//! What has been seen and tried is typed in [`grace::GraceTracker`]: each piece of garbage by
//! kind and name, its first sighting, and its failed deletes, held back 10 s doubling (to
//! `error_backoff_max_seconds`) rather than repeated at every sweep.

pub(crate) mod grace;

/// What one round of the garbage collector reads: an activation's complete listing of our
/// VMs and the pools it planned (what is not theirs is garbage).
pub(crate) struct Round {
    pub activation: u64,
    pub owner: String,
    pub observation: Arc<Observation>,
    pub pools: Arc<Vec<store::PoolRecord>>,
}

pub(crate) use grace::{Garbage, Kind};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rb_core::ActionKind;
use serde_json::json;
use store::{IntentOutcome, NewEvent, NewIntent};

use crate::Shared;
use crate::observe::Observation;

/// Whether `name` is `{pool}-{5 digits}-{suffix}` with a valid pool name.
fn ours(name: &str, suffix: &str) -> bool {
    let Some(stem) = name.strip_suffix(suffix).and_then(|s| s.strip_suffix('-')) else {
        return false;
    };
    let Some((pool, index)) = stem.rsplit_once('-') else {
        return false;
    };
    index.len() == 5
        && index.bytes().all(|b| b.is_ascii_digit())
        && pool.len() <= 20
        && pool.starts_with(|c: char| c.is_ascii_lowercase())
        && pool
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True once `g` has been garbage for the whole grace period, and no failed delete of it is
/// being held back.
pub(crate) fn due(sh: &Shared, g: &Garbage) -> bool {
    sh.gc
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .due(g, sh.cfg.gc_grace, Instant::now())
}

/// Deleting `g` failed: the next attempt is held back (see [`grace::GraceTracker::failed`]).
pub(crate) fn failed(sh: &Shared, g: &Garbage) {
    sh.gc.lock().unwrap_or_else(|p| p.into_inner()).failed(
        g,
        sh.cfg.error_backoff_max,
        Instant::now(),
    );
}

/// Forgets what of `kind` is not in `garbage` any more.
pub(crate) fn forget_except(sh: &Shared, kind: Kind, garbage: &HashSet<Garbage>) {
    sh.gc
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .forget_except(kind, garbage);
}

/// How often NICs and disks are listed: two paged reads that the activation's observation
/// does not give, so not on every activation (they run every few seconds while scaling), but
/// often enough that leftovers go within about 1.25 grace periods.
fn sweep_interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Least time between two NIC listings made because a VM of ours has no known address.
const ADDRESS_LIST_INTERVAL: Duration = Duration::from_secs(5);

/// Whether NICs are to be listed for addresses: some VM of ours that is not being deleted
/// has no known address, and NICs were not listed in the last [`ADDRESS_LIST_INTERVAL`].
async fn addresses_due(sh: &Shared, obs: &Observation, pools: &HashSet<String>) -> bool {
    let recent = sh
        .nics_listed_at
        .lock()
        .ok()
        .and_then(|t| *t)
        .is_some_and(|t| t.elapsed() < ADDRESS_LIST_INTERVAL);
    if recent {
        return false;
    }
    let Ok(known) = sh.store.node_ips().await else {
        return false;
    };
    obs.vms.values().any(|vm| {
        pools.contains(&vm.pool)
            && vm.state != rb_core::NodeState::Deleting
            && !known.contains_key(&vm.name)
    })
}

/// Records the private IP addresses the NICs give our VMs (those of known pools).
async fn record_addresses(
    sh: &Shared,
    obs: &Observation,
    pools: &HashSet<String>,
    nics: &[arm_model::network::NetworkInterface],
) {
    let addresses = crate::observe::nic_addresses(nics);
    let ips: Vec<(String, String)> = obs
        .vms
        .iter()
        .filter(|(_, vm)| pools.contains(&vm.pool))
        .filter_map(|(key, vm)| addresses.get(key).map(|ip| (vm.name.clone(), ip.clone())))
        .collect();
    if let Err(e) = sh.store.set_node_ips(&ips).await {
        tracing::warn!(error = %crate::chain(&e), "cannot record the nodes' addresses");
    }
}

/// One delete of the garbage collector, as its journal and its event describe it.
pub(crate) struct GarbageDelete<'a> {
    pub garbage: Garbage,
    /// The intent's node: the VM, NIC or disk name, or `batch:{name}` for a Batch pool.
    pub node: String,
    /// The pool it was tagged with, if any ("" when unknown).
    pub pool: &'a str,
    pub kind: ActionKind,
    /// `gc.vm`, `gc.nic`, `gc.disk`, `gc.batch_pool`.
    pub event: &'static str,
    pub message: String,
    pub data: serde_json::Value,
}

/// Deletes a piece of garbage, journalled like every ARM write: the intent (with its `gc.*`
/// event, one transaction) before the call, the operation once ARM took it, the outcome when
/// it ends, followed in the background with the node counted in flight (`executing`), so a
/// restart meanwhile follows the delete to its end and never takes it for one made outside
/// renderburst. A failed delete is held back before the next attempt
/// ([`grace::GraceTracker::failed`]).
pub(crate) async fn delete_journalled<F>(sh: &Arc<Shared>, d: GarbageDelete<'_>, call: F)
where
    F: std::future::Future<Output = azure::Result<Option<azure::Operation>>>,
{
    if !sh.claim(&d.node) {
        return; // Already being deleted.
    }
    let opened = sh
        .store
        .open_intent_with_event(
            &NewIntent {
                pool: d.pool.to_owned(),
                node: d.node.clone(),
                kind: d.kind,
                detail: json!({"garbage": true}),
                reason: d.message.clone(),
            },
            &NewEvent {
                kind: d.event.into(),
                pool: (!d.pool.is_empty()).then(|| d.pool.to_owned()),
                node: matches!(d.garbage, Garbage::Vm(_)).then(|| d.node.clone()),
                actor: "controller".into(),
                message: d.message.clone(),
                data: d.data.clone(),
            },
        )
        .await;
    let intent = match opened {
        Ok((intent, _)) => intent,
        Err(e) => {
            tracing::warn!(node = %d.node, error = %crate::chain(&e), "cannot journal a garbage collection: not deleting it now");
            sh.release(&d.node);
            return;
        }
    };
    let failed_outcome = |e: &azure::ArmError| IntentOutcome::Failed {
        code: e.code.clone(),
        message: e.message.clone(),
    };
    let op = match call.await {
        Ok(op) => op,
        Err(e) => {
            tracing::warn!(node = %d.node, error = %crate::chain(&e), "garbage collection failed");
            let _ = sh.store.close_intent(intent, &failed_outcome(&e)).await;
            failed(sh, &d.garbage);
            sh.release(&d.node);
            return;
        }
    };
    if let Some(v) = op.as_ref().and_then(|op| serde_json::to_value(op).ok()) {
        let _ = sh.store.set_intent_operation(intent, &v).await;
    }
    let sh = sh.clone();
    tokio::spawn(async move {
        let outcome = match op {
            None => IntentOutcome::Succeeded,
            Some(op) => match op.wait_done(&sh.arm).await {
                Ok(()) => IntentOutcome::Succeeded,
                Err(e) => {
                    tracing::warn!(node = %d.node, error = %crate::chain(&e), "garbage collection failed");
                    failed(&sh, &d.garbage);
                    failed_outcome(&e)
                }
            },
        };
        let _ = sh.store.close_intent(intent, &outcome).await;
        sh.release(&d.node);
        sh.settled.notify_one();
    });
}

/// What a swept resource named like ours and used by no VM is.
#[derive(Clone, Copy)]
enum Leftover {
    Nic,
    Disk,
}

/// A NIC or OS disk named like ours that no VM uses: garbage, deleted once due.
async fn leftover(sh: &Arc<Shared>, garbage: &mut HashSet<Garbage>, name: &str, what: Leftover) {
    let rg = &sh.cfg.resource_group;
    let (g, kind, event, words) = match what {
        Leftover::Nic => (Garbage::nic(name), ActionKind::DeleteNic, "gc.nic", "NIC"),
        Leftover::Disk => (
            Garbage::disk(name),
            ActionKind::DeleteDisk,
            "gc.disk",
            "OS disk",
        ),
    };
    garbage.insert(g.clone());
    if !due(sh, &g) {
        return;
    }
    let call = async {
        match what {
            Leftover::Nic => sh.arm.delete_nic(rg, name).await,
            Leftover::Disk => sh.arm.delete_disk(rg, name).await,
        }
    };
    let d = GarbageDelete {
        garbage: g,
        node: name.to_owned(),
        pool: "",
        kind,
        event,
        message: format!("deleting {words} {name}: no VM uses it"),
        data: json!({}),
    };
    delete_journalled(sh, d, call).await;
}

/// Whether recovery leaves an open intent of this kind to the garbage collector's next
/// listing (a NIC or disk delete: nothing in the inventory depends on it).
pub(crate) fn is_gc_kind(kind: ActionKind) -> bool {
    matches!(kind, ActionKind::DeleteNic | ActionKind::DeleteDisk)
}

/// True (and the sweep time recorded) if NICs and disks are due to be listed.
fn sweep_due(sh: &Shared) -> bool {
    let Ok(mut last) = sh.gc_last_sweep.lock() else {
        return false;
    };
    let due = last.is_none_or(|t| t.elapsed() >= sweep_interval(sh.cfg.gc_grace));
    if due {
        *last = Some(Instant::now());
    }
    due
}

pub(crate) async fn collect(
    sh: &Arc<Shared>,
    obs: &Observation,
    pools: &HashSet<String>,
    owner: &str,
) {
    let rg = &sh.cfg.resource_group;
    let mut garbage = HashSet::new();
    for vm in obs.vms.values() {
        if pools.contains(&vm.pool) {
            continue;
        }
        let g = Garbage::vm(&vm.name);
        garbage.insert(g.clone());
        if due(sh, &g) && vm.state != rb_core::NodeState::Deleting {
            // The VM's NIC and OS disk go with it (`deleteOption: Delete`); leftovers of other
            // writes are swept below by name.
            let message = "deleting a VM of ours that no pool wants".to_owned();
            delete_journalled(
                sh,
                GarbageDelete {
                    garbage: g,
                    node: vm.name.clone(),
                    pool: &vm.pool,
                    kind: ActionKind::Delete,
                    event: "gc.vm",
                    message,
                    data: json!({"owner": owner}),
                },
                sh.arm.delete_vm(rg, &vm.name),
            )
            .await;
        }
    }
    let sweep = sweep_due(sh);
    let list_nics = sweep || addresses_due(sh, obs, pools).await;
    let mut nics_listed = false;
    match if list_nics {
        if let Ok(mut t) = sh.nics_listed_at.lock() {
            *t = Some(Instant::now());
        }
        sh.arm.list_nics(Some(rg), None).await
    } else {
        Ok(Vec::new())
    } {
        Ok(nics) => {
            nics_listed = list_nics;
            if list_nics {
                record_addresses(sh, obs, pools, &nics).await;
            }
            for nic in nics {
                let Some(name) = nic.name.clone() else {
                    continue;
                };
                let attached = nic
                    .properties
                    .as_ref()
                    .and_then(|p| p.virtual_machine.as_ref())
                    .is_some();
                if attached || !ours(&name, "nic") {
                    continue;
                }
                leftover(sh, &mut garbage, &name, Leftover::Nic).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %crate::chain(&e), "cannot list NICs for garbage collection")
        }
    }
    match if sweep {
        sh.arm.list_disks(rg, None).await
    } else {
        Ok(Vec::new())
    } {
        Ok(disks) => {
            for disk in disks {
                let Some(name) = disk.name.clone() else {
                    continue;
                };
                if disk.managed_by.is_some() || !ours(&name, "os") {
                    continue;
                }
                leftover(sh, &mut garbage, &name, Leftover::Disk).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %crate::chain(&e), "cannot list disks for garbage collection")
        }
    }
    // Forget what is no longer garbage, so its grace period starts over if it comes back
    // (NICs and disks only when they were listed this time). Batch pools are collected
    // separately (`batch::collect_garbage`).
    forget_except(sh, Kind::Vm, &garbage);
    if nics_listed {
        forget_except(sh, Kind::Nic, &garbage);
    }
    if sweep {
        forget_except(sh, Kind::Disk, &garbage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_scale_with_the_grace_period() {
        assert_eq!(sweep_interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            sweep_interval(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn recognises_our_names_only() {
        assert!(ours("maya-spot-00012-nic", "nic"));
        assert!(ours("maya-00001-os", "os"));
        assert!(!ours("maya-0001-nic", "nic"));
        assert!(!ours("Maya-00001-nic", "nic"));
        assert!(!ours("someone-elses-disk", "os"));
        assert!(!ours("maya-00001-nic", "os"));
    }
}
