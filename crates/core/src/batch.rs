//! The Batch planner: a pure function from a `mode: batch` pool's spec, its desired count, the
//! Batch pool Azure shows and its nodes, to the actions of one activation, each with a reason.
//!
//! Batch allocates the nodes itself; renderburst only sets the pool's fixed-scale targets and
//! removes specific nodes. Rules, in the order they apply:
//! - nothing is done while an operation on the Batch pool is in flight, or the pool is not
//!   renderburst's (no owner tag and not adopted by `existing_pool`), or Batch is deleting it;
//! - no Batch pool: a persistent pool is created at once, an auto pool on the first demand,
//!   with its first targets in the same PUT; an adopted pool is never created;
//! - an auto pool that has been empty (no nodes, targets 0, desired 0) for
//!   `auto_delete_after_seconds` is deleted;
//! - while Batch resizes (`allocationState` not Steady) nothing else is done;
//! - the desired count splits into Spot first (up to `spot_cap`, dedicated keep at least
//!   `dedicated_floor`) and dedicated for the rest; while Batch cannot allocate Spot nodes
//!   (a resize error made the offering unavailable) and the spec allows it, dedicated nodes
//!   make up the shortfall;
//! - targets are never lowered below the nodes that exist, so Batch never picks a node to
//!   remove: scale-down removes *specific* nodes through the data plane, idle ones only (by
//!   heartbeat, as for VM pools), failed and drained ones at once, preempted and still-starting
//!   ones before working ones, newest first;
//! - the targets never ask Batch for more nodes than the desired count.

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::offerings::{Offering, Unavailable, format_utc, is_unavailable};
use crate::plan::{Action, ActionKind, NodeState, NodeView, Plan, idle_since, is_busy};
use crate::spec::{BatchLifecycle, PoolSpec, Priority};

/// The resize error Batch reports after a `stopResize`.
pub const RESIZE_STOPPED: &str = "ResizeStopped";

/// A Batch pool's fixed-scale targets (or current counts).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchTargets {
    pub dedicated: u32,
    /// `targetLowPriorityNodes`: Spot nodes.
    pub spot: u32,
}

impl BatchTargets {
    pub fn total(&self) -> u32 {
        self.dedicated.saturating_add(self.spot)
    }
}

/// A resize error Batch reported (`resizeOperationStatus.errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeErrorView {
    pub code: String,
    pub message: String,
}

/// The Batch pool as Azure shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPoolView {
    /// Tagged with our owner id, or adopted through `batch.existing_pool`.
    pub owned: bool,
    /// `provisioningState` is Deleting.
    pub deleting: bool,
    /// `allocationState` is Steady.
    pub steady: bool,
    pub targets: BatchTargets,
    pub current: BatchTargets,
    pub resize_errors: Vec<ResizeErrorView>,
}

/// One node of the Batch pool. `node.name` is the Batch node id; `node.priority` is Regular
/// for dedicated nodes and Spot for Spot nodes; `node.state` is mapped from the Batch state
/// by [`node_state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchNodeView {
    pub node: NodeView,
    /// The Batch node state as listed (`idle`, `running`, `creating`...).
    pub batch_state: String,
}

impl BatchNodeView {
    fn dedicated(&self) -> bool {
        self.node.priority == Priority::Regular
    }
}

/// Maps a Batch node state to renderburst's node states.
pub fn node_state(batch_state: &str) -> NodeState {
    match batch_state.to_ascii_lowercase().as_str() {
        "creating" => NodeState::Creating,
        "starting" | "waitingforstarttask" | "rebooting" | "reimaging" | "upgradingos" => {
            NodeState::Starting
        }
        "idle" | "running" | "offline" => NodeState::Running,
        "leavingpool" => NodeState::Deleting,
        "preempted" => NodeState::Preempted,
        "starttaskfailed" | "unusable" => NodeState::Failed,
        "deallocating" => NodeState::Deallocating,
        "deallocated" => NodeState::Deallocated,
        // "unknown": the node agent lost contact; Batch recovers it or marks it unusable.
        _ => NodeState::Starting,
    }
}

