//! `Microsoft.ComputeSchedule` bulk VM operations, api-version 2025-05-01 (generally
//! available): execute create, start, deallocate and delete for a batch of VMs, then read
//! the per-VM operations' status and errors, or cancel them.
//!
//! Shapes follow the 2025-05-01 REST specification,
//! `specification/computeschedule/resource-manager/Microsoft.ComputeSchedule/ComputeSchedule/stable/2025-05-01/computeschedule.json`
//! in github.com/Azure/azure-rest-api-specs (TypeSpec source:
//! `specification/computeschedule/ComputeSchedule.Management/models.tsp`), and its examples.
//! Every call is a `POST` to
//! `/subscriptions/{sub}/providers/Microsoft.ComputeSchedule/locations/{location}/virtualMachines{Action}`
//! answered `200` with a JSON body: there is no long-running-operation protocol, the caller
//! polls `virtualMachinesGetOperationStatus` with the operation ids it was given.
//!
//! The limits the service documents are constants here, with their sources, so the client
//! and the simulator enforce the same ones (see `docs/compute-schedule.md`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::compute::VirtualMachine;

/// The generally available api-version with `virtualMachinesExecuteCreate` and
/// `virtualMachinesExecuteDelete` (the 1.1.0 SDKs' default, e.g. azure-mgmt-computeschedule
/// 1.1.0 `_configuration.py`).
pub const API_VERSION: &str = "2025-05-01";

/// Most VMs one request may name (`resources.ids`) or create (`resourceCount`). Microsoft's
/// own samples list "Over 100 resourceids provided in request" among the validation errors of
/// every execute call (github.com/Azure/azure-computeschedule-dotnet-samples
/// `src/AllScenarios/Program.cs`) and split creates into requests of
/// `MaxResourceCountPerRequest = 100` (`src/ExecuteCreateFlex/FlexRequestBuilder.cs`).
pub const MAX_RESOURCES_PER_REQUEST: usize = 100;

/// Largest `retryPolicy.retryCount`: "Number of times ScheduledActions should retry the
/// operation in case of failures: Range 0-7"; "RetryPolicy.RetryCount value > 7" is a
/// validation error (same samples, `src/AllScenarios/Program.cs`).
pub const MAX_RETRY_COUNT: i32 = 7;

/// Range of `retryPolicy.retryWindowInMinutes`: "Time window in minutes within which
/// ScheduledActions should retry the operation in case of failures: Range in minutes 5-120";
/// "RetryPolicy.RetryWindowInMinutes value > 120" is a validation error (same samples).
pub const RETRY_WINDOW_MINUTES: std::ops::RangeInclusive<i32> = 5..=120;

/// `OperationState`: the states of one VM's operation.
pub struct OperationState;

impl OperationState {
    pub const UNKNOWN: &'static str = "Unknown";
    pub const PENDING_SCHEDULING: &'static str = "PendingScheduling";
    pub const SCHEDULED: &'static str = "Scheduled";
    pub const PENDING_EXECUTION: &'static str = "PendingExecution";
    pub const EXECUTING: &'static str = "Executing";
    pub const SUCCEEDED: &'static str = "Succeeded";
    pub const FAILED: &'static str = "Failed";
    /// Spelt with two l's, unlike ARM's `Canceled`.
    pub const CANCELLED: &'static str = "Cancelled";
    /// "Operations on virtual machines are set to blocked state in Computeschedule when there
    /// is an ongoing outage internally or in downstream services" (samples,
    /// `src/Common/UtilityMethods.cs`).
    pub const BLOCKED: &'static str = "Blocked";

    /// `Succeeded`, `Failed` and `Cancelled` are final (samples, `IsOperationTerminal`).
    pub fn is_terminal(state: &str) -> bool {
        [Self::SUCCEEDED, Self::FAILED, Self::CANCELLED]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(state))
    }
}

/// `ResourceOperationType` (`opType`). The 2025-05-01 swagger enumerates Unknown, Start,
/// Deallocate and Hibernate; its create and delete examples answer `Create` and `Delete`,
/// which later api-versions add to the enumeration.
pub struct ResourceOperationType;

impl ResourceOperationType {
    pub const UNKNOWN: &'static str = "Unknown";
    pub const START: &'static str = "Start";
    pub const DEALLOCATE: &'static str = "Deallocate";
    pub const HIBERNATE: &'static str = "Hibernate";
    pub const CREATE: &'static str = "Create";
    pub const DELETE: &'static str = "Delete";
}

/// `DeadlineType`. Execute calls answer `InitiateAt` with the time the request was accepted.
pub struct DeadlineType;

impl DeadlineType {
    pub const UNKNOWN: &'static str = "Unknown";
    pub const INITIATE_AT: &'static str = "InitiateAt";
    pub const COMPLETE_BY: &'static str = "CompleteBy";
}

/// `OptimizationPreference`.
pub struct OptimizationPreference;

impl OptimizationPreference {
    pub const COST: &'static str = "Cost";
    pub const AVAILABILITY: &'static str = "Availability";
    pub const COST_AVAILABILITY_BALANCED: &'static str = "CostAvailabilityBalanced";
}

/// `RetryPolicy`: how often, and for how long, the service retries a VM's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_window_in_minutes: Option<i32>,
}

/// `ExecutionParameters`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimization_preference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
}

/// `Resources`: the VMs (ARM ids) a request acts on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub ids: Vec<String>,
}

