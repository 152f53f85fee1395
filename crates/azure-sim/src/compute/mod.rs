//! `Microsoft.Compute`: virtual machines (create with NIC and OS disk, power actions, delete
//! with `deleteOption` cascade, Spot eviction) and managed disks.
//!
//! What is decided when: quota and unknown sizes are refused synchronously on the PUT (409),
//! as Azure does; capacity is decided when the operation starts and reported when it ends
//! (`AllocationFailed` as a failed asynchronous operation), for creates and starts alike.
//!
//! `vm.rs` creates and deletes VMs, `update.rs` updates them; `power.rs` runs their power
//! actions and Spot evictions; `disk.rs` serves managed disks; this file holds what they
//! share (quota, faults).

use std::time::Duration;

use arm_model::ErrorDetail;
use http::StatusCode;
use serde_json::Value;

use crate::reply::ArmErr;
use crate::state::State;

mod disk;
mod power;
mod update;
mod vm;

pub(crate) use vm::check_vm_body;

const NS: &str = "Microsoft.Compute";

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

pub fn allocation_failed() -> (ErrorDetail, StatusCode) {
    (
        ErrorDetail {
            code: "AllocationFailed".into(),
            message: "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. \
                      Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"
                .into(),
            ..Default::default()
        },
        StatusCode::CONFLICT,
    )
}

pub fn internal_failure() -> (ErrorDetail, StatusCode) {
    (
        ErrorDetail {
            code: "InternalExecutionError".into(),
            message: "An internal execution error occurred. Please retry later.".into(),
            ..Default::default()
        },
        StatusCode::INTERNAL_SERVER_ERROR,
    )
}

fn quota_error(what: &str, location: &str, limit: u64, usage: u64, required: u64) -> ArmErr {
    ArmErr::conflict(
        "OperationNotAllowed",
        format!(
            "Operation could not be completed as it results in exceeding approved {what} quota. Additional details - \
             Deployment Model: Resource Manager, Location: {location}, Current Limit: {limit}, Current Usage: {usage}, \
             Additional Required: {required}, (Minimum) New Limit Required: {}. Submit a request for Quota increase at \
             https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView/Parameters/ by \
             specifying parameters listed in the 'Details' section for deployment to succeed. Please read more about \
             quota limits at https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests",
            usage + required
        ),
    )
}

impl State {
    /// Refuses with Azure's quota message if `vcpus` more would exceed a quota.
    fn check_quota(
        &self,
        spot: bool,
        family: &str,
        vcpus: u64,
        location: &str,
    ) -> Result<(), ArmErr> {
        let (regional, families, spot_used) = self.quota_usage();
        if spot {
            if let Some(limit) = self.cfg.quota.spot_vcpus
                && spot_used + vcpus > limit
            {
                return Err(quota_error(
                    "LowPriorityCores",
                    location,
                    limit,
                    spot_used,
                    vcpus,
                ));
            }
            return Ok(());
        }
        if let Some(limit) = self.cfg.quota.regional_vcpus
            && regional + vcpus > limit
        {
            return Err(quota_error(
                "Total Regional Cores",
                location,
                limit,
                regional,
                vcpus,
            ));
        }
        if let Some(limit) = self.cfg.family_quota(family) {
            let used = families
                .get(&family.to_ascii_lowercase())
                .copied()
                .unwrap_or(0);
            if used + vcpus > limit {
                return Err(quota_error(
                    &format!("{family} Cores"),
                    location,
                    limit,
                    used,
                    vcpus,
                ));
            }
        }
        Ok(())
    }

    /// Decides an operation's fate when it starts: injected failures, counted in
    /// `faults_injected` like every other fault.
    fn injected_failure(&mut self) -> Option<(ErrorDetail, StatusCode)> {
        let rate = self.cfg.faults.operation_fail_rate;
        let fail = rate > 0.0 && fastrand::f64() < rate;
        if fail {
            self.stats.faults_injected += 1;
        }
        fail.then(internal_failure)
    }
}

fn marked_for_deletion(op: &str, vm: &str) -> ArmErr {
    ArmErr::conflict(
        "OperationNotAllowed",
        format!(
            "Operation '{op}' is not allowed on VM '{vm}' since the VM is marked for deletion. You can only retry the \
             Delete operation (or wait for an ongoing one to complete)."
        ),
    )
}

fn another_operation(op: &str, vm: &str) -> ArmErr {
    ArmErr::conflict(
        "OperationNotAllowed",
        format!(
            "Operation '{op}' is not allowed on VM '{vm}' since another operation is in progress."
        ),
    )
}
