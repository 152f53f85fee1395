//! Pool backends: what a kind of pool (`mode: vm`, `mode: batch`) does at each step of an
//! activation, behind one interface, so the reconciler's loop ([`reconcile_pool`]) is written
//! once and a new kind of pool is a new implementation, not another `if` in the driver
//! (after karpenter-provider-azure's instance providers behind one interface).
//!
//! The steps, in the order one activation takes them:
//! 1. [`PoolBackend::observe_all`], once, before any pool of the kind is planned: what the
//!    kind's pools share (the VM inventory from the VM listing, the Batch account list);
//! 2. per pool, [`PoolBackend::observe`] (an error: that pool is not planned this time),
//!    [`PoolBackend::snapshot`] from the store, [`PoolBackend::plan`] (pure: core's planner for
//!    the kind, typed actions, through the creation gate; the backoff's other holds applied
//!    here), then either the end of a
//!    deletion ([`PoolBackend::released`]) or [`PoolBackend::execute`];
//! 3. [`PoolBackend::collect_garbage`], in the garbage collector's own task, on the
//!    activation's listing ([`gc::Round`]): what no pool wants.
//!
//! A backend's actions are its own type (`VmAction`, `BatchAction`); the journal, the
//! backoff and the events see them through [`rb_core::Step`] (kind of write, node, reason).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use rb_core::task::{ActivationStatus, PoolActivation, PoolError, Task};
use rb_core::{CreateGate, GateReason, Hold, Plan, PoolSpec, Step, UnixSeconds};
use store::PoolRecord;

use crate::deletion::remove_deleted_pool;
use crate::error::{self, Error, ResultExt, chain};
use crate::observe::Observation;
use crate::{Shared, backoff, gc, typed_conditions};

/// What one activation knows before it plans any pool, for every backend.
pub(crate) struct Activation<'a> {
    /// The daemon's owner id (tags and metadata of what it creates).
    pub owner: &'a str,
    /// This activation's complete listing of our VMs in Azure.
    pub observation: &'a Observation,
    /// Nodes with a write in flight (open intents, and this process's writes).
    pub in_flight: &'a HashSet<String>,
    /// Every pool in the store.
    pub pools: &'a [PoolRecord],
    pub now: UnixSeconds,
    pub deadline: tokio::time::Instant,
}

/// Failed ARM attempts in a row, with no answer in between, that close the creation gate: one
/// is a blip the pipeline's retry absorbs; three are every retry of a request, or several
/// requests, failing.
const OUTAGE_ATTEMPTS: u64 = 3;

/// The creation gate of a pool now: its backoff after failed creates, and an ARM outage the
/// ARM client has seen begin since this activation's listing answered (the writes started
/// meanwhile all failing): creates wait rather than add to the failures.
pub(crate) fn gate(sh: &Shared, create: Option<&Hold>) -> CreateGate {
    let mut gate = CreateGate::backoff(create);
    if let Some(outage) = sh
        .arm
        .arm_outage()
        .filter(|o| o.failed_attempts >= OUTAGE_ATTEMPTS)
    {
        gate = gate.with(GateReason::ArmUnavailable {
            since: outage.since_unix,
            error: outage.last_error,
        });
    }
    gate
}

/// One kind of pool. See the module's documentation for when each step runs.
pub(crate) trait PoolBackend: Sync {
    /// What the store hands the planner for one pool of this kind.
    type Snapshot: Send + Sync;
    /// What this kind's plans do.
    type Action: Step + Send + 'static;
    /// What observing one pool tells its execution.
    type Seen: Send;
    /// What [`PoolBackend::observe`] reads in Azure, as messages name it (`"the Batch pool"`).
    const OBSERVES: &'static str;

    /// Once per activation, before any pool of this kind is planned. Returns whether it was
    /// cut at the activation's deadline (what it did not do waits for the next activation).
    fn observe_all(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
    ) -> impl Future<Output = error::Result<bool>> + Send;

