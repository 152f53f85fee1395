//! Reading Compute Schedule requests and writing the parts of its answers that are not one
//! VM operation's details: typed parsing with ARM's error shapes, VM ids, create profiles.

use arm_model::computeschedule::{
    self as cs, OperationErrorsResult, ResourceOperation, ResourceOperationDetails,
    ResourceProvisionPayload,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::run::BulkOp;
use crate::arm::{truncate, validate_name};
use crate::compute::check_vm_body;
use crate::reply::ArmErr;
use crate::state::{RType, rfc3339};

/// The body as `T`; a shape serde refuses is ARM's `InvalidRequestContent`.
pub fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ArmErr> {
    serde_json::from_value(body).map_err(|e| {
        ArmErr::invalid_content(format!(
            "The request content was invalid and could not be deserialized: '{e}'."
        ))
    })
}

/// A property the specification marks required.
pub fn required<'a, T>(v: Option<&'a T>, name: &str) -> Result<&'a T, ArmErr> {
    v.ok_or_else(|| {
        ArmErr::invalid_content(format!(
            "The request content was invalid and could not be deserialized: 'Required property '{name}' not found in JSON.'"
        ))
    })
}

pub fn invalid(target: &str, message: impl Into<String>) -> ArmErr {
    ArmErr::invalid_parameter(target, message)
}

