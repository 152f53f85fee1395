//! Resource groups, per-type dispatch, and rendering of stored resources as ARM returns them.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::arm::{Ctx, validate_name, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::state::{Effect, Kind, RType, Res, State, key};

impl State {
    pub fn resource_group(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        name: &str,
    ) -> Result<Reply, ArmErr> {
        let id = format!("/subscriptions/{sub}/resourceGroups/{name}");
        match ctx.method {
            Method::GET => self
                .get(&id)
                .map(|r| Reply::ok(self.render(r, false)))
                .ok_or_else(|| ArmErr::rg_not_found(name)),
            Method::HEAD => Ok(Reply::empty(if self.get(&id).is_some() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            })),
            Method::PUT | Method::PATCH => {
                validate_name(RType::ResourceGroup, name)?;
                let body = ctx.json_body()?;
                validate_tags(&body)?;
                if let Some(existing) = self.get_mut(&id) {
                    if existing.provisioning == "Deleting" {
                        return Err(ArmErr::conflict(
                            "ResourceGroupBeingDeleted",
                            format!(
                                "The resource group '{name}' is in deprovisioning state and cannot perform this operation."
                            ),
                        ));
                    }
                    if let Some(tags) = body.get("tags") {
                        existing.body["tags"] = tags.clone();
                    }
                    let r = existing.clone();
                    return Ok(Reply::ok(self.render(&r, false)));
                }
                if ctx.method == Method::PATCH {
                    return Err(ArmErr::rg_not_found(name));
                }
                let location = require_location(&body)?;
                if self.res.len() >= crate::state::MAX_RESOURCES {
                    return Err(too_many_resources());
                }
                let mut stored = json!({"location": location, "properties": {}});
                if let Some(tags) = body.get("tags") {
                    stored["tags"] = tags.clone();
                }
                if let Some(m) = body.get("managedBy") {
                    stored["managedBy"] = m.clone();
                }
                let res = Res {
                    id: id.clone(),
                    rtype: RType::ResourceGroup,
                    name: name.to_owned(),
                    rg: name.to_ascii_lowercase(),
                    body: stored,
                    kind: Kind::Plain,
                    provisioning: "Succeeded".into(),
                    created: self.clock.wall(),
                };
                let rendered = self.render(&res, false);
                self.insert(res);
                Ok(Reply::json(StatusCode::CREATED, rendered))
            }
            Method::DELETE => {
                let Some(rg) = self.get(&id) else {
                    return Ok(Reply::empty(StatusCode::NOT_FOUND));
                };
                let location = rg.body["location"].as_str().unwrap_or_default().to_owned();
                // A second DELETE while one runs answers with the running operation.
                let running = self.ops.values().find(|o| {
                    matches!(o.status, crate::state::OpStatus::InProgress)
                        && matches!(&o.effect, Effect::Remove { id: i } if key(i) == key(&id))
                });
                let op = match running {
                    Some(o) => o.id.clone(),
                    None => {
                        let latency = self.cfg.latency_ms.vm_delete;
                        if let Some(r) = self.get_mut(&id) {
                            r.provisioning = "Deleting".into();
                        }
                        self.start_op(
                            std::time::Duration::from_millis(latency),
                            Effect::Remove { id: id.clone() },
                            None,
                            ctx.now,
                        )
                    }
                };
                let (_, loc) = ctx.op_urls(sub, "Microsoft.Resources", &location, &op);
                Ok(Reply::empty(StatusCode::ACCEPTED)
                    .header("location", loc)
                    .header(
                        "retry-after",
                        self.cfg.polling.retry_after_seconds.to_string(),
                    ))
            }
            _ => Err(method_not_allowed(&ctx.method)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn resource(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rg: &str,
        rtype: RType,
        id: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<Reply, ArmErr> {
        let method = ctx.method.clone();
        if matches!(method, Method::PUT) {
            validate_name(rtype, name)?;
            if self.get(id).is_none() && self.res.len() >= crate::state::MAX_RESOURCES {
                return Err(too_many_resources());
            }
        }
        match (rtype, method) {
            (_, Method::GET) => {
                let expand = ctx
                    .q("$expand")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("instanceview"));
                match self.get(id) {
                    Some(r) => Ok(Reply::ok(self.render(r, expand))),
                    None => Err(self.not_found(rtype, name, rg, parent)),
                }
            }
            (RType::VirtualMachine, Method::PUT) => self.vm_put(ctx, sub, rg, id, name),
            (RType::VirtualMachine, Method::PATCH) => self.vm_patch(ctx, sub, id, name, rg),
            (RType::VirtualMachine, Method::DELETE) => self.vm_delete(ctx, sub, id),
            (RType::Disk, Method::PUT) => self.disk_put(ctx, sub, rg, id, name),
            (RType::Disk, Method::DELETE) => self.disk_delete(ctx, sub, id),
            (
                RType::VirtualNetwork
                | RType::Subnet
                | RType::NetworkSecurityGroup
                | RType::NetworkInterface,
                Method::PUT,
            ) => self.network_put(ctx, sub, rg, rtype, id, name, parent),
            (
                RType::VirtualNetwork
                | RType::Subnet
                | RType::NetworkSecurityGroup
                | RType::NetworkInterface,
                Method::DELETE,
            ) => self.network_delete(ctx, sub, rtype, id),
            (RType::BatchAccount, Method::PUT) => self.batch_account_put(ctx, rg, id, name),
            (RType::BatchAccount, Method::DELETE) => self.batch_account_delete(ctx, sub, id),
            (RType::BatchPool, Method::PUT | Method::PATCH) => {
                self.pool_put(ctx, rg, id, name, parent.unwrap_or_default())
            }
            (RType::BatchPool, Method::DELETE) => self.pool_delete(ctx, sub, id),
            (_, Method::PATCH) => self.patch_tags(ctx, rtype, id, name, rg, parent),
            (_, m) => Err(method_not_allowed(&m)),
        }
    }

    pub fn not_found(&self, rtype: RType, name: &str, rg: &str, parent: Option<&str>) -> ArmErr {
        match parent {
            // Child resources are reported with their parent's name, as ARM does.
            Some(p) => {
                let pname = p.rsplit('/').next().unwrap_or_default();
                ArmErr::not_found(rtype.arm_type(), &format!("{pname}/{name}"), rg)
            }
            None => ArmErr::not_found(rtype.arm_type(), name, rg),
        }
    }

    /// PATCH of tags, which every tracked resource supports.
    fn patch_tags(
        &mut self,
        ctx: &Ctx,
        rtype: RType,
        id: &str,
        name: &str,
        rg: &str,
        parent: Option<&str>,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        validate_tags(&body)?;
        let Some(r) = self.get_mut(id) else {
            return Err(self.not_found(rtype, name, rg, parent));
        };
        if let Some(tags) = body.get("tags") {
            r.body["tags"] = tags.clone();
        }
        let r = r.clone();
        Ok(Reply::ok(self.render(&r, false)))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn action(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rg: &str,
        rtype: RType,
        id: &str,
        name: &str,
        action: &str,
    ) -> Result<Reply, ArmErr> {
        match (rtype, &ctx.method) {
            (RType::VirtualMachine, &Method::POST) => {
                self.vm_action(ctx, sub, rg, id, name, action)
            }
            (RType::VirtualMachine, &Method::GET) if action == "instanceview" => {
                let r = self
                    .get(id)
                    .ok_or_else(|| self.not_found(rtype, name, rg, None))?;
                Ok(Reply::ok(
                    self.render(r, true)["properties"]["instanceView"].clone(),
                ))
            }
            (RType::BatchPool, &Method::POST)
                if action == "stopresize" || action == "disableautoscale" =>
            {
                self.pool_action(ctx, id, name, rg, action)
            }
            _ => Err(ArmErr::bad_request(
                "InvalidResourceType",
                format!(
                    "The action '{}' is not supported on '{}'.",
                    crate::arm::truncate(action, 64),
                    rtype.arm_type()
                ),
            )),
        }
    }

    /// A stored resource as ARM returns it: the body last PUT with the service's fields.
    pub fn render(&self, r: &Res, expand_instance_view: bool) -> Value {
        let mut out = r.body.clone();
        if !out.is_object() {
            out = json!({});
        }
        out["id"] = json!(r.id);
        out["name"] = json!(r.name);
        out["type"] = json!(r.rtype.arm_type());
        if !out["properties"].is_object() {
            out["properties"] = json!({});
        }
        let props = &mut out["properties"];
        match &r.kind {
            Kind::Vm(v) => {
                props["provisioningState"] = json!(if v.deleting {
                    "Deleting"
                } else {
                    v.provisioning.as_str()
                });
                if expand_instance_view {
                    let mut prov = json!({
                        "code": format!("ProvisioningState/{}", v.provisioning.to_ascii_lowercase()),
                        "level": "Info",
                        "displayStatus": format!("Provisioning {}", v.provisioning.to_ascii_lowercase()),
                    });
                    if let (Some(code), "Failed") = (&v.failed_code, v.provisioning.as_str()) {
                        prov = json!({
                            "code": format!("ProvisioningState/failed/{code}"),
                            "level": "Error",
                            "displayStatus": "Provisioning failed",
                            "message": format!("The operation failed with {code}."),
                        });
                    }
                    let mut statuses = vec![prov];
                    statuses.push(json!({
                        "code": format!("PowerState/{}", v.power.code()),
                        "level": "Info",
                        "displayStatus": v.power.display(),
                    }));
                    props["instanceView"] = json!({
                        "computerName": r.body["properties"]["osProfile"]["computerName"],
                        "statuses": statuses,
                    });
                }
            }
            Kind::Nic(n) => {
                props["provisioningState"] = json!(r.provisioning);
                if let Some(vm) = &n.attached_vm {
                    props["virtualMachine"] = json!({"id": vm});
                } else if let Some(p) = props.as_object_mut() {
                    p.remove("virtualMachine");
                }
            }
            Kind::Disk(d) => {
                props["provisioningState"] = json!(r.provisioning);
                props["diskState"] = json!(if d.managed_by.is_some() {
                    "Attached"
                } else {
                    "Unattached"
                });
                match &d.managed_by {
                    Some(vm) => out["managedBy"] = json!(vm),
                    None => {
                        if let Some(o) = out.as_object_mut() {
                            o.remove("managedBy");
                        }
                    }
                }
            }
            Kind::Pool(p) => self.render_pool(p, &mut out),
            Kind::Plain => {
                props["provisioningState"] = json!(r.provisioning);
                if r.rtype == RType::VirtualNetwork {
                    let prefix = format!("{}/subnets/", key(&r.id));
                    let subnets: Vec<Value> = self
                        .res
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(_, s)| self.render(s, false))
                        .collect();
                    out["properties"]["subnets"] = json!(subnets);
                }
            }
        }
        out
    }
}

pub fn require_location(body: &Value) -> Result<String, ArmErr> {
    match body.get("location").and_then(Value::as_str) {
        Some(l) if !l.trim().is_empty() => Ok(l.to_owned()),
        _ => Err(ArmErr::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        )),
    }
}

pub fn method_not_allowed(m: &Method) -> ArmErr {
    ArmErr::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{m}'."),
    )
}

fn too_many_resources() -> ArmErr {
    ArmErr::conflict(
        "ResourceQuotaExceeded",
        format!(
            "The simulator holds at most {} resources; delete some first.",
            crate::state::MAX_RESOURCES
        ),
    )
}
