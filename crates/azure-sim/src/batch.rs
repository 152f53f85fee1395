//! `Microsoft.Batch`: accounts and pools on the management plane (ARM), and the data plane
//! calls a scaler needs (list nodes, remove nodes), served under `/batch/{account}`.
//!
//! A pool moves toward its fixed-scale targets over time: each new node is `creating` for
//! `latency_ms.batch_node`, then `idle`; a removed node is `leavingpool` for the same time,
//! then gone. The pool is `Resizing` while any node is in transit. Nodes that the account's
//! core quota or the size's capacity cannot hold are not created, and the reason is left in
//! `resizeOperationStatus.errors`, as Batch does.

use std::time::{Duration, Instant};

use arm_model::ErrorDetail;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::arm::{Ctx, truncate, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::resources::require_location;
use crate::state::{
    BatchNode, BootScript, Effect, Kind, PoolState, RType, Res, State, key, rfc3339,
};
use arm_model::sizes as catalog;

const NS: &str = "Microsoft.Batch";

pub const APPLICATION_LICENSES_RETIRED: &str = "Application licenses (pay-per-use licensing of Maya, 3ds Max, Arnold and \
V-Ray on Batch pools) were retired on 29 February 2024 and can no longer be requested. Remove applicationLicenses from \
the pool and license the renderers from your own license server (for example through environment variables set by the \
start task).";

fn node_state_time(n: &BatchNode) -> String {
    rfc3339(n.state_time)
}

impl State {
    pub fn batch_account_put(
        &mut self,
        ctx: &mut Ctx,
        rg: &str,
        id: &str,
        name: &str,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        validate_tags(&body)?;
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            || name.len() < 3
        {
            return Err(ArmErr::bad_request(
                "AccountNameInvalid",
                format!(
                    "Batch account name '{}' must be 3 to 24 lowercase letters and digits.",
                    truncate(name, 40)
                ),
            ));
        }
        if let Some(existing) = self.get_mut(id) {
            if let Some(tags) = body.get("tags") {
                existing.body["tags"] = tags.clone();
            }
            let r = existing.clone();
            return Ok(Reply::ok(self.render(&r, false)));
        }
        require_location(&body)?;
        let mut stored = body.clone();
        let q = &self.cfg.quota;
        stored["properties"] = json!({
            "accountEndpoint": format!("{}/batch/{}", ctx.host, name),
            "nodeManagementEndpoint": format!("{}/batch/{}", ctx.host, name),
            "poolAllocationMode": "BatchService",
            "publicNetworkAccess": "Enabled",
            "dedicatedCoreQuota": q.batch_dedicated_vcpus.unwrap_or(10_000),
            "lowPriorityCoreQuota": q.batch_spot_vcpus.unwrap_or(10_000),
            "poolQuota": 100,
            "activeJobAndJobScheduleQuota": 300,
            "dedicatedCoreQuotaPerVMFamilyEnforced": false,
        });
        self.insert(Res {
            id: id.to_owned(),
            rtype: RType::BatchAccount,
            name: name.to_owned(),
            rg: rg.to_ascii_lowercase(),
            body: stored,
            kind: Kind::Plain,
            provisioning: "Succeeded".into(),
            created: self.clock.wall(),
        });
        let rendered = self
            .get(id)
            .map(|r| self.render(r, false))
            .unwrap_or_default();
        Ok(Reply::ok(rendered))
    }

    pub fn batch_account_delete(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        id: &str,
    ) -> Result<Reply, ArmErr> {
        let Some(r) = self.get(id) else {
            return Ok(Reply::empty(StatusCode::NO_CONTENT));
        };
        let location = r.body["location"].as_str().unwrap_or_default().to_owned();
        let latency = Duration::from_millis(self.cfg.latency_ms.batch_node);
        let op = self.start_op(latency, Effect::Remove { id: id.to_owned() }, None, ctx.now);
        Ok(ctx.accepted(
            sub,
            NS,
            &location,
            &op,
            self.cfg.polling.retry_after_seconds,
        ))
    }

    /// Pool PUT (create, or update of an existing pool) and PATCH (update). Both answer 200
    /// at once with an ETag; only DELETE is long-running.
    pub fn pool_put(
        &mut self,
        ctx: &mut Ctx,
        rg: &str,
        id: &str,
        name: &str,
        account_id: &str,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        validate_tags(&body)?;
        if let Err(e) = serde_json::from_value::<arm_model::batch::Pool>(body.clone()) {
            return Err(ArmErr::invalid_content(format!(
                "The request content was invalid and could not be deserialized: '{e}'."
            )));
        }
        let props = &body["properties"];
        if props["applicationLicenses"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return Err(
                ArmErr::bad_request("InvalidPropertyValue", APPLICATION_LICENSES_RETIRED)
                    .target("applicationLicenses"),
            );
        }
        if props
            .pointer("/scaleSettings/autoScale")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ArmErr::bad_request(
                "InvalidPropertyValue",
                "The simulator supports fixedScale only; renderburst sizes pools directly.",
            )
            .target("scaleSettings.autoScale"));
        }
        let fixed = props.pointer("/scaleSettings/fixedScale");
        let target = |k: &str| fixed.and_then(|f| f[k].as_u64());
        let dealloc = fixed
            .and_then(|f| f["nodeDeallocationOption"].as_str())
            .map(str::to_owned);
        let now = ctx.now;
        let wall = self.clock.wall();
        let existing_etag = self.get(id).and_then(|r| match &r.kind {
            Kind::Pool(p) => Some(p.etag),
            _ => None,
        });
        if let (Some(want), Some(have)) = (&ctx.if_match, existing_etag)
            && want != "*"
            && *want != etag(have)
        {
            return Err(ArmErr::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "The ETag in If-Match does not match the pool's current ETag.",
            ));
        }
        if existing_etag.is_none() {
            if ctx.method == Method::PATCH {
                return Err(ArmErr::not_found(RType::BatchPool.arm_type(), name, rg));
            }
            let size_name = props["vmSize"].as_str().ok_or_else(|| {
                ArmErr::bad_request("InvalidPropertyValue", "The pool's vmSize is required.")
                    .target("vmSize")
            })?;
            let size = catalog::lookup(size_name).ok_or_else(|| {
                ArmErr::bad_request(
                    "InvalidPropertyValue",
                    format!(
                        "The VM size '{}' is not supported by Batch in this region.",
                        truncate(size_name, 80)
                    ),
                )
                .target("vmSize")
            })?;
            if props
                .pointer("/deploymentConfiguration/virtualMachineConfiguration")
                .is_none()
            {
                return Err(ArmErr::bad_request(
                    "InvalidPropertyValue",
                    "The pool needs deploymentConfiguration.virtualMachineConfiguration.",
                )
                .target("deploymentConfiguration"));
            }
            let mut stored = body.clone();
            stored["properties"]["vmSize"] = json!(size.name);
            self.insert(Res {
                id: id.to_owned(),
                rtype: RType::BatchPool,
                name: name.to_owned(),
                rg: rg.to_ascii_lowercase(),
                body: stored,
                kind: Kind::Pool(Box::new(PoolState {
                    account_id: account_id.to_owned(),
                    vm_size: size.name.clone(),
                    vcpus: size.vcpus,
                    target_dedicated: 0,
                    target_spot: 0,
                    dealloc_option: "Requeue".into(),
                    nodes: Vec::new(),
                    resize_errors: Vec::new(),
                    resize_start: wall,
                    allocation_state: "Steady",
                    allocation_time: wall,
                    etag: 1,
                    next_node: 1,
                    deleting: false,
                    created: wall,
                    modified: wall,
                })),
                provisioning: "Succeeded".into(),
                created: wall,
            });
        } else {
            let deleting = self.get(id).and_then(|r| match &r.kind {
                Kind::Pool(p) => Some(p.deleting),
                _ => None,
            });
            if deleting == Some(true) {
                return Err(ArmErr::conflict(
                    "PoolBeingDeleted",
                    "The specified pool has been marked for deletion and is being reclaimed.",
                ));
            }
            if let Some(r) = self.get_mut(id) {
                if let Some(tags) = body.get("tags") {
                    r.body["tags"] = tags.clone();
                }
                for k in ["startTask", "metadata", "scaleSettings", "displayName"] {
                    if let Some(v) = props.get(k) {
                        r.body["properties"][k] = v.clone();
                    }
                }
            }
        }
        if let Some(p) = self.get_mut(id).and_then(Res::pool_mut) {
            p.etag += 1;
            p.modified = wall;
            if let Some(d) = dealloc {
                p.dealloc_option = d;
            }
        }
        if fixed.is_some() {
            let (cur_d, cur_s) = self
                .get(id)
                .and_then(|r| match &r.kind {
                    Kind::Pool(p) => Some((p.target_dedicated, p.target_spot)),
                    _ => None,
                })
                .unwrap_or((0, 0));
            self.resize_pool(
                id,
                target("targetDedicatedNodes").unwrap_or(cur_d),
                target("targetLowPriorityNodes").unwrap_or(cur_s),
                now,
            );
        }
        let r = self.get(id).ok_or_else(ArmErr::internal)?;
        let tag = match &r.kind {
            Kind::Pool(p) => etag(p.etag),
            _ => String::new(),
        };
        Ok(Reply::ok(self.render(r, false)).header("etag", tag))
    }

    pub fn pool_delete(&mut self, ctx: &mut Ctx, sub: &str, id: &str) -> Result<Reply, ArmErr> {
        let Some(r) = self.get(id) else {
            return Ok(Reply::empty(StatusCode::NO_CONTENT));
        };
        let location = self.cfg.location.clone();
        let running = self.ops.values().find(|o| {
            matches!(o.status, crate::state::OpStatus::InProgress)
                && matches!(&o.effect, Effect::PoolDelete { pool } if key(pool) == key(&r.id))
        });
        let op = match running {
            Some(o) => o.id.clone(),
            None => {
                if let Some(p) = self.get_mut(id).and_then(Res::pool_mut) {
                    p.deleting = true;
                }
                let latency = Duration::from_millis(self.cfg.latency_ms.batch_node);
                self.start_op(
                    latency,
                    Effect::PoolDelete {
                        pool: id.to_owned(),
                    },
                    None,
                    ctx.now,
                )
            }
        };
        let (_, loc) = ctx.op_urls(sub, NS, &location, &op);
        Ok(Reply::empty(StatusCode::ACCEPTED)
            .header("location", loc)
            .header(
                "retry-after",
                self.cfg.polling.retry_after_seconds.to_string(),
            ))
    }

    pub fn pool_action(
        &mut self,
        ctx: &mut Ctx,
        id: &str,
        name: &str,
        rg: &str,
        action: &str,
    ) -> Result<Reply, ArmErr> {
        if self.get(id).is_none() {
            return Err(ArmErr::not_found(RType::BatchPool.arm_type(), name, rg));
        }
        if action == "stopresize" {
            // Keep the nodes that exist; the targets become what is there now.
            let wall = self.clock.wall();
            if let Some(p) = self.get_mut(id).and_then(Res::pool_mut) {
                p.nodes.retain(|n| n.state != "creating");
                p.target_dedicated = p
                    .nodes
                    .iter()
                    .filter(|n| n.dedicated && n.state != "leavingpool")
                    .count() as u64;
                p.target_spot = p
                    .nodes
                    .iter()
                    .filter(|n| !n.dedicated && n.state != "leavingpool")
                    .count() as u64;
                p.resize_errors.push(ErrorDetail {
                    code: "ResizeStopped".into(),
                    message: "The resize operation was stopped by the user.".into(),
                    ..Default::default()
                });
                p.etag += 1;
                p.modified = wall;
            }
            self.advance_pools(ctx.now);
        }
        let r = self.get(id).ok_or_else(ArmErr::internal)?;
        Ok(Reply::ok(self.render(r, false)))
    }

    /// Moves a pool toward new targets: new nodes within quota and capacity, surplus nodes
    /// leave (newest first).
    pub fn resize_pool(&mut self, id: &str, dedicated: u64, spot: u64, now: Instant) {
        let latency = Duration::from_millis(self.cfg.latency_ms.batch_node);
        let wall = self.clock.wall();
        let Some(pool) = self.get(id).and_then(|r| match &r.kind {
            Kind::Pool(p) => Some((**p).clone()),
            _ => None,
        }) else {
            return;
        };
        // Account-wide usage of the other pools.
        let (mut used_d, mut used_s) = (0u64, 0u64);
        for (k, r) in &self.res {
            if let Kind::Pool(p) = &r.kind
                && key(&p.account_id) == key(&pool.account_id)
                && *k != key(id)
            {
                for n in p.nodes.iter().filter(|n| n.state != "leavingpool") {
                    if n.dedicated {
                        used_d += p.vcpus
                    } else {
                        used_s += p.vcpus
                    }
                }
            }
        }
        let mut errors = Vec::new();
        let mut new_nodes = Vec::new();
        let mut leaving = Vec::new();
        let mut seq = pool.next_node;
        let mut capacity_left = self
            .cfg
            .capacity_for(&pool.vm_size)
            .map(|c| c.saturating_sub(self.allocated_of_size(&pool.vm_size)));
        for dedicated_kind in [true, false] {
            let want = if dedicated_kind { dedicated } else { spot };
            let have: Vec<&BatchNode> = pool
                .nodes
                .iter()
                .filter(|n| n.dedicated == dedicated_kind && n.state != "leavingpool")
                .collect();
            let have_n = have.len() as u64;
            if want > have_n {
                let (quota, used) = if dedicated_kind {
                    (self.cfg.quota.batch_dedicated_vcpus, used_d)
                } else {
                    (self.cfg.quota.batch_spot_vcpus, used_s)
                };
                let mut addable = want - have_n;
                if let Some(q) = quota {
                    let room = q.saturating_sub(used + have_n * pool.vcpus) / pool.vcpus.max(1);
                    if room < addable {
                        addable = room;
                        errors.push(ErrorDetail {
                            code: if dedicated_kind {
                                "AccountCoreQuotaReached"
                            } else {
                                "AccountLowPriorityCoreQuotaReached"
                            }
                            .into(),
                            message: format!(
                                "The specified account has reached its {} core quota of {q}.",
                                if dedicated_kind {
                                    "dedicated"
                                } else {
                                    "low-priority (Spot)"
                                }
                            ),
                            ..Default::default()
                        });
                    }
                }
                if let Some(cap) = capacity_left.as_mut() {
                    if *cap < addable {
                        addable = *cap;
                        errors.push(ErrorDetail {
                            code: "AllocationFailed".into(),
                            message: "Desired number of dedicated and low-priority nodes could not be allocated due to a lack of capacity.".into(),
                            ..Default::default()
                        });
                    }
                    *cap -= addable;
                }
                for _ in 0..addable {
                    // Batch's shape: `tvmps_` + 64 hex digits + `_d` (dedicated) or `_p`
                    // (Spot), 72 characters in all.
                    let suffix = if dedicated_kind { "d" } else { "p" };
                    new_nodes.push(BatchNode {
                        id: format!(
                            "tvmps_{seq:016x}{}{}_{suffix}",
                            uuid::Uuid::new_v4().simple(),
                            &uuid::Uuid::new_v4().simple().to_string()[..16]
                        ),
                        dedicated: dedicated_kind,
                        state: "creating",
                        due: Some(now + latency),
                        allocation_time: wall,
                        state_time: wall,
                    });
                    seq += 1;
                }
            } else if want < have_n {
                // Nodes still being created go first, then the newest.
                let mut victims: Vec<&BatchNode> = have.clone();
                victims
                    .sort_by_key(|n| (n.state != "creating", std::cmp::Reverse(n.allocation_time)));
                for n in victims.into_iter().take((have_n - want) as usize) {
                    leaving.push(n.id.clone());
                }
            }
        }
        if let Some(p) = self.get_mut(id).and_then(Res::pool_mut) {
            p.target_dedicated = dedicated;
            p.target_spot = spot;
            p.next_node = seq;
            p.resize_errors = errors;
            p.resize_start = wall;
            for n in p.nodes.iter_mut() {
                if leaving.contains(&n.id) {
                    n.state = "leavingpool";
                    n.due = Some(now + latency);
                    n.state_time = wall;
                }
            }
            p.nodes.extend(new_nodes);
            if p.nodes.iter().any(in_transit) {
                p.allocation_state = "Resizing";
                p.allocation_time = wall;
            }
        }
    }

    /// Applies due node transitions of every pool: `creating` → `idle`, `leavingpool` → gone,
    /// `preempted` → `idle` (Batch reallocated it). The pool is Resizing while any node is
    /// being created or leaving; a preempted node being reallocated does not make it so.
    ///
    /// With `boot.enabled`, a node that came up (new, or reallocated after a preemption: a
    /// fresh machine either way) runs its pool's start task: when that is renderburst's
    /// enrollment (`RENDERBURST_API_URL` and `RENDERBURST_POOL_TOKEN` in its environment),
    /// the node enrolls and registers (see `boot`).
    pub fn advance_pools(&mut self, now: Instant) {
        let wall = self.clock.wall();
        let booting = self.cfg.boot.enabled;
        let mut boots: Vec<(String, BootScript)> = Vec::new();
        for r in self.res.values_mut() {
            let Kind::Pool(p) = &mut r.kind else { continue };
            p.nodes
                .retain(|n| !(n.state == "leavingpool" && n.due.is_some_and(|d| d <= now)));
            let enroll = if booting { enrollment(&r.body) } else { None };
            for n in p.nodes.iter_mut() {
                if matches!(n.state, "creating" | "preempted") && n.due.is_some_and(|d| d <= now) {
                    n.state = "idle";
                    n.due = None;
                    n.state_time = wall;
                    if let Some((api, token)) = &enroll {
                        boots.push((
                            n.id.clone(),
                            BootScript::Enroll {
                                url: format!("{api}/v1/nodes/{}/enroll", n.id),
                                token: token.clone(),
                            },
                        ));
                    }
                }
            }
            let state = if p.nodes.iter().any(in_transit) {
                "Resizing"
            } else {
                "Steady"
            };
            if p.allocation_state != state {
                p.allocation_state = state;
                p.allocation_time = wall;
            }
        }
        for (node, script) in boots {
            self.queue_boot(node, script);
        }
    }

    /// Preempts up to `count` Spot nodes that are up (`idle` or `running`), oldest first, of
    /// one pool or of every pool. Each is `preempted` until Batch reallocates it, after
    /// `latency_ms.eviction` plus `latency_ms.batch_node`; it keeps its id and keeps counting
    /// in `currentLowPriorityNodes`, as in Azure. Returns the preempted node ids.
    pub fn preempt_batch_nodes(
        &mut self,
        pool: Option<&str>,
        count: usize,
        now: Instant,
    ) -> Vec<String> {
        let latency = Duration::from_millis(
            self.cfg
                .latency_ms
                .eviction
                .saturating_add(self.cfg.latency_ms.batch_node),
        );
        let wall = self.clock.wall();
        let mut candidates: Vec<(OffsetDateTime, String, String)> = Vec::new();
        for r in self.res.values() {
            let Kind::Pool(p) = &r.kind else { continue };
            if pool.is_some_and(|want| !r.name.eq_ignore_ascii_case(want)) || p.deleting {
                continue;
            }
            for n in &p.nodes {
                if !n.dedicated && matches!(n.state, "idle" | "running") {
                    candidates.push((n.allocation_time, r.id.clone(), n.id.clone()));
                }
            }
        }
        candidates.sort();
        candidates.truncate(count);
        let mut done = Vec::new();
        for (_, pool_id, node_id) in candidates {
            if let Some(p) = self.get_mut(&pool_id).and_then(Res::pool_mut)
                && let Some(n) = p.nodes.iter_mut().find(|n| n.id == node_id)
            {
                n.state = "preempted";
                n.due = Some(now + latency);
                n.state_time = wall;
                done.push(node_id);
            }
        }
        self.stats.batch_preemptions += done.len() as u64;
        done
    }

    pub fn render_pool(&self, p: &PoolState, out: &mut Value) {
        let count = |dedicated: bool| {
            p.nodes
                .iter()
                .filter(|n| n.dedicated == dedicated && n.state != "creating")
                .count()
        };
        let props = &mut out["properties"];
        props["provisioningState"] = json!(if p.deleting { "Deleting" } else { "Succeeded" });
        props["allocationState"] = json!(p.allocation_state);
        props["allocationStateTransitionTime"] = json!(rfc3339(p.allocation_time));
        props["creationTime"] = json!(rfc3339(p.created));
        props["lastModified"] = json!(rfc3339(p.modified));
        props["currentDedicatedNodes"] = json!(count(true));
        props["currentLowPriorityNodes"] = json!(count(false));
        props["scaleSettings"] = json!({"fixedScale": {
            "targetDedicatedNodes": p.target_dedicated,
            "targetLowPriorityNodes": p.target_spot,
            "resizeTimeout": "PT15M",
            "nodeDeallocationOption": p.dealloc_option,
        }});
        props["resizeOperationStatus"] = json!({
            "targetDedicatedNodes": p.target_dedicated,
            "targetLowPriorityNodes": p.target_spot,
            "resizeTimeout": "PT15M",
            "nodeDeallocationOption": p.dealloc_option,
            "startTime": rfc3339(p.resize_start),
            "errors": p.resize_errors,
        });
        out["etag"] = json!(etag(p.etag));
    }

    /// The Batch data plane: `/batch/{account}/pools/{pool}/nodes` and `…/removenodes`.
    pub fn batch_data_plane(&mut self, ctx: &mut Ctx) -> Result<Reply, BatchErr> {
        let segs: Vec<String> = ctx.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
        // segs: ["batch", account, "pools", pool, ...]
        if segs.len() < 4 || segs[2] != "pools" {
            return Err(BatchErr::new(
                StatusCode::NOT_FOUND,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
            ));
        }
        let account = &ctx.segs[1];
        let pool_name = &ctx.segs[3];
        let pool_id = self
            .res
            .values()
            .find(|r| {
                r.rtype == RType::BatchPool
                    && r.name.eq_ignore_ascii_case(pool_name)
                    && matches!(&r.kind, Kind::Pool(p) if p.account_id.rsplit('/').next().is_some_and(|a| a.eq_ignore_ascii_case(account)))
            })
            .map(|r| r.id.clone())
            .ok_or_else(|| BatchErr::new(StatusCode::NOT_FOUND, "PoolNotFound", "The specified pool does not exist."))?;
        match (
            ctx.method.clone(),
            segs.get(4).map(String::as_str),
            segs.len(),
        ) {
            (Method::GET, Some("nodes"), 5) => {
                let r = self.get(&pool_id).ok_or_else(|| {
                    BatchErr::new(
                        StatusCode::NOT_FOUND,
                        "PoolNotFound",
                        "The specified pool does not exist.",
                    )
                })?;
                let Kind::Pool(p) = &r.kind else {
                    unreachable!("checked above")
                };
                let items: Vec<Value> = p
                    .nodes
                    .iter()
                    .map(|n| {
                        json!({
                            "id": n.id,
                            "url": format!("{}/batch/{account}/pools/{pool_name}/nodes/{}", ctx.base, n.id),
                            "state": n.state,
                            "schedulingState": "enabled",
                            "stateTransitionTime": node_state_time(n),
                            "allocationTime": rfc3339(n.allocation_time),
                            "vmSize": p.vm_size.to_ascii_lowercase(),
                            "isDedicated": n.dedicated,
                            "ipAddress": node_ip(&n.id),
                            "runningTasksCount": 0,
                            "runningTaskSlotsCount": 0,
                            "totalTasksRun": 0,
                        })
                    })
                    .collect();
                Ok(Reply::ok(ctx.page(
                    items,
                    self.cfg.paging.page_size,
                    "odata.nextLink",
                )))
            }
            (Method::POST, Some("removenodes"), 5) => {
                let body: Value = serde_json::from_slice(&ctx.body).map_err(|e| {
                    BatchErr::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestBody",
                        &format!("The request body is invalid: {e}"),
                    )
                })?;
                let params: arm_model::batch::NodeRemoveParameter = serde_json::from_value(body)
                    .map_err(|e| {
                        BatchErr::new(
                            StatusCode::BAD_REQUEST,
                            "InvalidRequestBody",
                            &format!("The request body is invalid: {e}"),
                        )
                    })?;
                if params.node_list.is_empty() || params.node_list.len() > 100 {
                    return Err(BatchErr::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidPropertyValue",
                        "nodeList must name 1 to 100 nodes.",
                    )
                    .value("PropertyName", "nodeList"));
                }
                let now = ctx.now;
                let latency = Duration::from_millis(self.cfg.latency_ms.batch_node);
                let wall = self.clock.wall();
                let p = self
                    .get_mut(&pool_id)
                    .and_then(Res::pool_mut)
                    .ok_or_else(|| {
                        BatchErr::new(
                            StatusCode::NOT_FOUND,
                            "PoolNotFound",
                            "The specified pool does not exist.",
                        )
                    })?;
                if p.allocation_state != "Steady" {
                    return Err(BatchErr::new(
                        StatusCode::CONFLICT,
                        "PoolNotSteady",
                        "The specified pool is not in a steady allocation state.",
                    ));
                }
                for id in &params.node_list {
                    if !p
                        .nodes
                        .iter()
                        .any(|n| n.id.eq_ignore_ascii_case(id) && n.state != "leavingpool")
                    {
                        return Err(BatchErr::new(
                            StatusCode::NOT_FOUND,
                            "NodeNotFound",
                            &format!("The node {} does not exist in the pool.", truncate(id, 80)),
                        ));
                    }
                }
                for n in p.nodes.iter_mut() {
                    if params
                        .node_list
                        .iter()
                        .any(|id| n.id.eq_ignore_ascii_case(id))
                    {
                        n.state = "leavingpool";
                        n.due = Some(now + latency);
                        n.state_time = wall;
                        if n.dedicated {
                            p.target_dedicated = p.target_dedicated.saturating_sub(1);
                        } else {
                            p.target_spot = p.target_spot.saturating_sub(1);
                        }
                    }
                }
                if let Some(opt) = params.node_deallocation_option {
                    p.dealloc_option = opt;
                }
                p.allocation_state = "Resizing";
                p.allocation_time = wall;
                p.resize_errors.clear();
                p.etag += 1;
                Ok(Reply::empty(StatusCode::ACCEPTED).header(
                    "dataserviceid",
                    format!("{}/batch/{account}/pools/{pool_name}/removenodes", ctx.base),
                ))
            }
            _ => Err(BatchErr::new(
                StatusCode::NOT_FOUND,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
            )),
        }
    }
}

