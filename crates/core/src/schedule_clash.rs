//! Two schedules that set different values for the same bound of the same pool at the same
//! minute: which wins would depend on the order the scheduler applies them, so the second
//! is refused when it is defined (API 422, or a start-up error for `[[schedules]]`), naming
//! both, the pool, the bound and the first such minute.
//!
//! Whether two schedules meet on a pool is decided from the schedules and the pools known
//! when the second is defined (passed in, as each pool's tags: this module does no IO):
//! - the same `pool`, or the same `pool_tag` pairs, always meet;
//! - a `pool` schedule and a `pool_tag` one meet on that pool if its tags match;
//! - two different `pool_tag` selectors meet on any known pool both select.
//!
//! A pool created or re-tagged later may bring two schedules together; that is not known
//! when they are defined and is not refused.

use std::collections::BTreeMap;

use crate::UnixSeconds;
use crate::schedule::{ScheduleSpec, Timing};

/// Each known pool's tags, by pool name: what `pool_tag` selectors are matched against.
pub type PoolTags = BTreeMap<String, BTreeMap<String, String>>;

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
    /// The pool both set: `None` only for two identical `pool_tag` selectors, which meet on
    /// every pool they select, known or not.
    pub pool: Option<String>,
}

fn pairs(tags: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

impl Clash {
    /// For the admin: both names, the pool, the minute in `a`'s zone, the two values.
    pub fn message(&self, a: &ScheduleSpec, b: &ScheduleSpec) -> String {
        let target = match (&self.pool, &a.pool_tag) {
            (Some(p), _) => {
                // Say why a tag selector reaches this pool.
                let via: Vec<String> = [a, b]
                    .iter()
                    .filter_map(|s| s.pool_tag.as_ref())
                    .map(|t| format!("tagged {}", pairs(t)))
                    .collect();
                if via.is_empty() {
                    format!("pool {p}")
                } else {
                    format!("pool {p} ({})", via.join(", "))
                }
            }
            (None, Some(tags)) => format!("the pools tagged {}", pairs(tags)),
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

/// Where `a` and `b` meet: `Some(Some(pool))` on a pool (the first by name), `Some(None)`
/// for identical tag selectors, `None` if they set no pool in common.
fn meeting(a: &ScheduleSpec, b: &ScheduleSpec, pools: &PoolTags) -> Option<Option<String>> {
    match (&a.pool, &b.pool) {
        (Some(x), Some(y)) => return (x == y).then(|| Some(x.clone())),
        (Some(p), None) | (None, Some(p)) => {
            let other = if a.pool.is_some() { b } else { a };
            let tags = pools.get(p)?;
            return other.targets(p, tags).then(|| Some(p.clone()));
        }
        (None, None) => {}
    }
    let (Some(x), Some(y)) = (&a.pool_tag, &b.pool_tag) else {
        return None;
    };
    if x == y {
        return Some(None);
    }
    pools
        .iter()
        .find(|(name, tags)| a.targets(name, tags) && b.targets(name, tags))
        .map(|(name, _)| Some(name.clone()))
}

/// The first minute within a year of `now` at which `a` and `b` both fire on the same pool
/// (see the module's notes; `pools` are the known pools' tags) and set different values for
/// one bound; `None` if they never do (or either is invalid).
pub fn clash(
    a: &ScheduleSpec,
    b: &ScheduleSpec,
    pools: &PoolTags,
    now: UnixSeconds,
) -> Option<Clash> {
    let pool = meeting(a, b, pools)?;
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
                pool,
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
        let c = clash(&a, &b, &PoolTags::new(), NOW).unwrap();
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
        assert!(clash(&a, &b, &PoolTags::new(), NOW).is_some());
    }

    #[test]
    fn different_minutes_bounds_or_pools_do_not() {
        let a = spec("night", "0 20 * * *", "UTC", serde_json::json!({"max": 0}));
        let later = spec("later", "1 20 * * *", "UTC", serde_json::json!({"max": 5}));
        assert_eq!(clash(&a, &later, &PoolTags::new(), NOW), None);
        let same = spec(
            "same",
            "0 20 * * *",
            "UTC",
            serde_json::json!({"max": 0, "min": 0}),
        );
        assert_eq!(
            clash(&a, &same, &PoolTags::new(), NOW),
            None,
            "agreeing values are no clash"
        );
        let other = spec(
            "other",
            "0 20 * * *",
            "UTC",
            serde_json::json!({"target": 3}),
        );
        assert_eq!(
            clash(&a, &other, &PoolTags::new(), NOW),
            None,
            "different bounds compose"
        );
        let mut elsewhere = spec(
            "elsewhere",
            "0 20 * * *",
            "UTC",
            serde_json::json!({"max": 5}),
        );
        elsewhere.pool = Some("vray".into());
        assert_eq!(clash(&a, &elsewhere, &PoolTags::new(), NOW), None);
    }

    fn tagged(name: &str, tags: &[(&str, &str)], set: serde_json::Value) -> ScheduleSpec {
        let tags: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": name, "pool_tag": tags, "cron": "0 20 * * *", "timezone": "UTC", "set": set
        }))
        .unwrap()
    }

    fn pools(list: &[(&str, &[(&str, &str)])]) -> PoolTags {
        list.iter()
            .map(|(name, tags)| {
                (
                    name.to_string(),
                    tags.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_tag_schedule_meets_a_pool_schedule_on_a_pool_carrying_the_tag() {
        let by_pool = spec("night", "0 20 * * *", "UTC", serde_json::json!({"max": 0}));
        let by_tag = tagged("show", &[("show", "ep101")], serde_json::json!({"max": 8}));
        let known = pools(&[
            ("maya", &[("show", "ep101"), ("gpu", "yes")]),
            ("vray", &[("show", "ep102")]),
        ]);
        // Both orders, as the API compares the new one against each stored one.
        let c = clash(&by_tag, &by_pool, &known, NOW).unwrap();
        assert_eq!(c.pool.as_deref(), Some("maya"));
        assert_eq!((c.bound, c.a_value, c.b_value), ("max", 8, 0));
        let m = c.message(&by_tag, &by_pool);
        assert!(
            m.contains("\"show\" and \"night\"")
                && m.contains("max of pool maya (tagged show=ep101) to 8 and 0"),
            "{m}"
        );
        assert_eq!(
            clash(&by_pool, &by_tag, &known, NOW)
                .unwrap()
                .pool
                .as_deref(),
            Some("maya")
        );
        // A pool without the tag, or not known at all, is not set by the tag schedule.
        let elsewhere = pools(&[("maya", &[("show", "ep102")])]);
        assert_eq!(clash(&by_tag, &by_pool, &elsewhere, NOW), None);
        assert_eq!(clash(&by_tag, &by_pool, &PoolTags::new(), NOW), None);
        // Agreeing values on the shared pool are no clash.
        let agree = tagged("show", &[("show", "ep101")], serde_json::json!({"max": 0}));
        assert_eq!(clash(&agree, &by_pool, &known, NOW), None);
    }

    #[test]
    fn different_tag_selectors_meet_on_a_pool_both_select() {
        let show = tagged(
            "show",
            &[("show", "ep101")],
            serde_json::json!({"target": 2}),
        );
        let gpu = tagged("gpu", &[("gpu", "yes")], serde_json::json!({"target": 6}));
        let known = pools(&[
            ("arnold", &[("gpu", "yes")]),
            ("maya", &[("show", "ep101"), ("gpu", "yes")]),
            ("nuke", &[("show", "ep101")]),
        ]);
        let c = clash(&gpu, &show, &known, NOW).unwrap();
        assert_eq!(c.pool.as_deref(), Some("maya"), "the only pool both select");
        let m = c.message(&gpu, &show);
        assert!(
            m.contains("pool maya (tagged gpu=yes, tagged show=ep101)"),
            "{m}"
        );
        let apart = pools(&[
            ("arnold", &[("gpu", "yes")]),
            ("nuke", &[("show", "ep101")]),
        ]);
        assert_eq!(clash(&gpu, &show, &apart, NOW), None);
        // Identical selectors meet whatever pools exist.
        let same = tagged("same", &[("gpu", "yes")], serde_json::json!({"target": 1}));
        let c = clash(&same, &gpu, &PoolTags::new(), NOW).unwrap();
        assert_eq!(c.pool, None);
        assert!(c.message(&same, &gpu).contains("the pools tagged gpu=yes"));
    }
}
