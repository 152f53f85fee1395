//! What the simulator counts, for `GET /_sim/stats`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub by_type: BTreeMap<String, BTreeMap<String, u64>>,
    pub throttled_429: u64,
    pub faults_injected: u64,
    pub evictions: u64,
    pub batch_preemptions: u64,
    pub operations_failed: u64,
    /// Booting VMs (`boot.enabled`): registered, refused, unreachable, never registering.
    pub boots_registered: u64,
    pub boots_failed: u64,
    pub boots_never: u64,
    /// Wall-clock time (Unix milliseconds) of the latest ARM write or delete (any method but
    /// GET), for measuring how fast a client reacts; `None` before the first.
    pub last_write_unix_ms: Option<u64>,
    /// PUTs that created a VM (not updates or retries of an existing one), by lower-case VM
    /// name: more than one for a name means it was created, deleted and created again.
    pub vm_creates: BTreeMap<String, u64>,
    /// Names whose latest create's operation succeeded. A client that reuses the name of a
    /// create that did not succeed (failed, or deleted while creating) creates it again,
    /// legitimately; one that creates a name whose previous VM succeeded has duplicated it.
    pub vm_last_create_succeeded: BTreeSet<String>,
    /// Names created again although their previous create had succeeded (a duplicate, or a
    /// good VM's name burned and reused), with how many times that happened.
    pub vm_repeats: BTreeMap<String, u64>,
    /// What happened to each VM name whose create failed, from that create on, in order:
    /// `create`, `create failed`, `create succeeded`, `update` (a PUT on the existing VM),
    /// `delete` (a DELETE that started deleting it), `deleted`. Shows whether a client
    /// deleted a failed VM before creating its name again. Names that never failed are not
    /// kept (the map would grow with the farm); each list keeps its first
    /// [`LIFECYCLE_KEPT`] entries.
    pub vm_failed_lifecycle: BTreeMap<String, Vec<String>>,
    /// Failed asynchronous operations whose failure a client saw (the first poll of the
    /// operation's status that answered it), by error code.
    pub failures_reported: BTreeMap<String, u64>,
    /// Compute Schedule traffic.
    pub bulk: BulkStats,
    /// The most operations one VM's per-VM Compute bucket of one operation group granted
    /// within a minute (Put VM, Update VM, Delete VM: each has a bucket per VM), and which VM
    /// and group: how hard a client works a single VM. The bucket (12 burst, 4 a minute)
    /// bounds it at 16.
    pub vm_ops_per_minute_max: u64,
    pub vm_ops_per_minute_max_vm: Option<String>,
    /// Each VM's grants within the last minute (simulator clock), for the above.
    #[serde(skip)]
    pub vm_ops_recent:
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
}

/// What Compute Schedule did, for a benchmark that compares bulk and per-VM paths.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BulkStats {
    /// Accepted requests by call (`ExecuteCreate`, `GetOperationStatus`...).
    pub requests: BTreeMap<String, u64>,
    /// VM operations accepted, by `opType`.
    pub operations: BTreeMap<String, u64>,
    /// VMs of execute requests answered with an `errorCode` (not accepted), by code.
    pub rejected: BTreeMap<String, u64>,
    /// Operations that ended, by final state.
    pub outcomes: BTreeMap<String, u64>,
    /// Attempts retried under a retry policy.
    pub retries: u64,
}

/// Entries kept per name in `Stats::vm_failed_lifecycle`.
pub const LIFECYCLE_KEPT: usize = 64;

impl Stats {
    /// Notes `what` in the lifecycle of VM `name` if its create ever failed; a failed create
    /// starts the lifecycle (with the `create` it failed).
    pub fn vm_lifecycle(&mut self, name: &str, what: &str) {
        let key = name.to_ascii_lowercase();
        let list = if what == "create failed" {
            self.vm_failed_lifecycle
                .entry(key)
                .or_insert_with(|| vec!["create".to_owned()])
        } else {
            match self.vm_failed_lifecycle.get_mut(&key) {
                Some(l) => l,
                None => return,
            }
        };
        if list.len() < LIFECYCLE_KEPT {
            list.push(what.to_owned());
        }
    }

