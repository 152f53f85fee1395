//! Pool spec validation and JSON parsing: every rule, and the field each failure names.

use std::collections::BTreeMap;

use rb_core::spec::{
    BatchLifecycle, BatchSpec, LicenseServer, MAX_POOL_SIZE, Os, PoolMode, ScaleDown, SpotSpec,
    StartTaskSpec,
};
use rb_core::{PoolSpec, Priority, SpecError};

const KNOWN: [&str; 3] = [
    "Standard_NC4as_T4_v3",
    "Standard_NC8as_T4_v3",
    "Standard_D4s_v5",
];

fn known(size: &str) -> bool {
    KNOWN.iter().any(|k| k.eq_ignore_ascii_case(size))
}

fn spec() -> PoolSpec {
    PoolSpec {
        name: "maya-spot".into(),
        mode: PoolMode::Vm,
        vm_sizes: vec!["Standard_NC4as_T4_v3".into(), "Standard_NC8as_T4_v3".into()],
        priority: Priority::Spot,
        spot: SpotSpec::default(),
        image: "Canonical:ubuntu-24_04-lts:server:latest".into(),
        os: Os::Linux,
        min: 0,
        max: 50,
        target: 0,
        idle_timeout_seconds: 900,
        scale_down_stabilization_seconds: 300,
        scale_down: ScaleDown::Deallocate,
        tags: BTreeMap::from([("show".to_string(), "ep101".to_string())]),
        batch: None,
        licenses: vec![],
        bootstrap: None,
    }
}

/// The field a modified spec fails on, or None if it passes.
fn failing_field(change: impl FnOnce(&mut PoolSpec)) -> Option<String> {
    let mut s = spec();
    change(&mut s);
    s.validate(&known).err().map(|e| e.field)
}

#[test]
fn the_design_example_is_valid() {
    assert_eq!(spec().validate(&known), Ok(()));
}

#[test]
fn names() {
    let cases: &[(&str, bool)] = &[
        ("a", true),
        ("maya-spot-2", true),
        ("abcdefghijklmnopqrst", true),   // 20
        ("abcdefghijklmnopqrstu", false), // 21
        ("", false),
        ("Maya", false),
        ("1maya", false),
        ("-maya", false),
        ("maya-", false),
        ("maya_spot", false),
        ("maya.spot", false),
        ("mayä", false),
    ];
    for &(name, ok) in cases {
        let field = failing_field(|s| s.name = name.into());
        assert_eq!(field.is_none(), ok, "{name:?}");
        if !ok {
            assert_eq!(field.as_deref(), Some("name"));
        }
    }
}

fn batch_spec() -> PoolSpec {
    let mut s = spec();
    s.mode = PoolMode::Batch;
    s.vm_sizes = vec!["Standard_D4s_v5".into()];
    s.batch = Some(BatchSpec {
        account: "rbfarm".into(),
        resource_group: None,
        node_agent_sku_id: "batch.node.ubuntu 24.04".into(),
        lifecycle: BatchLifecycle::Persistent,
        auto_delete_after_seconds: 600,
        task_slots_per_node: 1,
        spot_cap: Some(10),
        dedicated_floor: 1,
        spot_fallback_to_dedicated: true,
        start_task: Some(StartTaskSpec {
            command_line: "/bin/sh -c 'echo ready'".into(),
            environment: BTreeMap::from([("SHOW".to_string(), "ep101".to_string())]),
            wait_for_success: true,
            elevated: false,
            max_task_retry_count: 0,
        }),
        subnet_id: None,
        existing_pool: None,
        application_licenses: None,
    });
    s.licenses = vec![LicenseServer {
        name: "arnold".into(),
        variable: "ADSKFLEX_LICENSE_FILE".into(),
        server: "27000@lic.studio.lan".into(),
    }];
    s
}

fn batch_failure(change: impl FnOnce(&mut PoolSpec)) -> Option<SpecError> {
    let mut s = batch_spec();
    change(&mut s);
    s.validate(&known).err()
}

#[test]
fn a_batch_pool_validates() {
    assert_eq!(batch_spec().validate(&known), Ok(()));
    let json = serde_json::to_vec(&batch_spec()).unwrap();
    assert_eq!(PoolSpec::from_json(&json).unwrap(), batch_spec());
}

