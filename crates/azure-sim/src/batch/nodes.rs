//! A pool's nodes over time: resizes toward the targets, node transitions as their latency
//! passes, and Spot preemptions.

use std::time::{Duration, Instant};

use arm_model::ErrorDetail;
use time::OffsetDateTime;

use super::{enrollment, in_transit};
use crate::state::{BatchNode, BootScript, Kind, Res, State, key};

impl State {
    /// Moves a pool toward new targets: new nodes within quota and capacity, surplus nodes
    /// leave (newest first).
    pub fn resize_pool(&mut self, id: &str, dedicated: u64, spot: u64, now: Instant) {
        let latency = Duration::from_millis(self.cfg.latency_ms.batch_node);
        let wall = self.clock.wall();
        let Some(pool) = self.get(id).and_then(|r| match &r.kind {
            Kind::Pool(p) => Some((**p).clone()),
            _ => None,
        }) else {
            return;
        };
        // Account-wide usage of the other pools.
        let (mut used_d, mut used_s) = (0u64, 0u64);
        for (k, r) in &self.res {
            if let Kind::Pool(p) = &r.kind
                && key(&p.account_id) == key(&pool.account_id)
                && *k != key(id)
            {
                for n in p.nodes.iter().filter(|n| n.state != "leavingpool") {
                    if n.dedicated {
                        used_d += p.vcpus
                    } else {
                        used_s += p.vcpus
                    }
                }
            }
        }
        let mut errors = Vec::new();
        let mut new_nodes = Vec::new();
        let mut leaving = Vec::new();
        let mut seq = pool.next_node;
        let mut capacity_left = self
            .cfg
            .capacity_for(&pool.vm_size)
            .map(|c| c.saturating_sub(self.allocated_of_size(&pool.vm_size)));
        for dedicated_kind in [true, false] {
            let want = if dedicated_kind { dedicated } else { spot };
            let have: Vec<&BatchNode> = pool
                .nodes
                .iter()
                .filter(|n| n.dedicated == dedicated_kind && n.state != "leavingpool")
                .collect();
            let have_n = have.len() as u64;
            if want > have_n {
                let (quota, used) = if dedicated_kind {
                    (self.cfg.quota.batch_dedicated_vcpus, used_d)
                } else {
                    (self.cfg.quota.batch_spot_vcpus, used_s)
                };
                let mut addable = want - have_n;
                if let Some(q) = quota {
                    let room = q.saturating_sub(used + have_n * pool.vcpus) / pool.vcpus.max(1);
                    if room < addable {
                        addable = room;
                        errors.push(ErrorDetail {
                            code: if dedicated_kind {
                                "AccountCoreQuotaReached"
                            } else {
                                "AccountLowPriorityCoreQuotaReached"
                            }
                            .into(),
                            message: format!(
                                "The specified account has reached its {} core quota of {q}.",
                                if dedicated_kind {
                                    "dedicated"
                                } else {
                                    "low-priority (Spot)"
                                }
                            ),
                            ..Default::default()
                        });
                    }
                }
                if let Some(cap) = capacity_left.as_mut() {
                    if *cap < addable {
                        addable = *cap;
                        errors.push(ErrorDetail {
                            code: "AllocationFailed".into(),
                            message: "Desired number of dedicated and low-priority nodes could not be allocated due to a lack of capacity.".into(),
                            ..Default::default()
                        });
                    }
                    *cap -= addable;
                }
                for _ in 0..addable {
                    // Batch's shape: `tvmps_` + 64 hex digits + `_d` (dedicated) or `_p`
                    // (Spot), 72 characters in all.
                    let suffix = if dedicated_kind { "d" } else { "p" };
                    new_nodes.push(BatchNode {
                        id: format!(
                            "tvmps_{seq:016x}{}{}_{suffix}",
                            uuid::Uuid::new_v4().simple(),
                            &uuid::Uuid::new_v4().simple().to_string()[..16]
                        ),
                        dedicated: dedicated_kind,
                        state: "creating",
                        due: Some(now + latency),
                        allocation_time: wall,
                        state_time: wall,
                    });
                    seq += 1;
                }
            } else if want < have_n {
                // Nodes still being created go first, then the newest.
                let mut victims: Vec<&BatchNode> = have.clone();
                victims
                    .sort_by_key(|n| (n.state != "creating", std::cmp::Reverse(n.allocation_time)));
                for n in victims.into_iter().take((have_n - want) as usize) {
                    leaving.push(n.id.clone());
                }
            }
        }
        if let Some(p) = self.get_mut(id).and_then(Res::pool_mut) {
            p.target_dedicated = dedicated;
            p.target_spot = spot;
            p.next_node = seq;
            p.resize_errors = errors;
            p.resize_start = wall;
            for n in p.nodes.iter_mut() {
                if leaving.contains(&n.id) {
                    n.state = "leavingpool";
                    n.due = Some(now + latency);
                    n.state_time = wall;
                }
            }
            p.nodes.extend(new_nodes);
            if p.nodes.iter().any(in_transit) {
                p.allocation_state = "Resizing";
                p.allocation_time = wall;
            }
        }
    }