    /// One pool, before its plan. An error: the pool is not planned this time (never from
    /// part of the picture).
    fn observe(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> impl Future<Output = error::Result<Self::Seen>> + Send;

    /// The condition a pool shows when [`PoolBackend::observe`] failed with `e`.
    fn unobserved(&self, e: &Error) -> String {
        format!("ObserveFailed: {}: {}", e.code(), e.message())
    }

    /// The pool's snapshot, from the store.
    fn snapshot(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> impl Future<Output = Result<Self::Snapshot, store::StoreError>> + Send;

    /// The pool's plan: pure, core's planner for the kind on its snapshot, through the
    /// creation gate (which the planners apply themselves, so probes get fresh names). The
    /// backoff's holds on the other kinds of write are applied to it by [`reconcile_pool`].
    fn plan(
        &self,
        snapshot: &Self::Snapshot,
        spec: &PoolSpec,
        gate: &CreateGate,
        now: UnixSeconds,
    ) -> Plan<Self::Action>;

    /// What of the pool is still in Azure: a forced deletion forgets the pool only when
    /// nothing is.
    fn remains(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> impl Future<Output = Vec<String>> + Send;

    /// A pool being deleted whose plan wants nothing more: if nothing of it is left, what
    /// its `pool.deleted` event says it had (`"resources"`, `"Batch resources"`).
    fn released(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
    ) -> impl Future<Output = Option<&'static str>> + Send;

    /// Starts the plan's writes, as written (every write under an intent).
    fn execute(
        &self,
        sh: &Arc<Shared>,
        act: &Activation<'_>,
        record: &PoolRecord,
        snapshot: Self::Snapshot,
        plan: Plan<Self::Action>,
        seen: Self::Seen,
    ) -> impl Future<Output = Result<(), store::StoreError>> + Send;

    /// What no pool of this kind wants, from an activation's listing (the garbage
    /// collector's task, after the activation).
    fn collect_garbage(
        &self,
        sh: &Arc<Shared>,
        round: &gc::Round,
    ) -> impl Future<Output = ()> + Send;
}

/// What the tagged VMs of this activation's listing say is left of `pool` in Azure.
pub(crate) fn tagged_vms(act: &Activation<'_>, pool: &str) -> Vec<String> {
    let mut remains: Vec<String> = act
        .observation
        .vms
        .values()
        .filter(|o| o.pool == pool)
        .map(|o| format!("VM {}", o.name))
        .collect();
    remains.sort();
    remains
}

/// One pool's activation, whatever its kind: observe, plan, show, then finish its deletion
/// or execute. `forced`: pools whose forced deletion was asked for, with the `created_at` of
/// the row it was asked for. The pool's status goes into the activation's; an observation
/// that failed or was cut goes into its errors.
pub(crate) async fn reconcile_pool<B: PoolBackend>(
    backend: &B,
    sh: &Arc<Shared>,
    act: &Activation<'_>,
    record: &PoolRecord,
    forced: &HashMap<String, UnixSeconds>,
    status: &mut ActivationStatus,
) -> error::Result<()> {
    let name = &record.spec.name;
    let now = act.now;
    // Past the deadline this gives up at once: the pool is reported unobserved and planned
    // next time.
    let observed = tokio::time::timeout_at(act.deadline, backend.observe(sh, act, record))
        .await
        .unwrap_or_else(|_| {
            status.cut = true;
            Err(Error::from(azure::ArmError::new(
                azure::ErrorKind::Transport,
                error::ACTIVATION_DEADLINE,
                format!(
                    "the activation reached its deadline ({} s, activation_timeout_seconds) before {} was observed",
                    sh.cfg.activation_timeout.as_secs(),
                    B::OBSERVES
                ),
            )))
        });
    let seen = match observed {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!(pool = %name, code = %e.code(), error = %chain(&e), observing = B::OBSERVES, "cannot observe the pool");
            let _ = sh
                .store
                .put_task_status(
                    &Task::pool_error(name),
                    &PoolError {
                        code: e.code().to_owned(),
                        message: format!(
                            "cannot observe {}, nothing planned: {}",
                            B::OBSERVES,
                            chain(&e)
                        ),
                        at: now,
                    },
                )
                .await;
            let _ = sh
                .store
                .put_task_status(
                    &Task::pool(name),
                    &PoolActivation {
                        conditions: typed_conditions(sh, name, &[backend.unobserved(&e)], now),
                        observed_generation: record.generation,
                        ..Default::default()
                    },
                )
                .await;
            status
                .errors
                .push(format!("observe {} of {name}: {}", B::OBSERVES, chain(&e)));
            return Ok(());
        }
    };
    let (create, others) = backoff::holds(sh, record, now).await;
    let snapshot = backend.snapshot(sh, act, record).await?;
    let mut plan = backend.plan(&snapshot, &record.spec, &gate(sh, create.as_ref()), now);
    rb_core::apply_holds(&mut plan, &others, now);
    let force = forced
        .get(name)
        .is_some_and(|created_at| record.deleting && *created_at == record.created_at);
    let mut conditions = plan.conditions.clone();
    if force {
        let remains = backend.remains(sh, act, record).await;
        if remains.is_empty() {
            remove_deleted_pool(sh, name, "tagged resources in Azure (forced)").await?;
            return Ok(());
        }
        conditions.push(format!(
            "ForceDeleteBlocked: still in Azure, tagged renderburst-pool={name}: {}",
            remains.join(", ")
        ));
    }
    let pool_status = PoolActivation {
        desired: plan.desired,
        active: plan.active,
        actions: plan
            .actions
            .iter()
            .map(|a| format!("{:?} {}: {}", a.kind(), a.node(), a.reason()))
            .collect(),
        conditions: typed_conditions(sh, name, &conditions, now),
        observed_generation: record.generation,
    };
    let _ = sh
        .store
        .put_task_status(&Task::pool(name), &pool_status)
        .await;
    status.actions += plan.actions.len();
    status.pools.insert(name.clone(), pool_status);
    if record.deleting
        && plan.actions.is_empty()
        && let Some(what) = backend.released(sh, act, record).await
    {
        remove_deleted_pool(sh, name, what).await?;
        return Ok(());
    }
    backend
        .execute(sh, act, record, snapshot, plan, seen)
        .await
        .context("execute")
}
