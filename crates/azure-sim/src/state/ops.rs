//! Asynchronous operations and lazy time: an operation starts with the instant it completes,
//! and `advance` applies what is due (operations, evictions, boots) before a request is answered.

use std::time::{Duration, Instant};

use arm_model::ErrorDetail;

use super::{
    BootScript, Effect, MAX_OPS, OP_RETENTION, Op, OpStatus, PendingBoot, Power, Res, State, key,
};

impl State {
    /// Starts an operation that completes after `latency`.
    pub fn start_op(
        &mut self,
        latency: Duration,
        effect: Effect,
        fail_with: Option<(ErrorDetail, http::StatusCode)>,
        now: Instant,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let seq = self.next_seq();
        if let Some(vm) = effect.vm().map(str::to_owned)
            && let Some(v) = self.get_mut(&vm).and_then(Res::vm_mut)
        {
            v.busy_op = Some(id.clone());
        }
        self.ops.insert(
            id.clone(),
            Op {
                id: id.clone(),
                start: self.clock.wall(),
                end: None,
                due: now + latency,
                finished_at: None,
                seq,
                effect,
                fail_with,
                status: OpStatus::InProgress,
                failure_reported: false,
            },
        );
        id
    }

    /// Applies every transition that is due at `now`, oldest first.
    pub fn advance(&mut self, now: Instant) {
        // Compute Schedule operations start attempts whose operations may be due already, and
        // follow operations that completed: alternate until nothing moves. Each round moves
        // some operation a step along a finite path (attempts are bounded by the retry
        // policy), so this ends; the bound is a guard.
        for _ in 0..1000 {
            self.complete_due_ops(now);
            if !self.advance_bulk(now) {
                break;
            }
        }
        if !self.evictions.is_empty() {
            let (ready, later): (Vec<_>, Vec<_>) =
                self.evictions.drain(..).partition(|e| e.due <= now);
            self.evictions = later;
            for e in ready {
                self.apply_eviction(&e.vm, now);
            }
        }
        self.advance_pools(now);
        self.prune_ops(now);
        self.prune_bulk(now);
    }

    fn complete_due_ops(&mut self, now: Instant) {
        let mut due: Vec<(Instant, u64, String)> = self
            .ops
            .values()
            .filter(|o| matches!(o.status, OpStatus::InProgress) && o.due <= now)
            .map(|o| (o.due, o.seq, o.id.clone()))
            .collect();
        due.sort();
        for (_, _, id) in due {
            self.complete_op(&id, now);
        }
    }

    fn prune_ops(&mut self, now: Instant) {
        self.ops.retain(|_, o| match o.finished_at {
            Some(t) => now.saturating_duration_since(t) < OP_RETENTION,
            None => true,
        });
        if self.ops.len() > MAX_OPS {
            let mut finished: Vec<(u64, String)> = self
                .ops
                .values()
                .filter(|o| o.finished_at.is_some())
                .map(|o| (o.seq, o.id.clone()))
                .collect();
            finished.sort();
            let excess = self.ops.len() - MAX_OPS;
            for (_, id) in finished.into_iter().take(excess) {
                self.ops.remove(&id);
            }
        }
    }

    fn finish_op(&mut self, id: &str, status: OpStatus, now: Instant) {
        if let Some(op) = self.ops.get_mut(id) {
            if matches!(status, OpStatus::Failed(..)) {
                self.stats.operations_failed += 1;
            }
            op.status = status;
            op.end = Some(self.clock.wall());
            op.finished_at = Some(now);
        }
    }

    /// Marks an operation that a later one superseded (e.g. a create preempted by a delete).
    pub fn cancel_op(&mut self, id: &str, now: Instant) {
        if self
            .ops
            .get(id)
            .is_some_and(|o| matches!(o.status, OpStatus::InProgress))
        {
            let detail = ErrorDetail {
                code: "OperationPreempted".into(),
                message: "Operation execution has been preempted by a more recent operation."
                    .into(),
                ..ErrorDetail::default()
            };
            self.finish_op(id, OpStatus::Canceled(detail), now);
        }
    }

