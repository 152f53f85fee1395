//! Execution of the Batch planner's actions: node removals (one data-plane call, an intent
//! per node) and pool writes (create, resize, stop resize, rotate the enrollment token,
//! delete; one at a time, an intent on `batch:{pool}`), with their outcomes recorded.

use std::sync::Arc;

use arm_model::batch::NodeDeallocationOption;
use rb_core::batch::{batch_pool_name, pool_intent_node};
use rb_core::{ActionKind, BatchAction, BatchActionKind, NodeState, Plan, PoolSpec};
use serde_json::{Value, json};
use store::{IntentOutcome, NewEvent, NewIntent, PoolRecord};

use super::bodies::{enroll_start_task, pool_model};
use super::{config_err, secs, target};
use crate::error::{self, Error, ResultExt, chain};
use crate::execute::{event, verb_of};
use crate::failure::{self, Failed};
use crate::{Shared, bootstrap, now};

/// Starts the plan's Batch actions in the background: removals as one data-plane call (an
/// intent per node), pool writes one at a time (an intent on `batch:{pool}`).
///
/// `rotate_enroll_token` (from [`observe`](super::observe)): the pool's enrollment token is
/// due to be replaced; that is a pool write too, done when the plan has none (a rotation
/// waits for a resize, never the other way round).
pub(crate) async fn dispatch(
    sh: &Arc<Shared>,
    record: &PoolRecord,
    plan: Plan<BatchAction>,
    owner: &str,
    rotate_enroll_token: bool,
) -> Result<(), store::StoreError> {
    let spec = &record.spec;
    let zombies = plan.zombies;
    let mut removals = Vec::new();
    let mut pool_ops = Vec::new();
    for a in plan.actions {
        match PoolWrite::of(a.kind) {
            Some(w) => pool_ops.push((w, a)),
            None => removals.push(a),
        }
    }
    if !removals.is_empty() {
        let mut claimed = Vec::new();
        for a in removals {
            if !sh.claim(&a.node) {
                continue;
            }
            if zombies.contains(&a.node) {
                tracing::warn!(pool = %spec.name, node = %a.node, "Batch node never registered: replacing it");
                let _ = event(
                    sh,
                    "node.zombie",
                    Some(&spec.name),
                    Some(&a.node),
                    &a.reason,
                    json!({"register_timeout_seconds": spec.bootstrap.as_ref().map(|b| b.register_timeout_seconds)}),
                )
                .await;
            }
            match sh
                .store
                .open_intent_with_event(
                    &NewIntent {
                        pool: spec.name.clone(),
                        node: a.node.clone(),
                        kind: ActionKind::RemoveNode,
                        detail: json!({}),
                        reason: a.reason.clone(),
                    },
                    &decision(&spec.name, &a, json!({})),
                )
                .await
            {
                Ok((id, _event)) => claimed.push((a, id)),
                Err(e) => {
                    sh.release(&a.node);
                    for (a, _) in &claimed {
                        sh.release(&a.node);
                    }
                    return Err(e);
                }
            }
        }
        if !claimed.is_empty() {
            let sh2 = sh.clone();
            let spec = spec.clone();
            tokio::spawn(async move {
                let permit = sh2.permits.clone().acquire_owned().await;
                remove_nodes(&sh2, &spec, &claimed).await;
                drop(permit);
                for (a, _) in &claimed {
                    sh2.release(&a.node);
                }
                sh2.wake.notify_one();
            });
        }
    }
    // At most one pool write per activation: the planner never asks for two.
    let rotation = rotate_enroll_token.then(|| BatchAction {
        kind: BatchActionKind::RotateEnrollToken,
        node: pool_intent_node(&spec.name),
        targets: None,
        reason: format!(
            "the enrollment token in the start task is {} s old or not ours ([bootstrap] enroll_token_rotate_seconds)",
            sh.cfg.enrollment.rotate_every.as_secs()
        ),
    });
    let rotation = rotation.map(|a| (PoolWrite::RotateEnrollToken, a));
    if let Some((w, a)) = pool_ops.into_iter().next().or(rotation) {
        let node = pool_intent_node(&spec.name);
        if !sh.claim(&node) {
            return Ok(());
        }
        let detail = json!({"targets": a.targets, "batch_pool": batch_pool_name(spec)});
        let intent = match sh
            .store
            .open_intent_with_event(
                &NewIntent {
                    pool: spec.name.clone(),
                    node: node.clone(),
                    kind: a.kind.into(),
                    detail: detail.clone(),
                    reason: a.reason.clone(),
                },
                &decision(&spec.name, &a, detail),
            )
            .await
        {
            Ok((id, _event)) => id,
            Err(e) => {
                sh.release(&node);
                return Err(e);
            }
        };
        let sh2 = sh.clone();
        let spec = spec.clone();
        let owner = owner.to_owned();
        let generation = record.generation;
        tokio::spawn(async move {
            let permit = sh2.permits.clone().acquire_owned().await;
            let result = pool_write(&sh2, &spec, w, &a, intent, &owner).await;
            drop(permit);
            finish_pool_write(&sh2, &spec, generation, &a, intent, result).await;
            sh2.release(&node);
            sh2.wake.notify_one();
        });
    }
    Ok(())
}