/// Everything the Batch planner needs. No IO handles, no clock.
#[derive(Debug, Clone)]
pub struct BatchInput<'a> {
    pub spec: &'a PoolSpec,
    pub desired: u32,
    /// The Batch pool, or None when Azure has none of that name.
    pub pool: Option<&'a BatchPoolView>,
    pub nodes: &'a [BatchNodeView],
    /// This pool's offerings Batch could not allocate lately (its size, Spot or regular).
    pub unavailable: &'a [Unavailable],
    /// Since when the pool has had no nodes and zero targets (auto lifecycle).
    pub empty_since: Option<UnixSeconds>,
    /// An operation on the Batch pool itself (create, resize, delete) is in flight.
    pub pool_in_flight: bool,
    /// The renderburst pool is being deleted.
    pub deleting: bool,
    pub now: UnixSeconds,
}

/// The `node` of intents about the Batch pool itself (create, resize, delete). `:` never
/// appears in node names, so it cannot collide with a VM or a Batch node. It names intents
/// (the `intents` table) and reads like the task-status key of the pool's observation,
/// [`crate::task::TaskKey::BatchPool`], but the two are unrelated: stored intents keep this
/// name, so it never changes.
pub fn pool_intent_node(pool: &str) -> String {
    format!("batch:{pool}")
}

/// The Batch pool's name in Azure: the adopted pool's, else the renderburst pool's.
pub fn batch_pool_name(spec: &PoolSpec) -> &str {
    spec.batch
        .as_ref()
        .and_then(|b| b.existing_pool.as_deref())
        .unwrap_or(&spec.name)
}

/// How the desired count splits between dedicated and Spot nodes, before any fallback.
pub fn split(spec: &PoolSpec, desired: u32) -> BatchTargets {
    let Some(b) = &spec.batch else {
        return BatchTargets {
            dedicated: desired,
            spot: 0,
        };
    };
    if spec.priority != Priority::Spot {
        return BatchTargets {
            dedicated: desired,
            spot: 0,
        };
    }
    let floor = b.dedicated_floor.min(desired);
    let spot = (desired - floor).min(b.spot_cap.unwrap_or(u32::MAX));
    BatchTargets {
        dedicated: desired - spot,
        spot,
    }
}

/// Plans one activation of one Batch pool.
pub fn plan_batch(input: &BatchInput<'_>) -> Plan {
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
    plan: Plan,
}

