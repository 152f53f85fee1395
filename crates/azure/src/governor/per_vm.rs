//! Compute's per-VM buckets: besides its per-subscription buckets, Compute throttles the
//! writes to each VM on their own — Put VM (create), Update VM (update, start, power off,
//! restart, ...) and Delete VM (delete, deallocate, simulate eviction) each refill 4 tokens a
//! minute up to 12, per VM and region ("Compute throttling limits",
//! <https://learn.microsoft.com/en-us/azure/virtual-machines/compute-throttling-limits>).
//! A VM started and deallocated over and over empties its own bucket long before the
//! subscription notices.
//!
//! So the governor keeps one small bucket per (VM, group) that was written to recently, paces
//! a write to a VM whose bucket is empty instead of sending it into a 429, corrects each from
//! the `…Resource;N` part of `x-ms-ratelimit-remaining-resource`, and holds a VM for the
//! `Retry-After` of a per-VM 429. A bucket that has refilled to full is forgotten (it is what
//! an unknown VM is assumed to have), so memory follows the VMs written to in the last few
//! minutes, not the farm.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::ComputeGroup;

/// Documented per-VM bucket: 12 tokens, 4 a minute.
pub(super) const PER_VM_BURST: f64 = 12.0;
pub(super) const PER_VM_PER_MIN: f64 = 4.0;

/// How often full buckets are swept out.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct VmBucket {
    tokens: f64,
    last: Instant,
    in_flight: u32,
    held_until: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct VmBuckets {
    capacity: f64,
    per_s: f64,
    map: HashMap<(String, ComputeGroup), VmBucket>,
    last_prune: Instant,
}

impl VmBuckets {
    /// `factor` scales the documented bucket as `GovernorLimits::compute_factor` scales
    /// Compute's others (at least one token, so a VM can always be written to).
    pub fn new(factor: f64, now: Instant) -> Self {
        Self {
            capacity: (PER_VM_BURST * factor).max(1.0),
            per_s: (PER_VM_PER_MIN * factor / 60.0).max(1e-6),
            map: HashMap::new(),
            last_prune: now,
        }
    }

    fn get(&mut self, vm: &str, group: ComputeGroup, now: Instant) -> Option<&mut VmBucket> {
        let (capacity, per_s) = (self.capacity, self.per_s);
        let b = self.map.get_mut(&(vm.to_owned(), group))?;
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * per_s).min(capacity);
        b.last = now;
        Some(b)
    }

    fn entry(&mut self, vm: &str, group: ComputeGroup, now: Instant) -> &mut VmBucket {
        let capacity = self.capacity;
        if self.get(vm, group, now).is_none() {
            self.map.insert(
                (vm.to_owned(), group),
                VmBucket {
                    tokens: capacity,
                    last: now,
                    in_flight: 0,
                    held_until: None,
                },
            );
        }
        self.map
            .get_mut(&(vm.to_owned(), group))
            .expect("inserted above")
    }

    /// Room for writes of `group` to `vm` now: 0 while a 429 holds it.
    pub fn room(&mut self, vm: &str, group: ComputeGroup, now: Instant) -> f64 {
        let capacity = self.capacity;
        match self.get(vm, group, now) {
            None => capacity,
            Some(b) if b.held_until.is_some_and(|h| h > now) => 0.0,
            Some(b) => b.tokens.max(0.0),
        }
    }

    /// How long until one more write of `group` to `vm` may go.
    pub fn wait(&mut self, vm: &str, group: ComputeGroup, now: Instant) -> Duration {
        let per_s = self.per_s;
        let Some(b) = self.get(vm, group, now) else {
            return Duration::ZERO;
        };
        if let Some(h) = b.held_until {
            if h > now {
                return h - now;
            }
            b.held_until = None;
        }
        if b.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - b.tokens) / per_s)
        }
    }

    pub fn take(&mut self, vm: &str, group: ComputeGroup, now: Instant) {
        let b = self.entry(vm, group, now);
        b.tokens -= 1.0;
        b.in_flight += 1;
        self.prune(now);
    }

    /// The write is over; `remaining` is what the answer's per-VM part counted. Lowered
    /// always, raised only when no other write to the VM is out (then it is the newest
    /// count).
    pub fn finish(&mut self, vm: &str, group: ComputeGroup, remaining: Option<u64>, now: Instant) {
        let b = self.entry(vm, group, now);
        b.in_flight = b.in_flight.saturating_sub(1);
        if let Some(r) = remaining {
            let view = (r as f64 - b.in_flight as f64).max(0.0);
            if b.in_flight == 0 || view < b.tokens {
                b.tokens = view;
            }
        }
    }

    /// A per-VM 429: nothing for this VM and group until `until`.
    pub fn hold(&mut self, vm: &str, group: ComputeGroup, until: Instant, now: Instant) {
        let b = self.entry(vm, group, now);
        b.tokens = b.tokens.min(0.0);
        b.held_until = Some(b.held_until.map_or(until, |h| h.max(until)));
    }

    /// Forgets buckets back at full with nothing out and no hold; at most once a second.
    fn prune(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_prune) < PRUNE_EVERY {
            return;
        }
        self.last_prune = now;
        let (capacity, per_s) = (self.capacity, self.per_s);
        self.map.retain(|_, b| {
            let dt = now.saturating_duration_since(b.last).as_secs_f64();
            let full = b.tokens + dt * per_s >= capacity;
            !(full && b.in_flight == 0 && b.held_until.is_none_or(|h| h <= now))
        });
    }

    /// (tracked buckets, of which without room for one write now).
    pub fn census(&self, now: Instant) -> (usize, usize) {
        let per_s = self.per_s;
        let empty = self
            .map
            .values()
            .filter(|b| {
                let dt = now.saturating_duration_since(b.last).as_secs_f64();
                b.held_until.is_some_and(|h| h > now) || b.tokens + dt * per_s < 1.0
            })
            .count();
        (self.map.len(), empty)
    }
}
