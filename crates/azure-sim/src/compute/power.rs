//! A VM's power actions (start, deallocate, ...) and Spot eviction.

use std::time::Instant;

use http::StatusCode;

use super::{NS, allocation_failed, another_operation, marked_for_deletion, ms};
use crate::arm::{Ctx, truncate};
use crate::reply::{ArmErr, Reply};
use crate::state::{Effect, Power, RType, Res, State};
use crate::throttle::ComputeGroup;

impl State {
    pub fn vm_action(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rg: &str,
        id: &str,
        name: &str,
        action: &str,
    ) -> Result<Reply, ArmErr> {
        let group = match action {
            "start" | "poweroff" | "restart" => ComputeGroup::UpdateVm,
            "deallocate" | "simulateeviction" => ComputeGroup::DeleteVm,
            _ => {
                return Err(ArmErr::bad_request(
                    "InvalidResourceType",
                    format!(
                        "The action '{}' is not supported by the simulator on virtual machines.",
                        truncate(action, 64)
                    ),
                ));
            }
        };
        let Some(location) = self.get(id).and_then(Res::vm).map(|v| v.location.clone()) else {
            return Err(ArmErr::not_found(
                RType::VirtualMachine.arm_type(),
                name,
                rg,
            ));
        };
        self.compute_throttle(ctx, group, Some(id))?;
        let retry = self.cfg.polling.retry_after_seconds;
        Ok(match self.vm_power(id, name, rg, action, ctx.now)? {
            Some(op) => ctx.accepted(sub, NS, &location, &op, retry),
            None => Reply::empty(StatusCode::NO_CONTENT),
        })
    }

    /// A power action's work once throttling let it through (`action` lower-case: start,
    /// deallocate, poweroff, restart, simulateeviction): the operation it started, or `None`
    /// for a simulated eviction, which answers 204 and happens later. A Compute Schedule
    /// start or deallocate runs through here too.
    pub(crate) fn vm_power(
        &mut self,
        id: &str,
        name: &str,
        rg: &str,
        action: &str,
        now: Instant,
    ) -> Result<Option<String>, ArmErr> {
        let Some(v) = self.get(id).and_then(Res::vm).cloned() else {
            return Err(ArmErr::not_found(
                RType::VirtualMachine.arm_type(),
                name,
                rg,
            ));
        };
        if v.deleting {
            return Err(marked_for_deletion(action, name));
        }
        if v.busy_op.is_some() {
            return Err(another_operation(action, name));
        }
        let l = self.cfg.latency_ms.clone();
        let (effect, latency, fail_with, power) = match action {
            "start" => {
                let mut fail_with = None;
                let mut allocate = false;
                if !v.allocated {
                    let already_counted = v.spot && v.failed_code.is_none();
                    if !already_counted {
                        self.check_quota(v.spot, v.family, v.vcpus, &v.location)?;
                    }
                    if self.has_capacity(&v.size, 1) {
                        allocate = true;
                    } else {
                        fail_with = Some(allocation_failed());
                    }
                }
                if fail_with.is_none() {
                    fail_with = self.injected_failure();
                }
                if let Some(vm) = self.get_mut(id).and_then(Res::vm_mut)
                    && allocate
                {
                    vm.allocated = true;
                }
                (
                    Effect::VmStart { vm: id.to_owned() },
                    l.vm_start,
                    fail_with,
                    Some(Power::Starting),
                )
            }
            "deallocate" => (
                Effect::VmDeallocate { vm: id.to_owned() },
                l.vm_deallocate,
                None,
                (v.power != Power::Deallocated).then_some(Power::Deallocating),
            ),
            "poweroff" => {
                if !v.allocated {
                    (Effect::None, 0, None, None)
                } else {
                    (
                        Effect::VmPowerOff { vm: id.to_owned() },
                        l.vm_deallocate,
                        None,
                        Some(Power::Stopping),
                    )
                }
            }
            "restart" => {
                if !v.allocated || v.power != Power::Running {
                    return Err(ArmErr::conflict(
                        "OperationNotAllowed",
                        format!(
                            "Operation 'restart' is not allowed on VM '{name}' since the VM is not running."
                        ),
                    ));
                }
                (
                    Effect::VmRestart { vm: id.to_owned() },
                    l.vm_start,
                    None,
                    Some(Power::Starting),
                )
            }
            _ => {
                // simulateEviction
                if !v.spot {
                    return Err(ArmErr::conflict(
                        "OperationNotAllowed",
                        format!(
                            "Operation 'simulateEviction' is not allowed on VM '{name}' since it is not a Spot virtual machine."
                        ),
                    ));
                }
                if !v.allocated {
                    return Err(ArmErr::conflict(
                        "OperationNotAllowed",
                        format!(
                            "Operation 'simulateEviction' is not allowed on VM '{name}' since the VM is not allocated."
                        ),
                    ));
                }
                self.schedule_eviction(id, now);
                return Ok(None);
            }
        };
        if let (Some(p), Some(vm)) = (power, self.get_mut(id).and_then(Res::vm_mut)) {
            vm.power = p;
        }
        Ok(Some(self.start_op(ms(latency), effect, fail_with, now)))
    }

    pub fn schedule_eviction(&mut self, vm: &str, now: Instant) {
        let due = now + ms(self.cfg.latency_ms.eviction);
        if !self.evictions.iter().any(|e| e.vm.eq_ignore_ascii_case(vm)) {
            self.evictions.push(crate::state::PendingEviction {
                due,
                vm: vm.to_owned(),
            });
        }
    }

    /// Evicts a Spot VM per its eviction policy, as the platform does.
    pub fn apply_eviction(&mut self, vm_id: &str, now: Instant) {
        let Some(v) = self.get(vm_id).and_then(Res::vm).cloned() else {
            return;
        };
        if !v.allocated || v.deleting {
            return;
        }
        if let Some(op) = &v.busy_op {
            self.cancel_op(op, now);
        }
        self.stats.evictions += 1;
        if v.evict_delete {
            // The Delete policy removes the VM and its disks.
            if let Some(vm) = self.get_mut(vm_id).and_then(Res::vm_mut)
                && let Some(d) = vm.os_disk.as_mut()
            {
                d.1 = true;
            }
            self.remove_vm(vm_id);
        } else if let Some(vm) = self.get_mut(vm_id).and_then(Res::vm_mut) {
            vm.power = Power::Deallocated;
            vm.allocated = false;
            vm.busy_op = None;
            vm.provisioning = "Succeeded".into();
        }
    }

    /// `POST /_sim/evict`: schedules the eviction of up to `count` running Spot VMs.
    pub fn evict_some(&mut self, count: usize, now: Instant) -> Vec<String> {
        let mut candidates: Vec<String> = self
            .res
            .values()
            .filter(|r| r.vm().is_some_and(|v| v.spot && v.allocated && !v.deleting))
            .map(|r| r.id.clone())
            .filter(|id| !self.evictions.iter().any(|e| e.vm.eq_ignore_ascii_case(id)))
            .collect();
        fastrand::shuffle(&mut candidates);
        candidates.truncate(count);
        for id in &candidates {
            self.schedule_eviction(id, now);
        }
        candidates
    }
}
