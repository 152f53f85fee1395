//! The executor: carries out planned actions with no choices of its own. For each write it
//! records an intent before the ARM call, stores the operation handle once ARM accepted it,
//! polls it in the background, and records the outcome — so a crash at any point leaves
//! enough in the store to finish or undo the work on restart.

use std::collections::HashSet;
use std::sync::Arc;

use azure::{ArmError, Operation};
use rb_core::{ActionKind, NodeState, Offering, Plan, UnavailableReason, VmAction, VmActionKind};
use serde_json::{Value, json};
use store::{IntentOutcome, NewEvent, NewIntent, OpenIntent, PoolRecord, VmRecord};

use crate::error::{self, Error, chain};
use crate::failure::{self, Failed};
use crate::{Shared, bootstrap, follow, now, vmspec};

/// Nodes with an open intent (in this process or left by a previous one).
pub(crate) async fn in_flight(sh: &Shared) -> Result<HashSet<String>, store::StoreError> {
    let mut set = sh.store.in_flight_nodes().await?;
    if let Ok(ex) = sh.executing.lock() {
        set.extend(ex.iter().cloned());
    }
    Ok(set)
}

pub(crate) async fn event(
    sh: &Shared,
    kind: &str,
    pool: Option<&str>,
    node: Option<&str>,
    message: &str,
    data: Value,
) -> Result<i64, store::StoreError> {
    sh.store
        .append_event(&NewEvent {
            kind: kind.to_owned(),
            pool: pool.map(str::to_owned),
            node: node.map(str::to_owned),
            actor: "controller".into(),
            message: message.to_owned(),
            data,
        })
        .await
}

/// Starts the plan's actions in the background, as the plan wrote them: its creates' names
/// are accepted by the store first (reused names of failed creates taken, fresh indexes
/// from `next_index` reserved, or the whole plan refused if another was accepted since), so
/// the executor never renames and a name is never handed out twice.
pub(crate) async fn dispatch(
    sh: &Arc<Shared>,
    record: &PoolRecord,
    plan: Plan,
    next_index: u64,
) -> Result<(), store::StoreError> {
    let creates: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| a.kind == VmActionKind::Create)
        .map(|a| a.node.clone())
        .collect();
    let reused: HashSet<String> = sh
        .store
        .accept_creates(&record.spec.name, next_index, &creates)
        .await?
        .into_iter()
        .collect();
    let zombies = plan.zombies.clone();
    let generation = record.generation;
    let pool = &record.spec.name;
    // What this process is not already working on, claimed for this plan.
    let actions: Vec<VmAction> = plan
        .actions
        .into_iter()
        .filter(|a| sh.claim(&a.node))
        .collect();
    for action in actions
        .iter()
        .filter(|a| a.kind == VmActionKind::Delete && zombies.contains(&a.node))
    {
        tracing::warn!(pool = %pool, node = %action.node, "node never registered: replacing it");
        let _ = event(
            sh,
            "node.zombie",
            Some(pool),
            Some(&action.node),
            &action.reason,
            json!({"register_timeout_seconds": record.spec.bootstrap.as_ref().map(|b| b.register_timeout_seconds)}),
        )
        .await;
    }
    // Every decision goes into the log with its intent, and a create's inventory row (the
    // node counts from now on, before ARM has even seen it), all in one transaction: a crash
    // keeps the plan's journal whole or not at all, and a burst of a hundred is one commit.
    let t = now();
    let opening: Vec<OpenIntent> = actions
        .iter()
        .map(|action| {
            let detail = json!({"size": action.size, "priority": action.priority});
            OpenIntent {
                intent: NewIntent {
                    pool: pool.clone(),
                    node: action.node.clone(),
                    kind: action.kind.into(),
                    detail: detail.clone(),
                    reason: action.reason.clone(),
                },
                event: NewEvent {
                    kind: format!("plan.{}", verb_of(action.kind.into())),
                    pool: Some(pool.clone()),
                    node: Some(action.node.clone()),
                    actor: "controller".into(),
                    message: action.reason.clone(),
                    data: detail,
                },
                placeholder: (action.kind == VmActionKind::Create)
                    .then(|| placeholder(pool, action, t)),
            }
        })
        .collect();
    let intents = match sh.store.open_plan_intents(&opening).await {
        Ok(ids) => ids,
        Err(e) => {
            for action in &actions {
                sh.release(&action.node);
            }
            return Err(e);
        }
    };
    // Writes of a kind numerous enough go in bulk through Compute Schedule, a request per
    // hundred (a reused name is not: its failed VM is deleted first, one at a time).
    let mut per_kind: std::collections::HashMap<VmActionKind, usize> = Default::default();
    for a in &actions {
        if !(a.kind == VmActionKind::Create && reused.contains(&a.node)) {
            *per_kind.entry(a.kind).or_default() += 1;
        }
    }
    let mut bulk: std::collections::BTreeMap<u8, Vec<(VmAction, i64)>> = Default::default();
    let mut single = Vec::new();
    for (action, intent) in actions.into_iter().zip(intents) {
        let reuse = action.kind == VmActionKind::Create && reused.contains(&action.node);
        let n = per_kind.get(&action.kind).copied().unwrap_or(0);
        if !reuse && crate::bulk::wants_bulk(sh.cfg.bulk, action.kind, n) {
            bulk.entry(action.kind as u8)
                .or_default()
                .push((action, intent));
        } else {
            single.push((action, intent));
        }
    }
    for (_, writes) in bulk {
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let chunk: Vec<(VmAction, i64)> = writes
                .by_ref()
                .take(arm_model::computeschedule::MAX_RESOURCES_PER_REQUEST)
                .collect();
            let kind = chunk[0].0.kind;
            tokio::spawn(crate::bulk::run_chunk(
                sh.clone(),
                record.spec.clone(),
                generation,
                kind,
                chunk,
            ));
        }
    }
    for (action, intent) in single {
        let reuse = action.kind == VmActionKind::Create && reused.contains(&action.node);
        let sh2 = sh.clone();
        let spec = record.spec.clone();
        tokio::spawn(async move {
            let mut stopping = sh2.stopping.subscribe();
            let result = tokio::select! {
                outcome = run_action(&sh2, &spec, &action, intent, reuse) => Some(outcome),
                // The daemon is stopping: the open intent (with its operation, if ARM took
                // the write) is what the next start follows to its end.
                _ = stopping.wait_for(|s| *s) => None,
            };
            let Some((result, recorded)) = result else {
                tracing::info!(node = %action.node, "stopping: the intent stays open for the next start");
                return;
            };
            conclude(&sh2, &spec.name, generation, &action, intent, result).await;
            // The activation whose listing settled the write plans once it is recorded.
            drop(recorded);
        });
    }
    Ok(())
}

