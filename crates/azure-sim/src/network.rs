//! `Microsoft.Network`: virtual networks with subnets, network security groups and network
//! interfaces. PUTs answer 201/200 with `provisioningState` and an `Azure-AsyncOperation`
//! that completes after `latency_ms.nic`, as the Network RP does.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::arm::{Ctx, truncate, validate_name, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::resources::require_location;
use crate::state::{Effect, Kind, NicState, RType, Res, State, key};

const NS: &str = "Microsoft.Network";

impl State {
    #[allow(clippy::too_many_arguments)]
    pub fn network_put(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rg: &str,
        rtype: RType,
        id: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        validate_tags(&body)?;
        let existed = self.get(id).is_some();
        let location = match (rtype, parent) {
            (RType::Subnet, Some(p)) => self
                .get(p)
                .and_then(|v| v.body["location"].as_str().map(str::to_owned))
                .unwrap_or_else(|| self.cfg.location.clone()),
            _ => require_location(&body)?,
        };
        let mut stored = body.clone();
        stored["location"] = json!(location);
        if rtype == RType::Subnet
            && let Some(o) = stored.as_object_mut()
        {
            o.remove("location");
        }
        match rtype {
            RType::VirtualNetwork => {
                let prefixes = body
                    .pointer("/properties/addressSpace/addressPrefixes")
                    .and_then(Value::as_array);
                if prefixes.is_none_or(|p| p.is_empty()) {
                    return Err(ArmErr::invalid_parameter(
                        "properties.addressSpace.addressPrefixes",
                        "A virtual network needs at least one address prefix.",
                    ));
                }
                // Inline subnets become child resources; the VNet renders them back.
                let subnets = body
                    .pointer("/properties/subnets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut children = Vec::new();
                for s in &subnets {
                    let sname = s["name"].as_str().unwrap_or_default();
                    validate_name(RType::Subnet, sname)?;
                    subnet_prefix(s)?;
                    children.push(self.subnet_res(id, rg, sname, s));
                }
                if let Some(p) = stored["properties"].as_object_mut() {
                    p.remove("subnets");
                }
                for c in children {
                    if let Some(existing) = self.get(&c.id) {
                        // Keep NIC attachments visible: only the definition is replaced.
                        let mut c = c;
                        c.created = existing.created;
                        self.insert(c);
                    } else {
                        self.insert(c);
                    }
                }
            }
            RType::Subnet => {
                subnet_prefix(&body)?;
            }
            RType::NetworkInterface => {
                let ipconfigs = body
                    .pointer("/properties/ipConfigurations")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if ipconfigs.is_empty() {
                    return Err(ArmErr::invalid_parameter(
                        "properties.ipConfigurations",
                        "A network interface needs at least one IP configuration.",
                    ));
                }
                let mut rendered = Vec::new();
                for (i, ip) in ipconfigs.iter().enumerate() {
                    let subnet = ip
                        .pointer("/properties/subnet/id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    self.require_subnet(subnet, id)?;
                    let ipname = ip["name"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("ipconfig{}", i + 1));
                    let mut p = ip["properties"].clone();
                    p["privateIPAllocationMethod"] = p
                        .get("privateIPAllocationMethod")
                        .cloned()
                        .unwrap_or(json!("Dynamic"));
                    if p.get("privateIPAddress").is_none() {
                        p["privateIPAddress"] = json!(self.next_private_ip());
                    }
                    p["primary"] = json!(i == 0);
                    p["provisioningState"] = json!("Succeeded");
                    rendered.push(json!({"name": ipname, "id": format!("{id}/ipConfigurations/{ipname}"), "properties": p}));
                }
                stored["properties"]["ipConfigurations"] = json!(rendered);
            }
            _ => {}
        }
        let created = OffsetDateTime::now_utc();
        let kind = match (rtype, self.get(id).map(|r| r.kind.clone())) {
            (RType::NetworkInterface, Some(k @ Kind::Nic(_))) => k,
            (RType::NetworkInterface, _) => Kind::Nic(NicState::default()),
            _ => Kind::Plain,
        };
        self.insert(Res {
            id: id.to_owned(),
            rtype,
            name: name.to_owned(),
            rg: rg.to_ascii_lowercase(),
            body: stored,
            kind,
            provisioning: "Succeeded".into(),
            created,
        });
        let latency = Duration::from_millis(self.cfg.latency_ms.nic);
        let op = self.start_op(latency, Effect::None, None, ctx.now);
        let (aao, _) = ctx.op_urls(sub, NS, &location, &op);
        let rendered = self
            .get(id)
            .map(|r| self.render(r, false))
            .unwrap_or_default();
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok(Reply::json(status, rendered)
            .header("azure-asyncoperation", aao)
            .header(
                "retry-after",
                self.cfg.polling.retry_after_seconds.to_string(),
            ))
    }

    fn subnet_res(&self, vnet_id: &str, rg: &str, name: &str, def: &Value) -> Res {
        let id = format!("{vnet_id}/subnets/{name}");
        let mut body = json!({"properties": def.get("properties").cloned().unwrap_or(json!({}))});
        if let Some(o) = body["properties"].as_object_mut() {
            o.remove("provisioningState");
        }
        Res {
            id,
            rtype: RType::Subnet,
            name: name.to_owned(),
            rg: rg.to_ascii_lowercase(),
            body,
            kind: Kind::Plain,
            provisioning: "Succeeded".into(),
            created: OffsetDateTime::now_utc(),
        }
    }

    pub fn network_delete(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rtype: RType,
        id: &str,
    ) -> Result<Reply, ArmErr> {
        let Some(r) = self.get(id) else {
            return Ok(Reply::empty(StatusCode::NO_CONTENT));
        };
        match (&r.kind, rtype) {
            (
                Kind::Nic(NicState {
                    attached_vm: Some(vm),
                }),
                _,
            ) => {
                return Err(ArmErr::bad_request(
                    "NicInUse",
                    format!(
                        "Network Interface {} is used by existing resource {vm}. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
                        r.id
                    ),
                ));
            }
            (_, RType::Subnet | RType::VirtualNetwork) => {
                let prefix = key(id);
                let in_use = self.res.values().find(|n| {
                    n.rtype == RType::NetworkInterface
                        && n.body["properties"]["ipConfigurations"]
                            .as_array()
                            .is_some_and(|ips| {
                                ips.iter().any(|ip| {
                                    ip.pointer("/properties/subnet/id")
                                        .and_then(Value::as_str)
                                        .is_some_and(|s| {
                                            key(s) == prefix
                                                || key(s).starts_with(&format!("{prefix}/"))
                                        })
                                })
                            })
                });
                if let Some(nic) = in_use {
                    return Err(ArmErr::bad_request(
                        "InUseSubnetCannotBeDeleted",
                        format!(
                            "Subnet {} is in use by {} and cannot be deleted.",
                            r.name, nic.id
                        ),
                    ));
                }
            }
            _ => {}
        }
        let location = r.body["location"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.cfg.location.clone());
        let latency = Duration::from_millis(self.cfg.latency_ms.nic);
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

impl State {
    /// A subnet a NIC refers to must exist, as ARM checks before creating the NIC.
    pub fn require_subnet(&self, subnet: &str, referrer: &str) -> Result<(), ArmErr> {
        if self.get(subnet).is_some_and(|s| s.rtype == RType::Subnet) {
            return Ok(());
        }
        let shown = if subnet.is_empty() {
            "(no subnet id)"
        } else {
            subnet
        };
        Err(ArmErr::bad_request(
            "InvalidResourceReference",
            format!(
                "Resource {} referenced by resource {referrer} was not found. Please make sure that the referenced \
                 resource exists, and that both resources are in the same region.",
                truncate(shown, 300)
            ),
        ))
    }
}

fn subnet_prefix(def: &Value) -> Result<(), ArmErr> {
    let p = &def["properties"];
    let single = p["addressPrefix"].as_str().is_some();
    let many = p["addressPrefixes"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if single || many {
        Ok(())
    } else {
        Err(ArmErr::invalid_parameter(
            "properties.addressPrefix",
            "A subnet needs an address prefix.",
        ))
    }
}
