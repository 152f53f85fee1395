//! `Microsoft.Resources` and the discovery documents a client reads before its first ARM call:
//! resource groups, the subscription and tenant lists, and the cloud metadata endpoints document
//! the Azure CLI uses to register a custom cloud.

use serde::{Deserialize, Serialize};

use crate::common::{Resource, Tags};

/// A resource group. `managedBy` (for managed groups) lives in the envelope.
pub type ResourceGroup = Resource<ResourceGroupProperties>;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroupProperties {
    /// `Succeeded`, or `Deleting` while its contents are being removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
}

/// An entry of `GET /subscriptions`. Not a tracked resource: no `properties` envelope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `/subscriptions/{subscriptionId}`; the CLI takes the last path segment as the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// See [`SubscriptionState`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_source: Option<String>,
    /// The CLI copies these into its profile; send `[]` rather than omit them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by_tenants: Option<Vec<ManagedByTenant>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_policies: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// Values of a subscription's `state`.
pub struct SubscriptionState;

impl SubscriptionState {
    pub const ENABLED: &'static str = "Enabled";
    pub const WARNED: &'static str = "Warned";
    pub const PAST_DUE: &'static str = "PastDue";
    pub const DISABLED: &'static str = "Disabled";
    pub const DELETED: &'static str = "Deleted";
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedByTenant {
    pub tenant_id: String,
}

/// An entry of `GET /tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// `/tenants/{tenantId}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// `Home`, `ProjectedBy` or `ManagedBy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_branding_logo_url: Option<String>,
}

/// `GET {resourceManager}/metadata/endpoints?api-version=2022-09-01`: one cloud's endpoints.
///
/// With api-version 2019-05-01 (and the CLI's `ARM_CLOUD_METADATA_URL`) ARM answers a JSON array
/// of these instead; deserialize `Vec<CloudMetadata>` there. The Azure CLI indexes `name`,
/// `authentication.audiences[0]`, `authentication.loginEndpoint` and `suffixes` without
/// checking, so those are required here; everything else it looks up with a fallback.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudMetadata {
    /// `AzureCloud` for the public cloud; becomes the CLI's cloud name.
    pub name: String,
    /// The ARM endpoint, e.g. `https://management.azure.com/`.
    pub resource_manager: String,
    pub authentication: CloudAuthentication,
    /// Always serialized (even empty): the CLI looks names up in this object.
    #[serde(default)]
    pub suffixes: CloudSuffixes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gallery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Audience of the Batch data plane, e.g. `https://batch.core.windows.net/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_management: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_image_alias_doc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_directory_data_lake: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microsoft_graph_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_insights_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_insights_telemetry_channel_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synapse_analytics_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_analytics_resource_id: Option<String>,
    /// ARM's spelling; the CLI looks for `ossrdbmsResourceId` and falls back to a built-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ossr_dbms_resource_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudAuthentication {
    /// The Entra authority host, e.g. `https://login.microsoftonline.com`.
    pub login_endpoint: String,
    /// The first entry becomes the CLI's token audience for ARM.
    pub audiences: Vec<String>,
    /// Usually `common`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `AAD` (Azure Stack uses `ADFS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
}

/// DNS suffixes of a cloud. All optional: clients fall back to built-in values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudSuffixes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mhsm_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_server_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql_server_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql_server_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mariadb_server_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_login_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_data_lake_store_file_system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_data_lake_analytics_catalog_and_job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_front_door_endpoint_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_sync_endpoint_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synapse_analytics: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_endpoint: Option<String>,
}
