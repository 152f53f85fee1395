//! Virtual machines: create (with NIC and OS disk), create again after a failure, delete.

use http::StatusCode;
use serde_json::{Value, json};

use super::{NS, allocation_failed, ms, str_at};
use crate::arm::{Ctx, truncate, validate_name, validate_tags};
use crate::reply::{ArmErr, Reply};
use crate::resources::require_location;
use crate::state::{DiskState, Effect, Kind, NicState, Power, RType, Res, State, VmState, rfc3339};
use crate::throttle::ComputeGroup;
use arm_model::sizes as catalog;

impl State {
    pub fn vm_put(
        &mut self,
        ctx: &mut Ctx,
        sub: &str,
        rg: &str,
        id: &str,
        name: &str,
    ) -> Result<Reply, ArmErr> {
        let body = ctx.json_body()?;
        check_vm_body(&body)?;
        if self.get(id).is_some() {
            return self.vm_update(ctx, sub, id, name, &body);
        }
        self.compute_throttle(ctx, ComputeGroup::PutVm, Some(id))?;
        let (op, location) = self.vm_create(sub, rg, id, name, &body, ctx.now)?;
        let (aao, _) = ctx.op_urls(sub, NS, &location, &op);
        let rendered = self
            .get(id)
            .map(|r| self.render(r, false))
            .unwrap_or_default();
        Ok(Reply::json(StatusCode::CREATED, rendered)
            .header("azure-asyncoperation", aao)
            .header("azure-asyncnotification", "Enabled"))
    }

