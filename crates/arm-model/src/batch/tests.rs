use serde_json::json;

use super::*;

/// Wire names the spec spells unlike the field names: `type`, `username` (the SDKs'
/// `userName`), `publicIPAddressConfiguration`; and round trips of the typed blocks.
#[test]
fn typed_pool_blocks_keep_the_specs_wire_names() {
    let vm = json!({
        "imageReference": {"publisher": "microsoft-azure-batch", "offer": "ubuntu-server-container", "sku": "20-04-lts", "version": "latest"},
        "nodeAgentSkuId": "batch.node.ubuntu 20.04",
        "containerConfiguration": {
            "type": "DockerCompatible",
            "containerImageNames": ["studio.azurecr.io/render:2026"],
            "containerRegistries": [{"username": "u", "password": "p", "registryServer": "studio.azurecr.io"}]
        },
        "nodePlacementConfiguration": {"policy": "Zonal"}
    });
    let typed: VirtualMachineConfiguration = serde_json::from_value(vm.clone()).unwrap();
    let c = typed.container_configuration.clone().unwrap();
    assert_eq!(
        c.container_type.as_deref(),
        Some(ContainerType::DOCKER_COMPATIBLE)
    );
    assert_eq!(
        c.container_registries.unwrap()[0].user_name.as_deref(),
        Some("u")
    );
    assert_eq!(serde_json::to_value(&typed).unwrap(), vm);

    let network = json!({
        "subnetId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/render",
        "publicIPAddressConfiguration": {"provision": "UserManaged", "ipAddressIds": ["/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/publicIPAddresses/ip1"]},
        "enableAcceleratedNetworking": true
    });
    let typed: NetworkConfiguration = serde_json::from_value(network.clone()).unwrap();
    assert_eq!(
        typed
            .public_ip_address_configuration
            .as_ref()
            .unwrap()
            .provision
            .as_deref(),
        Some(IpAddressProvisioningType::USER_MANAGED)
    );
    assert_eq!(serde_json::to_value(&typed).unwrap(), network);

    let task = StartTask {
        command_line: Some("/bin/sh -c true".into()),
        environment_settings: Some(vec![EnvironmentSetting::new("A", "1")]),
        user_identity: Some(UserIdentity::auto_user(
            AutoUserScope::POOL,
            ElevationLevel::ADMIN,
        )),
        container_settings: Some(TaskContainerSettings {
            image_name: Some("studio.azurecr.io/render:2026".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&task).unwrap(),
        json!({
            "commandLine": "/bin/sh -c true",
            "environmentSettings": [{"name": "A", "value": "1"}],
            "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}},
            "containerSettings": {"imageName": "studio.azurecr.io/render:2026"}
        })
    );
    let policy: TaskSchedulingPolicy =
        serde_json::from_value(json!({"nodeFillType": "Pack"})).unwrap();
    assert_eq!(
        policy.node_fill_type.as_deref(),
        Some(ComputeNodeFillType::PACK)
    );
}
