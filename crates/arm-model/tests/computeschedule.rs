//! The Compute Schedule (2025-05-01) examples from the REST specification, and two live
//! answers, parse faithfully into `arm_model::computeschedule` (sources in
//! `tests/computeschedule/README.md`).

mod support;

use std::path::PathBuf;

use arm_model::computeschedule::{
    ExecuteCreateRequest, ExecuteRequest, GetOperationErrorsResponse, OperationIdsRequest,
    OperationState, OperationsResponse, ResourceOperationResponse, ResourceOperationType,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::parse_faithful;

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/computeschedule")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn at<T>(v: &Value, pointer: &str, file: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let value = v
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{file}: nothing at {pointer}"));
    parse_faithful(value).unwrap_or_else(|e| panic!("{file}{pointer}: {e}"))
}

fn request<T>(file: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    at(&example(file), "/parameters/requestBody", file)
}

fn response<T>(file: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    at(&example(file), "/responses/200/body", file)
}

#[test]
fn execute_create_carries_a_base_profile_overrides_and_answers_create_operations() {
    let file = "ScheduledActions_VirtualMachinesExecuteCreate_MaximumSet_Gen.json";
    let req: ExecuteCreateRequest = request(file);
    let payload = &req.resource_config_parameters;
    assert_eq!(payload.resource_count, 2);
    assert_eq!(payload.resource_prefix.as_deref(), Some("TL1"));
    let base = payload.base_profile.as_ref().expect("baseProfile");
    assert_eq!(
        base["resourcegroupName"],
        "RG5ABF491C-3164-42A6-8CB5-BF3CB53B018B"
    );
    assert_eq!(base["computeApiVersion"], "2024-07-01");
    let overrides = payload.resource_overrides.as_ref().expect("overrides");
    assert_eq!(overrides[0]["name"], "myFleet_523");
    // Generated values (`"priority": 0`, `"osType": 0`) are not valid VM fields, so the
    // profiles stay free-form JSON in the model.
    assert_eq!(
        overrides[1]["properties"]["hardwareProfile"]["vmSize"],
        "Standard_G1s"
    );
    let retry = req
        .execution_parameters
        .as_ref()
        .and_then(|p| p.retry_policy)
        .expect("retryPolicy");
    assert_eq!(
        (retry.retry_count, retry.retry_window_in_minutes),
        (Some(5), Some(40))
    );

    let resp: ResourceOperationResponse = response(file);
    let results = resp.results.expect("results");
    assert_eq!(results.len(), 2);
    let op = results[0].operation.as_ref().expect("operation");
    assert_eq!(op.op_type.as_deref(), Some(ResourceOperationType::CREATE));
    assert_eq!(op.state(), OperationState::PENDING_SCHEDULING);
    assert!(!op.is_terminal());
    assert_eq!(results[0].error_code, None, "null errorCode parses as None");

    // The minimum request: a count and nothing else; the answer has no results.
    let file = "ScheduledActions_VirtualMachinesExecuteCreate_MinimumSet_Gen.json";
    let req: ExecuteCreateRequest = request(file);
    assert_eq!(req.resource_config_parameters.resource_count, 16);
    assert!(req.execution_parameters.is_none());
    let resp: ResourceOperationResponse = response(file);
    assert!(resp.results.is_none());
}

