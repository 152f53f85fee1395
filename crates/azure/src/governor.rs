//! The rate governor: one per subscription, shared by every caller.
//!
//! ARM refuses requests with 429 once a token bucket is empty (reads, writes and deletes per
//! subscription; Compute's own buckets per operation group and per VM). Bouncing off those
//! limits costs a round trip and a `Retry-After` wait each time, and after a controller
//! restart hundreds of callers bounce at once. So the governor keeps a local model of each
//! bucket, paces requests *before* they are refused, corrects its model from the
//! `x-ms-ratelimit-remaining-*` headers on every answer, and when a 429 does come, holds
//! that whole class of request — for every caller — until its `Retry-After` has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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

/// Bucket sizes and refill rates the governor assumes. Defaults are Azure's published ones;
/// a subscription with other limits sets its own.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernorLimits {
    pub reads_bucket: f64,
    pub reads_per_s: f64,
    pub writes_bucket: f64,
    pub writes_per_s: f64,
    pub deletes_bucket: f64,
    pub deletes_per_s: f64,
    /// Multiplies Compute's per-subscription buckets (1,500 burst, 500/min for VM writes;
    /// 900 burst, 300/min for VM lists).
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

#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    refill_per_s: f64,
    tokens: f64,
    last: Instant,
    /// Requests sent and not yet answered: the server's `remaining` header does not count
    /// them yet.
    in_flight: u64,
    held_until: Option<Instant>,
    observed_remaining: Option<u64>,
    throttled: u64,
    waited: Duration,
}

impl Bucket {
    fn new(capacity: f64, refill_per_s: f64, now: Instant) -> Self {
        Self {
            capacity,
            refill_per_s,
            tokens: capacity,
            last: now,
            in_flight: 0,
            held_until: None,
            observed_remaining: None,
            throttled: 0,
            waited: Duration::ZERO,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.refill_per_s).min(self.capacity);
        self.last = now;
    }

    /// How long until this bucket lets one request through.
    fn wait(&mut self, now: Instant) -> Duration {
        if let Some(h) = self.held_until {
            if h > now {
                return h - now;
            }
            self.held_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.refill_per_s.max(1e-6))
        }
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
        self.in_flight += 1;
    }

    /// The server's count is the truth as of its answer; requests still in flight will
    /// take from it too.
    fn observe(&mut self, remaining: u64, now: Instant) {
        self.refill(now);
        self.observed_remaining = Some(remaining);
        let others = self.in_flight.saturating_sub(1) as f64;
        let server_view = (remaining as f64 - others).max(0.0);
        if server_view < self.tokens {
            self.tokens = server_view;
        }
    }

    fn hold(&mut self, until: Instant) {
        self.tokens = self.tokens.min(0.0);
        self.held_until = Some(self.held_until.map_or(until, |h| h.max(until)));
        self.throttled += 1;
    }
}

/// What a request draws on.
#[derive(Debug, Clone)]
pub struct Draw {
    pub class: ArmClass,
    pub compute: Option<ComputeGroup>,
    /// The VM a Compute write targets (lower-cased id), for per-VM holds.
    pub resource: Option<String>,
}

struct Inner {
    arm: HashMap<ArmClass, Bucket>,
    compute: HashMap<ComputeGroup, Bucket>,
    /// Per-resource holds after a per-VM 429.
    resource_holds: HashMap<String, Instant>,
}

/// One per subscription; cheap to share behind an `Arc`.
pub struct Governor {
    enabled: bool,
    inner: Mutex<Inner>,
}

