//! Read models for the planner: the inventory as `NodeView`s and a what-if plan from the
//! store alone. Shared by the controller (which adds its own in-process in-flight set) and
//! the API's `/v1/pools/{name}/plan`, so both see the same plan for the same state.

use std::collections::HashSet;

use rb_core::batch::{BatchInput, BatchNodeView, plan_batch, pool_intent_node};
use rb_core::{Hold, NodeView, Plan, PlanInput, PoolMode, UnixSeconds, plan};

use crate::{PoolRecord, Store, StoreError, VmRecord};

/// The planner's view of inventory rows; `in_flight` holds lower-cased node names.
pub fn node_views(vms: &[VmRecord], in_flight: &HashSet<String>) -> Vec<NodeView> {
    vms.iter()
        .map(|v| NodeView {
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

    /// Plans `record` from what the store holds, with `extra_in_flight` added to the nodes
    /// with open intents. The desired count is [`Store::desired`] at `now`, so live node
    /// requests count. `hold` is the controller's backoff of the pool's creates (the API's
    /// what-if has none).
    pub async fn plan_pool(
        &self,
        record: &PoolRecord,
        extra_in_flight: &HashSet<String>,
        hold: Option<&Hold>,
        now: UnixSeconds,
    ) -> Result<Plan, StoreError> {
        let desired = self.desired(record, now).await?;
        let vms = self.list_vms(Some(&record.spec.name)).await?;
        let mut in_flight = self.in_flight_nodes().await?;
        in_flight.extend(extra_in_flight.iter().cloned());
        if record.spec.mode == PoolMode::Batch {
            return self
                .plan_batch_pool(record, desired, &vms, &in_flight, now)
                .await;
        }
        let unavailable = self.list_unavailable(now).await?;
        let nodes = node_views(&vms, &in_flight);
        Ok(plan(&PlanInput {
            spec: &record.spec,
            desired,
            nodes: &nodes,
            unavailable: &unavailable,
            next_index: record.next_index,
            deleting: record.deleting,
            hold,
            now,
        }))
    }
}

impl Store {
    /// Plans a `mode: batch` pool from its last observation. Nothing is planned before the
    /// controller has observed the Batch pool once: an unobserved pool is not a missing one.
    async fn plan_batch_pool(
        &self,
        record: &PoolRecord,
        desired: u32,
        vms: &[VmRecord],
        in_flight: &HashSet<String>,
        now: UnixSeconds,
    ) -> Result<Plan, StoreError> {
        let state = self
            .get_batch_state(&record.spec.name)
            .await?
            .unwrap_or_default();
        if state.observed_at.is_none() {
            return Ok(Plan {
                desired,
                conditions: vec![
                    "NotObserved: the Batch pool has not been observed yet".to_string(),
                ],
                ..Plan::default()
            });
        }
        let nodes: Vec<BatchNodeView> = node_views(vms, in_flight)
            .into_iter()
            .zip(vms)
            .map(|(node, vm)| BatchNodeView {
                node,
                batch_state: vm.power_state.clone().unwrap_or_default(),
            })
            .collect();
        let pool_key = pool_intent_node(&record.spec.name).to_ascii_lowercase();
        Ok(plan_batch(&BatchInput {
            spec: &record.spec,
            desired,
            pool: state.observed.as_ref(),
            nodes: &nodes,
            unavailable: &state.unavailable,
            empty_since: state.empty_since,
            pool_in_flight: in_flight.contains(&pool_key),
            deleting: record.deleting,
            now,
        }))
    }
}
