//! Typed operations on the resources renderburst uses.
//!
//! Conventions, so callers can be restart-safe without thinking about it:
//! - `ensure_*` reads first and writes only what is missing.
//! - Deletes answer `Ok(None)` when the resource is already gone: NotFound on delete is
//!   success.
//! - Gets answer `Ok(None)` on NotFound.
//! - Lists follow `nextLink`; the Compute list has no tag filter, so tag filtering is done
//!   here, client-side.
//!
//! Over 600 lines: one short method per ARM operation renderburst uses, sharing the URL and
//! api-version scheme of the client; the last part is unit tests pinning the bodies.

use arm_model::batch::{
    BatchAccount, ComputeNode, FixedScaleSettings, NodeRemoveParameter, Pool, PoolProperties,
    ScaleSettings, StartTask,
};
use arm_model::compute::{Disk, VirtualMachine};
use arm_model::network::{NetworkInterface, NetworkSecurityGroup, Subnet, VirtualNetwork};
use arm_model::resources::ResourceGroup;
use arm_model::{Resource, Tags};
use http::Method;
use serde_json::Value;

use crate::error::{ArmError, Result};
use crate::lro::Operation;
use crate::{ArmClient, Pager};

/// api-versions used per resource provider.
#[derive(Debug, Clone)]
pub struct ApiVersions {
    pub resources: String,
    pub network: String,
    pub compute: String,
    pub disks: String,
    pub batch: String,
    pub batch_data_plane: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        Self {
            resources: "2025-04-01".into(),
            network: "2025-07-01".into(),
            compute: "2025-04-01".into(),
            disks: "2025-01-02".into(),
            batch: "2025-06-01".into(),
            batch_data_plane: "2024-07-01.20.0".into(),
        }
    }
}

/// Keep only resources carrying `name` (compared case-insensitively, as Azure compares tag
/// names) with `value`, if given.
#[derive(Debug, Clone)]
pub struct TagFilter {
    pub name: String,
    pub value: Option<String>,
}

impl TagFilter {
    pub fn matches(&self, tags: Option<&Tags>) -> bool {
        tags.and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case(&self.name)))
            .is_some_and(|(_, v)| self.value.as_ref().is_none_or(|want| want == v))
    }
}

fn or_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| ArmError::decode(format!("cannot encode the request body: {e}")))
}

