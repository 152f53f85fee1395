//! The reconciler: each activation reads desired state from the store, observes Azure,
//! plans every pool with the pure planner, and hands the actions to the executor.
//!
//! Shape (after omicron's background tasks): activations take no input — an API call or a
//! schedule only *wakes* the reconciler — and each one records a typed status. One activation
//! runs at a time, so one pool is never planned twice concurrently. Writes run in the
//! background with bounded concurrency; an activation never waits for a VM to boot. The
//! garbage collector is a background task of its own: each activation publishes its complete
//! listing, the collector reads it under its own deadline and records its own status (`gc`).
//!
//! Guarantees:
//! - Never scale up from an incomplete view: if listing Azure fails, nothing is planned.
//! - Every ARM write is preceded by an intent in the store and followed by its outcome;
//!   after a crash, open intents are resolved before the first activation.
//! - A node with an open intent is in flight: the planner leaves it alone.

mod backend;
pub mod backoff;
mod batch;
mod bulk;
mod config;
mod deletion;
use backend::{Activation, PoolBackend, reconcile_pool};
use batch::BatchPools;
use deletion::force_requests;
use vm::VmPools;
pub mod bootstrap;
pub mod error;
mod execute;
mod failure;
mod follow;
mod gc;
mod inventory;
mod observe;
mod outage;
mod recovery;
pub mod schedules;
mod vm;
pub mod vmspec;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure::ArmClient;
use rb_core::task::Task;
use rb_core::{Condition, PoolMode, UnixSeconds};
use store::Store;
use tokio::sync::{Notify, Semaphore, watch};

pub use batch::pool_model;
pub use bootstrap::{BootstrapConfig, DeclaredSecrets};
pub use bulk::{AUTO_MIN_WRITES, BulkMode};
pub use config::{ControllerConfig, ENDED_REQUESTS_KEPT_SECONDS, EnrollmentConfig};
pub use error::{Error, chain};
pub use observe::{Observation, ObservedVm, node_state};
pub use rb_core::task::{ActivationStatus, GcStatus, PoolActivation};
pub use schedules::{Scheduler, TickReport};
pub use vmspec::Placement;

/// Shared between the driver and the executor's tasks.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub arm: ArmClient,
    pub cfg: ControllerConfig,
    pub wake: Arc<Notify>,
    /// An operation of ours ended, or one waits for a listing to show its end: worth an
    /// activation soon, but not at once (see `run`).
    pub settled: Notify,
    /// Start-up recovery's listing, when it settled every open intent: the first activation
    /// plans from it rather than listing again (at 5,000 VMs a listing is 200 pages out of
    /// Compute's VM-list bucket, 900 burst refilled at 300 a minute).
    pub prelisted: Mutex<Option<follow::Listing>>,
    /// Writes ARM accepted that wait for a listing to show their end (`follow`), by node.
    pub followed: Mutex<HashMap<String, follow::Followed>>,
    pub permits: Arc<Semaphore>,
    /// Nodes whose write is being executed by this process (intents cover restarts).
    pub executing: Mutex<HashSet<String>>,
    /// What the garbage collector has seen and tried (see [`gc::Garbage`]).
    pub gc: Mutex<gc::grace::GraceTracker>,
    /// When the garbage collector last listed NICs and disks (see `gc::sweep_due`).
    pub gc_last_sweep: Mutex<Option<Instant>>,
    /// When NICs were last listed (the sweep, or for addresses: see `gc`).
    pub nics_listed_at: Mutex<Option<Instant>>,
    /// Flips to true when the reconciler stops: the executor's tasks stop waiting for their
    /// operations and leave their intents open, as a process exit would, for recovery.
    pub stopping: watch::Sender<bool>,
    /// Per pool and kind of write: its failure streak (see [`backoff`]), written through to
    /// the store on every transition.
    pub backoff: Mutex<HashMap<backoff::Key, backoff::PoolBackoff>>,
    /// Orders the streaks' transitions with their writes to the store.
    pub backoff_writes: tokio::sync::Mutex<()>,
    /// The streaks were read from the store (once per process).
    pub backoff_loaded: std::sync::atomic::AtomicBool,
    /// Per (pool, condition type): since when the condition has been shown.
    pub condition_since: Mutex<HashMap<(String, String), UnixSeconds>>,
    /// When the Batch accounts were last listed (see `batch::observe_accounts`).
    pub accounts_listed: Mutex<Option<Instant>>,
}