    /// Creates VM `id` from a checked body ([`check_vm_body`]) exactly as a PUT does once
    /// throttling let it through: the synchronous checks (size, image, profile, quota,
    /// network), the NICs of `networkInterfaceConfigurations` and the OS disk, then the
    /// create operation. Answers (operation id, location). A Compute Schedule create runs
    /// through here too, so both count in `/_sim/stats` the same way.
    pub(crate) fn vm_create(
        &mut self,
        sub: &str,
        rg: &str,
        id: &str,
        name: &str,
        body: &Value,
        now: std::time::Instant,
    ) -> Result<(String, String), ArmErr> {
        let location = require_location(body)?;
        let props = &body["properties"];
        let size_name = str_at(props, "/hardwareProfile/vmSize").ok_or_else(|| {
            ArmErr::invalid_parameter(
                "hardwareProfile.vmSize",
                "Required parameter 'vmSize' is missing (null).",
            )
        })?;
        let size = catalog::lookup(size_name).ok_or_else(|| {
            ArmErr::conflict(
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {}' is \
                     currently not available in location '{location}'. Please try another size or deploy to a different \
                     location or different zone. See https://aka.ms/azureskunotavailable for details.",
                    truncate(size_name, 80)
                ),
            )
            .target("sku.name")
        })?;
        if !props
            .pointer("/storageProfile/imageReference")
            .is_some_and(Value::is_object)
        {
            return Err(ArmErr::invalid_parameter(
                "storageProfile.imageReference",
                "Required parameter 'imageReference' is missing (null).",
            ));
        }
        if str_at(props, "/osProfile/adminUsername").is_none_or(str::is_empty) {
            return Err(ArmErr::invalid_parameter(
                "osProfile.adminUsername",
                "Required parameter 'adminUsername' is missing (null).",
            ));
        }
        let windows = props
            .pointer("/osProfile/windowsConfiguration")
            .is_some_and(Value::is_object);
        let computer_name = str_at(props, "/osProfile/computerName")
            .unwrap_or(name)
            .to_owned();
        let max_cn = if windows { 15 } else { 64 };
        if computer_name.is_empty() || computer_name.chars().count() > max_cn {
            return Err(ArmErr::invalid_parameter(
                "osProfile.computerName",
                format!(
                    "The value of parameter osProfile.computerName is invalid: at most {max_cn} characters."
                ),
            ));
        }
        if let Some(cd) = props.pointer("/osProfile/customData") {
            let ok = cd.as_str().is_some_and(|s| {
                use base64::Engine;
                s.len() <= 87_380 && base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            });
            if !ok {
                return Err(ArmErr::invalid_parameter(
                    "osProfile.customData",
                    "The value of parameter customData is invalid: it must be base64 and at most 64 KB decoded.",
                ));
            }
        }
        let priority = str_at(props, "/priority").unwrap_or("Regular");
        let spot = match priority.to_ascii_lowercase().as_str() {
            "regular" => false,
            "spot" | "low" => true,
            _ => {
                return Err(ArmErr::invalid_parameter(
                    "priority",
                    format!(
                        "The value of parameter priority is invalid: '{}'.",
                        truncate(priority, 40)
                    ),
                ));
            }
        };
        let evict_delete = match str_at(props, "/evictionPolicy") {
            None => false,
            Some(_) if !spot => {
                return Err(ArmErr::bad_request(
                    "EvictionPolicyCanBeSetOnlyOnLowPriorityVirtualMachines",
                    "Eviction policy can be set only on Spot (low priority) virtual machines.",
                ));
            }
            Some(p) if p.eq_ignore_ascii_case("delete") => true,
            Some(p) if p.eq_ignore_ascii_case("deallocate") => false,
            Some(p) => {
                return Err(ArmErr::invalid_parameter(
                    "evictionPolicy",
                    format!(
                        "The value of parameter evictionPolicy is invalid: '{}'.",
                        truncate(p, 40)
                    ),
                ));
            }
        };
        if let Some(mp) = props
            .pointer("/billingProfile/maxPrice")
            .filter(|v| !v.is_null())
        {
            let p = mp.as_f64().unwrap_or(0.0);
            if !spot {
                return Err(ArmErr::invalid_parameter(
                    "billingProfile.maxPrice",
                    "Max price can be set only on Spot virtual machines.",
                ));
            }
            if !(p == -1.0 || p > 0.0) {
                return Err(ArmErr::bad_request(
                    "MaxPriceValueInvalid",
                    "Max price must be -1 or greater than zero.",
                ));
            }
        }
        // Network: NICs by reference, or created inline from networkInterfaceConfigurations.
        let refs = props
            .pointer("/networkProfile/networkInterfaces")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let configs = props
            .pointer("/networkProfile/networkInterfaceConfigurations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if refs.is_empty() && configs.is_empty() {
            return Err(ArmErr::invalid_parameter(
                "networkProfile",
                "At least one network interface is required.",
            ));
        }
        let mut nics: Vec<(String, bool)> = Vec::new();
        for r in &refs {
            let nic_id = r["id"].as_str().unwrap_or_default();
            let nic = self.get(nic_id).filter(|n| n.rtype == RType::NetworkInterface).ok_or_else(|| {
                ArmErr::bad_request("InvalidResourceReference", format!(
                    "Resource {} referenced by resource {id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.",
                    truncate(nic_id, 300)))
            })?;
            if let Kind::Nic(NicState {
                attached_vm: Some(other),
            }) = &nic.kind
            {
                return Err(ArmErr::bad_request(
                    "NicInUse",
                    format!(
                        "Network interface {} is in use by virtual machine {other}.",
                        nic.id
                    ),
                ));
            }
            let delete = str_at(r, "/properties/deleteOption")
                .is_some_and(|d| d.eq_ignore_ascii_case("delete"));
            nics.push((nic.id.clone(), delete));
        }
        let mut new_nics: Vec<Res> = Vec::new();
        let mut taken_ips: Vec<String> = Vec::new();
        for c in &configs {
            let cname = c["name"].as_str().unwrap_or_default();
            validate_name(RType::NetworkInterface, cname).map_err(|_| {
                ArmErr::invalid_parameter(
                    "networkProfile.networkInterfaceConfigurations.name",
                    "Every network interface configuration needs a valid name.",
                )
            })?;
            let nic_id = format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/{cname}"
            );
            if self.get(&nic_id).is_some() {
                return Err(ArmErr::conflict(
                    "NicReservedForAnotherVm",
                    format!(
                        "Network interface {nic_id} already exists and cannot be created for virtual machine {id}."
                    ),
                ));
            }
            let mut ipconfigs = Vec::new();
            for (i, ip) in c
                .pointer("/properties/ipConfigurations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let subnet = str_at(ip, "/properties/subnet/id").unwrap_or_default();
                self.require_subnet(subnet, id)?;
                let ipname = ip["name"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("ipconfig{}", i + 1));
                // The next free address of the subnet (`State::allocate_private_ip`).
                let address = self.allocate_private_ip(subnet, &taken_ips)?;
                taken_ips.extend(address.clone());
                ipconfigs.push(json!({
                    "name": ipname,
                    "id": format!("{nic_id}/ipConfigurations/{ipname}"),
                    "properties": {
                        "subnet": {"id": subnet},
                        "primary": i == 0,
                        "privateIPAllocationMethod": "Dynamic",
                        "privateIPAddress": address,
                        "privateIPAddressVersion": "IPv4",
                        "provisioningState": "Succeeded",
                    }
                }));
            }
            if ipconfigs.is_empty() {
                return Err(ArmErr::invalid_parameter(
                    "networkProfile.networkInterfaceConfigurations.ipConfigurations",
                    "A network interface configuration needs at least one IP configuration with a subnet.",
                ));
            }
            let delete = str_at(c, "/properties/deleteOption")
                .is_some_and(|d| d.eq_ignore_ascii_case("delete"));
            let mut nic_props = json!({
                "ipConfigurations": ipconfigs,
                "primary": c.pointer("/properties/primary").cloned().unwrap_or(json!(true)),
                "enableAcceleratedNetworking": c.pointer("/properties/enableAcceleratedNetworking").cloned().unwrap_or(json!(false)),
                "macAddress": format!("00-0D-3A-{:02X}-{:02X}-{:02X}", fastrand::u8(..), fastrand::u8(..), fastrand::u8(..)),
                "nicType": "Standard",
            });
            if let Some(nsg) = c.pointer("/properties/networkSecurityGroup") {
                nic_props["networkSecurityGroup"] = nsg.clone();
            }
            nics.push((nic_id.clone(), delete));
            new_nics.push(Res {
                id: nic_id,
                rtype: RType::NetworkInterface,
                name: cname.to_owned(),
                rg: rg.to_ascii_lowercase(),
                body: json!({"location": location, "properties": nic_props}),
                kind: Kind::Nic(NicState {
                    attached_vm: Some(id.to_owned()),
                }),
                provisioning: "Succeeded".into(),
                created: self.clock.wall(),
            });
        }
        self.check_quota(spot, size.family, size.vcpus, &location)?;
        let mut fail_with = None;
        let mut allocated = true;
        if !self.has_capacity(&size.name, 1) {
            fail_with = Some(allocation_failed());
            allocated = false;
        } else if let Some(f) = self.injected_failure() {
            fail_with = Some(f);
        }
        // The OS disk is created with the VM and named after it.
        let os = props
            .pointer("/storageProfile/osDisk")
            .cloned()
            .unwrap_or(json!({}));
        let disk_name = os["name"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name}_OsDisk_1_{}", uuid::Uuid::new_v4().simple()));
        let disk_id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{disk_name}"
        );
        if self.get(&disk_id).is_some() {
            return Err(ArmErr::conflict(
                "Conflict",
                format!(
                    "Disk {disk_name} already exists in resource group {rg}; choose another OS disk name."
                ),
            ));
        }
        let disk_delete =
            str_at(&os, "/deleteOption").is_some_and(|d| d.eq_ignore_ascii_case("delete"));
        let os_type = if windows { "Windows" } else { "Linux" };
        let sku = str_at(&os, "/managedDisk/storageAccountType")
            .unwrap_or("Premium_LRS")
            .to_owned();
        let disk_size = os["diskSizeGB"]
            .as_u64()
            .unwrap_or(if windows { 127 } else { 30 });
        let now_wall = self.clock.wall();
        // What we store is what the client sent, minus secrets Azure never returns, plus
        // the fields the service fills in.
        let custom_data = props
            .pointer("/osProfile/customData")
            .and_then(Value::as_str)
            .and_then(|s| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).ok()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut stored = body.clone();
        let sp = &mut stored["properties"];
        if let Some(o) = sp["osProfile"].as_object_mut() {
            o.remove("adminPassword");
            o.remove("customData");
            // Unattend content can hold a password (AutoLogon): never answered either.
            if let Some(items) = o
                .get_mut("windowsConfiguration")
                .and_then(|w| w.get_mut("additionalUnattendContent"))
                .and_then(Value::as_array_mut)
            {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.remove("content");
                }
            }
            o.insert("computerName".into(), json!(computer_name));
            o.entry("secrets").or_insert(json!([]));
        }
        sp["vmId"] = json!(uuid::Uuid::new_v4().to_string());
        sp["timeCreated"] = json!(rfc3339(now_wall));
        sp["storageProfile"]["osDisk"] = json!({
            "name": disk_name,
            "osType": os_type,
            "createOption": os["createOption"].as_str().unwrap_or("FromImage"),
            "caching": os["caching"].as_str().unwrap_or("ReadWrite"),
            "managedDisk": {"id": disk_id, "storageAccountType": sku},
            "deleteOption": if disk_delete { "Delete" } else { "Detach" },
            "diskSizeGB": disk_size,
        });
        if !configs.is_empty() {
            sp["networkProfile"]["networkInterfaces"] = json!(nics.iter().enumerate().map(|(i, (nid, del))| json!({
                "id": nid, "properties": {"primary": i == 0, "deleteOption": if *del { "Delete" } else { "Detach" }}
            })).collect::<Vec<_>>());
        }
        for n in new_nics {
            self.insert(n);
        }
        for nic in refs.iter().filter_map(|r| r["id"].as_str()) {
            if let Some(Res {
                kind: Kind::Nic(n), ..
            }) = self.get_mut(nic)
            {
                n.attached_vm = Some(id.to_owned());
            }
        }
        self.insert(Res {
            id: disk_id.clone(),
            rtype: RType::Disk,
            name: disk_name,
            rg: rg.to_ascii_lowercase(),
            body: json!({
                "location": location,
                "sku": {"name": sku},
                "properties": {"osType": os_type, "diskSizeGB": disk_size, "timeCreated": rfc3339(now_wall),
                               "creationData": {"createOption": "FromImage", "imageReference": props["storageProfile"]["imageReference"].clone()}},
            }),
            kind: Kind::Disk(DiskState { managed_by: Some(id.to_owned()) }),
            provisioning: "Updating".into(),
            created: now_wall,
        });
        self.insert(Res {
            id: id.to_owned(),
            rtype: RType::VirtualMachine,
            name: name.to_owned(),
            rg: rg.to_ascii_lowercase(),
            body: stored,
            kind: Kind::Vm(Box::new(VmState {
                size: size.name.clone(),
                vcpus: size.vcpus,
                family: size.family,
                spot,
                evict_delete,
                provisioning: "Creating".into(),
                failed_code: None,
                power: Power::Starting,
                allocated,
                busy_op: None,
                deleting: false,
                nics,
                os_disk: Some((disk_id, disk_delete)),
                location: location.clone(),
                custom_data,
                booted: false,
            })),
            provisioning: "Creating".into(),
            created: now_wall,
        });
        let key = name.to_ascii_lowercase();
        let stats = &mut self.stats;
        let count = stats.vm_creates.entry(key.clone()).or_default();
        if *count > 0 && stats.vm_last_create_succeeded.remove(&key) {
            *stats.vm_repeats.entry(key.clone()).or_default() += 1;
        }
        *count += 1;
        stats.vm_lifecycle(name, "create");
        let latency = ms(self.cfg.latency_ms.vm_create);
        let op = self.start_op(
            latency,
            Effect::VmCreate { vm: id.to_owned() },
            fail_with,
            now,
        );
        Ok((op, location))
    }

    pub fn vm_delete(&mut self, ctx: &mut Ctx, sub: &str, id: &str) -> Result<Reply, ArmErr> {
        let Some(v) = self.get(id).and_then(Res::vm).cloned() else {
            return Ok(Reply::empty(StatusCode::NO_CONTENT));
        };
        self.compute_throttle(ctx, ComputeGroup::DeleteVm, Some(id))?;
        let retry = self.cfg.polling.retry_after_seconds;
        let op = self
            .vm_begin_delete(id, ctx.now)
            .ok_or_else(ArmErr::internal)?;
        Ok(ctx.accepted(sub, NS, &v.location, &op, retry))
    }

    /// A DELETE's work once throttling let it through: the running delete if there is one,
    /// else a new one that preempts whatever the VM was doing. `None` if there is no VM.
    pub(crate) fn vm_begin_delete(&mut self, id: &str, now: std::time::Instant) -> Option<String> {
        let v = self.get(id).and_then(Res::vm).cloned()?;
        if v.deleting
            && let Some(op) = &v.busy_op
        {
            return Some(op.clone());
        }
        if let Some(op) = &v.busy_op {
            // A delete preempts whatever the VM was doing.
            self.cancel_op(op, now);
        }
        if let Some(vm) = self.get_mut(id).and_then(Res::vm_mut) {
            vm.deleting = true;
            vm.busy_op = None;
        }
        if let Some(name) = id.rsplit('/').next() {
            self.stats.vm_lifecycle(name, "delete");
        }
        let latency = ms(self.cfg.latency_ms.vm_delete);
        Some(self.start_op(latency, Effect::VmDelete { vm: id.to_owned() }, None, now))
    }
}

