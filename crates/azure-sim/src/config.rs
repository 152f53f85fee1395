//! The simulator's tunables: latencies, faults, limits, quotas, capacity, paging and the
//! identity it accepts.
//!
//! The same shape is read from `renderburst sim --config FILE` (TOML) and merged at run time
//! by `PUT /_sim/config` (JSON). Merging is JSON merge-patch: keys present in the patch
//! replace, `null` resets a key to its default, absent keys stay. Unknown keys are errors, so
//! a typo in a test or a demo config never silently does nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub latency_ms: Latency,
    pub faults: Faults,
    pub limits: Limits,
    pub quota: Quota,
    pub paging: Paging,
    /// VM size (case-insensitive) → how many VMs of that size can be allocated at once.
    /// Sizes not listed have unlimited capacity.
    pub capacity: BTreeMap<String, u64>,
    pub identity: Identity,
    pub polling: Polling,
    /// Region reported for operations and Batch accounts when a request names none.
    pub location: String,
    pub boot: Boot,
    pub compute_schedule: ComputeSchedule,
}

/// How the simulated Compute Schedule service (`Microsoft.ComputeSchedule`) paces its work.
/// Azure documents neither number; these are the simulator's, kept short like its latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeSchedule {
    /// From an execute request to its VMs' first attempt (state `PendingScheduling` meanwhile;
    /// live answers show the deadline about a second after the request).
    pub schedule_delay_ms: u64,
    /// From a failed attempt to the next one, when the retry policy allows one.
    pub retry_interval_ms: u64,
}

impl Default for ComputeSchedule {
    fn default() -> Self {
        Self {
            schedule_delay_ms: 1000,
            retry_interval_ms: 1000,
        }
    }
}

/// Booting VMs (off by default): a VM created with `customData` that reaches running finds
/// the register URL (`http(s)://.../v1/nodes/{name}/register`) and node token (`rbn_...`)
/// in it and calls the URL, as renderburst's bootstrap script would, then sends one
/// liveness heartbeat. A Batch node that comes up in a pool whose start task is
/// renderburst's enrollment enrolls first and reads the script it gets back. Calls go over
/// plain HTTP or HTTPS (with the system's roots) to whatever the URL names, normally the
/// daemon on loopback.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Boot {
    pub enabled: bool,
    /// VM names or Batch node ids (case-insensitive) that never register: zombies, for tests.
    pub never_register: Vec<String>,
    /// Share (0.0–1.0) of booting VMs that never register, drawn per VM.
    pub never_register_fraction: f64,
    /// From running to the register call.
    pub delay_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency_ms: Latency::default(),
            faults: Faults::default(),
            limits: Limits::default(),
            quota: Quota::default(),
            paging: Paging::default(),
            capacity: BTreeMap::new(),
            identity: Identity::default(),
            polling: Polling::default(),
            location: "westeurope".to_owned(),
            boot: Boot::default(),
            compute_schedule: ComputeSchedule::default(),
        }
    }
}

/// How long each asynchronous transition takes. Defaults stay under a second so that
/// `renderburst sim` feels responsive; tests set them to a few milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    pub vm_create: u64,
    pub vm_start: u64,
    pub vm_deallocate: u64,
    pub vm_delete: u64,
    pub nic: u64,
    pub disk: u64,
    pub batch_node: u64,
    pub eviction: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            vm_create: 800,
            vm_start: 500,
            vm_deallocate: 500,
            vm_delete: 500,
            nic: 100,
            disk: 200,
            batch_node: 1000,
            eviction: 500,
        }
    }
}

/// Fault injection rates, each 0.0–1.0, drawn independently for every ARM and Batch request
/// (never for `/_sim/*` or Entra ID), so a client's retry can succeed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub http_5xx_rate: f64,
    pub http_429_rate: f64,
    pub drop_rate: f64,
    pub operation_fail_rate: f64,
    /// An ARM outage: while true, every ARM request (not the Batch data plane, `/_sim/*` or
    /// Entra ID) answers `503 ServiceUnavailable` with `Retry-After: 1`, as ARM does when the
    /// front door or a resource provider is unavailable. Azure documents 503 as a transient
    /// error to be retried, honouring `Retry-After` when present:
    /// <https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/common-deployment-errors>
    /// and <https://learn.microsoft.com/en-us/azure/architecture/best-practices/retry-service-specific>.
    pub arm_outage: bool,
}

/// ARM's per-subscription token buckets (sizes and refill per second) and a factor applied
/// to every Compute RP bucket. Defaults are Azure's published numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub reads_bucket: f64,
    pub reads_per_s: f64,
    pub writes_bucket: f64,
    pub writes_per_s: f64,
    pub deletes_bucket: f64,
    pub deletes_per_s: f64,
    pub compute_factor: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            reads_bucket: 250.0,
            reads_per_s: 25.0,
            writes_bucket: 200.0,
            writes_per_s: 10.0,
            deletes_bucket: 200.0,
            deletes_per_s: 10.0,
            compute_factor: 1.0,
        }
    }
}

/// vCPU quotas. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    pub regional_vcpus: Option<u64>,
    pub spot_vcpus: Option<u64>,
    /// Quota family name (e.g. `standardNCASv3_T4Family`, case-insensitive) → vCPUs.
    pub families: BTreeMap<String, u64>,
    pub batch_dedicated_vcpus: Option<u64>,
    pub batch_spot_vcpus: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Paging {
    pub page_size: usize,
}

impl Default for Paging {
    fn default() -> Self {
        Self { page_size: 50 }
    }
}