#[test]
fn batch_pools_have_one_vm_size() {
    let e = batch_failure(|s| s.vm_sizes.push("Standard_NC4as_T4_v3".into())).unwrap();
    assert_eq!(e.field, "vm_sizes");
    assert!(
        e.message.contains("exactly one VM size") && e.message.contains("another pool"),
        "{e}"
    );
}

#[test]
fn batch_section_goes_with_batch_mode() {
    let e = batch_failure(|s| s.batch = None).unwrap();
    assert_eq!(e.field, "batch");
    let e = batch_failure(|s| s.mode = PoolMode::Vm).unwrap();
    assert_eq!(e.field, "batch");
    // A VM pool's license servers reach its nodes through their bootstrap.
    let mut vm = spec();
    vm.licenses = batch_spec().licenses;
    let e = vm.validate(&known).unwrap_err();
    assert_eq!(e.field, "licenses");
    assert!(e.message.contains("bootstrap"), "{e}");
    vm.bootstrap = Some(serde_json::from_value(serde_json::json!({})).unwrap());
    vm.validate(&known).unwrap();
    let b = vm.node_bootstrap().unwrap();
    assert_eq!(b.env.len(), vm.licenses.len());
}

#[test]
fn application_licenses_are_refused_with_the_retirement_explained() {
    let mut body = serde_json::to_value(batch_spec()).unwrap();
    body["batch"]["applicationLicenses"] = serde_json::json!(["maya", "arnold"]);
    let spec = PoolSpec::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
    let e = spec.validate(&known).unwrap_err();
    assert_eq!(e.field, "batch.application_licenses");
    assert!(
        e.message.contains("retired") && e.message.contains("2024"),
        "{e}"
    );
    assert!(e.message.contains("licenses"), "names the alternative: {e}");
}

/// A change to a valid spec, for table-driven tests.
type Change = Box<dyn FnOnce(&mut PoolSpec)>;

#[test]
fn batch_fields() {
    let cases: Vec<(&str, Change)> = vec![
        (
            "batch.account",
            Box::new(|s| s.batch.as_mut().unwrap().account = "RB".into()),
        ),
        (
            "batch.node_agent_sku_id",
            Box::new(|s| s.batch.as_mut().unwrap().node_agent_sku_id = "ubuntu".into()),
        ),
        ("batch.node_agent_sku_id", Box::new(|s| s.os = Os::Windows)),
        (
            "batch.task_slots_per_node",
            Box::new(|s| s.batch.as_mut().unwrap().task_slots_per_node = 0),
        ),
        (
            "batch.dedicated_floor",
            Box::new(|s| s.batch.as_mut().unwrap().dedicated_floor = 51),
        ),
        (
            "batch.spot_cap",
            Box::new(|s| s.batch.as_mut().unwrap().spot_cap = Some(51)),
        ),
        (
            "batch.spot_cap",
            Box::new(|s| s.priority = Priority::Regular),
        ),
        ("spot.max_price", Box::new(|s| s.spot.max_price = 0.5)),
        (
            "spot.fallback_to_regular",
            Box::new(|s| s.spot.fallback_to_regular = true),
        ),
        (
            "batch.subnet_id",
            Box::new(|s| s.batch.as_mut().unwrap().subnet_id = Some("render".into())),
        ),
        (
            "batch.existing_pool",
            Box::new(|s| s.batch.as_mut().unwrap().existing_pool = Some("a b".into())),
        ),
        // Names that reach ARM URLs follow ARM's naming rules: ".." would rewrite the path
        // (issue 12 item 8: it left a pool stuck deleting).
        (
            "batch.resource_group",
            Box::new(|s| s.batch.as_mut().unwrap().resource_group = Some("..".into())),
        ),
        (
            "batch.resource_group",
            Box::new(|s| s.batch.as_mut().unwrap().resource_group = Some("rg.".into())),
        ),
        (
            "batch.subnet_id",
            Box::new(|s| {
                s.batch.as_mut().unwrap().subnet_id = Some(
                    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/../providers/Microsoft.Network/virtualNetworks/v1/subnets/render".into(),
                )
            }),
        ),
        (
            "batch.lifecycle",
            Box::new(|s| {
                let b = s.batch.as_mut().unwrap();
                b.existing_pool = Some("legacy".into());
                b.lifecycle = BatchLifecycle::Auto;
            }),
        ),
        (
            "batch.auto_delete_after_seconds",
            Box::new(|s| s.batch.as_mut().unwrap().auto_delete_after_seconds = 10_000_000),
        ),
        (
            "batch.start_task.command_line",
            Box::new(|s| {
                s.batch
                    .as_mut()
                    .unwrap()
                    .start_task
                    .as_mut()
                    .unwrap()
                    .command_line = " ".into()
            }),
        ),
        (
            "batch.start_task.environment.1X",
            Box::new(|s| {
                s.batch
                    .as_mut()
                    .unwrap()
                    .start_task
                    .as_mut()
                    .unwrap()
                    .environment
                    .insert("1X".into(), "v".into());
            }),
        ),
        (
            "batch.start_task.environment.ADSKFLEX_LICENSE_FILE",
            Box::new(|s| {
                s.batch
                    .as_mut()
                    .unwrap()
                    .start_task
                    .as_mut()
                    .unwrap()
                    .environment
                    .insert("ADSKFLEX_LICENSE_FILE".into(), "v".into());
            }),
        ),
        (
            "licenses[0].variable",
            Box::new(|s| s.licenses[0].variable = "A-B".into()),
        ),
        (
            "licenses[0].server",
            Box::new(|s| s.licenses[0].server = "".into()),
        ),
        (
            "licenses[1].variable",
            Box::new(|s| {
                let l = s.licenses[0].clone();
                s.licenses.push(l);
            }),
        ),
    ];
    for (field, change) in cases {
        let e = batch_failure(change);
        assert_eq!(e.as_ref().map(|e| e.field.as_str()), Some(field), "{e:?}");
    }
}

