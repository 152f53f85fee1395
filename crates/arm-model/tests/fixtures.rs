//! Every JSON file under `shared/fixtures/arm` must parse into the typed model its role calls
//! for, faithfully (see `support`), and say what we expect of it.
//!
//! `FIXTURES` maps each file to routes: a JSON pointer into the file and a check for the value
//! found there. The test fails when a file has no entry, when an entry names a missing file or
//! pointer, and when a file holds a body-like object that no route covers, so a new fixture or
//! a new example inside one cannot slip through untyped.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arm_model::auth::{ManagedIdentityTokenResponse, OpenIdConfiguration};
use arm_model::batch::{
    AllocationState, NodeDeallocationOption, Pool, PoolProperties, ResizeErrorCode,
};
use arm_model::compute::{
    BillingProfile, DeleteOption, Disk, EvictionPolicy, InstanceView, NetworkProfile, PowerState,
    ScheduledEventType, ScheduledEvents, StartRequests, StorageProfile, VirtualMachine,
    VirtualMachineProperties,
};
use arm_model::network::NetworkInterface;
use arm_model::{
    ErrorResponse, GenericResource, OperationStatus, Page, Resource, TokenErrorResponse,
    TokenResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::parse_faithful;

type Check = fn(&Value) -> Result<(), String>;

/// One value inside a fixture file and how to check it.
struct Route {
    pointer: &'static str,
    check: Check,
}

const fn at(pointer: &'static str, check: Check) -> Route {
    Route { pointer, check }
}

/// Keys that mark an object as a wire body (request or response) rather than commentary.
const BODY_MARKERS: &[&str] = &[
    "properties",
    "value",
    "error",
    "status",
    "access_token",
    "token_endpoint",
    "Events",
];

/// File (relative to the fixtures root, `/`-separated) → routes.
const FIXTURES: &[(&str, &[Route])] = &[
    // --- auth -----------------------------------------------------------------------------
    (
        "auth/entra-token.client-credentials.json",
        &[
            at(
                "/openid_configuration_min_response",
                typed::<OpenIdConfiguration>,
            ),
            at("/token_response_200", token_response),
            at("/token_error_401", token_error),
        ],
    ),
    (
        "auth/imds-managed-identity-token.json",
        &[at("/response_200", imds_token)],
    ),
    // --- batch ----------------------------------------------------------------------------
    (
        "batch/DERIVED_pool-create-lowpriority-render.request.json",
        &[at("", pool_create_render)],
    ),
    (
        "batch/DERIVED_pool-get-resize-errors.response.json",
        &[at("", pool_resize_errors)],
    ),
    (
        "batch/PoolCreate_VirtualMachineConfiguration_ManagedOSDisk.2025-06-01.json",
        &[
            at("/parameters/parameters", typed::<Pool>),
            at("/responses/200/body", pool_resizing),
        ],
    ),
    (
        "batch/PoolDelete.2025-06-01.json",
        &[at("/responses", no_bodies)],
    ),
    (
        "batch/PoolGet.2025-06-01.json",
        &[at("/responses/200/body", pool_get)],
    ),
    (
        "batch/PoolUpdate_ResizePool_and_EnableAutoScale.2025-06-01.json",
        &[
            at("/resize/body", pool_patch_resize),
            at("/resize/response_200_excerpt", pool_excerpt),
            at("/enableAutoScale/body", typed::<Pool>),
            at("/enableAutoScale/response_200_excerpt", pool_excerpt),
        ],
    ),
    // --- compute --------------------------------------------------------------------------
    (
        "compute/DERIVED_vm-create-spot-render-node.request.json",
        &[at("", vm_spot_request)],
    ),
    (
        "compute/DERIVED_vm-list-statusOnly.response.json",
        &[at("", vm_status_only_page)],
    ),
    (
        "compute/VirtualMachineScaleSet_Create_WithSpotRestorePolicy.2025-04-01.request.json",
        &[
            // No scale-set model: the envelope (with its top-level sku) plus the VM profile
            // blocks that scale sets share with VMs.
            at("/body", vmss_envelope),
            at(
                "/body/properties/virtualMachineProfile/storageProfile",
                typed::<StorageProfile>,
            ),
            at(
                "/body/properties/virtualMachineProfile/networkProfile",
                typed::<NetworkProfile>,
            ),
            at(
                "/body/properties/virtualMachineProfile/billingProfile",
                typed::<BillingProfile>,
            ),
        ],
    ),
    (
        "compute/VirtualMachine_Create_WithNetworkInterfaceConfiguration.2025-04-01.json",
        &[
            at("/parameters/parameters", vm_nic_config_request),
            at("/responses/201/body", vm_creating),
        ],
    ),
    (
        // Its "200" body is the placeholder string "(identical to 201 body)".
        "compute/VirtualMachine_Create_WithSshAuthentication.2025-04-01.json",
        &[
            at("/parameters/parameters", typed::<VirtualMachine>),
            at("/responses/201/body", vm_creating),
        ],
    ),
    (
        "compute/VirtualMachine_Delete_Force.2025-04-01.json",
        &[at("/responses", no_bodies)],
    ),
    (
        "compute/VirtualMachine_Get_InstanceView.2025-04-01.trimmed.json",
        &[at("/responses/200/body", instance_view_running)],
    ),
    (
        "compute/VirtualMachine_Start_and_Deallocate.2025-04-01.json",
        &[
            at("/start/responses", no_bodies),
            at("/deallocate/responses", no_bodies),
        ],
    ),
    // --- disk -----------------------------------------------------------------------------
    (
        "disk/Disk_Create_Empty.2025-01-02.json",
        &[
            at("/parameters/disk", disk_empty_request),
            at("/responses/202/body", disk_updating),
            at("/responses/200/body", disk_updating),
        ],
    ),
    // --- errors ---------------------------------------------------------------------------
    (
        "errors/404-ResourceGroupNotFound.json",
        &[at("", error_rg_not_found)],
    ),
    (
        "errors/404-ResourceNotFound.json",
        &[at("", error_resource_not_found)],
    ),
    (
        "errors/409-OperationNotAllowed-family-cores-quota.json",
        &[at("", error_family_quota)],
    ),
    (
        "errors/409-OperationNotAllowed-regional-cores-quota.json",
        &[at("", error_regional_quota)],
    ),
    (
        "errors/409-OperationNotAllowed-spot-lowpriority-cores-quota.json",
        &[at("", error_spot_quota)],
    ),
    (
        "errors/409-SkuNotAvailable.json",
        &[at("", error_sku_not_available)],
    ),
    (
        "errors/409-vm-busy-or-deleting.json",
        &[
            at("/marked_for_deletion", error_operation_not_allowed),
            at("/another_operation", error_operation_not_allowed),
            at("/power_state_change", error_operation_not_allowed),
            at(
                "/network_AnotherOperationInProgress",
                typed::<ErrorResponse>,
            ),
            at("/InvalidParameter", typed::<ErrorResponse>),
        ],
    ),
    (
        "errors/429-arm-subscription-throttled.json",
        &[at("", error_arm_throttled)],
    ),
    (
        "errors/429-compute-rp-throttled.json",
        &[at("", error_compute_throttled)],
    ),
    (
        "errors/arm-error-response.rpc-template.json",
        &[at("", typed::<ErrorResponse>)],
    ),
    (
        "errors/async-AllocationFailed-ZonalAllocationFailed-Overconstrained.json",
        &[
            at("/AllocationFailed", op_failed_allocation),
            at("/ZonalAllocationFailed", op_failed_allocation),
            at("/OverconstrainedAllocationRequest", op_failed_allocation),
        ],
    ),
    // --- lro ------------------------------------------------------------------------------
    (
        "lro/compute-operation-status.failed-allocation.json",
        &[at("", op_failed_allocation)],
    ),
    (
        "lro/compute-operation-status.inprogress.json",
        &[at("", op_in_progress)],
    ),
    (
        "lro/compute-operation-status.succeeded.json",
        &[at("", op_succeeded)],
    ),
    // Prose about headers per verb; it quotes no body, only their descriptions.
    ("lro/headers-and-flows.json", &[at("", prose)]),
    (
        "lro/rpc-async-operation-resource-format.json",
        &[at("", op_rpc_template)],
    ),
    // --- misc -----------------------------------------------------------------------------
    (
        "misc/arm-list-paging-and-tags.json",
        &[at("/paging_response", generic_page)],
    ),
    (
        "misc/imds-scheduled-events-preempt.json",
        &[
            at("/response_200", scheduled_preempt),
            at("/ack_request/body", typed::<StartRequests>),
        ],
    ),
    // --- network --------------------------------------------------------------------------
    (
        "network/DERIVED_nic-create-minimal.request.json",
        &[at("", nic_minimal_request)],
    ),
    (
        "network/NetworkInterfaceCreate.2025-07-01.json",
        &[
            at("/parameters/parameters", typed::<NetworkInterface>),
            at("/responses/201/body", nic_created),
        ],
    ),
    (
        "network/NetworkInterfaceDelete.2025-07-01.json",
        &[at("/responses", no_bodies)],
    ),
];

// ---------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------

/// `shared/fixtures/arm` beside the repository checkout, or `ARM_FIXTURES_DIR`.
fn fixtures_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARM_FIXTURES_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Canonicalize first so a symlinked crate directory still finds its real neighbours.
    let manifest = manifest
        .canonicalize()
        .unwrap_or_else(|_| manifest.to_path_buf());
    manifest.join("../../../shared/fixtures/arm")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
}