/// The tenant, service principal and subscription the simulator accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Identity {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
    /// Lifetime of issued access tokens.
    pub token_lifetime_seconds: u64,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            tenant_id: "11111111-1111-1111-1111-111111111111".to_owned(),
            client_id: "22222222-2222-2222-2222-222222222222".to_owned(),
            client_secret: "sim-secret".to_owned(),
            subscription_id: "33333333-3333-3333-3333-333333333333".to_owned(),
            token_lifetime_seconds: 3599,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Polling {
    /// `Retry-After` sent with running operations. At least 1: the Python SDK treats 0 as
    /// absent and then waits its 30 s default.
    pub retry_after_seconds: u64,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            retry_after_seconds: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid simulator config: {0}")]
    Invalid(String),
}

impl SimConfig {
    /// Applies a JSON merge-patch and validates the result. On error `self` is unchanged.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<SimConfig, ConfigError> {
        if !patch.is_object() {
            return Err(ConfigError::Invalid(
                "the config patch must be a JSON object".into(),
            ));
        }
        let mut base =
            serde_json::to_value(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        merge_patch(&mut base, patch);
        let cfg: SimConfig =
            serde_json::from_value(base).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a TOML file of the same shape on top of the defaults.
    pub fn from_toml_str(text: &str) -> Result<SimConfig, ConfigError> {
        let value: toml::Value =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let json = serde_json::to_value(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        SimConfig::default().merged(&json)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let rates = [
            ("faults.http_5xx_rate", self.faults.http_5xx_rate),
            ("faults.http_429_rate", self.faults.http_429_rate),
            ("faults.drop_rate", self.faults.drop_rate),
            (
                "faults.operation_fail_rate",
                self.faults.operation_fail_rate,
            ),
            (
                "boot.never_register_fraction",
                self.boot.never_register_fraction,
            ),
        ];
        for (key, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be between 0.0 and 1.0, got {rate}"
                )));
            }
        }
        let limits = [
            ("limits.reads_bucket", self.limits.reads_bucket),
            ("limits.reads_per_s", self.limits.reads_per_s),
            ("limits.writes_bucket", self.limits.writes_bucket),
            ("limits.writes_per_s", self.limits.writes_per_s),
            ("limits.deletes_bucket", self.limits.deletes_bucket),
            ("limits.deletes_per_s", self.limits.deletes_per_s),
            ("limits.compute_factor", self.limits.compute_factor),
        ];
        for (key, v) in limits {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be a positive number, got {v}"
                )));
            }
        }
        if self.paging.page_size == 0 || self.paging.page_size > 1000 {
            return Err(ConfigError::Invalid(
                "paging.page_size must be between 1 and 1000".into(),
            ));
        }
        if self.polling.retry_after_seconds == 0 {
            return Err(ConfigError::Invalid(
                "polling.retry_after_seconds must be at least 1".into(),
            ));
        }
        if self.identity.token_lifetime_seconds == 0 {
            return Err(ConfigError::Invalid(
                "identity.token_lifetime_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Capacity for a VM size, if limited.
    pub fn capacity_for(&self, size: &str) -> Option<u64> {
        self.capacity
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(size))
            .map(|(_, v)| *v)
    }

    pub fn family_quota(&self, family: &str) -> Option<u64> {
        self.quota
            .families
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(family))
            .map(|(_, v)| *v)
    }
}

/// RFC 7396 JSON merge-patch.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(map) = target {
                for (k, v) in patch_map {
                    if v.is_null() {
                        map.remove(k);
                    } else {
                        merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_replaces_only_given_keys_and_null_resets() {
        let cfg = SimConfig::default()
            .merged(&json!({"latency_ms": {"vm_create": 5}, "capacity": {"Standard_D2s_v5": 3}}))
            .unwrap();
        assert_eq!(cfg.latency_ms.vm_create, 5);
        assert_eq!(cfg.latency_ms.vm_start, Latency::default().vm_start);
        assert_eq!(cfg.capacity_for("standard_d2s_v5"), Some(3));
        let reset = cfg
            .merged(&json!({"latency_ms": {"vm_create": null}}))
            .unwrap();
        assert_eq!(reset.latency_ms.vm_create, Latency::default().vm_create);
        assert_eq!(reset.capacity_for("Standard_D2s_v5"), Some(3));
    }

    #[test]
    fn unknown_keys_and_bad_rates_are_rejected() {
        let err = SimConfig::default()
            .merged(&json!({"latency_ms": {"vm_creat": 5}}))
            .unwrap_err();
        assert!(err.to_string().contains("vm_creat"), "{err}");
        let err = SimConfig::default()
            .merged(&json!({"faults": {"drop_rate": 1.5}}))
            .unwrap_err();
        assert!(err.to_string().contains("faults.drop_rate"), "{err}");
        assert!(SimConfig::default().merged(&json!([1])).is_err());
    }

    #[test]
    fn toml_file_uses_the_same_shape() {
        let cfg = SimConfig::from_toml_str(
            "[paging]\npage_size = 7\n[quota]\nspot_vcpus = 16\n[quota.families]\nstandardDSv5Family = 8\n",
        )
        .unwrap();
        assert_eq!(cfg.paging.page_size, 7);
        assert_eq!(cfg.quota.spot_vcpus, Some(16));
        assert_eq!(cfg.family_quota("standarddsv5family"), Some(8));
        assert!(SimConfig::from_toml_str("[paging]\npage = 7\n").is_err());
    }

    #[test]
    fn example_file_documents_exactly_the_defaults() {
        let text = include_str!("../../../config/sim.example.toml");
        assert_eq!(
            SimConfig::from_toml_str(text).unwrap(),
            SimConfig::default()
        );
    }
}
