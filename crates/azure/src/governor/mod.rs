//! The rate governor: one per subscription, shared by every caller.
//!
//! ARM refuses requests with 429 once a token bucket is empty (reads, writes and deletes per
//! subscription; Compute's own buckets per operation group and per VM). Bouncing off those
//! limits costs a round trip and a `Retry-After` wait each time, and after a controller
//! restart hundreds of callers bounce at once. So the governor keeps a local model of each
//! bucket and paces requests *before* they are refused; when a 429 does come, it holds that
//! whole class of request (or, for Compute's per-VM bucket, that VM) — for every caller —
//! until its `Retry-After` has passed.
//!
//! The model is learnt, not assumed: the real bucket may be smaller than Azure's published
//! defaults (another tool writing on the same subscription, a lower limit), so the
//! `x-ms-ratelimit-remaining-*` headers of every answer set its count and teach its size and
//! refill rate ([`estimator`]); a bucket not heard from lately sends one request and sizes
//! its burst from the answer ([`bucket`]). The configured [`GovernorLimits`] are an upper
//! prior, used until the headers say otherwise.
//!
//! - `bucket.rs`: one subscription-wide bucket (an ARM class, a Compute group) and its rules.
//! - `estimator.rs`: capacity and refill rate from the headers.
//! - `per_vm.rs`: Compute's per-VM buckets, paced before sending; [`Governor::vm_room`].

mod bucket;
mod estimator;
mod per_vm;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

// tokio's clock, so tests can pause and advance time.
use tokio::time::Instant;

use serde::Serialize;

/// ARM's request classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmClass {
    Reads,
    Writes,
    Deletes,
}

impl ArmClass {
    pub fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => Self::Reads,
            http::Method::DELETE => Self::Deletes,
            _ => Self::Writes,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
            Self::Deletes => "deletes",
        }
    }
}

/// Compute RP operation groups with buckets of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeGroup {
    PutVm,
    UpdateVm,
    DeleteVm,
    HighCostGet,
}

impl ComputeGroup {
    /// Policy-name prefixes in `x-ms-ratelimit-remaining-resource` that belong to the group.
    fn matches_policy(self, policy: &str) -> bool {
        let p = policy
            .rsplit('/')
            .next()
            .unwrap_or(policy)
            .to_ascii_lowercase();
        match self {
            Self::PutVm => p.starts_with("putvm"),
            Self::UpdateVm => p.starts_with("updatevm"),
            Self::DeleteVm => p.starts_with("deletevm"),
            Self::HighCostGet => p.starts_with("highcostget"),
        }
    }

    /// The group a request to a VM URL belongs to, if any.
    pub fn classify(method: &http::Method, path: &str) -> Option<Self> {
        let p = path.to_ascii_lowercase();
        let i = p.find("/providers/microsoft.compute/virtualmachines")?;
        let rest: Vec<&str> = p[i + "/providers/microsoft.compute/virtualmachines".len()..]
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match (method.clone(), rest.as_slice()) {
            (http::Method::GET, []) => Some(Self::HighCostGet),
            (http::Method::PUT, [_]) => Some(Self::PutVm),
            (http::Method::PATCH, [_]) => Some(Self::UpdateVm),
            (http::Method::DELETE, [_]) => Some(Self::DeleteVm),
            (http::Method::POST, [_, "deallocate" | "simulateeviction"]) => Some(Self::DeleteVm),
            (http::Method::POST, [_, _]) => Some(Self::UpdateVm),
            _ => None,
        }
    }
}

/// Bucket sizes and refill rates the governor starts from. Defaults are Azure's published
/// ones. They are an upper prior: the remaining counts Azure sends with every answer win, so a
/// subscription with smaller buckets need not say so (see the module's doc).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernorLimits {
    pub reads_bucket: f64,
    pub reads_per_s: f64,
    pub writes_bucket: f64,
    pub writes_per_s: f64,
    pub deletes_bucket: f64,
    pub deletes_per_s: f64,
    /// Multiplies Compute's buckets: per subscription (1,500 burst, 500/min for VM writes;
    /// 900 burst, 300/min for VM lists) and per VM (12 burst, 4/min).
    pub compute_factor: f64,
}

