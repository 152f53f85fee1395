//! One VM's Compute Schedule operation, from `PendingScheduling` to `Succeeded`, `Failed`
//! or `Cancelled`, through the VM model every other request uses.
//!
//! An attempt waits its turn for Compute's tokens ([`State::compute_reserve`]), then runs the
//! same work as a VM PUT, start, deallocate or DELETE (`vm_create`, `vm_power`,
//! `vm_begin_delete`), whose simulator operation it follows to the end. A failure the service
//! would call transient (capacity, an internal error, another operation on the VM) is
//! retried after `compute_schedule.retry_interval_ms` while the retry policy allows:
//! `retryCount` more attempts, none starting after the deadline plus
//! `retryWindowInMinutes` (operations "could still be processed later as long as their due
//! time for execution is not past deadline time + retrywindowinminutes",
//! azure-computeschedule-dotnet-samples `src/Common/UtilityMethods.cs`). Which errors count
//! as transient is the simulator's reading of "To offload complexity of determining if the
//! error is transient in nature and needs to be retried"
//! (https://learn.microsoft.com/en-us/rest/api/computeschedule/?view=rest-computeschedule-2025-05-01);
//! Azure does not list them. Quota, bad bodies and missing resources fail at once.

use std::time::{Duration, Instant};

use arm_model::computeschedule::{
    OperationErrorDetails, OperationState, ResourceOperationDetails, ResourceOperationError,
    RetryPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::persist::{datetime, instant, opt_datetime, opt_instant};
use crate::reply::ArmErr;
use crate::state::{OpStatus, Res, State, rfc3339};
use crate::throttle::ComputeGroup;

/// What one operation does to its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkKind {
    Create,
    Start,
    Deallocate,
    Delete,
}

impl BulkKind {
    /// `opType` on the wire.
    pub fn op_type(self) -> &'static str {
        match self {
            BulkKind::Create => "Create",
            BulkKind::Start => "Start",
            BulkKind::Deallocate => "Deallocate",
            BulkKind::Delete => "Delete",
        }
    }

    /// Compute's policy each attempt draws on: creates are PUTs of new VMs, starts are VM
    /// updates, deallocates and deletes are in the Delete VM policy
    /// (https://learn.microsoft.com/en-us/azure/virtual-machines/compute-throttling-limits).
    fn group(self) -> ComputeGroup {
        match self {
            BulkKind::Create => ComputeGroup::PutVm,
            BulkKind::Start => ComputeGroup::UpdateVm,
            BulkKind::Deallocate | BulkKind::Delete => ComputeGroup::DeleteVm,
        }
    }

    /// `azureOperationName` of its errors: the ARM operation each attempt is.
    fn azure_operation(self) -> &'static str {
        match self {
            BulkKind::Create => "Microsoft.Compute/virtualMachines/write",
            BulkKind::Start => "Microsoft.Compute/virtualMachines/start/action",
            BulkKind::Deallocate => "Microsoft.Compute/virtualMachines/deallocate/action",
            BulkKind::Delete => "Microsoft.Compute/virtualMachines/delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkState {
    PendingScheduling,
    Executing,
    Succeeded,
    Failed,
    Cancelled,
}

impl BulkState {
    fn wire(self) -> &'static str {
        match self {
            BulkState::PendingScheduling => OperationState::PENDING_SCHEDULING,
            BulkState::Executing => OperationState::EXECUTING,
            BulkState::Succeeded => OperationState::SUCCEEDED,
            BulkState::Failed => OperationState::FAILED,
            BulkState::Cancelled => OperationState::CANCELLED,
        }
    }

    pub fn terminal(self) -> bool {
        matches!(
            self,
            BulkState::Succeeded | BulkState::Failed | BulkState::Cancelled
        )
    }
}

/// One VM's operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkOp {
    pub id: String,
    pub seq: u64,
    pub kind: BulkKind,
    /// The VM's id as the request named it (creates: built from the profile).
    pub vm: String,
    pub rg: String,
    pub name: String,
    pub location: String,
    pub state: BulkState,
    /// When the request was accepted: `creationTime`, and the `InitiateAt` deadline.
    #[serde(with = "datetime")]
    pub created: OffsetDateTime,
    /// When the first attempt went to Compute.
    #[serde(with = "opt_datetime")]
    pub activated: Option<OffsetDateTime>,
    #[serde(with = "opt_datetime")]
    pub completed: Option<OffsetDateTime>,
    /// The next attempt may go at (or, `reserved`, goes at) this instant.
    #[serde(with = "instant")]
    pub not_before: Instant,
    /// Its Compute tokens are taken: the attempt goes at `not_before`.
    pub reserved: bool,
    /// No attempt starts after this (deadline + retry window).
    #[serde(with = "instant")]
    pub window_end: Instant,
    /// As the request gave it (answered back as is).
    pub retry: Option<RetryPolicy>,
    pub retries_left: u32,
    /// The simulator operation of the running attempt.
    pub attempt_op: Option<String>,
    /// Every failed attempt, for `virtualMachinesGetOperationErrors`.
    pub errors: Vec<OperationErrorDetails>,
    pub error: Option<ResourceOperationError>,
    /// The merged VM body of a create.
    pub body: Option<Value>,
    #[serde(with = "opt_instant")]
    pub finished_at: Option<Instant>,
    /// Its failure was answered to a status poll (counted once in `failures_reported`).
    pub failure_reported: bool,
}

