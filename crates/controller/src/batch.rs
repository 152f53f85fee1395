//! `mode: batch` pools: observe the Azure Batch pool (management plane) and its nodes (data
//! plane), keep the inventory and the Batch bookkeeping in the store, and execute what the
//! pure Batch planner (`rb_core::batch`) decided.
//!
//! Batch nodes live in the `vms` inventory under their Batch node id (what a node sees as
//! `AZ_BATCH_NODE_ID`), with the Batch node state as `power_state`, so heartbeats, drain and
//! `GET /v1/nodes` treat them like VMs.
//!
//! Writes follow the VM executor's rules: an intent before every call (`batch:{pool}` for the
//! pool itself, the node id for a removal), the pool's DELETE operation stored for recovery,
//! and the outcome recorded. The create is a GET then a PUT, under a name that never changes,
//! so a daemon killed at any point adopts the pool it (or its previous run) created and never
//! makes a second one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arm_model::batch::{ComputeNode, NodeDeallocationOption, Pool};
use azure::{ArmError, ErrorKind};
use rb_core::batch::{batch_pool_name, node_state, pool_intent_node};
use rb_core::{
    Action, ActionKind, BatchPoolView, BatchSpec, BatchTargets, NodeState, Offering, Os, Plan,
    PoolSpec, Priority, ResizeErrorView, TAG_OWNER, TAG_POOL, Unavailable, UnavailableReason,
    UnixSeconds,
};
use serde_json::{Value, json};
use store::{BatchState, IntentOutcome, NewEvent, NewIntent, PoolRecord, VmRecord};

use crate::execute::{event, verb_of};
use crate::{Shared, bootstrap, now};

/// Task-status name of a Batch pool's summary (`GET /v1/pools/{name}` shows it as
/// `status.batch`).
pub fn batch_task(pool: &str) -> String {
    format!("batch:{pool}")
}

struct Target<'a> {
    b: &'a BatchSpec,
    rg: String,
    account: &'a str,
    name: &'a str,
}

fn target<'a>(sh: &Shared, spec: &'a PoolSpec) -> Option<Target<'a>> {
    let b = spec.batch.as_ref()?;
    Some(Target {
        b,
        rg: b
            .resource_group
            .clone()
            .unwrap_or_else(|| sh.cfg.resource_group.clone()),
        account: &b.account,
        name: batch_pool_name(spec),
    })
}

/// Whether a Batch pool carries our owner id (tag or metadata).
fn owned_by(pool: &Pool, owner: &str) -> bool {
    let tagged = pool.tags.as_ref().is_some_and(|t| {
        t.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(TAG_OWNER) && v == owner)
    });
    let meta = pool
        .properties
        .as_ref()
        .and_then(|p| p.metadata.as_ref())
        .is_some_and(|m| m.iter().any(|i| i.name == TAG_OWNER && i.value == owner));
    tagged || meta
}

fn view(pool: &Pool, owned: bool) -> BatchPoolView {
    let p = pool.properties.clone().unwrap_or_default();
    let fixed = p
        .scale_settings
        .as_ref()
        .and_then(|s| s.fixed_scale.clone())
        .unwrap_or_default();
    let status = p.resize_operation_status.clone().unwrap_or_default();
    BatchPoolView {
        owned,
        deleting: p
            .provisioning_state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Deleting")),
        steady: p
            .allocation_state
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("Steady")),
        targets: BatchTargets {
            dedicated: fixed
                .target_dedicated_nodes
                .or(status.target_dedicated_nodes)
                .unwrap_or(0),
            spot: fixed
                .target_low_priority_nodes
                .or(status.target_low_priority_nodes)
                .unwrap_or(0),
        },
        current: BatchTargets {
            dedicated: p.current_dedicated_nodes.unwrap_or(0),
            spot: p.current_low_priority_nodes.unwrap_or(0),
        },
        resize_errors: status
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| ResizeErrorView {
                code: e.code,
                message: e.message,
            })
            .collect(),
    }
}

/// What one observation found: the pool (None if absent) and its nodes.
pub(crate) struct Observed {
    pool: Option<Pool>,
    nodes: Vec<ComputeNode>,
}

/// Lists the subscription's Batch accounts, at most every 30 s and only while a pool or the
/// configuration names one, into the task status `batch-accounts`
/// (`{"observed_at", "default_resource_group", "accounts": ["rg/account", ...]}`, lower case),
/// which the API checks a new Batch pool's account against: handlers never call Azure.
pub(crate) async fn observe_accounts(sh: &Shared, pools: &[PoolRecord]) {
    let wanted = sh.cfg.batch_account.is_some()
        || pools
            .iter()
            .any(|p| p.spec.mode == rb_core::PoolMode::Batch);
    let due = sh
        .accounts_listed
        .lock()
        .map(|l| l.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30)))
        .unwrap_or(false);
    if !wanted || !due {
        return;
    }
    let accounts = match sh.arm.list_batch_accounts().collect_all().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(code = %e.code, error = %e, "cannot list the Batch accounts");
            return;
        }
    };
    let names: Vec<String> = accounts
        .iter()
        .filter_map(|a| {
            let id = a.id.as_deref()?.to_ascii_lowercase();
            let rg = id
                .split("/resourcegroups/")
                .nth(1)?
                .split('/')
                .next()?
                .to_owned();
            Some(format!("{rg}/{}", a.name.as_deref()?.to_ascii_lowercase()))
        })
        .collect();
    if let Ok(mut l) = sh.accounts_listed.lock() {
        *l = Some(std::time::Instant::now());
    }
    let _ = sh
        .store
        .put_task_status(
            "batch-accounts",
            &json!({"observed_at": crate::now(), "default_resource_group": sh.cfg.resource_group, "accounts": names}),
        )
        .await;
}