/// The decision event written with a Batch write's intent, as the VM executor's are
/// (`plan.removenode`, `plan.resizepool`...): a crash keeps both or neither.
fn decision(pool: &str, a: &BatchAction, data: Value) -> NewEvent {
    NewEvent {
        kind: format!("plan.{}", verb_of(a.kind.into())),
        pool: Some(pool.to_owned()),
        node: (a.kind == BatchActionKind::RemoveNode).then(|| a.node.clone()),
        actor: "controller".into(),
        message: a.reason.clone(),
        data,
    }
}

/// What a pool write did, for its event.
enum Done {
    Created,
    Adopted,
    Resized,
    Stopped,
    Deleted,
    Rotated,
}

/// A write on the Batch pool itself, one at a time under the intent on `batch:{pool}` (node
/// removals go their own way, grouped).
#[derive(Debug, Clone, Copy)]
enum PoolWrite {
    Create,
    Resize,
    StopResize,
    RotateEnrollToken,
    Delete,
}

impl PoolWrite {
    /// The pool write an action is, or None for a node removal.
    fn of(kind: BatchActionKind) -> Option<Self> {
        match kind {
            BatchActionKind::CreatePool => Some(Self::Create),
            BatchActionKind::ResizePool => Some(Self::Resize),
            BatchActionKind::StopResize => Some(Self::StopResize),
            BatchActionKind::RotateEnrollToken => Some(Self::RotateEnrollToken),
            BatchActionKind::DeletePool => Some(Self::Delete),
            BatchActionKind::RemoveNode => None,
        }
    }
}

