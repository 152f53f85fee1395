//! Pool specifications: the shape farm admins write (JSON over the API, or `[[pools]]` in
//! the config), its defaults, and its validation.
//!
//! The types are here; `validate.rs` checks a spec (and a replacement of one), `image.rs`
//! knows image references, `parse.rs` reads JSON naming the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::bootstrap::BootstrapSpec;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Vm,
    Batch,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Regular,
    Spot,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    #[default]
    Linux,
    Windows,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScaleDown {
    #[default]
    Deallocate,
    Delete,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvictionPolicy {
    #[default]
    Deallocate,
    Delete,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotSpec {
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
    /// -1: never evicted for price; otherwise the most to pay per hour, in US dollars.
    #[serde(default = "default_max_price")]
    pub max_price: f64,
    /// When no Spot size has capacity or quota, create regular VMs instead.
    #[serde(default)]
    pub fallback_to_regular: bool,
}

impl Default for SpotSpec {
    fn default() -> Self {
        Self {
            eviction_policy: EvictionPolicy::Deallocate,
            max_price: -1.0,
            fallback_to_regular: false,
        }
    }
}

fn default_max_price() -> f64 {
    -1.0
}

fn default_idle_timeout() -> u64 {
    900
}

/// Five minutes, the Kubernetes HPA's default scale-down stabilization window: longer than
/// the gaps between a render manager's jobs, short next to a render node's hour.
fn default_scale_down_stabilization() -> u64 {
    300
}

/// Longest scale-down stabilization window: a day (ended requests are kept that long).
pub const MAX_SCALE_DOWN_STABILIZATION_SECONDS: u64 = 24 * 3600;

/// The most nodes requested at once at any moment of `[from, now]`, from requests as
/// `(created_at, ended_at, count)` with `ended_at` the release or expiry (exclusive). Pure.
pub fn requested_peak(
    requests: &[(UnixSeconds, UnixSeconds, u64)],
    from: UnixSeconds,
    now: UnixSeconds,
) -> u64 {
    // Sweep the window's changes in time order; at one instant, ends before starts.
    let mut changes: Vec<(UnixSeconds, i8, u64)> = Vec::new();
    for &(start, end, count) in requests {
        if start > now || end <= from || end <= start {
            continue;
        }
        changes.push((start.max(from), 1, count));
        changes.push((end, -1, count));
    }
    changes.sort_unstable_by_key(|&(t, sign, _)| (t, sign));
    let (mut live, mut peak) = (0u64, 0u64);
    for (t, sign, count) in changes {
        if sign > 0 {
            live += count;
            if t <= now {
                peak = peak.max(live);
            }
        } else {
            live = live.saturating_sub(count);
        }
    }
    peak
}

/// A pool of render nodes, as farm admins declare it (DESIGN.md section 5).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    pub mode: PoolMode,
    /// Preference list; a size that fails for capacity or quota is skipped for a while.
    pub vm_sizes: Vec<String>,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub spot: SpotSpec,
    /// Marketplace URN `publisher:offer:sku:version`, or an image resource id.
    pub image: String,
    #[serde(default)]
    pub os: Os,
    #[serde(default)]
    pub min: u32,
    pub max: u32,
    #[serde(default)]
    pub target: u32,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// How long demand from node requests must have stayed lower before the pool scales down
    /// for it (the Kubernetes HPA's scale-down stabilization window): requests that come and
    /// go every few seconds would otherwise start and deallocate the same VMs over and over.
    /// The pool's own changes (`pool scale`, a PUT, a schedule's firing) are never delayed:
    /// the window starts again at each.
    #[serde(default = "default_scale_down_stabilization")]
    pub scale_down_stabilization_seconds: u64,
    #[serde(default)]
    pub scale_down: ScaleDown,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Required with `mode: batch`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSpec>,
    /// License servers the renderers on the nodes use (Batch pools: through the start task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseServer>,
    /// What a new node does on its first boot (see [`crate::bootstrap`]); without it nodes
    /// count as ready as soon as they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
}

/// What happens to a Batch pool between workloads.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchLifecycle {
    /// Created with the pool and kept, resized to 0 between workloads.
    #[default]
    Persistent,
    /// Created on first demand, deleted once empty for `auto_delete_after_seconds`.
    Auto,
}

