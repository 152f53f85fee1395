//! Azure Batch's management plane (ARM): accounts and pools.

use serde::{Deserialize, Serialize};

use crate::common::Resource;

// ---------------------------------------------------------------------------------------------
// Management plane (ARM)
// ---------------------------------------------------------------------------------------------

pub type BatchAccount = Resource<BatchAccountProperties>;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchAccountProperties {
    /// Host (no scheme) of the data plane, e.g. `acct.eastus.batch.azure.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_management_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// `BatchService` (quotas below apply) or `UserSubscription` (subscription quotas apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_allocation_mode: Option<String>,
    /// vCPUs, across all dedicated nodes of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_core_quota: Option<u32>,
    /// vCPUs, across all Spot/low-priority nodes of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_priority_core_quota: Option<u32>,
    #[serde(
        default,
        rename = "dedicatedCoreQuotaPerVMFamily",
        skip_serializing_if = "Option::is_none"
    )]
    pub dedicated_core_quota_per_vm_family: Option<Vec<VirtualMachineFamilyCoreQuota>>,
    #[serde(
        default,
        rename = "dedicatedCoreQuotaPerVMFamilyEnforced",
        skip_serializing_if = "Option::is_none"
    )]
    pub dedicated_core_quota_per_vm_family_enforced: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_quota: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_job_and_job_schedule_quota: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineFamilyCoreQuota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_quota: Option<u32>,
}

/// A pool. PUT and PATCH answer 200 synchronously with an `ETag`; only DELETE is long-running.
pub type Pool = Resource<PoolProperties>;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Batch upper-cases it in responses (`STANDARD_D4`); compare case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_settings: Option<ScaleSettings>,
    /// Read-only result of the last autoscale evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_run: Option<AutoScaleRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_slots_per_node: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_scheduling_policy: Option<TaskSchedulingPolicy>,
    /// See [`InterNodeCommunicationState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_node_communication: Option<String>,
    /// Retired in 2024 and absent from the 2025-06-01 model; kept so the simulator can see a
    /// client still sending it and refuse with an explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_licenses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_packages: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_accounts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<MetadataItem>>,
    /// See [`AllocationState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_state_transition_time: Option<String>,
    /// See [`PoolProvisioningState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_dedicated_nodes: Option<u32>,
    /// Spot and low-priority nodes alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_low_priority_nodes: Option<u32>,
    /// The last (or running) resize, with its errors: where quota shortfalls show up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_operation_status: Option<ResizeOperationStatus>,
}

/// Values of `allocationState`.
pub struct AllocationState;

impl AllocationState {
    pub const STEADY: &'static str = "Steady";
    pub const RESIZING: &'static str = "Resizing";
    /// A stop-resize was requested and the pool is settling.
    pub const STOPPING: &'static str = "Stopping";
}

/// Values of a pool's `provisioningState`.
pub struct PoolProvisioningState;

impl PoolProvisioningState {
    pub const SUCCEEDED: &'static str = "Succeeded";
    pub const DELETING: &'static str = "Deleting";
}

/// Values of `interNodeCommunication` (`InterNodeCommunicationState`).
pub struct InterNodeCommunicationState;

impl InterNodeCommunicationState {
    pub const ENABLED: &'static str = "Enabled";
    pub const DISABLED: &'static str = "Disabled";
}

/// Values of `nodeDeallocationOption`: what happens to running tasks when a node is removed.
/// The data plane spells them in lowercase (`requeue`); Batch compares case-insensitively.
pub struct NodeDeallocationOption;

impl NodeDeallocationOption {
    pub const REQUEUE: &'static str = "Requeue";
    pub const TERMINATE: &'static str = "Terminate";
    pub const TASK_COMPLETION: &'static str = "TaskCompletion";
    pub const RETAINED_DATA: &'static str = "RetainedData";
}

/// Codes of [`ResizeError`] (`PoolResizeErrorCodes` in the Batch SDKs). Open set.
pub struct ResizeErrorCode;

