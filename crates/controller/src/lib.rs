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
pub mod bootstrap;
pub mod error;
mod execute;
mod gc;
mod observe;
mod outage;
pub mod schedules;
pub mod vmspec;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure::ArmClient;
use rb_core::task::{PoolError, Task};
use rb_core::{Condition, NodeState, PoolMode, UnixSeconds};
use store::{Store, VmRecord};
use tokio::sync::{Notify, Semaphore, watch};

pub use batch::pool_model;
pub use bootstrap::{BootstrapConfig, DeclaredSecrets};
use error::ResultExt;
pub use error::{Error, chain};
pub use observe::{Observation, ObservedVm, node_state};
pub use rb_core::task::{ActivationStatus, PoolActivation};
pub use schedules::{Scheduler, TickReport};
pub use vmspec::Placement;

/// How long released and expired node requests are kept after they ended.
pub const ENDED_REQUESTS_KEPT_SECONDS: i64 = 24 * 3600;

/// Knobs of the reconciler.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub resource_group: String,
    pub placement: Placement,
    pub reconcile_interval: Duration,
    /// Longest an activation may spend reading Azure. An activation that reaches it stops
    /// reading (reads are safe to drop), plans only from what it completed, is recorded as
    /// cut, and the next one runs on schedule: during an outage the ARM client retries each
    /// read for up to its retry budget, and without a bound the reconciler (and every pool's
    /// status) would wait that long in silence.
    pub activation_timeout: Duration,
    /// ARM writes (with their polling) in flight at once.
    pub max_concurrent_operations: usize,
    /// Resources of ours that no pool wants are removed after this long.
    pub gc_grace: Duration,
    /// Events kept in the store.
    pub events_retained: u64,
    /// The configured Batch account (in `resource_group`), searched for Batch pools of ours
    /// that no pool wants, besides the accounts pools name.
    pub batch_account: Option<String>,
    /// The daemon's side of node bootstrap: its URL, time zone and hosts entry.
    pub bootstrap: BootstrapConfig,
    /// Batch nodes' enrollment: window and token rotation (`[bootstrap]`).
    pub enrollment: EnrollmentConfig,
    /// The secrets the operator declared (`[secrets.NAME]`), for nodes' bootstrap.
    pub secrets: Arc<bootstrap::DeclaredSecrets>,
    /// The longest hold of a pool's creates after permanent failures
    /// (`[controller] error_backoff_max_seconds`; see [`backoff`]).
    pub error_backoff_max: Duration,
}

/// Batch nodes' enrollment (`[bootstrap]` of the configuration). Anyone who can read a Batch
/// pool in Azure can read its enrollment token, so a token is only worth something for nodes
/// the daemon has listed, within `window` of their allocation, and it is replaced every
/// `rotate_every`; the one it replaced keeps working for `overlap` (nodes allocated just
/// before the rotation carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentConfig {
    pub window: Duration,
    pub rotate_every: Duration,
    pub overlap: Duration,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1800),
            rotate_every: Duration::from_secs(24 * 3600),
            overlap: Duration::from_secs(3600),
        }
    }
}

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

/// The last step of deleting a pool, once nothing of it is left in Azure: its row goes.
async fn remove_deleted_pool(sh: &Shared, pool: &str, what: &str) -> error::Result<()> {
    sh.store.remove_pool(pool).await?;
    // Its backoff rows and reusable names went with its row.
    backoff::forget(sh, pool);
    // A forced deletion asked for is done, whichever path got here.
    let _ = sh.store.delete_task_status(&Task::force_delete(pool)).await;
    let _ = execute::event(
        sh,
        "pool.deleted",
        Some(pool),
        None,
        &format!("the pool has no {what} left and is gone"),
        serde_json::json!({}),
    )
    .await;
    Ok(())
}

/// Pools whose forced deletion was asked for (`DELETE /v1/pools/{name}?force=true`), with
/// the `created_at` of the pool row it was asked for.
async fn force_requests(sh: &Shared) -> HashMap<String, UnixSeconds> {
    sh.store
        .task_statuses()
        .await
        .unwrap_or_default()
        .force_deletes()
        .map(|(pool, request)| (pool.to_owned(), request.created_at))
        .collect()
}