/// `ExecuteStartRequest`, `ExecuteDeallocateRequest`, `ExecuteHibernateRequest` and
/// `ExecuteDeleteRequest`: the same body, `forceDeletion` only for delete. `correlationid`
/// (lower-case `id` on the wire) is required by start, deallocate and hibernate, optional for
/// delete.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteRequest {
    pub execution_parameters: ExecutionParameters,
    pub resources: Resources,
    #[serde(
        default,
        rename = "correlationid",
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_deletion: Option<bool>,
}

/// `ResourceProvisionPayload`: what to create. The service merges each `resourceOverrides`
/// entry over `baseProfile` ("service will merge baseProfile with VM specific overrides and
/// create a merged VMProfile"); an override's `name` names the VM, else the VM is named from
/// `resourcePrefix` ("resourceprefix-0, resourceprefix-1..."). Both profiles are free-form
/// JSON in the specification (`Record<unknown>`); [`BaseProfile`] is the typed way to build
/// one.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProvisionPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_profile: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_overrides: Option<Vec<Map<String, Value>>>,
    pub resource_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_prefix: Option<String>,
}

/// `ExecuteCreateRequest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteCreateRequest {
    pub resource_config_parameters: ResourceProvisionPayload,
    /// Required by the swagger, yet absent from its own `MinimumSet` example: optional here
    /// so that example parses; the simulator refuses a request without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_parameters: Option<ExecutionParameters>,
    #[serde(
        default,
        rename = "correlationid",
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
}

/// A create's `baseProfile` as Microsoft's guide and samples write it: what a VM PUT carries
/// (`location`, `tags`, `properties`...) with `resourcegroupName` and `computeApiVersion`
/// beside it (examples `ScheduledActions_VirtualMachinesExecuteCreate_MaximumSet_Gen.json`;
/// azure-computeschedule-dotnet-samples `src/ExecuteCreate/createVmBody.json`). The service
/// reads those two keys case-insensitively (the samples also write `ResourceGroupName`,
/// `ComputeAPIVersion`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseProfile {
    #[serde(rename = "resourcegroupName")]
    pub resource_group_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_api_version: Option<String>,
    #[serde(flatten)]
    pub vm: VirtualMachine,
}

/// `ResourceOperationError`: why one VM's operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOperationError {
    pub error_code: String,
    pub error_details: String,
}

/// `ResourceOperationDetails`: one VM's operation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOperationDetails {
    pub operation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// [`ResourceOperationType`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// [`DeadlineType`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_type: Option<String>,
    /// [`OperationState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Both spellings are in the 2025-05-01 swagger; the service answers `timeZone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_operation_error: Option<ResourceOperationError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
}

impl ResourceOperationDetails {
    /// The state, `Unknown` when absent.
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or(OperationState::UNKNOWN)
    }

    pub fn is_terminal(&self) -> bool {
        OperationState::is_terminal(self.state())
    }
}

/// `ResourceOperation`: one VM in an answer. `errorCode`/`errorDetails` here mean the VM was
/// not accepted at all (no operation runs for it); an accepted VM's failure is in
/// `operation.resourceOperationError`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<ResourceOperationDetails>,
}

/// `CreateResourceOperationResponse`, `StartResourceOperationResponse`,
/// `DeallocateResourceOperationResponse`, `DeleteResourceOperationResponse`,
/// `HibernateResourceOperationResponse`: one shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOperationResponse {
    pub description: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<ResourceOperation>>,
}

/// `GetOperationStatusRequest`, `GetOperationErrorsRequest` and `CancelOperationsRequest`.
/// `correlationid` is required by status and cancel, absent from errors.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationIdsRequest {
    pub operation_ids: Vec<String>,
    #[serde(
        default,
        rename = "correlationid",
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
}

/// `GetOperationStatusResponse` and `CancelOperationsResponse`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OperationsResponse {
    pub results: Vec<ResourceOperation>,
}

/// `OperationErrorDetails`: one error an operation met (each failed attempt).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationErrorDetails {
    pub error_code: String,
    pub error_details: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_operation_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crp_operation_id: Option<String>,
}

/// `OperationErrorsResult`: the errors of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationErrorsResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_errors: Option<Vec<OperationErrorDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_error_details: Option<String>,
}

/// `GetOperationErrorsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetOperationErrorsResponse {
    pub results: Vec<OperationErrorsResult>,
}

/// `value` as a JSON object, for [`ResourceProvisionPayload`]'s free-form profiles; `None` if
/// it serializes to anything else.
pub fn to_object<T: Serialize>(value: &T) -> Option<Map<String, Value>> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_base_profile_is_a_vm_body_with_two_keys_beside_it() {
        let base = BaseProfile {
            resource_group_name: "rg".into(),
            compute_api_version: Some("2025-04-01".into()),
            vm: VirtualMachine {
                location: Some("westeurope".into()),
                ..Default::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&base).unwrap(),
            json!({"resourcegroupName": "rg", "computeApiVersion": "2025-04-01", "location": "westeurope"})
        );
        assert!(to_object(&base).is_some());
    }

    #[test]
    fn terminal_states() {
        for s in ["Succeeded", "failed", "Cancelled"] {
            assert!(OperationState::is_terminal(s), "{s}");
        }
        for s in ["PendingScheduling", "Executing", "Blocked", "Canceled"] {
            assert!(!OperationState::is_terminal(s), "{s}");
        }
    }
}