/// The governor's state, for `/v1/status` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct GovernorSnapshot {
    pub enabled: bool,
    pub classes: Vec<BucketSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BucketSnapshot {
    /// `reads`, `writes`, `deletes`, or a Compute group (`put_vm`...).
    pub name: String,
    pub tokens: f64,
    pub capacity: f64,
    pub refill_per_s: f64,
    pub in_flight: u64,
    pub observed_remaining: Option<u64>,
    /// Seconds until requests of this class may go again after a 429, if held.
    pub held_for_s: Option<f64>,
    pub throttled_total: u64,
    pub waited_total_s: f64,
}

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
        let compute = HashMap::from([
            (
                ComputeGroup::PutVm,
                Bucket::new(1500.0 * f, 500.0 * f / 60.0, now),
            ),
            (
                ComputeGroup::UpdateVm,
                Bucket::new(1500.0 * f, 500.0 * f / 60.0, now),
            ),
            (
                ComputeGroup::DeleteVm,
                Bucket::new(1500.0 * f, 500.0 * f / 60.0, now),
            ),
            (
                ComputeGroup::HighCostGet,
                Bucket::new(900.0 * f, 300.0 * f / 60.0, now),
            ),
        ]);
        Self {
            enabled,
            inner: Mutex::new(Inner {
                arm,
                compute,
                resource_holds: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the request may be sent, then takes its tokens. Returns how long it
    /// waited.
    pub async fn acquire(&self, draw: &Draw) -> Duration {
        if !self.enabled {
            return Duration::ZERO;
        }
        let start = Instant::now();
        loop {
            let wait = {
                let mut g = self.lock();
                let now = Instant::now();
                let mut wait = g
                    .arm
                    .get_mut(&draw.class)
                    .map_or(Duration::ZERO, |b| b.wait(now));
                if let Some(c) = draw.compute {
                    wait = wait.max(
                        g.compute
                            .get_mut(&c)
                            .map_or(Duration::ZERO, |b| b.wait(now)),
                    );
                }
                if let Some(r) = &draw.resource
                    && let Some(until) = g.resource_holds.get(r).copied()
                {
                    if until > now {
                        wait = wait.max(until - now);
                    } else {
                        g.resource_holds.remove(r);
                    }
                }
                if wait.is_zero() {
                    let waited = now - start;
                    if let Some(b) = g.arm.get_mut(&draw.class) {
                        b.take();
                        b.waited += waited;
                    }
                    if let Some(b) = draw.compute.and_then(|c| g.compute.get_mut(&c)) {
                        b.take();
                    }
                    return waited;
                }
                wait
            };
            // Sleep in slices so a hold set by another caller is noticed soon enough, but
            // never spin.
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Reads the rate-limit headers of an answer. Call once per acquired request, answered
    /// or not (`headers` None for a request that got no answer).
    pub fn complete(&self, draw: &Draw, headers: Option<&http::HeaderMap>) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        let now = Instant::now();
        if let Some(h) = headers {
            let name = format!(
                "x-ms-ratelimit-remaining-subscription-{}",
                draw.class.as_str()
            );
            if let Some(n) = header_u64(h, &name)
                && let Some(b) = g.arm.get_mut(&draw.class)
            {
                b.observe(n, now);
            }
            if let Some(v) = h
                .get("x-ms-ratelimit-remaining-resource")
                .and_then(|v| v.to_str().ok())
            {
                for part in v.split(',') {
                    let Some((policy, count)) = part.trim().split_once(';') else {
                        continue;
                    };
                    let Ok(count) = count.trim().parse::<u64>() else {
                        continue;
                    };
                    // Per-resource policies are about one VM; they do not describe the
                    // subscription's bucket.
                    if policy.to_ascii_lowercase().contains("resource") {
                        continue;
                    }
                    for (group, b) in g.compute.iter_mut() {
                        if group.matches_policy(policy) && Some(*group) == draw.compute {
                            b.observe(count, now);
                        }
                    }
                }
            }
        }
        if let Some(b) = g.arm.get_mut(&draw.class) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
        if let Some(b) = draw.compute.and_then(|c| g.compute.get_mut(&c)) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }

    /// A 429 arrived: hold what it was about until `retry_after` has passed. `scope` is the
    /// throttled policy if the answer named one (Compute's inner `TooManyRequests` target).
    pub fn throttled(&self, draw: &Draw, retry_after: Duration, scope: Option<&str>) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        let until = Instant::now() + retry_after;
        match (draw.compute, scope) {
            (Some(_), Some(s)) if s.to_ascii_lowercase().contains("resource") => {
                if let Some(r) = &draw.resource {
                    let e = g.resource_holds.entry(r.clone()).or_insert(until);
                    *e = (*e).max(until);
                }
                if let Some(b) = draw.compute.and_then(|c| g.compute.get_mut(&c)) {
                    b.throttled += 1;
                }
            }
            (Some(c), Some(_)) => {
                if let Some(b) = g.compute.get_mut(&c) {
                    b.hold(until);
                }
            }
            _ => {
                if let Some(b) = g.arm.get_mut(&draw.class) {
                    b.hold(until);
                }
            }
        }
    }

    pub fn snapshot(&self) -> GovernorSnapshot {
        let mut g = self.lock();
        let now = Instant::now();
        let mut classes = Vec::new();
        let mut push = |name: String, b: &mut Bucket| {
            b.refill(now);
            classes.push(BucketSnapshot {
                name,
                tokens: (b.tokens * 100.0).round() / 100.0,
                capacity: b.capacity,
                refill_per_s: b.refill_per_s,
                in_flight: b.in_flight,
                observed_remaining: b.observed_remaining,
                held_for_s: b
                    .held_until
                    .filter(|h| *h > now)
                    .map(|h| (h - now).as_secs_f64()),
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
        GovernorSnapshot {
            enabled: self.enabled,
            classes,
        }
    }
}

fn header_u64(h: &http::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_compute_requests() {
        let vm =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
        assert_eq!(
            ComputeGroup::classify(&http::Method::PUT, vm),
            Some(ComputeGroup::PutVm)
        );
        assert_eq!(
            ComputeGroup::classify(&http::Method::DELETE, vm),
            Some(ComputeGroup::DeleteVm)
        );
        assert_eq!(
            ComputeGroup::classify(&http::Method::POST, &format!("{vm}/deallocate")),
            Some(ComputeGroup::DeleteVm)
        );
        assert_eq!(
            ComputeGroup::classify(&http::Method::POST, &format!("{vm}/start")),
            Some(ComputeGroup::UpdateVm)
        );
        assert_eq!(
            ComputeGroup::classify(
                &http::Method::GET,
                "/subscriptions/s/providers/Microsoft.Compute/virtualMachines"
            ),
            Some(ComputeGroup::HighCostGet)
        );
        assert_eq!(ComputeGroup::classify(&http::Method::GET, vm), None);
        assert_eq!(
            ComputeGroup::classify(&http::Method::PUT, "/subscriptions/s/resourceGroups/rg"),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_refill_rate_and_honours_holds() {
        let limits = GovernorLimits {
            reads_bucket: 2.0,
            reads_per_s: 10.0,
            ..Default::default()
        };
        let g = Governor::new(&limits, true);
        let draw = Draw {
            class: ArmClass::Reads,
            compute: None,
            resource: None,
        };
        let t0 = tokio::time::Instant::now();
        for _ in 0..4 {
            g.acquire(&draw).await;
            g.complete(&draw, None);
        }
        // Two from the burst, two more at 10/s.
        let elapsed = t0.elapsed();
        assert!(
            elapsed >= Duration::from_millis(190) && elapsed < Duration::from_millis(400),
            "{elapsed:?}"
        );
        g.throttled(&draw, Duration::from_secs(3), None);
        let t1 = tokio::time::Instant::now();
        g.acquire(&draw).await;
        assert!(
            t1.elapsed() >= Duration::from_secs(3),
            "a 429 holds the class for its Retry-After"
        );
        let snap = g.snapshot();
        assert_eq!(snap.classes[0].name, "reads");
        assert_eq!(snap.classes[0].throttled_total, 1);
    }

    #[test]
    fn headers_correct_the_model() {
        let g = Governor::new(&GovernorLimits::default(), true);
        let draw = Draw {
            class: ArmClass::Writes,
            compute: Some(ComputeGroup::PutVm),
            resource: None,
        };
        {
            let mut inner = g.lock();
            inner.arm.get_mut(&ArmClass::Writes).unwrap().take();
            inner.compute.get_mut(&ComputeGroup::PutVm).unwrap().take();
        }
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-writes",
            "7".parse().unwrap(),
        );
        h.insert(
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Compute/PutVM.Subscription;3,Microsoft.Compute/PutVM.Resource;11"
                .parse()
                .unwrap(),
        );
        g.complete(&draw, Some(&h));
        let snap = g.snapshot();
        let writes = snap.classes.iter().find(|c| c.name == "writes").unwrap();
        assert!(writes.tokens <= 7.01, "{writes:?}");
        assert_eq!(writes.in_flight, 0);
        let put = snap
            .classes
            .iter()
            .find(|c| c.name == "compute_put_vm")
            .unwrap();
        assert!(put.tokens <= 3.01, "{put:?}");
    }
}
