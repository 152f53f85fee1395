//! `Microsoft.Compute`: virtual machines (with their instance view), managed disks, and the
//! IMDS Scheduled Events document a Spot VM sees before it is evicted.
//!
//! Only what renderburst reads or sends is typed; nested blocks it merely passes through (data
//! disks, public IP configurations) stay `serde_json::Value`, and the Linux/Windows
//! configurations keep the fields they do not model in `other`, so everything survives a
//! read-modify-write unchanged.

use serde::{Deserialize, Serialize};

use crate::common::{ChildResource, Resource, SubResource};

/// A virtual machine as ARM serves and accepts it.
pub type VirtualMachine = Resource<VirtualMachineProperties>;

/// A managed disk; its `sku.name` (storage type) sits in the envelope.
pub type Disk = Resource<DiskProperties>;

/// `properties` of a virtual machine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<StorageProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<OsProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    /// See [`Priority`]. Absent means `Regular`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// See [`EvictionPolicy`]. Only valid on Spot VMs; absent means `Deallocate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_profile: Option<BillingProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    /// Base64; only returned with `$expand=userData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Present with `$expand=instanceView` and in `statusOnly=true` list results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_view: Option<InstanceView>,
}

impl VirtualMachineProperties {
    /// Spot (or legacy `Low`) VMs can be evicted; compared case-insensitively like Azure does.
    pub fn is_spot(&self) -> bool {
        self.priority.as_deref().is_some_and(|p| {
            p.eq_ignore_ascii_case(Priority::SPOT) || p.eq_ignore_ascii_case(Priority::LOW)
        })
    }
}

/// Values of `priority`. Azure may add more, so the field stays a string.
pub struct Priority;

impl Priority {
    pub const REGULAR: &'static str = "Regular";
    pub const SPOT: &'static str = "Spot";
    /// Legacy spelling of Spot, still accepted and returned for old VMs.
    pub const LOW: &'static str = "Low";
}

/// Values of `evictionPolicy`.
pub struct EvictionPolicy;

impl EvictionPolicy {
    /// The VM stays (deallocated) and still counts against the Spot quota.
    pub const DEALLOCATE: &'static str = "Deallocate";
    /// The VM and its disks are deleted.
    pub const DELETE: &'static str = "Delete";
}

/// Values of `deleteOption` on OS disks, data disks, NIC references and inline NIC or public IP
/// configurations: what happens to the attached resource when the VM is deleted.
pub struct DeleteOption;

impl DeleteOption {
    pub const DELETE: &'static str = "Delete";
    pub const DETACH: &'static str = "Detach";
}

/// Values of `createOption` on disks.
pub struct CreateOption;

impl CreateOption {
    pub const FROM_IMAGE: &'static str = "FromImage";
    pub const EMPTY: &'static str = "Empty";
    pub const ATTACH: &'static str = "Attach";
    pub const COPY: &'static str = "Copy";
}

/// Values of `storageAccountType` and of a disk's `sku.name`.
pub struct StorageAccountType;

impl StorageAccountType {
    pub const STANDARD_LRS: &'static str = "Standard_LRS";
    pub const STANDARD_SSD_LRS: &'static str = "StandardSSD_LRS";
    pub const PREMIUM_LRS: &'static str = "Premium_LRS";
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<OsDisk>,
    /// Passed through untouched; renderburst only sets `deleteOption` on them when it builds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disks: Option<Vec<serde_json::Value>>,
}

/// A marketplace image (publisher/offer/sku/version) or a gallery image by `id`.
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
    /// Read-only: the concrete version `latest` resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// See [`CreateOption`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching: Option<String>,
    /// See [`DeleteOption`]. `Delete` lets a VM delete take the disk with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(
        default,
        rename = "diskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDiskParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// See [`StorageAccountType`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<String>,
    /// Write-only: ARM never returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    /// Base64 cloud-init; write-only like the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_configuration: Option<LinuxConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_configuration: Option<WindowsConfiguration>,
    /// Responses carry `"secrets": []`; kept so a round trip is faithful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<serde_json::Value>>,
}

/// `osProfile.linuxConfiguration` (Compute REST spec, `ComputeRP/stable/2025-04-01/
/// computeRPCommon.json`, definitions `LinuxConfiguration`, `SshConfiguration`,
/// `SshPublicKey`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxConfiguration {
    /// `true` requires `ssh.publicKeys`; `false` requires `osProfile.adminPassword`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_password_authentication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfiguration>,
    /// Absent means `true`.
    #[serde(
        default,
        rename = "provisionVMAgent",
        skip_serializing_if = "Option::is_none"
    )]
    pub provision_vm_agent: Option<bool>,
    /// Fields not modelled here (`patchSettings`, `enableVMAgentPlatformUpdates`, ...), kept
    /// as they came so a round trip is faithful.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<Vec<SshPublicKey>>,
}

