//! `mode: vm` pools as a [`PoolBackend`]: persistent VMs, observed by the activation's VM
//! listing, planned by core's VM planner ([`rb_core::plan`]), executed one ARM write per VM
//! ([`crate::execute`]), their leftovers (VMs, NICs, disks of no pool) collected by
//! [`crate::gc`].

use std::collections::HashSet;
use std::sync::Arc;

use rb_core::{CreateGate, Plan, PoolSpec, UnixSeconds, VmAction, VmSnapshot};
use store::PoolRecord;

use crate::backend::{Activation, PoolBackend, tagged_vms};
use crate::{Shared, error, execute, gc, inventory};

/// The `mode: vm` backend.
pub(crate) struct VmPools;

impl PoolBackend for VmPools {
    type Snapshot = VmSnapshot;
    type Action = VmAction;
    type Seen = ();
    const OBSERVES: &'static str = "the pool's VMs";

    /// The inventory brought in line with the activation's VM listing.
    async fn observe_all(&self, sh: &Arc<Shared>, act: &Activation<'_>) -> error::Result<bool> {
        inventory::sync(sh, act.observation, act.in_flight, act.now).await?;
        Ok(false)
    }

    /// Nothing per pool: the activation's listing covers every VM pool.
    async fn observe(
        &self,
        _sh: &Arc<Shared>,
        _act: &Activation<'_>,
        _record: &PoolRecord,
    ) -> error::Result<()> {
        Ok(())
    }

    async fn snapshot(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> Result<VmSnapshot, store::StoreError> {
        let mut snapshot = sh.store.vm_snapshot(record, act.in_flight, act.now).await?;
        // What the ARM client knows of Compute's per-VM buckets: a node whose bucket has no
        // room for the write the planner might choose for it (a start for a parked node, a
        // deallocation or delete for a running one) is taken last.
        let rg = &sh.cfg.resource_group;
        for n in &snapshot.nodes {
            let group = match n.state {
                rb_core::NodeState::Deallocated | rb_core::NodeState::Stopped => {
                    azure::ComputeGroup::UpdateVm
                }
                rb_core::NodeState::Running => azure::ComputeGroup::DeleteVm,
                _ => continue,
            };
            if sh.arm.vm_room(rg, &n.name, group) < 1.0 {
                snapshot.no_room.insert(n.name.to_ascii_lowercase());
            }
        }
        Ok(snapshot)
    }

    fn plan(
        &self,
        snapshot: &VmSnapshot,
        spec: &PoolSpec,
        gate: &CreateGate,
        now: UnixSeconds,
    ) -> Plan<VmAction> {
        snapshot.plan(spec, gate, now)
    }

    async fn remains(
        &self,
        _sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> Vec<String> {
        tagged_vms(act, &record.spec.name)
    }

    /// Released once the inventory has no node of it and the listing no VM tagged with it.
    async fn released(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> Option<&'static str> {
        let name = &record.spec.name;
        let no_nodes = sh
            .store
            .list_vms(Some(name))
            .await
            .is_ok_and(|v| v.is_empty());
        let in_azure = act.observation.vms.values().any(|o| o.pool == *name);
        (no_nodes && !in_azure).then_some("resources")
    }

    async fn execute(
        &self,
        sh: &Arc<Shared>,
        _act: &Activation<'_>,
        record: &PoolRecord,
        snapshot: VmSnapshot,
        plan: Plan<VmAction>,
        _seen: (),
    ) -> Result<(), store::StoreError> {
        execute::dispatch(sh, record, plan, snapshot.next_index).await
    }

    async fn collect_garbage(&self, sh: &Arc<Shared>, round: &gc::Round) {
        let known: HashSet<String> = round.pools.iter().map(|p| p.spec.name.clone()).collect();
        gc::collect(sh, &round.observation, &known, &round.owner).await;
    }
}
