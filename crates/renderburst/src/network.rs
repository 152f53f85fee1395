//! Start-up set-up: the network render nodes join (when `ensure_network` asks for it) and
//! the pools and schedules declared in the configuration file.

use azure::ArmClient;
use rb_core::{PoolSpec, ScheduleSpec, TAG_OWNER};
use serde_json::json;
use store::{NewEvent, PutOutcome, Store};

const VNET: &str = "renderburst-vnet";
const SUBNET: &str = "render";
const NSG: &str = "renderburst-nsg";

/// Creates the resource group, NSG, VNet and subnet if missing. Returns (subnet id, NSG id).
pub async fn ensure(
    arm: &ArmClient,
    rg: &str,
    location: &str,
    owner: &str,
) -> anyhow::Result<(String, String)> {
    let tags = [(TAG_OWNER.to_owned(), owner.to_owned())]
        .into_iter()
        .collect();
    arm.ensure_resource_group(rg, location, &tags)
        .await
        .map_err(|e| anyhow::anyhow!("resource group {rg}: {e}"))?;
    let nsg = serde_json::from_value(json!({"location": location, "tags": {TAG_OWNER: owner},
        "properties": {"securityRules": []}}))?;
    let nsg = arm
        .ensure_nsg(rg, NSG, &nsg)
        .await
        .map_err(|e| anyhow::anyhow!("network security group {NSG}: {e}"))?;
    let nsg_id = nsg.id.unwrap_or_default();
    let vnet = serde_json::from_value(
        json!({"location": location, "tags": {TAG_OWNER: owner}, "properties": {
        "addressSpace": {"addressPrefixes": ["10.80.0.0/16"]},
        "subnets": [{"name": SUBNET, "properties": {"addressPrefix": "10.80.0.0/18", "networkSecurityGroup": {"id": nsg_id}}}]}}),
    )?;
    arm.ensure_vnet(rg, VNET, &vnet)
        .await
        .map_err(|e| anyhow::anyhow!("virtual network {VNET}: {e}"))?;
    let subnet = serde_json::from_value(json!({"properties": {"addressPrefix": "10.80.0.0/18"}}))?;
    let subnet = arm
        .ensure_subnet(rg, VNET, SUBNET, &subnet)
        .await
        .map_err(|e| anyhow::anyhow!("subnet {SUBNET}: {e}"))?;
    let subnet_id = subnet
        .id
        .ok_or_else(|| anyhow::anyhow!("the subnet {SUBNET} has no id"))?;
    tracing::info!(resource_group = rg, subnet = %subnet_id, "network ready");
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

/// Creates or replaces the `[[pools]]` of the configuration file. Pools created through the
/// API and not in the file are left alone. Returns the pools it created or replaced.
pub async fn apply_config_pools(store: &Store, pools: &[PoolSpec]) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for spec in pools {
        let (kind, message) = match store.get_pool(&spec.name).await? {
            None => {
                store.create_pool(spec).await?;
                (
                    "pool.created",
                    format!("pool {} created from the configuration file", spec.name),
                )
            }
            Some(existing) if existing.spec != *spec => {
                spec.check_replacement(&existing.spec).map_err(|e| {
                    anyhow::anyhow!(
                        "[[pools]] {}: {}: {} (the pool in the database keeps its old value)",
                        spec.name,
                        e.field,
                        e.message
                    )
                })?;
                store.replace_pool(spec).await?;
                (
                    "pool.replaced",
                    format!("pool {} updated from the configuration file", spec.name),
                )
            }
            Some(_) => continue,
        };
        changed.push(spec.name.clone());
        store
            .append_event(&NewEvent {
                kind: kind.into(),
                pool: Some(spec.name.clone()),
                node: None,
                actor: "config".into(),
                message,
                data: serde_json::to_value(spec)?,
            })
            .await?;
    }
    Ok(changed)
}

/// Creates or replaces the `[[schedules]]` of the configuration file (read from `source`).
/// Schedules created through the API and not in the file are left alone. A schedule naming
/// a pool that is neither in the file nor in the database is an error naming the key.
pub async fn apply_config_schedules(
    store: &Store,
    schedules: &[ScheduleSpec],
    source: &str,
) -> anyhow::Result<()> {
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
