//! Virtual machines: PUT on an existing VM (an idempotent retry of its create, or an update of
//! tags, size and a few settable fields) and PATCH.

use http::StatusCode;
use serde_json::{Value, json};

use super::{NS, another_operation, marked_for_deletion, ms, str_at};
use crate::arm::{Ctx, truncate, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::state::{Effect, RType, Res, State};
use crate::throttle::ComputeGroup;
use arm_model::sizes as catalog;

impl State {
    /// PUT on an existing VM: an idempotent retry of a running create answers with that
    /// create; otherwise tags, size and a few settable fields are updated.
    pub(super) fn vm_update(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        id: &str,
        name: &str,
        body: &Value,
    ) -> Result<Reply, ArmErr> {
        self.compute_throttle(ctx, ComputeGroup::UpdateVm, Some(id))?;
        let (op, creating) = self.vm_update_existing(id, name, body, ctx.now)?;
        let location = self
            .get(id)
            .and_then(Res::vm)
            .map(|v| v.location.clone())
            .unwrap_or_default();
        let (aao, _) = ctx.op_urls(sub, NS, &location, &op);
        let rendered = self
            .get(id)
            .map(|r| self.render(r, false))
            .unwrap_or_default();
        let status = if creating {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(Reply::json(status, rendered)
            .header("azure-asyncoperation", aao)
            .header("azure-asyncnotification", "Enabled"))
    }

    /// A PUT's work on an existing VM once throttling let it through: a create still running
    /// answers with that create (`true`), as an idempotent retry does; otherwise tags, size
    /// and a few settable fields are updated by a new operation (`false`).
    pub(crate) fn vm_update_existing(
        &mut self,
        id: &str,
        name: &str,
        body: &Value,
        now: std::time::Instant,
    ) -> Result<(String, bool), ArmErr> {
        let (busy, deleting) = {
            let v = self
                .get(id)
                .and_then(Res::vm)
                .ok_or_else(ArmErr::internal)?;
            (v.busy_op.clone(), v.deleting)
        };
        if deleting {
            return Err(marked_for_deletion("PUT", name));
        }
        if let Some(op) = &busy {
            if self
                .ops
                .get(op)
                .is_some_and(|o| matches!(o.effect, Effect::VmCreate { .. }))
            {
                return Ok((op.clone(), true));
            }
            return Err(another_operation("PUT", name));
        }
        self.apply_vm_update(id, body)?;
        self.stats.vm_lifecycle(name, "update");
        let latency = ms(self.cfg.latency_ms.nic);
        let op = self.start_op(latency, Effect::VmUpdate { vm: id.to_owned() }, None, now);
        if let Some(v) = self.get_mut(id).and_then(Res::vm_mut) {
            v.provisioning = "Updating".into();
        }
        Ok((op, false))
    }

    fn apply_vm_update(&mut self, id: &str, body: &Value) -> Result<(), ArmErr> {
        let new_size = str_at(body, "/properties/hardwareProfile/vmSize").map(str::to_owned);
        let size = match &new_size {
            Some(s) => Some(catalog::lookup(s).ok_or_else(|| {
                ArmErr::conflict(
                    "SkuNotAvailable",
                    format!(
                        "The requested VM size '{}' is currently not available.",
                        truncate(s, 80)
                    ),
                )
                .target("sku.name")
            })?),
            None => None,
        };
        let r = self.get_mut(id).ok_or_else(ArmErr::internal)?;
        if let Some(tags) = body.get("tags") {
            r.body["tags"] = tags.clone();
        }
        if let Some(ud) = body.pointer("/properties/userData") {
            r.body["properties"]["userData"] = ud.clone();
        }
        if let (Some(size), Some(v)) = (size, r.vm_mut()) {
            v.size = size.name.clone();
            v.vcpus = size.vcpus;
            v.family = size.family;
            r.body["properties"]["hardwareProfile"]["vmSize"] = json!(size.name);
        }
        Ok(())
    }

    pub fn vm_patch(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        id: &str,
        name: &str,
        rg: &str,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        validate_tags(&body)?;
        if self.get(id).is_none() {
            return Err(ArmErr::not_found(
                RType::VirtualMachine.arm_type(),
                name,
                rg,
            ));
        }
        self.vm_update(ctx, sub, id, name, &body).map(|mut r| {
            r.status = StatusCode::OK;
            r
        })
    }
}
