//! Pool specifications: the shape farm admins write (JSON over the API, or `[[pools]]` in
//! the config), its defaults, and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Vm,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Regular,
    Spot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    #[default]
    Linux,
    Windows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScaleDown {
    #[default]
    Deallocate,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvictionPolicy {
    #[default]
    Deallocate,
    Delete,
}

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
        Self { eviction_policy: EvictionPolicy::Deallocate, max_price: -1.0, fallback_to_regular: false }
    }
}

fn default_max_price() -> f64 {
    -1.0
}

fn default_idle_timeout() -> u64 {
    900
}

/// A pool of render nodes, as farm admins declare it (DESIGN.md section 5).
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
    #[serde(default)]
    pub scale_down: ScaleDown,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A validation failure, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Largest `max` a pool may have: beyond that a typo would be a very large bill.
pub const MAX_POOL_SIZE: u32 = 5000;

/// Desired node count: clamp(max(target, live requests, min), 0, max).
pub fn desired_count(spec: &PoolSpec, live_requests: u64) -> u32 {
    let want = u64::from(spec.target).max(live_requests).max(u64::from(spec.min));
    want.min(u64::from(spec.max)) as u32
}
