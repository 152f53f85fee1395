//! The one ARM write that creates a render node: VM, NIC and OS disk together, the NIC and
//! disk named after the VM and deleted with it (`deleteOption: Delete`), tagged with the pool
//! and this daemon's owner id.
//!
//! Over 600 lines: most of it is the unit tests that pin the JSON the create sends.

use arm_model::SubResource;
use arm_model::compute::{
    self, AdditionalUnattendContent, BillingProfile, CreateOption, DeleteOption, HardwareProfile,
    ImageReference, LinuxConfiguration, ManagedDiskParameters, NetworkInterfaceConfiguration,
    NetworkInterfaceConfigurationProperties, NetworkProfile, OsDisk, OsProfile, SshConfiguration,
    SshPublicKey, StorageAccountType, StorageProfile, UnattendComponent, UnattendPass,
    UnattendSetting, VirtualMachine, VirtualMachineIpConfiguration,
    VirtualMachineIpConfigurationProperties, VirtualMachineProperties, WindowsConfiguration,
};
use rb_core::spec::EvictionPolicy;
use rb_core::{Os, PoolSpec, Priority, TAG_OWNER, TAG_POOL};

/// Where and as whom nodes are created.
#[derive(Debug, Clone)]
pub struct Placement {
    pub location: String,
    pub subnet_id: String,
    pub nsg_id: Option<String>,
    pub owner_id: String,
    pub admin_username: String,
    /// Authorized key for Linux nodes; without one, password login is disabled and the
    /// node is reachable only through what its bootstrap sets up.
    pub ssh_public_key: Option<String>,
}

/// Names of the NIC and OS disk a VM creates inline; the garbage collector recognises
/// leftovers by them.
pub fn nic_name(vm: &str) -> String {
    format!("{vm}-nic")
}

pub fn os_disk_name(vm: &str) -> String {
    format!("{vm}-os")
}

/// Windows computer names are at most 15 characters: keep the pool's first letters and the
/// node index.
pub fn computer_name(vm: &str, os: Os) -> String {
    match os {
        Os::Linux => vm.to_owned(),
        Os::Windows => {
            let (pool, index) = vm.rsplit_once('-').unwrap_or((vm, ""));
            let keep = 15usize.saturating_sub(index.len() + 1);
            let prefix: String = pool.chars().filter(|c| *c != '-').take(keep).collect();
            format!("{prefix}-{index}")
        }
    }
}

fn image_reference(image: &str) -> ImageReference {
    if image.starts_with("/subscriptions/") {
        return ImageReference {
            id: Some(image.to_owned()),
            ..ImageReference::default()
        };
    }
    // A URN with missing parts sends only the parts it has; Azure names what is missing.
    let mut parts = image.split(':').map(str::to_owned);
    ImageReference {
        publisher: parts.next(),
        offer: parts.next(),
        sku: parts.next(),
        version: parts.next(),
        ..ImageReference::default()
    }
}

/// A password no one knows, meeting Azure's complexity rules ([`store::secret::vm_password`],
/// from the OS CSPRNG); used where a password is required and never stored or logged.
fn throwaway_password() -> String {
    store::secret::vm_password()
}

/// What a Windows node runs at its first logon: Azure saves `customData` as
/// `C:\AzureData\CustomData.bin` and runs nothing by itself, so the VM logs on once by
/// itself (`AutoLogon`, count 1) and `FirstLogonCommands` runs the bootstrap script — all in
/// the one create write.
const FIRST_LOGON_COMMANDS: &str = "<FirstLogonCommands><SynchronousCommand><CommandLine>powershell.exe -NoProfile -ExecutionPolicy Bypass -Command \"Copy-Item C:\\AzureData\\CustomData.bin C:\\AzureData\\renderburst-bootstrap.ps1; &amp; C:\\AzureData\\renderburst-bootstrap.ps1\"</CommandLine><Description>renderburst bootstrap</Description><Order>1</Order></SynchronousCommand></FirstLogonCommands>";