impl State {
    /// A create again on a VM whose create failed (a Compute Schedule retry): quota and
    /// capacity are decided anew and the create operation runs again on the same VM, NIC and
    /// OS disk; it is not a second create of the name.
    pub(crate) fn vm_recreate(
        &mut self,
        id: &str,
        now: std::time::Instant,
    ) -> Result<String, ArmErr> {
        let v = self
            .get(id)
            .and_then(Res::vm)
            .cloned()
            .ok_or_else(ArmErr::internal)?;
        self.check_quota(v.spot, v.family, v.vcpus, &v.location)?;
        let mut fail_with = None;
        let mut allocated = true;
        if !self.has_capacity(&v.size, 1) {
            fail_with = Some(allocation_failed());
            allocated = false;
        } else if let Some(f) = self.injected_failure() {
            fail_with = Some(f);
        }
        if let Some(vm) = self.get_mut(id).and_then(Res::vm_mut) {
            vm.allocated = allocated;
            vm.provisioning = "Creating".into();
            vm.power = Power::Starting;
            vm.failed_code = None;
        }
        if let Some(name) = id.rsplit('/').next() {
            self.stats.vm_lifecycle(name, "create");
        }
        let latency = ms(self.cfg.latency_ms.vm_create);
        Ok(self.start_op(
            latency,
            Effect::VmCreate { vm: id.to_owned() },
            fail_with,
            now,
        ))
    }
}

/// What every VM body must pass before anything else: tags and the typed shape.
pub(crate) fn check_vm_body(body: &Value) -> Result<(), ArmErr> {
    validate_tags(body)?;
    if let Err(e) = serde_json::from_value::<arm_model::compute::VirtualMachine>(body.clone()) {
        return Err(ArmErr::invalid_content(format!(
            "The request content was invalid and could not be deserialized: '{e}'."
        )));
    }
    Ok(())
}