/// A key appended to `path` (for example `/home/<user>/.ssh/authorized_keys`) on the VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshPublicKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_data: Option<String>,
}

/// `osProfile.windowsConfiguration` (Compute REST spec, `ComputeRP/stable/2025-04-01/
/// computeRPCommon.json`, definitions `WindowsConfiguration`, `AdditionalUnattendContent`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsConfiguration {
    /// Absent means `true`.
    #[serde(
        default,
        rename = "provisionVMAgent",
        skip_serializing_if = "Option::is_none"
    )]
    pub provision_vm_agent: Option<bool>,
    /// Absent means `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_automatic_updates: Option<bool>,
    /// XML added to the `Unattend.xml` Windows Setup runs; each entry under 4 KB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_unattend_content: Option<Vec<AdditionalUnattendContent>>,
    /// Fields not modelled here (`timeZone`, `patchSettings`, `winRM`,
    /// `enableVMAgentPlatformUpdates`, ...), kept as they came so a round trip is faithful.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One `Unattend.xml` fragment. The spec allows exactly one pass and one component, and the
/// settings in [`UnattendSetting`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalUnattendContent {
    /// See [`UnattendPass`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_name: Option<String>,
    /// See [`UnattendComponent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    /// See [`UnattendSetting`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting_name: Option<String>,
    /// The XML, including the setting's root element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Values of `passName` (the only one the spec allows).
pub struct UnattendPass;

impl UnattendPass {
    pub const OOBE_SYSTEM: &'static str = "OobeSystem";
}

/// Values of `componentName` (the only one the spec allows).
pub struct UnattendComponent;

impl UnattendComponent {
    pub const SHELL_SETUP: &'static str = "Microsoft-Windows-Shell-Setup";
}

/// Values of `settingName`.
pub struct UnattendSetting;

impl UnattendSetting {
    pub const AUTO_LOGON: &'static str = "AutoLogon";
    pub const FIRST_LOGON_COMMANDS: &'static str = "FirstLogonCommands";
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// Existing NICs attached by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<Vec<NetworkInterfaceReference>>,
    /// NICs Compute creates on the VM's behalf (requires `networkApiVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_configurations: Option<Vec<NetworkInterfaceConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_api_version: Option<String>,
}

/// `{"id": ".../networkInterfaces/x", "properties": {"primary": true, "deleteOption": "Delete"}}`.
pub type NetworkInterfaceReference = ChildResource<NetworkInterfaceReferenceProperties>;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceReferenceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// See [`DeleteOption`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
}

/// An inline NIC definition, created together with the VM.
pub type NetworkInterfaceConfiguration = ChildResource<NetworkInterfaceConfigurationProperties>;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// See [`DeleteOption`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_accelerated_networking: Option<bool>,
    #[serde(
        default,
        rename = "enableIPForwarding",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ip_forwarding: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_configurations: Option<Vec<VirtualMachineIpConfiguration>>,
}

pub type VirtualMachineIpConfiguration = ChildResource<VirtualMachineIpConfigurationProperties>;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineIpConfigurationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(
        default,
        rename = "privateIPAddressVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address_version: Option<String>,
    /// Render nodes normally have no public IP; kept opaque when present.
    #[serde(
        default,
        rename = "publicIPAddressConfiguration",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address_configuration: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingProfile {
    /// USD per hour; `-1` means "never evict for price" (capacity evictions still happen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<f64>,
}

/// Run-time state of a VM (`/instanceView`, `$expand=instanceView`, `statusOnly=true`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_update_domain: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_fault_domain: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyper_v_generation: Option<String>,
    #[serde(
        default,
        rename = "isVMInStandbyPool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_vm_in_standby_pool: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_agent: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<DiskInstanceView>>,
    /// Carries `ProvisioningState/<state>` and `PowerState/<state>`; see the helpers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<InstanceViewStatus>>,
}

impl InstanceView {
    const POWER_STATE: &'static str = "PowerState/";
    const PROVISIONING_STATE: &'static str = "ProvisioningState/";

    /// The `x` of the `PowerState/x` status (`running`, `deallocated`, ...); see [`PowerState`].
    pub fn power_state(&self) -> Option<&str> {
        self.status_suffix(Self::POWER_STATE)
    }

    /// The `x` of `ProvisioningState/x` (`succeeded`, `creating`, `failed`, ...). A failed VM
    /// reports `ProvisioningState/failed/<ErrorCode>`; only `failed` is returned here.
    pub fn provisioning_state(&self) -> Option<&str> {
        self.status_suffix(Self::PROVISIONING_STATE)
            .map(|rest| rest.split_once('/').map_or(rest, |(state, _)| state))
    }

