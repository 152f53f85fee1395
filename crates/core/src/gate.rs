//! The creation gate: every reason a pool may not create nodes now, as one typed input of the
//! planners, each with the condition it shows. The controller builds the gate from what it
//! knows (its backoff after failed creates, the ARM client's outage); the planners apply it the
//! same way whatever the reason: no creates (or, for a Batch pool, no raised targets) while it
//! is closed, at most `n` while it lets `n` through, and its conditions shown while the pool
//! wants nodes. Deletes, deallocations and removals never pass through it: a closed gate
//! never keeps a pool from shrinking.
//!
//! A new reason to stop creating (a budget, readiness gates failing on several nodes, no
//! quota) is a new [`GateReason`] and the place that produces it, not a new stop in a planner.

use crate::UnixSeconds;
use crate::condition::Hold;
use crate::offerings::format_utc;

/// One reason a pool may not create nodes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateReason {
    /// The controller's backoff after failed creates: closed until the hold's `until`, then
    /// `probe` creates at a time while the failures last. Its condition is `BackingOff`, or
    /// `Blocked` for an error only an admin can fix.
    Backoff(Hold),
    /// Azure Resource Manager has failed every request since `since` (5xx, 408, no answer),
    /// the last with `error`: creates wait until it answers again (each would fail, and
    /// count against the pool's backoff).
    ArmUnavailable { since: UnixSeconds, error: String },
}

impl GateReason {
    /// How many creates this reason lets through now (None: no limit).
    pub fn allows(&self, now: UnixSeconds) -> Option<u32> {
        match self {
            GateReason::Backoff(h) if now < h.until => Some(0),
            GateReason::Backoff(h) => h.probe,
            GateReason::ArmUnavailable { .. } => Some(0),
        }
    }

    /// The condition a pool shows for it, in the `"Type: message"` convention.
    pub fn condition(&self, now: UnixSeconds) -> String {
        match self {
            GateReason::Backoff(h) => h.shown("create", now),
            GateReason::ArmUnavailable { since, error } => arm_unavailable(*since, error),
        }
    }
}

/// `ArmUnavailable: Azure Resource Manager failing since 2025-12-03 16:12:41 UTC: 503 ...`.
pub fn arm_unavailable(since: UnixSeconds, error: &str) -> String {
    let at = format_utc(since).replace('T', " ").replace('Z', " UTC");
    format!("ArmUnavailable: Azure Resource Manager failing since {at}: {error}")
}

/// Every reason a pool may not create now: open when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateGate {
    pub reasons: Vec<GateReason>,
}

impl CreateGate {
    /// No reason to stop creating.
    pub fn open() -> Self {
        Self::default()
    }

    /// The gate of the controller's backoff alone (the API's what-if, tests).
    pub fn backoff(hold: Option<&Hold>) -> Self {
        Self {
            reasons: hold.cloned().map(GateReason::Backoff).into_iter().collect(),
        }
    }

    /// The same gate with one more reason.
    pub fn with(mut self, reason: GateReason) -> Self {
        self.reasons.push(reason);
        self
    }

    /// How many creates the gate lets through now: the fewest any reason allows (None: no
    /// limit).
    pub fn allows(&self, now: UnixSeconds) -> Option<u32> {
        self.reasons.iter().filter_map(|r| r.allows(now)).min()
    }

    /// The conditions of its reasons, in order.
    pub fn conditions(&self, now: UnixSeconds) -> Vec<String> {
        self.reasons.iter().map(|r| r.condition(now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(until: UnixSeconds, probe: Option<u32>) -> Hold {
        Hold {
            until,
            probe,
            condition: "BackingOff: InternalServerError: boom".into(),
        }
    }

    #[test]
    fn the_gate_lets_through_the_fewest_any_reason_allows() {
        assert_eq!(CreateGate::open().allows(100), None);
        let backoff = CreateGate::backoff(Some(&hold(200, Some(1))));
        assert_eq!(backoff.allows(100), Some(0), "held until 200");
        assert_eq!(backoff.allows(200), Some(1), "then a probe");
        assert_eq!(
            CreateGate::backoff(Some(&hold(200, None))).allows(300),
            None
        );
        let both = backoff.clone().with(GateReason::ArmUnavailable {
            since: 50,
            error: "503 ServiceUnavailable".into(),
        });
        assert_eq!(
            both.allows(300),
            Some(0),
            "the outage closes what the backoff opens"
        );
        assert_eq!(
            both.conditions(100),
            [
                "BackingOff: InternalServerError: boom; next create attempt at 1970-01-01T00:03:20Z",
                "ArmUnavailable: Azure Resource Manager failing since 1970-01-01 00:00:50 UTC: 503 ServiceUnavailable",
            ]
        );
    }
}