/// The error code (and pool condition type) of a Batch pool whose account does not exist.
pub const ACCOUNT_NOT_FOUND: &str = "BatchAccountNotFound";

/// Observes one Batch pool and brings the store in line. Returns an error (and plans
/// nothing) when any call failed: never plan from part of the picture. Else whether the
/// pool's enrollment token is due to be rotated (see [`enroll_token_due`]).
pub(crate) async fn observe(
    sh: &Shared,
    record: &PoolRecord,
    owner: &str,
    t: UnixSeconds,
) -> Result<bool, ArmError> {
    let spec = &record.spec;
    let Some(tg) = target(sh, spec) else {
        return Ok(false);
    };
    let mut state = sh
        .store
        .get_batch_state(&spec.name)
        .await
        .map_err(store_err)?
        .unwrap_or_else(|| BatchState {
            pool: spec.name.clone(),
            ..Default::default()
        });
    // `None`: the account (or its resource group) does not exist. For a pool being deleted
    // that is an answer, not an error: nothing of it can be left in Azure, so the deletion
    // completes (it used to stay "being deleted" for ever).
    let endpoint = match &state.account_endpoint {
        Some(e) => Some(e.clone()),
        None => match sh.arm.get_batch_account(&tg.rg, tg.account).await? {
            Some(account) => Some(
                account
                    .properties
                    .and_then(|p| p.account_endpoint)
                    .ok_or_else(|| {
                        decode_err(format!("Batch account {} has no endpoint", tg.account))
                    })?,
            ),
            None if record.deleting => None,
            None => {
                return Err(ArmError::new(
                    ErrorKind::Http,
                    ACCOUNT_NOT_FOUND,
                    format!(
                        "Batch account {} not found in resource group {}: fix batch.account (and batch.resource_group) or create the account",
                        tg.account, tg.rg
                    ),
                ));
            }
        },
    };
    // A 404 on the pool (or on its account, deleted since we learnt its endpoint) is
    // `None`: the pool is gone or never existed.
    let pool = match &endpoint {
        Some(_) => sh.arm.get_pool(&tg.rg, tg.account, tg.name).await?,
        None => None,
    };
    let owned = pool
        .as_ref()
        .is_some_and(|p| tg.b.existing_pool.is_some() || owned_by(p, owner));
    let nodes = match (&pool, &endpoint) {
        (Some(_), Some(endpoint)) if owned => {
            sh.arm
                .list_batch_nodes(endpoint, tg.name)?
                .collect_all()
                .await?
        }
        _ => Vec::new(),
    };
    let observed = Observed { pool, nodes };
    let v = observed.pool.as_ref().map(|p| view(p, owned));
    sync_nodes(sh, record, &observed, &mut state, t)
        .await
        .map_err(store_err)?;
    let rotate = match (&observed.pool, spec.bootstrap.is_some() && owned) {
        (Some(p), true) => {
            let published = published_enroll_token(p).map(|tk| bootstrap::sha256_hex(&tk));
            let made = match &published {
                Some(hash) => sh
                    .store
                    .observe_enroll_token(&spec.name, hash, t, secs(sh.cfg.enrollment.overlap))
                    .await
                    .map_err(store_err)?,
                None => None,
            };
            !record.deleting && enroll_token_due(made, t, sh.cfg.enrollment.rotate_every)
        }
        _ => false,
    };
    if let (Some(v), Some(p)) = (&v, &observed.pool) {
        report_resize_errors(sh, record, p, v, &observed.nodes, &mut state, t).await;
    }
    state.unavailable.retain(|u| u.is_active(t));
    let empty = v
        .as_ref()
        .is_some_and(|v| observed.nodes.is_empty() && v.targets.total() == 0 && v.steady);
    state.empty_since = if empty {
        Some(state.empty_since.unwrap_or(t))
    } else {
        None
    };
    state.observed = v.clone();
    state.observed_at = Some(t);
    if let Some(e) = &endpoint {
        state.account_endpoint = Some(e.clone());
    }
    sh.store.put_batch_state(&state).await.map_err(store_err)?;
    let preempted = observed
        .nodes
        .iter()
        .filter(|n| n.state.as_deref() == Some("preempted"))
        .count();
    let summary = json!({
        "account": tg.account,
        "pool": tg.name,
        "exists": v.is_some(),
        "owned": v.as_ref().map(|v| v.owned),
        "allocation_state": observed.pool.as_ref().and_then(|p| p.properties.as_ref()).and_then(|p| p.allocation_state.clone()),
        "targets": v.as_ref().map(|v| v.targets),
        "current": v.as_ref().map(|v| v.current),
        "resize_errors": v.as_ref().map(|v| v.resize_errors.iter().map(|e| json!({"code": e.code, "message": e.message})).collect::<Vec<_>>()).unwrap_or_default(),
        "preempted": preempted,
        "preempted_total": state.preempted_total,
        "empty_since": state.empty_since,
        "observed_at": t,
    });
    let _ = sh
        .store
        .put_task_status(&batch_task(&spec.name), &summary)
        .await;
    Ok(rotate)
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The enrollment token the Batch pool's start task carries, as anyone with ARM read on the
/// pool sees it.
fn published_enroll_token(pool: &Pool) -> Option<String> {
    pool.properties
        .as_ref()?
        .start_task
        .as_ref()?
        .environment_settings
        .as_ref()?
        .iter()
        .find(|e| e.name == rb_core::bootstrap::ENV_POOL_TOKEN)?
        .value
        .clone()
}

/// Whether a Batch pool's enrollment token should be replaced at `now`: the one its start
/// task carries was made `rotate_every` ago or more, or it carries none of ours (`made` is
/// None: a lost rotation, or someone edited the start task; nodes could not enroll).
pub fn enroll_token_due(
    made: Option<UnixSeconds>,
    now: UnixSeconds,
    rotate_every: std::time::Duration,
) -> bool {
    made.is_none_or(|m| now.saturating_sub(m) >= secs(rotate_every))
}

/// Until when a Batch node may enroll: its allocation (Batch's `allocationTime`; else when
/// the daemon first listed it) plus the window.
fn enroll_deadline(
    node: &ComputeNode,
    first_listed: UnixSeconds,
    window: std::time::Duration,
) -> UnixSeconds {
    let allocated = node
        .allocation_time
        .as_deref()
        .and_then(|a| {
            time::OffsetDateTime::parse(a, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(first_listed, |a| a.unix_timestamp());
    allocated.saturating_add(secs(window))
}

fn config_err(message: impl Into<String>) -> ArmError {
    ArmError::new(ErrorKind::Config, "Config", message)
}

fn decode_err(message: impl Into<String>) -> ArmError {
    ArmError::new(ErrorKind::Decode, "DecodeError", message)
}

fn store_err(e: store::StoreError) -> ArmError {
    ArmError::new(ErrorKind::Config, "StoreError", e.to_string())
}

/// The inventory rows of the pool follow the node list; preemptions are counted.
async fn sync_nodes(
    sh: &Shared,
    record: &PoolRecord,
    obs: &Observed,
    state: &mut BatchState,
    t: UnixSeconds,
) -> Result<(), store::StoreError> {
    let pool = &record.spec.name;
    let known: HashMap<String, VmRecord> = sh
        .store
        .list_vms(Some(pool))
        .await?
        .into_iter()
        .map(|v| (v.name.clone(), v))
        .collect();
    let size = obs
        .pool
        .as_ref()
        .and_then(|p| p.properties.as_ref())
        .and_then(|p| p.vm_size.clone())
        .or_else(|| record.spec.vm_sizes.first().cloned())
        .unwrap_or_default();
    let size = arm_model::sizes::lookup(&size).map_or(size, |s| s.name.clone());
    let mut seen = HashSet::new();
    for n in &obs.nodes {
        let Some(id) = n.id.clone() else { continue };
        let batch_state = n.state.clone().unwrap_or_else(|| "unknown".into());
        let ns = node_state(&batch_state);
        let old = known.get(&id);
        if ns == NodeState::Preempted && old.is_none_or(|o| o.state != NodeState::Preempted) {
            state.preempted_total += 1;
            if record.spec.bootstrap.is_some() {
                // Batch reallocates it as a fresh machine, which enrolls again.
                sh.store.forget_node_enrollment(&id).await?;
            }
            let _ = event(
                sh,
                "batch.preempted",
                Some(pool),
                Some(&id),
                "Spot node preempted; Batch reallocates it",
                json!({}),
            )
            .await;
        }
        let started_at = match (ns, old) {
            (NodeState::Running, Some(o)) if o.state == NodeState::Running => o.started_at,
            (NodeState::Running, _) => Some(t),
            (_, o) => o.and_then(|o| o.started_at),
        };
        seen.insert(id.clone());
        sh.store
            .upsert_vm(&VmRecord {
                name: id.clone(),
                pool: pool.clone(),
                size: size.clone(),
                priority: if n.is_dedicated.unwrap_or(true) {
                    Priority::Regular
                } else {
                    Priority::Spot
                },
                state: ns,
                power_state: Some(batch_state),
                azure_id: n.url.clone(),
                failed_code: n
                    .errors
                    .as_ref()
                    .and_then(|e| e.first())
                    .and_then(|e| e.code.clone()),
                created_at: old.map_or(t, |o| o.created_at),
                started_at,
                deallocated_at: None,
                last_seen: Some(t),
                last_heartbeat: None,
                busy: false,
                draining: false,
                registered_at: None,
                node_seen_at: None,
            })
            .await?;
        // Enrollment is for listed nodes only, within the window after their allocation:
        // the deadline is kept for nodes that have not registered (a reallocated Spot node
        // has a new allocation time and a new window).
        if record.spec.bootstrap.is_some() && old.is_none_or(|o| o.registered_at.is_none()) {
            let first_listed = old.map_or(t, |o| o.created_at);
            let until = enroll_deadline(n, first_listed, sh.cfg.enrollment.window);
            sh.store.set_enroll_until(&id, until).await?;
        }
    }
    // Addresses for `node list`: one transaction, rows written only when they change.
    let ips: Vec<(String, String)> = obs
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.clone()?, n.ip_address.clone()?)))
        .collect();
    sh.store.set_node_ips(&ips).await?;
    for name in known.keys() {
        if !seen.contains(name) {
            // Gone from the pool: removed by us or by Batch.
            sh.store.delete_vm(name).await?;
        }
    }
    Ok(())
}

/// Reports the errors of a resize once (events, last error) and marks the offerings Batch
/// could not allocate, for this pool only: Batch account quotas are not the subscription's.
async fn report_resize_errors(
    sh: &Shared,
    record: &PoolRecord,
    pool: &Pool,
    v: &BatchPoolView,
    nodes: &[ComputeNode],
    state: &mut BatchState,
    t: UnixSeconds,
) {
    // A ResizeStopped error is our own stopResize.
    if v.resize_errors
        .iter()
        .all(|e| e.code == rb_core::batch::RESIZE_STOPPED)
    {
        return;
    }
    let started = pool
        .properties
        .as_ref()
        .and_then(|p| p.resize_operation_status.as_ref())
        .and_then(|s| s.start_time.clone())
        .unwrap_or_default();
    if state.reported_resize.as_deref() == Some(started.as_str()) {
        return;
    }
    state.reported_resize = Some(started);
    let name = &record.spec.name;
    let size = record.spec.vm_sizes.first().cloned().unwrap_or_default();
    let up = |dedicated: bool| {
        nodes
            .iter()
            .filter(|n| {
                n.is_dedicated.unwrap_or(true) == dedicated
                    && n.state.as_deref() != Some("leavingpool")
            })
            .count() as u32
    };
    let short_d = up(true) < v.targets.dedicated;
    let short_s = up(false) < v.targets.spot;
    for e in v
        .resize_errors
        .iter()
        .filter(|e| e.code != rb_core::batch::RESIZE_STOPPED)
    {
        let code = e.code.as_str();
        let (kinds, reason): (Vec<Priority>, UnavailableReason) = match code {
            "AccountCoreQuotaReached" | "AccountVMSeriesCoreQuotaReached" => {
                (vec![Priority::Regular], UnavailableReason::Quota)
            }
            "AccountLowPriorityCoreQuotaReached" | "AccountSpotCoreQuotaReached" => {
                (vec![Priority::Spot], UnavailableReason::Quota)
            }
            "ResizeStopped" | "RemoveNodesFailed" => (vec![], UnavailableReason::Capacity),
            // AllocationFailed, AllocationTimedout and the rest: whichever kind fell short.
            _ => {
                let mut k = Vec::new();
                if short_d {
                    k.push(Priority::Regular);
                }
                if short_s {
                    k.push(Priority::Spot);
                }
                (k, UnavailableReason::Capacity)
            }
        };
        let mut until = Vec::new();
        for priority in kinds {
            let short = match priority {
                Priority::Regular => short_d,
                Priority::Spot => short_s,
            };
            if !short {
                continue;
            }
            let u = Unavailable::new(Offering::new(&size, priority), reason, code, t);
            until.push(json!({"priority": priority, "until": u.until}));
            state
                .unavailable
                .retain(|o| o.offering != u.offering || o.until > u.until);
            if !state.unavailable.iter().any(|o| o.offering == u.offering) {
                state.unavailable.push(u);
            }
        }
        tracing::warn!(pool = %name, code, message = %e.message, "Batch resize error");
        let _ = sh
            .store
            .put_task_status(
                &format!("pool-error:{name}"),
                &json!({"code": code, "message": format!("resize of Batch pool {}: {}", batch_pool_name(&record.spec), e.message), "at": t}),
            )
            .await;
        let _ = event(
            sh,
            "batch.resize_error",
            Some(name),
            None,
            &format!("Batch could not resize the pool: {code}: {}", e.message),
            json!({"code": code, "targets": v.targets, "current": v.current, "unavailable": until}),
        )
        .await;
    }
}

/// The Batch pool renderburst creates for `spec`. `enroll` (the daemon's URL and the
/// pool's enrollment token) is required with a `bootstrap` section.
pub fn pool_model(
    spec: &PoolSpec,
    owner: &str,
    targets: BatchTargets,
    enroll: Option<(&str, &str)>,
) -> Option<Pool> {
    let b = spec.batch.as_ref()?;
    let mut tags = serde_json::Map::new();
    for (k, v) in &spec.tags {
        tags.insert(k.clone(), json!(v));
    }
    tags.insert(TAG_POOL.into(), json!(spec.name));
    tags.insert(TAG_OWNER.into(), json!(owner));
    let image = if spec
        .image
        .to_ascii_lowercase()
        .starts_with("/subscriptions/")
    {
        json!({"id": spec.image})
    } else {
        let p: Vec<&str> = spec.image.split(':').collect();
        json!({"publisher": p.first(), "offer": p.get(1), "sku": p.get(2), "version": p.get(3)})
    };
    let mut props = json!({
        "displayName": format!("renderburst pool {}", spec.name),
        "vmSize": spec.vm_sizes.first(),
        "deploymentConfiguration": {"virtualMachineConfiguration": {
            "imageReference": image,
            "nodeAgentSkuId": b.node_agent_sku_id,
        }},
        "scaleSettings": {"fixedScale": {
            "targetDedicatedNodes": targets.dedicated,
            "targetLowPriorityNodes": targets.spot,
            "resizeTimeout": "PT15M",
            "nodeDeallocationOption": NodeDeallocationOption::TASK_COMPLETION,
        }},
        "taskSlotsPerNode": b.task_slots_per_node,
        "interNodeCommunication": "Disabled",
        "metadata": [
            {"name": TAG_POOL, "value": spec.name},
            {"name": TAG_OWNER, "value": owner},
        ],
    });
    if let Some(subnet) = &b.subnet_id {
        props["networkConfiguration"] = json!({"subnetId": subnet});
    }
    if spec.bootstrap.is_some() {
        let (url, token) = enroll?;
        props["startTask"] = enroll_start_task(spec.os, url, token);
    } else if let Some(task) = start_task(spec, b) {
        props["startTask"] = task;
    }
    serde_json::from_value(json!({"tags": tags, "properties": props})).ok()
}

/// The start task of a pool with a `bootstrap` section: it enrolls each node at `url` with
/// the pool's enrollment `token`.
fn enroll_start_task(os: Os, url: &str, token: &str) -> Value {
    let task = rb_core::bootstrap::render_start_task(os, url, token);
    let env: Vec<Value> = task
        .environment
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "commandLine": task.command_line,
        "environmentSettings": env,
        "waitForSuccess": true,
        "maxTaskRetryCount": 2,
        "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}},
    })
}

