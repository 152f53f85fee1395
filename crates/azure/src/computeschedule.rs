//! Bulk VM operations through Compute Schedule (`Microsoft.ComputeSchedule`, api-version
//! 2025-05-01): create, start, deallocate and delete up to
//! [`MAX_RESOURCES_PER_REQUEST`](arm_model::computeschedule::MAX_RESOURCES_PER_REQUEST) VMs a
//! request, then read their operations' status and errors, or cancel them.
//!
//! Every call is one `POST` through the same pipeline as any ARM request (token, governor,
//! retries): ARM counts it as a write (live answers carry
//! `x-ms-ratelimit-remaining-subscription-writes`, Azure/azure-cli-extensions
//! `src/computeschedule/.../recordings`), the status and error polls included, and none of
//! Compute's per-VM policies applies to the request itself (the governor's Compute
//! classification only matches `Microsoft.Compute/virtualMachines` paths). The answers are
//! synchronous: there is no long-running operation to follow, only the per-VM operation ids
//! to poll with [`ArmClient::operation_status`] until each is terminal.
//!
//! Errors come in two places. A VM the service would not take is answered with an
//! `errorCode` and no operation; a VM whose operation failed has `resourceOperationError`.
//! [`bulk_error`] turns either into an [`ArmError`] that classifies like a single request's
//! (`is_quota`, `is_capacity`, `is_not_found`...). Shapes and limits: `arm_model::computeschedule`
//! and `docs/compute-schedule.md`.

use arm_model::compute::VirtualMachine;
use arm_model::computeschedule::{
    self as cs, BaseProfile, ExecuteCreateRequest, ExecuteRequest, ExecutionParameters,
    GetOperationErrorsResponse, OperationErrorsResult, OperationIdsRequest, OperationsResponse,
    ResourceOperation, ResourceOperationResponse, ResourceProvisionPayload, Resources, RetryPolicy,
};
use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ArmClient;
use crate::error::{ArmError, ErrorKind, Result};

/// VMs to create in one request: the profile they share and, per VM, what differs (its
/// `name` at least; NIC configuration names must differ too, since a NIC is named after its
/// configuration). Each override is merged deeply over the base by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateBatch {
    pub base: BaseProfile,
    pub overrides: Vec<VirtualMachine>,
    pub retry: RetryPolicy,
}

/// The error of one VM in a Compute Schedule answer, if it has one: refused by the service
/// (`errorCode` on the result, kind `Http`) or failed while running
/// (`resourceOperationError`, kind `Operation`).
pub fn bulk_error(r: &ResourceOperation) -> Option<ArmError> {
    if let Some(code) = r.error_code.as_deref().filter(|c| !c.is_empty()) {
        let message = r.error_details.clone().unwrap_or_default();
        return Some(ArmError::new(ErrorKind::Http, code, message));
    }
    let e = r.operation.as_ref()?.resource_operation_error.as_ref()?;
    // A cancelled operation carries an error too (`OperationCancelledByUser`).
    Some(ArmError::new(
        ErrorKind::Operation,
        e.error_code.clone(),
        e.error_details.clone(),
    ))
}

fn invalid(message: String) -> ArmError {
    ArmError::new(ErrorKind::Config, "InvalidParameter", message)
}

/// The documented limits, checked before sending so a bad batch costs no ARM write.
fn check_batch(n: usize) -> Result<()> {
    if n == 0 || n > cs::MAX_RESOURCES_PER_REQUEST {
        return Err(invalid(format!(
            "a Compute Schedule request acts on 1 to {} virtual machines, not {n}",
            cs::MAX_RESOURCES_PER_REQUEST
        )));
    }
    Ok(())
}

