use super::route::{Route, route};
use super::*;

#[test]
fn api_versions() {
    for ok in [
        "2025-04-01",
        "2026-04-01",
        "2024-03-01-preview",
        "2024-07-01.20.0",
    ] {
        assert!(valid_api_version(ok), "{ok}");
    }
    for bad in [
        "",
        "2025",
        "2025-4-01",
        "latest",
        "2025-04-01-",
        "2025-04-01x",
    ] {
        assert!(!valid_api_version(bad), "{bad}");
    }
}

#[test]
fn names() {
    assert!(validate_name(RType::VirtualMachine, "maya-spot-0001").is_ok());
    assert!(validate_name(RType::VirtualMachine, &"a".repeat(65)).is_err());
    assert!(validate_name(RType::NetworkInterface, "bad?name").is_err());
    assert!(validate_name(RType::NetworkInterface, "ends.").is_err());
    assert!(validate_name(RType::NetworkInterface, "").is_err());
}

#[test]
fn routes() {
    let segs = |p: &str| {
        p.trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let p =
        "/subscriptions/s/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm1/start";
    match route(&segs(p), p).unwrap().1 {
        Route::Action { action, name, .. } => {
            assert_eq!(action, "start");
            assert_eq!(name, "vm1");
        }
        _ => panic!("not an action"),
    }
    let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s1";
    match route(&segs(p), p).unwrap().1 {
        Route::Resource { rtype, id, .. } => {
            assert_eq!(rtype, RType::Subnet);
            assert!(id.ends_with("/virtualNetworks/v/subnets/s1"), "{id}");
        }
        _ => panic!("not a resource"),
    }
    let p = "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/abc";
    assert!(matches!(
        route(&segs(p), p).unwrap().1,
        Route::Operation { .. }
    ));
    let p = "/subscriptions/s/providers/Microsoft.ComputeSchedule/locations/westeurope/virtualMachinesExecuteCreate";
    match route(&segs(p), p).unwrap().1 {
        Route::ComputeSchedule { location, action } => {
            assert_eq!(location, "westeurope");
            assert_eq!(action, "virtualMachinesExecuteCreate");
        }
        _ => panic!("not a Compute Schedule call"),
    }
    let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Nope/things/x";
    assert_eq!(
        route(&segs(p), p).err().unwrap().code(),
        "InvalidResourceType"
    );
}
