//! `Microsoft.ComputeSchedule`, api-version 2025-05-01: bulk VM operations.
//!
//! `POST /subscriptions/{sub}/providers/Microsoft.ComputeSchedule/locations/{location}/…`
//! `virtualMachinesExecuteCreate`, `…ExecuteStart`, `…ExecuteDeallocate`, `…ExecuteDelete`,
//! `…GetOperationStatus`, `…GetOperationErrors` and `…CancelOperations`, with the bodies of
//! the 2025-05-01 specification (`arm_model::computeschedule`, which cites it). Every call
//! answers 200 at once; each VM of an execute call gets an operation id and its state moves
//! `PendingScheduling` → `Executing` → `Succeeded` | `Failed` (or `Cancelled`) with the
//! simulator's clock (`run.rs`), each attempt doing exactly what the VM's own PUT, start,
//! deallocate or DELETE would (quota, capacity, NIC and OS disk, `deleteOption`, tags,
//! injected failures and statistics included).
//!
//! Throttling: every call is an ARM write (all are POSTs; live answers carry
//! `x-ms-ratelimit-remaining-subscription-writes` and no Compute header, Azure/azure-cli-extensions
//! `src/computeschedule/azext_computeschedule/tests/latest/recordings/*.yaml`), taken by the
//! front door like any request. The VMs' attempts draw on Compute's buckets for the VM
//! operation they are (creates on Put VM, starts on Update VM, deallocates and deletes on
//! Delete VM, per subscription and per VM) but wait for their tokens instead of failing,
//! since the service "shields the customer from having to deal with throttling"
//! (https://learn.microsoft.com/en-us/rest/api/computeschedule/?view=rest-computeschedule-2025-05-01).
//! Whether Azure counts them in the caller's Compute buckets is not documented; drawing on
//! them keeps bulk and per-VM traffic under one Compute limit, the conservative choice.
//!
//! Validation (400 before anything runs) follows the limits Microsoft documents (100 VMs a
//! request, retry count 0–7, retry window 5–120 minutes; constants in arm-model) and the
//! specification's required fields. Error codes for these are not published; the simulator
//! answers ARM's generic ones (`InvalidRequestContent`, `InvalidParameter`). A VM the
//! service cannot act on is answered in the results with an `errorCode` and no operation, as
//! Microsoft's samples describe ("resources that have not been processed … due to …
//! operation conflicts, virtual machines not being found in an Azure location",
//! azure-computeschedule-dotnet-samples `src/Common/UtilityMethods.cs`).
//!
//! Not modelled: `Submit*` (scheduled for later), hibernate, `Blocked` (outages of the
//! service), `optimizationPreference` (accepted, no effect), `forceDeletion` (accepted, a
//! delete is a delete).

mod run;
mod wire;

pub use run::BulkOp;

use std::time::Duration;

use arm_model::computeschedule::{
    self as cs, ExecuteCreateRequest, ExecuteRequest, ExecutionParameters, OperationIdsRequest,
    ResourceOperation, ResourceOperationResponse, RetryPolicy,
};
use http::Method;
use serde_json::Value;

use crate::arm::{Ctx, truncate};
use crate::reply::{ArmErr, Reply};
use crate::state::{State, key};
use run::{BulkKind, BulkState};
use wire::{invalid, parse, required};

/// The calls the simulator serves, by their path segment (lower-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Execute(BulkKind),
    Status,
    Errors,
    Cancel,
}

impl Call {
    fn of(action: &str) -> Result<(Call, &'static str), ArmErr> {
        Ok(match action.to_ascii_lowercase().as_str() {
            "virtualmachinesexecutecreate" => (Call::Execute(BulkKind::Create), "ExecuteCreate"),
            "virtualmachinesexecutestart" => (Call::Execute(BulkKind::Start), "ExecuteStart"),
            "virtualmachinesexecutedeallocate" => {
                (Call::Execute(BulkKind::Deallocate), "ExecuteDeallocate")
            }
            "virtualmachinesexecutedelete" => (Call::Execute(BulkKind::Delete), "ExecuteDelete"),
            "virtualmachinesgetoperationstatus" => (Call::Status, "GetOperationStatus"),
            "virtualmachinesgetoperationerrors" => (Call::Errors, "GetOperationErrors"),
            "virtualmachinescanceloperations" => (Call::Cancel, "CancelOperations"),
            "virtualmachinesexecutehibernate"
            | "virtualmachinessubmitstart"
            | "virtualmachinessubmitdeallocate"
            | "virtualmachinessubmithibernate" => {
                return Err(ArmErr::bad_request(
                    "InvalidResourceType",
                    format!(
                        "The Compute Schedule action '{}' exists in Azure but is not modelled by the simulator.",
                        truncate(action, 64)
                    ),
                ));
            }
            _ => {
                return Err(ArmErr::bad_request(
                    "InvalidResourceType",
                    format!(
                        "The resource type '{}' could not be found in the namespace 'Microsoft.ComputeSchedule' for api version '2025-05-01'.",
                        truncate(action, 64)
                    ),
                ));
            }
        })
    }
}

