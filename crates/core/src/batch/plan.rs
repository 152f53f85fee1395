//! `plan_batch`: the rules of the module's documentation, applied to one activation.

use super::{BatchAction, BatchActionKind};
use super::{
    BatchInput, BatchNodeView, BatchPoolView, BatchTargets, RESIZE_STOPPED, batch_pool_name, split,
};
use crate::offerings::{Offering, Unavailable, format_utc, is_unavailable};
use crate::plan::{NodeState, Plan, idle_since, is_busy};
use crate::spec::{BatchLifecycle, Priority};

/// Plans one activation of one Batch pool.
pub fn plan_batch(input: &BatchInput<'_>) -> Plan<BatchAction> {
    let mut nodes: Vec<&BatchNodeView> = input.nodes.iter().collect();
    nodes.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    let desired = if input.deleting { 0 } else { input.desired };
    let mut p = BatchPlanner {
        input,
        name: batch_pool_name(input.spec).to_owned(),
        plan: Plan {
            desired,
            active: u32::try_from(
                nodes
                    .iter()
                    .filter(|n| {
                        matches!(
                            n.node.state,
                            NodeState::Creating | NodeState::Starting | NodeState::Running
                        ) && !n.node.draining
                    })
                    .count(),
            )
            .unwrap_or(u32::MAX),
            ..Plan::default()
        },
    };
    p.run(&nodes, desired);
    p.plan
}

struct BatchPlanner<'a> {
    input: &'a BatchInput<'a>,
    name: String,
    plan: Plan<BatchAction>,
}

