//! `Microsoft.Network`: virtual networks with subnets, network security groups and network
//! interfaces. PUTs answer 201/200 with `provisioningState` and an `Azure-AsyncOperation`
//! that completes after `latency_ms.nic`, as the Network RP does.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

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
                let mut taken = Vec::new();
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
                        // Dynamic keeps the address it has while the NIC exists
                        // (https://learn.microsoft.com/en-us/azure/virtual-network/ip-services/private-ip-addresses).
                        let kept = self.get(id).and_then(|nic| {
                            nic.body
                                .pointer("/properties/ipConfigurations")
                                .and_then(Value::as_array)
                                .and_then(|all| {
                                    all.iter().find(|c| {
                                        c["name"].as_str() == Some(ipname.as_str())
                                            && str_at(c, "/properties/subnet/id")
                                                .is_some_and(|s| key(s) == key(subnet))
                                    })
                                })
                                .and_then(|c| str_at(c, "/properties/privateIPAddress"))
                                .map(str::to_owned)
                        });
                        let addr = match kept {
                            Some(a) => Some(a),
                            None => self.allocate_private_ip(subnet, &taken)?,
                        };
                        if let Some(a) = addr {
                            taken.push(a.clone());
                            p["privateIPAddress"] = json!(a);
                        }
                    }
                    p["primary"] = json!(i == 0);
                    p["provisioningState"] = json!("Succeeded");
                    rendered.push(json!({"name": ipname, "id": format!("{id}/ipConfigurations/{ipname}"), "properties": p}));
                }
                stored["properties"]["ipConfigurations"] = json!(rendered);
            }
            _ => {}
        }
        let created = self.clock.wall();
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
            created: self.clock.wall(),
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

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The first IPv4 prefix of a subnet (`addressPrefix`, else `addressPrefixes`), as
/// (network address, prefix length).
fn ipv4_prefix(subnet: &Value) -> Option<(u32, u32)> {
    let p = &subnet["properties"];
    let listed = p["addressPrefixes"].as_array().into_iter().flatten();
    p["addressPrefix"]
        .as_str()
        .into_iter()
        .chain(listed.filter_map(Value::as_str))
        .find_map(|prefix| {
            let (addr, len) = prefix.split_once('/')?;
            let addr: std::net::Ipv4Addr = addr.parse().ok()?;
            let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some((u32::from(addr) & mask, len))
        })
}

/// The lowest address of a subnet a Dynamic IP configuration may get: Azure reserves the
/// first four addresses (network, default gateway, two for Azure DNS) and the last
/// (broadcast) of every subnet, "Are there any restrictions on using IP addresses within
/// these subnets?" in https://learn.microsoft.com/en-us/azure/virtual-network/virtual-networks-faq.
/// `None` if every other address is in `used`.
pub(crate) fn free_address(
    network: u32,
    len: u32,
    used: &std::collections::HashSet<u32>,
) -> Option<std::net::Ipv4Addr> {
    let size: u64 = 1u64 << (32 - len);
    if size < 6 {
        return None;
    }
    let first = u64::from(network) + 4;
    let last = u64::from(network) + size - 2;
    (first..=last)
        .map(|a| a as u32)
        .find(|a| !used.contains(a))
        .map(std::net::Ipv4Addr::from)
}

impl State {
    /// The private IP address a new Dynamic IP configuration in `subnet` gets: the next free
    /// address of the subnet's IPv4 prefix, as Azure assigns it
    /// (`privateIPAllocationMethod: Dynamic`, NetworkInterfaceIPConfiguration in
    /// https://learn.microsoft.com/en-us/rest/api/virtualnetwork/network-interfaces/create-or-update,
    /// and https://learn.microsoft.com/en-us/azure/virtual-network/ip-services/private-ip-addresses:
    /// "Azure assigns the next available unassigned or unreserved IP address in the subnet's
    /// address range"). Addresses of every NIC in the subnet and `pending` (given earlier in
    /// the same request) are taken. A subnet without a free address refuses with
    /// `SubnetIsFull` ("Subnet ... with address prefix ... doesn't have enough capacity for
    /// IP addresses",
    /// https://learn.microsoft.com/en-us/troubleshoot/azure/azure-kubernetes/create-upgrade-delete/error-code-subnetisfull-upgrade).
    /// `None` for a subnet without an IPv4 prefix (no IPv4 address to give).
    pub fn allocate_private_ip(
        &self,
        subnet: &str,
        pending: &[String],
    ) -> Result<Option<String>, ArmErr> {
        let Some(def) = self.get(subnet) else {
            return Ok(None);
        };
        let Some((network, len)) = ipv4_prefix(&def.body) else {
            return Ok(None);
        };
        let wanted = key(subnet);
        let mut used: std::collections::HashSet<u32> = pending
            .iter()
            .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        for nic in self.res.values() {
            if nic.rtype != RType::NetworkInterface {
                continue;
            }
            for c in nic.body["properties"]["ipConfigurations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if str_at(c, "/properties/subnet/id").is_some_and(|s| key(s) == wanted)
                    && let Some(a) = str_at(c, "/properties/privateIPAddress")
                        .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
                {
                    used.insert(u32::from(a));
                }
            }
        }
        match free_address(network, len, &used) {
            Some(a) => Ok(Some(a.to_string())),
            None => Err(ArmErr::bad_request(
                "SubnetIsFull",
                format!(
                    "Subnet {} with address prefix {}/{len} doesn't have enough capacity for IP addresses.",
                    def.name,
                    std::net::Ipv4Addr::from(network)
                ),
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn addresses_skip_the_five_azure_reserves() {
        let mut used = std::collections::HashSet::new();
        let net = ip("10.80.0.0");
        assert_eq!(
            free_address(net, 29, &used).unwrap().to_string(),
            "10.80.0.4"
        );
        used.insert(ip("10.80.0.4"));
        used.insert(ip("10.80.0.5"));
        assert_eq!(
            free_address(net, 29, &used).unwrap().to_string(),
            "10.80.0.6"
        );
        // A /29 has three usable addresses: .4, .5 and .6 (.7 is the broadcast).
        used.insert(ip("10.80.0.6"));
        assert_eq!(free_address(net, 29, &used), None);
        // A freed address is given again.
        used.remove(&ip("10.80.0.5"));
        assert_eq!(
            free_address(net, 29, &used).unwrap().to_string(),
            "10.80.0.5"
        );
        assert_eq!(free_address(net, 31, &used), None);
    }

    #[test]
    fn prefixes_come_from_either_field() {
        let one = json!({"properties": {"addressPrefix": "10.80.0.17/18"}});
        assert_eq!(ipv4_prefix(&one), Some((ip("10.80.0.0"), 18)));
        let many = json!({"properties": {"addressPrefixes": ["fd00::/64", "192.168.4.0/24"]}});
        assert_eq!(ipv4_prefix(&many), Some((ip("192.168.4.0"), 24)));
        assert_eq!(ipv4_prefix(&json!({"properties": {}})), None);
    }
}