#[test]
fn unknown_batch_fields_name_their_path() {
    let mut body = serde_json::to_value(batch_spec()).unwrap();
    body["batch"]["autoscale_formula"] = serde_json::json!("$TargetDedicatedNodes=1");
    let e = PoolSpec::from_json(&serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert_eq!(e.field, "batch.autoscale_formula");
}

#[test]
fn vm_sizes() {
    assert_eq!(
        failing_field(|s| s.vm_sizes.clear()).as_deref(),
        Some("vm_sizes")
    );
    assert_eq!(
        failing_field(|s| s.vm_sizes = vec!["Standard_NC4as_T4_v3".into(); 11]).as_deref(),
        Some("vm_sizes")
    );
    assert_eq!(
        failing_field(|s| s.vm_sizes.push("Standard_Nope".into())).as_deref(),
        Some("vm_sizes")
    );
    assert_eq!(
        failing_field(|s| s.vm_sizes.push("standard_nc4as_t4_v3".into())).as_deref(),
        Some("vm_sizes")
    );
    assert_eq!(
        failing_field(|s| s.vm_sizes.push("Standard_D4s_v5".into())),
        None
    );
    let mut s = spec();
    s.vm_sizes.push("Standard_Nope".into());
    assert!(
        s.validate(&known)
            .unwrap_err()
            .message
            .contains("Standard_Nope")
    );
}

#[test]
fn images() {
    let cases: &[(&str, bool)] = &[
        ("Canonical:ubuntu-24_04-lts:server:latest", true),
        (
            "MicrosoftWindowsServer:WindowsServer:2022-datacenter:20348.1.1",
            true,
        ),
        (
            "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/maya/versions/1.0.0",
            true,
        ),
        ("/SUBSCRIPTIONS/x/images/maya", true),
        ("/subscriptions/", false),
        ("Canonical:ubuntu:server", false),
        ("Canonical:ubuntu::latest", false),
        ("Canonical:ubuntu:server:latest:extra", false),
        ("Canonical:ubuntu 24:server:latest", false),
        ("ubuntu", false),
        ("", false),
    ];
    for &(image, ok) in cases {
        let field = failing_field(|s| {
            s.image = image.into();
            // A Windows image needs `os: windows` (see the test below).
            if image.starts_with("MicrosoftWindows") {
                s.os = Os::Windows;
            }
        });
        assert_eq!(field.is_none(), ok, "{image:?}");
        if !ok {
            assert_eq!(field.as_deref(), Some("image"));
        }
    }
}

#[test]
fn counts() {
    // A pool parked at zero (a night-time schedule sets max = 0) is a valid spec, so what
    // GET shows can always be PUT back.
    assert_eq!(
        failing_field(|s| {
            s.max = 0;
            s.min = 0;
            s.target = 0;
        }),
        None
    );
    assert_eq!(failing_field(|s| s.max = MAX_POOL_SIZE), None);
    assert_eq!(
        failing_field(|s| s.max = MAX_POOL_SIZE + 1).as_deref(),
        Some("max")
    );
    assert_eq!(
        failing_field(|s| {
            s.min = 51;
            s.target = 51;
        })
        .as_deref(),
        Some("min")
    );
    assert_eq!(
        failing_field(|s| {
            s.min = 5;
            s.target = 4;
        })
        .as_deref(),
        Some("target")
    );
    assert_eq!(failing_field(|s| s.target = 51).as_deref(), Some("target"));
    assert_eq!(
        failing_field(|s| {
            s.min = 50;
            s.target = 50;
        }),
        None
    );
}

#[test]
fn idle_timeout() {
    assert_eq!(failing_field(|s| s.idle_timeout_seconds = 0), None);
    assert_eq!(
        failing_field(|s| s.idle_timeout_seconds = 7 * 24 * 3600),
        None
    );
    assert_eq!(
        failing_field(|s| s.idle_timeout_seconds = 7 * 24 * 3600 + 1).as_deref(),
        Some("idle_timeout_seconds")
    );
}

#[test]
fn spot_max_price() {
    for (price, ok) in [
        (-1.0, true),
        (0.35, true),
        (0.0, false),
        (-2.0, false),
        (-0.5, false),
        (f64::NAN, false),
    ] {
        let field = failing_field(|s| s.spot.max_price = price);
        assert_eq!(field.is_none(), ok, "{price}");
        if !ok {
            assert_eq!(field.as_deref(), Some("spot.max_price"));
        }
    }
}

#[test]
fn tags() {
    assert_eq!(
        failing_field(|s| {
            s.tags = (0..41).map(|i| (format!("t{i}"), String::new())).collect();
        })
        .as_deref(),
        Some("tags")
    );
    assert_eq!(
        failing_field(|s| {
            s.tags = (0..40).map(|i| (format!("t{i}"), String::new())).collect();
        }),
        None
    );
    for bad in [
        "renderburst-pool",
        "RenderBurst-owner",
        "a<b",
        "a>b",
        "50%",
        "a&b",
        "a\\b",
        "a?",
        "a/b",
    ] {
        let field = failing_field(|s| {
            s.tags.insert(bad.into(), "x".into());
        });
        assert_eq!(field, Some(format!("tags.{bad}")), "{bad:?}");
    }
    assert_eq!(
        failing_field(|s| {
            s.tags.insert(String::new(), "x".into());
        })
        .as_deref(),
        Some("tags")
    );
    assert_eq!(
        failing_field(|s| {
            s.tags.insert("show".into(), "x".repeat(257));
        })
        .as_deref(),
        Some("tags.show")
    );
    assert_eq!(
        failing_field(|s| {
            s.tags.insert("show".into(), "é".repeat(256));
        }),
        None
    );
    assert_eq!(
        failing_field(|s| {
            s.tags.insert("renderburst".into(), "x".into());
        }),
        None
    );
}

const EXAMPLE: &str = r#"{
  "name": "maya-spot",            "mode": "vm",
  "vm_sizes": ["Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"],
  "priority": "spot",             "spot": {"eviction_policy": "deallocate", "max_price": -1},
  "image": "Canonical:ubuntu-24_04-lts:server:latest",
  "os": "linux",
  "min": 0, "max": 50, "target": 0,
  "idle_timeout_seconds": 900,
  "scale_down": "deallocate",
  "tags": {"show": "ep101"}
}"#;

