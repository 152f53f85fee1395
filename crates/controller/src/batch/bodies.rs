//! The bodies renderburst sends to Azure Batch: the pool it creates and its start tasks,
//! built from the arm-model types (Batch management REST spec 2025-06-01: `Pool`,
//! `StartTask`, `UserIdentity`...). The tests below pin the JSON they serialize to.

use arm_model::batch::{
    AutoUserScope, DeploymentConfiguration, ElevationLevel, EnvironmentSetting, FixedScaleSettings,
    ImageReference, InterNodeCommunicationState, MetadataItem, NetworkConfiguration,
    NodeDeallocationOption, Pool, PoolProperties, ScaleSettings, StartTask, UserIdentity,
    VirtualMachineConfiguration,
};
use rb_core::{BatchSpec, BatchTargets, Os, PoolSpec, TAG_OWNER, TAG_POOL};

/// The Batch pool renderburst creates for `spec`. `enroll` (the daemon's URL and the
/// pool's enrollment token) is required with a `bootstrap` section.
pub fn pool_model(
    spec: &PoolSpec,
    owner: &str,
    targets: BatchTargets,
    enroll: Option<(&str, &str)>,
) -> Option<Pool> {
    let b = spec.batch.as_ref()?;
    let mut tags = spec.tags.clone();
    tags.insert(TAG_POOL.into(), spec.name.clone());
    tags.insert(TAG_OWNER.into(), owner.to_owned());
    let start_task = if spec.bootstrap.is_some() {
        let (url, token) = enroll?;
        Some(enroll_start_task(spec.os, url, token))
    } else {
        start_task(spec, b)
    };
    let properties = PoolProperties {
        display_name: Some(format!("renderburst pool {}", spec.name)),
        vm_size: spec.vm_sizes.first().cloned(),
        deployment_configuration: Some(DeploymentConfiguration {
            virtual_machine_configuration: Some(VirtualMachineConfiguration {
                image_reference: Some(image_reference(&spec.image)),
                node_agent_sku_id: Some(b.node_agent_sku_id.clone()),
                ..Default::default()
            }),
        }),
        scale_settings: Some(ScaleSettings {
            fixed_scale: Some(FixedScaleSettings {
                target_dedicated_nodes: Some(targets.dedicated),
                target_low_priority_nodes: Some(targets.spot),
                resize_timeout: Some("PT15M".into()),
                node_deallocation_option: Some(NodeDeallocationOption::TASK_COMPLETION.into()),
            }),
            auto_scale: None,
        }),
        network_configuration: b.subnet_id.as_ref().map(|subnet| NetworkConfiguration {
            subnet_id: Some(subnet.clone()),
            ..Default::default()
        }),
        start_task,
        task_slots_per_node: Some(b.task_slots_per_node),
        inter_node_communication: Some(InterNodeCommunicationState::DISABLED.into()),
        metadata: Some(vec![
            MetadataItem {
                name: TAG_POOL.into(),
                value: spec.name.clone(),
            },
            MetadataItem {
                name: TAG_OWNER.into(),
                value: owner.to_owned(),
            },
        ]),
        ..Default::default()
    };
    Some(Pool {
        tags: Some(tags),
        properties: Some(properties),
        ..Default::default()
    })
}

/// A gallery image by its ARM id, else a marketplace `publisher:offer:sku:version` (missing
/// parts are left out).
fn image_reference(image: &str) -> ImageReference {
    if image.to_ascii_lowercase().starts_with("/subscriptions/") {
        return ImageReference {
            id: Some(image.to_owned()),
            ..Default::default()
        };
    }
    let mut p = image.split(':').map(str::to_owned);
    ImageReference {
        publisher: p.next(),
        offer: p.next(),
        sku: p.next(),
        version: p.next(),
        id: None,
    }
}