impl BatchPlanner<'_> {
    fn act(&mut self, kind: ActionKind, node: &str, targets: Option<BatchTargets>, reason: String) {
        self.plan.actions.push(Action {
            kind,
            node: node.to_owned(),
            size: None,
            priority: None,
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
                let targets = self.first_targets(desired);
                let why = if auto {
                    format!("auto pool: {desired} nodes wanted and no Batch pool yet")
                } else {
                    "persistent pool: the Batch pool is created with the pool".to_string()
                };
                let name = self.name.clone();
                self.act(ActionKind::CreatePool, &name, Some(targets), why);
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
                        ActionKind::DeletePool,
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
                    ActionKind::StopResize,
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
                self.act(ActionKind::RemoveNode, &n.node.name, None, why);
            }
            for (n, why) in surplus_removed {
                self.act(ActionKind::RemoveNode, &n.node.name, None, why);
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
                            ActionKind::ResizePool,
                            &name,
                            Some(BatchTargets::default()),
                            "pool is being deleted; the adopted Batch pool is kept at zero".into(),
                        );
                    }
                } else {
                    self.act(
                        ActionKind::DeletePool,
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
        let targets = BatchTargets {
            dedicated: after.dedicated + grow_d,
            spot: after.spot + grow_s,
        };
        let name = self.name.clone();
        if targets != pool.targets {
            self.act(
                ActionKind::ResizePool,
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
                    ActionKind::ResizePool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offerings::UnavailableReason;
    use crate::spec::{BatchSpec, PoolMode};

    const NOW: UnixSeconds = 1_800_000_000;

    fn spec(priority: Priority, lifecycle: BatchLifecycle) -> PoolSpec {
        PoolSpec {
            name: "maya".into(),
            mode: PoolMode::Batch,
            vm_sizes: vec!["Standard_D4s_v5".into()],
            priority,
            spot: Default::default(),
            image: "Canonical:ubuntu-24_04-lts:server:latest".into(),
            os: Default::default(),
            min: 0,
            max: 20,
            target: 0,
            idle_timeout_seconds: 0,
            scale_down: Default::default(),
            tags: Default::default(),
            batch: Some(BatchSpec {
                account: "rbfarm".into(),
                resource_group: None,
                node_agent_sku_id: "batch.node.ubuntu 24.04".into(),
                lifecycle,
                auto_delete_after_seconds: 300,
                task_slots_per_node: 1,
                spot_cap: None,
                dedicated_floor: 0,
                spot_fallback_to_dedicated: false,
                start_task: None,
                subnet_id: None,
                existing_pool: None,
                application_licenses: None,
            }),
            licenses: vec![],
            bootstrap: None,
        }
    }

    fn node(id: &str, dedicated: bool, state: &str) -> BatchNodeView {
        BatchNodeView {
            node: NodeView {
                name: id.into(),
                size: "Standard_D4s_v5".into(),
                priority: if dedicated {
                    Priority::Regular
                } else {
                    Priority::Spot
                },
                state: node_state(state),
                failed_code: None,
                created_at: NOW - 1000,
                started_at: Some(NOW - 900),
                last_heartbeat: None,
                busy: false,
                draining: false,
                registered_at: None,
                in_flight: false,
            },
            batch_state: state.into(),
        }
    }

    fn pool(d: u32, s: u32) -> BatchPoolView {
        BatchPoolView {
            owned: true,
            deleting: false,
            steady: true,
            targets: BatchTargets {
                dedicated: d,
                spot: s,
            },
            current: BatchTargets {
                dedicated: d,
                spot: s,
            },
            resize_errors: vec![],
        }
    }

    fn input<'a>(
        spec: &'a PoolSpec,
        desired: u32,
        pool: Option<&'a BatchPoolView>,
        nodes: &'a [BatchNodeView],
    ) -> BatchInput<'a> {
        BatchInput {
            spec,
            desired,
            pool,
            nodes,
            unavailable: &[],
            empty_since: None,
            pool_in_flight: false,
            deleting: false,
            now: NOW,
        }
    }

    fn kinds(plan: &Plan) -> Vec<(ActionKind, String, Option<BatchTargets>)> {
        plan.actions
            .iter()
            .map(|a| (a.kind, a.node.clone(), a.targets))
            .collect()
    }

    fn t(dedicated: u32, spot: u32) -> Option<BatchTargets> {
        Some(BatchTargets { dedicated, spot })
    }

    #[test]
    fn split_fills_spot_first_within_cap_and_floor() {
        let mut s = spec(Priority::Spot, BatchLifecycle::Persistent);
        assert_eq!(
            split(&s, 10),
            BatchTargets {
                dedicated: 0,
                spot: 10
            }
        );
        let b = s.batch.as_mut().unwrap();
        b.spot_cap = Some(6);
        b.dedicated_floor = 2;
        assert_eq!(
            split(&s, 10),
            BatchTargets {
                dedicated: 4,
                spot: 6
            }
        );
        assert_eq!(
            split(&s, 5),
            BatchTargets {
                dedicated: 2,
                spot: 3
            }
        );
        assert_eq!(
            split(&s, 1),
            BatchTargets {
                dedicated: 1,
                spot: 0
            }
        );
        assert_eq!(split(&s, 0), BatchTargets::default());
        let r = spec(Priority::Regular, BatchLifecycle::Persistent);
        assert_eq!(
            split(&r, 7),
            BatchTargets {
                dedicated: 7,
                spot: 0
            }
        );
    }

    #[test]
    fn persistent_pool_is_created_at_once_auto_pool_on_demand() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let plan = plan_batch(&input(&p, 0, None, &[]));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::CreatePool, "maya".into(), t(0, 0))]
        );

        let a = spec(Priority::Spot, BatchLifecycle::Auto);
        let plan = plan_batch(&input(&a, 0, None, &[]));
        assert!(plan.actions.is_empty());
        assert!(plan.conditions[0].starts_with("AutoPoolAbsent"));
        let plan = plan_batch(&input(&a, 4, None, &[]));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::CreatePool, "maya".into(), t(0, 4))]
        );
    }

    #[test]
    fn adopted_pool_is_never_created_and_foreign_pool_never_touched() {
        let mut p = spec(Priority::Spot, BatchLifecycle::Persistent);
        p.batch.as_mut().unwrap().existing_pool = Some("legacy_pool".into());
        let plan = plan_batch(&input(&p, 3, None, &[]));
        assert!(plan.actions.is_empty());
        assert!(
            plan.conditions[0].starts_with("BatchPoolNotFound"),
            "{:?}",
            plan.conditions
        );
        let mut foreign = pool(0, 0);
        foreign.owned = false;
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let plan = plan_batch(&input(&p, 3, Some(&foreign), &[]));
        assert!(plan.actions.is_empty());
        assert!(plan.conditions[0].starts_with("BatchPoolNotOurs"));
    }

    #[test]
    fn scale_up_sets_targets_and_waits_while_resizing() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let bp = pool(0, 0);
        let plan = plan_batch(&input(&p, 20, Some(&bp), &[]));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::ResizePool, "maya".into(), t(0, 20))]
        );
        let mut resizing = pool(0, 20);
        resizing.steady = false;
        let plan = plan_batch(&input(&p, 5, Some(&resizing), &[]));
        assert!(plan.actions.is_empty());
        assert!(plan.conditions[0].starts_with("Resizing"));
    }

    #[test]
    fn a_resize_is_stopped_when_demand_moves_while_the_pool_grows() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let mut growing = pool(0, 20);
        growing.steady = false;
        growing.current.spot = 6;
        // Same demand: wait.
        assert!(
            plan_batch(&input(&p, 20, Some(&growing), &[]))
                .actions
                .is_empty()
        );
        // More, or less: stop, then set targets once Steady.
        for desired in [30, 4] {
            let plan = plan_batch(&input(&p, desired, Some(&growing), &[]));
            assert_eq!(
                kinds(&plan),
                vec![(ActionKind::StopResize, "maya".into(), None)]
            );
        }
        // Batch already gave up on part of it: the resize ends by itself.
        growing.resize_errors = vec![ResizeErrorView {
            code: "AccountLowPriorityCoreQuotaReached".into(),
            message: "quota".into(),
        }];
        assert!(
            plan_batch(&input(&p, 4, Some(&growing), &[]))
                .actions
                .is_empty()
        );
        // Shrinking (nodes leaving) is never stopped.
        let mut shrinking = pool(0, 2);
        shrinking.steady = false;
        shrinking.current.spot = 5;
        assert!(
            plan_batch(&input(&p, 1, Some(&shrinking), &[]))
                .actions
                .is_empty()
        );
        // Our own stop is not shown as an error.
        let mut stopped = pool(0, 6);
        stopped.resize_errors = vec![ResizeErrorView {
            code: RESIZE_STOPPED.into(),
            message: "stopped".into(),
        }];
        let plan = plan_batch(&input(&p, 6, Some(&stopped), &[]));
        assert!(
            !plan.conditions.iter().any(|c| c.starts_with("ResizeError")),
            "{:?}",
            plan.conditions
        );
    }

    #[test]
    fn scale_down_removes_idle_nodes_only_never_busy_ones() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let bp = pool(0, 4);
        let mut nodes: Vec<BatchNodeView> = (0..4)
            .map(|i| node(&format!("n{i}"), false, "idle"))
            .collect();
        nodes[0].node.busy = true;
        nodes[0].node.last_heartbeat = Some(NOW - 5);
        nodes[1].batch_state = "running".into();
        // Newest first among idle ones.
        nodes[3].node.started_at = Some(NOW - 10);
        let plan = plan_batch(&input(&p, 1, Some(&bp), &nodes));
        assert_eq!(
            kinds(&plan),
            vec![
                (ActionKind::RemoveNode, "n3".into(), None),
                (ActionKind::RemoveNode, "n2".into(), None)
            ]
        );
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("WaitingForIdle: 1"))
        );
        // To zero: the busy ones stay.
        let plan = plan_batch(&input(&p, 0, Some(&bp), &nodes));
        let removed: Vec<String> = plan.actions.iter().map(|a| a.node.clone()).collect();
        assert_eq!(removed, vec!["n3", "n2"]);
    }

    #[test]
    fn idle_timeout_is_respected_and_a_stale_busy_heartbeat_expires() {
        let mut p = spec(Priority::Regular, BatchLifecycle::Persistent);
        p.idle_timeout_seconds = 600;
        let bp = pool(2, 0);
        let mut nodes = vec![node("a", true, "idle"), node("b", true, "idle")];
        nodes[0].node.last_heartbeat = Some(NOW - 60);
        nodes[1].node.busy = true;
        nodes[1].node.last_heartbeat = Some(NOW - 5000);
        let plan = plan_batch(&input(&p, 0, Some(&bp), &nodes));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::RemoveNode, "b".into(), None)]
        );
    }

    #[test]
    fn targets_never_drop_below_existing_nodes() {
        // Quota left the pool at 4 of 10 Spot nodes; demand falls to 6: lower the target to
        // 6 (no node is chosen by Batch), remove nothing.
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let mut bp = pool(0, 10);
        bp.current.spot = 4;
        let nodes: Vec<BatchNodeView> = (0..4)
            .map(|i| node(&format!("n{i}"), false, "idle"))
            .collect();
        let plan = plan_batch(&input(&p, 6, Some(&bp), &nodes));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::ResizePool, "maya".into(), t(0, 6))]
        );
        let plan = plan_batch(&input(&p, 2, Some(&bp), &nodes));
        assert_eq!(plan.actions.len(), 2);
        assert!(
            plan.actions
                .iter()
                .all(|a| a.kind == ActionKind::RemoveNode)
        );
    }

    fn spot_quota() -> Vec<Unavailable> {
        vec![Unavailable::new(
            Offering::new("Standard_D4s_v5", Priority::Spot),
            UnavailableReason::Quota,
            "AccountLowPriorityCoreQuotaReached",
            NOW - 10,
        )]
    }

    #[test]
    fn spot_shortfall_falls_back_to_dedicated_when_allowed() {
        let mut p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let mut bp = pool(0, 10);
        bp.current.spot = 4;
        bp.resize_errors = vec![ResizeErrorView {
            code: "AccountLowPriorityCoreQuotaReached".into(),
            message: "quota".into(),
        }];
        let nodes: Vec<BatchNodeView> = (0..4)
            .map(|i| node(&format!("n{i}"), false, "idle"))
            .collect();
        let unavailable = spot_quota();
        let mut i = input(&p, 10, Some(&bp), &nodes);
        i.unavailable = &unavailable;
        // Not allowed: the shortfall is reported, targets stay.
        let plan = plan_batch(&i);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("ResizeError: AccountLowPriorityCoreQuotaReached"))
        );
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("SpotShortfall: Batch could not allocate 6"))
        );
        // Allowed: 6 dedicated make it up.
        p.batch.as_mut().unwrap().spot_fallback_to_dedicated = true;
        let mut i = input(&p, 10, Some(&bp), &nodes);
        i.unavailable = &unavailable;
        let plan = plan_batch(&i);
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::ResizePool, "maya".into(), t(6, 4))]
        );
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("SpotFallback"))
        );
    }

    #[test]
    fn a_lapsed_refusal_retries_the_same_targets() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let mut bp = pool(0, 10);
        bp.current.spot = 4;
        let nodes: Vec<BatchNodeView> = (0..4)
            .map(|i| node(&format!("n{i}"), false, "idle"))
            .collect();
        let plan = plan_batch(&input(&p, 10, Some(&bp), &nodes));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::ResizePool, "maya".into(), t(0, 10))]
        );
        assert!(plan.actions[0].reason.starts_with("retrying"));
    }

    #[test]
    fn growth_never_exceeds_desired_while_extra_dedicated_nodes_remain() {
        // After a fallback: 6 dedicated (busy) and 4 Spot; Spot is available again and the
        // desired count is 10: nothing to grow, since 10 nodes exist.
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let bp = pool(6, 4);
        let mut nodes: Vec<BatchNodeView> = (0..6)
            .map(|i| node(&format!("d{i}"), true, "running"))
            .collect();
        nodes.extend((0..4).map(|i| node(&format!("s{i}"), false, "idle")));
        let plan = plan_batch(&input(&p, 10, Some(&bp), &nodes));
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        // Desired 12: two more, as Spot.
        let plan = plan_batch(&input(&p, 12, Some(&bp), &nodes));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::ResizePool, "maya".into(), t(6, 6))]
        );
    }

    #[test]
    fn failed_preempted_and_drained_nodes() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let bp = pool(0, 4);
        let mut nodes = vec![
            node("a", false, "unusable"),
            node("b", false, "preempted"),
            node("c", false, "idle"),
            node("d", false, "idle"),
        ];
        nodes[2].node.draining = true;
        let plan = plan_batch(&input(&p, 3, Some(&bp), &nodes));
        let removed: Vec<&str> = plan.actions.iter().map(|a| a.node.as_str()).collect();
        // a (failed) and c (drained) at once; then 2 left for 3 wanted: no surplus.
        assert_eq!(removed, vec!["a", "c"]);
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("Preempted: 1"))
        );
        // With desired 1, the preempted node goes before the working one.
        let plan = plan_batch(&input(&p, 1, Some(&bp), &nodes));
        let removed: Vec<&str> = plan.actions.iter().map(|a| a.node.as_str()).collect();
        assert_eq!(removed, vec!["a", "c", "b"]);
    }

    #[test]
    fn auto_pool_is_deleted_after_being_empty_long_enough() {
        let a = spec(Priority::Spot, BatchLifecycle::Auto);
        let bp = pool(0, 0);
        let mut i = input(&a, 0, Some(&bp), &[]);
        i.empty_since = Some(NOW - 100);
        let plan = plan_batch(&i);
        assert!(plan.actions.is_empty());
        assert!(plan.conditions[0].starts_with("AutoDeletePending"));
        i.empty_since = Some(NOW - 300);
        let plan = plan_batch(&i);
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::DeletePool, "maya".into(), None)]
        );
        // A persistent pool survives at zero.
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let mut i = input(&p, 0, Some(&bp), &[]);
        i.empty_since = Some(NOW - 100_000);
        assert!(plan_batch(&i).actions.is_empty());
    }

    #[test]
    fn deleting_removes_idle_nodes_then_the_pool_but_never_an_adopted_one() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let bp = pool(0, 2);
        let mut nodes = vec![node("a", false, "idle"), node("b", false, "running")];
        nodes[0].node.started_at = Some(NOW);
        let mut i = input(&p, 5, Some(&bp), &nodes);
        i.deleting = true;
        let plan = plan_batch(&i);
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::RemoveNode, "a".into(), None)]
        );
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("WaitingForBusyNodes: 1"))
        );
        let empty = pool(0, 0);
        let mut i = input(&p, 5, Some(&empty), &[]);
        i.deleting = true;
        assert_eq!(
            kinds(&plan_batch(&i)),
            vec![(ActionKind::DeletePool, "maya".into(), None)]
        );
        let mut adopted = spec(Priority::Spot, BatchLifecycle::Persistent);
        adopted.batch.as_mut().unwrap().existing_pool = Some("legacy".into());
        let mut i = input(&adopted, 5, Some(&empty), &[]);
        i.deleting = true;
        assert!(plan_batch(&i).actions.is_empty());
    }

    #[test]
    fn nothing_happens_while_the_pool_has_an_operation_in_flight() {
        let p = spec(Priority::Spot, BatchLifecycle::Persistent);
        let mut i = input(&p, 5, None, &[]);
        i.pool_in_flight = true;
        let plan = plan_batch(&i);
        assert!(plan.actions.is_empty());
        assert!(plan.conditions[0].starts_with("WaitingForBatch"));
    }
    #[test]
    fn bootstrap_nodes_that_never_register_are_removed_as_zombies() {
        let mut p = spec(Priority::Regular, BatchLifecycle::Persistent);
        p.bootstrap = Some(
            serde_json::from_value(serde_json::json!({"register_timeout_seconds": 600})).unwrap(),
        );
        let registered = |mut n: BatchNodeView| {
            n.node.registered_at = Some(NOW - 800);
            n
        };
        let young = |mut n: BatchNodeView| {
            n.node.started_at = Some(NOW - 10);
            n
        };
        let busy = |mut n: BatchNodeView| {
            n.node.last_heartbeat = Some(NOW - 5);
            n.node.busy = true;
            n
        };
        let b = pool(4, 0);
        let nodes = [
            registered(node("n1", true, "idle")),
            node("n2", true, "idle"), // 900 s without registering: zombie
            young(node("n3", true, "idle")), // 10 s: still waiting
            busy(node("n4", true, "running")), // busy: never removed
        ];
        let plan = plan_batch(&input(&p, 4, Some(&b), &nodes));
        assert_eq!(
            kinds(&plan),
            vec![(ActionKind::RemoveNode, "n2".into(), None)]
        );
        assert_eq!(plan.zombies, vec!["n2".to_string()]);
        assert!(
            plan.actions[0]
                .reason
                .starts_with("zombie: running for 900 s")
        );
        assert!(
            plan.conditions
                .iter()
                .any(|c| c.starts_with("WaitingForRegistration: 2 running nodes")),
            "{:?}",
            plan.conditions
        );
        // Without a bootstrap section registration means nothing.
        p.bootstrap = None;
        let plan = plan_batch(&input(&p, 4, Some(&b), &nodes));
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(plan.zombies.is_empty());
    }
}