impl ArmClient {
    fn sub_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription_id())
    }

    fn rg_path(&self, rg: &str) -> String {
        format!("{}/resourceGroups/{rg}", self.sub_path())
    }

    fn v(&self) -> &ApiVersions {
        &self.config().api_versions
    }

    /// Starts a write and returns its operation handle (and the first answer's body).
    async fn begin(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<(Operation, Option<Value>)> {
        let resp = self.request(method.clone(), url.clone(), body).await?;
        let op = Operation::from_response(&method, &url, &resp);
        let body = if resp.body.is_empty() {
            None
        } else {
            serde_json::from_slice(&resp.body).ok()
        };
        Ok((op, body))
    }

    /// DELETE that treats "already gone" as success.
    async fn begin_delete(&self, url: url::Url) -> Result<Option<Operation>> {
        match self.begin(Method::DELETE, url, None).await {
            Ok((op, _)) if op.completed => Ok(None),
            Ok((op, _)) => Ok(Some(op)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: url::Url) -> Result<T> {
        self.request(Method::GET, url, None).await?.json()
    }

    // ----- resource groups -----

    pub async fn get_resource_group(&self, name: &str) -> Result<Option<ResourceGroup>> {
        let url = self.url(&self.rg_path(name), &self.v().resources, &[]);
        or_none(self.get_json(url).await)
    }

    /// Creates the resource group if it does not exist; an existing one is left as it is.
    pub async fn ensure_resource_group(
        &self,
        name: &str,
        location: &str,
        tags: &Tags,
    ) -> Result<ResourceGroup> {
        if let Some(rg) = self.get_resource_group(name).await? {
            return Ok(rg);
        }
        let url = self.url(&self.rg_path(name), &self.v().resources, &[]);
        let body: ResourceGroup = tracked_body(location, tags);
        self.request(Method::PUT, url, Some(&to_value(&body)?))
            .await?
            .json()
    }

    pub async fn delete_resource_group(&self, name: &str) -> Result<Option<Operation>> {
        let url = self.url(&self.rg_path(name), &self.v().resources, &[]);
        self.begin_delete(url).await
    }

    // ----- network -----

    fn network_path(&self, rg: &str, ty: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Network/{ty}/{name}",
            self.rg_path(rg)
        )
    }

    /// Creates the virtual network (with its inline subnets) if it does not exist.
    pub async fn ensure_vnet(
        &self,
        rg: &str,
        name: &str,
        vnet: &VirtualNetwork,
    ) -> Result<VirtualNetwork> {
        let url = self.url(
            &self.network_path(rg, "virtualNetworks", name),
            &self.v().network,
            &[],
        );
        if let Some(v) = or_none(self.get_json(url.clone()).await)? {
            return Ok(v);
        }
        let (op, _) = self.begin(Method::PUT, url, Some(&to_value(vnet)?)).await?;
        decode(op.wait(self).await?)
    }

    pub async fn ensure_subnet(
        &self,
        rg: &str,
        vnet: &str,
        name: &str,
        subnet: &Subnet,
    ) -> Result<Subnet> {
        let path = format!(
            "{}/subnets/{name}",
            self.network_path(rg, "virtualNetworks", vnet)
        );
        let url = self.url(&path, &self.v().network, &[]);
        if let Some(s) = or_none(self.get_json(url.clone()).await)? {
            return Ok(s);
        }
        let (op, _) = self
            .begin(Method::PUT, url, Some(&to_value(subnet)?))
            .await?;
        decode(op.wait(self).await?)
    }

    pub async fn ensure_nsg(
        &self,
        rg: &str,
        name: &str,
        nsg: &NetworkSecurityGroup,
    ) -> Result<NetworkSecurityGroup> {
        let url = self.url(
            &self.network_path(rg, "networkSecurityGroups", name),
            &self.v().network,
            &[],
        );
        if let Some(n) = or_none(self.get_json(url.clone()).await)? {
            return Ok(n);
        }
        let (op, _) = self.begin(Method::PUT, url, Some(&to_value(nsg)?)).await?;
        decode(op.wait(self).await?)
    }

    pub async fn get_nic(&self, rg: &str, name: &str) -> Result<Option<NetworkInterface>> {
        let url = self.url(
            &self.network_path(rg, "networkInterfaces", name),
            &self.v().network,
            &[],
        );
        or_none(self.get_json(url).await)
    }

    /// NICs of a resource group (or the subscription), filtered by tag if asked.
    pub async fn list_nics(
        &self,
        rg: Option<&str>,
        filter: Option<&TagFilter>,
    ) -> Result<Vec<NetworkInterface>> {
        let scope = rg.map_or_else(|| self.sub_path(), |r| self.rg_path(r));
        let url = self.url(
            &format!("{scope}/providers/Microsoft.Network/networkInterfaces"),
            &self.v().network,
            &[],
        );
        filter_tags(self.pager(url).collect_all().await?, filter)
    }

    pub async fn delete_nic(&self, rg: &str, name: &str) -> Result<Option<Operation>> {
        let url = self.url(
            &self.network_path(rg, "networkInterfaces", name),
            &self.v().network,
            &[],
        );
        self.begin_delete(url).await
    }

    // ----- compute -----

    /// A VM's ARM resource id (what Compute Schedule's requests name VMs by).
    pub fn vm_id(&self, rg: &str, name: &str) -> String {
        self.vm_path(rg, name)
    }

    pub(crate) fn vm_path(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.rg_path(rg)
        )
    }

    /// Creates or updates a VM in one write (NIC and OS disk inline). Returns the first
    /// answer's body and the operation to follow.
    pub async fn create_or_update_vm(
        &self,
        rg: &str,
        name: &str,
        vm: &VirtualMachine,
    ) -> Result<(Option<VirtualMachine>, Operation)> {
        let url = self.url(&self.vm_path(rg, name), &self.v().compute, &[]);
        let (op, body) = self.begin(Method::PUT, url, Some(&to_value(vm)?)).await?;
        Ok((body.and_then(|b| serde_json::from_value(b).ok()), op))
    }

    pub async fn get_vm(
        &self,
        rg: &str,
        name: &str,
        instance_view: bool,
    ) -> Result<Option<VirtualMachine>> {
        let q: &[(&str, &str)] = if instance_view {
            &[("$expand", "instanceView")]
        } else {
            &[]
        };
        let url = self.url(&self.vm_path(rg, name), &self.v().compute, q);
        or_none(self.get_json(url).await)
    }

    /// VMs of a resource group, with power state if `instance_view`, as pages.
    pub fn list_vms(&self, rg: &str, instance_view: bool) -> Pager<VirtualMachine> {
        let q: &[(&str, &str)] = if instance_view {
            &[("$expand", "instanceView")]
        } else {
            &[]
        };
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Compute/virtualMachines",
                self.rg_path(rg)
            ),
            &self.v().compute,
            q,
        );
        self.pager(url)
    }

    /// VMs of a resource group carrying a tag (the Compute list cannot filter by tag).
    pub async fn list_vms_tagged(
        &self,
        rg: &str,
        filter: &TagFilter,
        instance_view: bool,
    ) -> Result<Vec<VirtualMachine>> {
        filter_tags(
            self.list_vms(rg, instance_view).collect_all().await?,
            Some(filter),
        )
    }

    /// Power and provisioning state of every VM in the subscription, in one paged call.
    /// The answer has ids and statuses only (no tags or profiles).
    pub fn list_vm_status(&self) -> Pager<VirtualMachine> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Compute/virtualMachines",
                self.sub_path()
            ),
            &self.v().compute,
            &[("statusOnly", "true")],
        );
        self.pager(url)
    }

    async fn vm_action(&self, rg: &str, name: &str, action: &str) -> Result<Operation> {
        let url = self.url(
            &format!("{}/{action}", self.vm_path(rg, name)),
            &self.v().compute,
            &[],
        );
        Ok(self.begin(Method::POST, url, None).await?.0)
    }

    pub async fn start_vm(&self, rg: &str, name: &str) -> Result<Operation> {
        self.vm_action(rg, name, "start").await
    }

    pub async fn deallocate_vm(&self, rg: &str, name: &str) -> Result<Operation> {
        self.vm_action(rg, name, "deallocate").await
    }

    pub async fn power_off_vm(&self, rg: &str, name: &str) -> Result<Operation> {
        self.vm_action(rg, name, "powerOff").await
    }

    pub async fn restart_vm(&self, rg: &str, name: &str) -> Result<Operation> {
        self.vm_action(rg, name, "restart").await
    }

    /// Deletes a VM; with `deleteOption: Delete` its NIC and OS disk go with it.
    pub async fn delete_vm(&self, rg: &str, name: &str) -> Result<Option<Operation>> {
        let url = self.url(&self.vm_path(rg, name), &self.v().compute, &[]);
        self.begin_delete(url).await
    }

    pub async fn list_disks(&self, rg: &str, filter: Option<&TagFilter>) -> Result<Vec<Disk>> {
        let url = self.url(
            &format!("{}/providers/Microsoft.Compute/disks", self.rg_path(rg)),
            &self.v().disks,
            &[],
        );
        filter_tags(self.pager(url).collect_all().await?, filter)
    }

    pub async fn delete_disk(&self, rg: &str, name: &str) -> Result<Option<Operation>> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Compute/disks/{name}",
                self.rg_path(rg)
            ),
            &self.v().disks,
            &[],
        );
        self.begin_delete(url).await
    }

    // ----- batch (management plane) -----

    fn pool_path(&self, rg: &str, account: &str, pool: &str) -> String {
        format!(
            "{}/providers/Microsoft.Batch/batchAccounts/{account}/pools/{pool}",
            self.rg_path(rg)
        )
    }

    pub async fn get_batch_account(
        &self,
        rg: &str,
        account: &str,
    ) -> Result<Option<arm_model::batch::BatchAccount>> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Batch/batchAccounts/{account}",
                self.rg_path(rg)
            ),
            &self.v().batch,
            &[],
        );
        or_none(self.get_json(url).await)
    }

    /// Creates the Batch account if it does not exist (`location` and `tags` only: pools are
    /// allocated by the Batch service, whose core quotas then apply).
    pub async fn ensure_batch_account(
        &self,
        rg: &str,
        account: &str,
        location: &str,
        tags: &Tags,
    ) -> Result<BatchAccount> {
        if let Some(a) = self.get_batch_account(rg, account).await? {
            return Ok(a);
        }
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Batch/batchAccounts/{account}",
                self.rg_path(rg)
            ),
            &self.v().batch,
            &[],
        );
        let body: BatchAccount = tracked_body(location, tags);
        let (op, _) = self
            .begin(Method::PUT, url, Some(&to_value(&body)?))
            .await?;
        if !op.completed {
            op.wait(self).await?;
        }
        self.get_batch_account(rg, account).await?.ok_or_else(|| {
            ArmError::decode(format!(
                "Batch account {account} was created but cannot be read"
            ))
        })
    }

    /// Creates a pool. Batch answers at once (200), not with an operation.
    pub async fn create_pool(
        &self,
        rg: &str,
        account: &str,
        name: &str,
        pool: &Pool,
    ) -> Result<Pool> {
        let url = self.url(&self.pool_path(rg, account, name), &self.v().batch, &[]);
        self.request(Method::PUT, url, Some(&to_value(pool)?))
            .await?
            .json()
    }

    /// Sets a pool's fixed-scale targets; `deallocation` is how removed nodes leave
    /// (`TaskCompletion` lets running tasks finish).
    pub async fn resize_pool(
        &self,
        rg: &str,
        account: &str,
        name: &str,
        dedicated: u32,
        spot: u32,
        deallocation: &str,
    ) -> Result<Pool> {
        let url = self.url(&self.pool_path(rg, account, name), &self.v().batch, &[]);
        let body = to_value(&pool_resize_body(dedicated, spot, deallocation))?;
        self.request(Method::PATCH, url, Some(&body)).await?.json()
    }

    /// Replaces a pool's start task (PATCH: the other properties stay). Batch gives it to
    /// nodes that join or restart afterwards; the nodes already there keep theirs.
    pub async fn update_pool_start_task(
        &self,
        rg: &str,
        account: &str,
        name: &str,
        start_task: &StartTask,
    ) -> Result<Pool> {
        let url = self.url(&self.pool_path(rg, account, name), &self.v().batch, &[]);
        let body = to_value(&pool_start_task_body(start_task))?;
        self.request(Method::PATCH, url, Some(&body)).await?.json()
    }

    /// Every Batch account of the subscription (`Batch Account - List`, ARM paging); each
    /// one's `id` names its resource group.
    pub fn list_batch_accounts(&self) -> Pager<arm_model::batch::BatchAccount> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Batch/batchAccounts",
                self.sub_path()
            ),
            &self.v().batch,
            &[],
        );
        self.pager(url)
    }

    /// The pools of a Batch account (management plane, ARM paging).
    pub fn list_pools(&self, rg: &str, account: &str) -> Pager<Pool> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Batch/batchAccounts/{account}/pools",
                self.rg_path(rg)
            ),
            &self.v().batch,
            &[],
        );
        self.pager(url)
    }

    /// Stops the pool's running resize: the nodes allocated so far stay, the pool becomes
    /// Steady, and new targets can be set. Answers at once with the pool.
    pub async fn stop_pool_resize(&self, rg: &str, account: &str, name: &str) -> Result<Pool> {
        let url = self.url(
            &format!("{}/stopResize", self.pool_path(rg, account, name)),
            &self.v().batch,
            &[],
        );
        self.request(Method::POST, url, None).await?.json()
    }

    pub async fn get_pool(&self, rg: &str, account: &str, name: &str) -> Result<Option<Pool>> {
        let url = self.url(&self.pool_path(rg, account, name), &self.v().batch, &[]);
        or_none(self.get_json(url).await)
    }

    pub async fn delete_pool(
        &self,
        rg: &str,
        account: &str,
        name: &str,
    ) -> Result<Option<Operation>> {
        let url = self.url(&self.pool_path(rg, account, name), &self.v().batch, &[]);
        self.begin_delete(url).await
    }

    // ----- batch (data plane) -----

    fn batch_url(&self, account_endpoint: &str, path: &str) -> Result<url::Url> {
        let base = if account_endpoint.starts_with("https://") {
            account_endpoint.to_owned()
        } else {
            format!("https://{account_endpoint}")
        };
        let mut u = url::Url::parse(&format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        ))
        .map_err(|e| {
            ArmError::config(format!(
                "bad Batch account endpoint '{account_endpoint}': {e}"
            ))
        })?;
        u.query_pairs_mut()
            .append_pair("api-version", &self.v().batch_data_plane);
        Ok(u)
    }

    /// Nodes of a pool (Batch data plane, at the account endpoint ARM reports).
    pub fn list_batch_nodes(
        &self,
        account_endpoint: &str,
        pool: &str,
    ) -> Result<Pager<ComputeNode>> {
        Ok(self.batch_pager(self.batch_url(account_endpoint, &format!("pools/{pool}/nodes"))?))
    }

    /// Removes specific nodes (at most 100 per call); targets drop by as many.
    pub async fn remove_batch_nodes(
        &self,
        account_endpoint: &str,
        pool: &str,
        nodes: &[String],
        deallocation: &str,
    ) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        for chunk in nodes.chunks(NodeRemoveParameter::MAX_NODES) {
            let body = to_value(&NodeRemoveParameter {
                node_list: chunk.to_vec(),
                resize_timeout: None,
                node_deallocation_option: Some(deallocation.to_ascii_lowercase()),
            })?;
            let url = self.batch_url(account_endpoint, &format!("pools/{pool}/removenodes"))?;
            self.batch_request(Method::POST, url, Some(&body)).await?;
        }
        Ok(())
    }
}