impl BulkOp {
    /// `ResourceOperationDetails` as the service answers it.
    pub fn details(&self, sub: &str) -> ResourceOperationDetails {
        ResourceOperationDetails {
            operation_id: self.id.clone(),
            resource_id: Some(self.vm.clone()),
            op_type: Some(self.kind.op_type().into()),
            subscription_id: Some(sub.to_owned()),
            deadline: Some(rfc3339(self.created)),
            deadline_type: Some("InitiateAt".into()),
            state: Some(self.state.wire().into()),
            timezone: None,
            time_zone: Some("UTC".into()),
            resource_operation_error: self.error.clone(),
            completed_at: self.completed.map(rfc3339),
            retry_policy: self.retry,
        }
    }
}

/// The error an attempt met, and whether the service would try again.
struct AttemptError {
    code: String,
    message: String,
    crp_op: Option<String>,
    transient: bool,
}

impl AttemptError {
    fn from_sync(e: &ArmErr) -> Self {
        let transient = e.status.is_server_error()
            || e.body
                .error
                .message
                .contains("another operation is in progress");
        Self {
            code: e.code().to_owned(),
            message: e.body.error.message.clone(),
            crp_op: None,
            transient,
        }
    }
}

/// Codes of asynchronous failures the service retries: no capacity now, or an internal error.
const TRANSIENT_CODES: &[&str] = &[
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "InternalExecutionError",
];

fn wall_at(wall_now: OffsetDateTime, now: Instant, t: Instant) -> OffsetDateTime {
    wall_now - now.saturating_duration_since(t)
}

impl State {
    /// Moves every Compute Schedule operation along to `now`; true if any changed (starting
    /// an attempt may finish one, which `advance` then completes, so it calls this again).
    pub fn advance_bulk(&mut self, now: Instant) -> bool {
        let wall_now = self.clock.wall();
        let mut changed = false;
        let mut ids: Vec<(Instant, u64, String)> = self
            .bulk
            .values()
            .filter(|b| !b.state.terminal())
            .map(|b| (b.not_before, b.seq, b.id.clone()))
            .collect();
        ids.sort();
        for (_, _, id) in ids {
            let Some(b) = self.bulk.get(&id).cloned() else {
                continue;
            };
            match b.state {
                BulkState::Executing => changed |= self.follow_attempt(&b, now, wall_now),
                BulkState::PendingScheduling if b.not_before <= now => {
                    changed = true;
                    if b.reserved {
                        self.run_attempt(&b, now, wall_now);
                    } else {
                        let wait = self.compute_reserve(b.kind.group(), &b.vm, b.not_before);
                        if let Some(op) = self.bulk.get_mut(&id) {
                            op.reserved = true;
                            op.not_before += Duration::from_secs_f64(wait);
                        }
                    }
                }
                _ => {}
            }
        }
        changed
    }

    /// An attempt whose Compute operation may have ended.
    fn follow_attempt(&mut self, b: &BulkOp, now: Instant, wall_now: OffsetDateTime) -> bool {
        let Some(op) = b.attempt_op.as_ref().and_then(|o| self.ops.get(o)) else {
            // Its operation is gone (never kept this long): nothing more will be known.
            let err = AttemptError {
                code: "InternalExecutionError".into(),
                message: "The operation's result was lost.".into(),
                crp_op: b.attempt_op.clone(),
                transient: false,
            };
            self.attempt_failed(&b.id, err, now, now, wall_now);
            return true;
        };
        // When it ended in simulated time: its due instant (time is lazy, so it may only
        // have been noticed now).
        let ended = op.due.min(now);
        let crp = Some(op.id.clone());
        match op.status.clone() {
            OpStatus::InProgress => false,
            OpStatus::Succeeded => {
                self.finish_bulk(&b.id, BulkState::Succeeded, None, ended, now, wall_now);
                true
            }
            OpStatus::Failed(d, _) | OpStatus::Canceled(d) => {
                let transient = TRANSIENT_CODES.contains(&d.code.as_str());
                let err = AttemptError {
                    code: d.code,
                    message: d.message,
                    crp_op: crp,
                    transient,
                };
                self.attempt_failed(&b.id, err, ended, now, wall_now);
                true
            }
        }
    }