/// The start task: the spec's, with the license servers in its environment. Batch gives a
/// start task's environment to the start task only, so without a command of its own the
/// default one writes the license variables to `$AZ_BATCH_NODE_SHARED_DIR/renderburst.env`
/// (`renderburst.cmd` on Windows) for the render tasks to read.
fn start_task(spec: &PoolSpec, b: &BatchSpec) -> Option<Value> {
    if b.start_task.is_none() && spec.licenses.is_empty() {
        return None;
    }
    let mut env: Vec<Value> = spec
        .licenses
        .iter()
        .map(|l| json!({"name": l.variable, "value": l.server}))
        .collect();
    let names: Vec<&str> = spec.licenses.iter().map(|l| l.variable.as_str()).collect();
    let (command, wait, elevated, retries) = match &b.start_task {
        Some(t) => {
            env.extend(
                t.environment
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v})),
            );
            (
                t.command_line.clone(),
                t.wait_for_success,
                t.elevated,
                t.max_task_retry_count,
            )
        }
        None => {
            let cmd = match spec.os {
                Os::Linux => format!(
                    "/bin/sh -c 'env | grep -E \"^({})=\" > \"$AZ_BATCH_NODE_SHARED_DIR/renderburst.env\"'",
                    names.join("|")
                ),
                Os::Windows => format!(
                    "cmd /c \"(for %v in ({}) do @call echo set %v=%%%v%%) > %AZ_BATCH_NODE_SHARED_DIR%\\renderburst.cmd\"",
                    names.join(" ")
                ),
            };
            (cmd, true, false, 2)
        }
    };
    Some(json!({
        "commandLine": command,
        "environmentSettings": env,
        "waitForSuccess": wait,
        "maxTaskRetryCount": retries,
        // Management-plane spellings (the data plane's are lower-case).
        "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": if elevated { "Admin" } else { "NonAdmin" }}},
    }))
}