fn check_retry(r: &RetryPolicy) -> Result<()> {
    if let Some(c) = r.retry_count
        && !(0..=cs::MAX_RETRY_COUNT).contains(&c)
    {
        return Err(invalid(format!(
            "retryCount {c} is outside 0..={}",
            cs::MAX_RETRY_COUNT
        )));
    }
    if let Some(w) = r.retry_window_in_minutes
        && !cs::RETRY_WINDOW_MINUTES.contains(&w)
    {
        return Err(invalid(format!(
            "retryWindowInMinutes {w} is outside {}..={}",
            cs::RETRY_WINDOW_MINUTES.start(),
            cs::RETRY_WINDOW_MINUTES.end()
        )));
    }
    Ok(())
}

fn params(retry: RetryPolicy) -> ExecutionParameters {
    ExecutionParameters {
        optimization_preference: None,
        retry_policy: Some(retry),
    }
}

fn correlation_id() -> Option<String> {
    Some(uuid::Uuid::new_v4().to_string())
}

impl ArmClient {
    async fn schedule_call<B: Serialize, T: DeserializeOwned>(
        &self,
        location: &str,
        action: &str,
        body: &B,
    ) -> Result<T> {
        let path = format!(
            "/subscriptions/{}/providers/Microsoft.ComputeSchedule/locations/{location}/virtualMachines{action}",
            self.subscription_id()
        );
        let url = self.url(&path, cs::API_VERSION, &[]);
        let body = serde_json::to_value(body)
            .map_err(|e| ArmError::decode(format!("cannot encode the request body: {e}")))?;
        self.request(Method::POST, url, Some(&body)).await?.json()
    }

    async fn execute(
        &self,
        location: &str,
        action: &str,
        vm_ids: &[String],
        retry: RetryPolicy,
        force_deletion: Option<bool>,
    ) -> Result<ResourceOperationResponse> {
        check_batch(vm_ids.len())?;
        check_retry(&retry)?;
        let req = ExecuteRequest {
            execution_parameters: params(retry),
            resources: Resources {
                ids: vm_ids.to_vec(),
            },
            correlation_id: correlation_id(),
            force_deletion,
        };
        self.schedule_call(location, action, &req).await
    }

    /// `virtualMachinesExecuteCreate`: creates `batch.overrides.len()` VMs in `location`,
    /// each its override merged over `batch.base`. The answer holds one result per VM, in
    /// order, each with its operation id (or an `errorCode`).
    pub async fn execute_create(
        &self,
        location: &str,
        batch: &CreateBatch,
    ) -> Result<ResourceOperationResponse> {
        check_batch(batch.overrides.len())?;
        check_retry(&batch.retry)?;
        let mut overrides = Vec::with_capacity(batch.overrides.len());
        for o in &batch.overrides {
            if o.name.as_deref().is_none_or(str::is_empty) {
                return Err(invalid("every VM of a create batch needs a name".into()));
            }
            overrides.push(
                cs::to_object(o).ok_or_else(|| invalid("an override is not an object".into()))?,
            );
        }
        let req = ExecuteCreateRequest {
            resource_config_parameters: ResourceProvisionPayload {
                base_profile: cs::to_object(&batch.base),
                resource_overrides: Some(overrides),
                resource_count: batch.overrides.len() as i32,
                resource_prefix: None,
            },
            execution_parameters: Some(params(batch.retry)),
            correlation_id: correlation_id(),
        };
        self.schedule_call(location, "ExecuteCreate", &req).await
    }

    /// `virtualMachinesExecuteStart` for VMs (ARM ids) in `location`.
    pub async fn execute_start(
        &self,
        location: &str,
        vm_ids: &[String],
        retry: RetryPolicy,
    ) -> Result<ResourceOperationResponse> {
        self.execute(location, "ExecuteStart", vm_ids, retry, None)
            .await
    }

    /// `virtualMachinesExecuteDeallocate` for VMs (ARM ids) in `location`.
    pub async fn execute_deallocate(
        &self,
        location: &str,
        vm_ids: &[String],
        retry: RetryPolicy,
    ) -> Result<ResourceOperationResponse> {
        self.execute(location, "ExecuteDeallocate", vm_ids, retry, None)
            .await
    }