/// The VM's create body. `custom_data` is the node's bootstrap script (cloud-init or
/// PowerShell), sent base64-encoded as `osProfile.customData`.
pub fn vm_body(
    spec: &PoolSpec,
    name: &str,
    size: &str,
    priority: Priority,
    place: &Placement,
    custom_data: Option<&str>,
) -> VirtualMachine {
    let mut tags = spec.tags.clone();
    tags.insert(TAG_POOL.into(), spec.name.clone());
    tags.insert(TAG_OWNER.into(), place.owner_id.clone());
    let (priority, eviction_policy, billing_profile) = match priority {
        Priority::Spot => (
            compute::Priority::SPOT,
            Some(match spec.spot.eviction_policy {
                EvictionPolicy::Deallocate => compute::EvictionPolicy::DEALLOCATE,
                EvictionPolicy::Delete => compute::EvictionPolicy::DELETE,
            }),
            Some(BillingProfile {
                max_price: Some(spec.spot.max_price),
            }),
        ),
        Priority::Regular => (compute::Priority::REGULAR, None, None),
    };
    VirtualMachine {
        location: Some(place.location.clone()),
        tags: Some(tags),
        properties: Some(VirtualMachineProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: Some(size.to_owned()),
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(image_reference(&spec.image)),
                os_disk: Some(OsDisk {
                    name: Some(os_disk_name(name)),
                    create_option: Some(CreateOption::FROM_IMAGE.into()),
                    caching: Some("ReadWrite".into()),
                    delete_option: Some(DeleteOption::DELETE.into()),
                    managed_disk: Some(ManagedDiskParameters {
                        storage_account_type: Some(StorageAccountType::STANDARD_SSD_LRS.into()),
                        ..ManagedDiskParameters::default()
                    }),
                    ..OsDisk::default()
                }),
                ..StorageProfile::default()
            }),
            os_profile: Some(os_profile(spec, name, place, custom_data)),
            network_profile: Some(NetworkProfile {
                network_api_version: Some("2022-11-01".into()),
                network_interface_configurations: Some(vec![nic(name, place)]),
                ..NetworkProfile::default()
            }),
            priority: Some(priority.into()),
            eviction_policy: eviction_policy.map(str::to_owned),
            billing_profile,
            ..VirtualMachineProperties::default()
        }),
        ..VirtualMachine::default()
    }
}

/// Linux nodes take the SSH key when there is one, a throwaway password otherwise; Windows
/// nodes always get a throwaway password, and with a bootstrap script the unattend content
/// that runs it at first logon.
fn os_profile(
    spec: &PoolSpec,
    name: &str,
    place: &Placement,
    custom_data: Option<&str>,
) -> OsProfile {
    let mut profile = OsProfile {
        computer_name: Some(computer_name(name, spec.os)),
        admin_username: Some(place.admin_username.clone()),
        custom_data: custom_data.map(|text| rb_core::bootstrap::base64_encode(text.as_bytes())),
        ..OsProfile::default()
    };
    match (spec.os, &place.ssh_public_key) {
        (Os::Linux, Some(key)) => {
            profile.linux_configuration = Some(LinuxConfiguration {
                disable_password_authentication: Some(true),
                ssh: Some(SshConfiguration {
                    public_keys: Some(vec![SshPublicKey {
                        path: Some(format!(
                            "/home/{}/.ssh/authorized_keys",
                            place.admin_username
                        )),
                        key_data: Some(key.clone()),
                    }]),
                }),
                ..LinuxConfiguration::default()
            });
        }
        (Os::Linux, None) => {
            profile.admin_password = Some(throwaway_password());
            profile.linux_configuration = Some(LinuxConfiguration {
                disable_password_authentication: Some(false),
                ..LinuxConfiguration::default()
            });
        }
        (Os::Windows, _) => {
            let password = throwaway_password();
            let additional_unattend_content = custom_data.map(|_| {
                // The throwaway password is letters, digits and "!": nothing to escape in XML.
                let autologon = format!(
                    "<AutoLogon><Password><Value>{password}</Value></Password><Enabled>true</Enabled><LogonCount>1</LogonCount><Username>{}</Username></AutoLogon>",
                    place.admin_username
                );
                vec![
                    unattend(UnattendSetting::AUTO_LOGON, autologon),
                    unattend(
                        UnattendSetting::FIRST_LOGON_COMMANDS,
                        FIRST_LOGON_COMMANDS.to_owned(),
                    ),
                ]
            });
            profile.windows_configuration = Some(WindowsConfiguration {
                provision_vm_agent: Some(true),
                enable_automatic_updates: Some(false),
                additional_unattend_content,
                ..WindowsConfiguration::default()
            });
            profile.admin_password = Some(password);
        }
    }
    profile
}

