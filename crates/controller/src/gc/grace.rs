//! What the garbage collector has seen and tried, typed: each piece of garbage by kind and
//! name, when it was first seen (it is deleted only once it has been garbage for the whole
//! grace period), and the deletes that failed (tried again after a hold that doubles, as the
//! pools' writes do, so a refused delete is not repeated at every sweep).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Something of ours no pool wants. Names are lower-cased (ARM names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Garbage {
    Vm(String),
    Nic(String),
    Disk(String),
    /// A Batch pool, by resource group, account and name.
    BatchPool {
        rg: String,
        account: String,
        name: String,
    },
}

/// The kinds of [`Garbage`], each listed by its own call (and so forgotten on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Vm,
    Nic,
    Disk,
    BatchPool,
}

impl Garbage {
    pub fn vm(name: &str) -> Self {
        Self::Vm(name.to_ascii_lowercase())
    }
    pub fn nic(name: &str) -> Self {
        Self::Nic(name.to_ascii_lowercase())
    }
    pub fn disk(name: &str) -> Self {
        Self::Disk(name.to_ascii_lowercase())
    }
    pub fn batch_pool(rg: &str, account: &str, name: &str) -> Self {
        Self::BatchPool {
            rg: rg.to_ascii_lowercase(),
            account: account.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::Vm(_) => Kind::Vm,
            Self::Nic(_) => Kind::Nic,
            Self::Disk(_) => Kind::Disk,
            Self::BatchPool { .. } => Kind::BatchPool,
        }
    }
}

/// A delete that failed: how many times in a row, and not before when again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    not_before: Instant,
}

/// First sightings and failed deletes of the garbage collector.
#[derive(Debug, Default)]
pub(crate) struct GraceTracker {
    first_seen: HashMap<Garbage, Instant>,
    retries: HashMap<Garbage, Retry>,
}

impl GraceTracker {
    /// `g` is garbage now: true once it has been for `grace` and no failed delete of it is
    /// being held.
    pub fn due(&mut self, g: &Garbage, grace: Duration, now: Instant) -> bool {
        let first = *self.first_seen.entry(g.clone()).or_insert(now);
        now.duration_since(first) >= grace
            && self.retries.get(g).is_none_or(|r| now >= r.not_before)
    }

    /// Deleting `g` failed: the next attempt waits 10 s, doubling per failure in a row up to
    /// `cap` ([`crate::backoff::delay`]).
    pub fn failed(&mut self, g: &Garbage, cap: Duration, now: Instant) {
        let r = self.retries.entry(g.clone()).or_insert(Retry {
            failures: 0,
            not_before: now,
        });
        r.failures += 1;
        let hold = crate::backoff::delay(r.failures, cap.as_secs().max(1));
        r.not_before = now + Duration::from_secs(hold);
    }

    /// Failed deletes of `g` in a row (0 when none).
    #[cfg(test)]
    pub fn failures(&self, g: &Garbage) -> u32 {
        self.retries.get(g).map_or(0, |r| r.failures)
    }

    /// Forgets what of `kind` is not in `garbage` any more (listed, and no longer garbage), so
    /// its grace period and retries start over if it comes back.
    pub fn forget_except(&mut self, kind: Kind, garbage: &HashSet<Garbage>) {
        let keep = |g: &Garbage| g.kind() != kind || garbage.contains(g);
        self.first_seen.retain(|g, _| keep(g));
        self.retries.retain(|g, _| keep(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_waits_out_its_grace_then_failed_deletes_back_off() {
        let mut t = GraceTracker::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        let cap = Duration::from_secs(300);
        let nic = Garbage::nic("Maya-00001-NIC");
        assert_eq!(
            nic,
            Garbage::nic("maya-00001-nic"),
            "names are case-insensitive"
        );
        assert!(!t.due(&nic, grace, t0));
        assert!(!t.due(&nic, grace, t0 + Duration::from_secs(59)));
        assert!(t.due(&nic, grace, t0 + Duration::from_secs(60)));
        // A refused delete is held 10 s, then 20 s, then 40 s...
        let t1 = t0 + Duration::from_secs(60);
        t.failed(&nic, cap, t1);
        assert!(!t.due(&nic, grace, t1 + Duration::from_secs(9)));
        assert!(t.due(&nic, grace, t1 + Duration::from_secs(10)));
        let t2 = t1 + Duration::from_secs(10);
        t.failed(&nic, cap, t2);
        assert_eq!(t.failures(&nic), 2);
        assert!(!t.due(&nic, grace, t2 + Duration::from_secs(19)));
        assert!(t.due(&nic, grace, t2 + Duration::from_secs(20)));
        // Gone from its listing: forgotten, grace and retries start over; other kinds stay.
        let vm = Garbage::vm("maya-00002");
        assert!(!t.due(&vm, grace, t0));
        t.forget_except(Kind::Nic, &HashSet::new());
        assert_eq!(t.failures(&nic), 0);
        assert!(!t.due(&nic, grace, t2 + Duration::from_secs(20)));
        assert!(t.due(&vm, grace, t0 + grace));
    }
}