/// A node being created or leaving: the pool is Resizing while it has one.
fn in_transit(n: &BatchNode) -> bool {
    n.due.is_some() && matches!(n.state, "creating" | "leavingpool")
}

pub fn etag(n: u64) -> String {
    format!("W/\"0x8DC{n:013X}\"")
}

/// The Batch data plane's error shape (not ARM's).
#[derive(Debug)]
pub struct BatchErr {
    pub status: StatusCode,
    pub body: Value,
}

impl BatchErr {
    pub fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({
                "odata.metadata": "https://batch.core.windows.net/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                "code": code,
                "message": {"lang": "en-US", "value": format!("{message}\nRequestId:{}\nTime:{}", uuid::Uuid::new_v4(), rfc3339(OffsetDateTime::now_utc()))},
            }),
        }
    }

    pub fn value(mut self, k: &str, v: &str) -> Self {
        self.body["values"] = json!([{"key": k, "value": v}]);
        self
    }

    pub fn into_reply(self) -> Reply {
        Reply::json(self.status, self.body)
    }
}

/// The daemon's URL and the pool's enrollment token, when the pool's start task is
/// renderburst's enrollment.
fn enrollment(body: &Value) -> Option<(String, String)> {
    let env = body
        .pointer("/properties/startTask/environmentSettings")?
        .as_array()?;
    let get = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(|v| v.trim_end_matches('/').to_string())
    };
    Some((get("RENDERBURST_API_URL")?, get("RENDERBURST_POOL_TOKEN")?))
}

/// A node's private address in the pool's subnet: stable for its id (FNV-1a), in 10.0.0.0/16
/// and never the subnet's first four addresses, which Azure reserves.
fn node_ip(id: &str) -> String {
    let h = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let host = 4 + h % (65_534 - 4);
    format!("10.0.{}.{}", host / 256, host % 256)
}