/// Starts the plan's Batch actions in the background: removals as one data-plane call (an
/// intent per node), pool writes one at a time (an intent on `batch:{pool}`).
///
/// `rotate_enroll_token` (from [`observe`]): the pool's enrollment token is due to be
/// replaced; that is a pool write too, done when the plan has none (a rotation waits for a
/// resize, never the other way round).
pub(crate) async fn dispatch(
    sh: &Arc<Shared>,
    record: &PoolRecord,
    plan: Plan,
    owner: &str,
    rotate_enroll_token: bool,
) -> Result<(), store::StoreError> {
    let spec = &record.spec;
    let zombies = plan.zombies;
    let (removals, pool_ops): (Vec<Action>, Vec<Action>) = plan
        .actions
        .into_iter()
        .partition(|a| a.kind == ActionKind::RemoveNode);
    if !removals.is_empty() {
        let mut claimed = Vec::new();
        for a in removals {
            let key = a.node.to_ascii_lowercase();
            if !sh.executing.lock().is_ok_and(|mut ex| ex.insert(key)) {
                continue;
            }
            if zombies.contains(&a.node) {
                tracing::warn!(pool = %spec.name, node = %a.node, "Batch node never registered: replacing it");
                let _ = event(
                    sh,
                    "node.zombie",
                    Some(&spec.name),
                    Some(&a.node),
                    &a.reason,
                    json!({"register_timeout_seconds": spec.bootstrap.as_ref().map(|b| b.register_timeout_seconds)}),
                )
                .await;
            }
            match sh
                .store
                .open_intent_with_event(
                    &NewIntent {
                        pool: spec.name.clone(),
                        node: a.node.clone(),
                        kind: ActionKind::RemoveNode,
                        detail: json!({}),
                        reason: a.reason.clone(),
                    },
                    &decision(&spec.name, &a, json!({})),
                )
                .await
            {
                Ok((id, _event)) => claimed.push((a, id)),
                Err(e) => {
                    release(sh, &a.node);
                    for (a, _) in &claimed {
                        release(sh, &a.node);
                    }
                    return Err(e);
                }
            }
        }
        if !claimed.is_empty() {
            let sh2 = sh.clone();
            let spec = spec.clone();
            tokio::spawn(async move {
                let permit = sh2.permits.clone().acquire_owned().await;
                remove_nodes(&sh2, &spec, &claimed).await;
                drop(permit);
                for (a, _) in &claimed {
                    release(&sh2, &a.node);
                }
                sh2.wake.notify_one();
            });
        }
    }
    // At most one pool write per activation: the planner never asks for two.
    let rotation = rotate_enroll_token.then(|| Action {
        kind: ActionKind::RotateEnrollToken,
        node: pool_intent_node(&spec.name),
        size: None,
        priority: None,
        targets: None,
        reason: format!(
            "the enrollment token in the start task is {} s old or not ours ([bootstrap] enroll_token_rotate_seconds)",
            sh.cfg.enrollment.rotate_every.as_secs()
        ),
    });
    if let Some(a) = pool_ops.into_iter().next().or(rotation) {
        let node = pool_intent_node(&spec.name);
        if !sh
            .executing
            .lock()
            .is_ok_and(|mut ex| ex.insert(node.to_ascii_lowercase()))
        {
            return Ok(());
        }
        let detail = json!({"targets": a.targets, "batch_pool": batch_pool_name(spec)});
        let intent = match sh
            .store
            .open_intent_with_event(
                &NewIntent {
                    pool: spec.name.clone(),
                    node: node.clone(),
                    kind: a.kind,
                    detail: detail.clone(),
                    reason: a.reason.clone(),
                },
                &decision(&spec.name, &a, detail),
            )
            .await
        {
            Ok((id, _event)) => id,
            Err(e) => {
                release(sh, &node);
                return Err(e);
            }
        };
        let sh2 = sh.clone();
        let spec = spec.clone();
        let owner = owner.to_owned();
        let generation = record.generation;
        tokio::spawn(async move {
            let permit = sh2.permits.clone().acquire_owned().await;
            let result = pool_write(&sh2, &spec, &a, intent, &owner).await;
            drop(permit);
            finish_pool_write(&sh2, &spec, generation, &a, intent, result).await;
            release(&sh2, &node);
            sh2.wake.notify_one();
        });
    }
    Ok(())
}

