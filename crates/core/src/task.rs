//! Task statuses: what each background task last reported, kept in the store's `task_status`
//! table (one JSON row per key) so `GET /v1/status` and pool statuses can show it, and so it
//! survives a restart.
//!
//! This module is the one place that names those rows and says what they hold: a
//! [`TaskKey`] (rendered to the row's name, the same strings earlier versions stored), and a
//! [`Task<S>`], a key tied to the type `S` of status stored under it, so a writer and a
//! reader cannot disagree on either. The store takes and gives these types; nothing outside
//! this module builds a row name from a string.
//!
//! Every status here serializes exactly as the `json!` objects that were written before it
//! existed, so stored rows and API output are unchanged (no migration).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::batch::{BatchTargets, ResizeErrorView};
use crate::{Condition, UnixSeconds};

/// The name of one row of `task_status`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskKey {
    /// `reconciler`: the last activation ([`ActivationStatus`]).
    Reconciler,
    /// `scheduler`: the scheduler's last tick that did something ([`TickReport`]).
    Scheduler,
    /// `batch-accounts`: the last listing of the subscription's Batch accounts
    /// ([`BatchAccounts`]).
    BatchAccounts,
    /// `gc`: the garbage collector's last round ([`GcStatus`]).
    GarbageCollector,
    /// `pool:{pool}`: the pool's last activation ([`PoolActivation`]).
    Pool(String),
    /// `pool-error:{pool}`: the pool's last error ([`PoolError`]).
    PoolError(String),
    /// `evictions:{pool}`: a VM pool's Spot evictions ([`Evictions`]).
    Evictions(String),
    /// `force-delete:{pool}`: a forced deletion the API asked for ([`ForceDelete`]).
    ForceDelete(String),
    /// `batch:{pool}`: the last observation of a Batch pool ([`BatchObservation`]). Not to be
    /// confused with the intent node `batch:{pool}` ([`crate::batch::pool_intent_node`]),
    /// which names intents, in another table.
    BatchPool(String),
}

const RECONCILER: &str = "reconciler";
const SCHEDULER: &str = "scheduler";
const BATCH_ACCOUNTS: &str = "batch-accounts";
const GARBAGE_COLLECTOR: &str = "gc";
const POOL: &str = "pool:";
const POOL_ERROR: &str = "pool-error:";
const EVICTIONS: &str = "evictions:";
const FORCE_DELETE: &str = "force-delete:";
const BATCH_POOL: &str = "batch:";

impl TaskKey {
    /// The key a stored row's name stands for; `None` for a name no version wrote.
    pub fn parse(name: &str) -> Option<Self> {
        let per_pool = |prefix: &str| {
            name.strip_prefix(prefix)
                .filter(|pool| !pool.is_empty())
                .map(str::to_owned)
        };
        match name {
            RECONCILER => Some(Self::Reconciler),
            SCHEDULER => Some(Self::Scheduler),
            BATCH_ACCOUNTS => Some(Self::BatchAccounts),
            GARBAGE_COLLECTOR => Some(Self::GarbageCollector),
            _ => None
                .or_else(|| per_pool(POOL).map(Self::Pool))
                .or_else(|| per_pool(POOL_ERROR).map(Self::PoolError))
                .or_else(|| per_pool(EVICTIONS).map(Self::Evictions))
                .or_else(|| per_pool(FORCE_DELETE).map(Self::ForceDelete))
                .or_else(|| per_pool(BATCH_POOL).map(Self::BatchPool)),
        }
    }

    /// The pool a per-pool key is about.
    pub fn pool(&self) -> Option<&str> {
        match self {
            Self::Reconciler | Self::Scheduler | Self::BatchAccounts | Self::GarbageCollector => {
                None
            }
            Self::Pool(p)
            | Self::PoolError(p)
            | Self::Evictions(p)
            | Self::ForceDelete(p)
            | Self::BatchPool(p) => Some(p),
        }
    }
}