    /// A per-VM Compute bucket granted an operation on `vm` at `now`.
    pub fn vm_op(&mut self, vm: &str, group: &str, now: std::time::Instant) {
        let minute = std::time::Duration::from_secs(60);
        let recent = self
            .vm_ops_recent
            .entry(format!("{}|{group}", vm.to_ascii_lowercase()))
            .or_default();
        // In time order: Compute Schedule's grants are reserved ahead, at the time their
        // tokens are earned, so they may come in later than a grant they precede.
        let at = recent.partition_point(|t| *t <= now);
        recent.insert(at, now);
        // What no window with the newest grant can reach any more goes.
        let newest = recent.back().copied().unwrap_or(now);
        while recent
            .front()
            .is_some_and(|t| newest.duration_since(*t) >= 2 * minute)
        {
            recent.pop_front();
        }
        // The most grants within any minute of what is kept (a handful per VM).
        let times: Vec<_> = recent.iter().copied().collect();
        let mut n = 0u64;
        let mut start = 0;
        for (end, t) in times.iter().enumerate() {
            while t.duration_since(times[start]) >= minute {
                start += 1;
            }
            n = n.max((end - start + 1) as u64);
        }
        if n > self.vm_ops_per_minute_max {
            self.vm_ops_per_minute_max = n;
            self.vm_ops_per_minute_max_vm =
                Some(format!("{} ({group})", vm.rsplit('/').next().unwrap_or(vm)));
        }
        // Keep the map to VMs worked on within the last minute.
        if self.vm_ops_recent.len() > 4096 {
            self.vm_ops_recent.retain(|_, r| {
                r.back()
                    .is_some_and(|t| now.duration_since(*t) < 2 * minute)
            });
        }
    }

    pub fn to_json(&self) -> Value {
        let mut requests = serde_json::Map::new();
        for m in ["GET", "PUT", "PATCH", "POST", "DELETE"] {
            requests.insert(m.into(), json!(self.requests.get(m).copied().unwrap_or(0)));
        }
        for (m, n) in &self.requests {
            requests.entry(m.clone()).or_insert(json!(n));
        }
        json!({
            "requests": requests,
            "by_type": self.by_type,
            "throttled_429": self.throttled_429,
            "faults_injected": self.faults_injected,
            "evictions": self.evictions,
            "batch_preemptions": self.batch_preemptions,
            "operations_failed": self.operations_failed,
            "boots": {"registered": self.boots_registered, "failed": self.boots_failed, "never": self.boots_never},
            "last_write_unix_ms": self.last_write_unix_ms,
            "vm_creates": self.vm_creates.values().sum::<u64>(),
            // Only the names created again although the earlier create had not failed (a
            // duplicate, or a good VM's name burned and reused); the map of all would grow
            // with the farm.
            "vm_creates_repeated": self.vm_creates.iter().filter(|(name, _)| {
                self.vm_repeats.contains_key(*name)
            }).collect::<BTreeMap<_, _>>(),
            "failures_reported": self.failures_reported,
            "vm_failed_lifecycle": self.vm_failed_lifecycle,
            "vm_ops_per_minute_max": self.vm_ops_per_minute_max,
            "vm_ops_per_minute_max_vm": self.vm_ops_per_minute_max_vm,
            "compute_schedule": {
                "requests": self.bulk.requests,
                "operations": self.bulk.operations,
                "rejected": self.bulk.rejected,
                "outcomes": self.bulk.outcomes,
                "retries": self.bulk.retries,
            },
        })
    }
}

#[cfg(test)]
mod vm_ops_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_most_grants_one_vm_had_within_any_minute() {
        let mut s = Stats::default();
        let t0 = Instant::now();
        for _ in 0..12 {
            s.vm_op("vm-1", "DeleteVM", t0);
        }
        // Four more, 15 s apart: the minute after t0 holds the burst and three of them.
        for k in 1..=4 {
            s.vm_op("vm-1", "DeleteVM", t0 + Duration::from_secs(15 * k));
        }
        assert_eq!(s.vm_ops_per_minute_max, 15);
        // A grant reserved ahead (in 100 s) then one now: counted in their own minutes.
        let mut b = Stats::default();
        b.vm_op("vm-2", "UpdateVM", t0 + Duration::from_secs(100));
        b.vm_op("vm-2", "UpdateVM", t0);
        b.vm_op("vm-2", "UpdateVM", t0 + Duration::from_secs(30));
        assert_eq!(b.vm_ops_per_minute_max, 2);
        assert_eq!(
            b.vm_ops_per_minute_max_vm.as_deref(),
            Some("vm-2 (UpdateVM)")
        );
        // Each operation group has its own bucket per VM: counted apart.
        for _ in 0..3 {
            b.vm_op("vm-2", "DeleteVM", t0);
        }
        assert_eq!(b.vm_ops_per_minute_max, 3);
    }
}