#[test]
fn from_json_parses_the_design_example() {
    assert_eq!(PoolSpec::from_json(EXAMPLE.as_bytes()), Ok(spec()));
}

#[test]
fn from_json_fills_defaults() {
    let s = PoolSpec::from_json(
        br#"{"name":"a","mode":"vm","vm_sizes":["Standard_D4s_v5"],"image":"a:b:c:d","max":3}"#,
    )
    .unwrap();
    assert_eq!(s.priority, Priority::Regular);
    assert_eq!(s.os, Os::Linux);
    assert_eq!((s.min, s.target, s.idle_timeout_seconds), (0, 0, 900));
    assert_eq!(s.scale_down, ScaleDown::Deallocate);
    assert_eq!(s.spot, SpotSpec::default());
    assert!(s.tags.is_empty());
}

fn json_field(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    edit(&mut v);
    PoolSpec::from_json(v.to_string().as_bytes())
        .unwrap_err()
        .field
}

#[test]
fn from_json_names_the_field() {
    assert_eq!(json_field(|v| v["foo"] = 1.into()), "foo");
    assert_eq!(
        json_field(|v| {
            v.as_object_mut().unwrap().remove("max");
        }),
        "max"
    );
    assert_eq!(
        json_field(|v| {
            v.as_object_mut().unwrap().remove("name");
        }),
        "name"
    );
    assert_eq!(json_field(|v| v["max"] = "fifty".into()), "max");
    assert_eq!(json_field(|v| v["max"] = (-1).into()), "max");
    assert_eq!(json_field(|v| v["min"] = 1.5.into()), "min");
    assert_eq!(json_field(|v| v["mode"] = "batchy".into()), "mode");
    assert_eq!(json_field(|v| v["priority"] = "low".into()), "priority");
    assert_eq!(
        json_field(|v| v["vm_sizes"] = "Standard_D4s_v5".into()),
        "vm_sizes"
    );
    assert_eq!(json_field(|v| v["vm_sizes"][1] = 3.into()), "vm_sizes");
    assert_eq!(
        json_field(|v| v["spot"]["max_price"] = "cheap".into()),
        "spot.max_price"
    );
    assert_eq!(json_field(|v| v["spot"]["bid"] = 1.into()), "spot.bid");
    assert_eq!(json_field(|v| v["spot"] = 1.into()), "spot");
    assert_eq!(json_field(|v| v["tags"]["show"] = 101.into()), "tags.show");
    // A bad value is found before a missing field, and named.
    assert_eq!(
        json_field(|v| {
            v["max"] = "x".into();
            v.as_object_mut().unwrap().remove("image");
        }),
        "max"
    );
}