impl ResizeErrorCode {
    pub const ACCOUNT_CORE_QUOTA_REACHED: &'static str = "AccountCoreQuotaReached";
    pub const ACCOUNT_LOW_PRIORITY_CORE_QUOTA_REACHED: &'static str =
        "AccountLowPriorityCoreQuotaReached";
    pub const ACCOUNT_SPOT_CORE_QUOTA_REACHED: &'static str = "AccountSpotCoreQuotaReached";
    pub const ACCOUNT_VM_SERIES_CORE_QUOTA_REACHED: &'static str =
        "AccountVMSeriesCoreQuotaReached";
    pub const ALLOCATION_FAILED: &'static str = "AllocationFailed";
    /// Note the lowercase `o`: that is how the service spells it.
    pub const ALLOCATION_TIMED_OUT: &'static str = "AllocationTimedout";
    pub const REMOVE_NODES_FAILED: &'static str = "RemoveNodesFailed";
    pub const RESIZE_STOPPED: &'static str = "ResizeStopped";
    pub const UNKNOWN: &'static str = "Unknown";
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_configuration: Option<VirtualMachineConfiguration>,
}

/// `VirtualMachineConfiguration`: the nodes' image, agent, disks and container setup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    /// Must match the image, e.g. `batch.node.ubuntu 24.04`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_agent_sku_id: Option<String>,
    /// Only with a Windows image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_configuration: Option<WindowsConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disks: Option<Vec<serde_json::Value>>,
    /// `Windows_Server` or `Windows_Client` (on-premises licenses); omitted: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_type: Option<String>,
    /// Set: every node is prepared to run tasks in containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_configuration: Option<ContainerConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_placement_configuration: Option<NodePlacementConfiguration>,
}

/// `WindowsConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsConfiguration {
    /// Omitted: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_automatic_updates: Option<bool>,
}

/// `NodePlacementConfiguration`: `policy` is `Regional` (the default) or `Zonal`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlacementConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// `ContainerConfiguration`: the container technology and the images pulled onto every node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerConfiguration {
    /// See [`ContainerType`]. Required by the service.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub container_type: Option<String>,
    /// Full references, as given to `docker pull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_image_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_registries: Option<Vec<ContainerRegistry>>,
}

/// Values of a container configuration's `type` (`ContainerType`).
pub struct ContainerType;

impl ContainerType {
    pub const DOCKER_COMPATIBLE: &'static str = "DockerCompatible";
    pub const CRI_COMPATIBLE: &'static str = "CriCompatible";
}

/// `ContainerRegistry`: a private registry, with a user and password or an identity.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRegistry {
    /// Spelt `username` on the wire (the SDKs call it `userName`).
    #[serde(default, rename = "username", skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// A secret: never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Omitted: `docker.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_reference: Option<ComputeNodeIdentityReference>,
}

/// `ComputeNodeIdentityReference`: a user-assigned identity of the pool, by ARM id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeNodeIdentityReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// Batch's image reference (`ImageReference`): marketplace fields or a gallery image `id`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `ScaleSettings`. Exactly one of the two should be set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_scale: Option<FixedScaleSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale: Option<AutoScaleSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixedScaleSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dedicated_nodes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_low_priority_nodes: Option<u32>,
    /// ISO 8601 duration; the service defaults to `PT15M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<String>,
    /// See [`NodeDeallocationOption`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_deallocation_option: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaleSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaleRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_time: Option<String>,
    /// `$Var=value;...` as evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// `NetworkConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    /// ARM id of the subnet the nodes join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// `none` (the default) or `job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_vnet_assignment_scope: Option<String>,
    /// `{"provision": "NoPublicIPAddresses"}` for render nodes behind a NAT.
    #[serde(
        default,
        rename = "publicIPAddressConfiguration",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address_configuration: Option<PublicIpAddressConfiguration>,
    /// Inbound NAT pools; kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_accelerated_networking: Option<bool>,
}

/// `PublicIPAddressConfiguration`: whether and how the nodes get public addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpAddressConfiguration {
    /// See [`IpAddressProvisioningType`]; omitted: `BatchManaged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<String>,
    /// With `UserManaged`: the public IP addresses' ARM ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_ids: Option<Vec<String>>,
}

