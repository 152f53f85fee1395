//! What Azure shows: every VM of ours in the resource group, with its power state, in two
//! paged list calls (the resource group list for tags and sizes, the subscription-wide
//! `statusOnly` list for power states) — never one GET per VM.

use std::collections::HashMap;

use arm_model::compute::VirtualMachine;
use arm_model::network::NetworkInterface;
use azure::{ArmClient, TagFilter};
use rb_core::{NodeState, Priority, TAG_OWNER, TAG_POOL};

/// One VM of ours as Azure shows it.
#[derive(Debug, Clone)]
pub struct ObservedVm {
    pub name: String,
    pub id: String,
    /// The `renderburst-pool` tag.
    pub pool: String,
    pub size: String,
    pub priority: Priority,
    pub state: NodeState,
    /// Azure's provisioning state (`Succeeded`, `Creating`, `Failed`...), as listed.
    pub provisioning: Option<String>,
    pub power: Option<String>,
    pub failed_code: Option<String>,
}

/// A complete view of our VMs, by name (lower-cased).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub vms: HashMap<String, ObservedVm>,
    /// ARM requests the observation took.
    pub pages: u32,
}

pub fn node_state(provisioning: Option<&str>, power: Option<&str>) -> NodeState {
    let prov = provisioning.unwrap_or("").to_ascii_lowercase();
    match prov.as_str() {
        "failed" => return NodeState::Failed,
        "deleting" => return NodeState::Deleting,
        "creating" => return NodeState::Creating,
        _ => {}
    }
    match power.map(str::to_ascii_lowercase).as_deref() {
        Some("starting") => NodeState::Starting,
        Some("running") => NodeState::Running,
        Some("stopping" | "stopped") => NodeState::Stopped,
        Some("deallocating") => NodeState::Deallocating,
        Some("deallocated") => NodeState::Deallocated,
        // Provisioned but not yet reporting a power state.
        _ if prov == "succeeded" || prov == "updating" => NodeState::Starting,
        _ => NodeState::Creating,
    }
}

/// What the subscription's `statusOnly` list says of a VM.
struct Status {
    power: Option<String>,
    failed_code: Option<String>,
    provisioning: Option<String>,
}

/// A VM of the resource group's list as kept (state and power come from the status list).
fn listed(vm: VirtualMachine) -> Option<ObservedVm> {
    let (id, name) = (vm.id?, vm.name?);
    let pool = vm
        .tags
        .as_ref()
        .and_then(|tags| tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(TAG_POOL)))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let props = vm.properties.unwrap_or_default();
    Some(ObservedVm {
        size: props
            .hardware_profile
            .as_ref()
            .and_then(|h| h.vm_size.clone())
            .unwrap_or_default(),
        priority: if props.is_spot() {
            Priority::Spot
        } else {
            Priority::Regular
        },
        name,
        id,
        pool,
        state: NodeState::Creating,
        provisioning: props.provisioning_state,
        power: None,
        failed_code: None,
    })
}

/// Lists our VMs. Fails as a whole if any page fails: never plan from part of the picture.
pub async fn observe(
    arm: &ArmClient,
    resource_group: &str,
    owner_id: &str,
) -> azure::Result<Observation> {
    let filter = TagFilter {
        name: TAG_OWNER.into(),
        value: Some(owner_id.into()),
    };
    let mut pages = 0u32;
    // Each page is boiled down to what is kept as it arrives: 5,000 VMs' full bodies, twice,
    // were most of the daemon's peak memory.
    let mut vms: Vec<ObservedVm> = Vec::new();
    let mut pager = arm.list_vms(resource_group, false);
    while let Some(page) = pager.next_page().await? {
        pages += 1;
        vms.extend(
            page.into_iter()
                .filter(|vm| filter.matches(vm.tags.as_ref()))
                .filter_map(listed),
        );
    }
    // By id (lower-cased): power state, provisioning error code, provisioning state.
    let mut statuses: HashMap<String, Status> = HashMap::new();
    let mut pager = arm.list_vm_status();
    while let Some(page) = pager.next_page().await? {
        pages += 1;
        for vm in page {
            let Some(id) = &vm.id else { continue };
            let iv = vm
                .properties
                .as_ref()
                .and_then(|p| p.instance_view.as_ref());
            statuses.insert(
                id.to_ascii_lowercase(),
                Status {
                    power: iv.and_then(|iv| iv.power_state().map(str::to_owned)),
                    failed_code: iv.and_then(|iv| iv.provisioning_error_code().map(str::to_owned)),
                    provisioning: iv.and_then(|iv| iv.provisioning_state().map(str::to_owned)),
                },
            );
        }
    }
    let mut out = HashMap::with_capacity(vms.len());
    for mut vm in vms {
        if let Some(st) = statuses.remove(&vm.id.to_ascii_lowercase()) {
            vm.power = st.power;
            vm.failed_code = st.failed_code;
            vm.provisioning = vm.provisioning.or(st.provisioning);
        }
        vm.state = node_state(vm.provisioning.as_deref(), vm.power.as_deref());
        out.insert(vm.name.to_ascii_lowercase(), vm);
    }
    Ok(Observation { vms: out, pages })
}