#[test]
fn every_fixture_file_parses_into_its_model() {
    let root = fixtures_root();
    assert!(
        root.is_dir(),
        "ARM fixtures not found at {} (expected the `shared` folder beside the repository \
         checkout, i.e. CARGO_MANIFEST_DIR/../../../shared/fixtures/arm; set ARM_FIXTURES_DIR \
         to point elsewhere)",
        root.display()
    );

    let mut files = Vec::new();
    json_files(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .json files under {}", root.display());

    let mut failures = Vec::new();
    let mut visited = BTreeSet::new();
    for path in &files {
        let relative = path
            .strip_prefix(&root)
            .expect("file under root")
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let Some((_, routes)) = FIXTURES.iter().find(|(file, _)| *file == relative) else {
            failures.push(format!(
                "{relative}: no entry in FIXTURES; route its bodies to a model"
            ));
            continue;
        };
        visited.insert(relative.clone());
        if let Err(problems) = check_file(path, routes) {
            failures.extend(problems.into_iter().map(|p| format!("{relative}: {p}")));
        }
    }

    for (file, _) in FIXTURES {
        if !visited.contains(*file) && !failures.iter().any(|f| f.starts_with(file)) {
            failures.push(format!(
                "{file}: listed in FIXTURES but not found under the root"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n"));
    assert_eq!(
        visited.len(),
        files.len(),
        "every fixture file must be visited"
    );
}

fn check_file(path: &Path, routes: &[Route]) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("unreadable: {e}")])?;
    let document: Value =
        serde_json::from_str(&text).map_err(|e| vec![format!("not JSON: {e}")])?;
    if routes.is_empty() {
        return Err(vec!["has no routes".to_owned()]);
    }
    let mut problems = Vec::new();
    for route in routes {
        match document.pointer(route.pointer) {
            None => problems.push(format!("pointer {:?} does not exist", route.pointer)),
            Some(value) => {
                if let Err(e) = (route.check)(value) {
                    problems.push(format!("at {:?}: {e}", route.pointer));
                }
            }
        }
    }
    let covered: Vec<&str> = routes.iter().map(|r| r.pointer).collect();
    find_unrouted_bodies(&document, "", &covered, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn is_covered(pointer: &str, covered: &[&str]) -> bool {
    covered.iter().any(|c| {
        c.is_empty()
            || pointer == *c
            || pointer
                .strip_prefix(c)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Flags objects that look like wire bodies (a marker key, or any object under `body`) but lie
/// outside every route.
fn find_unrouted_bodies(
    value: &Value,
    pointer: &str,
    covered: &[&str],
    problems: &mut Vec<String>,
) {
    if is_covered(pointer, covered) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(marker) = BODY_MARKERS.iter().find(|m| map.contains_key(**m)) {
                problems.push(format!(
                    "{pointer:?} looks like a body (has {marker:?}) but no route covers it"
                ));
                return;
            }
            for (key, child) in map {
                let child_pointer =
                    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                if key == "body" && child.is_object() && !is_covered(&child_pointer, covered) {
                    problems.push(format!(
                        "{child_pointer:?} is a body but no route covers it"
                    ));
                    continue;
                }
                find_unrouted_bodies(child, &child_pointer, covered, problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                find_unrouted_bodies(child, &format!("{pointer}/{i}"), covered, problems);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn typed<T>(value: &Value) -> Result<(), String>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    parse_faithful::<T>(value).map(drop)
}

fn ensure(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(format!("expected {what}"))
    }
}

/// Documentation only: a JSON object, nothing typed.
fn prose(value: &Value) -> Result<(), String> {
    ensure(value.is_object(), "an object")
}

/// DELETE and POST actions answer without a body (202 + headers, 200, 204).
fn no_bodies(value: &Value) -> Result<(), String> {
    let responses = value
        .as_object()
        .ok_or("expected a map of status code → response")?;
    ensure(!responses.is_empty(), "at least one response")?;
    for (code, response) in responses {
        if response.get("body").is_some_and(|b| !b.is_null()) {
            return Err(format!(
                "response {code} has a body; route it to a model instead"
            ));
        }
    }
    Ok(())
}

fn props<P>(resource: &Resource<P>) -> Result<&P, String> {
    resource
        .properties
        .as_ref()
        .ok_or_else(|| "expected properties".to_owned())
}

// --- auth --------------------------------------------------------------------------------

fn token_response(value: &Value) -> Result<(), String> {
    let token: TokenResponse = parse_faithful(value)?;
    ensure(
        token.token_type == "Bearer" && token.expires_in > 0,
        "a Bearer token with a lifetime",
    )
}

fn token_error(value: &Value) -> Result<(), String> {
    let error: TokenErrorResponse = parse_faithful(value)?;
    ensure(error.error == "invalid_client", "invalid_client")?;
    ensure(
        error.error_description.starts_with("AADSTS7000215"),
        "an AADSTS7000215 description",
    )?;
    ensure(error.error_codes == [7000215], "error_codes [7000215]")
}

fn imds_token(value: &Value) -> Result<(), String> {
    let token: ManagedIdentityTokenResponse = parse_faithful(value)?;
    ensure(
        token.expires_on_unix() == Some(1506484173),
        "expires_on parsed from its string",
    )?;
    ensure(
        token.expires_in_secs() == Some(3599),
        "expires_in parsed from its string",
    )
}

// --- batch -------------------------------------------------------------------------------

fn pool_props(value: &Value) -> Result<PoolProperties, String> {
    let pool: Pool = parse_faithful(value)?;
    pool.properties
        .ok_or_else(|| "expected properties".to_owned())
}

fn pool_create_render(value: &Value) -> Result<(), String> {
    let p = pool_props(value)?;
    let fixed = p
        .scale_settings
        .and_then(|s| s.fixed_scale)
        .ok_or("expected fixedScale")?;
    ensure(
        fixed.target_low_priority_nodes == Some(20),
        "20 low-priority nodes",
    )?;
    ensure(
        fixed.node_deallocation_option.as_deref() == Some(NodeDeallocationOption::REQUEUE),
        "Requeue",
    )?;
    let network = p
        .network_configuration
        .ok_or("expected networkConfiguration")?;
    ensure(network.subnet_id.is_some(), "a subnetId")?;
    ensure(
        network.public_ip_address_configuration.is_some(),
        "publicIPAddressConfiguration",
    )?;
    let start = p.start_task.ok_or("expected startTask")?;
    ensure(start.wait_for_success == Some(true), "waitForSuccess")?;
    ensure(
        p.application_licenses.is_none(),
        "no applicationLicenses (retired)",
    )
}

fn pool_resize_errors(value: &Value) -> Result<(), String> {
    let pool: Pool = parse_faithful(value)?;
    ensure(pool.etag.is_some(), "an etag")?;
    let p = props(&pool)?;
    ensure(
        p.allocation_state.as_deref() == Some(AllocationState::STEADY),
        "Steady",
    )?;
    ensure(
        p.current_low_priority_nodes == Some(8),
        "8 current low-priority nodes",
    )?;
    let status = p
        .resize_operation_status
        .as_ref()
        .ok_or("expected resizeOperationStatus")?;
    let errors = status.errors.as_deref().unwrap_or_default();
    ensure(
        errors.first().map(|e| e.code.as_str())
            == Some(ResizeErrorCode::ACCOUNT_LOW_PRIORITY_CORE_QUOTA_REACHED),
        "an AccountLowPriorityCoreQuotaReached resize error",
    )?;
    ensure(
        errors[0].details.as_ref().is_some_and(|d| d.len() == 1),
        "one nested detail",
    )
}

fn pool_resizing(value: &Value) -> Result<(), String> {
    let p = pool_props(value)?;
    ensure(
        p.allocation_state.as_deref() == Some(AllocationState::RESIZING),
        "Resizing",
    )?;
    let vm = p
        .deployment_configuration
        .and_then(|d| d.virtual_machine_configuration)
        .ok_or("expected virtualMachineConfiguration")?;
    ensure(vm.os_disk.is_some(), "the osDisk block kept")?;
    ensure(
        vm.image_reference.and_then(|i| i.version).as_deref() == Some("latest"),
        "version latest",
    )
}

fn pool_get(value: &Value) -> Result<(), String> {
    let p = pool_props(value)?;
    let fixed = p
        .scale_settings
        .and_then(|s| s.fixed_scale)
        .ok_or("expected fixedScale")?;
    ensure(fixed.target_dedicated_nodes == Some(6), "6 dedicated")?;
    ensure(
        fixed.target_low_priority_nodes == Some(28),
        "28 low-priority",
    )?;
    ensure(
        p.metadata.as_ref().is_some_and(|m| m.len() == 2),
        "two metadata items",
    )?;
    let start = p.start_task.ok_or("expected startTask")?;
    ensure(start.max_task_retry_count == Some(6), "maxTaskRetryCount 6")?;
    ensure(
        start
            .environment_settings
            .is_some_and(|e| e[0].name == "MYSET"),
        "env MYSET",
    )
}

fn pool_patch_resize(value: &Value) -> Result<(), String> {
    let p = pool_props(value)?;
    let fixed = p
        .scale_settings
        .and_then(|s| s.fixed_scale)
        .ok_or("expected fixedScale")?;
    ensure(
        fixed.node_deallocation_option.as_deref() == Some(NodeDeallocationOption::TASK_COMPLETION),
        "TaskCompletion",
    )
}

/// The excerpts nest the response's `headers` inside the body object (a fixture shortcut, not
/// wire data), so that key is removed before parsing.
fn pool_excerpt(value: &Value) -> Result<(), String> {
    let mut body = value.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("headers");
    }
    pool_props(&body).map(drop)
}

// --- compute -----------------------------------------------------------------------------

fn vm_props(value: &Value) -> Result<VirtualMachineProperties, String> {
    let vm: VirtualMachine = parse_faithful(value)?;
    vm.properties
        .ok_or_else(|| "expected properties".to_owned())
}

fn vm_spot_request(value: &Value) -> Result<(), String> {
    let p = vm_props(value)?;
    ensure(p.is_spot(), "a Spot VM")?;
    ensure(
        p.eviction_policy.as_deref() == Some(EvictionPolicy::DEALLOCATE),
        "Deallocate",
    )?;
    ensure(
        p.billing_profile.and_then(|b| b.max_price) == Some(-1.0),
        "maxPrice -1",
    )?;
    let os_disk = p
        .storage_profile
        .and_then(|s| s.os_disk)
        .ok_or("expected osDisk")?;
    ensure(
        os_disk.delete_option.as_deref() == Some(DeleteOption::DELETE),
        "osDisk deleteOption",
    )?;
    let nics = p
        .network_profile
        .and_then(|n| n.network_interfaces)
        .ok_or("expected NICs")?;
    let nic = nics[0]
        .properties
        .as_ref()
        .ok_or("expected NIC properties")?;
    ensure(
        nic.delete_option.as_deref() == Some(DeleteOption::DELETE),
        "NIC deleteOption",
    )
}

fn vm_status_only_page(value: &Value) -> Result<(), String> {
    let page: Page<VirtualMachine> = parse_faithful(value)?;
    ensure(page.next_link.is_some(), "a nextLink")?;
    let view = props(&page.value[0])?
        .instance_view
        .as_ref()
        .ok_or("expected instanceView")?;
    ensure(
        view.power_state() == Some(PowerState::DEALLOCATED),
        "deallocated",
    )?;
    ensure(
        view.provisioning_state() == Some("succeeded"),
        "provisioning succeeded",
    )
}

fn vmss_envelope(value: &Value) -> Result<(), String> {
    let vmss: GenericResource = parse_faithful(value)?;
    let sku = vmss.sku.ok_or("expected a top-level sku")?;
    ensure(
        sku.capacity == Some(2) && sku.name.as_deref() == Some("Standard_A8m_v2"),
        "sku",
    )
}

fn vm_nic_config_request(value: &Value) -> Result<(), String> {
    let p = vm_props(value)?;
    let network = p.network_profile.ok_or("expected networkProfile")?;
    ensure(network.network_api_version.is_some(), "networkApiVersion")?;
    let configs = network
        .network_interface_configurations
        .ok_or("expected NIC configurations")?;
    let config = configs[0]
        .properties
        .as_ref()
        .ok_or("expected NIC config properties")?;
    ensure(
        config.delete_option.as_deref() == Some(DeleteOption::DELETE),
        "deleteOption Delete",
    )?;
    let ip = config
        .ip_configurations
        .as_ref()
        .ok_or("expected ipConfigurations")?;
    let ip = ip[0]
        .properties
        .as_ref()
        .ok_or("expected ipConfiguration properties")?;
    ensure(
        ip.public_ip_address_configuration.is_some(),
        "publicIPAddressConfiguration kept",
    )
}

fn vm_creating(value: &Value) -> Result<(), String> {
    let p = vm_props(value)?;
    ensure(
        p.provisioning_state.as_deref() == Some("Creating"),
        "Creating",
    )?;
    ensure(p.vm_id.is_some(), "a vmId")?;
    let os = p.os_profile.ok_or("expected osProfile")?;
    ensure(os.secrets.is_some_and(|s| s.is_empty()), "secrets: [] kept")
}

fn instance_view_running(value: &Value) -> Result<(), String> {
    let view: InstanceView = parse_faithful(value)?;
    ensure(view.power_state() == Some(PowerState::RUNNING), "running")?;
    ensure(view.provisioning_state() == Some("succeeded"), "succeeded")?;
    ensure(view.provisioning_error_code().is_none(), "no error code")
}

// --- disk --------------------------------------------------------------------------------

fn disk_empty_request(value: &Value) -> Result<(), String> {
    let disk: Disk = parse_faithful(value)?;
    let p = props(&disk)?;
    ensure(p.disk_size_gb == Some(200), "diskSizeGB 200")?;
    ensure(
        p.creation_data
            .as_ref()
            .and_then(|c| c.create_option.as_deref())
            == Some("Empty"),
        "createOption Empty",
    )
}

fn disk_updating(value: &Value) -> Result<(), String> {
    let disk: Disk = parse_faithful(value)?;
    ensure(
        props(&disk)?.provisioning_state.as_deref() == Some("Updating"),
        "Updating",
    )
}

// --- errors ------------------------------------------------------------------------------

fn expect_error(value: &Value, code: &str, needle: &str) -> Result<ErrorResponse, String> {
    let response: ErrorResponse = parse_faithful(value)?;
    ensure(response.error.code == code, &format!("code {code}"))?;
    ensure(
        response.error.message.contains(needle),
        &format!("a message containing {needle:?}"),
    )?;
    Ok(response)
}

fn error_rg_not_found(value: &Value) -> Result<(), String> {
    expect_error(value, "ResourceGroupNotFound", "could not be found").map(drop)
}

fn error_resource_not_found(value: &Value) -> Result<(), String> {
    expect_error(value, "ResourceNotFound", "was not found").map(drop)
}

// Clients classify quota errors on these substrings, so the fixtures must carry them.
fn error_family_quota(value: &Value) -> Result<(), String> {
    expect_error(value, "OperationNotAllowed", "Family Cores quota").map(drop)
}

fn error_regional_quota(value: &Value) -> Result<(), String> {
    expect_error(
        value,
        "OperationNotAllowed",
        "exceeding approved Total Regional Cores quota",
    )
    .map(drop)
}

fn error_spot_quota(value: &Value) -> Result<(), String> {
    expect_error(value, "OperationNotAllowed", "LowPriorityCores").map(drop)
}

fn error_sku_not_available(value: &Value) -> Result<(), String> {
    let response = expect_error(value, "SkuNotAvailable", "not available")?;
    ensure(
        response.error.target.as_deref() == Some("sku.name"),
        "target sku.name",
    )
}

fn error_operation_not_allowed(value: &Value) -> Result<(), String> {
    expect_error(value, "OperationNotAllowed", "").map(drop)
}

fn error_arm_throttled(value: &Value) -> Result<(), String> {
    expect_error(
        value,
        "SubscriptionRequestsThrottled",
        "Please try again after",
    )
    .map(drop)
}

fn error_compute_throttled(value: &Value) -> Result<(), String> {
    let response = expect_error(value, "OperationNotAllowed", "too many requests")?;
    ensure(
        response.error.details.first().map(|d| d.code.as_str()) == Some("TooManyRequests"),
        "an inner TooManyRequests detail",
    )
}

// --- lro ---------------------------------------------------------------------------------

fn op_failed_allocation(value: &Value) -> Result<(), String> {
    let status: OperationStatus = parse_faithful(value)?;
    ensure(
        status.is_terminal() && status.status == OperationStatus::FAILED,
        "Failed",
    )?;
    let code = status.error.map(|e| e.code).unwrap_or_default();
    ensure(
        [
            "AllocationFailed",
            "ZonalAllocationFailed",
            "OverconstrainedAllocationRequest",
        ]
        .contains(&code.as_str()),
        "an allocation failure code",
    )
}

fn op_in_progress(value: &Value) -> Result<(), String> {
    let status: OperationStatus = parse_faithful(value)?;
    ensure(
        !status.is_terminal() && status.end_time.is_none(),
        "InProgress without endTime",
    )
}

fn op_succeeded(value: &Value) -> Result<(), String> {
    let status: OperationStatus = parse_faithful(value)?;
    ensure(
        status.is_terminal() && status.error.is_none(),
        "Succeeded without error",
    )
}

/// The RPC's template fills `percentComplete` with a description, not a number; substitute one.
fn op_rpc_template(value: &Value) -> Result<(), String> {
    let mut body = value.clone();
    ensure(
        body["percentComplete"].is_string(),
        "the template's placeholder text",
    )?;
    body["percentComplete"] = serde_json::json!(42.5);
    let status: OperationStatus = parse_faithful(&body)?;
    ensure(
        status.properties.is_some() && status.error.is_some(),
        "properties and error",
    )
}

// --- misc --------------------------------------------------------------------------------

fn generic_page(value: &Value) -> Result<(), String> {
    let page: Page<GenericResource> = parse_faithful(value)?;
    ensure(page.next_link.is_some(), "a nextLink")?;
    let tags = page.value[0].tags.as_ref().ok_or("expected tags")?;
    ensure(
        tags.get("key1").map(String::as_str) == Some("value 1"),
        "tag key1",
    )
}

fn scheduled_preempt(value: &Value) -> Result<(), String> {
    let events: ScheduledEvents = parse_faithful(value)?;
    let event = events.events.first().ok_or("expected an event")?;
    ensure(
        event.event_type == ScheduledEventType::PREEMPT,
        "a Preempt event",
    )?;
    ensure(
        event.duration_in_seconds == Some(-1),
        "DurationInSeconds -1",
    )
}

// --- network -----------------------------------------------------------------------------

fn nic_minimal_request(value: &Value) -> Result<(), String> {
    let nic: NetworkInterface = parse_faithful(value)?;
    let p = props(&nic)?;
    ensure(
        p.enable_accelerated_networking == Some(true),
        "accelerated networking",
    )?;
    let ip = p
        .ip_configurations
        .as_ref()
        .ok_or("expected ipConfigurations")?;
    let ip = ip[0]
        .properties
        .as_ref()
        .ok_or("expected ipConfiguration properties")?;
    ensure(
        ip.private_ip_allocation_method.as_deref() == Some("Dynamic"),
        "Dynamic",
    )?;
    ensure(ip.subnet.is_some(), "a subnet")
}

fn nic_created(value: &Value) -> Result<(), String> {
    let nic: NetworkInterface = parse_faithful(value)?;
    let p = props(&nic)?;
    ensure(
        p.provisioning_state.as_deref() == Some("Succeeded"),
        "Succeeded",
    )?;
    let ips = p
        .ip_configurations
        .as_ref()
        .ok_or("expected ipConfigurations")?;
    ensure(ips.iter().all(|ip| ip.id.is_some()), "ipConfiguration ids")?;
    let first = ips[0].properties.as_ref().ok_or("expected properties")?;
    ensure(
        first.private_ip_address.as_deref() == Some("172.20.2.4"),
        "privateIPAddress",
    )?;
    ensure(first.public_ip_address.is_some(), "publicIPAddress")?;
    let second = ips[1].properties.as_ref().ok_or("expected properties")?;
    ensure(
        second.private_ip_address_prefix_length == Some(28),
        "prefix length 28",
    )
}

// ---------------------------------------------------------------------------------------------
// Serialization properties not tied to one fixture
// ---------------------------------------------------------------------------------------------

fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path:?}: None fields must be omitted"),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| assert_no_nulls(v, &format!("{path}/{k}"))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_no_nulls(v, &format!("{path}/{i}"))),
        _ => {}
    }
}

#[test]
fn a_vm_with_unset_fields_serializes_without_nulls() {
    use arm_model::compute::{
        HardwareProfile, ImageReference, ManagedDiskParameters, NetworkInterfaceReference,
        NetworkInterfaceReferenceProperties, OsDisk, OsProfile, Priority,
    };

    let vm = VirtualMachine {
        location: Some("eastus".into()),
        tags: Some([("farm".to_owned(), "render".to_owned())].into()),
        properties: Some(VirtualMachineProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: Some("Standard_D16as_v5".into()),
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(ImageReference {
                    publisher: Some("Canonical".into()),
                    ..Default::default()
                }),
                os_disk: Some(OsDisk {
                    create_option: Some("FromImage".into()),
                    delete_option: Some(DeleteOption::DELETE.into()),
                    managed_disk: Some(ManagedDiskParameters::default()),
                    ..Default::default()
                }),
                data_disks: None,
            }),
            os_profile: Some(OsProfile::default()),
            network_profile: Some(NetworkProfile {
                network_interfaces: Some(vec![NetworkInterfaceReference {
                    id: Some("/subscriptions/s/.../networkInterfaces/n".into()),
                    properties: Some(NetworkInterfaceReferenceProperties::default()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            priority: Some(Priority::SPOT.into()),
            billing_profile: Some(BillingProfile::default()),
            instance_view: Some(InstanceView::default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let json = serde_json::to_value(&vm).expect("serialize");
    assert_no_nulls(&json, "");
    assert_eq!(json["properties"]["osProfile"], serde_json::json!({}));
    assert!(json.get("id").is_none() && json.get("sku").is_none());

    // And the all-default values of the top-level types are plain `{}`.
    for empty in [
        serde_json::to_value(VirtualMachine::default()),
        serde_json::to_value(Disk::default()),
        serde_json::to_value(NetworkInterface::default()),
        serde_json::to_value(Pool::default()),
        serde_json::to_value(InstanceView::default()),
    ] {
        assert_eq!(empty.expect("serialize"), serde_json::json!({}));
    }
}

#[test]
fn typed_values_round_trip() {
    let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/n1",
        "name": "n1",
        "location": "eastus",
        "zones": ["1"],
        "properties": {
            "priority": "Spot",
            "evictionPolicy": "Delete",
            "billingProfile": {"maxPrice": 0.12345},
            "storageProfile": {"osDisk": {"diskSizeGB": 64, "deleteOption": "Delete"}},
            "instanceView": {"statuses": [{"code": "ProvisioningState/failed/AllocationFailed"}]}
        }
    }))
    .expect("parse");
    let again: VirtualMachine =
        serde_json::from_str(&serde_json::to_string(&vm).expect("serialize")).expect("re-parse");
    assert_eq!(vm, again);
    let view = again
        .properties
        .as_ref()
        .and_then(|p| p.instance_view.as_ref())
        .expect("view");
    assert_eq!(view.provisioning_state(), Some("failed"));
    assert_eq!(view.provisioning_error_code(), Some("AllocationFailed"));
    assert_eq!(view.power_state(), None);

    let pool = Pool {
        etag: Some("W/\"0x1\"".into()),
        properties: Some(PoolProperties {
            vm_size: Some("STANDARD_D16AS_V5".into()),
            current_low_priority_nodes: Some(3),
            ..Default::default()
        }),
        ..Default::default()
    };
    let back: Pool = serde_json::from_value(serde_json::to_value(&pool).expect("ser")).expect("de");
    assert_eq!(pool, back);
}
