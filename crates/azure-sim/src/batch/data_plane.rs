//! The Batch data plane (served under `/batch/{account}`, not ARM): list nodes and remove
//! nodes, with the data plane's own error shape.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::node_state_time;
use crate::arm::{Ctx, truncate};
use crate::reply::Reply;
use crate::state::{Kind, RType, Res, State, rfc3339};

impl State {
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
/// A node's private address in the pool's subnet: stable for its id (FNV-1a), in 10.0.0.0/16
/// and never the subnet's first four addresses, which Azure reserves.
fn node_ip(id: &str) -> String {
    let h = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let host = 4 + h % (65_534 - 4);
    format!("10.0.{}.{}", host / 256, host % 256)
}
