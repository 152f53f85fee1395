//! Wire shapes that have no file under `shared/fixtures/arm`, checked against inline samples.
//!
//! The samples follow the public REST references and the clients that read them (Azure CLI
//! `cloud.py`, go-azure-sdk `metaDataResponse20220901`, the Batch REST "List nodes" / error
//! examples); ids and values are illustrative.

mod support;

use arm_model::auth::{ManagedIdentityTokenResponse, OpenIdConfiguration};
use arm_model::batch::{
    BatchAccount, BatchError, ComputeNodeListResult, ComputeNodeState, NodeDeallocationOption,
    NodeRemoveParameter,
};
use arm_model::compute::{Disk, DiskState};
use arm_model::network::{NetworkSecurityGroup, Subnet, VirtualNetwork};
use arm_model::resources::{
    CloudAuthentication, CloudMetadata, ResourceGroup, Subscription, Tenant,
};
use arm_model::{GenericResource, Page};
use serde_json::json;
use support::parse_faithful;

#[test]
fn cloud_metadata_2022_09_01_matches_what_the_cli_reads() {
    let public_cloud = json!({
        "portal": "https://portal.azure.com",
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com",
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD"
        },
        "media": "https://rest.media.azure.net",
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "name": "AzureCloud",
        "suffixes": {
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "mhsmDns": "managedhsm.azure.net",
            "mysqlServerEndpoint": "mysql.database.azure.com",
            "postgresqlServerEndpoint": "postgres.database.azure.com",
            "mariadbServerEndpoint": "mariadb.database.azure.com",
            "synapseAnalytics": "dev.azuresynapse.net",
            "attestationEndpoint": "attest.azure.net"
        },
        "batch": "https://batch.core.windows.net/",
        "resourceManager": "https://management.azure.com/",
        "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/arm-compute/quickstart-templates/aliases.json",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net"
    });
    let cloud: CloudMetadata = parse_faithful(&public_cloud).expect("2022-09-01 document");
    assert_eq!(
        cloud.authentication.audiences[0],
        "https://management.core.windows.net/"
    );

    // Older api-versions answer an array of the same objects.
    let clouds: Vec<CloudMetadata> =
        parse_faithful(&json!([public_cloud])).expect("2019-05-01 array");
    assert_eq!(clouds[0].name, "AzureCloud");

    // What a simulator would serve: the CLI indexes `suffixes`, so it must be present.
    let minimal = CloudMetadata {
        name: "renderburst-sim".into(),
        resource_manager: "https://127.0.0.1:8443/".into(),
        authentication: CloudAuthentication {
            login_endpoint: "https://127.0.0.1:8443".into(),
            audiences: vec!["https://management.azure.com/".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let json = serde_json::to_value(&minimal).expect("serialize");
    assert_eq!(json["suffixes"], json!({}));
    assert_eq!(
        json["authentication"]["audiences"][0],
        "https://management.azure.com/"
    );
}

#[test]
fn subscription_and_tenant_lists() {
    let subscriptions = json!({
        "value": [{
            "id": "/subscriptions/33333333-3333-3333-3333-333333333333",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": "33333333-3333-3333-3333-333333333333",
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "displayName": "Render farm",
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off"
            },
            "tags": {"costcenter": "vfx"}
        }]
    });
    let page: Page<Subscription> = parse_faithful(&subscriptions).expect("subscriptions");
    assert_eq!(page.value[0].managed_by_tenants.as_deref(), Some(&[][..]));

    let tenants = json!({
        "value": [{
            "id": "/tenants/11111111-1111-1111-1111-111111111111",
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "countryCode": "US",
            "displayName": "Contoso",
            "domains": ["contoso.onmicrosoft.com"],
            "tenantCategory": "Home",
            "defaultDomain": "contoso.onmicrosoft.com",
            "tenantType": "AAD"
        }]
    });
    let page: Page<Tenant> = parse_faithful(&tenants).expect("tenants");
    assert_eq!(page.value[0].tenant_category.as_deref(), Some("Home"));
}

#[test]
fn resource_group_keeps_managed_by_in_the_envelope() {
    let group: ResourceGroup = parse_faithful(&json!({
        "id": "/subscriptions/s/resourceGroups/render-rg",
        "name": "render-rg",
        "type": "Microsoft.Resources/resourceGroups",
        "location": "eastus",
        "managedBy": "/subscriptions/s/resourceGroups/other/providers/Microsoft.Something/x/y",
        "tags": {"farm": "render-prod"},
        "properties": {"provisioningState": "Succeeded"}
    }))
    .expect("resource group");
    assert!(group.managed_by.is_some());
}

#[test]
fn attached_disk_reports_its_vm_at_the_top_level() {
    let disk: Disk = parse_faithful(&json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/node-001-os",
        "name": "node-001-os",
        "type": "Microsoft.Compute/disks",
        "location": "eastus",
        "managedBy": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/node-001",
        "sku": {"name": "Premium_LRS", "tier": "Premium"},
        "zones": ["1"],
        "properties": {
            "osType": "Linux",
            "creationData": {
                "createOption": "FromImage",
                "imageReference": {"id": "/Subscriptions/s/Providers/Microsoft.Compute/Locations/eastus/Publishers/canonical/ArtifactTypes/VMImage/Offers/ubuntu-24_04-lts/Skus/server/Versions/24.04.202501010"}
            },
            "diskSizeGB": 30,
            "diskState": "Attached",
            "provisioningState": "Succeeded",
            "timeCreated": "2026-01-01T10:00:00.0000000+00:00"
        }
    }))
    .expect("disk");
    let state = disk
        .properties
        .as_ref()
        .and_then(|p| p.disk_state.as_deref());
    assert_eq!(state, Some(DiskState::ATTACHED));
    assert_eq!(
        disk.sku.and_then(|s| s.name).as_deref(),
        Some("Premium_LRS")
    );
}