/// The row's name, as stored.
impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reconciler => f.write_str(RECONCILER),
            Self::Scheduler => f.write_str(SCHEDULER),
            Self::BatchAccounts => f.write_str(BATCH_ACCOUNTS),
            Self::GarbageCollector => f.write_str(GARBAGE_COLLECTOR),
            Self::Pool(p) => write!(f, "{POOL}{p}"),
            Self::PoolError(p) => write!(f, "{POOL_ERROR}{p}"),
            Self::Evictions(p) => write!(f, "{EVICTIONS}{p}"),
            Self::ForceDelete(p) => write!(f, "{FORCE_DELETE}{p}"),
            Self::BatchPool(p) => write!(f, "{BATCH_POOL}{p}"),
        }
    }
}

/// A status a task stores: plain data that serializes as its row's JSON.
pub trait TaskStatus: Serialize + DeserializeOwned {}

/// A status kept as a counter the store increments in place (`Store::bump_task_counter`).
pub trait TaskCounter: TaskStatus {
    /// The integer field counted.
    const FIELD: &'static str;
}

/// A [`TaskKey`] with the type of the status stored under it.
pub struct Task<S> {
    key: TaskKey,
    status: PhantomData<fn() -> S>,
}

impl<S> Task<S> {
    fn new(key: TaskKey) -> Self {
        Self {
            key,
            status: PhantomData,
        }
    }

    pub fn key(&self) -> &TaskKey {
        &self.key
    }
}

impl<S> Clone for Task<S> {
    fn clone(&self) -> Self {
        Self::new(self.key.clone())
    }
}

impl<S> fmt::Debug for Task<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task({})", self.key)
    }
}

impl<S> fmt::Display for Task<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.fmt(f)
    }
}

impl Task<ActivationStatus> {
    pub fn reconciler() -> Self {
        Self::new(TaskKey::Reconciler)
    }
}

impl Task<GcStatus> {
    pub fn garbage_collector() -> Self {
        Self::new(TaskKey::GarbageCollector)
    }
}

impl Task<TickReport> {
    pub fn scheduler() -> Self {
        Self::new(TaskKey::Scheduler)
    }
}

impl Task<BatchAccounts> {
    pub fn batch_accounts() -> Self {
        Self::new(TaskKey::BatchAccounts)
    }
}

impl Task<PoolActivation> {
    pub fn pool(pool: &str) -> Self {
        Self::new(TaskKey::Pool(pool.to_owned()))
    }
}

impl Task<PoolError> {
    pub fn pool_error(pool: &str) -> Self {
        Self::new(TaskKey::PoolError(pool.to_owned()))
    }
}

impl Task<Evictions> {
    pub fn evictions(pool: &str) -> Self {
        Self::new(TaskKey::Evictions(pool.to_owned()))
    }
}

impl Task<ForceDelete> {
    pub fn force_delete(pool: &str) -> Self {
        Self::new(TaskKey::ForceDelete(pool.to_owned()))
    }
}

impl Task<BatchObservation> {
    pub fn batch_pool(pool: &str) -> Self {
        Self::new(TaskKey::BatchPool(pool.to_owned()))
    }
}

/// What one activation of the reconciler did (`reconciler`; the controller's own copy is
/// what `/v1/status` shows as `controller.reconciler`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ActivationStatus {
    pub number: u64,
    pub started_at: UnixSeconds,
    pub duration_ms: u64,
    pub observed_vms: usize,
    pub list_requests: u32,
    pub actions: usize,
    pub pools: BTreeMap<String, PoolActivation>,
    pub errors: Vec<String>,
    /// The activation reached `activation_timeout` and stopped reading Azure.
    pub cut: bool,
    /// Azure was listed completely this activation (the VM observation succeeded).
    pub observed: bool,
    /// The `ArmUnavailable` condition every pool carries while ARM fails, if it does.
    pub arm_unavailable: Option<String>,
}

