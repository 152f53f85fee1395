//! The reconciler: each activation reads desired state from the store, observes Azure,
//! plans every pool with the pure planner, and hands the actions to the executor.
//!
//! Shape (after omicron's background tasks): activations take no input — an API call or a
//! schedule only *wakes* the reconciler — and each one records a typed status. One activation
//! runs at a time, so one pool is never planned twice concurrently. Writes run in the
//! background with bounded concurrency; an activation never waits for a VM to boot.
//!
//! Guarantees:
//! - Never scale up from an incomplete view: if listing Azure fails, nothing is planned.
//! - Every ARM write is preceded by an intent in the store and followed by its outcome;
//!   after a crash, open intents are resolved before the first activation.
//! - A node with an open intent is in flight: the planner leaves it alone.

pub mod backoff;
mod batch;
mod config;
mod deletion;
use deletion::{force_requests, remove_deleted_pool, tagged_remains};
pub mod bootstrap;
pub mod error;
mod execute;
mod gc;
mod inventory;
mod observe;
mod outage;
mod recovery;
pub mod schedules;
pub mod vmspec;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure::ArmClient;
use rb_core::task::{PoolError, Task};
use rb_core::{Condition, PoolMode, UnixSeconds};
use store::Store;
use tokio::sync::{Notify, Semaphore, watch};

pub use batch::pool_model;
pub use bootstrap::{BootstrapConfig, DeclaredSecrets};
pub use config::{ControllerConfig, ENDED_REQUESTS_KEPT_SECONDS, EnrollmentConfig};
use error::ResultExt;
pub use error::{Error, chain};
pub use observe::{Observation, ObservedVm, node_state};
pub use rb_core::task::{ActivationStatus, PoolActivation};
pub use schedules::{Scheduler, TickReport};
pub use vmspec::Placement;