impl Default for GovernorLimits {
    fn default() -> Self {
        Self {
            reads_bucket: 250.0,
            reads_per_s: 25.0,
            writes_bucket: 200.0,
            writes_per_s: 10.0,
            deletes_bucket: 200.0,
            deletes_per_s: 10.0,
            compute_factor: 1.0,
        }
    }
}

/// What a request draws on.
#[derive(Debug, Clone)]
pub struct Draw {
    pub class: ArmClass,
    pub compute: Option<ComputeGroup>,
    /// The VM a Compute write targets (lower-cased id), for its per-VM bucket.
    pub resource: Option<String>,
}

/// A request the governor let through. Hand it back to [`Governor::complete`] (and, after a
/// 429, [`Governor::throttled`]): it says when the request left and what its buckets had
/// heard by then, which is how an answer is told apart from older ones.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// How long the request waited for the governor.
    pub waited: Duration,
    sent: Instant,
    arm: estimator::Mark,
    compute: estimator::Mark,
}

struct Inner {
    arm: HashMap<ArmClass, Bucket>,
    compute: HashMap<ComputeGroup, Bucket>,
    vms: VmBuckets,
}

/// One per subscription; cheap to share behind an `Arc`.
pub struct Governor {
    enabled: bool,
    inner: Mutex<Inner>,
    /// Woken by every answer: a request waiting for a header to confirm room looks again.
    answered: Notify,
}

/// The governor's state, for `/v1/status` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct GovernorSnapshot {
    pub enabled: bool,
    pub classes: Vec<BucketSnapshot>,
    /// Compute's per-VM buckets tracked now (written to lately and not yet full again).
    pub vm_buckets: usize,
    /// Of those, the ones without room for one more write now.
    pub vm_buckets_empty: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BucketSnapshot {
    /// `reads`, `writes`, `deletes`, or a Compute group (`compute_put_vm`...).
    pub name: String,
    pub tokens: f64,
    /// The bucket size in use: learnt from the headers, else the configured one.
    pub capacity: f64,
    /// The refill rate in use: learnt from the headers, else a guess (the configured one,
    /// or half the rate in use at the last 429).
    pub refill_per_s: f64,
    /// The largest bucket the headers showed since the last 429.
    pub learned_capacity: Option<f64>,
    /// The estimator's lower bound of the refill rate, if it has one.
    pub learned_refill_per_s: Option<f64>,
    /// Whether a header came lately enough to size a burst.
    pub fresh: bool,
    pub in_flight: u64,
    pub observed_remaining: Option<u64>,
    /// Seconds until requests of this class may go again after a 429, if held.
    pub held_for_s: Option<f64>,
    pub throttled_total: u64,
    pub waited_total_s: f64,
}

use bucket::{Bucket, Wait};
use per_vm::VmBuckets;