    /// Applies due node transitions of every pool: `creating` → `idle`, `leavingpool` → gone,
    /// `preempted` → `idle` (Batch reallocated it). The pool is Resizing while any node is
    /// being created or leaving; a preempted node being reallocated does not make it so.
    ///
    /// With `boot.enabled`, a node that came up (new, or reallocated after a preemption: a
    /// fresh machine either way) runs its pool's start task: when that is renderburst's
    /// enrollment (`RENDERBURST_API_URL` and `RENDERBURST_POOL_TOKEN` in its environment),
    /// the node enrolls and registers (see `boot`).
    pub fn advance_pools(&mut self, now: Instant) {
        let wall = self.clock.wall();
        let booting = self.cfg.boot.enabled;
        let mut boots: Vec<(String, BootScript)> = Vec::new();
        for r in self.res.values_mut() {
            let Kind::Pool(p) = &mut r.kind else { continue };
            p.nodes
                .retain(|n| !(n.state == "leavingpool" && n.due.is_some_and(|d| d <= now)));
            let enroll = if booting { enrollment(&r.body) } else { None };
            for n in p.nodes.iter_mut() {
                if matches!(n.state, "creating" | "preempted") && n.due.is_some_and(|d| d <= now) {
                    n.state = "idle";
                    n.due = None;
                    n.state_time = wall;
                    if let Some((api, token)) = &enroll {
                        boots.push((
                            n.id.clone(),
                            BootScript::Enroll {
                                url: format!("{api}/v1/nodes/{}/enroll", n.id),
                                token: token.clone(),
                            },
                        ));
                    }
                }
            }
            let state = if p.nodes.iter().any(in_transit) {
                "Resizing"
            } else {
                "Steady"
            };
            if p.allocation_state != state {
                p.allocation_state = state;
                p.allocation_time = wall;
            }
        }
        for (node, script) in boots {
            self.queue_boot(node, script);
        }
    }

    /// Preempts up to `count` Spot nodes that are up (`idle` or `running`), oldest first, of
    /// one pool or of every pool. Each is `preempted` until Batch reallocates it, after
    /// `latency_ms.eviction` plus `latency_ms.batch_node`; it keeps its id and keeps counting
    /// in `currentLowPriorityNodes`, as in Azure. Returns the preempted node ids.
    pub fn preempt_batch_nodes(
        &mut self,
        pool: Option<&str>,
        count: usize,
        now: Instant,
    ) -> Vec<String> {
        let latency = Duration::from_millis(
            self.cfg
                .latency_ms
                .eviction
                .saturating_add(self.cfg.latency_ms.batch_node),
        );
        let wall = self.clock.wall();
        let mut candidates: Vec<(OffsetDateTime, String, String)> = Vec::new();
        for r in self.res.values() {
            let Kind::Pool(p) = &r.kind else { continue };
            if pool.is_some_and(|want| !r.name.eq_ignore_ascii_case(want)) || p.deleting {
                continue;
            }
            for n in &p.nodes {
                if !n.dedicated && matches!(n.state, "idle" | "running") {
                    candidates.push((n.allocation_time, r.id.clone(), n.id.clone()));
                }
            }
        }
        candidates.sort();
        candidates.truncate(count);
        let mut done = Vec::new();
        for (_, pool_id, node_id) in candidates {
            if let Some(p) = self.get_mut(&pool_id).and_then(Res::pool_mut)
                && let Some(n) = p.nodes.iter_mut().find(|n| n.id == node_id)
            {
                n.state = "preempted";
                n.due = Some(now + latency);
                n.state_time = wall;
                done.push(node_id);
            }
        }
        self.stats.batch_preemptions += done.len() as u64;
        done
    }
}