/// (subscription, resource group, name) of a VM id; anything else is a bad parameter.
pub fn vm_id(id: &str) -> Result<(String, String, String), ArmErr> {
    let segs: Vec<&str> = id.split('/').collect();
    match segs.as_slice() {
        ["", s, sub, rgs, rg, p, ns, ty, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && !sub.is_empty()
                && rgs.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Compute")
                && ty.eq_ignore_ascii_case("virtualMachines")
                && !rg.is_empty()
                && !name.is_empty() =>
        {
            Ok(((*sub).to_owned(), (*rg).to_owned(), (*name).to_owned()))
        }
        _ => Err(invalid(
            "resources.ids",
            format!(
                "'{}' is not a virtual machine id (/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.Compute/virtualMachines/{{vmName}}).",
                truncate(id, 300)
            ),
        )),
    }
}

/// A VM of an execute call the service did not accept: an `errorCode`, no operation.
pub fn rejected(id: &str, code: &str, details: String) -> ResourceOperation {
    ResourceOperation {
        resource_id: Some(id.to_owned()),
        error_code: Some(code.to_owned()),
        error_details: Some(details),
        operation: None,
    }
}

/// An operation id the service does not know (never issued, or forgotten after the
/// simulator's retention of finished operations).
pub fn unknown_operation(id: &str) -> ResourceOperation {
    ResourceOperation {
        resource_id: None,
        error_code: Some("OperationNotFound".into()),
        error_details: Some(format!("Operation '{}' was not found.", truncate(id, 64))),
        operation: Some(ResourceOperationDetails {
            operation_id: id.to_owned(),
            state: Some(cs::OperationState::UNKNOWN.into()),
            ..Default::default()
        }),
    }
}

pub fn errors_of(b: &BulkOp) -> OperationErrorsResult {
    OperationErrorsResult {
        operation_id: Some(b.id.clone()),
        creation_time: Some(rfc3339(b.created)),
        activation_time: b.activated.map(rfc3339),
        completed_at: b.completed.map(rfc3339),
        operation_errors: Some(b.errors.clone()),
        request_error_code: None,
        request_error_details: None,
    }
}

/// One VM a create asks for: its resource group, name and VM body.
pub struct Profile {
    pub rg: String,
    pub name: String,
    pub body: Value,
}

/// The VMs of an `ExecuteCreateRequest`: `resourceCount` of them, the i-th being
/// `resourceOverrides[i]` merged deeply over `baseProfile` (objects merge key by key, anything
/// else replaces), named by the merged `name` or else `{resourcePrefix}-{i}` (the
/// specification's "resourceprefix-0, resourceprefix-1.."). `resourcegroupName` and
/// `computeApiVersion` are read case-insensitively and taken out of the VM body. A profile
/// without `location` is in the request's location; one in another location is refused ("The
/// location in the request URL must match the baseProfile.location value",
/// azure-computeschedule-dotnet-samples `src/ExecuteCreateFlex/rest-api-documentation.md`).
pub fn profiles(p: &ResourceProvisionPayload, location: &str) -> Result<Vec<Profile>, ArmErr> {
    let count = p.resource_count;
    if count < 1 || count as usize > cs::MAX_RESOURCES_PER_REQUEST {
        return Err(invalid(
            "resourceConfigParameters.resourceCount",
            format!(
                "The resource count {count} is out of range: a request creates between 1 and {} virtual machines.",
                cs::MAX_RESOURCES_PER_REQUEST
            ),
        ));
    }
    let overrides = p.resource_overrides.as_deref().unwrap_or_default();
    if overrides.len() > count as usize {
        return Err(invalid(
            "resourceConfigParameters.resourceOverrides",
            format!(
                "{} overrides were given for {count} virtual machines.",
                overrides.len()
            ),
        ));
    }
    let base = Value::Object(p.base_profile.clone().unwrap_or_default());
    let mut out = Vec::new();
    for i in 0..count as usize {
        let mut body = base.clone();
        if let Some(o) = overrides.get(i) {
            merge(&mut body, &Value::Object(o.clone()));
        }
        let Value::Object(map) = &mut body else {
            unreachable!("merged objects stay objects")
        };
        let rg = take_key(map, "resourcegroupName").and_then(|v| v.as_str().map(str::to_owned));
        take_key(map, "computeApiVersion");
        let Some(rg) = rg.filter(|r| !r.is_empty()) else {
            return Err(invalid(
                "resourceConfigParameters.baseProfile.resourcegroupName",
                "The resource group of the virtual machines (resourcegroupName) is required.",
            ));
        };
        let name = match map.get("name").and_then(Value::as_str) {
            Some(n) => n.to_owned(),
            None => match p.resource_prefix.as_deref().filter(|s| !s.is_empty()) {
                Some(prefix) => format!("{prefix}-{i}"),
                None => {
                    return Err(invalid(
                        "resourceConfigParameters.resourcePrefix",
                        format!(
                            "Virtual machine {i} has no name: give it one in resourceOverrides or give a resourcePrefix."
                        ),
                    ));
                }
            },
        };
        validate_name(RType::VirtualMachine, &name)?;
        match map.get("location").and_then(Value::as_str) {
            None => {
                map.insert("location".into(), Value::String(location.to_owned()));
            }
            Some(l) if super::same_location(l, location) => {}
            Some(l) => {
                return Err(invalid(
                    "resourceConfigParameters.baseProfile.location",
                    format!(
                        "Virtual machine '{name}' is in location '{}' but the request was sent to location '{location}'.",
                        truncate(l, 40)
                    ),
                ));
            }
        }
        check_vm_body(&body)?;
        out.push(Profile { rg, name, body });
    }
    Ok(out)
}

/// Removes `name` (compared case-insensitively) and returns its value.
fn take_key(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let k = map.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone();
    map.remove(&k)
}

/// `over` merged deeply into `base`.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_merge_deeply_and_name_the_vms() {
        let p: ResourceProvisionPayload = serde_json::from_value(json!({
            "baseProfile": {
                "ResourceGroupName": "rg", "computeApiVersion": "2025-04-01", "location": "westeurope",
                "tags": {"pool": "p"},
                "properties": {"hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                               "osProfile": {"adminUsername": "render", "computerName": "base"}}
            },
            "resourceOverrides": [
                {"name": "n-0", "properties": {"osProfile": {"computerName": "n-0"}}}
            ],
            "resourceCount": 2,
            "resourcePrefix": "pre"
        }))
        .unwrap();
        let out = profiles(&p, "West Europe").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].rg.as_str(), out[0].name.as_str()), ("rg", "n-0"));
        assert_eq!(out[1].name, "pre-1");
        let b = &out[0].body;
        assert_eq!(b["properties"]["osProfile"]["computerName"], "n-0");
        assert_eq!(b["properties"]["osProfile"]["adminUsername"], "render");
        assert_eq!(b["tags"]["pool"], "p");
        assert!(b.get("ResourceGroupName").is_none() && b.get("computeApiVersion").is_none());
        assert_eq!(
            out[1].body["properties"]["osProfile"]["computerName"],
            "base"
        );
    }

    #[test]
    fn bad_create_payloads_are_refused() {
        let base = json!({"resourcegroupName": "rg", "location": "westeurope"});
        let case = |v: Value| -> String {
            let p: ResourceProvisionPayload = serde_json::from_value(v).unwrap();
            profiles(&p, "westeurope")
                .err()
                .map(|e| e.body.error.message)
                .unwrap_or_default()
        };
        assert!(case(json!({"baseProfile": base, "resourceCount": 0})).contains("out of range"));
        assert!(
            case(json!({"baseProfile": base, "resourceCount": 101})).contains("between 1 and 100")
        );
        assert!(case(json!({"baseProfile": base, "resourceCount": 1})).contains("no name"));
        assert!(
            case(json!({"baseProfile": {"location": "westeurope"}, "resourceCount": 1, "resourcePrefix": "x"}))
                .contains("resourcegroupName")
        );
        assert!(
            case(json!({"baseProfile": {"resourcegroupName": "rg", "location": "eastus"}, "resourceCount": 1, "resourcePrefix": "x"}))
                .contains("location 'eastus'")
        );
    }

    #[test]
    fn vm_ids() {
        let (s, rg, n) = vm_id(
            "/subscriptions/s/resourcegroups/RG/providers/microsoft.compute/virtualmachines/v1",
        )
        .unwrap();
        assert_eq!((s.as_str(), rg.as_str(), n.as_str()), ("s", "RG", "v1"));
        assert!(
            vm_id(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n"
            )
            .is_err()
        );
        assert!(vm_id("vm1").is_err());
    }
}