/// Values of `provision` (`IPAddressProvisioningType`).
pub struct IpAddressProvisioningType;

impl IpAddressProvisioningType {
    pub const BATCH_MANAGED: &'static str = "BatchManaged";
    pub const USER_MANAGED: &'static str = "UserManaged";
    pub const NO_PUBLIC_IP_ADDRESSES: &'static str = "NoPublicIPAddresses";
}

/// `TaskSchedulingPolicy`: how tasks fill the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSchedulingPolicy {
    /// See [`ComputeNodeFillType`]. Required by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_fill_type: Option<String>,
    /// `None` (the default) or `CreationTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_default_order: Option<String>,
}

/// Values of `nodeFillType` (`ComputeNodeFillType`).
pub struct ComputeNodeFillType;

impl ComputeNodeFillType {
    pub const SPREAD: &'static str = "Spread";
    pub const PACK: &'static str = "Pack";
}

/// `StartTask`: what every node runs when it joins the pool (and after a reboot or reimage).
/// Its command line runs under no shell. A PATCH that carries one replaces the pool's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    /// Given to the start task only, not to the tasks that run on the node afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_settings: Option<Vec<EnvironmentSetting>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_files: Option<Vec<ResourceFile>>,
    /// Omitted: a non-administrative user unique to the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// `-1` retries forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
    /// When true a node stays out of scheduling until the start task succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_success: Option<bool>,
    /// Set: the start task runs in this container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<TaskContainerSettings>,
}

/// `EnvironmentSetting`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSetting {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl EnvironmentSetting {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// `ResourceFile`: a file Batch downloads to the node before the command runs, from exactly
/// one of `autoStorageContainerName`, `storageContainerUrl` or `httpUrl`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_storage_container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_container_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// Octal, Linux only (`0770`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_reference: Option<ComputeNodeIdentityReference>,
}

/// `UserIdentity`: a named user account of the pool or an auto user, not both.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_user: Option<AutoUserSpecification>,
}

impl UserIdentity {
    /// The auto user of `scope` (see [`AutoUserScope`]) at `elevation_level` (see
    /// [`ElevationLevel`]).
    pub fn auto_user(scope: &str, elevation_level: &str) -> Self {
        Self {
            user_name: None,
            auto_user: Some(AutoUserSpecification {
                scope: Some(scope.to_owned()),
                elevation_level: Some(elevation_level.to_owned()),
            }),
        }
    }
}

/// `AutoUserSpecification`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoUserSpecification {
    /// See [`AutoUserScope`]; omitted: `Pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// See [`ElevationLevel`]; omitted: `NonAdmin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation_level: Option<String>,
}

/// Values of an auto user's `scope` (`AutoUserScope`).
pub struct AutoUserScope;

impl AutoUserScope {
    /// A new user for each task.
    pub const TASK: &'static str = "Task";
    /// The one auto user account of every node of the pool.
    pub const POOL: &'static str = "Pool";
}

/// Values of `elevationLevel` (`ElevationLevel`). The management plane spells them so; the
/// data plane in lower camel case (`nonAdmin`, `admin`).
pub struct ElevationLevel;

impl ElevationLevel {
    pub const NON_ADMIN: &'static str = "NonAdmin";
    pub const ADMIN: &'static str = "Admin";
}

/// `TaskContainerSettings`: the container a task runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskContainerSettings {
    /// Extra arguments to the container create command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_run_options: Option<String>,
    /// Required by the service; without a tag, `:latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<ContainerRegistry>,
    /// `TaskWorkingDirectory` (the default) or `ContainerImageDefault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_host_batch_bind_mounts: Option<Vec<serde_json::Value>>,
}

/// A `{name, value}` pair of pool metadata; renderburst can mark its pools with these.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataItem {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeOperationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dedicated_nodes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_low_priority_nodes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_deallocation_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Present once a resize fell short (a quota, allocation failure or timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ResizeError>>,
}

/// Why a resize did not reach its target; `code` is one of [`ResizeErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeError {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<ResizeError>>,
}