    /// First boot of a VM with `customData`, when booting is on: queue its register call,
    /// unless the configuration says it never registers.
    fn boot(&mut self, vm_id: &str) {
        if !self.cfg.boot.enabled {
            return;
        }
        let Some(res) = self.get_mut(vm_id) else {
            return;
        };
        let name = res.name.clone();
        let Some(v) = res.vm_mut() else {
            return;
        };
        if v.booted {
            return;
        }
        v.booted = true;
        let Some(custom_data) = v.custom_data.clone() else {
            return;
        };
        self.queue_boot(name, BootScript::CustomData(custom_data));
    }

    /// Queues a boot's calls, unless the configuration says the machine never registers.
    pub(crate) fn queue_boot(&mut self, name: String, script: BootScript) {
        let never = self
            .cfg
            .boot
            .never_register
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&name))
            || (self.cfg.boot.never_register_fraction > 0.0
                && fastrand::f64() < self.cfg.boot.never_register_fraction);
        if never {
            self.stats.boots_never += 1;
            return;
        }
        self.boots.push(PendingBoot { vm: name, script });
    }

    fn complete_op(&mut self, id: &str, now: Instant) {
        let Some(op) = self.ops.get(id).cloned() else {
            return;
        };
        let status = match op.fail_with.clone() {
            Some((detail, http)) => OpStatus::Failed(detail, http),
            None => OpStatus::Succeeded,
        };
        if let Some(vm_id) = op.effect.vm()
            && let Some(v) = self.get_mut(vm_id).and_then(Res::vm_mut)
            && v.busy_op.as_deref() == Some(id)
        {
            v.busy_op = None;
        }
        let failed_code = op.fail_with.as_ref().map(|(d, _)| d.code.clone());
        match &op.effect {
            Effect::None => {}
            Effect::VmCreate { vm } | Effect::VmStart { vm } => {
                // A VM whose create (or start) failed stays, in provisioning state `Failed`,
                // until it is deleted: "Failed: Represents a failed operation", one of the
                // provisioning states a VM can be in
                // (https://learn.microsoft.com/en-us/azure/virtual-machines/states-billing#provisioning-states);
                // its NIC and OS disk stay with it.
                if let Some(v) = self.get_mut(vm).and_then(Res::vm_mut) {
                    match &failed_code {
                        None => {
                            v.power = Power::Running;
                            v.provisioning = "Succeeded".into();
                            v.failed_code = None;
                        }
                        Some(code) => {
                            v.power = Power::Deallocated;
                            v.allocated = false;
                            v.provisioning = "Failed".into();
                            v.failed_code = Some(code.clone());
                        }
                    }
                }
                if matches!(op.effect, Effect::VmCreate { .. })
                    && let Some(name) = vm.rsplit('/').next()
                {
                    if failed_code.is_none() {
                        self.stats
                            .vm_last_create_succeeded
                            .insert(name.to_ascii_lowercase());
                        self.stats.vm_lifecycle(name, "create succeeded");
                    } else {
                        self.stats.vm_lifecycle(name, "create failed");
                    }
                }
                if failed_code.is_none() {
                    self.os_disk_provisioned(vm);
                    self.boot(vm);
                }
            }
            Effect::VmUpdate { vm } | Effect::VmRestart { vm } => {
                if let Some(v) = self.get_mut(vm).and_then(Res::vm_mut) {
                    v.provisioning = "Succeeded".into();
                    if matches!(op.effect, Effect::VmRestart { .. }) {
                        v.power = Power::Running;
                    }
                }
            }
            Effect::VmDeallocate { vm } => {
                if let Some(v) = self.get_mut(vm).and_then(Res::vm_mut) {
                    v.power = Power::Deallocated;
                    v.allocated = false;
                    v.provisioning = "Succeeded".into();
                }
            }
            Effect::VmPowerOff { vm } => {
                if let Some(v) = self.get_mut(vm).and_then(Res::vm_mut) {
                    v.power = Power::Stopped;
                    v.provisioning = "Succeeded".into();
                }
            }
            Effect::VmDelete { vm } => {
                self.remove_vm(vm);
                if let Some(name) = vm.rsplit('/').next() {
                    self.stats.vm_lifecycle(name, "deleted");
                }
            }
            Effect::DiskCreate { disk } => {
                if let Some(d) = self.get_mut(disk) {
                    d.provisioning = "Succeeded".into();
                }
            }
            Effect::Remove { id } => self.remove_tree(id),
            Effect::PoolDelete { pool } => {
                self.res.remove(&key(pool));
            }
        }
        self.finish_op(id, status, now);
    }
}