#[test]
fn execute_start_deallocate_and_delete_name_their_vms_by_id() {
    for (file, op_type) in [
        (
            "ScheduledActions_VirtualMachinesExecuteStart_MaximumSet_Gen.json",
            "Unknown",
        ),
        (
            "ScheduledActions_VirtualMachinesExecuteDeallocate_MaximumSet_Gen.json",
            "Unknown",
        ),
        (
            "ScheduledActions_VirtualMachinesExecuteDelete_MaximumSet_Gen.json",
            ResourceOperationType::DELETE,
        ),
        (
            "ScheduledActions_VirtualMachinesExecuteDelete_MinimumSet_Gen.json",
            ResourceOperationType::DELETE,
        ),
    ] {
        let req: ExecuteRequest = request(file);
        assert!(!req.resources.ids.is_empty(), "{file}");
        assert!(
            req.resources.ids[0].contains("/providers/Microsoft.Compute/virtualMachines/"),
            "{file}"
        );
        let resp: ResourceOperationResponse = response(file);
        let results = resp.results.expect("results");
        let op = results[0].operation.as_ref().expect("operation");
        assert_eq!(op.op_type.as_deref(), Some(op_type), "{file}");
        assert!(op.retry_policy.is_some(), "{file}");
    }
    let req: ExecuteRequest =
        request("ScheduledActions_VirtualMachinesExecuteDelete_MaximumSet_Gen.json");
    assert_eq!(req.force_deletion, Some(false));
}

#[test]
fn status_errors_and_cancel_take_operation_ids() {
    let file = "ScheduledActions_VirtualMachinesGetOperationStatus_MaximumSet_Gen.json";
    let req: OperationIdsRequest = request(file);
    assert_eq!(req.operation_ids, ["hswzfrierpxdgcuu"]);
    assert!(req.correlation_id.is_some());
    let resp: OperationsResponse = response(file);
    let err = resp.results[0]
        .operation
        .as_ref()
        .and_then(|o| o.resource_operation_error.clone())
        .expect("resourceOperationError");
    assert_eq!(err.error_code, "fagfsojftlff");

    let file = "ScheduledActions_VirtualMachinesGetOperationErrors_MaximumSet_Gen.json";
    let req: OperationIdsRequest = request(file);
    assert!(req.correlation_id.is_none(), "errors take no correlationid");
    let resp: GetOperationErrorsResponse = response(file);
    let errors = resp.results[0].operation_errors.as_ref().expect("errors");
    assert_eq!(errors[0].crp_operation_id.as_deref(), Some("cqkmbfb"));

    let file = "ScheduledActions_VirtualMachinesGetOperationErrors_MinimumSet_Gen.json";
    let resp: GetOperationErrorsResponse = response(file);
    assert_eq!(resp.results.len(), 1);

    let file = "ScheduledActions_VirtualMachinesCancelOperations_MaximumSet_Gen.json";
    let _: OperationIdsRequest = request(file);
    let resp: OperationsResponse = response(file);
    assert_eq!(
        resp.results[0].operation.as_ref().unwrap().state(),
        OperationState::SCHEDULED
    );
}

#[test]
fn live_answers_parse_too() {
    let file = "recorded-cancel-operations.2024-10-01.json";
    let v = example(file);
    let _: OperationIdsRequest = at(&v, "/request", file);
    let resp: OperationsResponse = at(&v, "/response_200", file);
    let op = resp.results[0].operation.as_ref().unwrap();
    assert_eq!(op.state(), OperationState::CANCELLED);
    assert!(op.is_terminal());
    assert_eq!(
        op.resource_operation_error.as_ref().unwrap().error_code,
        "OperationCancelledByUser"
    );

    let file = "recorded-execute-start-and-status.2024-10-01.json";
    let v = example(file);
    let _: ExecuteRequest = at(&v, "/execute_start_request", file);
    let resp: ResourceOperationResponse = at(&v, "/execute_start_response_200", file);
    assert_eq!(resp.description, "Start Resource request");
    assert_eq!(resp.resource_type, "VirtualMachines");
    let _: OperationIdsRequest = at(&v, "/get_operation_status_request", file);
    let resp: OperationsResponse = at(&v, "/get_operation_status_response_200", file);
    assert_eq!(
        resp.results[0].operation.as_ref().unwrap().state(),
        OperationState::EXECUTING
    );
    let resp: GetOperationErrorsResponse = at(&v, "/get_operation_errors_response_200", file);
    assert_eq!(resp.results[0].operation_errors.as_deref(), Some(&[][..]));
}
