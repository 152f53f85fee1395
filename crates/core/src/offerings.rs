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
        Self {
            size: size.to_ascii_lowercase(),
            priority,
        }
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

impl UnavailableReason {
    /// How long an offering is avoided after this kind of refusal. Capacity comes back within
    /// the hour, quota changes when VMs go away or an admin raises it, and a size that is not
    /// offered in the region rarely appears soon.
    pub fn duration_seconds(self) -> i64 {
        match self {
            UnavailableReason::Capacity => 3600,
            UnavailableReason::Quota => 600,
            UnavailableReason::SkuNotAvailable => 4 * 3600,
        }
    }
}

impl Unavailable {
    /// Marks `offering` unavailable from `now` for as long as `reason` warrants.
    pub fn new(
        offering: Offering,
        reason: UnavailableReason,
        code: impl Into<String>,
        now: UnixSeconds,
    ) -> Self {
        Self {
            offering,
            reason,
            code: code.into(),
            since: now,
            until: now.saturating_add(reason.duration_seconds()),
        }
    }

    /// Whether this entry still applies at `now`; it lapses at `until`.
    pub fn is_active(&self, now: UnixSeconds) -> bool {
        now < self.until
    }

    /// Whether this entry is about `offering`, comparing sizes case-insensitively as Azure does.
    pub fn matches(&self, offering: &Offering) -> bool {
        self.offering.priority == offering.priority
            && self.offering.size.eq_ignore_ascii_case(&offering.size)
    }
}

/// The entry that makes `offering` unavailable at `now`, if any. When several apply, the one
/// that lasts longest wins, since that is when the offering can be tried again.
pub fn is_unavailable<'a>(
    list: &'a [Unavailable],
    offering: &Offering,
    now: UnixSeconds,
) -> Option<&'a Unavailable> {
    list.iter()
        .filter(|u| u.is_active(now) && u.matches(offering))
        .max_by_key(|u| u.until)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` for reasons and conditions admins read;
/// `core` has no time crate, and civil-from-days is a few lines.
pub fn format_utc(t: UnixSeconds) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_error_kind() {
        assert_eq!(UnavailableReason::Capacity.duration_seconds(), 3600);
        assert_eq!(UnavailableReason::Quota.duration_seconds(), 600);
        assert_eq!(
            UnavailableReason::SkuNotAvailable.duration_seconds(),
            4 * 3600
        );
    }

    #[test]
    fn new_sets_the_window() {
        let u = Unavailable::new(
            Offering::new("Standard_D4s_v5", Priority::Spot),
            UnavailableReason::Quota,
            "OperationNotAllowed",
            1000,
        );
        assert_eq!(u.offering.size, "standard_d4s_v5");
        assert_eq!((u.since, u.until), (1000, 1600));
        assert_eq!(u.code, "OperationNotAllowed");
    }

    #[test]
    fn lookup_is_case_insensitive_priority_exact_and_lapses_at_until() {
        let list = vec![Unavailable::new(
            Offering::new("Standard_D4s_v5", Priority::Spot),
            UnavailableReason::Quota,
            "OperationNotAllowed",
            1000,
        )];
        let spot = Offering {
            size: "STANDARD_D4S_V5".into(),
            priority: Priority::Spot,
        };
        let regular = Offering::new("Standard_D4s_v5", Priority::Regular);
        assert!(is_unavailable(&list, &spot, 1000).is_some());
        assert!(is_unavailable(&list, &spot, 1599).is_some());
        assert!(is_unavailable(&list, &spot, 1600).is_none());
        assert!(is_unavailable(&list, &regular, 1000).is_none());
    }

    #[test]
    fn lookup_prefers_the_longest_entry() {
        let o = Offering::new("Standard_D4s_v5", Priority::Regular);
        let list = vec![
            Unavailable::new(o.clone(), UnavailableReason::Quota, "Quota", 1000),
            Unavailable::new(
                o.clone(),
                UnavailableReason::Capacity,
                "AllocationFailed",
                1000,
            ),
        ];
        assert_eq!(
            is_unavailable(&list, &o, 1000).map(|u| u.code.as_str()),
            Some("AllocationFailed")
        );
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
    }
}