fn unattend(setting: &str, content: String) -> AdditionalUnattendContent {
    AdditionalUnattendContent {
        pass_name: Some(UnattendPass::OOBE_SYSTEM.into()),
        component_name: Some(UnattendComponent::SHELL_SETUP.into()),
        setting_name: Some(setting.into()),
        content: Some(content),
    }
}

/// The inline NIC, in the pool's subnet (and NSG, if any), deleted with the VM.
fn nic(name: &str, place: &Placement) -> NetworkInterfaceConfiguration {
    NetworkInterfaceConfiguration {
        name: Some(nic_name(name)),
        properties: Some(NetworkInterfaceConfigurationProperties {
            primary: Some(true),
            delete_option: Some(DeleteOption::DELETE.into()),
            network_security_group: place.nsg_id.clone().map(|id| SubResource { id }),
            ip_configurations: Some(vec![VirtualMachineIpConfiguration {
                name: Some("ipconfig1".into()),
                properties: Some(VirtualMachineIpConfigurationProperties {
                    primary: Some(true),
                    subnet: Some(SubResource {
                        id: place.subnet_id.clone(),
                    }),
                    ..VirtualMachineIpConfigurationProperties::default()
                }),
                ..VirtualMachineIpConfiguration::default()
            }]),
            ..NetworkInterfaceConfigurationProperties::default()
        }),
        ..NetworkInterfaceConfiguration::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn windows_computer_names_fit_in_15_characters() {
        assert_eq!(
            computer_name("maya-spot-gpu-00012", Os::Windows),
            "mayaspotg-00012"
        );
        assert!(computer_name("a-very-long-pool-name-00001", Os::Windows).len() <= 15);
        assert_eq!(computer_name("maya-00001", Os::Linux), "maya-00001");
    }

    fn spec(os: Os) -> PoolSpec {
        let mut spec = PoolSpec::from_json(
            br#"{"name":"maya","mode":"vm","vm_sizes":["Standard_D4s_v5"],"image":"a:b:c:d","max":2}"#,
        )
        .unwrap();
        spec.os = os;
        spec
    }

    fn place() -> Placement {
        Placement {
            location: "westeurope".into(),
            subnet_id: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/s".into(),
            nsg_id: None,
            owner_id: "o".into(),
            admin_username: "render".into(),
            ssh_public_key: None,
        }
    }

    fn wire(vm: VirtualMachine) -> Value {
        serde_json::to_value(vm).unwrap()
    }

    #[test]
    fn custom_data_is_base64_and_windows_runs_it_at_first_logon() {
        let model = vm_body(
            &spec(Os::Linux),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            Some("#cloud-config\n"),
        );
        let body = serde_json::to_value(&model).unwrap();
        assert_eq!(
            body["properties"]["osProfile"]["customData"],
            "I2Nsb3VkLWNvbmZpZwo="
        );
        assert!(
            model
                .properties
                .unwrap()
                .os_profile
                .unwrap()
                .custom_data
                .is_some()
        );
        let body = wire(vm_body(
            &spec(Os::Linux),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            None,
        ));
        assert!(body["properties"]["osProfile"].get("customData").is_none());

        let body = wire(vm_body(
            &spec(Os::Windows),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            Some("Write-Host hi"),
        ));
        let os = &body["properties"]["osProfile"];
        let unattend = os["windowsConfiguration"]["additionalUnattendContent"]
            .as_array()
            .unwrap();
        let autologon = unattend[0]["content"].as_str().unwrap();
        assert!(autologon.contains(&format!(
            "<Value>{}</Value>",
            os["adminPassword"].as_str().unwrap()
        )));
        assert!(autologon.contains("<LogonCount>1</LogonCount><Username>render</Username>"));
        assert_eq!(unattend[1]["settingName"], "FirstLogonCommands");
        assert!(
            unattend[1]["content"]
                .as_str()
                .unwrap()
                .contains("C:\\AzureData\\CustomData.bin")
        );
        let body = wire(vm_body(
            &spec(Os::Windows),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            None,
        ));
        assert!(
            body["properties"]["osProfile"]["windowsConfiguration"]
                .get("additionalUnattendContent")
                .is_none()
        );
    }

    /// What the ARM client sends for a body: the typed `VirtualMachine`, serialized. The random
    /// password (in `adminPassword` and inside the Windows AutoLogon content) is masked.
    fn sent(body: impl serde::Serialize) -> Value {
        let typed: VirtualMachine =
            serde_json::from_value(serde_json::to_value(body).unwrap()).unwrap();
        let wire = serde_json::to_value(&typed).unwrap();
        let Some(password) = wire["properties"]["osProfile"]["adminPassword"].as_str() else {
            return wire;
        };
        assert!(password.len() >= 12, "{password}");
        let text = serde_json::to_string(&wire)
            .unwrap()
            .replace(password, "PASSWORD");
        serde_json::from_str(&text).unwrap()
    }

    const SUBNET: &str =
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/s";
    const NSG: &str =
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/n";

    fn nic(nsg: Option<&str>) -> Value {
        let mut nic = json!({
            "name": "maya-00001-nic",
            "properties": {
                "primary": true,
                "deleteOption": "Delete",
                "ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"primary": true, "subnet": {"id": SUBNET}}}
                ],
            }
        });
        if let Some(nsg) = nsg {
            nic["properties"]["networkSecurityGroup"] = json!({"id": nsg});
        }
        nic
    }

    fn expected(os_profile: Value, image: Value, nsg: Option<&str>, priority: Value) -> Value {
        let mut properties = json!({
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "name": "maya-00001-os",
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "deleteOption": "Delete",
                    "managedDisk": {"storageAccountType": "StandardSSD_LRS"},
                },
            },
            "osProfile": os_profile,
            "networkProfile": {
                "networkApiVersion": "2022-11-01",
                "networkInterfaceConfigurations": [nic(nsg)],
            },
        });
        for (key, value) in priority.as_object().unwrap() {
            properties[key] = value.clone();
        }
        json!({
            "location": "westeurope",
            "tags": {"renderburst-pool": "maya", "renderburst-owner": "o"},
            "properties": properties,
        })
    }

    fn marketplace() -> Value {
        json!({"publisher": "a", "offer": "b", "sku": "c", "version": "d"})
    }

    fn regular() -> Value {
        json!({"priority": "Regular"})
    }

    #[test]
    fn linux_bodies_are_pinned() {
        let mut with_key = place();
        with_key.ssh_public_key = Some("ssh-ed25519 AAAAkey render@farm".into());
        let body = vm_body(
            &spec(Os::Linux),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &with_key,
            Some("#cloud-config\n"),
        );
        assert_eq!(
            sent(body),
            expected(
                json!({
                    "computerName": "maya-00001",
                    "adminUsername": "render",
                    "customData": "I2Nsb3VkLWNvbmZpZwo=",
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": true,
                        "ssh": {"publicKeys": [{
                            "path": "/home/render/.ssh/authorized_keys",
                            "keyData": "ssh-ed25519 AAAAkey render@farm",
                        }]},
                    },
                }),
                marketplace(),
                None,
                regular(),
            )
        );

        let body = vm_body(
            &spec(Os::Linux),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            None,
        );
        assert_eq!(
            sent(body),
            expected(
                json!({
                    "computerName": "maya-00001",
                    "adminUsername": "render",
                    "adminPassword": "PASSWORD",
                    "linuxConfiguration": {"disablePasswordAuthentication": false},
                }),
                marketplace(),
                None,
                regular(),
            )
        );
    }

    #[test]
    fn windows_bodies_are_pinned() {
        let body = vm_body(
            &spec(Os::Windows),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            Some("Write-Host hi"),
        );
        assert_eq!(
            sent(body),
            expected(
                json!({
                    "computerName": "maya-00001",
                    "adminUsername": "render",
                    "adminPassword": "PASSWORD",
                    "customData": "V3JpdGUtSG9zdCBoaQ==",
                    "windowsConfiguration": {
                        "provisionVMAgent": true,
                        "enableAutomaticUpdates": false,
                        "additionalUnattendContent": [
                            {
                                "passName": "OobeSystem",
                                "componentName": "Microsoft-Windows-Shell-Setup",
                                "settingName": "AutoLogon",
                                "content": "<AutoLogon><Password><Value>PASSWORD</Value></Password><Enabled>true</Enabled><LogonCount>1</LogonCount><Username>render</Username></AutoLogon>",
                            },
                            {
                                "passName": "OobeSystem",
                                "componentName": "Microsoft-Windows-Shell-Setup",
                                "settingName": "FirstLogonCommands",
                                "content": "<FirstLogonCommands><SynchronousCommand><CommandLine>powershell.exe -NoProfile -ExecutionPolicy Bypass -Command \"Copy-Item C:\\AzureData\\CustomData.bin C:\\AzureData\\renderburst-bootstrap.ps1; &amp; C:\\AzureData\\renderburst-bootstrap.ps1\"</CommandLine><Description>renderburst bootstrap</Description><Order>1</Order></SynchronousCommand></FirstLogonCommands>",
                            },
                        ],
                    },
                }),
                marketplace(),
                None,
                regular(),
            )
        );

        let body = vm_body(
            &spec(Os::Windows),
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            None,
        );
        assert_eq!(
            sent(body),
            expected(
                json!({
                    "computerName": "maya-00001",
                    "adminUsername": "render",
                    "adminPassword": "PASSWORD",
                    "windowsConfiguration": {"provisionVMAgent": true, "enableAutomaticUpdates": false},
                }),
                marketplace(),
                None,
                regular(),
            )
        );
    }

    #[test]
    fn spot_images_nsg_and_pool_tags_are_pinned() {
        let password_less = json!({
            "computerName": "maya-00001",
            "adminUsername": "render",
            "adminPassword": "PASSWORD",
            "linuxConfiguration": {"disablePasswordAuthentication": false},
        });
        for (policy, max_price, wire_policy) in [
            (EvictionPolicy::Deallocate, -1.0, "Deallocate"),
            (EvictionPolicy::Delete, 0.25, "Delete"),
        ] {
            let mut spot = spec(Os::Linux);
            spot.spot.eviction_policy = policy;
            spot.spot.max_price = max_price;
            let body = vm_body(
                &spot,
                "maya-00001",
                "Standard_D4s_v5",
                Priority::Spot,
                &place(),
                None,
            );
            assert_eq!(
                sent(body),
                expected(
                    password_less.clone(),
                    marketplace(),
                    None,
                    json!({
                        "priority": "Spot",
                        "evictionPolicy": wire_policy,
                        "billingProfile": {"maxPrice": max_price},
                    }),
                )
            );
        }

        // A gallery image by id, an NSG on the NIC, and the pool's own tags next to ours.
        let gallery = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0";
        let mut tagged = spec(Os::Linux);
        tagged.image = gallery.into();
        tagged.tags = [("project".to_owned(), "film".to_owned())].into();
        let mut with_nsg = place();
        with_nsg.nsg_id = Some(NSG.into());
        let body = vm_body(
            &tagged,
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &with_nsg,
            None,
        );
        let mut want = expected(
            password_less.clone(),
            json!({"id": gallery}),
            Some(NSG),
            regular(),
        );
        want["tags"]["project"] = json!("film");
        assert_eq!(sent(body), want);

        // A URN with missing parts sends only the parts it has.
        let mut short = spec(Os::Linux);
        short.image = "Canonical:ubuntu-24_04-lts".into();
        let body = vm_body(
            &short,
            "maya-00001",
            "Standard_D4s_v5",
            Priority::Regular,
            &place(),
            None,
        );
        assert_eq!(
            sent(body),
            expected(
                password_less,
                json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts"}),
                None,
                regular(),
            )
        );
    }

    #[test]
    fn image_urn_and_id() {
        assert_eq!(
            image_reference("Canonical:ubuntu-24_04-lts:server:latest")
                .offer
                .as_deref(),
            Some("ubuntu-24_04-lts")
        );
        assert_eq!(
            image_reference(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i"
            )
            .id
            .as_deref(),
            Some("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i")
        );
    }
}