/// Shared between the driver and the executor's tasks.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub arm: ArmClient,
    pub cfg: ControllerConfig,
    pub wake: Arc<Notify>,
    /// An operation of ours ended: worth an activation soon, but not at once (see `run`).
    pub settled: Notify,
    pub permits: Arc<Semaphore>,
    /// Nodes whose write is being executed by this process (intents cover restarts).
    pub executing: Mutex<HashSet<String>>,
    pub gc_first_seen: Mutex<HashMap<String, Instant>>,
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
                permits,
                executing: Mutex::new(HashSet::new()),
                gc_first_seen: Mutex::new(HashMap::new()),
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
        loop {
            let started = tokio::time::Instant::now();
            let status = self.activate().await;
            if status.errors.is_empty() || *self.ready.borrow() {
                self.ready.send_replace(true);
            }
            let interval = self.shared.cfg.reconcile_interval;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                // A change of desired state: at once (reaction time is what users see).
                _ = self.shared.wake.notified() => {}
                // Operations ending: while hundreds end during a scale-up, activating on each
                // would spend ARM's read budget (25/s) on listing VMs that the operations'
                // polling needs. Wait out a gap that grows with what the last observation
                // cost, unless desired state changes meanwhile.
                _ = self.shared.settled.notified() => {
                    let gap = settle_gap(status.list_requests, interval);
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
        let listed = tokio::time::timeout_at(
            deadline,
            observe::observe(&sh.arm, &sh.cfg.resource_group, &owner),
        )
        .await;
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
        let now = now();
        let mut in_flight = execute::in_flight(sh).await?;
        in_flight.extend(in_flight_before);
        self.sync_inventory(&observation, &in_flight, now).await?;
        let known: HashSet<String> = pools.iter().map(|p| p.spec.name.clone()).collect();
        if tokio::time::timeout_at(deadline, batch::observe_accounts(sh, &pools))
            .await
            .is_err()
        {
            status.cut = true;
        }
        let forced = force_requests(sh).await;
        for record in &pools {
            let is_batch = record.spec.mode == PoolMode::Batch;
            let observed = if is_batch {
                // Past the deadline this gives up at once: the pool is reported unobserved
                // and planned next time (Batch reads that got no answer in time: an ARM
                // transport failure, `ActivationDeadline`).
                tokio::time::timeout_at(deadline, batch::observe(sh, record, &owner, now))
                    .await
                    .unwrap_or_else(|_| {
                        status.cut = true;
                        Err(Error::from(azure::ArmError::new(
                            azure::ErrorKind::Transport,
                            "ActivationDeadline",
                            format!(
                                "the activation reached its deadline ({} s, activation_timeout_seconds) before the Batch pool was observed",
                                sh.cfg.activation_timeout.as_secs()
                            ),
                        )))
                    })
            } else {
                Ok(false)
            };
            let rotate_enroll_token = *observed.as_ref().unwrap_or(&false);
            if let Err(e) = observed {
                // Never plan a Batch pool from part of the picture.
                tracing::warn!(pool = %record.spec.name, code = %e.code(), error = %chain(&e), "cannot observe the Batch pool");
                let _ = sh
                    .store
                    .put_task_status(
                        &Task::pool_error(&record.spec.name),
                        &PoolError {
                            code: e.code().to_owned(),
                            message: format!(
                                "cannot observe the Batch pool, nothing planned: {}",
                                chain(&e)
                            ),
                            at: now,
                        },
                    )
                    .await;
                let _ = sh
                    .store
                    .put_task_status(
                        &Task::pool(&record.spec.name),
                        &PoolActivation {
                            conditions: typed_conditions(
                                sh,
                                &record.spec.name,
                                &[if e.code() == batch::ACCOUNT_NOT_FOUND {
                                    // Named for what to fix, not for what failed.
                                    format!("{}: {}", e.code(), e.message())
                                } else {
                                    format!("ObserveFailed: {}: {}", e.code(), e.message())
                                }],
                                now,
                            ),
                            observed_generation: record.generation,
                            ..Default::default()
                        },
                    )
                    .await;
                status.errors.push(format!(
                    "observe Batch pool {}: {}",
                    record.spec.name,
                    chain(&e)
                ));
                continue;
            }
            // VM creates are held by the planner (probes get fresh names); the other kinds of
            // write are taken out of the plan.
            let (create_hold, holds) = backoff::holds(sh, record, now).await;
            let snapshot = sh.store.pool_snapshot(record, &in_flight, now).await?;
            let mut p = snapshot.plan(&record.spec, create_hold.as_ref(), now);
            rb_core::apply_holds(&mut p, &holds, now);
            let desired = p.desired;
            let force = forced
                .get(&record.spec.name)
                .is_some_and(|created_at| record.deleting && *created_at == record.created_at);
            let mut remains = Vec::new();
            if force {
                remains = tagged_remains(sh, record, &observation).await;
                if remains.is_empty() {
                    remove_deleted_pool(
                        sh,
                        &record.spec.name,
                        "tagged resources in Azure (forced)",
                    )
                    .await?;
                    continue;
                }
            }
            let mut conditions = p.conditions.clone();
            if !remains.is_empty() {
                conditions.push(format!(
                    "ForceDeleteBlocked: still in Azure, tagged renderburst-pool={}: {}",
                    record.spec.name,
                    remains.join(", ")
                ));
            }
            let pool_status = PoolActivation {
                desired,
                active: p.active,
                actions: p
                    .actions
                    .iter()
                    .map(|a| format!("{:?} {}: {}", a.kind, a.node, a.reason))
                    .collect(),
                conditions: typed_conditions(sh, &record.spec.name, &conditions, now),
                observed_generation: record.generation,
            };
            let _ = sh
                .store
                .put_task_status(&Task::pool(&record.spec.name), &pool_status)
                .await;
            status.actions += p.actions.len();
            status.pools.insert(record.spec.name.clone(), pool_status);
            let no_nodes = sh.store.list_vms(Some(&record.spec.name)).await?.is_empty();
            if is_batch {
                if record.deleting && p.actions.is_empty() && self.batch_released(record).await {
                    remove_deleted_pool(sh, &record.spec.name, "Batch resources").await?;
                    continue;
                }
                batch::dispatch(sh, record, p, &owner, rotate_enroll_token)
                    .await
                    .context("execute")?;
                continue;
            }
            if record.deleting && no_nodes && p.actions.is_empty() {
                let still_in_azure = observation.vms.values().any(|o| o.pool == record.spec.name);
                if !still_in_azure {
                    remove_deleted_pool(sh, &record.spec.name, "resources").await?;
                    continue;
                }
            }
            let next_index = snapshot.next_index().unwrap_or(record.next_index);
            execute::dispatch(sh, record, p, next_index)
                .await
                .context("execute")?;
        }
        // Garbage can wait for the next activation; the deadline cannot.
        let garbage = async {
            gc::collect(sh, &observation, &known, &owner).await;
            batch::collect_garbage(sh, &pools, &owner).await;
        };
        if tokio::time::timeout_at(deadline, garbage).await.is_err() {
            status.cut = true;
            status.errors.push(format!(
                "garbage collection cut at the activation deadline ({} s, activation_timeout_seconds)",
                sh.cfg.activation_timeout.as_secs()
            ));
        }
        let _ = sh.store.trim_events(sh.cfg.events_retained).await;
        // Ended node requests are history only `GET /v1/requests?all=true` shows; live ones
        // are never pruned.
        let _ = sh
            .store
            .prune_requests(now - ENDED_REQUESTS_KEPT_SECONDS)
            .await;
        Ok(())
    }

    /// A Batch pool being deleted is done once nothing of it is left for us: the Batch pool
    /// is gone (or was never ours, or is an adopted one at zero) and no write is in flight.
    async fn batch_released(&self, record: &store::PoolRecord) -> bool {
        let sh = &self.shared;
        let name = &record.spec.name;
        let key = rb_core::batch::pool_intent_node(name).to_ascii_lowercase();
        let in_flight = execute::in_flight(sh)
            .await
            .map(|f| f.contains(&key))
            .unwrap_or(true);
        let Ok(Some(state)) = sh.store.get_batch_state(name).await else {
            return false;
        };
        let nodes = sh
            .store
            .list_vms(Some(name))
            .await
            .map(|v| v.len())
            .unwrap_or(1);
        let adopted = record
            .spec
            .batch
            .as_ref()
            .is_some_and(|b| b.existing_pool.is_some());
        state.observed_at.is_some()
            && !in_flight
            && match &state.observed {
                None => true,
                Some(v) if !v.owned => true,
                Some(v) => adopted && nodes == 0 && v.targets.total() == 0,
            }
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