impl Shared {
    /// Claims `node` for a write of this process: false when one is already being executed
    /// (the node is then left alone). Keys are lower-cased, as ARM names are.
    pub(crate) fn claim(&self, node: &str) -> bool {
        self.executing
            .lock()
            .is_ok_and(|mut ex| ex.insert(node.to_ascii_lowercase()))
    }

    /// Ends a claim made by [`Shared::claim`].
    pub(crate) fn release(&self, node: &str) {
        if let Ok(mut ex) = self.executing.lock() {
            ex.remove(&node.to_ascii_lowercase());
        }
    }
}

/// The one place producers' `"Type: message"` conditions become typed [`Condition`]s: each
/// type keeps the time it first appeared on the pool while it persists; types no longer
/// present are forgotten.
pub(crate) fn typed_conditions(
    sh: &Shared,
    pool: &str,
    texts: &[String],
    now: UnixSeconds,
) -> Vec<Condition> {
    let mut since = sh.condition_since.lock().unwrap_or_else(|p| p.into_inner());
    conditions_since(&mut since, pool, texts, now)
}

fn conditions_since(
    since: &mut HashMap<(String, String), UnixSeconds>,
    pool: &str,
    texts: &[String],
    now: UnixSeconds,
) -> Vec<Condition> {
    let out: Vec<Condition> = texts
        .iter()
        .map(|t| {
            let kind = Condition::parse(t, None).kind;
            let at = *since.entry((pool.to_string(), kind)).or_insert(now);
            Condition::parse(t, Some(at))
        })
        .collect();
    since.retain(|(p, kind), _| p != pool || out.iter().any(|c| &c.kind == kind));
    out
}

/// Least time from one activation's start to the next when only operations ended: 120 ms
/// per list request the last observation made (2.4 s for 20 pages, a third of ARM's read
/// refill), at least 250 ms, at most the reconcile interval.
fn settle_gap(list_requests: u32, interval: Duration) -> Duration {
    (Duration::from_millis(120) * list_requests).clamp(
        Duration::from_millis(250),
        interval.max(Duration::from_millis(250)),
    )
}

/// How long the next activation that is not a change of desired state waits, so its listing
/// leaves room in Compute's VM-list bucket (`HighCostGetVM`: 900 burst, refilled at 300 a
/// minute, every page counted; the governor's learnt figures): room for the listing and one
/// more (a change of desired state, or a restart, lists at once). A farm of 5,000 VMs lists
/// 200 pages: every 15 s that would keep the bucket empty and a restart would wait 40 s for
/// its first listing. At most five minutes.
fn list_budget_wait(tokens: f64, refill_per_s: f64, pages: u32) -> Duration {
    let deficit = 2.0 * f64::from(pages) - tokens;
    if deficit <= 0.0 || refill_per_s <= 0.0 || !deficit.is_finite() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((deficit / refill_per_s).min(300.0))
}

/// [`list_budget_wait`] from the ARM client's governor now.
fn list_budget(arm: &ArmClient, pages: u32) -> Duration {
    let g = arm.governor();
    g.classes
        .iter()
        .find(|b| b.name == "compute_high_cost_get")
        .map_or(Duration::ZERO, |b| {
            list_budget_wait(b.tokens, b.refill_per_s, pages)
        })
}

