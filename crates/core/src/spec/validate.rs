//! Validation of a pool spec: everything serde cannot check, and what a replacement may change.

use super::image::{validate_image, validate_image_os};
use super::{
    APPLICATION_LICENSES_RETIRED, BatchLifecycle, BatchSpec, EvictionPolicy,
    MAX_IDLE_TIMEOUT_SECONDS, MAX_POOL_NAME_CHARS, MAX_POOL_SIZE,
    MAX_SCALE_DOWN_STABILIZATION_SECONDS, MAX_TAG_NAME_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS,
    MAX_VM_SIZES, Os, PoolMode, PoolSpec, Priority, RESERVED_TAG_PREFIX, SpecError,
    from_json_named,
};
use crate::bootstrap::{self, BootstrapSpec, HostEntry, NodeContext};

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
        if self.scale_down_stabilization_seconds > MAX_SCALE_DOWN_STABILIZATION_SECONDS {
            return Err(SpecError::new(
                "scale_down_stabilization_seconds",
                format!("must be at most {MAX_SCALE_DOWN_STABILIZATION_SECONDS} (a day)"),
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