    /// `virtualMachinesExecuteDelete` for VMs (ARM ids) in `location`. A VM's NICs and disks
    /// go with it as its `deleteOption`s say.
    pub async fn execute_delete(
        &self,
        location: &str,
        vm_ids: &[String],
        retry: RetryPolicy,
    ) -> Result<ResourceOperationResponse> {
        self.execute(location, "ExecuteDelete", vm_ids, retry, None)
            .await
    }

    /// `virtualMachinesGetOperationStatus`: one result per id, in order.
    pub async fn operation_status(
        &self,
        location: &str,
        operation_ids: &[String],
    ) -> Result<Vec<ResourceOperation>> {
        let req = OperationIdsRequest {
            operation_ids: operation_ids.to_vec(),
            correlation_id: correlation_id(),
        };
        let resp: OperationsResponse = self
            .schedule_call(location, "GetOperationStatus", &req)
            .await?;
        Ok(resp.results)
    }

    /// `virtualMachinesGetOperationErrors`: every error each operation met (one per failed
    /// attempt), with the Compute operation ids.
    pub async fn operation_errors(
        &self,
        location: &str,
        operation_ids: &[String],
    ) -> Result<Vec<OperationErrorsResult>> {
        let req = OperationIdsRequest {
            operation_ids: operation_ids.to_vec(),
            correlation_id: None,
        };
        let resp: GetOperationErrorsResponse = self
            .schedule_call(location, "GetOperationErrors", &req)
            .await?;
        Ok(resp.results)
    }

    /// `virtualMachinesCancelOperations`: answers the operations that were cancelled (an
    /// operation already running or finished is not).
    pub async fn cancel_operations(
        &self,
        location: &str,
        operation_ids: &[String],
    ) -> Result<Vec<ResourceOperation>> {
        let req = OperationIdsRequest {
            operation_ids: operation_ids.to_vec(),
            correlation_id: correlation_id(),
        };
        let resp: OperationsResponse = self
            .schedule_call(location, "CancelOperations", &req)
            .await?;
        Ok(resp.results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arm_model::computeschedule::{ResourceOperationDetails, ResourceOperationError};

    #[test]
    fn errors_classify_like_single_requests() {
        let quota = ResourceOperation {
            operation: Some(ResourceOperationDetails {
                operation_id: "op".into(),
                state: Some("Failed".into()),
                resource_operation_error: Some(ResourceOperationError {
                    error_code: "OperationNotAllowed".into(),
                    error_details: "Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota. Current Limit: 4, Current Usage: 4, Additional Required: 2".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = bulk_error(&quota).expect("an error");
        assert!(e.is_quota() && e.kind == ErrorKind::Operation);
        assert_eq!(e.quota().unwrap().limit, Some(4));
        let refused = ResourceOperation {
            error_code: Some("ResourceNotFound".into()),
            error_details: Some("gone".into()),
            ..Default::default()
        };
        assert!(bulk_error(&refused).unwrap().is_not_found());
        let fine = ResourceOperation {
            error_code: Some(String::new()),
            ..Default::default()
        };
        assert!(bulk_error(&fine).is_none(), "an empty code is no error");
    }

    #[test]
    fn limits_are_checked_before_sending() {
        assert!(check_batch(0).is_err() && check_batch(101).is_err() && check_batch(100).is_ok());
        let bad = RetryPolicy {
            retry_count: Some(8),
            retry_window_in_minutes: None,
        };
        assert!(check_retry(&bad).is_err());
        let bad = RetryPolicy {
            retry_count: Some(1),
            retry_window_in_minutes: Some(121),
        };
        assert!(check_retry(&bad).is_err());
        assert!(check_retry(&RetryPolicy::default()).is_ok());
    }
}
