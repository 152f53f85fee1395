//! Recovery: intents a previous process left open are resolved before the first activation
//! (`recover`), and intents left open while this process runs are resolved at every
//! activation (`resolve_stranded`), each by following its operation to its end or, without
//! one, by looking at the resource itself (`resolve`).

use std::sync::Arc;

use azure::{ArmError, Operation};
use rb_core::{ActionKind, Offering, Priority, VmActionKind};
use serde_json::json;
use store::IntentOutcome;

use crate::bulk::BulkOperation;
use crate::error::chain;
use crate::{Observation, Shared, follow};

/// An accepted write's handle, as the intent keeps it.
enum Handle {
    Arm(Operation),
    Bulk(BulkOperation),
}
use crate::execute::{event, record_success};
use crate::failure::{self, Failed};

/// An operation of the previous run that failed: recorded as a failure seen live is
/// ([`failure::record`]: the intent closed, `arm.error` with `data.recovered`, the pool's last
/// error, and for capacity or quota the offering marked), without a backoff streak.
async fn recovered_failure(sh: &Arc<Shared>, intent: &store::Intent, e: &ArmError) {
    let size = intent.detail["size"].as_str().unwrap_or_default();
    let priority: Option<Priority> = serde_json::from_value(intent.detail["priority"].clone()).ok();
    let verb = crate::execute::verb_of(intent.kind);
    failure::record(
        sh,
        Failed {
            pool: &intent.pool,
            kind: intent.kind,
            what: format!("{verb} {}", intent.node),
            node: Some(&intent.node),
            intents: &[intent.id],
            offering: priority.map(|p| Offering::new(size, p)),
            generation: None,
            data: json!({"recovered": true}),
        },
        e,
    )
    .await;
}

/// Intents resolved at once at start-up. Following an operation costs at least its first
/// `Retry-After` (a second) however old it is, so one at a time made a restart after a
/// burst wait a second per intent (9 intents took 10 s); reads are paced by the governor
/// either way.
const RECOVERY_CONCURRENCY: usize = 8;

/// Start-up recovery: resolve every intent a previous process left open, before the first
/// activation plans anything. Intents are independent (one node each), so they are resolved
/// concurrently, [`RECOVERY_CONCURRENCY`] at a time.
pub(crate) async fn recover(sh: &Arc<Shared>) {
    let intents = match sh.store.open_intents().await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %chain(&e), "cannot read open intents");
            return;
        }
    };
    if intents.is_empty() {
        return;
    }
    let count = intents.len();
    tracing::info!(count, "resolving intents left open by the previous run");
    let started = std::time::Instant::now();
    // Writes the previous run was following: one listing shows most of them done (a burst
    // killed before its listings caught up leaves hundreds), which costs its pages instead
    // of a second and a read per intent. The rest follow their operation.
    let started_listing = tokio::time::Instant::now();
    let listing = if intents
        .iter()
        .any(|i| i.operation.is_some() && VmActionKind::try_from(i.kind).is_ok())
    {
        listed(sh).await
    } else {
        None
    };
    let mut settled = 0usize;
    let limit = Arc::new(tokio::sync::Semaphore::new(RECOVERY_CONCURRENCY));
    let mut resolving = tokio::task::JoinSet::new();
    for intent in intents {
        let done = listing.as_ref().is_some_and(|obs| shown_done(&intent, obs));
        if done {
            settled += 1;
            resolve(sh, intent, "from the previous run", true).await;
            continue;
        }
        let (sh, limit) = (sh.clone(), limit.clone());
        resolving.spawn(async move {
            let _permit = limit.acquire_owned().await;
            resolve(&sh, intent, "from the previous run", false).await;
        });
    }
    while let Some(done) = resolving.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %chain(&e), "resolving an open intent panicked");
        }
    }
    // Every intent settled by the listing: nothing of ours changed since it started, so the
    // first activation plans from it.
    if settled == count
        && let Some(observation) = listing
        && let Ok(mut pre) = sh.prelisted.lock()
    {
        *pre = Some(follow::Listing {
            started: started_listing,
            observation: Arc::new(observation),
        });
    }
    tracing::info!(
        count,
        settled_by_listing = settled,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "intents of the previous run resolved"
    );
}

/// One listing of our VMs for recovery, or None if it cannot be had now (every intent then
/// follows its operation, as before).
async fn listed(sh: &Shared) -> Option<Observation> {
    let owner = sh.store.owner_id().await.ok()?;
    match crate::observe::observe(&sh.arm, &sh.cfg.resource_group, &owner).await {
        Ok(obs) => Some(obs),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "cannot list VMs for recovery: following each operation");
            None
        }
    }
}

/// Whether a listing made after the previous run ended shows an intent's write done: it was
/// accepted (it has an operation) before the listing started, so what the listing shows is
/// after it (`follow::seen`).
fn shown_done(intent: &store::Intent, obs: &Observation) -> bool {
    let (Some(op), Ok(kind)) = (&intent.operation, VmActionKind::try_from(intent.kind)) else {
        return false;
    };
    if crate::gc::is_gc_kind(intent.kind) {
        return false; // A collector's delete: its operation says, as before.
    }
    let bulk = BulkOperation::from_intent(op).is_some();
    follow::seen(kind, bulk, obs.vms.get(&intent.node.to_ascii_lowercase())) == follow::Seen::Done
}