#[test]
fn virtual_network_subnet_and_security_group() {
    let vnet: VirtualNetwork = parse_faithful(&json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/farm",
        "name": "farm",
        "type": "Microsoft.Network/virtualNetworks",
        "location": "eastus",
        "etag": "W/\"00000000-0000-0000-0000-000000000000\"",
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "provisioningState": "Succeeded",
            "subnets": [{
                "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/farm/subnets/nodes",
                "name": "nodes",
                "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": {
                    "addressPrefix": "10.0.0.0/20",
                    "networkSecurityGroup": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nodes"},
                    "ipConfigurations": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/node-001-nic/ipConfigurations/ipconfig1"}],
                    "provisioningState": "Succeeded"
                }
            }]
        }
    }))
    .expect("vnet");
    let subnets = vnet.properties.and_then(|p| p.subnets).expect("subnets");
    let subnet: Subnet = subnets[0].clone();
    assert_eq!(
        subnet.properties.and_then(|p| p.address_prefix).as_deref(),
        Some("10.0.0.0/20")
    );

    let nsg: NetworkSecurityGroup = parse_faithful(&json!({
        "name": "nodes",
        "location": "eastus",
        "properties": {
            "securityRules": [{
                "name": "deny-ssh-from-internet",
                "properties": {
                    "protocol": "Tcp",
                    "sourcePortRange": "*",
                    "destinationPortRanges": ["22", "3389"],
                    "sourceAddressPrefix": "Internet",
                    "destinationAddressPrefix": "*",
                    "access": "Deny",
                    "priority": 100,
                    "direction": "Inbound"
                }
            }]
        }
    }))
    .expect("nsg");
    let rules = nsg
        .properties
        .and_then(|p| p.security_rules)
        .expect("rules");
    assert_eq!(
        rules[0].properties.as_ref().and_then(|p| p.priority),
        Some(100)
    );
}

#[test]
fn batch_account_quotas() {
    let account: BatchAccount = parse_faithful(&json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/farm",
        "name": "farm",
        "type": "Microsoft.Batch/batchAccounts",
        "location": "eastus",
        "properties": {
            "accountEndpoint": "farm.eastus.batch.azure.com",
            "provisioningState": "Succeeded",
            "poolAllocationMode": "BatchService",
            "dedicatedCoreQuota": 20,
            "lowPriorityCoreQuota": 100,
            "dedicatedCoreQuotaPerVMFamily": [{"name": "standardDASv5Family", "coreQuota": 20}],
            "dedicatedCoreQuotaPerVMFamilyEnforced": true,
            "poolQuota": 100,
            "activeJobAndJobScheduleQuota": 300
        }
    }))
    .expect("batch account");
    assert_eq!(
        account.properties.and_then(|p| p.low_priority_core_quota),
        Some(100)
    );
}