/// One VM an execute call names.
struct Target {
    id: String,
    rg: String,
    name: String,
    body: Option<Value>,
}

impl State {
    /// A Compute Schedule call (route `ComputeSchedule`).
    pub fn compute_schedule(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        location: &str,
        action: &str,
    ) -> Result<Reply, ArmErr> {
        let (call, name) = Call::of(action)?;
        ctx.stat_type = Some(format!("Microsoft.ComputeSchedule/virtualMachines{name}"));
        if ctx.method != Method::POST {
            return Err(crate::resources::method_not_allowed(&ctx.method));
        }
        // Status and error polls change nothing: not a write for `last_write_unix_ms`.
        ctx.read_only = matches!(call, Call::Status | Call::Errors);
        let body = ctx.json_body()?;
        let reply = match call {
            Call::Execute(BulkKind::Create) => self.execute_create(ctx, sub, location, body)?,
            Call::Execute(kind) => self.execute(ctx, sub, location, kind, body)?,
            Call::Status => self.status(sub, body)?,
            Call::Errors => self.operation_errors(body)?,
            Call::Cancel => self.cancel(ctx, sub, body)?,
        };
        *self.stats.bulk.requests.entry(name.to_owned()).or_default() += 1;
        Ok(reply)
    }

    fn execute(
        &mut self,
        ctx: &Ctx,
        sub: &str,
        location: &str,
        kind: BulkKind,
        body: Value,
    ) -> Result<Reply, ArmErr> {
        let req: ExecuteRequest = parse(body)?;
        if kind != BulkKind::Delete {
            required(req.correlation_id.as_ref(), "correlationid")?;
        }
        let policy = retry_policy(&req.execution_parameters)?;
        let ids = &req.resources.ids;
        batch_size(ids.len(), "resources.ids")?;
        let mut targets = Vec::new();
        let mut rejected = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let (vm_sub, rg, name) = wire::vm_id(id)?;
            if !seen.insert(key(id)) {
                return Err(invalid(
                    "resources.ids",
                    format!(
                        "The virtual machine '{}' is named twice.",
                        truncate(id, 300)
                    ),
                ));
            }
            let found = vm_sub.eq_ignore_ascii_case(sub)
                && self
                    .get(id)
                    .and_then(|r| r.vm())
                    .is_some_and(|v| same_location(&v.location, location));
            if !found {
                rejected.push(wire::rejected(
                    id,
                    "ResourceNotFound",
                    format!(
                        "The virtual machine '{}' was not found in location '{location}'.",
                        truncate(id, 300)
                    ),
                ));
                continue;
            }
            targets.push(Target {
                id: id.clone(),
                rg,
                name,
                body: None,
            });
        }
        self.accept(ctx, sub, location, kind, targets, rejected, policy)
    }

    fn execute_create(
        &mut self,
        ctx: &Ctx,
        sub: &str,
        location: &str,
        body: Value,
    ) -> Result<Reply, ArmErr> {
        let req: ExecuteCreateRequest = parse(body)?;
        let params = required(req.execution_parameters.as_ref(), "executionParameters")?;
        let policy = retry_policy(params)?;
        let mut targets: Vec<Target> = Vec::new();
        for profile in wire::profiles(&req.resource_config_parameters, location)? {
            let rg = self.require_rg(sub, &profile.rg)?;
            if targets
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(&profile.name))
            {
                return Err(invalid(
                    "resourceConfigParameters.resourceOverrides",
                    format!(
                        "The virtual machine name '{}' is used twice.",
                        truncate(&profile.name, 80)
                    ),
                ));
            }
            targets.push(Target {
                id: format!(
                    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{}",
                    profile.name
                ),
                rg,
                name: profile.name,
                body: Some(profile.body),
            });
        }
        self.accept(
            ctx,
            sub,
            location,
            BulkKind::Create,
            targets,
            Vec::new(),
            policy,
        )
    }

    /// Starts an operation per target (a VM with an operation still running is refused) and
    /// answers the execute call.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        ctx: &Ctx,
        sub: &str,
        location: &str,
        kind: BulkKind,
        targets: Vec<Target>,
        mut results: Vec<ResourceOperation>,
        policy: Policy,
    ) -> Result<Reply, ArmErr> {
        let now = ctx.now;
        let wall = self.clock.wall();
        let first_try = now + Duration::from_millis(self.cfg.compute_schedule.schedule_delay_ms);
        for t in targets {
            if let Some(busy) = self
                .bulk
                .values()
                .find(|b| !b.state.terminal() && key(&b.vm) == key(&t.id))
            {
                results.push(wire::rejected(
                    &t.id,
                    "Conflict",
                    format!(
                        "The virtual machine '{}' already has Compute Schedule operation '{}' ({}) in progress.",
                        truncate(&t.id, 300),
                        busy.id,
                        busy.kind.op_type()
                    ),
                ));
                continue;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let op = BulkOp {
                id: id.clone(),
                seq: self.next_seq(),
                kind,
                vm: t.id.clone(),
                rg: t.rg,
                name: t.name,
                location: location.to_owned(),
                state: BulkState::PendingScheduling,
                created: wall,
                activated: None,
                completed: None,
                not_before: first_try,
                reserved: false,
                window_end: now + policy.window,
                retry: policy.given,
                retries_left: policy.retries,
                attempt_op: None,
                errors: Vec::new(),
                error: None,
                body: t.body,
                finished_at: None,
                failure_reported: false,
            };
            results.push(ResourceOperation {
                resource_id: Some(t.id),
                error_code: None,
                error_details: None,
                operation: Some(op.details(sub)),
            });
            self.bulk.insert(id, op);
            *self
                .stats
                .bulk
                .operations
                .entry(kind.op_type().to_owned())
                .or_default() += 1;
        }
        for r in &results {
            if let Some(code) = &r.error_code {
                *self.stats.bulk.rejected.entry(code.clone()).or_default() += 1;
            }
        }
        let body = ResourceOperationResponse {
            description: format!("{} Resource request", kind.op_type()),
            resource_type: "VirtualMachines".into(),
            location: location.to_owned(),
            results: Some(results),
        };
        Ok(Reply::ok(serde_json::to_value(body).unwrap_or_default()))
    }

    fn status(&mut self, sub: &str, body: Value) -> Result<Reply, ArmErr> {
        let req: OperationIdsRequest = parse(body)?;
        required(req.correlation_id.as_ref(), "correlationid")?;
        operation_ids(&req.operation_ids)?;
        let mut results = Vec::new();
        for id in &req.operation_ids {
            let Some(b) = self.bulk.get_mut(id) else {
                results.push(wire::unknown_operation(id));
                continue;
            };
            if b.state == BulkState::Failed && !b.failure_reported {
                b.failure_reported = true;
                if let Some(e) = &b.error {
                    *self
                        .stats
                        .failures_reported
                        .entry(e.error_code.clone())
                        .or_default() += 1;
                }
            }
            results.push(ResourceOperation {
                resource_id: Some(b.vm.clone()),
                error_code: None,
                error_details: None,
                operation: Some(b.details(sub)),
            });
        }
        Ok(Reply::ok(
            serde_json::to_value(cs::OperationsResponse { results }).unwrap_or_default(),
        ))
    }

    fn operation_errors(&mut self, body: Value) -> Result<Reply, ArmErr> {
        let req: OperationIdsRequest = parse(body)?;
        operation_ids(&req.operation_ids)?;
        let results = req
            .operation_ids
            .iter()
            .map(|id| match self.bulk.get(id) {
                Some(b) => wire::errors_of(b),
                None => cs::OperationErrorsResult {
                    operation_id: Some(id.clone()),
                    request_error_code: Some("OperationNotFound".into()),
                    request_error_details: Some(format!(
                        "Operation '{}' was not found.",
                        truncate(id, 64)
                    )),
                    ..Default::default()
                },
            })
            .collect();
        Ok(Reply::ok(
            serde_json::to_value(cs::GetOperationErrorsResponse { results }).unwrap_or_default(),
        ))
    }

    /// Cancels operations that have not started an attempt yet. The answer lists "the
    /// resource operations that were successfully cancelled" (the specification's words), so
    /// operations already running or finished otherwise, and unknown ids, are left out.
    fn cancel(&mut self, ctx: &Ctx, sub: &str, body: Value) -> Result<Reply, ArmErr> {
        let req: OperationIdsRequest = parse(body)?;
        required(req.correlation_id.as_ref(), "correlationid")?;
        operation_ids(&req.operation_ids)?;
        let wall = self.clock.wall();
        let mut results = Vec::new();
        for id in &req.operation_ids {
            let Some(state) = self.bulk.get(id).map(|b| b.state) else {
                continue;
            };
            if state == BulkState::PendingScheduling {
                // The live service's words (azure-cli-extensions recording
                // test_computeschedule_submitdeallocate_canceloperations.yaml).
                let error = cs::ResourceOperationError {
                    error_code: "OperationCancelledByUser".into(),
                    error_details: format!("Operation: {id} was cancelled by the user."),
                };
                self.finish_bulk(
                    id,
                    BulkState::Cancelled,
                    Some(error),
                    ctx.now,
                    ctx.now,
                    wall,
                );
            }
            if let Some(b) = self.bulk.get(id)
                && b.state == BulkState::Cancelled
            {
                results.push(ResourceOperation {
                    resource_id: Some(b.vm.clone()),
                    error_code: None,
                    error_details: None,
                    operation: Some(b.details(sub)),
                });
            }
        }
        Ok(Reply::ok(
            serde_json::to_value(cs::OperationsResponse { results }).unwrap_or_default(),
        ))
    }
}

