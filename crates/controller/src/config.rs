//! The reconciler's knobs, as `renderburst serve` builds them from the configuration file.

use std::sync::Arc;
use std::time::Duration;

use crate::{BootstrapConfig, Placement, bootstrap};

/// How long released and expired node requests are kept after they ended.
pub const ENDED_REQUESTS_KEPT_SECONDS: i64 = 24 * 3600;

/// Knobs of the reconciler.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub resource_group: String,
    pub placement: Placement,
    pub reconcile_interval: Duration,
    /// Longest an activation may spend reading Azure. An activation that reaches it stops
    /// reading (reads are safe to drop), plans only from what it completed, is recorded as
    /// cut, and the next one runs on schedule: during an outage the ARM client retries each
    /// read for up to its retry budget, and without a bound the reconciler (and every pool's
    /// status) would wait that long in silence.
    pub activation_timeout: Duration,
    /// ARM writes (with their polling) in flight at once.
    pub max_concurrent_operations: usize,
    /// Resources of ours that no pool wants are removed after this long.
    pub gc_grace: Duration,
    /// Events kept in the store.
    pub events_retained: u64,
    /// The configured Batch account (in `resource_group`), searched for Batch pools of ours
    /// that no pool wants, besides the accounts pools name.
    pub batch_account: Option<String>,
    /// The daemon's side of node bootstrap: its URL, time zone and hosts entry.
    pub bootstrap: BootstrapConfig,
    /// Batch nodes' enrollment: window and token rotation (`[bootstrap]`).
    pub enrollment: EnrollmentConfig,
    /// The secrets the operator declared (`[secrets.NAME]`), for nodes' bootstrap.
    pub secrets: Arc<bootstrap::DeclaredSecrets>,
    /// The longest hold of a pool's creates after permanent failures
    /// (`[controller] error_backoff_max_seconds`; see [`backoff`]).
    pub error_backoff_max: Duration,
    /// When VM writes go through Compute Schedule in bulk (`[controller] bulk`).
    pub bulk: crate::bulk::BulkMode,
}

/// Batch nodes' enrollment (`[bootstrap]` of the configuration). Anyone who can read a Batch
/// pool in Azure can read its enrollment token, so a token is only worth something for nodes
/// the daemon has listed, within `window` of their allocation, and it is replaced every
/// `rotate_every`; the one it replaced keeps working for `overlap` (nodes allocated just
/// before the rotation carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentConfig {
    pub window: Duration,
    pub rotate_every: Duration,
    pub overlap: Duration,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1800),
            rotate_every: Duration::from_secs(24 * 3600),
            overlap: Duration::from_secs(3600),
        }
    }
}