/// The decision event written with a Batch write's intent, as the VM executor's are
/// (`plan.removenode`, `plan.resizepool`...): a crash keeps both or neither.
fn decision(pool: &str, a: &Action, data: Value) -> NewEvent {
    NewEvent {
        kind: format!("plan.{}", verb_of(a.kind)),
        pool: Some(pool.to_owned()),
        node: (a.kind == ActionKind::RemoveNode).then(|| a.node.clone()),
        actor: "controller".into(),
        message: a.reason.clone(),
        data,
    }
}

fn release(sh: &Shared, node: &str) {
    if let Ok(mut ex) = sh.executing.lock() {
        ex.remove(&node.to_ascii_lowercase());
    }
}

/// What a pool write did, for its event.
enum Done {
    Created,
    Adopted,
    Resized,
    Stopped,
    Deleted,
    Rotated,
}

async fn pool_write(
    sh: &Shared,
    spec: &PoolSpec,
    a: &Action,
    intent: i64,
    owner: &str,
) -> azure::Result<Done> {
    let tg = target(sh, spec)
        .ok_or_else(|| config_err(format!("pool {} has no batch section", spec.name)))?;
    let targets = a.targets.unwrap_or_default();
    match a.kind {
        ActionKind::CreatePool => {
            // GET before PUT: the name never changes, so whatever exists is ours to adopt.
            if sh
                .arm
                .get_pool(&tg.rg, tg.account, tg.name)
                .await?
                .is_some()
            {
                return Ok(Done::Adopted);
            }
            // With a bootstrap section, the start task enrolls each node with a token made
            // for this pool; its hash is stored before the pool can exist.
            let enroll = match &spec.bootstrap {
                Some(_) => {
                    let token = bootstrap::generate_pool_token();
                    sh.store
                        .set_pool_enroll_token(&spec.name, &bootstrap::sha256_hex(&token), now())
                        .await
                        .map_err(|e| {
                            config_err(format!("cannot store the enrollment token: {e}"))
                        })?;
                    Some(token)
                }
                None => None,
            };
            let enroll = enroll
                .as_deref()
                .map(|token| (sh.cfg.bootstrap.api_url.as_str(), token));
            let model = pool_model(spec, owner, targets, enroll)
                .ok_or_else(|| config_err("cannot build the Batch pool"))?;
            sh.arm
                .create_pool(&tg.rg, tg.account, tg.name, &model)
                .await?;
            Ok(Done::Created)
        }
        ActionKind::ResizePool => {
            sh.arm
                .resize_pool(
                    &tg.rg,
                    tg.account,
                    tg.name,
                    targets.dedicated,
                    targets.spot,
                    NodeDeallocationOption::TASK_COMPLETION,
                )
                .await?;
            Ok(Done::Resized)
        }
        ActionKind::StopResize => {
            sh.arm.stop_pool_resize(&tg.rg, tg.account, tg.name).await?;
            Ok(Done::Stopped)
        }
        ActionKind::RotateEnrollToken => {
            // Stored before the start task can carry it; the tokens it replaces keep working
            // until it is seen published, then `overlap` longer.
            let token = bootstrap::generate_pool_token();
            let hash = bootstrap::sha256_hex(&token);
            let store_failed = |e: store::StoreError| {
                config_err(format!("cannot store the enrollment token: {e}"))
            };
            sh.store
                .add_pool_enroll_token(&spec.name, &hash, now())
                .await
                .map_err(store_failed)?;
            let task = enroll_start_task(spec.os, &sh.cfg.bootstrap.api_url, &token);
            sh.arm
                .update_pool_start_task(&tg.rg, tg.account, tg.name, &task)
                .await?;
            sh.store
                .observe_enroll_token(&spec.name, &hash, now(), secs(sh.cfg.enrollment.overlap))
                .await
                .map_err(store_failed)?;
            Ok(Done::Rotated)
        }
        ActionKind::DeletePool => {
            if let Some(op) = sh.arm.delete_pool(&tg.rg, tg.account, tg.name).await? {
                if let Ok(v) = serde_json::to_value(&op) {
                    let _ = sh.store.set_intent_operation(intent, &v).await;
                }
                op.wait(&sh.arm).await?;
            }
            Ok(Done::Deleted)
        }
        other => Err(config_err(format!("{other:?} is not a Batch pool write"))),
    }
}