/// What is still in Azure tagged with this pool, from this activation's complete listing of
/// our VMs and the Batch pool's observation (a Batch pool that could not be observed never
/// gets here: nothing is forgotten from part of the picture).
async fn tagged_remains(
    sh: &Shared,
    record: &store::PoolRecord,
    observation: &Observation,
) -> Vec<String> {
    let name = &record.spec.name;
    let mut remains: Vec<String> = observation
        .vms
        .values()
        .filter(|o| o.pool == *name)
        .map(|o| format!("VM {}", o.name))
        .collect();
    remains.sort();
    if record.spec.mode == PoolMode::Batch {
        match sh.store.get_batch_state(name).await {
            Ok(Some(state)) => {
                if state.observed.as_ref().is_some_and(|v| v.owned) {
                    remains.push(format!(
                        "Batch pool {} in account {}",
                        record
                            .spec
                            .batch
                            .as_ref()
                            .and_then(|b| b.existing_pool.clone())
                            .unwrap_or_else(|| name.clone()),
                        record
                            .spec
                            .batch
                            .as_ref()
                            .map_or("?", |b| b.account.as_str())
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => remains.push(format!("unknown (store: {e})")),
        }
    }
    remains
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
        execute::recover(&self.shared).await;
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
        execute::resolve_stranded(sh).await;
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

    /// Brings the inventory in line with what Azure shows.
    async fn sync_inventory(
        &self,
        obs: &Observation,
        in_flight: &HashSet<String>,
        now: UnixSeconds,
    ) -> Result<(), store::StoreError> {
        let store = &self.shared.store;
        let known = store.list_vms(None).await?;
        // Batch pools' nodes are not VMs: `batch::observe` keeps their rows.
        let pools: HashMap<String, rb_core::PoolSpec> = store
            .list_pools()
            .await?
            .into_iter()
            .filter(|p| p.spec.mode == PoolMode::Vm)
            .map(|p| (p.spec.name.clone(), p.spec))
            .collect();
        let mut seen = HashSet::new();
        for vm in obs.vms.values() {
            if !pools.contains_key(&vm.pool) {
                continue; // Not a pool we manage: the garbage collector's business.
            }
            let key = vm.name.to_ascii_lowercase();
            seen.insert(key.clone());
            let old = known.iter().find(|k| k.name.eq_ignore_ascii_case(&vm.name));
            // A Spot VM we left running that Azure shows deallocated, with nothing of ours in
            // flight on it: evicted under the Deallocate policy.
            if let Some(o) = old
                && vm.state == NodeState::Deallocated
                && vm.priority == rb_core::Priority::Spot
                && matches!(
                    o.state,
                    NodeState::Running | NodeState::Starting | NodeState::Deallocating
                )
                && !in_flight.contains(&key)
                && !self
                    .last_write_was(
                        &vm.name,
                        &[rb_core::ActionKind::Deallocate, rb_core::ActionKind::Delete],
                    )
                    .await?
            {
                self.evicted(&vm.pool, &vm.name, "deallocate", &vm.size)
                    .await?;
            }
            // A create of ours still in flight that Azure already shows failed stays
            // `creating` until the executor records the outcome (the operation's poll comes
            // after the listing): that outcome may mark the offering unavailable, and a
            // `failed` node here would have the planner send a replacement create to the same
            // offering first (seen under load: two creates into a size that had run out).
            let state = if vm.state == NodeState::Failed
                && in_flight.contains(&key)
                && old.is_some_and(|o| o.state == NodeState::Creating)
            {
                NodeState::Creating
            } else {
                vm.state
            };
            let started_at = match (vm.state, old.and_then(|o| o.started_at)) {
                (NodeState::Running, Some(t))
                    if old.is_some_and(|o| o.state == NodeState::Running) =>
                {
                    Some(t)
                }
                (NodeState::Running, _) => Some(now),
                (_, t) => t,
            };
            let deallocated_at = match (vm.state, old.and_then(|o| o.deallocated_at)) {
                (NodeState::Deallocated, Some(t))
                    if old.is_some_and(|o| o.state == NodeState::Deallocated) =>
                {
                    Some(t)
                }
                (NodeState::Deallocated, _) => Some(now),
                (_, t) => t,
            };
            store
                .upsert_vm(&VmRecord {
                    name: vm.name.clone(),
                    pool: vm.pool.clone(),
                    size: vm.size.clone(),
                    priority: vm.priority,
                    state,
                    power_state: vm.power.clone(),
                    azure_id: Some(vm.id.clone()),
                    failed_code: vm.failed_code.clone(),
                    created_at: old.map_or(now, |o| o.created_at),
                    started_at,
                    deallocated_at,
                    last_seen: Some(now),
                    last_heartbeat: None,
                    busy: false,
                    draining: false,
                    registered_at: None,
                    node_seen_at: None,
                })
                .await?;
        }
        for k in known.iter().filter(|k| pools.contains_key(&k.pool)) {
            let key = k.name.to_ascii_lowercase();
            if seen.contains(&key) || in_flight.contains(&key) || k.state == NodeState::Missing {
                continue;
            }
            // Gone, and our last write on it was a delete (the journal outlives restarts,
            // where memory does not): our delete, whose outcome a stop cut short of recording.
            // A parked VM deleted by someone else is still out-of-band.
            if self
                .last_write_was(&k.name, &[rb_core::ActionKind::Delete])
                .await?
            {
                tracing::info!(pool = %k.pool, node = %k.name, "gone after our own delete");
                store.delete_vm(&k.name).await?;
                continue;
            }
            // A Spot VM of a pool whose eviction policy is Delete: Azure deletes the VM and
            // its disks when it evicts it, so vanishing is what an eviction looks like.
            let policy_delete = pools.get(&k.pool).is_some_and(|p| {
                p.priority == rb_core::Priority::Spot
                    && p.spot.eviction_policy == rb_core::spec::EvictionPolicy::Delete
            });
            if k.priority == rb_core::Priority::Spot
                && policy_delete
                && matches!(
                    k.state,
                    NodeState::Running | NodeState::Starting | NodeState::Deleting
                )
            {
                self.evicted(&k.pool, &k.name, "delete", &k.size).await?;
                store.delete_vm(&k.name).await?;
                continue;
            }
            // In the inventory, not in Azure, nothing of ours in flight: deleted outside
            // renderburst.
            let mut gone = k.clone();
            gone.state = NodeState::Missing;
            store.upsert_vm(&gone).await?;
        }
        Ok(())
    }
}

impl Controller {
    /// Whether renderburst's last write on the node (by the intent journal) was one of
    /// `kinds` and did not fail: then what Azure shows now is our doing.
    async fn last_write_was(
        &self,
        node: &str,
        kinds: &[rb_core::ActionKind],
    ) -> Result<bool, store::StoreError> {
        let last = self.shared.store.last_intent_for(node).await?;
        Ok(last.is_some_and(|i| {
            kinds.contains(&i.kind)
                && !matches!(i.outcome, Some(store::IntentOutcome::Failed { .. }))
        }))
    }

    /// A Spot VM of a VM pool was evicted: an event and the pool's eviction count (shown as
    /// the pool's `status.preempted`), not an out-of-band delete.
    ///
    /// Azure says what an eviction does, per the VM's `evictionPolicy`, not that one
    /// happened: "Deallocate" leaves the VM stopped-deallocated with its disks, "Delete"
    /// removes the VM and its disks (Microsoft Learn, "Azure Spot Virtual Machines",
    /// https://learn.microsoft.com/azure/virtual-machines/spot-vms, section "Eviction
    /// policy"). So an eviction is inferred from the stored state and the intent journal:
    /// a Spot VM we last started or created that Azure now shows deallocated, or that is gone
    /// from a pool whose policy is Delete.
    async fn evicted(
        &self,
        pool: &str,
        node: &str,
        policy: &str,
        size: &str,
    ) -> Result<(), store::StoreError> {
        let total = self
            .shared
            .store
            .bump_task_counter(&Task::evictions(pool))
            .await?;
        tracing::info!(pool, node, policy, "Spot VM evicted");
        let what = if policy == "delete" {
            "deleted it"
        } else {
            "deallocated it"
        };
        let _ = execute::event(
            &self.shared,
            "node.evicted",
            Some(pool),
            Some(node),
            &format!("Spot VM evicted by Azure, which {what} (eviction policy {policy}); the pool replaces the capacity"),
            serde_json::json!({"eviction_policy": policy, "size": size, "evictions_total": total}),
        )
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