/// Upper bounds (seconds) of the activation-duration histogram's buckets.
pub const ACTIVATION_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Durations of every activation since start, for metrics.
#[derive(Debug, Clone, Default)]
pub struct ActivationDurations {
    /// Activations that took at most `ACTIVATION_BUCKETS[i]` seconds, cumulative.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

pub struct Controller {
    shared: Arc<Shared>,
    status: Mutex<ActivationStatus>,
    durations: Mutex<ActivationDurations>,
    ready: watch::Sender<bool>,
    activations: Mutex<u64>,
    /// When the ARM outage being reported started (unix seconds), for its events.
    outage_reported: Mutex<Option<UnixSeconds>>,
    /// Each activation's complete listing, for the garbage collector's task.
    gc_input: watch::Sender<Option<Arc<gc::Round>>>,
    /// The activation whose listing the garbage collector read last.
    gc_done: tokio::sync::Mutex<u64>,
}

pub fn now() -> UnixSeconds {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Controller {
    pub fn new(store: Arc<Store>, arm: ArmClient, cfg: ControllerConfig) -> Arc<Self> {
        let permits = Arc::new(Semaphore::new(cfg.max_concurrent_operations.max(1)));
        let (ready, _) = watch::channel(false);
        Arc::new(Self {
            shared: Arc::new(Shared {
                store,
                arm,
                cfg,
                wake: Arc::new(Notify::new()),
                settled: Notify::new(),
                followed: Mutex::new(HashMap::new()),
                prelisted: Mutex::new(None),
                permits,
                executing: Mutex::new(HashSet::new()),
                gc: Mutex::new(Default::default()),
                gc_last_sweep: Mutex::new(None),
                nics_listed_at: Mutex::new(None),
                stopping: watch::channel(false).0,
                backoff: Mutex::new(HashMap::new()),
                backoff_writes: tokio::sync::Mutex::new(()),
                backoff_loaded: std::sync::atomic::AtomicBool::new(false),
                condition_since: Mutex::new(HashMap::new()),
                accounts_listed: Mutex::new(None),
            }),
            status: Mutex::new(ActivationStatus::default()),
            durations: Mutex::new(ActivationDurations {
                buckets: ACTIVATION_BUCKETS.iter().map(|b| (*b, 0)).collect(),
                ..Default::default()
            }),
            ready,
            activations: Mutex::new(0),
            outage_reported: Mutex::new(None),
            gc_input: watch::channel(None).0,
            gc_done: tokio::sync::Mutex::new(0),
        })
    }

    /// Wakes the reconciler (the API and schedules call this after changing desired state).
    pub fn waker(&self) -> Arc<Notify> {
        self.shared.wake.clone()
    }

    /// True once recovery is done and one activation has completed.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn last_status(&self) -> ActivationStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every activation's duration since start, as a histogram.
    pub fn activation_durations(&self) -> ActivationDurations {
        self.durations.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn arm(&self) -> &ArmClient {
        &self.shared.arm
    }

    /// Runs until `shutdown` flips to true: recovery, then activations every interval or on
    /// wake-up.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.start_up().await;
        // The garbage collector is a task of its own: it reads each activation's listing
        // when it is published, under its own deadline, so an activation never waits on it.
        let gc = self.clone();
        let mut gc_stop = shutdown.clone();
        let mut rounds = self.gc_input.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = rounds.changed() => if changed.is_err() { break },
                    _ = gc_stop.changed() => {}
                }
                if *gc_stop.borrow() {
                    break;
                }
                gc.collect_garbage().await;
            }
        });
        loop {
            let started = tokio::time::Instant::now();
            let status = self.activate().await;
            if status.errors.is_empty() || *self.ready.borrow() {
                self.ready.send_replace(true);
            }
            let interval = self.shared.cfg.reconcile_interval;
            let budget = list_budget(&self.shared.arm, status.list_requests);
            tokio::select! {
                _ = tokio::time::sleep(interval.max(budget)) => {}
                // A change of desired state: at once (reaction time is what users see).
                _ = self.shared.wake.notified() => {}
                // Operations ending: while hundreds end during a scale-up, activating on each
                // would spend ARM's read budget (25/s) on listing VMs that the operations'
                // polling needs. Wait out a gap that grows with what the last observation
                // cost, unless desired state changes meanwhile.
                _ = self.shared.settled.notified() => {
                    let gap = settle_gap(status.list_requests, interval).max(budget);
                    tokio::select! {
                        _ = tokio::time::sleep_until(started + gap) => {}
                        _ = self.shared.wake.notified() => {}
                        _ = shutdown.changed() => break,
                    }
                }
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.shared.stopping.send_replace(true);
    }

    /// What runs once, before the first activation ([`Controller::run`] calls it; tests
    /// step it): the stored backoff holds are loaded, then every intent a previous process
    /// left open is resolved. The holds first: an operation of the previous run that
    /// recovery sees succeed ends its pool's streak as a live one would.
    pub async fn start_up(&self) {
        backoff::load(&self.shared).await;
        recovery::recover(&self.shared).await;
    }

    /// One activation over every pool.
    pub async fn activate(&self) -> ActivationStatus {
        let started = Instant::now();
        let number = {
            let mut n = self.activations.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let mut status = ActivationStatus {
            number,
            started_at: now(),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + self.shared.cfg.activation_timeout;
        if let Err(e) = self.activate_inner(&mut status, deadline).await {
            tracing::warn!(activation = number, error = %chain(&e), "activation failed");
            status.errors.push(chain(&e).to_string());
        }
        if status.cut {
            tracing::warn!(
                activation = number,
                timeout_s = self.shared.cfg.activation_timeout.as_secs_f64(),
                "activation cut at its deadline; the next one runs on schedule"
            );
        }
        outage::report(self, &mut status).await;
        let took = started.elapsed();
        status.duration_ms = took.as_millis() as u64;
        if let Ok(mut d) = self.durations.lock() {
            let seconds = took.as_secs_f64();
            for (bound, n) in &mut d.buckets {
                if seconds <= *bound {
                    *n += 1;
                }
            }
            d.sum_seconds += seconds;
            d.count += 1;
        }
        let _ = self
            .shared
            .store
            .put_task_status(&Task::reconciler(), &status)
            .await;
        if let Ok(mut s) = self.status.lock() {
            *s = status.clone();
        }
        status
    }

    /// One round of the garbage collector on the latest activation's listing, if it has
    /// not read that one yet ([`Controller::run`] runs it as its own task; tests step it).
    /// Its status is the `gc` task status.
    pub async fn collect_garbage(&self) -> Option<GcStatus> {
        let mut done = self.gc_done.lock().await;
        let round = self.gc_input.borrow().clone()?;
        if round.activation <= *done {
            return None;
        }
        *done = round.activation;
        let sh = &self.shared;
        let started = Instant::now();
        let mut status = GcStatus {
            activation: round.activation,
            started_at: now(),
            ..Default::default()
        };
        let garbage = async {
            VmPools.collect_garbage(sh, &round).await;
            BatchPools.collect_garbage(sh, &round).await;
        };
        if tokio::time::timeout(sh.cfg.activation_timeout, garbage)
            .await
            .is_err()
        {
            status.cut = true;
            let e = format!(
                "garbage collection cut at its deadline ({} s, activation_timeout_seconds)",
                sh.cfg.activation_timeout.as_secs()
            );
            tracing::warn!(activation = round.activation, "{e}");
            status.errors.push(e);
        }
        status.duration_ms = started.elapsed().as_millis() as u64;
        let _ = sh
            .store
            .put_task_status(&Task::garbage_collector(), &status)
            .await;
        Some(status)
    }

    async fn activate_inner(
        &self,
        status: &mut ActivationStatus,
        deadline: tokio::time::Instant,
    ) -> error::Result<()> {
        let sh = &self.shared;
        let owner = sh.store.owner_id().await?;
        let pools = sh.store.list_pools().await?;
        backoff::load(sh).await;
        recovery::resolve_stranded(sh).await;
        // Nodes in flight before the listing starts: an operation that ends while the pages
        // are read has a node that may be on no page (created after its page was read) and
        // no longer in flight afterwards; without this it would be taken for gone.
        let in_flight_before = execute::in_flight(sh).await?;
        let prelisted = sh.prelisted.lock().ok().and_then(|mut p| p.take());
        let listing_started = prelisted
            .as_ref()
            .map_or_else(tokio::time::Instant::now, |p| p.started);
        let listed = match prelisted {
            Some(p) => Ok(Ok(Arc::unwrap_or_clone(p.observation))),
            None => {
                tokio::time::timeout_at(
                    deadline,
                    observe::observe(&sh.arm, &sh.cfg.resource_group, &owner),
                )
                .await
            }
        };
        let observation = match listed {
            Err(_) => {
                status.cut = true;
                return Err(Error::Deadline {
                    seconds: sh.cfg.activation_timeout.as_secs(),
                    doing: "listing VMs",
                }
                .context("observe"));
            }
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                // Never plan from an incomplete view of Azure.
                let _ = execute::event(
                    sh,
                    "arm.error",
                    None,
                    None,
                    &format!("cannot list VMs, nothing planned: {e}"),
                    serde_json::json!({"code": e.code}),
                )
                .await;
                return Err(Error::from(e).context("observe"));
            }
        };
        status.observed = true;
        status.observed_vms = observation.vms.len();
        status.list_requests = observation.pages;
        let observation = Arc::new(observation);
        // The writes waiting for a listing to show their end: those it settles are recorded
        // before anything is planned from it.
        let recorded = follow::judge(
            sh,
            &follow::Listing {
                started: listing_started,
                observation: observation.clone(),
            },
        );
        let _ = tokio::time::timeout_at(deadline, async {
            for done in recorded {
                let _ = done.await;
            }
        })
        .await;
        let mut in_flight = execute::in_flight(sh).await?;
        in_flight.extend(in_flight_before);
        let pools = Arc::new(pools);
        let act = Activation {
            owner: &owner,
            observation: &observation,
            in_flight: &in_flight,
            pools: &pools,
            now: now(),
            deadline,
        };
        // Each kind of pool observes what its pools share, then each pool is reconciled by
        // its backend; the garbage collector's task then has each backend collect its
        // garbage from this listing. A new kind of pool is a new backend and one line in
        // each of these three places.
        status.cut |= VmPools.observe_all(sh, &act).await?;
        status.cut |= BatchPools.observe_all(sh, &act).await?;
        let forced = force_requests(sh).await;
        for record in pools.iter() {
            match record.spec.mode {
                PoolMode::Vm => reconcile_pool(&VmPools, sh, &act, record, &forced, status).await?,
                PoolMode::Batch => {
                    reconcile_pool(&BatchPools, sh, &act, record, &forced, status).await?
                }
            }
        }
        // What no pool wants: the garbage collector's task reads this listing.
        self.gc_input.send_replace(Some(Arc::new(gc::Round {
            activation: status.number,
            owner: owner.clone(),
            observation: observation.clone(),
            pools: pools.clone(),
        })));
        let now = act.now;
        let _ = sh.store.trim_events(sh.cfg.events_retained).await;
        // Ended node requests are history only `GET /v1/requests?all=true` shows; live ones
        // are never pruned.
        let _ = sh
            .store
            .prune_requests(now - ENDED_REQUESTS_KEPT_SECONDS)
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settle_gap_grows_with_the_observation_cost() {
        let interval = Duration::from_secs(15);
        assert_eq!(settle_gap(0, interval), Duration::from_millis(250));
        assert_eq!(settle_gap(2, interval), Duration::from_millis(250));
        assert_eq!(settle_gap(20, interval), Duration::from_millis(2400));
        assert_eq!(settle_gap(1000, interval), interval);
        // A reconcile interval shorter than the floor does not make the clamp panic.
        assert_eq!(
            settle_gap(5, Duration::from_millis(100)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn listings_leave_room_for_one_more_in_computes_list_bucket() {
        // 200 pages with 900 tokens: room for two, no wait.
        assert_eq!(list_budget_wait(900.0, 5.0, 200), Duration::ZERO);
        // 250 left: 150 short of two listings, at 5 a second.
        assert_eq!(list_budget_wait(250.0, 5.0, 200), Duration::from_secs(30));
        // Never more than five minutes; nothing learnt, no wait.
        assert_eq!(list_budget_wait(0.0, 0.1, 200), Duration::from_secs(300));
        assert_eq!(list_budget_wait(0.0, 0.0, 200), Duration::ZERO);
    }

    #[test]
    fn a_condition_keeps_its_since_while_it_persists() {
        let mut since = HashMap::new();
        let blocked = |m: &str| format!("Blocked: InvalidResourceReference: {m}");
        let first = conditions_since(&mut since, "maya", &[blocked("a")], 1000);
        assert_eq!(first[0].kind, "Blocked");
        assert_eq!(first[0].since.as_deref(), Some("1970-01-01T00:16:40Z"));
        // Still there later, with another message (the next attempt's time): same since.
        let later = conditions_since(
            &mut since,
            "maya",
            &[blocked("b"), "AtMax: 4 nodes".into()],
            1300,
        );
        assert_eq!(later[0].since, first[0].since);
        assert_eq!(later[0].message, "InvalidResourceReference: b");
        assert_eq!(later[1].since.as_deref(), Some("1970-01-01T00:21:40Z"));
        // Another pool's conditions are its own.
        let other = conditions_since(&mut since, "nuke", &[blocked("a")], 1400);
        assert_eq!(other[0].since.as_deref(), Some("1970-01-01T00:23:20Z"));
        // Gone, then back: a new since.
        assert!(conditions_since(&mut since, "maya", &[], 1500).is_empty());
        let again = conditions_since(&mut since, "maya", &[blocked("c")], 1600);
        assert_eq!(again[0].since.as_deref(), Some("1970-01-01T00:26:40Z"));
        assert!(since.contains_key(&("nuke".to_string(), "Blocked".to_string())));
    }
}