impl BatchPlanner<'_> {
    fn act(
        &mut self,
        kind: BatchActionKind,
        node: &str,
        targets: Option<BatchTargets>,
        reason: String,
    ) {
        self.plan.actions.push(BatchAction {
            kind,
            node: node.to_owned(),
            targets,
            reason,
        });
    }

    fn condition(&mut self, text: String) {
        self.plan.conditions.push(text);
    }

    fn idle_timeout(&self) -> i64 {
        i64::try_from(self.input.spec.idle_timeout_seconds).unwrap_or(i64::MAX)
    }

    /// Busy as far as removal is concerned: by heartbeat (as VM nodes), or running Batch tasks.
    fn is_busy(&self, n: &BatchNodeView) -> bool {
        n.batch_state.eq_ignore_ascii_case("running")
            || is_busy(&n.node, self.input.now, self.idle_timeout())
    }

    fn unavailable(&self, priority: Priority) -> Option<&Unavailable> {
        let size = self.input.spec.vm_sizes.first()?;
        is_unavailable(
            self.input.unavailable,
            &Offering::new(size, priority),
            self.input.now,
        )
    }

    fn run(&mut self, nodes: &[&BatchNodeView], desired: u32) {
        let spec = self.input.spec;
        let Some(b) = spec.batch.as_ref() else {
            self.condition("InvalidSpec: a batch pool without a batch section".into());
            return;
        };
        let adopted = b.existing_pool.is_some();
        let auto = b.lifecycle == BatchLifecycle::Auto;
        if self.input.pool_in_flight {
            self.condition(format!(
                "WaitingForBatch: an operation on Batch pool {} is in flight",
                self.name
            ));
            return;
        }
        let Some(pool) = self.input.pool else {
            if adopted {
                self.condition(format!(
                    "BatchPoolNotFound: Batch pool {} does not exist in account {}; an adopted pool (existing_pool) is never created",
                    self.name, b.account
                ));
            } else if self.input.deleting {
                // Nothing left in Azure: the controller forgets the pool.
            } else if auto && desired == 0 {
                self.condition(
                    "AutoPoolAbsent: the Batch pool is created on the first request".into(),
                );
            } else {
                let first = self.first_targets(desired);
                let targets = self.gated(BatchTargets::default(), first);
                let why = if auto {
                    format!("auto pool: {desired} nodes wanted and no Batch pool yet")
                } else {
                    "persistent pool: the Batch pool is created with the pool".to_string()
                };
                let name = self.name.clone();
                self.act(BatchActionKind::CreatePool, &name, Some(targets), why);
            }
            return;
        };
        if !pool.owned {
            self.condition(format!(
                "BatchPoolNotOurs: a Batch pool named {} exists in account {} without renderburst's owner tag; set batch.existing_pool to adopt it",
                self.name, b.account
            ));
            return;
        }
        if pool.deleting {
            self.condition(format!(
                "BatchPoolDeleting: Batch is deleting pool {}",
                self.name
            ));
            return;
        }
        // ResizeStopped is renderburst's own doing (a stopResize), not a failure.
        for e in pool
            .resize_errors
            .iter()
            .filter(|e| e.code != RESIZE_STOPPED)
        {
            self.condition(format!("ResizeError: {}: {}", e.code, e.message));
        }
        let preempted = nodes
            .iter()
            .filter(|n| n.node.state == NodeState::Preempted)
            .count();
        if preempted > 0 {
            self.condition(format!(
                "Preempted: {preempted} Spot nodes were preempted; Batch reallocates them"
            ));
        }
        let empty = nodes.is_empty() && pool.targets.total() == 0 && pool.steady;
        if auto && !self.input.deleting && desired == 0 && empty {
            let after = i64::try_from(b.auto_delete_after_seconds).unwrap_or(i64::MAX);
            match self.input.empty_since {
                Some(since) if self.input.now.saturating_sub(since) >= after => {
                    let name = self.name.clone();
                    self.act(
                        BatchActionKind::DeletePool,
                        &name,
                        None,
                        format!(
                            "auto pool empty for {} s (auto_delete_after_seconds {after})",
                            self.input.now.saturating_sub(since)
                        ),
                    );
                }
                since => self.condition(format!(
                    "AutoDeletePending: the pool is empty; deleted at {}",
                    format_utc(since.unwrap_or(self.input.now).saturating_add(after))
                )),
            }
            return;
        }
        if !pool.steady {
            self.condition(format!(
                "Resizing: Batch is resizing the pool (dedicated {}/{}, Spot {}/{})",
                pool.current.dedicated,
                pool.targets.dedicated,
                pool.current.spot,
                pool.targets.spot
            ));
            // Batch takes minutes to grow a pool and accepts new targets only when Steady: if
            // the desired count moved meanwhile, stop the resize (the nodes allocated so far
            // stay) rather than wait for it. Not once Batch reported errors: it has given up
            // on the rest already and the resize ends by itself.
            let growing = pool.current.dedicated < pool.targets.dedicated
                || pool.current.spot < pool.targets.spot;
            let errors = pool.resize_errors.iter().any(|e| e.code != RESIZE_STOPPED);
            if growing && !errors && desired != pool.targets.total() {
                let name = self.name.clone();
                self.act(
                    BatchActionKind::StopResize,
                    &name,
                    None,
                    format!(
                        "desired is {desired} while Batch grows the pool toward {}; stopping the resize to set new targets",
                        pool.targets.total()
                    ),
                );
            }
            return;
        }
        self.steady(pool, nodes, desired, adopted);
    }

    /// Targets of a new pool: the split, less what Batch could not allocate lately.
    /// `wanted` targets through the creation gate: at most what it lets through above
    /// `current` (Spot first, the cheaper kind), its conditions shown when it keeps any back.
    fn gated(&mut self, current: BatchTargets, wanted: BatchTargets) -> BatchTargets {
        let rise_s = wanted.spot.saturating_sub(current.spot);
        let rise_d = wanted.dedicated.saturating_sub(current.dedicated);
        if rise_s + rise_d == 0 {
            return wanted;
        }
        for text in self.input.gate.conditions(self.input.now) {
            self.condition(text);
        }
        let Some(allowed) = self.input.gate.allows(self.input.now) else {
            return wanted;
        };
        let spot = rise_s.min(allowed);
        let dedicated = rise_d.min(allowed - spot);
        BatchTargets {
            dedicated: wanted.dedicated - (rise_d - dedicated),
            spot: wanted.spot - (rise_s - spot),
        }
    }

    fn first_targets(&mut self, desired: u32) -> BatchTargets {
        let ideal = split(self.input.spec, desired);
        let fallback = self
            .input
            .spec
            .batch
            .as_ref()
            .is_some_and(|b| b.spot_fallback_to_dedicated);
        if ideal.spot > 0 && fallback && self.unavailable(Priority::Spot).is_some() {
            return BatchTargets {
                dedicated: desired,
                spot: 0,
            };
        }
        ideal
    }

    fn steady(
        &mut self,
        pool: &BatchPoolView,
        nodes: &[&BatchNodeView],
        desired: u32,
        adopted: bool,
    ) {
        let deleting = self.input.deleting;
        // Nodes on their way out (leaving, or a removal of ours in flight) count for nothing.
        let listed: Vec<&BatchNodeView> = nodes
            .iter()
            .copied()
            .filter(|n| n.node.state != NodeState::Deleting && !n.node.in_flight)
            .collect();
        let count = |v: &[&BatchNodeView], dedicated: bool| {
            u32::try_from(v.iter().filter(|n| n.dedicated() == dedicated).count())
                .unwrap_or(u32::MAX)
        };

        // Failed and drained nodes go at once (when not busy); they are not replaced by
        // keeping them.
        // So do zombies: with a bootstrap section, running nodes that have not registered
        // within register_timeout_seconds (Batch allocates a new node in their place).
        let mut removed: Vec<(&BatchNodeView, String)> = Vec::new();
        let mut drain_waiting = 0;
        let mut registering = 0;
        let register_timeout = self
            .input
            .spec
            .bootstrap
            .as_ref()
            .map(|b| i64::try_from(b.register_timeout_seconds).unwrap_or(i64::MAX));
        for n in &listed {
            if n.node.state == NodeState::Failed {
                removed.push((n, format!("node is {}", n.batch_state)));
            } else if n.node.draining {
                if self.is_busy(n) {
                    drain_waiting += 1;
                } else {
                    removed.push((n, "drained; not busy".to_string()));
                }
            } else if let Some(timeout) = register_timeout
                && n.node.state == NodeState::Running
                && n.node.registered_at.is_none()
            {
                let since = n.node.started_at.unwrap_or(n.node.created_at);
                let waited = self.input.now.saturating_sub(since);
                if waited < timeout || self.is_busy(n) || deleting {
                    registering += 1;
                    continue;
                }
                self.condition(format!(
                    "Zombie: {} did not register within {timeout} s of starting; replacing it",
                    n.node.name
                ));
                self.plan.zombies.push(n.node.name.clone());
                removed.push((
                    n,
                    format!(
                        "zombie: running for {waited} s without registering (register_timeout_seconds {timeout}); replacing it"
                    ),
                ));
            }
        }
        if drain_waiting > 0 {
            self.condition(format!(
                "WaitingForDrain: {drain_waiting} drained nodes are still busy"
            ));
        }
        if registering > 0 {
            self.condition(format!(
                "WaitingForRegistration: {registering} running nodes have not registered yet"
            ));
        }

        // The split, with a Spot shortfall made up by dedicated nodes when allowed.
        let ideal = split(self.input.spec, desired);
        let fallback = self
            .input
            .spec
            .batch
            .as_ref()
            .is_some_and(|b| b.spot_fallback_to_dedicated);
        let have_spot = count(&listed, false);
        let mut want = ideal;
        if ideal.spot > have_spot
            && let Some(u) = self.unavailable(Priority::Spot).cloned()
        {
            if fallback && !deleting {
                want.spot = ideal.spot.min(have_spot);
                want.dedicated = desired - want.spot;
                self.condition(format!(
                    "SpotFallback: Batch could not allocate {} Spot nodes ({} until {}); asking for dedicated nodes instead, as the spec allows",
                    ideal.spot - have_spot,
                    u.code,
                    format_utc(u.until)
                ));
            } else if !deleting {
                self.condition(format!(
                    "SpotShortfall: Batch could not allocate {} Spot nodes ({} until {}); spot_fallback_to_dedicated is off",
                    ideal.spot - have_spot,
                    u.code,
                    format_utc(u.until)
                ));
            }
        }
        if ideal.dedicated > count(&listed, true)
            && let Some(u) = self.unavailable(Priority::Regular).cloned()
        {
            self.condition(format!(
                "DedicatedShortfall: Batch could not allocate {} dedicated nodes ({} until {})",
                ideal.dedicated - count(&listed, true),
                u.code,
                format_utc(u.until)
            ));
        }

        // Surplus: remove specific nodes, never busy ones.
        let remaining: Vec<&BatchNodeView> = listed
            .iter()
            .copied()
            .filter(|n| !removed.iter().any(|(r, _)| r.node.name == n.node.name))
            .collect();
        let mut over_total = u32::try_from(remaining.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(desired);
        let mut waiting = 0u32;
        let timeout = self.idle_timeout();
        // Kinds over their share first, then the other if the total is still over.
        let kinds = {
            let over_d = count(&remaining, true).saturating_sub(want.dedicated);
            let over_s = count(&remaining, false).saturating_sub(want.spot);
            if over_d >= over_s {
                [(true, over_d), (false, over_s)]
            } else {
                [(false, over_s), (true, over_d)]
            }
        };
        let mut surplus_removed: Vec<(&BatchNodeView, String)> = Vec::new();
        for (dedicated, over) in kinds {
            let mut take = over.min(over_total);
            if take == 0 {
                continue;
            }
            let mut candidates: Vec<(&BatchNodeView, u8, i64)> = remaining
                .iter()
                .copied()
                .filter(|n| n.dedicated() == dedicated && !self.is_busy(n))
                .filter_map(|n| {
                    let idle = self.input.now.saturating_sub(idle_since(&n.node));
                    match n.node.state {
                        NodeState::Preempted => Some((n, 0, idle)),
                        NodeState::Creating | NodeState::Starting => Some((n, 1, idle)),
                        NodeState::Running if idle >= timeout || deleting => Some((n, 2, idle)),
                        _ => None,
                    }
                })
                .collect();
            // Preempted, then still starting, then idle newest first.
            candidates.sort_by(|(a, ca, _), (b, cb, _)| {
                let ka = (
                    *ca,
                    std::cmp::Reverse(a.node.started_at.unwrap_or(a.node.created_at)),
                );
                let kb = (
                    *cb,
                    std::cmp::Reverse(b.node.started_at.unwrap_or(b.node.created_at)),
                );
                ka.cmp(&kb).then_with(|| a.node.name.cmp(&b.node.name))
            });
            let kind = if dedicated { "dedicated" } else { "Spot" };
            for (n, class, idle) in candidates {
                if take == 0 {
                    break;
                }
                let what = match class {
                    0 => "preempted".to_string(),
                    1 => "not started yet".to_string(),
                    _ => format!("idle {idle} s"),
                };
                let why = if deleting {
                    format!("pool is being deleted; {kind} node {what}")
                } else {
                    format!(
                        "pool above desired ({} nodes > desired {desired}); {kind} node {what}",
                        remaining.len()
                    )
                };
                surplus_removed.push((n, why));
                take -= 1;
                over_total -= 1;
            }
            waiting += take;
        }
        if waiting > 0 {
            let text = if deleting {
                format!(
                    "WaitingForBusyNodes: {waiting} busy nodes finish their work before the pool is deleted"
                )
            } else {
                format!(
                    "WaitingForIdle: {waiting} nodes above desired are busy or not idle for {timeout} s yet"
                )
            };
            self.condition(text);
        }

        if !removed.is_empty() || !surplus_removed.is_empty() {
            for (n, why) in removed {
                self.act(BatchActionKind::RemoveNode, &n.node.name, None, why);
            }
            for (n, why) in surplus_removed {
                self.act(BatchActionKind::RemoveNode, &n.node.name, None, why);
            }
            // Targets follow on the next activation, once Batch is steady again.
            return;
        }

        if deleting {
            if remaining.is_empty() {
                let name = self.name.clone();
                if adopted {
                    if pool.targets.total() > 0 {
                        self.act(
                            BatchActionKind::ResizePool,
                            &name,
                            Some(BatchTargets::default()),
                            "pool is being deleted; the adopted Batch pool is kept at zero".into(),
                        );
                    }
                } else {
                    self.act(
                        BatchActionKind::DeletePool,
                        &name,
                        None,
                        "pool is being deleted and has no nodes left".into(),
                    );
                }
            }
            return;
        }

        // Targets: never below the nodes that stay (Batch would choose which to remove), and
        // never asking for more new nodes than the desired count leaves room for.
        let after = BatchTargets {
            dedicated: count(&remaining, true),
            spot: count(&remaining, false),
        };
        let room = desired.saturating_sub(after.total());
        let grow_d = want.dedicated.saturating_sub(after.dedicated).min(room);
        let grow_s = want
            .spot
            .saturating_sub(after.spot)
            .min(room.saturating_sub(grow_d));
        let targets = self.gated(
            pool.targets,
            BatchTargets {
                dedicated: after.dedicated + grow_d,
                spot: after.spot + grow_s,
            },
        );
        let name = self.name.clone();
        if targets != pool.targets {
            self.act(
                BatchActionKind::ResizePool,
                &name,
                Some(targets),
                format!(
                    "desired {desired}: dedicated {} → {}, Spot {} → {}",
                    pool.targets.dedicated, targets.dedicated, pool.targets.spot, targets.spot
                ),
            );
        } else {
            // Steady below its targets: the last resize fell short. Try again once Batch's
            // refusal has lapsed (or if nodes went away without one).
            let short_d = after.dedicated < targets.dedicated
                && self.unavailable(Priority::Regular).is_none();
            let short_s = after.spot < targets.spot && self.unavailable(Priority::Spot).is_none();
            if short_d || short_s {
                self.act(
                    BatchActionKind::ResizePool,
                    &name,
                    Some(targets),
                    format!(
                        "retrying: Batch has dedicated {}/{} and Spot {}/{} nodes",
                        after.dedicated, targets.dedicated, after.spot, targets.spot
                    ),
                );
            }
        }
    }
}