impl TaskStatus for ActivationStatus {}

/// The garbage collector's last round (`gc`): it runs as its own task on each activation's
/// complete listing, under its own deadline.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GcStatus {
    /// The activation whose listing it read.
    pub activation: u64,
    pub started_at: UnixSeconds,
    pub duration_ms: u64,
    /// It reached `activation_timeout_seconds`; what it did not look at waits for the next.
    pub cut: bool,
    pub errors: Vec<String>,
}

impl TaskStatus for GcStatus {}

/// A pool's last activation (`pool:{pool}`): what the planner wanted and why.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PoolActivation {
    pub desired: u32,
    pub active: u32,
    pub actions: Vec<String>,
    /// Objects as the controller writes them; a `"Type: message"` string from a status an
    /// older version wrote reads as that condition without a `since`.
    #[serde(deserialize_with = "conditions_of_any_version")]
    pub conditions: Vec<Condition>,
    /// The pool's generation this activation planned from, so a client that changed the
    /// pool knows when the status reflects its change.
    pub observed_generation: i64,
}

impl TaskStatus for PoolActivation {}

/// Conditions as objects, or as the `"Type: message"` strings older versions stored;
/// anything else is skipped.
fn conditions_of_any_version<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Condition>, D::Error> {
    let items: Vec<Value> = Vec::deserialize(d)?;
    Ok(items
        .into_iter()
        .filter_map(|c| match c {
            Value::String(text) => Some(Condition::parse(&text, None)),
            other => serde_json::from_value(other).ok(),
        })
        .collect())
}

/// A pool's last error (`pool-error:{pool}`), shown as its status's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolError {
    /// The ARM error code, or the controller's own (`BootstrapError`, `SecretNotDeclared`,
    /// `StoreError`...).
    pub code: String,
    pub message: String,
    pub at: UnixSeconds,
}

impl TaskStatus for PoolError {}

/// The [`PoolError`] code of a node whose bootstrap could not be made; the API shows its
/// message to admins only (it names fields and secrets).
pub const BOOTSTRAP_ERROR: &str = "BootstrapError";
/// The [`PoolError`] code of a pool whose nodes cannot be bootstrapped because its spec names
/// secrets the configuration does not declare.
pub const SECRET_NOT_DECLARED: &str = "SecretNotDeclared";
/// The [`PoolError`] code of a store failure (the controller's, not ARM's).
pub const STORE_ERROR: &str = "StoreError";

/// A VM pool's Spot evictions since it was created (`evictions:{pool}`), shown as its
/// status's `preempted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Evictions {
    pub total: u64,
}

impl TaskStatus for Evictions {}

impl TaskCounter for Evictions {
    const FIELD: &'static str = "total";
}

/// A forced deletion asked for (`force-delete:{pool}`, `DELETE /v1/pools/{name}?force=true`),
/// tied to the pool row it was asked for by its `created_at`, for the controller to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceDelete {
    pub created_at: UnixSeconds,
    pub by: String,
    pub requested_at: UnixSeconds,
}

impl TaskStatus for ForceDelete {}

/// The last listing of the subscription's Batch accounts (`batch-accounts`), which the API
/// checks a new Batch pool's account against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAccounts {
    pub observed_at: UnixSeconds,
    /// The configuration's resource group, for pools that name none.
    pub default_resource_group: String,
    /// `resource-group/account`, lower case.
    pub accounts: Vec<String>,
}

impl TaskStatus for BatchAccounts {}

/// The last observation of a Batch pool (`batch:{pool}`), shown as its status's `batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchObservation {
    pub account: String,
    /// The Batch pool's name in Azure.
    pub pool: String,
    pub exists: bool,
    /// Null when the pool does not exist.
    pub owned: Option<bool>,
    pub allocation_state: Option<String>,
    pub targets: Option<BatchTargets>,
    pub current: Option<BatchTargets>,
    pub resize_errors: Vec<ResizeErrorView>,
    /// Nodes preempted now.
    pub preempted: u64,
    pub preempted_total: u64,
    pub empty_since: Option<UnixSeconds>,
    pub observed_at: UnixSeconds,
}