async fn finish_pool_write(
    sh: &Shared,
    spec: &PoolSpec,
    generation: i64,
    a: &Action,
    intent: i64,
    result: azure::Result<Done>,
) {
    let pool = &spec.name;
    let batch_pool = batch_pool_name(spec);
    match result {
        Ok(done) => {
            let _ = sh
                .store
                .close_intent(intent, &IntentOutcome::Succeeded)
                .await;
            crate::backoff::succeeded(sh, pool, a.kind).await;
            let (kind, message) = match done {
                Done::Created => (
                    "batch.pool_created",
                    format!("Batch pool {batch_pool} created: {}", a.reason),
                ),
                Done::Adopted => (
                    "batch.pool_adopted",
                    format!("Batch pool {batch_pool} already exists: adopted, not created again"),
                ),
                Done::Resized => ("batch.resized", a.reason.clone()),
                Done::Stopped => ("batch.resize_stopped", a.reason.clone()),
                Done::Deleted => (
                    "batch.pool_deleted",
                    format!("Batch pool {batch_pool} deleted: {}", a.reason),
                ),
                Done::Rotated => (
                    "batch.enroll_token_rotated",
                    format!(
                        "the start task of Batch pool {batch_pool} has a new enrollment token; the previous one works {} s more",
                        sh.cfg.enrollment.overlap.as_secs()
                    ),
                ),
            };
            if matches!(done, Done::Deleted) {
                // The next observation starts from nothing; the endpoint stays valid.
                if let Ok(Some(mut s)) = sh.store.get_batch_state(pool).await {
                    s.observed = None;
                    s.empty_since = None;
                    s.reported_resize = None;
                    let _ = sh.store.put_batch_state(&s).await;
                }
            }
            let _ = event(
                sh,
                kind,
                Some(pool),
                None,
                &message,
                json!({"targets": a.targets}),
            )
            .await;
        }
        Err(e) => {
            let verb = format!("{:?}", a.kind);
            tracing::warn!(pool = %pool, action = %verb, code = %e.code, error = %e, "Batch pool write failed");
            let _ = sh
                .store
                .close_intent(
                    intent,
                    &IntentOutcome::Failed {
                        code: e.code.clone(),
                        message: e.message.clone(),
                    },
                )
                .await;
            let _ = sh
                .store
                .put_task_status(
                    &format!("pool-error:{pool}"),
                    &json!({"code": e.code, "message": format!("{verb} of Batch pool {batch_pool}: {}", e.message), "at": now()}),
                )
                .await;
            let _ = event(
                sh,
                "arm.error",
                Some(pool),
                None,
                &format!("{verb} of Batch pool {batch_pool} failed: {}: {}", e.code, e.message),
                json!({"code": e.code, "status": e.status, "action": verb, "request_id": e.request_id}),
            )
            .await;
            // Creates, resizes and deletes of the Batch pool back off as VM writes do
            // (permanent: Blocked with the fix; otherwise BackingOff), instead of being tried
            // again every activation.
            crate::backoff::failed(sh, pool, a.kind, generation, &e).await;
        }
    }
}

