//! Token buckets, the way ARM and the Compute resource provider throttle since 2024.
//!
//! ARM keeps one bucket per subscription for reads, writes and deletes; Compute keeps its own
//! per-subscription buckets per operation group and per-VM buckets for writes to one VM. A
//! request takes one token from every bucket it draws on; if any is empty it is refused
//! with 429 and `Retry-After` = the time until a token is back (at least 1 s).

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_s: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: f64, refill_per_s: f64, now: Instant) -> Self {
        Self {
            capacity,
            refill_per_s,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // Never backwards: Compute Schedule's queued operations draw at the instant they were
        // due, which can be earlier than the last request's.
        if now <= self.last {
            return;
        }
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_s).min(self.capacity);
        self.last = now;
    }

    /// Whole tokens left, as reported in `x-ms-ratelimit-remaining-*` headers.
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.floor().max(0.0) as u64
    }

    /// Seconds until one token is available (0 if one is).
    pub fn wait_s(&mut self, now: Instant) -> f64 {
        self.refill(now);
        if self.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - self.tokens) / self.refill_per_s
        }
    }

    /// Takes a token. Call only after `wait_s` returned 0 for every bucket involved, so that
    /// a refused request takes nothing from the buckets that had room.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }
}

impl TokenBucket {
    /// Takes a token at `now` even if there is none, going into debt, and answers how many
    /// seconds until that token is earned. For work that waits its turn instead of being
    /// refused: Compute Schedule paces its calls to Compute so its callers never see a 429
    /// (`schedule` module). A debt delays everyone after it, direct requests included, as it
    /// should: the tokens were spent.
    pub fn reserve(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            0.0
        } else {
            -self.tokens / self.refill_per_s
        }
    }
}

/// The Retry-After a client is given: whole seconds, at least 1.
pub fn retry_after_secs(wait_s: f64) -> u64 {
    (wait_s.ceil() as u64).max(1)
}

/// ARM's request classes, by HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArmClass {
    Reads,
    Writes,
    Deletes,
}

impl ArmClass {
    pub fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => ArmClass::Reads,
            http::Method::DELETE => ArmClass::Deletes,
            _ => ArmClass::Writes,
        }
    }

    /// The word ARM uses in its throttling message.
    pub fn verb(self) -> &'static str {
        match self {
            ArmClass::Reads => "read",
            ArmClass::Writes => "write",
            ArmClass::Deletes => "delete",
        }
    }
}

/// Compute RP operation groups that the simulator throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComputeGroup {
    /// VM create (PUT of a new VM).
    PutVm,
    /// VM update, start, powerOff, restart.
    UpdateVm,
    /// VM delete, deallocate, simulateEviction.
    DeleteVm,
    /// VM list calls (by resource group, by subscription).
    HighCostGet,
}

impl ComputeGroup {
    pub const ALL: [ComputeGroup; 4] = [
        ComputeGroup::PutVm,
        ComputeGroup::UpdateVm,
        ComputeGroup::DeleteVm,
        ComputeGroup::HighCostGet,
    ];

    /// Policy name reported in `x-ms-ratelimit-remaining-resource`. Azure does not document
    /// its current names; these follow the older `Microsoft.Compute/PutVM3Min` style.
    pub fn policy(self) -> &'static str {
        match self {
            ComputeGroup::PutVm => "PutVM",
            ComputeGroup::UpdateVm => "UpdateVM",
            ComputeGroup::DeleteVm => "DeleteVM",
            ComputeGroup::HighCostGet => "HighCostGetVM",
        }
    }

    /// (burst, refill per minute) of the per-subscription bucket, from Azure's docs.
    pub fn subscription_limits(self) -> (f64, f64) {
        match self {
            ComputeGroup::HighCostGet => (900.0, 300.0),
            _ => (1500.0, 500.0),
        }
    }

    /// Whether the group also has a bucket per VM (4/min, burst 12).
    pub fn per_vm(self) -> bool {
        !matches!(self, ComputeGroup::HighCostGet)
    }
}

pub const PER_VM_BURST: f64 = 12.0;
pub const PER_VM_PER_MIN: f64 = 4.0;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_drains_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 2.0, t0);
        for _ in 0..3 {
            assert_eq!(b.wait_s(t0), 0.0);
            b.take(t0);
        }
        assert_eq!(b.remaining(t0), 0);
        let wait = b.wait_s(t0);
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert_eq!(retry_after_secs(wait), 1);
        let later = t0 + Duration::from_millis(500);
        assert_eq!(b.wait_s(later), 0.0);
        assert_eq!(
            b.remaining(t0 + Duration::from_secs(60)),
            3,
            "never above capacity"
        );
    }

    #[test]
    fn reservations_queue_behind_each_other_and_time_never_runs_backwards() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 4.0, t0);
        assert_eq!(b.reserve(t0), 0.0);
        assert_eq!(b.reserve(t0), 0.0);
        // Empty: the third waits a quarter second, the fourth half a second.
        assert!((b.reserve(t0) - 0.25).abs() < 1e-9);
        assert!((b.reserve(t0) - 0.5).abs() < 1e-9);
        // A direct request now waits for the debt to be paid, plus its own token.
        assert!((b.wait_s(t0) - 0.75).abs() < 1e-9);
        // An instant before the bucket's last one refills nothing.
        let later = t0 + Duration::from_secs(1);
        b.remaining(later);
        let before = b.tokens;
        b.remaining(t0);
        assert_eq!(b.tokens, before);
    }
}