/// The `batch` section of a `mode: batch` pool (DESIGN.md section 5).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// The Batch account (it must exist; renderburst never creates accounts for pools).
    pub account: String,
    /// The account's resource group; the daemon's `azure.resource_group` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Must match the image, e.g. `batch.node.ubuntu 24.04`.
    pub node_agent_sku_id: String,
    #[serde(default)]
    pub lifecycle: BatchLifecycle,
    /// `lifecycle: auto`: delete the Batch pool after it has been empty this long.
    #[serde(default = "default_auto_delete")]
    pub auto_delete_after_seconds: u64,
    #[serde(default = "default_task_slots")]
    pub task_slots_per_node: u32,
    /// With `priority: spot`: at most this many Spot nodes, dedicated for the rest. None: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_cap: Option<u32>,
    /// Of the desired nodes, at least this many are dedicated.
    #[serde(default)]
    pub dedicated_floor: u32,
    /// When Batch cannot allocate the Spot nodes asked for (quota, capacity), ask for
    /// dedicated nodes instead, within `max`.
    #[serde(default)]
    pub spot_fallback_to_dedicated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTaskSpec>,
    /// ARM id of the subnet the nodes join; none: Batch's own network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Adopt this existing Batch pool instead of creating one (never recreated or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_pool: Option<String>,
    /// Retired by Azure in 2024: accepted by the parser only to be refused with an
    /// explanation.
    #[serde(
        default,
        alias = "applicationLicenses",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub application_licenses: Option<serde_json::Value>,
}

/// The start task every Batch node runs when it joins the pool.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTaskSpec {
    pub command_line: String,
    /// Extra environment variables (license variables are added from `licenses`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Keep a node out of scheduling until its start task succeeded.
    #[serde(default = "default_true")]
    pub wait_for_success: bool,
    /// Run as the pool's admin user (needed to install software).
    #[serde(default)]
    pub elevated: bool,
    #[serde(default)]
    pub max_task_retry_count: i32,
}

/// A license server the renderers reach, as an environment variable on every node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseServer {
    /// What it licenses, for people (`arnold`, `vray`...).
    pub name: String,
    /// The variable the renderer reads (`ADSKFLEX_LICENSE_FILE`, `VRAY_AUTH_CLIENT_SETTINGS`...).
    pub variable: String,
    /// Its value: `port@host`, or whatever the renderer expects.
    pub server: String,
}

fn default_auto_delete() -> u64 {
    600
}

fn default_task_slots() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

/// The message that refuses `applicationLicenses`.
pub const APPLICATION_LICENSES_RETIRED: &str = "Azure Batch application licenses (pay-per-use Maya, \
3ds Max, Arnold and V-Ray) were retired on 29 February 2024 and Batch refuses pools that ask for them; \
remove it and list the studio's own license servers under `licenses` instead: renderburst passes them \
to every node as environment variables through the Batch start task";

/// A validation failure, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Largest `max` a pool may have: beyond that a typo would be a very large bill.
pub const MAX_POOL_SIZE: u32 = 5000;

/// Desired node count: clamp(max(target, live requests, min), 0, max).
pub fn desired_count(spec: &PoolSpec, live_requests: u64) -> u32 {
    let want = u64::from(spec.target)
        .max(live_requests)
        .max(u64::from(spec.min));
    want.min(u64::from(spec.max)) as u32
}

/// Most sizes a pool may list: a longer preference list is a mistake, not a strategy.
pub const MAX_VM_SIZES: usize = 10;

/// Longest idle timeout: a week. Beyond that a node is not burst capacity any more.
pub const MAX_IDLE_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;

/// Most tags an admin may set: Azure allows 50 per resource and renderburst adds its own.
pub const MAX_TAGS: usize = 40;

/// Longest tag value Azure accepts.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// Longest tag name Azure accepts.
pub const MAX_TAG_NAME_CHARS: usize = 512;

/// Tag name prefix renderburst keeps for itself, so admins cannot forge ownership.
pub const RESERVED_TAG_PREFIX: &str = "renderburst-";

/// Longest pool name: VM, NIC and disk names are built from it and must stay short.
pub const MAX_POOL_NAME_CHARS: usize = 20;

mod image;
mod parse;
mod validate;

pub use image::known_image_os;
pub(crate) use parse::from_json_named;
pub(crate) use validate::validate_name;
pub use validate::{MAX_LICENSES, MAX_TASK_SLOTS};
