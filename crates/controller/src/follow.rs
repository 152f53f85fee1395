//! Following a VM write to its end from the listings every activation makes, not by polling
//! its operation.
//!
//! Polling each operation costs a read per VM per second out of ARM's read budget (25/s per
//! subscription), and holding an operation slot while it is polled made a burst of 100 go
//! out in two waves. A write's outcome is already on the VM list pages an activation reads:
//! the provisioning state (`Failed` carries its code in the instance view) and the power
//! state. So once ARM has accepted a write, its task lets go of its slot and waits for a
//! listing that *started after* the write was accepted; that listing shows the write done, or
//! still under way (the task asks for another activation), or something only the operation
//! can explain (a failed provisioning state, a VM that vanished) — and only then is the
//! operation polled, for its error. A write no listing settles within
//! [`FOLLOW_BY_LISTING_FOR`] (listings failing, say) is polled as before.

use std::sync::Arc;
use std::time::Duration;

use azure::Operation;
use rb_core::VmActionKind;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bulk::BulkOperation;
use crate::{Observation, ObservedVm, Shared};

/// How long a write is followed by listings alone before its operation is polled. Azure's
/// VM creates take minutes; this only catches what listings cannot show.
pub(crate) const FOLLOW_BY_LISTING_FOR: Duration = Duration::from_secs(300);

/// One activation's complete listing, with when it started.
pub(crate) struct Listing {
    /// Before the first page was asked for: the listing shows every write accepted earlier.
    pub started: Instant,
    pub observation: Arc<Observation>,
}

/// What a listing says about a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The write's effect is there: done.
    Done,
    /// Under way: wait for the next listing.
    Pending,
    /// Only the operation can tell (a failed provisioning state, the VM missing): poll it.
    AskTheOperation,
}

fn is(state: Option<&str>, want: &str) -> bool {
    state.is_some_and(|s| s.eq_ignore_ascii_case(want))
}

/// The power state's last word (`PowerState/running` → `running`).
fn power(vm: &ObservedVm) -> Option<&str> {
    vm.power
        .as_deref()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
}

/// What a listing that started after the write was accepted says about it. Pure. A bulk
/// write (`bulk`) starts only when Compute Schedule schedules it, so until then the VM shows
/// what it was: not yet created, or in its old power state, is still under way.
pub fn seen(kind: VmActionKind, bulk: bool, vm: Option<&ObservedVm>) -> Seen {
    let Some(vm) = vm else {
        return match kind {
            VmActionKind::Delete | VmActionKind::Forget => Seen::Done,
            VmActionKind::Create if bulk => Seen::Pending,
            // A create's VM is listed from the moment ARM accepts its PUT; a started or
            // deallocated VM does not vanish: only the operation knows what happened.
            _ => Seen::AskTheOperation,
        };
    };
    let prov = vm.provisioning.as_deref();
    if is(prov, "failed") {
        return Seen::AskTheOperation;
    }
    let settled = is(prov, "succeeded");
    let power = power(vm).unwrap_or("");
    let one_of = |states: &[&str]| states.iter().any(|s| power.eq_ignore_ascii_case(s));
    match kind {
        VmActionKind::Create if settled => Seen::Done,
        VmActionKind::Start if settled && one_of(&["running"]) => Seen::Done,
        VmActionKind::Deallocate if settled && one_of(&["deallocated"]) => Seen::Done,
        // Settled the other way: Azure shows a write as under way from when it accepts it,
        // so the write ended and something else came after it (a Spot eviction of a VM
        // being started, say). Only the operation says how the write itself ended.
        VmActionKind::Start
            if !bulk && settled && one_of(&["deallocated", "deallocating", "stopped"]) =>
        {
            Seen::AskTheOperation
        }
        VmActionKind::Deallocate if !bulk && settled && one_of(&["running", "starting"]) => {
            Seen::AskTheOperation
        }
        VmActionKind::Forget => Seen::Done,
        _ => Seen::Pending,
    }
}