    /// The error code of a `ProvisioningState/failed/<ErrorCode>` status, if any.
    pub fn provisioning_error_code(&self) -> Option<&str> {
        self.status_suffix(Self::PROVISIONING_STATE)
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, code)| code)
    }

    fn status_suffix(&self, prefix: &str) -> Option<&str> {
        self.statuses.iter().flatten().find_map(|status| {
            let code = status.code.as_deref()?;
            // Status codes are documented as case-insensitive; never trust their casing.
            let head = code.get(..prefix.len())?;
            head.eq_ignore_ascii_case(prefix)
                .then(|| &code[prefix.len()..])
        })
    }
}

/// Power states (the suffix of `PowerState/x`), lowercase as Compute sends them.
pub struct PowerState;

impl PowerState {
    pub const STARTING: &'static str = "starting";
    pub const RUNNING: &'static str = "running";
    pub const STOPPING: &'static str = "stopping";
    pub const STOPPED: &'static str = "stopped";
    pub const DEALLOCATING: &'static str = "deallocating";
    pub const DEALLOCATED: &'static str = "deallocated";
    pub const UNKNOWN: &'static str = "unknown";
}

/// One status line of an instance view.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `Info`, `Warning` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskInstanceView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<InstanceViewStatus>>,
}

/// `properties` of a managed disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_data: Option<CreationData>,
    #[serde(
        default,
        rename = "diskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// See [`DiskState`]. Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
}

/// Values of a disk's `diskState` (the attached VM itself is the envelope's `managedBy`).
pub struct DiskState;

impl DiskState {
    pub const UNATTACHED: &'static str = "Unattached";
    pub const ATTACHED: &'static str = "Attached";
    pub const RESERVED: &'static str = "Reserved";
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationData {
    /// See [`CreateOption`]; required on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_option: Option<String>,
    /// For `FromImage` disks; a `{"id": ...}` reference, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<serde_json::Value>,
}

/// IMDS `GET /metadata/scheduledevents`: how a VM learns, at least 30 s ahead, that it is
/// about to be preempted. PascalCase on the wire, unlike ARM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledEvents {
    #[serde(default)]
    pub document_incarnation: u64,
    #[serde(default)]
    pub events: Vec<ScheduledEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledEvent {
    pub event_id: String,
    /// See [`ScheduledEventType`].
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// VM names, not resource ids.
    #[serde(default)]
    pub resources: Vec<String>,
    /// `Scheduled` or `Started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_status: Option<String>,
    /// RFC 1123 date, or empty once the event has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Platform` or `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    /// `-1` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_in_seconds: Option<i64>,
}

/// Values of `EventType`.
pub struct ScheduledEventType;

impl ScheduledEventType {
    pub const FREEZE: &'static str = "Freeze";
    pub const REBOOT: &'static str = "Reboot";
    pub const REDEPLOY: &'static str = "Redeploy";
    /// Spot eviction.
    pub const PREEMPT: &'static str = "Preempt";
    pub const TERMINATE: &'static str = "Terminate";
}

/// Body of the IMDS `POST /metadata/scheduledevents` that acknowledges events early.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartRequests {
    pub start_requests: Vec<StartRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartRequest {
    pub event_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Fields of the OS configurations the model does not name still survive a round trip.
    #[test]
    fn os_configurations_keep_unmodelled_fields() {
        let profile = json!({
            "linuxConfiguration": {
                "disablePasswordAuthentication": true,
                "provisionVMAgent": true,
                "patchSettings": {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"},
                "enableVMAgentPlatformUpdates": false,
            },
            "windowsConfiguration": {
                "provisionVMAgent": true,
                "enableAutomaticUpdates": false,
                "timeZone": "Pacific Standard Time",
                "winRM": {"listeners": [{"protocol": "Http"}]},
                "additionalUnattendContent": [{
                    "passName": "OobeSystem",
                    "componentName": "Microsoft-Windows-Shell-Setup",
                    "settingName": "FirstLogonCommands",
                    "content": "<FirstLogonCommands/>",
                }],
            },
        });
        let parsed: OsProfile = serde_json::from_value(profile.clone()).unwrap();
        let linux = parsed.linux_configuration.as_ref().unwrap();
        assert_eq!(linux.provision_vm_agent, Some(true));
        assert!(linux.other.contains_key("patchSettings"));
        let windows = parsed.windows_configuration.as_ref().unwrap();
        assert_eq!(windows.enable_automatic_updates, Some(false));
        let unattend = windows.additional_unattend_content.as_ref().unwrap();
        assert_eq!(
            unattend[0].setting_name.as_deref(),
            Some(UnattendSetting::FIRST_LOGON_COMMANDS)
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), profile);
    }
}