async fn remove_nodes(sh: &Shared, spec: &PoolSpec, claimed: &[(Action, i64)]) {
    let pool = &spec.name;
    let result = async {
        let tg = target(sh, spec)
            .ok_or_else(|| config_err(format!("pool {pool} has no batch section")))?;
        let endpoint = sh
            .store
            .get_batch_state(pool)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.account_endpoint)
            .ok_or_else(|| config_err("the Batch account endpoint is not known yet"))?;
        let ids: Vec<String> = claimed.iter().map(|(a, _)| a.node.clone()).collect();
        sh.arm
            .remove_batch_nodes(
                &endpoint,
                tg.name,
                &ids,
                NodeDeallocationOption::TASK_COMPLETION,
            )
            .await
    }
    .await;
    let outcome = match &result {
        Ok(()) => IntentOutcome::Succeeded,
        Err(e) => IntentOutcome::Failed {
            code: e.code.clone(),
            message: e.message.clone(),
        },
    };
    for (a, id) in claimed {
        let _ = sh.store.close_intent(*id, &outcome).await;
        if result.is_ok() {
            // Leaving: the next observation removes the row once Batch lists it no more.
            if let Ok(Some(mut vm)) = sh.store.get_vm(&a.node).await {
                vm.state = NodeState::Deleting;
                vm.power_state = Some("leavingpool".into());
                let _ = sh.store.upsert_vm(&vm).await;
            }
        }
    }
    let nodes: Vec<&str> = claimed.iter().map(|(a, _)| a.node.as_str()).collect();
    match result {
        Ok(()) => {
            for (a, _) in claimed {
                let _ = event(
                    sh,
                    "batch.node_removed",
                    Some(pool),
                    Some(&a.node),
                    &a.reason,
                    json!({}),
                )
                .await;
            }
        }
        Err(e) => {
            tracing::warn!(pool = %pool, code = %e.code, error = %e, "Batch node removal failed");
            let _ = sh
                .store
                .put_task_status(
                    &format!("pool-error:{pool}"),
                    &json!({"code": e.code, "message": format!("removing nodes {}: {}", nodes.join(", "), e.message), "at": now()}),
                )
                .await;
            let _ = event(
                sh,
                "arm.error",
                Some(pool),
                None,
                &format!(
                    "removing {} Batch nodes failed: {}: {}",
                    nodes.len(),
                    e.code,
                    e.message
                ),
                json!({"code": e.code, "status": e.status, "nodes": nodes}),
            )
            .await;
        }
    }
}