/// A create's inventory row from the moment it is planned.
fn placeholder(pool: &str, action: &VmAction, t: rb_core::UnixSeconds) -> VmRecord {
    VmRecord {
        name: action.node.clone(),
        pool: pool.to_owned(),
        size: action.size.clone().unwrap_or_default(),
        priority: action.priority.unwrap_or_default(),
        state: NodeState::Creating,
        power_state: None,
        azure_id: None,
        failed_code: None,
        created_at: t,
        started_at: None,
        deallocated_at: None,
        last_seen: None,
        last_heartbeat: None,
        busy: false,
        draining: false,
        registered_at: None,
        node_seen_at: None,
    }
}

/// Before a name of a failed create is created again: a VM of that name that Azure shows in
/// a failed provisioning state is deleted first (its NIC and disk go with it,
/// `deleteOption: Delete`), so the PUT makes a new VM rather than updating a broken one.
async fn clear_failed_vm(sh: &Shared, name: &str) -> azure::Result<()> {
    let rg = &sh.cfg.resource_group;
    let Some(vm) = sh.arm.get_vm(rg, name, false).await? else {
        return Ok(());
    };
    let failed = vm
        .properties
        .as_ref()
        .and_then(|p| p.provisioning_state.as_deref())
        .is_some_and(|s| s.eq_ignore_ascii_case("failed"));
    if failed {
        tracing::info!(node = %name, "deleting the failed VM before creating its name again");
        if let Some(op) = sh.arm.delete_vm(rg, name).await? {
            op.wait_done(&sh.arm).await?;
        }
    }
    Ok(())
}

async fn start_op(
    sh: &Shared,
    spec: &rb_core::PoolSpec,
    action: &VmAction,
) -> error::Result<Option<Operation>> {
    let rg = &sh.cfg.resource_group;
    let arm = &sh.arm;
    match action.kind {
        VmActionKind::Create => {
            let vm = create_body(sh, spec, action).await?;
            Ok(Some(
                arm.create_or_update_vm(rg, &action.node, &vm).await?.1,
            ))
        }
        VmActionKind::Start => Ok(Some(arm.start_vm(rg, &action.node).await?)),
        VmActionKind::Deallocate => Ok(Some(arm.deallocate_vm(rg, &action.node).await?)),
        VmActionKind::Delete => Ok(arm.delete_vm(rg, &action.node).await?),
        VmActionKind::Forget => Ok(None),
    }
}