/// How a write's own end is read when a listing cannot tell: its ARM long-running operation,
/// or its Compute Schedule operation.
#[derive(Clone, Copy)]
pub(crate) enum Handle<'a> {
    Arm(&'a Operation),
    Bulk(&'a BulkOperation),
}

impl Handle<'_> {
    fn completed(&self) -> bool {
        matches!(self, Handle::Arm(op) if op.completed)
    }

    fn first_look(&self, sh: &Shared) -> Duration {
        match self {
            Handle::Arm(op) => op.first_look(&sh.arm),
            // Compute Schedule starts an operation about a second after the request
            // (docs/compute-schedule.md): look once it may have begun.
            Handle::Bulk(_) => Duration::from_secs(1),
        }
    }

    async fn wait_done(&self, sh: &Shared) -> azure::Result<()> {
        match self {
            Handle::Arm(op) => op.wait_done(&sh.arm).await,
            Handle::Bulk(op) => op.wait_done(sh).await,
        }
    }
}

/// A write waiting for a listing to show its end.
pub(crate) struct Followed {
    kind: VmActionKind,
    /// Sent through Compute Schedule: the write starts when the service schedules it.
    bulk: bool,
    accepted: Instant,
    verdict: oneshot::Sender<Verdict>,
}

/// What the activation's listing settled for a followed write.
enum Verdict {
    /// Done; the activation waits until the write's task has recorded it (the [`Ack`] is
    /// dropped), so it plans from the outcome, not from a half-recorded one.
    Done(Ack),
    AskTheOperation,
}

