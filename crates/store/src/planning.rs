//! Read models for the planner: the inventory as `NodeView`s and a pool's whole
//! [`PoolSnapshot`]. Shared by the controller (which adds its own in-process in-flight set)
//! and the API's `/v1/pools/{name}/plan`, so both plan the same state the same way; the
//! planning itself is core's.

use std::collections::{HashMap, HashSet};

use rb_core::batch::{BatchNodeView, pool_intent_node};
use rb_core::{
    ActionKind, BatchSnapshot, NodeView, PoolMode, PoolSnapshot, ReusableName, UnixSeconds,
    VmSnapshot,
};

use crate::{PoolRecord, Store, StoreError, VmRecord};

/// The planner's view of inventory rows; `in_flight` holds lower-cased node names, `pending`
/// the kind of each open intent by lower-cased node name.
pub fn node_views(
    vms: &[VmRecord],
    in_flight: &HashSet<String>,
    pending: &HashMap<String, ActionKind>,
) -> Vec<NodeView> {
    vms.iter()
        .map(|v| NodeView {
            pending: pending.get(&v.name.to_ascii_lowercase()).copied(),
            name: v.name.clone(),
            size: v.size.clone(),
            priority: v.priority,
            state: v.state,
            failed_code: v.failed_code.clone(),
            created_at: v.created_at,
            started_at: v.started_at,
            last_heartbeat: v.last_heartbeat,
            busy: v.busy,
            draining: v.draining,
            in_flight: in_flight.contains(&v.name.to_ascii_lowercase()),
            registered_at: v.registered_at,
        })
        .collect()
}

impl Store {
    /// Nodes with an open intent (lower-cased names).
    pub async fn in_flight_nodes(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .open_intents()
            .await?
            .into_iter()
            .map(|i| i.node.to_ascii_lowercase())
            .collect())
    }

    /// What `record`'s plan reads, from what the store holds, with `extra_in_flight` added to
    /// the nodes with open intents (the controller's writes of this process). The desired
    /// count is [`Store::desired`] at `now`, so live node requests count. The store reads;
    /// core plans ([`PoolSnapshot::plan`]). The controller's backends read their own kind
    /// ([`Store::vm_snapshot`], [`Store::batch_snapshot`]); this is for what plans any pool.
    pub async fn pool_snapshot(
        &self,
        record: &PoolRecord,
        extra_in_flight: &HashSet<String>,
        now: UnixSeconds,
    ) -> Result<PoolSnapshot, StoreError> {
        Ok(match record.spec.mode {
            PoolMode::Vm => PoolSnapshot::Vm(self.vm_snapshot(record, extra_in_flight, now).await?),
            PoolMode::Batch => {
                PoolSnapshot::Batch(self.batch_snapshot(record, extra_in_flight, now).await?)
            }
        })
    }

    /// The nodes of `record` as the planner sees them, and the in-flight set (open intents
    /// and `extra`).
    async fn nodes_in_flight(
        &self,
        record: &PoolRecord,
        extra: &HashSet<String>,
    ) -> Result<(Vec<VmRecord>, Vec<NodeView>, HashSet<String>), StoreError> {
        let vms = self.list_vms(Some(&record.spec.name)).await?;
        // The latest open intent of each node says what it is becoming.
        let pending: HashMap<String, ActionKind> = self
            .open_intents()
            .await?
            .into_iter()
            .map(|i| (i.node.to_ascii_lowercase(), i.kind))
            .collect();
        let mut in_flight: HashSet<String> = pending.keys().cloned().collect();
        in_flight.extend(extra.iter().cloned());
        let views = node_views(&vms, &in_flight, &pending);
        Ok((vms, views, in_flight))
    }

    /// [`Store::pool_snapshot`] of a `mode: batch` pool: its last observation.
    pub async fn batch_snapshot(
        &self,
        record: &PoolRecord,
        extra_in_flight: &HashSet<String>,
        now: UnixSeconds,
    ) -> Result<BatchSnapshot, StoreError> {
        let desired = self.desired(record, now).await?;
        let (vms, views, in_flight) = self.nodes_in_flight(record, extra_in_flight).await?;
        let state = self
            .get_batch_state(&record.spec.name)
            .await?
            .unwrap_or_default();
        let nodes = views
            .into_iter()
            .zip(&vms)
            .map(|(node, vm)| BatchNodeView {
                node,
                batch_state: vm.power_state.clone().unwrap_or_default(),
            })
            .collect();
        let pool_key = pool_intent_node(&record.spec.name).to_ascii_lowercase();
        Ok(BatchSnapshot {
            desired,
            observed: state.observed_at.is_some(),
            pool: state.observed,
            nodes,
            unavailable: state.unavailable,
            empty_since: state.empty_since,
            pool_in_flight: in_flight.contains(&pool_key),
            deleting: record.deleting,
        })
    }

    /// [`Store::pool_snapshot`] of a `mode: vm` pool: its inventory and what its creates may
    /// be named.
    pub async fn vm_snapshot(
        &self,
        record: &PoolRecord,
        extra_in_flight: &HashSet<String>,
        now: UnixSeconds,
    ) -> Result<VmSnapshot, StoreError> {
        let desired = self.desired(record, now).await?;
        let (_, views, in_flight) = self.nodes_in_flight(record, extra_in_flight).await?;
        let reusable = self
            .reusable_names(&record.spec.name)
            .await?
            .into_iter()
            .map(|name| ReusableName {
                in_flight: in_flight.contains(&name.to_ascii_lowercase()),
                name,
            })
            .collect();
        Ok(VmSnapshot {
            desired,
            nodes: views,
            unavailable: self.list_unavailable(now).await?,
            next_index: record.next_index,
            deleting: record.deleting,
            reusable,
            no_room: Default::default(),
        })
    }
}