/// Batch pools tagged with our owner id that no pool wants (in the accounts pools name and
/// the configured one) are deleted once they have been garbage for the grace period, as VMs
/// are. Adopted pools never carry our tag, so they are never collected.
pub(crate) async fn collect_garbage(sh: &Shared, pools: &[PoolRecord], owner: &str) {
    let mut accounts: Vec<(String, String)> = Vec::new();
    let mut wanted: HashSet<String> = HashSet::new();
    for r in pools {
        if let Some(tg) = target(sh, &r.spec) {
            let acct = (tg.rg.to_ascii_lowercase(), tg.account.to_ascii_lowercase());
            wanted.insert(format!(
                "{}/{}/{}",
                acct.0,
                acct.1,
                tg.name.to_ascii_lowercase()
            ));
            if !accounts.contains(&acct) {
                accounts.push(acct);
            }
        }
    }
    if let Some(a) = &sh.cfg.batch_account {
        let acct = (
            sh.cfg.resource_group.to_ascii_lowercase(),
            a.to_ascii_lowercase(),
        );
        if !accounts.contains(&acct) {
            accounts.push(acct);
        }
    }
    let mut garbage = HashSet::new();
    for (rg, account) in accounts {
        let listed = match sh.arm.list_pools(&rg, &account).collect_all().await {
            Ok(p) => p,
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(account = %account, error = %e, "cannot list Batch pools for garbage collection");
                }
                continue;
            }
        };
        for p in listed {
            let Some(name) = p.name.clone() else { continue };
            let key = format!("{rg}/{account}/{}", name.to_ascii_lowercase());
            if wanted.contains(&key) || !owned_by(&p, owner) {
                continue;
            }
            let deleting = p
                .properties
                .as_ref()
                .and_then(|p| p.provisioning_state.as_deref())
                .is_some_and(|s| s.eq_ignore_ascii_case("Deleting"));
            let gc_key = format!("batchpool:{key}");
            garbage.insert(gc_key.clone());
            if deleting || !crate::gc::grace_passed(sh, &gc_key) {
                continue;
            }
            let tag_pool = p.tags.as_ref().and_then(|t| t.get(TAG_POOL).cloned());
            match sh.arm.delete_pool(&rg, &account, &name).await {
                Ok(_) => {
                    let _ = event(
                        sh,
                        "gc.batch_pool",
                        tag_pool.as_deref(),
                        None,
                        &format!("deleting Batch pool {name} in account {account}: ours, and no pool wants it"),
                        json!({"owner": owner}),
                    )
                    .await;
                }
                Err(e) => {
                    tracing::warn!(pool = %name, error = %e, "garbage collection of a Batch pool failed")
                }
            }
        }
    }
    crate::gc::forget_except(sh, "batchpool:", &garbage);
}

/// Whether recovery resolves this intent kind by observation rather than by looking up a VM.
pub(crate) fn is_batch_kind(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::CreatePool
            | ActionKind::ResizePool
            | ActionKind::RemoveNode
            | ActionKind::DeletePool
            | ActionKind::StopResize
            | ActionKind::RotateEnrollToken
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_tokens_rotate_when_old_or_not_ours_and_windows_start_at_allocation() {
        let day = std::time::Duration::from_secs(86_400);
        assert!(!enroll_token_due(Some(1_000), 1_000 + 86_399, day));
        assert!(enroll_token_due(Some(1_000), 1_000 + 86_400, day));
        assert!(enroll_token_due(None, 0, day));
        let window = std::time::Duration::from_secs(1800);
        let node: ComputeNode = serde_json::from_value(
            json!({"id": "tvm-1", "allocationTime": "2026-01-01T10:00:00Z"}),
        )
        .unwrap();
        assert_eq!(enroll_deadline(&node, 5, window), 1_767_261_600 + 1800);
        let unknown: ComputeNode = serde_json::from_value(json!({"id": "tvm-2"})).unwrap();
        assert_eq!(enroll_deadline(&unknown, 5, window), 1805);
    }

    #[test]
    fn the_pool_body_carries_the_spec() {
        let spec: PoolSpec = serde_json::from_value(json!({
            "name": "maya", "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "priority": "spot",
            "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 20, "tags": {"show": "ep1"},
            "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04", "task_slots_per_node": 2,
                      "subnet_id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/render"},
            "licenses": [{"name": "arnold", "variable": "ADSKFLEX_LICENSE_FILE", "server": "27000@lic"}]
        }))
        .unwrap();
        let pool = pool_model(
            &spec,
            "owner-1",
            BatchTargets {
                dedicated: 1,
                spot: 3,
            },
            None,
        )
        .unwrap();
        let v = serde_json::to_value(&pool).unwrap();
        assert_eq!(v["tags"][TAG_OWNER], "owner-1");
        assert_eq!(v["tags"][TAG_POOL], "maya");
        assert_eq!(v["tags"]["show"], "ep1");
        let p = &v["properties"];
        assert_eq!(p["vmSize"], "Standard_D4s_v5");
        assert_eq!(p["taskSlotsPerNode"], 2);
        assert_eq!(
            p["scaleSettings"]["fixedScale"],
            json!({"targetDedicatedNodes": 1, "targetLowPriorityNodes": 3, "resizeTimeout": "PT15M", "nodeDeallocationOption": "TaskCompletion"})
        );
        assert_eq!(
            p["deploymentConfiguration"]["virtualMachineConfiguration"]["imageReference"],
            json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
        );
        assert_eq!(
            p["startTask"]["environmentSettings"],
            json!([{"name": "ADSKFLEX_LICENSE_FILE", "value": "27000@lic"}])
        );
        assert!(
            p["startTask"]["commandLine"]
                .as_str()
                .unwrap()
                .contains("ADSKFLEX_LICENSE_FILE")
        );
        assert!(
            p["networkConfiguration"]["subnetId"]
                .as_str()
                .unwrap()
                .ends_with("/subnets/render")
        );
        assert!(p.get("applicationLicenses").is_none());
        assert!(owned_by(&pool, "owner-1"));
        assert!(!owned_by(&pool, "someone-else"));
    }
}