/// Held by a write's task until its outcome is recorded and its node released.
pub(crate) struct Ack(#[allow(dead_code)] oneshot::Sender<()>);

/// Judges every followed write ARM accepted before `listing` started: those it shows done or
/// that only their operation can explain are handed their verdict. Returns what to wait for
/// before planning: the done writes' tasks recording their outcome.
pub(crate) fn judge(sh: &Shared, listing: &Listing) -> Vec<oneshot::Receiver<()>> {
    let mut acks = Vec::new();
    let mut followed = sh.followed.lock().unwrap_or_else(|p| p.into_inner());
    let settled: Vec<(String, Seen)> = followed
        .iter()
        .filter(|(_, f)| f.accepted <= listing.started)
        .map(|(node, f)| {
            let s = seen(f.kind, f.bulk, listing.observation.vms.get(node.as_str()));
            (node.clone(), s)
        })
        .filter(|(_, s)| *s != Seen::Pending)
        .collect();
    for (node, s) in settled {
        let Some(f) = followed.remove(&node) else {
            continue;
        };
        let verdict = match s {
            Seen::Done => {
                let (tx, rx) = oneshot::channel();
                acks.push(rx);
                Verdict::Done(Ack(tx))
            }
            _ => Verdict::AskTheOperation,
        };
        // A task that stopped waiting (the daemon stopping) takes no verdict.
        let _ = f.verdict.send(verdict);
    }
    if !followed.is_empty() {
        // Still under way: another activation, after the reconciler's settle gap.
        sh.settled.notify_one();
    }
    acks
}

/// Waits for the end of a write ARM accepted at `accepted`: from the listings (see
/// [`judge`]), or from its operation when a listing cannot tell or none settles it in time.
/// A write settled by a listing returns the [`Ack`] its task drops once it has recorded the
/// outcome.
pub(crate) async fn outcome(
    sh: &Shared,
    kind: VmActionKind,
    node: &str,
    op: Handle<'_>,
    accepted: Instant,
) -> (azure::Result<()>, Option<Ack>) {
    if op.completed() {
        return (Ok(()), None);
    }
    let key = node.to_ascii_lowercase();
    let (tx, mut rx) = oneshot::channel();
    if let Ok(mut f) = sh.followed.lock() {
        f.insert(
            key.clone(),
            Followed {
                kind,
                bulk: matches!(op, Handle::Bulk(_)),
                accepted,
                verdict: tx,
            },
        );
    }
    // The first activation worth having: when the operation is first worth a look.
    let mut nudge = accepted + op.first_look(sh);
    let give_up = accepted + FOLLOW_BY_LISTING_FOR;
    loop {
        tokio::select! {
            verdict = &mut rx => return match verdict {
                Ok(Verdict::Done(ack)) => (Ok(()), Some(ack)),
                Ok(Verdict::AskTheOperation) | Err(_) => (op.wait_done(sh).await, None),
            },
            _ = tokio::time::sleep_until(nudge) => {
                sh.settled.notify_one();
                // Until a listing settles it, ask again now and then (one may be cut).
                nudge = Instant::now() + op.first_look(sh).max(Duration::from_secs(1));
            }
            _ = tokio::time::sleep_until(give_up) => {
                if let Ok(mut f) = sh.followed.lock() {
                    f.remove(&key);
                }
                return (op.wait_done(sh).await, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rb_core::{NodeState, Priority};

    fn vm(prov: &str, power: Option<&str>) -> ObservedVm {
        ObservedVm {
            name: "maya-00001".into(),
            id: "/x/maya-00001".into(),
            pool: "maya".into(),
            size: "Standard_D4s_v5".into(),
            priority: Priority::Regular,
            state: NodeState::Running,
            provisioning: Some(prov.into()),
            power: power.map(str::to_owned),
            failed_code: None,
        }
    }

    #[test]
    fn a_listing_settles_what_it_can_show_and_asks_the_operation_otherwise() {
        use Seen::*;
        use VmActionKind::*;
        let running = vm("Succeeded", Some("PowerState/running"));
        let starting = vm("Succeeded", Some("PowerState/starting"));
        let deallocated = vm("Succeeded", Some("PowerState/deallocated"));
        let creating = vm("Creating", None);
        let updating = vm("Updating", Some("PowerState/deallocated"));
        let failed = vm("Failed", Some("PowerState/deallocated"));
        let cases = [
            (Create, Some(&creating), Pending),
            (Create, Some(&running), Done),
            (Create, Some(&failed), AskTheOperation),
            (Create, None, AskTheOperation),
            (Start, Some(&deallocated), AskTheOperation),
            (Start, Some(&starting), Pending),
            (Start, Some(&running), Done),
            (Start, Some(&failed), AskTheOperation),
            (Deallocate, Some(&running), AskTheOperation),
            (
                Deallocate,
                Some(&vm("Updating", Some("PowerState/running"))),
                Pending,
            ),
            (
                Deallocate,
                Some(&vm("Succeeded", Some("PowerState/deallocating"))),
                Pending,
            ),
            (Deallocate, Some(&updating), Pending),
            (Deallocate, Some(&deallocated), Done),
            (Deallocate, None, AskTheOperation),
            (Delete, Some(&running), Pending),
            (Delete, Some(&failed), AskTheOperation),
            (Delete, None, Done),
            (Forget, Some(&running), Done),
        ];
        for (kind, seen_vm, want) in cases {
            assert_eq!(seen(kind, false, seen_vm), want, "{kind:?} {seen_vm:?}");
        }
        // In bulk, a write waits for Compute Schedule to start it: the VM not there yet, or
        // still in its old power state, is under way; a failed one still asks.
        let bulk = [
            (Create, None, Pending),
            (Create, Some(&running), Done),
            (Create, Some(&failed), AskTheOperation),
            (Start, Some(&deallocated), Pending),
            (Start, Some(&running), Done),
            (Deallocate, Some(&running), Pending),
            (Deallocate, Some(&deallocated), Done),
            (Delete, Some(&running), Pending),
            (Delete, None, Done),
        ];
        for (kind, seen_vm, want) in bulk {
            assert_eq!(seen(kind, true, seen_vm), want, "bulk {kind:?} {seen_vm:?}");
        }
    }
}