/// Intents open in the store that nothing in this process is working on — left by a write
/// whose task ended without closing it, or by start-up recovery when Azure did not answer —
/// are resolved at every activation as at start-up, in the background, each node counted in
/// flight (`executing`) meanwhile so no plan touches it. An intent whose write this process
/// runs is never taken: its node is in `executing` from before the intent was opened until
/// after it is closed, and the intent is read again once the node is claimed.
pub(crate) async fn resolve_stranded(sh: &Arc<Shared>) {
    let open = match sh.store.open_intents().await {
        Ok(open) => open,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "cannot read open intents");
            return;
        }
    };
    for intent in open {
        if !sh.claim(&intent.node) {
            continue;
        }
        let sh = sh.clone();
        tokio::spawn(async move {
            // Closed meanwhile by the write that held the node a moment ago: nothing to do.
            let still_open = matches!(
                sh.store.last_intent_for(&intent.node).await,
                Ok(Some(last)) if last.id == intent.id && last.closed_at.is_none()
            );
            let node = intent.node.clone();
            if still_open {
                tracing::warn!(pool = %intent.pool, node = %intent.node, kind = ?intent.kind, intent = intent.id, "an intent was left open: resolving it");
                resolve(&sh, intent, "left open", false).await;
            }
            sh.release(&node);
            sh.settled.notify_one();
        });
    }
}

/// Resolves one intent of the previous run; one that cannot be resolved yet (Azure did not
/// answer) stays open for the next start. `shown_done`: a listing made since already shows
/// the write done, so its operation is not read.
async fn resolve(sh: &Arc<Shared>, intent: store::Intent, whose: &str, shown_done: bool) {
    let handle = intent.operation.as_ref().and_then(|v| {
        BulkOperation::from_intent(v).map(Handle::Bulk).or_else(|| {
            serde_json::from_value::<Operation>(v.clone())
                .ok()
                .map(Handle::Arm)
        })
    });
    let recovered = json!({"size": intent.detail["size"], "priority": intent.detail["priority"],
                           "intent": intent.id, "recovered": true});
    let outcome = match handle {
        // Accepted: follow the operation to its end (unless a listing showed it).
        Some(h) => match match h {
            _ if shown_done => Ok(()),
            Handle::Arm(op) => op.wait_done(&sh.arm).await,
            Handle::Bulk(op) => op.wait_done(sh).await,
        } {
            Ok(()) => {
                crate::backoff::succeeded(sh, &intent.pool, intent.kind).await;
                if !crate::batch::is_batch_kind(intent.kind) && !crate::gc::is_gc_kind(intent.kind)
                {
                    record_success(
                        sh,
                        &intent.pool,
                        intent.kind,
                        &intent.node,
                        &intent.reason,
                        recovered.clone(),
                    )
                    .await;
                }
                IntentOutcome::Succeeded
            }
            Err(e) => {
                // Closes the intent too.
                recovered_failure(sh, &intent, &e).await;
                resolved_event(sh, &intent, whose, "failed").await;
                return;
            }
        },
        // A Batch write without an operation: the next observation shows what happened
        // and the planner decides again (a create is a GET before the PUT).
        None if crate::batch::is_batch_kind(intent.kind) => IntentOutcome::Abandoned {
            why: "resumed after a restart: the Batch pool's observation takes over".into(),
        },
        // A NIC or disk delete without an operation: the garbage collector's next listing
        // shows whether it is still there, and deletes it again after the grace period.
        None if crate::gc::is_gc_kind(intent.kind) => IntentOutcome::Abandoned {
            why: "resumed after a restart: the garbage collector lists it again".into(),
        },
        // We crashed around the ARM call: look at the resource itself.
        None => match sh
            .arm
            .get_vm(&sh.cfg.resource_group, &intent.node, false)
            .await
        {
            Ok(Some(_)) => IntentOutcome::Abandoned {
                why: "resumed after a restart: the VM exists; observation takes over".into(),
            },
            // Our delete reached Azure before the stop (or the VM was gone already):
            // either way it is gone at our request, not outside renderburst.
            Ok(None) if intent.kind == ActionKind::Delete => {
                record_success(
                    sh,
                    &intent.pool,
                    intent.kind,
                    &intent.node,
                    &intent.reason,
                    recovered.clone(),
                )
                .await;
                IntentOutcome::Abandoned {
                    why: "resumed after a restart: the VM is gone".into(),
                }
            }
            Ok(None) => {
                if intent.kind == ActionKind::Create
                    && let Ok(Some(vm)) = sh.store.get_vm(&intent.node).await
                    && vm.azure_id.is_none()
                {
                    let _ = sh.store.delete_vm(&intent.node).await;
                }
                IntentOutcome::Abandoned {
                    why: "resumed after a restart: the write never reached Azure".into(),
                }
            }
            Err(e) => {
                tracing::warn!(node = %intent.node, error = %chain(&e), "cannot resolve an open intent yet");
                return;
            }
        },
    };
    let _ = sh.store.close_intent(intent.id, &outcome).await;
    resolved_event(sh, &intent, whose, &format!("{outcome:?}")).await;
}

/// The `intent.recovered` event of a resolved intent.
async fn resolved_event(sh: &Shared, intent: &store::Intent, whose: &str, outcome: &str) {
    let _ = event(
        sh,
        "intent.recovered",
        Some(&intent.pool),
        Some(&intent.node),
        &format!("{:?} intent {whose} resolved: {outcome}", intent.kind),
        json!({}),
    )
    .await;
}