/// The body creating a tracked resource that needs nothing but a place and tags: a resource
/// group (`Resource Groups - Create Or Update`) or a Batch account (`Batch Account - Create`,
/// whose `properties` are all optional), i.e. `{"location", "tags"}`.
fn tracked_body<P>(location: &str, tags: &Tags) -> Resource<P> {
    Resource {
        location: Some(location.to_owned()),
        tags: Some(tags.clone()),
        ..Default::default()
    }
}

/// The `Pool - Update` (PATCH) body that sets a pool's fixed-scale targets and nothing else:
/// `{"properties": {"scaleSettings": {"fixedScale": {...}}}}`, no `resizeTimeout` (Batch's
/// default, 15 minutes).
fn pool_resize_body(dedicated: u32, spot: u32, deallocation: &str) -> Pool {
    pool_patch(PoolProperties {
        scale_settings: Some(ScaleSettings {
            fixed_scale: Some(FixedScaleSettings {
                target_dedicated_nodes: Some(dedicated),
                target_low_priority_nodes: Some(spot),
                resize_timeout: None,
                node_deallocation_option: Some(deallocation.to_owned()),
            }),
            auto_scale: None,
        }),
        ..Default::default()
    })
}

/// The `Pool - Update` (PATCH) body that replaces the pool's start task:
/// `{"properties": {"startTask": {...}}}`.
fn pool_start_task_body(start_task: &StartTask) -> Pool {
    pool_patch(PoolProperties {
        start_task: Some(start_task.clone()),
        ..Default::default()
    })
}