impl Governor {
    pub fn new(limits: &GovernorLimits, enabled: bool) -> Self {
        let now = Instant::now();
        let f = limits.compute_factor;
        let arm = HashMap::from([
            (
                ArmClass::Reads,
                Bucket::new(limits.reads_bucket, limits.reads_per_s, now),
            ),
            (
                ArmClass::Writes,
                Bucket::new(limits.writes_bucket, limits.writes_per_s, now),
            ),
            (
                ArmClass::Deletes,
                Bucket::new(limits.deletes_bucket, limits.deletes_per_s, now),
            ),
        ]);
        let compute = [
            (ComputeGroup::PutVm, 1500.0, 500.0),
            (ComputeGroup::UpdateVm, 1500.0, 500.0),
            (ComputeGroup::DeleteVm, 1500.0, 500.0),
            (ComputeGroup::HighCostGet, 900.0, 300.0),
        ]
        .into_iter()
        .map(|(g, burst, per_min)| (g, Bucket::new(burst * f, per_min * f / 60.0, now)))
        .collect();
        Self {
            enabled,
            inner: Mutex::new(Inner {
                arm,
                compute,
                vms: VmBuckets::new(f, now),
            }),
            answered: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the request may be sent, then takes its tokens.
    pub async fn acquire(&self, draw: &Draw) -> Ticket {
        let start = Instant::now();
        if !self.enabled {
            return Ticket {
                waited: Duration::ZERO,
                sent: start,
                arm: Default::default(),
                compute: Default::default(),
            };
        }
        loop {
            // Registered before looking, so an answer between the look and the wait is not
            // missed.
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let sleep = {
                let mut g = self.lock();
                let now = Instant::now();
                let mut waits = vec![
                    g.arm
                        .get_mut(&draw.class)
                        .map_or(Wait::Now, |b| b.wait(now)),
                ];
                if let Some(c) = draw.compute {
                    waits.push(g.compute.get_mut(&c).map_or(Wait::Now, |b| b.wait(now)));
                    if let Some(r) = &draw.resource {
                        let d = g.vms.wait(r, c, now);
                        waits.push(if d.is_zero() { Wait::Now } else { Wait::For(d) });
                    }
                }
                let mut longest: Option<Duration> = None;
                let mut for_answer = false;
                for w in waits {
                    match w {
                        Wait::Now => {}
                        Wait::For(d) => longest = Some(longest.map_or(d, |l| l.max(d))),
                        Wait::Answer => for_answer = true,
                    }
                }
                if longest.is_none() && !for_answer {
                    let waited = now - start;
                    let mut ticket = Ticket {
                        waited,
                        sent: now,
                        arm: Default::default(),
                        compute: Default::default(),
                    };
                    if let Some(b) = g.arm.get_mut(&draw.class) {
                        ticket.arm = b.take();
                        b.waited += waited;
                    }
                    if let Some(c) = draw.compute {
                        if let Some(b) = g.compute.get_mut(&c) {
                            ticket.compute = b.take();
                        }
                        if let Some(r) = &draw.resource {
                            g.vms.take(r, c, now);
                        }
                    }
                    return ticket;
                }
                longest
            };
            match sleep {
                // Never spin: a bucket a hair short of a token waits a millisecond.
                Some(d) => {
                    tokio::select! {
                        () = tokio::time::sleep(d.max(Duration::from_millis(1))) => {}
                        () = &mut answered => {}
                    }
                }
                None => answered.await,
            }
        }
    }

    /// The request is over: `answer` is its status and headers if it got an answer (`None`
    /// for a request that got none). Call once per ticket.
    pub fn complete(&self, draw: &Draw, ticket: &Ticket, answer: Option<(u16, &http::HeaderMap)>) {
        if !self.enabled {
            return;
        }
        {
            let mut g = self.lock();
            let now = Instant::now();
            let status = answer.map(|(s, _)| s);
            let arm_remaining = answer.and_then(|(_, h)| {
                header_u64(
                    h,
                    &format!(
                        "x-ms-ratelimit-remaining-subscription-{}",
                        draw.class.as_str()
                    ),
                )
            });
            if let Some(b) = g.arm.get_mut(&draw.class) {
                b.finish(
                    ticket.sent,
                    ticket.arm,
                    status.map(|s| (s, arm_remaining)),
                    now,
                );
            }
            if let Some(c) = draw.compute {
                let (sub, vm) = answer.map_or((None, None), |(_, h)| compute_remaining(h, c));
                if let Some(b) = g.compute.get_mut(&c) {
                    b.finish(ticket.sent, ticket.compute, status.map(|s| (s, sub)), now);
                }
                if let Some(r) = &draw.resource {
                    g.vms.finish(r, c, vm, now);
                }
            }
        }
        self.answered.notify_waiters();
    }

    /// A 429 arrived: hold what it was about until `retry_after` has passed. `scope` is the
    /// throttled policy if the answer named one (Compute's inner `TooManyRequests` target).
    /// Call after [`Governor::complete`] for the same ticket.
    pub fn throttled(
        &self,
        draw: &Draw,
        ticket: &Ticket,
        retry_after: Duration,
        scope: Option<&str>,
    ) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        let now = Instant::now();
        let until = now + retry_after;
        match (draw.compute, scope) {
            (Some(c), Some(s)) if s.to_ascii_lowercase().contains("resource") => {
                if let Some(r) = &draw.resource {
                    g.vms.hold(r, c, until, now);
                }
                if let Some(b) = g.compute.get_mut(&c) {
                    b.throttled += 1;
                }
            }
            (Some(c), Some(_)) => {
                if let Some(b) = g.compute.get_mut(&c) {
                    b.hold(ticket.compute, until, now);
                }
            }
            _ => {
                if let Some(b) = g.arm.get_mut(&draw.class) {
                    b.hold(ticket.arm, until, now);
                }
            }
        }
    }

    /// Room in Compute's per-VM bucket of `group` for the VM `vm_id` (its resource id, any
    /// case): writes that may go to it now without waiting. A VM not written to lately (and
    /// every VM, with the governor disabled) has a full bucket; a VM held after a per-VM 429
    /// has none. Cheap: one map look-up.
    pub fn vm_room(&self, vm_id: &str, group: ComputeGroup) -> f64 {
        let now = Instant::now();
        self.lock()
            .vms
            .room(&vm_id.to_ascii_lowercase(), group, now)
    }

    pub fn snapshot(&self) -> GovernorSnapshot {
        let mut g = self.lock();
        let now = Instant::now();
        let mut classes = Vec::new();
        let mut push = |name: String, b: &mut Bucket| {
            let (learned_capacity, learned_refill_per_s) = b.learned(now);
            classes.push(BucketSnapshot {
                name,
                tokens: (b.tokens(now) * 100.0).round() / 100.0,
                capacity: b.capacity(),
                refill_per_s: b.rate(now).0,
                learned_capacity,
                learned_refill_per_s,
                fresh: b.fresh(now),
                in_flight: b.in_flight,
                observed_remaining: b.observed_remaining,
                held_for_s: b.held_for(now).map(|d| d.as_secs_f64()),
                throttled_total: b.throttled,
                waited_total_s: b.waited.as_secs_f64(),
            });
        };
        for c in [ArmClass::Reads, ArmClass::Writes, ArmClass::Deletes] {
            if let Some(b) = g.arm.get_mut(&c) {
                push(c.as_str().to_owned(), b);
            }
        }
        for c in [
            ComputeGroup::PutVm,
            ComputeGroup::UpdateVm,
            ComputeGroup::DeleteVm,
            ComputeGroup::HighCostGet,
        ] {
            if let Some(b) = g.compute.get_mut(&c) {
                let name = serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                push(format!("compute_{name}"), b);
            }
        }
        let (vm_buckets, vm_buckets_empty) = g.vms.census(now);
        GovernorSnapshot {
            enabled: self.enabled,
            classes,
            vm_buckets,
            vm_buckets_empty,
        }
    }
}

/// The subscription-wide and the per-VM counts of `group` in
/// `x-ms-ratelimit-remaining-resource` (`Microsoft.Compute/PutVM.Subscription;1499,
/// Microsoft.Compute/PutVM.Resource;11`). Where several policies of the group are listed
/// (older names: `PutVM3Min`, `PutVM30Min`), the smallest count binds.
fn compute_remaining(h: &http::HeaderMap, group: ComputeGroup) -> (Option<u64>, Option<u64>) {
    let Some(v) = h
        .get("x-ms-ratelimit-remaining-resource")
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let (mut sub, mut vm) = (None::<u64>, None::<u64>);
    for part in v.split(',') {
        let Some((policy, count)) = part.trim().split_once(';') else {
            continue;
        };
        let Ok(count) = count.trim().parse::<u64>() else {
            continue;
        };
        if !group.matches_policy(policy) {
            continue;
        }
        let slot = if policy.to_ascii_lowercase().contains("resource") {
            &mut vm
        } else {
            &mut sub
        };
        *slot = Some(slot.map_or(count, |c| c.min(count)));
    }
    (sub, vm)
}

fn header_u64(h: &http::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests;