async fn pool_write(
    sh: &Shared,
    spec: &PoolSpec,
    w: PoolWrite,
    a: &BatchAction,
    intent: i64,
    owner: &str,
) -> error::Result<Done> {
    let tg = target(sh, spec)
        .ok_or_else(|| config_err(format!("pool {} has no batch section", spec.name)))?;
    let targets = a.targets.unwrap_or_default();
    match w {
        PoolWrite::Create => {
            // GET before PUT: the name never changes, so whatever exists is ours to adopt.
            if sh
                .arm
                .get_pool(&tg.rg, tg.account, tg.name)
                .await?
                .is_some()
            {
                return Ok(Done::Adopted);
            }
            // With a bootstrap section, the start task enrolls each node with a token made
            // for this pool; its hash is stored before the pool can exist.
            let enroll = match &spec.bootstrap {
                Some(_) => {
                    let token = bootstrap::generate_pool_token();
                    sh.store
                        .set_pool_enroll_token(&spec.name, &bootstrap::sha256_hex(&token), now())
                        .await
                        .context("cannot store the enrollment token")?;
                    Some(token)
                }
                None => None,
            };
            let enroll = enroll
                .as_deref()
                .map(|token| (sh.cfg.bootstrap.api_url.as_str(), token));
            let model = pool_model(spec, owner, targets, enroll)
                .ok_or_else(|| config_err("cannot build the Batch pool"))?;
            sh.arm
                .create_pool(&tg.rg, tg.account, tg.name, &model)
                .await?;
            Ok(Done::Created)
        }
        PoolWrite::Resize => {
            sh.arm
                .resize_pool(
                    &tg.rg,
                    tg.account,
                    tg.name,
                    targets.dedicated,
                    targets.spot,
                    NodeDeallocationOption::TASK_COMPLETION,
                )
                .await?;
            Ok(Done::Resized)
        }
        PoolWrite::StopResize => {
            sh.arm.stop_pool_resize(&tg.rg, tg.account, tg.name).await?;
            Ok(Done::Stopped)
        }
        PoolWrite::RotateEnrollToken => {
            // Stored before the start task can carry it; the tokens it replaces keep working
            // until it is seen published, then `overlap` longer.
            let token = bootstrap::generate_pool_token();
            let hash = bootstrap::sha256_hex(&token);
            sh.store
                .add_pool_enroll_token(&spec.name, &hash, now())
                .await
                .context("cannot store the enrollment token")?;
            let task = enroll_start_task(spec.os, &sh.cfg.bootstrap.api_url, &token);
            sh.arm
                .update_pool_start_task(&tg.rg, tg.account, tg.name, &task)
                .await?;
            sh.store
                .observe_enroll_token(&spec.name, &hash, now(), secs(sh.cfg.enrollment.overlap))
                .await
                .context("cannot store the enrollment token")?;
            Ok(Done::Rotated)
        }
        PoolWrite::Delete => {
            if let Some(op) = sh.arm.delete_pool(&tg.rg, tg.account, tg.name).await? {
                if let Ok(v) = serde_json::to_value(&op) {
                    let _ = sh.store.set_intent_operation(intent, &v).await;
                }
                op.wait(&sh.arm).await?;
            }
            Ok(Done::Deleted)
        }
    }
}

async fn finish_pool_write(
    sh: &Shared,
    spec: &PoolSpec,
    generation: i64,
    a: &BatchAction,
    intent: i64,
    result: error::Result<Done>,
) {
    let pool = &spec.name;
    let batch_pool = batch_pool_name(spec);
    match result {
        Ok(done) => {
            let _ = sh
                .store
                .close_intent(intent, &IntentOutcome::Succeeded)
                .await;
            crate::backoff::succeeded(sh, pool, a.kind.into()).await;
            let (kind, message) = match done {
                Done::Created => (
                    "batch.pool_created",
                    format!("Batch pool {batch_pool} created: {}", a.reason),
                ),
                Done::Adopted => (
                    "batch.pool_adopted",
                    format!("Batch pool {batch_pool} already exists: adopted, not created again"),
                ),
                Done::Resized => ("batch.resized", a.reason.clone()),
                Done::Stopped => ("batch.resize_stopped", a.reason.clone()),
                Done::Deleted => (
                    "batch.pool_deleted",
                    format!("Batch pool {batch_pool} deleted: {}", a.reason),
                ),
                Done::Rotated => (
                    "batch.enroll_token_rotated",
                    format!(
                        "the start task of Batch pool {batch_pool} has a new enrollment token; the previous one works {} s more",
                        sh.cfg.enrollment.overlap.as_secs()
                    ),
                ),
            };
            if matches!(done, Done::Deleted) {
                // The next observation starts from nothing; the endpoint stays valid.
                if let Ok(Some(mut s)) = sh.store.get_batch_state(pool).await {
                    s.observed = None;
                    s.empty_since = None;
                    s.reported_resize = None;
                    let _ = sh.store.put_batch_state(&s).await;
                }
            }
            let _ = event(
                sh,
                kind,
                Some(pool),
                None,
                &message,
                json!({"targets": a.targets}),
            )
            .await;
        }
        Err(err) => {
            let verb = format!("{:?}", a.kind);
            let Some(e) = err.recorded_as_arm() else {
                failed_here(sh, pool, batch_pool, &verb, intent, &err).await;
                return;
            };
            // Creates, resizes and deletes of the Batch pool back off as VM writes do
            // (permanent: Blocked with the fix; otherwise BackingOff), instead of being tried
            // again every activation; Batch's own shortfalls are marked from resize errors.
            failure::record(
                sh,
                Failed {
                    pool,
                    kind: a.kind.into(),
                    what: format!("{verb} of Batch pool {batch_pool}"),
                    node: None,
                    intents: &[intent],
                    offering: None,
                    generation: Some(generation),
                    data: json!({}),
                },
                &e,
            )
            .await;
        }
    }
}

