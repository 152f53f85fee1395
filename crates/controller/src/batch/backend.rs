//! `mode: batch` pools as a [`PoolBackend`]: observed per pool through the Batch management
//! and data planes ([`super::observe`]), planned by core's Batch planner
//! ([`rb_core::plan_batch`]), executed as pool writes and node removals
//! ([`super::execute`]), Batch pools of no pool collected by [`super::gc`].

use std::sync::Arc;

use rb_core::{BatchAction, BatchSnapshot, CreateGate, Plan, PoolSpec, UnixSeconds};
use store::PoolRecord;

use super::{ACCOUNT_NOT_FOUND, collect_garbage, dispatch, observe, observe_accounts};
use crate::backend::{Activation, PoolBackend, tagged_vms};
use crate::error::{self, Error};
use crate::{Shared, execute};

/// The `mode: batch` backend.
pub(crate) struct BatchPools;

impl PoolBackend for BatchPools {
    type Snapshot = BatchSnapshot;
    type Action = BatchAction;
    /// The pool's enrollment token is due to be rotated.
    type Seen = bool;
    const OBSERVES: &'static str = "the Batch pool";

    /// The subscription's Batch accounts, listed at most once a minute.
    async fn observe_all(&self, sh: &Arc<Shared>, act: &Activation<'_>) -> error::Result<bool> {
        Ok(
            tokio::time::timeout_at(act.deadline, observe_accounts(sh, act.pools))
                .await
                .is_err(),
        )
    }

    async fn observe(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> error::Result<bool> {
        observe(sh, record, act.owner, act.now).await
    }

    /// A missing account is named for what to fix, not for what failed.
    fn unobserved(&self, e: &Error) -> String {
        if e.code() == ACCOUNT_NOT_FOUND {
            format!("{}: {}", e.code(), e.message())
        } else {
            format!("ObserveFailed: {}: {}", e.code(), e.message())
        }
    }

    async fn snapshot(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> Result<BatchSnapshot, store::StoreError> {
        sh.store
            .batch_snapshot(record, act.in_flight, act.now)
            .await
    }

    fn plan(
        &self,
        snapshot: &BatchSnapshot,
        spec: &PoolSpec,
        gate: &CreateGate,
        now: UnixSeconds,
    ) -> Plan<BatchAction> {
        snapshot.plan(spec, gate, now)
    }

    /// Tagged VMs of the listing, and the Batch pool while it is ours (a Batch pool that
    /// could not be observed never gets here: nothing is forgotten from part of the picture).
    async fn remains(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> Vec<String> {
        let name = &record.spec.name;
        let mut remains = tagged_vms(act, name);
        match sh.store.get_batch_state(name).await {
            Ok(Some(state)) => {
                if state.observed.as_ref().is_some_and(|v| v.owned) {
                    let batch = record.spec.batch.as_ref();
                    remains.push(format!(
                        "Batch pool {} in account {}",
                        batch
                            .and_then(|b| b.existing_pool.clone())
                            .unwrap_or_else(|| name.clone()),
                        batch.map_or("?", |b| b.account.as_str())
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => remains.push(format!("unknown (store: {e})")),
        }
        remains
    }

    /// Released once nothing of it is left for us: the Batch pool is gone (or was never
    /// ours, or is an adopted one at zero) and no write is in flight.
    async fn released(
        &self,
        sh: &Arc<Shared>,
        _act: &Activation<'_>,
        record: &PoolRecord,
    ) -> Option<&'static str> {
        let name = &record.spec.name;
        let key = rb_core::batch::pool_intent_node(name).to_ascii_lowercase();
        let in_flight = execute::in_flight(sh)
            .await
            .map(|f| f.contains(&key))
            .unwrap_or(true);
        let Ok(Some(state)) = sh.store.get_batch_state(name).await else {
            return None;
        };
        let nodes = sh
            .store
            .list_vms(Some(name))
            .await
            .map(|v| v.len())
            .unwrap_or(1);
        let adopted = record
            .spec
            .batch
            .as_ref()
            .is_some_and(|b| b.existing_pool.is_some());
        let released = state.observed_at.is_some()
            && !in_flight
            && match &state.observed {
                None => true,
                Some(v) if !v.owned => true,
                Some(v) => adopted && nodes == 0 && v.targets.total() == 0,
            };
        released.then_some("Batch resources")
    }

    async fn execute(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
        _snapshot: BatchSnapshot,
        plan: Plan<BatchAction>,
        rotate_enroll_token: bool,
    ) -> Result<(), store::StoreError> {
        dispatch(sh, record, plan, act.owner, rotate_enroll_token).await
    }

    async fn collect_garbage(&self, sh: &Arc<Shared>, round: &crate::gc::Round) {
        collect_garbage(sh, &round.pools, &round.owner).await;
    }
}
