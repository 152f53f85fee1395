//! Two schedules that set different values for the same bound of the same pool at the same
//! minute: which wins would depend on the order the scheduler applies them, so the second
//! is refused when it is defined (API 422, or a start-up error for `[[schedules]]`), naming
//! both, the bound and the first such minute.
//!
//! "The same pool" is decided from the schedules alone: the same `pool`, or the same
//! `pool_tag` pairs. A `pool` schedule and a `pool_tag` one may meet on a pool tagged later;
//! that is not known when they are defined and is not refused.

use crate::UnixSeconds;
use crate::schedule::{ScheduleSpec, Timing};

/// How far ahead firings are compared: a year covers every calendar pattern.
const HORIZON_SECONDS: i64 = 366 * 86_400;
/// Most firings of the new schedule compared (a seconds pattern fires 86,400 times a day).
const MAX_FIRINGS: usize = 20_000;

/// Where two schedules disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The first minute both fire in (the firing of `a`), Unix seconds.
    pub at: UnixSeconds,
    /// `min`, `max` or `target`.
    pub bound: &'static str,
    pub a_value: u32,
    pub b_value: u32,
}

impl Clash {
    /// For the admin: both names, the pool, the minute in `a`'s zone, the two values.
    pub fn message(&self, a: &ScheduleSpec, b: &ScheduleSpec) -> String {
        let target = match (&a.pool, &a.pool_tag) {
            (Some(p), _) => format!("pool {p}"),
            (None, Some(tags)) => {
                let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("the pools tagged {}", pairs.join(","))
            }
            (None, None) => "the same pools".to_owned(),
        };
        let when = Timing::new(&a.cron, &a.timezone)
            .map(|t| format!("{} ({})", t.local_rfc3339(self.at), a.timezone))
            .unwrap_or_else(|_| self.at.to_string());
        format!(
            "schedules {:?} and {:?} both fire at {when} and set {} of {target} to {} and {}: \
             which applies last would decide; make them agree or fire at different minutes",
            a.name, b.name, self.bound, self.a_value, self.b_value
        )
    }
}

/// The first minute within a year of `now` at which `a` and `b` both fire on the same pool
/// and set different values for one bound; `None` if they never do (or either is invalid).
pub fn clash(a: &ScheduleSpec, b: &ScheduleSpec, now: UnixSeconds) -> Option<Clash> {
    let same_target = match (&a.pool, &b.pool) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.pool_tag.is_some() && a.pool_tag == b.pool_tag,
        _ => false,
    };
    if !same_target {
        return None;
    }
    let (bound, a_value, b_value) = [
        ("min", a.set.min, b.set.min),
        ("max", a.set.max, b.set.max),
        ("target", a.set.target, b.set.target),
    ]
    .into_iter()
    .find_map(|(k, x, y)| match (x, y) {
        (Some(x), Some(y)) if x != y => Some((k, x, y)),
        _ => None,
    })?;
    let ta = Timing::new(&a.cron, &a.timezone).ok()?;
    let tb = Timing::new(&b.cron, &b.timezone).ok()?;
    let mut t = now;
    for _ in 0..MAX_FIRINGS {
        t = ta.next_after(t)?;
        if t > now + HORIZON_SECONDS {
            return None;
        }
        let minute = t - t.rem_euclid(60);
        if tb.next_after(minute - 1).is_some_and(|u| u < minute + 60) {
            return Some(Clash {
                at: t,
                bound,
                a_value,
                b_value,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, cron: &str, tz: &str, set: serde_json::Value) -> ScheduleSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "pool": "maya", "cron": cron, "timezone": tz, "set": set
        }))
        .unwrap()
    }

    /// 2026-01-01T00:00:00Z, a Thursday.
    const NOW: i64 = 1_767_225_600;

    #[test]
    fn same_minute_different_values_clash() {
        let a = spec("night", "0 20 * * *", "UTC", serde_json::json!({"max": 0}));
        let b = spec(
            "late",
            "0 20 * * MON-FRI",
            "UTC",
            serde_json::json!({"max": 5}),
        );
        let c = clash(&a, &b, NOW).unwrap();
        assert_eq!((c.bound, c.a_value, c.b_value), ("max", 0, 5));
        assert_eq!(c.at, NOW + 20 * 3600);
        let m = c.message(&a, &b);
        assert!(
            m.contains("\"night\" and \"late\"") && m.contains("max of pool maya to 0 and 5"),
            "{m}"
        );
    }

    #[test]
    fn the_same_instant_in_two_zones_clashes() {
        let a = spec(
            "london",
            "0 20 * * *",
            "Europe/London",
            serde_json::json!({"target": 0}),
        );
        let b = spec(
            "paris",
            "0 21 * * *",
            "Europe/Paris",
            serde_json::json!({"target": 4}),
        );
        assert!(clash(&a, &b, NOW).is_some());
    }

    #[test]
    fn different_minutes_bounds_or_pools_do_not() {
        let a = spec("night", "0 20 * * *", "UTC", serde_json::json!({"max": 0}));
        let later = spec("later", "1 20 * * *", "UTC", serde_json::json!({"max": 5}));
        assert_eq!(clash(&a, &later, NOW), None);
        let same = spec(
            "same",
            "0 20 * * *",
            "UTC",
            serde_json::json!({"max": 0, "min": 0}),
        );
        assert_eq!(clash(&a, &same, NOW), None, "agreeing values are no clash");
        let other = spec(
            "other",
            "0 20 * * *",
            "UTC",
            serde_json::json!({"target": 3}),
        );
        assert_eq!(clash(&a, &other, NOW), None, "different bounds compose");
        let mut elsewhere = spec(
            "elsewhere",
            "0 20 * * *",
            "UTC",
            serde_json::json!({"max": 5}),
        );
        elsewhere.pool = Some("vray".into());
        assert_eq!(clash(&a, &elsewhere, NOW), None);
    }
}