#[test]
fn from_json_messages_are_serdes() {
    let err = PoolSpec::from_json(br#"{"name":"a","foo":1}"#).unwrap_err();
    assert_eq!(err.field, "foo");
    assert!(
        err.message.starts_with("unknown field `foo`"),
        "{}",
        err.message
    );
    let err =
        PoolSpec::from_json(br#"{"name":"a","mode":"vm","vm_sizes":[],"image":"a"}"#).unwrap_err();
    assert_eq!(err, SpecError::new("max", "missing field `max`"));
}

#[test]
fn from_json_bodies_that_are_not_a_spec() {
    for body in [
        &b"{"[..],
        b"",
        b"[1,2]",
        b"42",
        b"{\"name\": }",
        b"not json",
    ] {
        let err = PoolSpec::from_json(body).unwrap_err();
        assert_eq!(
            err.field,
            "body",
            "{:?}: {err}",
            String::from_utf8_lossy(body)
        );
    }
    let err = PoolSpec::from_json(b"{\"name\": }").unwrap_err();
    assert!(err.message.contains("line 1"), "{}", err.message);
}

#[test]
fn from_json_duplicate_keys_name_the_key() {
    let body = br#"{"name":"a","name":"b","mode":"vm","vm_sizes":["x"],"image":"a:b:c:d","max":1}"#;
    let err = PoolSpec::from_json(body).unwrap_err();
    assert_eq!(err.field, "name", "{err}");
}

#[test]
fn a_batch_pool_keeps_what_batch_fixes_at_creation() {
    let old = batch_spec();
    let changed = |f: &dyn Fn(&mut PoolSpec)| {
        let mut s = batch_spec();
        f(&mut s);
        s.check_replacement(&old).err().map(|e| e.field)
    };
    assert_eq!(changed(&|s| s.max = 40), None);
    assert_eq!(
        changed(&|s| s.batch.as_mut().unwrap().spot_cap = Some(3)),
        None
    );
    assert_eq!(
        changed(&|s| s.batch.as_mut().unwrap().lifecycle = BatchLifecycle::Auto),
        None
    );
    assert_eq!(changed(&|s| s.vm_sizes[0] = "standard_d4s_v5".into()), None);
    assert_eq!(changed(&|s| s.mode = PoolMode::Vm).as_deref(), Some("mode"));
    assert_eq!(
        changed(&|s| s.vm_sizes[0] = "Standard_D8s_v5".into()).as_deref(),
        Some("vm_sizes")
    );
    assert_eq!(
        changed(&|s| s.licenses.clear()).as_deref(),
        Some("licenses")
    );
    assert_eq!(
        changed(&|s| s.batch.as_mut().unwrap().account = "other".into()).as_deref(),
        Some("batch.account")
    );
    assert_eq!(
        changed(&|s| s.batch.as_mut().unwrap().start_task = None).as_deref(),
        Some("batch.start_task")
    );
    // VM pools change freely, except their mode.
    let vm = spec();
    let mut other = spec();
    other.vm_sizes.reverse();
    assert_eq!(other.check_replacement(&vm), Ok(()));
}

#[test]
fn a_known_linux_image_with_windows_os_and_the_reverse_are_refused_naming_the_image() {
    let cases: &[(&str, Os, bool)] = &[
        ("Canonical:ubuntu-24_04-lts:server:latest", Os::Linux, true),
        (
            "Canonical:ubuntu-24_04-lts:server:latest",
            Os::Windows,
            false,
        ),
        ("RedHat:RHEL:9-lvm-gen2:latest", Os::Windows, false),
        (
            "MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest",
            Os::Windows,
            true,
        ),
        (
            "MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest",
            Os::Linux,
            false,
        ),
        (
            "microsoft-dsvm:dsvm-win-2019:server-2019:latest",
            Os::Linux,
            false,
        ),
        ("microsoft-dsvm:ubuntu-hpc:2204:latest", Os::Linux, true),
        // Unknown publishers and gallery images are taken on trust.
        ("studio:maya-node:2025:latest", Os::Windows, true),
        (
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/maya/versions/1.0.0",
            Os::Windows,
            true,
        ),
    ];
    for (image, os, ok) in cases {
        let mut spec: PoolSpec = serde_json::from_value(serde_json::json!({
            "name": "maya", "mode": "vm", "vm_sizes": ["Standard_D4s_v5"], "image": image, "max": 4
        }))
        .unwrap();
        spec.os = *os;
        let r = spec.validate(&|_| true);
        assert_eq!(r.is_ok(), *ok, "{image} {os:?}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.field, "image", "{image}");
            assert!(e.message.contains("os is"), "{}", e.message);
        }
    }
}

#[test]
fn the_requested_peak_is_the_most_requested_at_once_within_the_window() {
    use rb_core::requested_peak;
    // (created, ended, count): 2 from 0 to 100, 3 from 50 to 60, 4 from 200 to 300.
    let r = [(0, 100, 2), (50, 60, 3), (200, 300, 4)];
    assert_eq!(requested_peak(&r, 0, 1000), 5, "overlap of the first two");
    assert_eq!(
        requested_peak(&r, 60, 150),
        2,
        "the 3 ended at 60 (exclusive)"
    );
    assert_eq!(
        requested_peak(&r, 100, 199),
        0,
        "nothing live in the window"
    );
    assert_eq!(
        requested_peak(&r, 250, 260),
        4,
        "live across the whole window"
    );
    assert_eq!(requested_peak(&r, 0, 40), 2, "not started yet");
    // Back to back: a release and a new request at the same second do not add up.
    assert_eq!(requested_peak(&[(0, 10, 3), (10, 20, 3)], 0, 30), 3);
    assert_eq!(requested_peak(&[], 0, 30), 0);
}