    /// Sends one attempt to Compute at the instant its tokens were earned.
    fn run_attempt(&mut self, b: &BulkOp, now: Instant, wall_now: OffsetDateTime) {
        let at = b.not_before;
        let started = match b.kind {
            BulkKind::Create => self.bulk_create(b, at),
            BulkKind::Start => self.vm_power(&b.vm, &b.name, &b.rg, "start", at),
            BulkKind::Deallocate => self.vm_power(&b.vm, &b.name, &b.rg, "deallocate", at),
            // A VM already gone is deleted.
            BulkKind::Delete => Ok(self.vm_begin_delete(&b.vm, at)),
        };
        match started {
            Ok(Some(op)) => {
                if let Some(x) = self.bulk.get_mut(&b.id) {
                    x.state = BulkState::Executing;
                    x.attempt_op = Some(op);
                    x.activated.get_or_insert(wall_at(wall_now, now, at));
                }
            }
            Ok(None) => {
                if let Some(x) = self.bulk.get_mut(&b.id) {
                    x.activated.get_or_insert(wall_at(wall_now, now, at));
                }
                self.finish_bulk(&b.id, BulkState::Succeeded, None, at, now, wall_now);
            }
            Err(e) => self.attempt_failed(&b.id, AttemptError::from_sync(&e), at, now, wall_now),
        }
    }

    /// A create attempt: the VM PUT's work on a new VM; on a VM whose earlier create failed,
    /// that create again; on one being created, that create (an idempotent PUT retry).
    fn bulk_create(&mut self, b: &BulkOp, at: Instant) -> Result<Option<String>, ArmErr> {
        let body = b.body.clone().unwrap_or_default();
        let sub = self.cfg.identity.subscription_id.clone();
        let rg = self.require_rg(&sub, &b.rg)?;
        let existing = self.get(&b.vm).and_then(Res::vm).cloned();
        match existing {
            None => {
                if self.res.len() >= crate::state::MAX_RESOURCES {
                    return Err(ArmErr::conflict(
                        "ResourceQuotaExceeded",
                        "The simulator holds too many resources; delete some first.",
                    ));
                }
                self.vm_create(&sub, &rg, &b.vm, &b.name, &body, at)
                    .map(|(op, _)| Some(op))
            }
            Some(v) if v.provisioning == "Failed" && v.busy_op.is_none() && !v.deleting => {
                self.vm_recreate(&b.vm, at).map(Some)
            }
            Some(_) => self
                .vm_update_existing(&b.vm, &b.name, &body, at)
                .map(|(op, _)| Some(op)),
        }
    }

    fn attempt_failed(
        &mut self,
        id: &str,
        err: AttemptError,
        at: Instant,
        now: Instant,
        wall_now: OffsetDateTime,
    ) {
        let retry_ms = self.cfg.compute_schedule.retry_interval_ms;
        let Some(b) = self.bulk.get_mut(id) else {
            return;
        };
        let when = rfc3339(wall_at(wall_now, now, at));
        b.errors.push(OperationErrorDetails {
            error_code: err.code.clone(),
            error_details: err.message.clone(),
            timestamp: Some(when.clone()),
            time_stamp: Some(when),
            azure_operation_name: Some(b.kind.azure_operation().into()),
            crp_operation_id: err.crp_op,
        });
        let next = at + Duration::from_millis(retry_ms);
        if err.transient && b.retries_left > 0 && next <= b.window_end {
            b.retries_left -= 1;
            b.state = BulkState::PendingScheduling;
            b.reserved = false;
            b.attempt_op = None;
            b.not_before = next;
            self.stats.bulk.retries += 1;
            return;
        }
        let error = ResourceOperationError {
            error_code: err.code,
            error_details: err.message,
        };
        self.finish_bulk(id, BulkState::Failed, Some(error), at, now, wall_now);
    }

    pub(crate) fn finish_bulk(
        &mut self,
        id: &str,
        state: BulkState,
        error: Option<ResourceOperationError>,
        at: Instant,
        now: Instant,
        wall_now: OffsetDateTime,
    ) {
        let Some(b) = self.bulk.get_mut(id) else {
            return;
        };
        b.state = state;
        b.error = error;
        b.completed = Some(wall_at(wall_now, now, at));
        b.finished_at = Some(now);
        b.attempt_op = None;
        *self
            .stats
            .bulk
            .outcomes
            .entry(state.wire().to_owned())
            .or_default() += 1;
    }

    /// Forgets finished operations after the simulator's retention for operations.
    pub fn prune_bulk(&mut self, now: Instant) {
        self.bulk.retain(|_, b| match b.finished_at {
            Some(t) => now.saturating_duration_since(t) < crate::state::OP_RETENTION,
            None => true,
        });
    }
}
