//! Routing: an ARM path, by its segments, to the operation it names.

use super::truncate;
use crate::reply::ArmErr;
use crate::state::RType;

/// Parsed ARM path.
pub enum Route {
    ListSubscriptions,
    GetSubscription,
    ListTenants,
    ListResourceGroups,
    ResourceGroup {
        name: String,
    },
    /// A list of `rtype` in a resource group (`rg`) or the subscription (`rg` None).
    List {
        rg: Option<String>,
        rtype: RType,
        parent: Option<String>,
    },
    /// A resource by id (rg name, type, id).
    Resource {
        rg: String,
        rtype: RType,
        id: String,
        name: String,
        parent: Option<String>,
    },
    Action {
        rg: String,
        rtype: RType,
        id: String,
        name: String,
        action: String,
    },
    Operation {
        namespace: String,
        id: String,
    },
    ListResources {
        rg: Option<String>,
    },
    Provider {
        namespace: String,
    },
    /// `POST /subscriptions/{sub}/providers/Microsoft.ComputeSchedule/locations/{location}/{action}`
    /// (`action` as sent, e.g. `virtualMachinesExecuteCreate`).
    ComputeSchedule {
        location: String,
        action: String,
    },
}

fn not_a_route(path: &str) -> ArmErr {
    ArmErr::bad_request(
        "InvalidResourceType",
        format!(
            "The resource type could not be found for the request path '{}'.",
            truncate(path, 200)
        ),
    )
}

/// Maps a path to a route. The subscription is checked by the caller.
pub fn route(segs: &[String], path: &str) -> Result<(Option<String>, Route), ArmErr> {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l = |i: usize| lower.get(i).map(String::as_str);
    match l(0) {
        Some("subscriptions") if segs.len() == 1 => return Ok((None, Route::ListSubscriptions)),
        Some("tenants") if segs.len() == 1 => return Ok((None, Route::ListTenants)),
        Some("subscriptions") => {}
        _ => return Err(not_a_route(path)),
    }
    let sub = segs[1].clone();
    let rest = &segs[2..];
    let lrest = &lower[2..];
    let r = match lrest.first().map(String::as_str) {
        None => Route::GetSubscription,
        Some("resourcegroups") => match rest.len() {
            1 => Route::ListResourceGroups,
            2 => Route::ResourceGroup {
                name: rest[1].clone(),
            },
            _ => {
                let rg = rest[1].clone();
                match lrest[2].as_str() {
                    "resources" if rest.len() == 3 => Route::ListResources { rg: Some(rg) },
                    "providers" if rest.len() >= 5 => {
                        provider_route(&sub, Some(&rg), &rest[3..], path)?
                    }
                    _ => return Err(not_a_route(path)),
                }
            }
        },
        Some("resources") if rest.len() == 1 => Route::ListResources { rg: None },
        Some("providers") if rest.len() == 2 => Route::Provider {
            namespace: rest[1].clone(),
        },
        Some("providers") if rest.len() >= 3 => {
            let ns = rest[1].clone();
            let tail = &lrest[2..];
            if tail.len() == 4
                && tail[0] == "locations"
                && (tail[2] == "operations"
                    || tail[2] == "operationresults"
                    || tail[2] == "operationstatuses")
            {
                Route::Operation {
                    namespace: ns,
                    id: rest[5].clone(),
                }
            } else if ns.eq_ignore_ascii_case("Microsoft.ComputeSchedule")
                && tail.len() == 3
                && tail[0] == "locations"
            {
                Route::ComputeSchedule {
                    location: rest[3].clone(),
                    action: rest[4].clone(),
                }
            } else {
                provider_route(&sub, None, &rest[1..], path)?
            }
        }
        _ => return Err(not_a_route(path)),
    };
    Ok((Some(sub), r))
}

/// `{ns}/{type}[/{name}[/{child}[/{childName}]|/{action}]]` below a resource group or the
/// subscription.
fn provider_route(sub: &str, rg: Option<&str>, p: &[String], path: &str) -> Result<Route, ArmErr> {
    let ns = &p[0];
    let Some(ty) = p.get(1) else {
        return Err(not_a_route(path));
    };
    let rtype = RType::top_level(ns, ty).ok_or_else(|| {
        ArmErr::bad_request(
            "InvalidResourceType",
            format!(
                "The resource type '{}' could not be found in the namespace '{}'.",
                truncate(ty, 80),
                truncate(ns, 80)
            ),
        )
    })?;
    let Some(rg) = rg else {
        return if p.len() == 2 {
            Ok(Route::List {
                rg: None,
                rtype,
                parent: None,
            })
        } else {
            Err(not_a_route(path))
        };
    };
    let id_of = |t: RType, name: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/{}/{name}",
            t.arm_type()
        )
    };
    match p.len() {
        2 => Ok(Route::List {
            rg: Some(rg.to_owned()),
            rtype,
            parent: None,
        }),
        3 => Ok(Route::Resource {
            rg: rg.to_owned(),
            rtype,
            id: id_of(rtype, &p[2]),
            name: p[2].clone(),
            parent: None,
        }),
        4 => {
            let parent_id = id_of(rtype, &p[2]);
            if let Some(child) = RType::child(rtype, &p[3]) {
                Ok(Route::List {
                    rg: Some(rg.to_owned()),
                    rtype: child,
                    parent: Some(parent_id),
                })
            } else {
                Ok(Route::Action {
                    rg: rg.to_owned(),
                    rtype,
                    id: parent_id,
                    name: p[2].clone(),
                    action: p[3].to_ascii_lowercase(),
                })
            }
        }
        5 | 6 => {
            let child = RType::child(rtype, &p[3]).ok_or_else(|| not_a_route(path))?;
            let parent_id = id_of(rtype, &p[2]);
            let id = format!("{parent_id}/{}/{}", child.segment(), p[4]);
            if p.len() == 5 {
                Ok(Route::Resource {
                    rg: rg.to_owned(),
                    rtype: child,
                    id,
                    name: p[4].clone(),
                    parent: Some(parent_id),
                })
            } else {
                Ok(Route::Action {
                    rg: rg.to_owned(),
                    rtype: child,
                    id,
                    name: p[4].clone(),
                    action: p[5].to_ascii_lowercase(),
                })
            }
        }
        _ => Err(not_a_route(path)),
    }
}