#[test]
fn batch_data_plane_node_list_uses_odata_next_link() {
    let page: ComputeNodeListResult = parse_faithful(&json!({
        "odata.metadata": "https://farm.eastus.batch.azure.com/$metadata#nodes",
        "value": [{
            "id": "tvm-1695681911_1-20260101t100000z",
            "url": "https://farm.eastus.batch.azure.com/pools/render-spot/nodes/tvm-1695681911_1-20260101t100000z",
            "state": "idle",
            "schedulingState": "enabled",
            "stateTransitionTime": "2026-01-01T10:05:00.0000000Z",
            "lastBootTime": "2026-01-01T10:03:00.0000000Z",
            "allocationTime": "2026-01-01T10:00:00.0000000Z",
            "ipAddress": "10.0.0.4",
            "affinityId": "TVM:tvm-1695681911_1-20260101t100000z",
            "vmSize": "standard_d16as_v5",
            "totalTasksRun": 3,
            "totalTasksSucceeded": 3,
            "runningTasksCount": 0,
            "runningTaskSlotsCount": 0,
            "isDedicated": false,
            "startTaskInfo": {"state": "completed", "exitCode": 0, "retryCount": 0},
            "nodeAgentInfo": {"version": "1.12.0", "lastUpdateTime": "2026-01-01T10:03:00.0000000Z"}
        }, {
            "id": "tvm-1695681911_2-20260101t100000z",
            "state": "unusable",
            "isDedicated": false,
            "errors": [{
                "code": "StartTaskFailed",
                "message": "The start task failed",
                "errorDetails": [{"name": "ExitCode", "value": "1"}]
            }]
        }],
        "odata.nextLink": "https://farm.eastus.batch.azure.com/pools/render-spot/nodes?api-version=2024-07-01.20.0&$skiptoken=abc"
    }))
    .expect("node list");
    assert!(page.odata_next_link.is_some());
    assert!(page.value[0].is_idle());
    assert_eq!(
        page.value[1].state.as_deref(),
        Some(ComputeNodeState::UNUSABLE)
    );

    let remove = NodeRemoveParameter {
        node_list: vec!["tvm-1695681911_1-20260101t100000z".into()],
        node_deallocation_option: Some(NodeDeallocationOption::REQUEUE.to_ascii_lowercase()),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&remove).expect("serialize"),
        json!({"nodeList": ["tvm-1695681911_1-20260101t100000z"], "nodeDeallocationOption": "requeue"})
    );
}

#[test]
fn batch_data_plane_error_has_a_localized_message() {
    let error: BatchError = parse_faithful(&json!({
        "odata.metadata": "https://farm.eastus.batch.azure.com/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
        "code": "PoolNotFound",
        "message": {
            "lang": "en-US",
            "value": "The specified pool does not exist.\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2026-01-01T10:00:00.0000000Z"
        },
        "values": [{"key": "Reason", "value": "The pool was deleted"}]
    }))
    .expect("batch error");
    assert!(
        error
            .message_text()
            .starts_with("The specified pool does not exist.")
    );
    assert_eq!(
        BatchError {
            code: "X".into(),
            ..Default::default()
        }
        .message_text(),
        ""
    );
}

#[test]
fn entra_openid_configuration_full_document() {
    let mut document = json!({
        "token_endpoint": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0",
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/authorize",
        "device_authorization_endpoint": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/devicecode",
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
        "kerberos_endpoint": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/kerberos",
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net"
    });
    // Capability flags and endpoints nobody here reads are not modelled; drop them first so the
    // faithful parse checks everything else.
    let object = document.as_object_mut().expect("an object");
    for key in [
        "request_uri_parameter_supported",
        "http_logout_supported",
        "frontchannel_logout_supported",
        "kerberos_endpoint",
        "rbac_url",
    ] {
        object.remove(key).expect("key present");
    }
    let config: OpenIdConfiguration = parse_faithful(&document).expect("openid configuration");
    assert!(config.token_endpoint.ends_with("/oauth2/v2.0/token"));
    assert_eq!(config.tenant_region_scope, None);
}

#[test]
fn managed_identity_token_accepts_numbers_as_well_as_strings() {
    let token: ManagedIdentityTokenResponse = serde_json::from_value(json!({
        "access_token": "eyJ0eXAi...",
        "expires_in": 3599,
        "expires_on": 1506484173,
        "resource": "https://management.azure.com/",
        "token_type": "Bearer"
    }))
    .expect("numeric lifetimes");
    assert_eq!(token.expires_on_unix(), Some(1506484173));
    assert_eq!(
        serde_json::to_value(&token).expect("serialize")["expires_in"],
        json!("3599"),
        "re-serialized the IMDS way, as a string"
    );
}

#[test]
fn generic_resources_keep_unknown_properties() {
    let resource: GenericResource = parse_faithful(&json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/ss",
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "properties": {"anything": [1, 2, {"nested": true}]}
    }))
    .expect("generic resource");
    assert!(resource.identity.is_some());
}