/// A request's retry policy, checked, and what it allows.
struct Policy {
    given: Option<RetryPolicy>,
    retries: u32,
    window: Duration,
}

fn retry_policy(p: &ExecutionParameters) -> Result<Policy, ArmErr> {
    let given = p.retry_policy;
    let count = given.and_then(|r| r.retry_count).unwrap_or(0);
    if !(0..=cs::MAX_RETRY_COUNT).contains(&count) {
        return Err(invalid(
            "executionParameters.retryPolicy.retryCount",
            format!(
                "The retry count {count} is out of range: it must be between 0 and {}.",
                cs::MAX_RETRY_COUNT
            ),
        ));
    }
    let window = given.and_then(|r| r.retry_window_in_minutes);
    if let Some(w) = window
        && !cs::RETRY_WINDOW_MINUTES.contains(&w)
    {
        return Err(invalid(
            "executionParameters.retryPolicy.retryWindowInMinutes",
            format!(
                "The retry window of {w} minutes is out of range: it must be between {} and {} minutes.",
                cs::RETRY_WINDOW_MINUTES.start(),
                cs::RETRY_WINDOW_MINUTES.end()
            ),
        ));
    }
    // Without a window, retries (if any) may run for the longest documented one.
    let minutes = window.unwrap_or(*cs::RETRY_WINDOW_MINUTES.end());
    Ok(Policy {
        given,
        retries: count as u32,
        window: Duration::from_secs(minutes as u64 * 60),
    })
}

fn batch_size(n: usize, target: &str) -> Result<(), ArmErr> {
    if n == 0 {
        return Err(invalid(
            target,
            "No resource ids were provided in the request.",
        ));
    }
    if n > cs::MAX_RESOURCES_PER_REQUEST {
        return Err(invalid(
            target,
            format!(
                "{n} virtual machines were given; a request can act on at most {}.",
                cs::MAX_RESOURCES_PER_REQUEST
            ),
        ));
    }
    Ok(())
}

fn operation_ids(ids: &[String]) -> Result<(), ArmErr> {
    if ids.is_empty() {
        return Err(invalid("operationIds", "No operation ids were provided."));
    }
    Ok(())
}

/// Locations compare as Azure's do: case and spaces aside (`West Europe` = `westeurope`).
fn same_location(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}