impl TaskStatus for BatchObservation {}

/// What one tick of the scheduler did (`scheduler`, and tests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TickReport {
    pub at: UnixSeconds,
    /// `(schedule, fired_at)` of every firing applied, oldest first.
    pub applied: Vec<(String, UnixSeconds)>,
    /// The earliest next firing of any schedule, if one is known.
    pub next_firing: Option<UnixSeconds>,
    pub errors: Vec<String>,
}

impl TaskStatus for TickReport {}

/// One stored row: its key, its JSON as stored, and when it was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub key: TaskKey,
    /// As stored: what `GET /v1/status` shows, whichever version wrote it.
    pub status: Value,
    pub updated_at: UnixSeconds,
}

/// Every stored status, ordered by row name (`Store::task_statuses`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStatuses {
    rows: Vec<TaskRow>,
}

impl TaskStatuses {
    /// From the rows as stored, in the order given.
    pub fn new(rows: Vec<TaskRow>) -> Self {
        Self { rows }
    }

    /// The typed status stored under `task`; `None` if there is none, or if the row does not
    /// read as one (a shape no version of this type wrote).
    pub fn get<S: TaskStatus>(&self, task: &Task<S>) -> Option<S> {
        serde_json::from_value(self.raw(task.key())?.clone()).ok()
    }

    /// The row's JSON as stored, for showing it as it is.
    pub fn raw(&self, key: &TaskKey) -> Option<&Value> {
        self.rows.iter().find(|r| r.key == *key).map(|r| &r.status)
    }

    pub fn rows(&self) -> &[TaskRow] {
        &self.rows
    }