/// The start task of a pool with a `bootstrap` section: it enrolls each node at `url` with
/// the pool's enrollment `token`.
pub(super) fn enroll_start_task(os: Os, url: &str, token: &str) -> StartTask {
    let task = rb_core::bootstrap::render_start_task(os, url, token);
    StartTask {
        command_line: Some(task.command_line),
        environment_settings: Some(
            task.environment
                .into_iter()
                .map(|(k, v)| EnvironmentSetting::new(k, v))
                .collect(),
        ),
        wait_for_success: Some(true),
        max_task_retry_count: Some(2),
        user_identity: Some(UserIdentity::auto_user(
            AutoUserScope::POOL,
            ElevationLevel::ADMIN,
        )),
        ..Default::default()
    }
}

/// The start task: the spec's, with the license servers in its environment. Batch gives a
/// start task's environment to the start task only, so without a command of its own the
/// default one writes the license variables to `$AZ_BATCH_NODE_SHARED_DIR/renderburst.env`
/// (`renderburst.cmd` on Windows) for the render tasks to read.
fn start_task(spec: &PoolSpec, b: &BatchSpec) -> Option<StartTask> {
    if b.start_task.is_none() && spec.licenses.is_empty() {
        return None;
    }
    let mut env: Vec<EnvironmentSetting> = spec
        .licenses
        .iter()
        .map(|l| EnvironmentSetting::new(&l.variable, &l.server))
        .collect();
    let names: Vec<&str> = spec.licenses.iter().map(|l| l.variable.as_str()).collect();
    let (command, wait, elevated, retries) = match &b.start_task {
        Some(t) => {
            env.extend(
                t.environment
                    .iter()
                    .map(|(k, v)| EnvironmentSetting::new(k, v)),
            );
            (
                t.command_line.clone(),
                t.wait_for_success,
                t.elevated,
                t.max_task_retry_count,
            )
        }
        None => {
            let cmd = match spec.os {
                Os::Linux => format!(
                    "/bin/sh -c 'env | grep -E \"^({})=\" > \"$AZ_BATCH_NODE_SHARED_DIR/renderburst.env\"'",
                    names.join("|")
                ),
                Os::Windows => format!(
                    "cmd /c \"(for %v in ({}) do @call echo set %v=%%%v%%) > %AZ_BATCH_NODE_SHARED_DIR%\\renderburst.cmd\"",
                    names.join(" ")
                ),
            };
            (cmd, true, false, 2)
        }
    };
    Some(StartTask {
        command_line: Some(command),
        environment_settings: Some(env),
        wait_for_success: Some(wait),
        max_task_retry_count: Some(retries),
        // Management-plane spellings (the data plane's are lower-case).
        user_identity: Some(UserIdentity::auto_user(
            AutoUserScope::POOL,
            if elevated {
                ElevationLevel::ADMIN
            } else {
                ElevationLevel::NON_ADMIN
            },
        )),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::batch::owned_by;

    #[test]
    fn the_pool_body_carries_the_spec() {
        let spec: PoolSpec = serde_json::from_value(json!({
            "name": "maya", "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "priority": "spot",
            "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 20, "tags": {"show": "ep1"},
            "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04", "task_slots_per_node": 2,
                      "subnet_id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/render"},
            "licenses": [{"name": "arnold", "variable": "ADSKFLEX_LICENSE_FILE", "server": "27000@lic"}]
        }))
        .unwrap();
        let pool = pool_model(
            &spec,
            "owner-1",
            BatchTargets {
                dedicated: 1,
                spot: 3,
            },
            None,
        )
        .unwrap();
        let v = serde_json::to_value(&pool).unwrap();
        assert_eq!(v["tags"][TAG_OWNER], "owner-1");
        assert_eq!(v["tags"][TAG_POOL], "maya");
        assert_eq!(v["tags"]["show"], "ep1");
        let p = &v["properties"];
        assert_eq!(p["vmSize"], "Standard_D4s_v5");
        assert_eq!(p["taskSlotsPerNode"], 2);
        assert_eq!(
            p["scaleSettings"]["fixedScale"],
            json!({"targetDedicatedNodes": 1, "targetLowPriorityNodes": 3, "resizeTimeout": "PT15M", "nodeDeallocationOption": "TaskCompletion"})
        );
        assert_eq!(
            p["deploymentConfiguration"]["virtualMachineConfiguration"]["imageReference"],
            json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
        );
        assert_eq!(
            p["startTask"]["environmentSettings"],
            json!([{"name": "ADSKFLEX_LICENSE_FILE", "value": "27000@lic"}])
        );
        assert!(
            p["startTask"]["commandLine"]
                .as_str()
                .unwrap()
                .contains("ADSKFLEX_LICENSE_FILE")
        );
        assert!(
            p["networkConfiguration"]["subnetId"]
                .as_str()
                .unwrap()
                .ends_with("/subnets/render")
        );
        assert!(p.get("applicationLicenses").is_none());
        assert!(owned_by(&pool, "owner-1"));
        assert!(!owned_by(&pool, "someone-else"));
    }

    /// The spec of a pool whose body is pinned below; `extra` is merged into it.
    fn pinned_spec(name: &str, extra: Value) -> PoolSpec {
        let mut v = json!({
            "name": name, "mode": "batch", "vm_sizes": ["Standard_D4s_v5"], "max": 2,
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.ubuntu 24.04"}
        });
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        serde_json::from_value(v).unwrap()
    }

    /// The body sent to create it (`create_pool` sends the model as serialized).
    fn sent(spec: &PoolSpec, enroll: Option<(&str, &str)>) -> Value {
        let targets = BatchTargets {
            dedicated: 2,
            spot: 0,
        };
        serde_json::to_value(pool_model(spec, "owner-1", targets, enroll).unwrap()).unwrap()
    }

    /// The parts every pinned body shares, around `image`, `node_agent` and `start_task`.
    fn pinned_body(
        name: &str,
        size: &str,
        image: Value,
        node_agent: &str,
        start_task: Option<Value>,
    ) -> Value {
        let mut v = json!({
            "tags": {"renderburst-owner": "owner-1", "renderburst-pool": name},
            "properties": {
                "displayName": format!("renderburst pool {name}"),
                "vmSize": size,
                "deploymentConfiguration": {"virtualMachineConfiguration": {
                    "imageReference": image,
                    "nodeAgentSkuId": node_agent,
                }},
                "scaleSettings": {"fixedScale": {
                    "targetDedicatedNodes": 2,
                    "targetLowPriorityNodes": 0,
                    "resizeTimeout": "PT15M",
                    "nodeDeallocationOption": "TaskCompletion",
                }},
                "taskSlotsPerNode": 1,
                "interNodeCommunication": "Disabled",
                "metadata": [
                    {"name": "renderburst-pool", "value": name},
                    {"name": "renderburst-owner", "value": "owner-1"},
                ],
            }
        });
        if let Some(task) = start_task {
            v["properties"]["startTask"] = task;
        }
        v
    }

    #[test]
    fn the_pool_body_without_start_task_is_pinned() {
        let spec = pinned_spec("plain", json!({}));
        let image = json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"});
        assert_eq!(
            sent(&spec, Some(("https://rb", "tok"))),
            pinned_body(
                "plain",
                "Standard_D4s_v5",
                image,
                "batch.node.ubuntu 24.04",
                None
            )
        );
    }

    #[test]
    fn the_pool_body_with_the_specs_start_task_and_a_gallery_image_is_pinned() {
        let gallery = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/nuke/versions/1.0.0";
        let spec = pinned_spec(
            "nuke",
            json!({
                "os": "windows", "vm_sizes": ["Standard_D8s_v5"], "image": gallery,
                "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.windows amd64",
                          "start_task": {"command_line": "cmd /c install.cmd", "environment": {"STUDIO": "north", "A": "1"},
                                         "wait_for_success": false, "elevated": true, "max_task_retry_count": 5}},
                "licenses": [{"name": "nuke", "variable": "foundry_LICENSE", "server": "4101@lic"}]
            }),
        );
        let task = json!({
            "commandLine": "cmd /c install.cmd",
            "environmentSettings": [
                {"name": "foundry_LICENSE", "value": "4101@lic"},
                {"name": "A", "value": "1"},
                {"name": "STUDIO", "value": "north"},
            ],
            "userIdentity": {"autoUser": {"elevationLevel": "Admin", "scope": "Pool"}},
            "maxTaskRetryCount": 5,
            "waitForSuccess": false,
        });
        assert_eq!(
            sent(&spec, None),
            pinned_body(
                "nuke",
                "Standard_D8s_v5",
                json!({"id": gallery}),
                "batch.node.windows amd64",
                Some(task)
            )
        );
    }

    #[test]
    fn the_pool_body_with_the_default_license_start_task_and_a_short_image_is_pinned() {
        let spec = pinned_spec(
            "win",
            json!({
                "os": "windows", "vm_sizes": ["Standard_D8s_v5"], "image": "pub:offer",
                "batch": {"account": "rbfarm", "node_agent_sku_id": "batch.node.windows amd64"},
                "licenses": [{"name": "a", "variable": "A_LIC", "server": "1@a"}, {"name": "b", "variable": "B_LIC", "server": "2@b"}]
            }),
        );
        let task = json!({
            "commandLine": "cmd /c \"(for %v in (A_LIC B_LIC) do @call echo set %v=%%%v%%) > %AZ_BATCH_NODE_SHARED_DIR%\\renderburst.cmd\"",
            "environmentSettings": [{"name": "A_LIC", "value": "1@a"}, {"name": "B_LIC", "value": "2@b"}],
            "userIdentity": {"autoUser": {"elevationLevel": "NonAdmin", "scope": "Pool"}},
            "maxTaskRetryCount": 2,
            "waitForSuccess": true,
        });
        // The missing sku and version are left out, not sent as null.
        assert_eq!(
            sent(&spec, Some(("https://rb", "tok"))),
            pinned_body(
                "win",
                "Standard_D8s_v5",
                json!({"publisher": "pub", "offer": "offer"}),
                "batch.node.windows amd64",
                Some(task)
            )
        );
    }

    #[test]
    fn the_pool_body_and_the_start_task_patch_that_enroll_nodes_are_pinned() {
        let spec = pinned_spec("boot", json!({"bootstrap": {}}));
        assert!(pool_model(&spec, "owner-1", BatchTargets::default(), None).is_none());
        let enroll = |os: Os, url: &str, token: &str| {
            json!({
                "commandLine": rb_core::bootstrap::render_start_task(os, url, token).command_line,
                "environmentSettings": [
                    {"name": "RENDERBURST_API_URL", "value": url},
                    {"name": "RENDERBURST_POOL_TOKEN", "value": token},
                ],
                "userIdentity": {"autoUser": {"elevationLevel": "Admin", "scope": "Pool"}},
                "maxTaskRetryCount": 2,
                "waitForSuccess": true,
            })
        };
        let image = json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"});
        assert_eq!(
            sent(&spec, Some(("https://rb.example:8443", "tok"))),
            pinned_body(
                "boot",
                "Standard_D4s_v5",
                image,
                "batch.node.ubuntu 24.04",
                Some(enroll(Os::Linux, "https://rb.example:8443", "tok"))
            )
        );
        // What the rotation PATCHes (`{"properties": {"startTask": ...}}`, see azure's ops).
        assert_eq!(
            serde_json::to_value(enroll_start_task(Os::Windows, "https://rb", "tk")).unwrap(),
            enroll(Os::Windows, "https://rb", "tk")
        );
    }
}
