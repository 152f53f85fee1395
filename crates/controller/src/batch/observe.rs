//! Observation of a Batch pool: the subscription's accounts, the pool (management plane) and
//! its nodes (data plane) into the store, resize errors reported once, and the age of the
//! enrollment token the start task carries.

use std::collections::{HashMap, HashSet};

use arm_model::batch::{ComputeNode, Pool};
use azure::{ArmError, ErrorKind};
use rb_core::batch::{batch_pool_name, node_state};
use rb_core::task::{BatchAccounts, BatchObservation, PoolError, Task};
use rb_core::{
    BatchPoolView, BatchTargets, NodeState, Offering, Priority, ResizeErrorView, Unavailable,
    UnavailableReason, UnixSeconds,
};
use serde_json::json;
use store::{BatchState, PoolRecord, VmRecord};

use super::{decode_err, owned_by, secs, target};
use crate::error::{self, chain};
use crate::execute::event;
use crate::{Shared, bootstrap};

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
            tracing::warn!(code = %e.code, error = %chain(&e), "cannot list the Batch accounts");
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
            &Task::batch_accounts(),
            &BatchAccounts {
                observed_at: crate::now(),
                default_resource_group: sh.cfg.resource_group.clone(),
                accounts: names,
            },
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
) -> error::Result<bool> {
    let spec = &record.spec;
    let Some(tg) = target(sh, spec) else {
        return Ok(false);
    };
    let mut state = sh
        .store
        .get_batch_state(&spec.name)
        .await?
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
                )
                .into());
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
    sync_nodes(sh, record, &observed, &mut state, t).await?;
    let rotate = match (&observed.pool, spec.bootstrap.is_some() && owned) {
        (Some(p), true) => {
            let published = published_enroll_token(p).map(|tk| bootstrap::sha256_hex(&tk));
            let made = match &published {
                Some(hash) => {
                    sh.store
                        .observe_enroll_token(&spec.name, hash, t, secs(sh.cfg.enrollment.overlap))
                        .await?
                }
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
    sh.store.put_batch_state(&state).await?;
    let preempted = observed
        .nodes
        .iter()
        .filter(|n| n.state.as_deref() == Some("preempted"))
        .count();
    let summary = BatchObservation {
        account: tg.account.to_owned(),
        pool: tg.name.to_owned(),
        exists: v.is_some(),
        owned: v.as_ref().map(|v| v.owned),
        allocation_state: observed
            .pool
            .as_ref()
            .and_then(|p| p.properties.as_ref())
            .and_then(|p| p.allocation_state.clone()),
        targets: v.as_ref().map(|v| v.targets),
        current: v.as_ref().map(|v| v.current),
        resize_errors: v
            .as_ref()
            .map(|v| v.resize_errors.clone())
            .unwrap_or_default(),
        preempted: preempted as u64,
        preempted_total: state.preempted_total,
        empty_since: state.empty_since,
        observed_at: t,
    };
    let _ = sh
        .store
        .put_task_status(&Task::batch_pool(&spec.name), &summary)
        .await;
    Ok(rotate)
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
                &Task::pool_error(name),
                &PoolError {
                    code: code.to_owned(),
                    message: format!(
                        "resize of Batch pool {}: {}",
                        batch_pool_name(&record.spec),
                        e.message
                    ),
                    at: t,
                },
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
}