/// A create's VM body, as one PUT or a Compute Schedule request carries it: the node's
/// bootstrap (token and script) made first.
pub(crate) async fn create_body(
    sh: &Shared,
    spec: &rb_core::PoolSpec,
    action: &VmAction,
) -> error::Result<arm_model::compute::VirtualMachine> {
    let custom_data = node_bootstrap(sh, spec, &action.node).await?;
    Ok(vmspec::vm_body(
        spec,
        &action.node,
        action.size.as_deref().unwrap_or_default(),
        action.priority.unwrap_or_default(),
        &sh.cfg.placement,
        custom_data.as_deref(),
    ))
}

/// For a pool with a `bootstrap` section: a fresh token for the node (its hash stored before
/// the VM exists), and the rendered script. A failure (a secret that cannot be resolved, a
/// script too large) fails the create before any ARM call, naming the field; so does a store
/// that cannot keep the token (as a store failure, not a bootstrap one).
async fn node_bootstrap(
    sh: &Shared,
    spec: &rb_core::PoolSpec,
    node: &str,
) -> error::Result<Option<String>> {
    if spec.bootstrap.is_none() {
        return Ok(None);
    }
    let refused = |message: String| Error::Bootstrap {
        node: node.to_owned(),
        message,
    };
    let token = bootstrap::generate_node_token();
    sh.store
        .set_node_token(node, &bootstrap::sha256_hex(&token), now())
        .await
        .map_err(|e| Error::from(e).context(format!("cannot store the node token of {node}")))?;
    // Secrets are read from files or the environment: off the async runtime.
    let (cfg, spec_owned, node_owned) = (sh.cfg.bootstrap.clone(), spec.clone(), node.to_owned());
    let secrets = sh.cfg.secrets.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        bootstrap::render(&cfg, &spec_owned, &node_owned, &token, &|r| {
            secrets.resolve(r)
        })
    })
    .await
    .map_err(|e| refused(e.to_string()))?
    .map_err(|e| refused(format!("{}: {}", e.field, e.message)))?;
    Ok(rendered.map(|r| r.text))
}

/// One action: its write under an operation slot (the slots bound the writes in flight, not
/// the operations Azure is running), then its end followed from the listings (`follow`).
async fn run_action(
    sh: &Shared,
    spec: &rb_core::PoolSpec,
    action: &VmAction,
    intent: i64,
    reuse: bool,
) -> (error::Result<()>, Option<follow::Ack>) {
    let accepted = async {
        let _permit = sh.permits.clone().acquire_owned().await;
        if reuse && action.kind == VmActionKind::Create {
            clear_failed_vm(sh, &action.node).await?;
        }
        let Some(op) = start_op(sh, spec, action).await? else {
            return Ok(None);
        };
        let accepted = tokio::time::Instant::now();
        if let Ok(v) = serde_json::to_value(&op) {
            let _ = sh.store.set_intent_operation(intent, &v).await;
        }
        error::Result::Ok(Some((op, accepted)))
    };
    match accepted.await {
        Err(e) => (Err(e), None),
        Ok(None) => (Ok(()), None),
        Ok(Some((op, accepted))) => {
            let (result, ack) = follow::outcome(
                sh,
                action.kind,
                &action.node,
                follow::Handle::Arm(&op),
                accepted,
            )
            .await;
            (result.map_err(Into::into), ack)
        }
    }
}

/// `delete`, `deallocate`...: how events name an action.
pub(crate) fn verb_of(kind: ActionKind) -> String {
    format!("{kind:?}").to_ascii_lowercase()
}

/// What a write that succeeded did to the inventory, and its `vm.{verb}` event; the same
/// whether this process saw it end or a restarted one followed it to its end (`data` then
/// says `"recovered": true`), so our own delete is never taken for one outside renderburst.
pub(crate) async fn record_success(
    sh: &Shared,
    pool: &str,
    kind: ActionKind,
    node: &str,
    reason: &str,
    data: Value,
) {
    match kind {
        ActionKind::Delete | ActionKind::Forget => {
            let _ = sh.store.delete_vm(node).await;
        }
        _ => {
            if let Ok(Some(mut vm)) = sh.store.get_vm(node).await {
                let t = now();
                match kind {
                    ActionKind::Create | ActionKind::Start => {
                        vm.state = NodeState::Running;
                        vm.started_at = Some(t);
                    }
                    ActionKind::Deallocate => {
                        vm.state = NodeState::Deallocated;
                        vm.deallocated_at = Some(t);
                    }
                    _ => {}
                }
                let _ = sh.store.upsert_vm(&vm).await;
                // A drain ends with its node deallocated (`scale_down: deallocate`): from now
                // on it is an ordinary parked node, started again only when demand needs it,
                // not one that lingers drained until a scale-up at max deletes it.
                if kind == ActionKind::Deallocate
                    && vm.draining
                    && sh.store.set_draining(node, false).await.is_ok()
                {
                    let _ = event(
                        sh,
                        "node.drained",
                        Some(pool),
                        Some(node),
                        "drain done: deallocated per the pool's scale_down; no longer draining",
                        json!({}),
                    )
                    .await;
                }
            }
        }
    }
    let _ = event(
        sh,
        &format!("vm.{}", verb_of(kind)),
        Some(pool),
        Some(node),
        reason,
        data,
    )
    .await;
}

