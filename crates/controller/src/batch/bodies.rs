//! The bodies renderburst sends to Azure Batch: the pool it creates and its start tasks.

use arm_model::batch::{NodeDeallocationOption, Pool};
use rb_core::{BatchSpec, BatchTargets, Os, PoolSpec, TAG_OWNER, TAG_POOL};
use serde_json::{Value, json};

/// The Batch pool renderburst creates for `spec`. `enroll` (the daemon's URL and the
/// pool's enrollment token) is required with a `bootstrap` section.
pub fn pool_model(
    spec: &PoolSpec,
    owner: &str,
    targets: BatchTargets,
    enroll: Option<(&str, &str)>,
) -> Option<Pool> {
    let b = spec.batch.as_ref()?;
    let mut tags = serde_json::Map::new();
    for (k, v) in &spec.tags {
        tags.insert(k.clone(), json!(v));
    }
    tags.insert(TAG_POOL.into(), json!(spec.name));
    tags.insert(TAG_OWNER.into(), json!(owner));
    let image = if spec
        .image
        .to_ascii_lowercase()
        .starts_with("/subscriptions/")
    {
        json!({"id": spec.image})
    } else {
        let p: Vec<&str> = spec.image.split(':').collect();
        json!({"publisher": p.first(), "offer": p.get(1), "sku": p.get(2), "version": p.get(3)})
    };
    let mut props = json!({
        "displayName": format!("renderburst pool {}", spec.name),
        "vmSize": spec.vm_sizes.first(),
        "deploymentConfiguration": {"virtualMachineConfiguration": {
            "imageReference": image,
            "nodeAgentSkuId": b.node_agent_sku_id,
        }},
        "scaleSettings": {"fixedScale": {
            "targetDedicatedNodes": targets.dedicated,
            "targetLowPriorityNodes": targets.spot,
            "resizeTimeout": "PT15M",
            "nodeDeallocationOption": NodeDeallocationOption::TASK_COMPLETION,
        }},
        "taskSlotsPerNode": b.task_slots_per_node,
        "interNodeCommunication": "Disabled",
        "metadata": [
            {"name": TAG_POOL, "value": spec.name},
            {"name": TAG_OWNER, "value": owner},
        ],
    });
    if let Some(subnet) = &b.subnet_id {
        props["networkConfiguration"] = json!({"subnetId": subnet});
    }
    if spec.bootstrap.is_some() {
        let (url, token) = enroll?;
        props["startTask"] = enroll_start_task(spec.os, url, token);
    } else if let Some(task) = start_task(spec, b) {
        props["startTask"] = task;
    }
    serde_json::from_value(json!({"tags": tags, "properties": props})).ok()
}

/// The start task of a pool with a `bootstrap` section: it enrolls each node at `url` with
/// the pool's enrollment `token`.
pub(super) fn enroll_start_task(os: Os, url: &str, token: &str) -> Value {
    let task = rb_core::bootstrap::render_start_task(os, url, token);
    let env: Vec<Value> = task
        .environment
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "commandLine": task.command_line,
        "environmentSettings": env,
        "waitForSuccess": true,
        "maxTaskRetryCount": 2,
        "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}},
    })
}

/// The start task: the spec's, with the license servers in its environment. Batch gives a
/// start task's environment to the start task only, so without a command of its own the
/// default one writes the license variables to `$AZ_BATCH_NODE_SHARED_DIR/renderburst.env`
/// (`renderburst.cmd` on Windows) for the render tasks to read.
fn start_task(spec: &PoolSpec, b: &BatchSpec) -> Option<Value> {
    if b.start_task.is_none() && spec.licenses.is_empty() {
        return None;
    }
    let mut env: Vec<Value> = spec
        .licenses
        .iter()
        .map(|l| json!({"name": l.variable, "value": l.server}))
        .collect();
    let names: Vec<&str> = spec.licenses.iter().map(|l| l.variable.as_str()).collect();
    let (command, wait, elevated, retries) = match &b.start_task {
        Some(t) => {
            env.extend(
                t.environment
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v})),
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
    Some(json!({
        "commandLine": command,
        "environmentSettings": env,
        "waitForSuccess": wait,
        "maxTaskRetryCount": retries,
        // Management-plane spellings (the data plane's are lower-case).
        "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": if elevated { "Admin" } else { "NonAdmin" }}},
    }))
}

#[cfg(test)]
mod tests {
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
}