/// A Batch pool write that failed here, not in Azure: the store could not keep what the
/// write needs (the enrollment token). Logged with every cause and shown as the pool's last
/// error under the controller's own code; not an `arm.error`, and no backoff, which is about
/// Azure's answers. The next activation plans again from what it observes.
async fn failed_here(
    sh: &Shared,
    pool: &str,
    batch_pool: &str,
    verb: &str,
    intent: i64,
    err: &Error,
) {
    tracing::error!(pool = %pool, action = %verb, code = %err.code(), error = %chain(err), "Batch pool write failed in the daemon");
    failure::record_failed_here(
        sh,
        pool,
        intent,
        &format!("{verb} of Batch pool {batch_pool}"),
        err,
    )
    .await;
}

async fn remove_nodes(sh: &Shared, spec: &PoolSpec, claimed: &[(BatchAction, i64)]) {
    let pool = &spec.name;
    let result = async {
        let tg = target(sh, spec)
            .ok_or_else(|| config_err(format!("pool {pool} has no batch section")))?;
        let endpoint = sh
            .store
            .get_batch_state(pool)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.account_endpoint)
            .ok_or_else(|| config_err("the Batch account endpoint is not known yet"))?;
        let ids: Vec<String> = claimed.iter().map(|(a, _)| a.node.clone()).collect();
        sh.arm
            .remove_batch_nodes(
                &endpoint,
                tg.name,
                &ids,
                NodeDeallocationOption::TASK_COMPLETION,
            )
            .await
    }
    .await;
    let nodes: Vec<&str> = claimed.iter().map(|(a, _)| a.node.as_str()).collect();
    match result {
        Ok(()) => {
            for (a, id) in claimed {
                let _ = sh.store.close_intent(*id, &IntentOutcome::Succeeded).await;
                // Leaving: the next observation removes the row once Batch lists it no more.
                if let Ok(Some(mut vm)) = sh.store.get_vm(&a.node).await {
                    vm.state = NodeState::Deleting;
                    vm.power_state = Some("leavingpool".into());
                    let _ = sh.store.upsert_vm(&vm).await;
                }
                let _ = event(
                    sh,
                    "batch.node_removed",
                    Some(pool),
                    Some(&a.node),
                    &a.reason,
                    json!({}),
                )
                .await;
            }
        }
        Err(e) => {
            let intents: Vec<i64> = claimed.iter().map(|(_, id)| *id).collect();
            failure::record(
                sh,
                Failed {
                    pool,
                    kind: ActionKind::RemoveNode,
                    what: format!("removing Batch nodes {}", nodes.join(", ")),
                    node: None,
                    intents: &intents,
                    offering: None,
                    generation: None,
                    data: json!({"nodes": nodes}),
                },
                &e,
            )
            .await;
        }
    }
}
