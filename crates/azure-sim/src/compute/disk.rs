//! Managed disks.

use http::StatusCode;
use serde_json::{Value, json};

use super::{NS, ms, str_at};
use crate::arm::{Ctx, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::resources::require_location;
use crate::state::{DiskState, Effect, Kind, RType, Res, State, rfc3339};

impl State {
    pub fn disk_put(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rg: &str,
        id: &str,
        name: &str,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        validate_tags(&body)?;
        if let Some(existing) = self.get_mut(id) {
            if let Some(tags) = body.get("tags") {
                existing.body["tags"] = tags.clone();
            }
            let r = existing.clone();
            return Ok(Reply::ok(self.render(&r, false)));
        }
        let location = require_location(&body)?;
        let create = str_at(&body, "/properties/creationData/createOption").ok_or_else(|| {
            ArmErr::invalid_parameter(
                "creationData.createOption",
                "Required parameter 'createOption' is missing (null).",
            )
        })?;
        if create.eq_ignore_ascii_case("empty")
            && body
                .pointer("/properties/diskSizeGB")
                .and_then(Value::as_u64)
                .is_none()
        {
            return Err(ArmErr::invalid_parameter(
                "diskSizeGB",
                "Required parameter 'diskSizeGB' is missing (null).",
            ));
        }
        let mut stored = body.clone();
        if stored.get("sku").is_none() {
            stored["sku"] = json!({"name": "Standard_LRS"});
        }
        stored["properties"]["timeCreated"] = json!(rfc3339(self.clock.wall()));
        self.insert(Res {
            id: id.to_owned(),
            rtype: RType::Disk,
            name: name.to_owned(),
            rg: rg.to_ascii_lowercase(),
            body: stored,
            kind: Kind::Disk(DiskState::default()),
            provisioning: "Updating".into(),
            created: self.clock.wall(),
        });
        let latency = ms(self.cfg.latency_ms.disk);
        let op = self.start_op(
            latency,
            Effect::DiskCreate {
                disk: id.to_owned(),
            },
            None,
            ctx.now,
        );
        let (aao, loc) = ctx.op_urls(sub, NS, &location, &op);
        let rendered = self
            .get(id)
            .map(|r| self.render(r, false))
            .unwrap_or_default();
        Ok(Reply::json(StatusCode::ACCEPTED, rendered)
            .header("azure-asyncoperation", aao)
            .header("location", loc)
            .header(
                "retry-after",
                self.cfg.polling.retry_after_seconds.to_string(),
            ))
    }

    pub fn disk_delete(&mut self, ctx: &mut Ctx, sub: &str, id: &str) -> Result<Reply, ArmErr> {
        let Some(r) = self.get(id) else {
            return Ok(Reply::empty(StatusCode::NO_CONTENT));
        };
        if let Kind::Disk(DiskState {
            managed_by: Some(vm),
        }) = &r.kind
        {
            return Err(ArmErr::conflict(
                "OperationNotAllowed",
                format!("Disk {} is attached to VM {vm}.", r.name),
            ));
        }
        let location = r.body["location"].as_str().unwrap_or_default().to_owned();
        let latency = ms(self.cfg.latency_ms.disk);
        let op = self.start_op(latency, Effect::Remove { id: id.to_owned() }, None, ctx.now);
        Ok(ctx.accepted(
            sub,
            NS,
            &location,
            &op,
            self.cfg.polling.retry_after_seconds,
        ))
    }
}
