//! Start-up set-up: the network render nodes join (when `ensure_network` asks for it) and
//! the pools and schedules declared in the configuration file.

use arm_model::Tags;
use arm_model::common::{ChildResource, Resource, SubResource};
use arm_model::network::{
    AddressSpace, NetworkSecurityGroup, NetworkSecurityGroupProperties, Subnet, SubnetProperties,
    VirtualNetwork, VirtualNetworkProperties,
};
use azure::ArmClient;
use rb_core::arm_names::SubnetId;
use rb_core::{PoolSpec, ScheduleSpec, TAG_OWNER};
use store::{NewEvent, PutOutcome, Store};

const VNET: &str = "renderburst-vnet";
const SUBNET: &str = "render";
const NSG: &str = "renderburst-nsg";
/// The range of a subnet renderburst creates (inside its VNet's 10.80.0.0/16).
const SUBNET_PREFIX: &str = "10.80.0.0/18";

/// The network security group renderburst creates: no rules of its own (Azure's default
/// rules apply), tagged as ours.
fn nsg_body(location: &str, tags: &Tags) -> NetworkSecurityGroup {
    Resource {
        location: Some(location.to_owned()),
        tags: Some(tags.clone()),
        properties: Some(NetworkSecurityGroupProperties {
            security_rules: Some(Vec::new()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The render subnet ([`SUBNET_PREFIX`]), with the NSG when it is made with its VNet.
fn subnet_body(nsg_id: Option<&str>) -> Subnet {
    ChildResource {
        properties: Some(SubnetProperties {
            address_prefix: Some(SUBNET_PREFIX.to_owned()),
            network_security_group: nsg_id.map(|id| SubResource { id: id.to_owned() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The VNet renderburst creates (10.80.0.0/16) with its render subnet.
fn vnet_body(location: &str, tags: &Tags, subnet: &str, nsg_id: &str) -> VirtualNetwork {
    Resource {
        location: Some(location.to_owned()),
        tags: Some(tags.clone()),
        properties: Some(VirtualNetworkProperties {
            address_space: Some(AddressSpace {
                address_prefixes: vec!["10.80.0.0/16".to_owned()],
            }),
            subnets: Some(vec![Subnet {
                name: Some(subnet.to_owned()),
                ..subnet_body(Some(nsg_id))
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the resource group, NSG, VNet and subnet if missing. Returns (subnet id, NSG id).
///
/// With `configured` (`azure.subnet_id` together with `ensure_network`), that subnet is the
/// one ensured: its resource group, virtual network and subnet as the id names them, so the
/// nodes are created where the configuration says (before issue 12 the daemon created its
/// own `renderburst-vnet`, said "network ready", then created every VM in a subnet that did
/// not exist). An existing virtual network keeps its address space; a missing subnet in it
/// is created as 10.80.0.0/18, and where that range does not fit ARM's refusal is reported
/// with what to do.
pub async fn ensure(
    arm: &ArmClient,
    rg: &str,
    location: &str,
    owner: &str,
    configured: Option<&SubnetId>,
) -> anyhow::Result<(String, String)> {
    let tags: arm_model::Tags = [(TAG_OWNER.to_owned(), owner.to_owned())]
        .into_iter()
        .collect();
    arm.ensure_resource_group(rg, location, &tags)
        .await
        .map_err(|e| anyhow::anyhow!("resource group {rg}: {e}"))?;
    let nsg = arm
        .ensure_nsg(rg, NSG, &nsg_body(location, &tags))
        .await
        .map_err(|e| anyhow::anyhow!("network security group {NSG}: {e}"))?;
    let nsg_id = nsg.id.unwrap_or_default();
    let (net_rg, vnet_name, subnet_name) = match configured {
        Some(s) => (
            s.resource_group.as_str(),
            s.virtual_network.as_str(),
            s.subnet.as_str(),
        ),
        None => (rg, VNET, SUBNET),
    };
    if !net_rg.eq_ignore_ascii_case(rg) {
        arm.ensure_resource_group(net_rg, location, &tags)
            .await
            .map_err(|e| anyhow::anyhow!("resource group {net_rg} (azure.subnet_id): {e}"))?;
    }
    let vnet = vnet_body(location, &tags, subnet_name, &nsg_id);
    arm.ensure_vnet(net_rg, vnet_name, &vnet)
        .await
        .map_err(|e| anyhow::anyhow!("virtual network {vnet_name} in {net_rg}: {e}"))?;
    let subnet = arm
        .ensure_subnet(net_rg, vnet_name, subnet_name, &subnet_body(None))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "subnet {subnet_name} of virtual network {vnet_name} in {net_rg}: {e} \
                 (a missing subnet is created as {SUBNET_PREFIX}; create it with the range you \
                 want, or set azure.ensure_network = false)"
            )
        })?;
    let subnet_id = subnet
        .id
        .ok_or_else(|| anyhow::anyhow!("the subnet {subnet_name} has no id"))?;
    tracing::info!(resource_group = net_rg, subnet = %subnet_id, "network ready");
    Ok((subnet_id, nsg_id))
}

/// Creates the Batch account `account` if missing (with `ensure_network`: the embedded
/// default has one, so batch pools work without an Azure account).
pub async fn ensure_batch_account(
    arm: &ArmClient,
    rg: &str,
    location: &str,
    account: &str,
    owner: &str,
) -> anyhow::Result<()> {
    let tags = [(TAG_OWNER.to_owned(), owner.to_owned())]
        .into_iter()
        .collect();
    let a = arm
        .ensure_batch_account(rg, account, location, &tags)
        .await
        .map_err(|e| anyhow::anyhow!("Batch account {account}: {e}"))?;
    tracing::info!(
        account,
        endpoint = a
            .properties
            .and_then(|p| p.account_endpoint)
            .unwrap_or_default(),
        "Batch account ready"
    );
    Ok(())
}

/// Creates or replaces the `[[pools]]` of the configuration file, through the API's one
/// path for pool writes (`api::write_pool`: the same checks, generation bump and event as
/// `POST`/`PUT /v1/pools`). Pools created through the API and not in the file are left
/// alone. Returns the pools it created or replaced.
pub async fn apply_config_pools(
    store: &Store,
    pools: &[PoolSpec],
    declared: &std::collections::BTreeSet<String>,
    source: &str,
) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for spec in pools {
        let written = api::write_pool(
            store,
            spec,
            api::PoolWrite::CreateOrReplace,
            declared,
            api::Origin::Config,
        )
        .await;
        match written {
            Ok(api::Written::Unchanged(_)) => continue,
            Ok(_) => changed.push(spec.name.clone()),
            Err(api::PoolWriteError::Invalid(e)) => anyhow::bail!(
                "configuration error in {source}: [[pools]] {}: {}: {} (the pool in the database keeps its old value)",
                spec.name,
                e.field,
                e.message
            ),
            Err(api::PoolWriteError::Store(e) | api::PoolWriteError::Event(e)) => {
                return Err(e.into());
            }
        }
    }
    Ok(changed)
}

/// Creates or replaces the `[[schedules]]` of the configuration file (read from `source`).
/// Schedules created through the API and not in the file are left alone. A schedule naming
/// a pool that is neither in the file nor in the database is an error naming the key, and
/// so is one that clashes with a stored schedule on a stored pool (the configuration's own
/// schedules were compared with each other when it was read); nothing is stored then.
pub async fn apply_config_schedules(
    store: &Store,
    schedules: &[ScheduleSpec],
    source: &str,
) -> anyhow::Result<()> {
    let pools: rb_core::schedule_clash::PoolTags = store
        .list_pools()
        .await?
        .into_iter()
        .filter(|p| !p.deleting)
        .map(|p| (p.spec.name, p.spec.tags))
        .collect();
    let stored = store.list_schedules().await?;
    let now = controller::schedules::unix_now();
    for (i, spec) in schedules.iter().enumerate() {
        let others = stored
            .iter()
            .map(|r| &r.spec)
            .filter(|o| schedules.iter().all(|s| s.name != o.name))
            .chain(schedules.iter().filter(|o| o.name != spec.name));
        for other in others {
            if let Some(clash) = rb_core::schedule_clash::clash(spec, other, &pools, now) {
                anyhow::bail!(
                    "configuration error in {source}: schedules[{i}] ({}).set.{}: {}",
                    spec.name,
                    clash.bound,
                    clash.message(spec, other)
                );
            }
        }
    }
    for (i, spec) in schedules.iter().enumerate() {
        if let Some(pool) = &spec.pool
            && store.get_pool(pool).await?.is_none()
        {
            anyhow::bail!(
                "configuration error in {source}: schedules[{i}] ({}).pool: pool {pool:?} is neither in [[pools]] nor in the database",
                spec.name
            );
        }
        let (_, outcome) = store.put_schedule(spec).await?;
        let (kind, verb) = match outcome {
            PutOutcome::Created => ("schedule.created", "created"),
            PutOutcome::Replaced => ("schedule.replaced", "updated"),
            PutOutcome::Unchanged => continue,
        };
        store
            .append_event(&NewEvent {
                kind: kind.into(),
                pool: spec.pool.clone(),
                node: None,
                actor: "config".into(),
                message: format!(
                    "schedule {} {verb} from the configuration file: \"{}\" ({}) sets {}",
                    spec.name,
                    spec.cron,
                    spec.timezone,
                    spec.set.describe()
                ),
                data: serde_json::to_value(spec)?,
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    /// The bodies are typed and send what the `json!` bodies they replaced sent.
    #[test]
    fn network_bodies_send_what_they_always_sent() {
        let tags: Tags = [(TAG_OWNER.to_owned(), "o-1".to_owned())].into();
        assert_eq!(
            serde_json::to_value(nsg_body("westeurope", &tags)).unwrap(),
            json!({"location": "westeurope", "tags": {TAG_OWNER: "o-1"},
                   "properties": {"securityRules": []}})
        );
        assert_eq!(
            serde_json::to_value(vnet_body("westeurope", &tags, "render", "/nsg/id")).unwrap(),
            json!({"location": "westeurope", "tags": {TAG_OWNER: "o-1"},
                "properties": {
                "addressSpace": {"addressPrefixes": ["10.80.0.0/16"]},
                "subnets": [{"name": "render", "properties": {"addressPrefix": SUBNET_PREFIX,
                             "networkSecurityGroup": {"id": "/nsg/id"}}}]}})
        );
        assert_eq!(
            serde_json::to_value(subnet_body(None)).unwrap(),
            json!({"properties": {"addressPrefix": SUBNET_PREFIX}})
        );
    }

    /// Issue 12 item 11: the Azure template gives the daemon only what joining the render
    /// subnet needs there (a role scoped to that subnet), not the operator role on the
    /// network's resource group; and the operator role itself carries no network join.
    #[test]
    fn the_azure_template_grants_subnet_join_on_the_subnet_alone() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/azure");
        let main = std::fs::read_to_string(root.join("main.bicep")).unwrap();
        let role = |name: &str| -> String {
            let start = main
                .find(&format!(
                    "resource {name} 'Microsoft.Authorization/roleDefinitions"
                ))
                .unwrap_or_else(|| panic!("role {name} in main.bicep"));
            let rest = &main[start..];
            rest[..rest.find("\n}\n").unwrap()].to_owned()
        };
        let operator = role("operatorRole");
        assert!(
            !operator.contains("subnets/join"),
            "the operator role joins no subnet"
        );
        let joiner = role("subnetJoinRole");
        let actions: Vec<&str> = joiner
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("'Microsoft."))
            .collect();
        assert_eq!(
            actions,
            [
                "'Microsoft.Network/virtualNetworks/read'",
                "'Microsoft.Network/virtualNetworks/subnets/read'",
                "'Microsoft.Network/virtualNetworks/subnets/join/action'",
            ]
        );
        assert!(
            !main.contains("module operateSubnet"),
            "no operator role on the subnet's resource group"
        );
        let module = std::fs::read_to_string(root.join("subnet-join.bicep")).unwrap();
        assert!(
            module.lines().any(|l| l.trim() == "scope: subnet"),
            "the join role is assigned on the subnet itself"
        );
    }
}