/// A PATCH of a pool: these properties only (PATCH leaves the others as they are).
fn pool_patch(properties: PoolProperties) -> Pool {
    Pool {
        properties: Some(properties),
        ..Default::default()
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Result<T> {
    let v = v.ok_or_else(|| ArmError::decode("the operation ended without a resource"))?;
    serde_json::from_value(v)
        .map_err(|e| ArmError::decode(format!("cannot decode the resource: {e}")))
}

fn filter_tags<P>(items: Vec<Resource<P>>, filter: Option<&TagFilter>) -> Result<Vec<Resource<P>>> {
    Ok(match filter {
        Some(f) => items
            .into_iter()
            .filter(|r| f.matches(r.tags.as_ref()))
            .collect(),
        None => items,
    })
}

#[cfg(test)]
mod tests {
    use arm_model::batch::{BatchAccountProperties, NodeDeallocationOption};
    use arm_model::resources::ResourceGroupProperties;
    use serde_json::json;

    use super::*;

    fn tags() -> Tags {
        Tags::from([
            ("renderburst-owner".to_owned(), "o-1".to_owned()),
            ("show".to_owned(), "ep1".to_owned()),
        ])
    }

    #[test]
    fn resource_group_and_batch_account_bodies_are_location_and_tags() {
        let want =
            json!({"location": "westeurope", "tags": {"renderburst-owner": "o-1", "show": "ep1"}});
        let rg = to_value(&tracked_body::<ResourceGroupProperties>(
            "westeurope",
            &tags(),
        ))
        .unwrap();
        assert_eq!(rg, want);
        let account = to_value(&tracked_body::<BatchAccountProperties>(
            "westeurope",
            &tags(),
        ))
        .unwrap();
        assert_eq!(account, want);
        // No tags: an empty object, not left out.
        let bare = to_value(&tracked_body::<ResourceGroupProperties>(
            "westeurope",
            &Tags::new(),
        ))
        .unwrap();
        assert_eq!(bare, json!({"location": "westeurope", "tags": {}}));
    }

    #[test]
    fn the_pool_resize_patch_sets_the_fixed_scale_targets_only() {
        let body = to_value(&pool_resize_body(
            1,
            3,
            NodeDeallocationOption::TASK_COMPLETION,
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"properties": {"scaleSettings": {"fixedScale": {
                "targetDedicatedNodes": 1,
                "targetLowPriorityNodes": 3,
                "nodeDeallocationOption": "TaskCompletion",
            }}}})
        );
    }

    #[test]
    fn the_start_task_patch_carries_the_start_task_only() {
        let task = json!({
            "commandLine": "/bin/bash -c 'enroll'",
            "environmentSettings": [{"name": "RENDERBURST_API_URL", "value": "https://rb"}],
            "waitForSuccess": true,
            "maxTaskRetryCount": 2,
            "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}},
        });
        let typed: StartTask = serde_json::from_value(task.clone()).unwrap();
        let body = to_value(&pool_start_task_body(&typed)).unwrap();
        assert_eq!(body, json!({"properties": {"startTask": task}}));
    }
}
