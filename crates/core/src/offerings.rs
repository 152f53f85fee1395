//! Offerings (a VM size at a priority) that Azure refused for capacity or quota, and for how
//! long the planner avoids them.

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::spec::Priority;

/// A VM size at a priority. Sizes compare case-insensitively; keep them lower-cased here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Offering {
    pub size: String,
    pub priority: Priority,
}

impl Offering {
    pub fn new(size: &str, priority: Priority) -> Self {
        Self { size: size.to_ascii_lowercase(), priority }
    }
}

/// Why an offering is avoided; decides for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnavailableReason {
    /// AllocationFailed and kin: no capacity now (about an hour).
    Capacity,
    /// A vCPU quota (regional, family, Spot) is exhausted (about ten minutes: quotas change
    /// when VMs go away or an admin raises them).
    Quota,
    /// SkuNotAvailable: the size is not offered here (longer).
    SkuNotAvailable,
}

/// An offering avoided until `until`, with the ARM code that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    pub offering: Offering,
    pub reason: UnavailableReason,
    pub code: String,
    pub since: UnixSeconds,
    pub until: UnixSeconds,
}