/// Each VM's private IP address from one listing of NICs, by VM name lower-cased: the
/// address of the primary IP configuration of the VM's primary NIC (a NIC belongs to the VM
/// its read-only `virtualMachine` names). This is Azure's truth about the address (the
/// `privateIPAddress` Network assigned, `Dynamic` allocation), so it wins over what a node
/// said at registration; NICs without an address are skipped.
pub fn nic_addresses(nics: &[NetworkInterface]) -> HashMap<String, String> {
    let mut out: HashMap<String, (bool, String)> = HashMap::new();
    for nic in nics {
        let Some(props) = &nic.properties else {
            continue;
        };
        let Some(vm) = props
            .virtual_machine
            .as_ref()
            .and_then(|r| r.id.rsplit('/').next())
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let configs = props.ip_configurations.as_deref().unwrap_or_default();
        let address = configs
            .iter()
            .filter_map(|c| {
                let p = c.properties.as_ref()?;
                let ip = p.private_ip_address.as_deref()?;
                // `address/len` when a prefix was allocated: the address is the part before.
                let ip = ip.split('/').next().unwrap_or(ip);
                ip.parse::<std::net::IpAddr>().ok()?;
                Some((p.primary == Some(true), ip.to_owned()))
            })
            .max_by_key(|(primary, _)| *primary)
            .map(|(_, ip)| ip);
        let Some(address) = address else {
            continue;
        };
        let primary = props.primary != Some(false);
        let key = vm.to_ascii_lowercase();
        match out.get(&key) {
            Some((true, _)) => {}
            Some((false, _)) if !primary => {}
            _ => {
                out.insert(key, (primary, address));
            }
        }
    }
    out.into_iter().map(|(k, (_, ip))| (k, ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(vm: Option<&str>, primary: Option<bool>, ips: &[(&str, bool)]) -> NetworkInterface {
        serde_json::from_value(serde_json::json!({
            "name": "n",
            "properties": {
                "primary": primary,
                "virtualMachine": vm.map(|v| serde_json::json!({"id": format!(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{v}")})),
                "ipConfigurations": ips.iter().map(|(ip, primary)| serde_json::json!({
                    "name": "ipconfig1",
                    "properties": {"privateIPAddress": ip, "primary": primary,
                                   "privateIPAllocationMethod": "Dynamic"}
                })).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    #[test]
    fn addresses_come_from_each_vms_primary_nic() {
        let got = nic_addresses(&[
            nic(Some("Maya-00001"), Some(true), &[("10.80.0.4", true)]),
            // A second, non-primary NIC of the same VM does not replace the address.
            nic(Some("maya-00001"), Some(false), &[("10.80.1.9", true)]),
            // The primary IP configuration wins within a NIC.
            nic(
                Some("maya-00002"),
                None,
                &[("10.80.0.7", false), ("10.80.0.5", true)],
            ),
            // Detached NICs and NICs without an address are not anyone's.
            nic(None, Some(true), &[("10.80.0.6", true)]),
            nic(Some("maya-00003"), Some(true), &[("", true)]),
        ]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["maya-00001"], "10.80.0.4");
        assert_eq!(got["maya-00002"], "10.80.0.5");
        // A non-primary NIC listed first is replaced by the primary one.
        let got = nic_addresses(&[
            nic(Some("vm"), Some(false), &[("10.80.1.9", true)]),
            nic(Some("vm"), Some(true), &[("10.80.0.4", true)]),
        ]);
        assert_eq!(got["vm"], "10.80.0.4");
    }

    #[test]
    fn states_from_provisioning_and_power() {
        assert_eq!(
            node_state(Some("Failed"), Some("deallocated")),
            NodeState::Failed
        );
        assert_eq!(node_state(Some("Creating"), None), NodeState::Creating);
        assert_eq!(
            node_state(Some("Succeeded"), Some("running")),
            NodeState::Running
        );
        assert_eq!(
            node_state(Some("Succeeded"), Some("deallocated")),
            NodeState::Deallocated
        );
        assert_eq!(
            node_state(Some("Succeeded"), Some("stopped")),
            NodeState::Stopped
        );
        assert_eq!(
            node_state(Some("Deleting"), Some("running")),
            NodeState::Deleting
        );
        assert_eq!(
            node_state(Some("Updating"), Some("deallocating")),
            NodeState::Deallocating
        );
    }
}