/// The end of a write of this process: its outcome recorded ([`finish`]), its node released,
/// and the reconciler told an operation ended.
pub(crate) async fn conclude(
    sh: &Shared,
    pool: &str,
    generation: i64,
    action: &VmAction,
    intent: i64,
    result: error::Result<()>,
) {
    finish(sh, pool, generation, action, intent, result).await;
    sh.release(&action.node);
    sh.settled.notify_one();
}

/// Records the outcome of an action: intent, inventory, event, unavailable offerings.
async fn finish(
    sh: &Shared,
    pool: &str,
    generation: i64,
    action: &VmAction,
    intent: i64,
    result: error::Result<()>,
) {
    let verb = verb_of(action.kind.into());
    match result {
        Ok(()) => {
            let _ = sh
                .store
                .close_intent(intent, &IntentOutcome::Succeeded)
                .await;
            crate::backoff::succeeded(sh, pool, action.kind.into()).await;
            record_success(
                sh,
                pool,
                action.kind.into(),
                &action.node,
                &action.reason,
                json!({"size": action.size, "priority": action.priority}),
            )
            .await;
        }
        Err(err) => {
            let Some(e) = err.recorded_as_arm() else {
                failed_here(sh, pool, action, intent, &err).await;
                return;
            };
            // The offering a capacity or quota refusal marks: the create's, or the VM's.
            let offering = match (&action.size, action.priority) {
                (Some(s), Some(p)) => Some(Offering::new(s, p)),
                _ => match sh.store.get_vm(&action.node).await {
                    Ok(Some(vm)) => Some(Offering::new(&vm.size, vm.priority)),
                    _ => None,
                },
            };
            failure::record(
                sh,
                Failed {
                    pool,
                    kind: action.kind.into(),
                    what: format!("{verb} {}", action.node),
                    node: Some(&action.node),
                    intents: &[intent],
                    offering,
                    generation: Some(generation),
                    data: json!({}),
                },
                &e,
            )
            .await;
            if action.kind == VmActionKind::Create && e.kind != azure::ErrorKind::Operation {
                // Refused synchronously: nothing was created. Forget the placeholder row
                // unless Azure shows the VM (the next observation decides).
                if let Ok(Some(vm)) = sh.store.get_vm(&action.node).await
                    && vm.azure_id.is_none()
                {
                    let _ = sh.store.delete_vm(&action.node).await;
                }
            }
            // Only a definite failure frees the name: the operation ended Failed, or ARM
            // refused the PUT (4xx). After a 5xx, a 408/429 or no answer the VM may exist and
            // succeed; reusing its name later would create a good VM's name a second time.
            let definite = e.kind == azure::ErrorKind::Operation
                || e.status
                    .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429);
            if action.kind == VmActionKind::Create
                && definite
                && let Err(err) = sh.store.add_reusable_name(pool, &action.node).await
            {
                tracing::warn!(pool, node = %action.node, error = %chain(&err), "cannot keep the failed create's name for reuse");
            }
        }
    }
}

/// A write that failed here, not in Azure: the store could not keep what the write needs
/// (a node's token), so the ARM call was never made. Logged with every cause and shown as the
/// pool's last error under the controller's own code; not an `arm.error`, and no backoff or
/// offering mark, which are about Azure's answers. The next activation tries again.
async fn failed_here(sh: &Shared, pool: &str, action: &VmAction, intent: i64, err: &Error) {
    let verb = verb_of(action.kind.into());
    tracing::error!(pool, node = %action.node, action = %verb, code = %err.code(), error = %chain(err), "action failed before Azure was called");
    if action.kind == VmActionKind::Create
        && let Ok(Some(vm)) = sh.store.get_vm(&action.node).await
        && vm.azure_id.is_none()
    {
        let _ = sh.store.delete_vm(&action.node).await;
    }
    failure::record_failed_here(sh, pool, intent, &format!("{verb} {}", action.node), err).await;
}

/// How long an error makes the planner avoid an offering, if at all.
pub(crate) fn unavailability(e: &ArmError) -> Option<UnavailableReason> {
    if e.code.eq_ignore_ascii_case("SkuNotAvailable") {
        Some(UnavailableReason::SkuNotAvailable)
    } else if e.is_quota() {
        Some(UnavailableReason::Quota)
    } else if e.is_capacity() {
        Some(UnavailableReason::Capacity)
    } else {
        None
    }
}
