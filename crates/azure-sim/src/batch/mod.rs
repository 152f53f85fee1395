//! `Microsoft.Batch`: accounts and pools on the management plane (ARM), and the data plane
//! calls a scaler needs (list nodes, remove nodes), served under `/batch/{account}`.
//!
//! A pool moves toward its fixed-scale targets over time: each new node is `creating` for
//! `latency_ms.batch_node`, then `idle`; a removed node is `leavingpool` for the same time,
//! then gone. The pool is `Resizing` while any node is in transit. Nodes that the account's
//! core quota or the size's capacity cannot hold are not created, and the reason is left in
//! `resizeOperationStatus.errors`, as Batch does.
//!
//! The management plane is here; `nodes.rs` moves a pool's nodes over time, `data_plane.rs`
//! serves the data plane.

use std::time::Duration;

use arm_model::ErrorDetail;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::arm::{Ctx, truncate, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::resources::require_location;
use crate::state::{BatchNode, Effect, Kind, PoolState, RType, Res, State, key, rfc3339};
use arm_model::sizes as catalog;

mod data_plane;
mod nodes;

pub use data_plane::BatchErr;

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
}

/// A node being created or leaving: the pool is Resizing while it has one.
fn in_transit(n: &BatchNode) -> bool {
    n.due.is_some() && matches!(n.state, "creating" | "leavingpool")
}

pub fn etag(n: u64) -> String {
    format!("W/\"0x8DC{n:013X}\"")
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