    /// Forced deletions asked for: the pool and its request.
    pub fn force_deletes(&self) -> impl Iterator<Item = (&str, ForceDelete)> + '_ {
        self.rows.iter().filter_map(|r| match &r.key {
            TaskKey::ForceDelete(pool) => Some((
                pool.as_str(),
                serde_json::from_value(r.status.clone()).ok()?,
            )),
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_render_the_names_stored_before_and_read_back() {
        let keys = [
            (TaskKey::Reconciler, "reconciler"),
            (TaskKey::Scheduler, "scheduler"),
            (TaskKey::BatchAccounts, "batch-accounts"),
            (TaskKey::GarbageCollector, "gc"),
            (TaskKey::Pool("maya".into()), "pool:maya"),
            (TaskKey::PoolError("maya".into()), "pool-error:maya"),
            (TaskKey::Evictions("maya".into()), "evictions:maya"),
            (TaskKey::ForceDelete("maya".into()), "force-delete:maya"),
            (TaskKey::BatchPool("maya".into()), "batch:maya"),
        ];
        for (key, name) in keys {
            assert_eq!(key.to_string(), name);
            assert_eq!(TaskKey::parse(name), Some(key));
        }
        assert_eq!(TaskKey::parse("pool:"), None);
        assert_eq!(TaskKey::parse("garbage"), None);
        assert_eq!(Task::pool("maya").key().pool(), Some("maya"));
        assert_eq!(Task::reconciler().key().pool(), None);
    }

    #[test]
    fn statuses_serialize_as_the_objects_written_before() {
        assert_eq!(
            serde_json::to_value(PoolError {
                code: "AllocationFailed".into(),
                message: "create maya-00001: no".into(),
                at: 5
            })
            .unwrap(),
            json!({"code": "AllocationFailed", "message": "create maya-00001: no", "at": 5})
        );
        assert_eq!(
            serde_json::to_value(ForceDelete {
                created_at: 1,
                by: "admin".into(),
                requested_at: 2
            })
            .unwrap(),
            json!({"created_at": 1, "by": "admin", "requested_at": 2})
        );
        assert_eq!(
            serde_json::to_value(Evictions { total: 3 }).unwrap(),
            json!({"total": 3})
        );
        assert_eq!(
            serde_json::to_value(BatchAccounts {
                observed_at: 7,
                default_resource_group: "rg".into(),
                accounts: vec!["rg/acct".into()]
            })
            .unwrap(),
            json!({"observed_at": 7, "default_resource_group": "rg", "accounts": ["rg/acct"]})
        );
        let targets = BatchTargets {
            dedicated: 1,
            spot: 2,
        };
        assert_eq!(
            serde_json::to_value(BatchObservation {
                account: "acct".into(),
                pool: "nuke".into(),
                exists: true,
                owned: Some(true),
                allocation_state: Some("steady".into()),
                targets: Some(targets),
                current: Some(targets),
                resize_errors: vec![ResizeErrorView {
                    code: "c".into(),
                    message: "m".into()
                }],
                preempted: 1,
                preempted_total: 4,
                empty_since: None,
                observed_at: 9,
            })
            .unwrap(),
            json!({
                "account": "acct", "pool": "nuke", "exists": true, "owned": true,
                "allocation_state": "steady",
                "targets": {"dedicated": 1, "spot": 2}, "current": {"dedicated": 1, "spot": 2},
                "resize_errors": [{"code": "c", "message": "m"}],
                "preempted": 1, "preempted_total": 4, "empty_since": null, "observed_at": 9,
            })
        );
        assert_eq!(
            serde_json::to_value(PoolActivation::default()).unwrap(),
            json!({"desired": 0, "active": 0, "actions": [], "conditions": [], "observed_generation": 0})
        );
        assert_eq!(
            serde_json::to_value(TickReport {
                at: 1,
                applied: vec![("night".into(), 2)],
                next_firing: None,
                errors: vec![]
            })
            .unwrap(),
            json!({"at": 1, "applied": [["night", 2]], "next_firing": null, "errors": []})
        );
    }

    #[test]
    fn a_pool_activation_reads_conditions_of_older_versions() {
        let got: PoolActivation = serde_json::from_value(json!({
            "desired": 4,
            "conditions": [{"type": "Blocked", "message": "x", "since": "2024-01-01T00:00:00Z"},
                           "NoCapacity: later", 3],
        }))
        .unwrap();
        assert_eq!(got.desired, 4);
        assert_eq!(
            got.conditions,
            vec![
                Condition {
                    kind: "Blocked".into(),
                    message: "x".into(),
                    since: Some("2024-01-01T00:00:00Z".into())
                },
                Condition::parse("NoCapacity: later", None),
            ]
        );
    }

    #[test]
    fn statuses_read_typed_and_as_stored() {
        let rows = TaskStatuses::new(vec![
            TaskRow {
                key: TaskKey::ForceDelete("maya".into()),
                status: json!({"created_at": 1, "by": "admin", "requested_at": 2}),
                updated_at: 3,
            },
            TaskRow {
                key: TaskKey::Evictions("maya".into()),
                status: json!({"total": 2}),
                updated_at: 3,
            },
            TaskRow {
                key: TaskKey::PoolError("maya".into()),
                status: json!({"code": "X", "message": "m", "at": "not a number"}),
                updated_at: 3,
            },
        ]);
        assert_eq!(
            rows.get(&Task::evictions("maya")),
            Some(Evictions { total: 2 })
        );
        assert_eq!(rows.get(&Task::evictions("nuke")), None);
        // Not the shape of the type: no typed value, the row as stored still there.
        assert_eq!(rows.get(&Task::pool_error("maya")), None);
        assert_eq!(
            rows.raw(&TaskKey::PoolError("maya".into())).unwrap()["code"],
            "X"
        );
        let forced: Vec<_> = rows.force_deletes().collect();
        assert_eq!(forced.len(), 1);
        assert_eq!(forced[0].0, "maya");
        assert_eq!(forced[0].1.created_at, 1);
    }
}
