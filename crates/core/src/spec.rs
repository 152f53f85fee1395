//! Pool specifications: the shape farm admins write (JSON over the API, or `[[pools]]` in
//! the config), its defaults, and its validation.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{self, BootstrapSpec, HostEntry, NodeContext};

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

impl PoolSpec {
    /// Parses a spec from JSON, naming the offending field when the body does not fit, so
    /// the API can answer a 4xx that points at it.
    pub fn from_json(bytes: &[u8]) -> Result<PoolSpec, SpecError> {
        from_json_named(bytes)
    }

    /// Checks everything serde cannot: names, bounds, sizes, image, tags. `known_size` says
    /// whether a VM size exists (the caller knows the region's sizes; `core` does no IO).
    pub fn validate(&self, known_size: &dyn Fn(&str) -> bool) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        self.validate_sizes(known_size)?;
        validate_image(&self.image)?;
        if self.max > MAX_POOL_SIZE {
            return Err(SpecError::new(
                "max",
                format!(
                    "{} is above the limit of {MAX_POOL_SIZE} nodes per pool",
                    self.max
                ),
            ));
        }
        if self.min > self.max {
            return Err(SpecError::new(
                "min",
                format!("min {} is above max {}", self.min, self.max),
            ));
        }
        if self.target < self.min || self.target > self.max {
            return Err(SpecError::new(
                "target",
                format!(
                    "target {} is outside [min {}, max {}]",
                    self.target, self.min, self.max
                ),
            ));
        }
        if self.idle_timeout_seconds > MAX_IDLE_TIMEOUT_SECONDS {
            return Err(SpecError::new(
                "idle_timeout_seconds",
                format!("must be at most {MAX_IDLE_TIMEOUT_SECONDS} (7 days)"),
            ));
        }
        let price = self.spot.max_price;
        if !(price == -1.0 || (price > 0.0 && price.is_finite())) {
            return Err(SpecError::new(
                "spot.max_price",
                "must be -1 (never evicted for price) or a price above 0 in US dollars per hour",
            ));
        }
        self.validate_tags()?;
        self.validate_bootstrap()?;
        self.validate_licenses()?;
        self.validate_mode()?;
        validate_image_os(&self.image, self.os)
    }

    fn validate_mode(&self) -> Result<(), SpecError> {
        match (self.mode, &self.batch) {
            (PoolMode::Batch, Some(b)) => self.validate_batch(b),
            (PoolMode::Batch, None) => Err(SpecError::new(
                "batch",
                "required with mode \"batch\": at least the Batch account and node_agent_sku_id",
            )),
            (PoolMode::Vm, Some(_)) => Err(SpecError::new(
                "batch",
                "only for mode \"batch\" pools; remove it or set mode to \"batch\"",
            )),
            (PoolMode::Vm, None) if !self.licenses.is_empty() && self.bootstrap.is_none() => {
                Err(SpecError::new(
                    "licenses",
                    "license servers reach VM nodes through their bootstrap: add a bootstrap \
                     section (\"bootstrap\": {} is enough)",
                ))
            }
            (PoolMode::Vm, None) => Ok(()),
        }
    }

    /// Checks that `self` may replace `old` (both valid): the mode never changes, and a Batch
    /// pool keeps what Batch fixes when it creates a pool, or what renderburst only sends
    /// then. Changing those would leave the existing Batch pool (or VMs) behind.
    pub fn check_replacement(&self, old: &PoolSpec) -> Result<(), SpecError> {
        if self.mode != old.mode {
            return Err(SpecError::new(
                "mode",
                "cannot change: delete the pool and create it again with the other mode",
            ));
        }
        let (Some(new_b), Some(old_b)) = (&self.batch, &old.batch) else {
            return Ok(());
        };
        let fixed = |field: &str| {
            Err(SpecError::new(
                field,
                "cannot change on a Batch pool (the Batch pool is created with it): delete the \
                 pool and create it again",
            ))
        };
        let same_sizes = self.vm_sizes.len() == old.vm_sizes.len()
            && self
                .vm_sizes
                .iter()
                .zip(&old.vm_sizes)
                .all(|(a, b)| a.eq_ignore_ascii_case(b));
        if !same_sizes {
            return fixed("vm_sizes");
        }
        if self.image != old.image {
            return fixed("image");
        }
        if self.os != old.os {
            return fixed("os");
        }
        if self.licenses != old.licenses {
            return fixed("licenses");
        }
        // With a bootstrap section the start task is renderburst's enrollment, without one
        // it is the spec's: adding or removing the section would change the start task.
        // What the section says may change: nodes fetch it when they enroll.
        if self.bootstrap.is_some() != old.bootstrap.is_some() {
            return fixed("bootstrap");
        }
        let checks: [(&str, bool); 7] = [
            ("batch.account", new_b.account == old_b.account),
            (
                "batch.resource_group",
                new_b.resource_group == old_b.resource_group,
            ),
            (
                "batch.existing_pool",
                new_b.existing_pool == old_b.existing_pool,
            ),
            (
                "batch.node_agent_sku_id",
                new_b.node_agent_sku_id == old_b.node_agent_sku_id,
            ),
            (
                "batch.task_slots_per_node",
                new_b.task_slots_per_node == old_b.task_slots_per_node,
            ),
            ("batch.subnet_id", new_b.subnet_id == old_b.subnet_id),
            ("batch.start_task", new_b.start_task == old_b.start_task),
        ];
        match checks.iter().find(|(_, same)| !same) {
            Some((field, _)) => fixed(field),
            None => Ok(()),
        }
    }

    /// The section's own rules, then its size: rendered for the longest node name, a long
    /// daemon URL and 256-character secrets, it must fit in `customData`.
    fn validate_bootstrap(&self) -> Result<(), SpecError> {
        let Some(b) = &self.bootstrap else {
            return Ok(());
        };
        b.validate(self.os)?;
        let node = format!("{}-99999", self.name);
        let url = format!("https://{}:65535", "h".repeat(200));
        let token = "t".repeat(64);
        let daemon = HostEntry {
            ip: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".into(),
            names: vec!["renderburst".into(), "h".repeat(200)],
        };
        let ctx = NodeContext {
            pool: &self.name,
            node: &node,
            api_url: &url,
            token: &token,
            default_time_zone: "America/Argentina/Buenos_Aires",
            daemon_host: Some(&daemon),
        };
        let long = |_: &bootstrap::SecretRef| Ok("s".repeat(256));
        for (i, l) in self.licenses.iter().enumerate() {
            if b.env.keys().any(|k| k.eq_ignore_ascii_case(&l.variable)) {
                return Err(SpecError::new(
                    format!("licenses[{i}].variable"),
                    format!(
                        "{:?} is also set in bootstrap.env; set it in one place",
                        l.variable
                    ),
                ));
            }
        }
        let merged = self.node_bootstrap().unwrap_or_else(|| b.clone());
        if self.mode != PoolMode::Batch {
            return bootstrap::render_node(&merged, self.os, &ctx, &long).map(|_| ());
        }
        // Batch: one start task enrolls every node, and the node's script comes from the
        // daemon, so there is no customData limit to check; what must hold is that the
        // start task is renderburst's own.
        let batch = self.batch.as_ref();
        if batch.is_some_and(|x| x.existing_pool.is_some()) {
            return Err(SpecError::new(
                "bootstrap",
                "cannot be used with batch.existing_pool: an adopted Batch pool keeps its own \
                 start task, and bootstrap needs renderburst's (it enrolls each node)",
            ));
        }
        if batch.is_some_and(|x| x.start_task.is_some()) {
            return Err(SpecError::new(
                "batch.start_task",
                "cannot be used with bootstrap: a Batch pool has one start task, and with a \
                 bootstrap section it is renderburst's (it enrolls each node); start your \
                 command with bootstrap.render_client instead",
            ));
        }
        bootstrap::render_enrollment_script(&merged, self.os, &ctx, &long).map(|_| ())
    }

    /// The bootstrap a node of this pool gets: the `bootstrap` section with the pool's
    /// `licenses` added to its environment.
    pub fn node_bootstrap(&self) -> Option<BootstrapSpec> {
        let mut b = self.bootstrap.clone()?;
        for l in &self.licenses {
            b.env
                .entry(l.variable.clone())
                .or_insert_with(|| bootstrap::EnvValue::Plain(l.server.clone()));
        }
        Some(b)
    }

    fn validate_licenses(&self) -> Result<(), SpecError> {
        if self.licenses.len() > MAX_LICENSES {
            return Err(SpecError::new(
                "licenses",
                format!(
                    "at most {MAX_LICENSES} license servers, got {}",
                    self.licenses.len()
                ),
            ));
        }
        for (i, l) in self.licenses.iter().enumerate() {
            let field = |f: &str| format!("licenses[{i}].{f}");
            if l.name.trim().is_empty() {
                return Err(SpecError::new(field("name"), "cannot be empty"));
            }
            validate_env_name(&l.variable, &field("variable"))?;
            if l.server.trim().is_empty() || l.server.chars().any(char::is_control) {
                return Err(SpecError::new(
                    field("server"),
                    "must be a non-empty value such as 5053@license.studio.lan, without control characters",
                ));
            }
            if self.licenses[..i]
                .iter()
                .any(|o| o.variable.eq_ignore_ascii_case(&l.variable))
            {
                return Err(SpecError::new(
                    field("variable"),
                    format!(
                        "{:?} is set twice; put every server in one value (e.g. port@a:port@b)",
                        l.variable
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_batch(&self, b: &BatchSpec) -> Result<(), SpecError> {
        if b.application_licenses.is_some() {
            return Err(SpecError::new(
                "batch.application_licenses",
                APPLICATION_LICENSES_RETIRED,
            ));
        }
        if self.vm_sizes.len() > 1 {
            return Err(SpecError::new(
                "vm_sizes",
                format!(
                    "a Batch pool has exactly one VM size, got {}; list one size and declare \
                     another pool for each other size",
                    self.vm_sizes.len()
                ),
            ));
        }
        crate::arm_names::batch_account(&b.account)
            .map_err(|m| SpecError::new("batch.account", m))?;
        if let Some(rg) = &b.resource_group {
            crate::arm_names::resource_group(rg)
                .map_err(|m| SpecError::new("batch.resource_group", m))?;
        }
        let agent = b.node_agent_sku_id.to_ascii_lowercase();
        if !agent.starts_with("batch.node.") {
            return Err(SpecError::new(
                "batch.node_agent_sku_id",
                format!(
                    "{:?} is not a Batch node agent SKU (they look like \"batch.node.ubuntu 24.04\")",
                    b.node_agent_sku_id
                ),
            ));
        }
        if agent.contains("windows") != (self.os == Os::Windows) {
            return Err(SpecError::new(
                "batch.node_agent_sku_id",
                format!(
                    "{:?} does not match os {:?}",
                    b.node_agent_sku_id,
                    if self.os == Os::Windows {
                        "windows"
                    } else {
                        "linux"
                    }
                ),
            ));
        }
        if b.auto_delete_after_seconds > MAX_IDLE_TIMEOUT_SECONDS {
            return Err(SpecError::new(
                "batch.auto_delete_after_seconds",
                format!("must be at most {MAX_IDLE_TIMEOUT_SECONDS} (7 days)"),
            ));
        }
        if !(1..=MAX_TASK_SLOTS).contains(&b.task_slots_per_node) {
            return Err(SpecError::new(
                "batch.task_slots_per_node",
                format!("must be between 1 and {MAX_TASK_SLOTS}"),
            ));
        }
        if b.dedicated_floor > self.max {
            return Err(SpecError::new(
                "batch.dedicated_floor",
                format!("{} is above max {}", b.dedicated_floor, self.max),
            ));
        }
        if self.priority == Priority::Regular {
            if b.spot_cap.is_some() || b.spot_fallback_to_dedicated {
                let f = if b.spot_cap.is_some() {
                    "batch.spot_cap"
                } else {
                    "batch.spot_fallback_to_dedicated"
                };
                return Err(SpecError::new(
                    f,
                    "only applies with priority \"spot\"; a regular-priority Batch pool has only dedicated nodes",
                ));
            }
        } else {
            if self.spot.max_price != -1.0 {
                return Err(SpecError::new(
                    "spot.max_price",
                    "Batch Spot nodes have no maximum price; leave it at -1",
                ));
            }
            if self.spot.fallback_to_regular {
                return Err(SpecError::new(
                    "spot.fallback_to_regular",
                    "for Batch pools use batch.spot_fallback_to_dedicated",
                ));
            }
            if self.spot.eviction_policy != EvictionPolicy::Deallocate {
                return Err(SpecError::new(
                    "spot.eviction_policy",
                    "Batch decides what happens to preempted Spot nodes (it reallocates them); leave the default",
                ));
            }
        }
        if let Some(cap) = b.spot_cap
            && cap > self.max
        {
            return Err(SpecError::new(
                "batch.spot_cap",
                format!("{cap} is above max {}", self.max),
            ));
        }
        if let Some(subnet) = &b.subnet_id {
            crate::arm_names::SubnetId::parse(subnet)
                .map_err(|m| SpecError::new("batch.subnet_id", m))?;
        }
        if let Some(p) = &b.existing_pool {
            crate::arm_names::batch_pool(p)
                .map_err(|m| SpecError::new("batch.existing_pool", m))?;
            if b.lifecycle == BatchLifecycle::Auto {
                return Err(SpecError::new(
                    "batch.lifecycle",
                    "an adopted pool (existing_pool) is never deleted, so it cannot be \"auto\"; use \"persistent\"",
                ));
            }
        }
        if let Some(t) = &b.start_task {
            if t.command_line.trim().is_empty() || t.command_line.len() > 8000 {
                return Err(SpecError::new(
                    "batch.start_task.command_line",
                    "must be 1 to 8000 characters",
                ));
            }
            for k in t.environment.keys() {
                validate_env_name(k, &format!("batch.start_task.environment.{k}"))?;
                if self
                    .licenses
                    .iter()
                    .any(|l| l.variable.eq_ignore_ascii_case(k))
                {
                    return Err(SpecError::new(
                        format!("batch.start_task.environment.{k}"),
                        "is also set by licenses; set it in one place",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_sizes(&self, known_size: &dyn Fn(&str) -> bool) -> Result<(), SpecError> {
        if self.vm_sizes.is_empty() {
            return Err(SpecError::new("vm_sizes", "list at least one VM size"));
        }
        if self.vm_sizes.len() > MAX_VM_SIZES {
            return Err(SpecError::new(
                "vm_sizes",
                format!("at most {MAX_VM_SIZES} sizes, got {}", self.vm_sizes.len()),
            ));
        }
        for (i, size) in self.vm_sizes.iter().enumerate() {
            if !known_size(size) {
                return Err(SpecError::new(
                    "vm_sizes",
                    format!("unknown VM size {size:?}"),
                ));
            }
            if self.vm_sizes[..i]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(size))
            {
                return Err(SpecError::new(
                    "vm_sizes",
                    format!("{size:?} is listed twice (sizes compare case-insensitively)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_tags(&self) -> Result<(), SpecError> {
        if self.tags.len() > MAX_TAGS {
            return Err(SpecError::new(
                "tags",
                format!(
                    "at most {MAX_TAGS} tags (renderburst adds its own), got {}",
                    self.tags.len()
                ),
            ));
        }
        for (name, value) in &self.tags {
            let field = format!("tags.{name}");
            if name.is_empty() {
                return Err(SpecError::new("tags", "tag names cannot be empty"));
            }
            if name.chars().count() > MAX_TAG_NAME_CHARS {
                return Err(SpecError::new(
                    field,
                    format!("tag names are at most {MAX_TAG_NAME_CHARS} characters"),
                ));
            }
            let reserved = name
                .get(..RESERVED_TAG_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_TAG_PREFIX));
            if reserved {
                return Err(SpecError::new(
                    field,
                    format!("tag names starting with {RESERVED_TAG_PREFIX:?} are reserved"),
                ));
            }
            if let Some(c) = name.chars().find(|c| "<>%&\\?/".contains(*c)) {
                return Err(SpecError::new(
                    field,
                    format!("tag names cannot contain {c:?} (Azure rejects <>%&\\?/)"),
                ));
            }
            if value.chars().count() > MAX_TAG_VALUE_CHARS {
                return Err(SpecError::new(
                    field,
                    format!("tag values are at most {MAX_TAG_VALUE_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }
}

/// Most license servers a pool may list.
pub const MAX_LICENSES: usize = 32;

/// Batch's own limit on task slots per node.
pub const MAX_TASK_SLOTS: u32 = 256;

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters.
fn validate_env_name(name: &str, field: &str) -> Result<(), SpecError> {
    let ok = name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            field,
            format!(
                "{name:?} is not an environment variable name (letters, digits and '_', not starting with a digit)"
            ),
        ))
    }
}

/// `[a-z][a-z0-9-]{0,19}`, not ending in `-`: Azure resource names are built from it.
pub(crate) fn validate_name(name: &str) -> Result<(), SpecError> {
    let bad = |why: &str| {
        Err(SpecError::new(
            "name",
            format!(
                "{name:?} {why}: use 1 to {MAX_POOL_NAME_CHARS} lower-case letters, digits and '-', \
                 starting with a letter and not ending with '-'"
            ),
        ))
    };
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return bad("is empty"),
        Some(b) if !b.is_ascii_lowercase() => {
            return bad("does not start with a lower-case letter");
        }
        Some(_) => {}
    }
    if bytes.len() > MAX_POOL_NAME_CHARS {
        return bad("is too long");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return bad("has a character other than a-z, 0-9 and '-'");
    }
    if name.ends_with('-') {
        return bad("ends with '-'");
    }
    Ok(())
}

/// Marketplace publishers (and offers, by prefix; empty for all of the publisher's) whose
/// images are known to run one OS only. Lower case. From the publishers Azure's marketplace
/// lists for its own and the major distributions' images; anything else (a gallery image, a
/// publisher not listed) is taken on trust.
const KNOWN_IMAGES: &[(&str, &str, Os)] = &[
    ("canonical", "", Os::Linux),
    ("redhat", "", Os::Linux),
    ("suse", "", Os::Linux),
    ("debian", "", Os::Linux),
    ("openlogic", "", Os::Linux),
    ("almalinux", "", Os::Linux),
    ("resf", "", Os::Linux),
    ("oracle", "oracle-linux", Os::Linux),
    ("microsoftcblmariner", "", Os::Linux),
    ("microsoft-dsvm", "ubuntu", Os::Linux),
    ("microsoft-azure-batch", "ubuntu", Os::Linux),
    ("microsoft-azure-batch", "centos", Os::Linux),
    ("microsoftwindowsserver", "", Os::Windows),
    ("microsoftwindowsdesktop", "", Os::Windows),
    ("microsoftvisualstudio", "", Os::Windows),
    ("microsoft-dsvm", "dsvm-win", Os::Windows),
    ("microsoft-azure-batch", "windowsserver", Os::Windows),
];

/// The OS a marketplace image is known to be, if it is in [`KNOWN_IMAGES`].
pub fn known_image_os(image: &str) -> Option<Os> {
    let mut parts = image.split(':');
    let (publisher, offer) = (parts.next()?, parts.next()?);
    let (publisher, offer) = (publisher.to_ascii_lowercase(), offer.to_ascii_lowercase());
    KNOWN_IMAGES
        .iter()
        .find(|(p, o, _)| *p == publisher && offer.starts_with(o))
        .map(|(_, _, os)| *os)
}

/// A known Linux image with `os: windows` (or the reverse) would boot, but every node would
/// fail its bootstrap and never register: refuse it now, naming the image.
fn validate_image_os(image: &str, os: Os) -> Result<(), SpecError> {
    let name = |os: Os| match os {
        Os::Linux => "linux",
        Os::Windows => "windows",
    };
    match known_image_os(image) {
        Some(known) if known != os => Err(SpecError::new(
            "image",
            format!(
                "{image:?} is a {} image but os is {:?}: set \"os\": {:?} or choose a {} image",
                name(known),
                name(os),
                name(known),
                name(os)
            ),
        )),
        _ => Ok(()),
    }
}

/// A marketplace URN `publisher:offer:sku:version` or an image resource id.
fn validate_image(image: &str) -> Result<(), SpecError> {
    let is_id = image
        .get(.."/subscriptions/".len())
        .is_some_and(|p| p.eq_ignore_ascii_case("/subscriptions/"))
        && image.len() > "/subscriptions/".len();
    let parts: Vec<&str> = image.split(':').collect();
    let is_urn = parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.chars().any(char::is_whitespace));
    if is_id || is_urn {
        Ok(())
    } else {
        Err(SpecError::new(
            "image",
            format!(
                "{image:?} is neither a marketplace URN (publisher:offer:sku:version) \
                 nor an image resource id (/subscriptions/...)"
            ),
        ))
    }
}

/// Parses a `T` from JSON, naming the offending field when the body does not fit (shared by
/// every body that `core` defines: pool specs, schedules).
pub(crate) fn from_json_named<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SpecError> {
    let err = match serde_json::from_slice::<T>(bytes) {
        Ok(v) => return Ok(v),
        Err(err) => err,
    };
    if !err.is_data() {
        // Syntax, early end of input: nothing names a field.
        return Err(SpecError::new("body", err.to_string()));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(SpecError::new("body", err.to_string()));
    };
    // Errors from a Value carry no line and column, so they compare equal across probes.
    let message = match serde_json::from_value::<T>(value.clone()) {
        Err(e) => e.to_string(),
        // Only the text form failed (a duplicate key, for example): the message names it.
        Ok(_) => {
            let message = strip_position(&err.to_string());
            let field = backticked(&message).unwrap_or("body").to_string();
            return Err(SpecError::new(field, message));
        }
    };
    let mut path = locate_error::<T>(&value, &message);
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        path.push(name.to_string());
    }
    let field = if path.is_empty() {
        "body".to_string()
    } else {
        join_path(&path)
    };
    Err(SpecError::new(
        field,
        crate::serde_words::humanize(&message),
    ))
}

/// Most keys probed per object when locating an error: the probes clone the document, and a
/// body with thousands of tags is rejected by validation anyway.
const MAX_PROBED_KEYS: usize = 64;

/// Finds the path of the key that causes `message`: serde stops at the first bad key, so
/// removing the culprit (and only the culprit) changes the error. Generic over the spec's
/// shape, so new fields and sections need no table here.
fn locate_error<T: DeserializeOwned>(root: &serde_json::Value, message: &str) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    // Removing the culprit (and only the culprit) changes the error.
    let changes = |probe: serde_json::Value, key: &str| match serde_json::from_value::<T>(probe) {
        Ok(_) => true,
        // Removing a required key only makes serde report that key missing instead; for a
        // missing-field error that says nothing about where the field belongs.
        Err(e) => {
            let changed = e.to_string();
            changed != message
                && !(message.starts_with("missing field `")
                    && changed == format!("missing field `{key}`"))
        }
    };
    loop {
        match value_at(root, &path) {
            Some(serde_json::Value::Object(obj)) if obj.len() <= MAX_PROBED_KEYS => {
                let culprit = obj.keys().find(|key| {
                    let mut probe = root.clone();
                    if let Some(serde_json::Value::Object(o)) = value_at_mut(&mut probe, &path) {
                        o.remove(key.as_str());
                    }
                    changes(probe, key)
                });
                match culprit {
                    Some(key) => path.push(key.clone()),
                    None => return path,
                }
            }
            // Lists of objects (mounts, hosts...): the element whose removal changes the
            // error. Lists of plain values (`vm_sizes`) are named as a whole.
            Some(serde_json::Value::Array(items))
                if !path.is_empty()
                    && items.len() <= MAX_PROBED_KEYS
                    && items.iter().any(serde_json::Value::is_object) =>
            {
                let culprit = (0..items.len()).find(|&i| {
                    let mut probe = root.clone();
                    if let Some(serde_json::Value::Array(a)) = value_at_mut(&mut probe, &path) {
                        a.remove(i);
                    }
                    changes(probe, "")
                });
                match culprit {
                    Some(i) => path.push(format!("[{i}]")),
                    None => return path,
                }
            }
            _ => return path,
        }
    }
}

/// `["bootstrap", "mounts", "[0]", "source"]` → `bootstrap.mounts[0].source`.
fn join_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if !out.is_empty() && !seg.starts_with('[') {
            out.push('.');
        }
        out.push_str(seg);
    }
    out
}

fn index_of(seg: &str) -> Option<usize> {
    seg.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

fn value_at<'a>(root: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(root, |v, seg| match index_of(seg) {
        Some(i) => v.get(i),
        None => v.get(seg.as_str()),
    })
}

fn value_at_mut<'a>(
    root: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(root, |v, seg| match index_of(seg) {
        Some(i) => v.get_mut(i),
        None => v.get_mut(seg.as_str()),
    })
}

/// serde_json appends " at line L column C" to errors from text.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The first `name` in backticks of a serde message ("unknown field `foo`, expected ...").
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}
