//! Schedules: "at these times, in this time zone, set these pools' min, max or target" (the
//! off-hours windows of issue 7), their validation, and the time arithmetic that says when a
//! schedule fires.
//!
//! Everything here is pure: time comes in as Unix seconds (`now`, `floor`), so the rules for
//! daylight-saving transitions and for catching up after downtime are unit-tested at real
//! transitions without a clock.
//!
//! # When a schedule fires
//!
//! The cron pattern is read on the wall clock of the schedule's IANA time zone, with the
//! rules of the Open Cron Pattern Specification, which `croner` implements:
//!
//! - a *fixed-time* pattern (fixed second, minute and hour, such as `30 2 * * *`) whose time
//!   falls in the hour skipped by a spring-forward transition fires once, at the first instant
//!   after the gap (03:00 on that day), and one whose time is repeated by a fall-back
//!   transition fires once, at the first of the two instants;
//! - an *interval* pattern (a wildcard or step in the second, minute or hour field, such as
//!   `*/15 * * * *`) fires at every real instant whose wall-clock time matches: none in a
//!   skipped hour, both halves of a repeated hour, so its firings stay evenly spaced in real
//!   time.
//!
//! # Catch-up
//!
//! A schedule owes at most one firing at any moment: [`Timing::due`] is the latest firing at
//! or before `now`, if it is later than the last one applied (or than the moment the schedule
//! was defined). The scheduler asks it on every tick, so a tick on time applies that firing,
//! and the first tick after downtime applies the most recent one missed, never a backlog.
//!
//! Over 600 lines: the second half is its unit tests.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::spec::{MAX_POOL_SIZE, MAX_TAGS, SpecError, from_json_named, validate_name};

/// Longest schedule name.
pub const MAX_SCHEDULE_NAME_CHARS: usize = 63;

/// A schedule as admins write it (`POST /v1/schedules`, or `[[schedules]]` in the config).
///
/// It targets either one pool by name (`pool`) or every pool whose tags include all the
/// given pairs (`pool_tag`, matched when it fires, so pools created later are included).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `[a-z][a-z0-9-]{0,62}`, not ending with `-`. The actor of the events it records.
    pub name: String,
    /// The pool to set. Exactly one of `pool` and `pool_tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Every pool whose tags include all of these `name: value` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_tag: Option<BTreeMap<String, String>>,
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the pattern is read in, such as `Europe/London`.
    pub timezone: String,
    /// What each firing sets.
    pub set: ScheduleSet,
}

/// The bounds a firing sets; at least one. Unnamed bounds are kept, except that they are
/// moved as little as needed to stay consistent with the named ones (see [`ScheduleSet::apply`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
}

/// A pool's `min`, `max` and `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    pub target: u32,
}

impl ScheduleSet {
    /// The pool's bounds after this firing. Named values win; an unnamed `min` or `target`
    /// follows a lowered `max` down, and an unnamed `target` follows a raised `min` up. An
    /// unnamed `max` is never raised (it is the admin's cost guard): a named `min` or
    /// `target` above it is an error, and the firing changes nothing on that pool.
    pub fn apply(&self, current: Bounds) -> Result<Bounds, String> {
        let max = self.max.unwrap_or(current.max);
        let min = self.min.unwrap_or(current.min.min(max));
        let target = self
            .target
            .unwrap_or(current.target.clamp(min.min(max), max));
        if min > max {
            return Err(format!(
                "min {min} would be above the pool's max {max}; name max in the schedule's set to raise it"
            ));
        }
        if target < min || target > max {
            return Err(format!(
                "target {target} would be outside [min {min}, max {max}]"
            ));
        }
        Ok(Bounds { min, max, target })
    }

    /// `max=0`, `min=2 target=4`: for messages.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("min", self.min),
            ("max", self.max),
            ("target", self.target),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
        parts.join(" ")
    }
}

impl ScheduleSpec {
    /// Parses a schedule from JSON, naming the offending field.
    pub fn from_json(bytes: &[u8]) -> Result<ScheduleSpec, SpecError> {
        from_json_named(bytes)
    }

    /// Checks everything serde cannot: the name, the target, the cron pattern (field `cron`),
    /// the time zone (field `timezone`) and the set.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_schedule_name(&self.name)?;
        match (&self.pool, &self.pool_tag) {
            (Some(pool), None) => {
                validate_name(pool).map_err(|e| SpecError::new("pool", e.message))?
            }
            (None, Some(tags)) => {
                if tags.is_empty() || tags.len() > MAX_TAGS {
                    return Err(SpecError::new(
                        "pool_tag",
                        format!(
                            "give 1 to {MAX_TAGS} tag pairs; a schedule applies to the pools that have all of them"
                        ),
                    ));
                }
                if tags.keys().any(String::is_empty) {
                    return Err(SpecError::new("pool_tag", "tag names cannot be empty"));
                }
            }
            (Some(_), Some(_)) => {
                return Err(SpecError::new(
                    "pool_tag",
                    "give either pool (one pool by name) or pool_tag (every pool with these tags), not both",
                ));
            }
            (None, None) => {
                return Err(SpecError::new(
                    "pool",
                    "give pool (one pool by name) or pool_tag (every pool with these tags)",
                ));
            }
        }
        Timing::new(&self.cron, &self.timezone)?;
        self.validate_set()
    }

    fn validate_set(&self) -> Result<(), SpecError> {
        let s = &self.set;
        if s.min.is_none() && s.max.is_none() && s.target.is_none() {
            return Err(SpecError::new(
                "set",
                "set at least one of min, max and target",
            ));
        }
        for (field, value) in [
            ("set.min", s.min),
            ("set.max", s.max),
            ("set.target", s.target),
        ] {
            if let Some(v) = value
                && v > MAX_POOL_SIZE
            {
                return Err(SpecError::new(
                    field,
                    format!("{v} is above the limit of {MAX_POOL_SIZE} nodes per pool"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (s.min, s.max)
            && min > max
        {
            return Err(SpecError::new(
                "set.min",
                format!("min {min} is above max {max}"),
            ));
        }
        if let Some(target) = s.target {
            if let Some(max) = s.max
                && target > max
            {
                return Err(SpecError::new(
                    "set.target",
                    format!("target {target} is above max {max}"),
                ));
            }
            if let Some(min) = s.min
                && target < min
            {
                return Err(SpecError::new(
                    "set.target",
                    format!("target {target} is below min {min}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this schedule sets the pool with this name and these tags.
    pub fn targets(&self, pool: &str, tags: &BTreeMap<String, String>) -> bool {
        match (&self.pool, &self.pool_tag) {
            (Some(name), _) => name == pool,
            (None, Some(want)) => want.iter().all(|(k, v)| tags.get(k) == Some(v)),
            (None, None) => false,
        }
    }
}

/// `[a-z][a-z0-9-]{0,62}`, not ending in `-`.
pub fn validate_schedule_name(name: &str) -> Result<(), SpecError> {
    let ok = name.len() <= MAX_SCHEDULE_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            "name",
            format!(
                "{name:?}: use 1 to {MAX_SCHEDULE_NAME_CHARS} lower-case letters, digits and '-', \
                 starting with a letter and not ending with '-'"
            ),
        ))
    }
}

/// A schedule's firing times: its cron pattern read in its time zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    tz: Tz,
}

/// Firings are searched from here when checking that a pattern fires at all: any pattern
/// without a year field that fires ever fires within 28 years of any date.
const REFERENCE: UnixSeconds = 946_684_800; // 2000-01-01T00:00:00Z

impl Timing {
    /// Parses the pattern (5 fields, or 6 with seconds first; names such as `MON-FRI` and
    /// nicknames such as `@daily` are accepted; a year field is not) and the IANA zone name.
    /// Errors name `cron` or `timezone`; a pattern that can never fire (`0 0 30 2 *`) is an
    /// error too.
    pub fn new(cron: &str, timezone: &str) -> Result<Timing, SpecError> {
        let fields = cron.split_whitespace().count();
        if !cron.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(SpecError::new(
                "cron",
                format!(
                    "{cron:?} has {fields} fields: give 5 (minute hour day-of-month month day-of-week) or 6 with seconds first"
                ),
            ));
        }
        crate::cron_fields::check(cron)
            .map_err(|part| SpecError::new("cron", format!("{cron:?}: {part}")))?;
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| {
                SpecError::new("cron", format!("{cron:?} is not a valid cron pattern: {e}"))
            })?;
        let tz = Tz::from_str(timezone).map_err(|_| {
            SpecError::new(
                "timezone",
                format!("{timezone:?} is not an IANA time zone name such as \"Europe/London\" or \"UTC\""),
            )
        })?;
        let timing = Timing { cron: parsed, tz };
        if timing.next_after(REFERENCE).is_none() {
            return Err(SpecError::new(
                "cron",
                format!("{cron:?} never fires (no such date)"),
            ));
        }
        Ok(timing)
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    fn local(&self, t: UnixSeconds) -> Option<DateTime<Tz>> {
        Utc.timestamp_opt(t, 0)
            .single()
            .map(|u| u.with_timezone(&self.tz))
    }

    /// The latest firing at or before `now`.
    pub fn latest_at_or_before(&self, now: UnixSeconds) -> Option<UnixSeconds> {
        let at = self.local(now)?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: UnixSeconds) -> Option<UnixSeconds> {
        let at = self.local(after)?;
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The firing owed at `now`: the latest at or before `now`, if it is later than `floor`
    /// (the last firing applied, or when the schedule was defined). At most one, however long
    /// the daemon was away.
    pub fn due(&self, floor: UnixSeconds, now: UnixSeconds) -> Option<UnixSeconds> {
        self.latest_at_or_before(now).filter(|&t| t > floor)
    }

    /// `t` as RFC 3339 with the zone's offset then (`2026-03-29T03:00:00+01:00`).
    pub fn local_rfc3339(&self, t: UnixSeconds) -> String {
        self.local(t)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a wall-clock time in a zone; `earlier` picks the first of a repeated
    /// time.
    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, earlier: bool) -> UnixSeconds {
        let r = tz.with_ymd_and_hms(y, mo, d, h, mi, 0);
        let t = if earlier { r.earliest() } else { r.latest() };
        t.unwrap_or_else(|| panic!("{y}-{mo}-{d} {h}:{mi} does not exist in {tz}"))
            .timestamp()
    }

    fn utc(text: &str) -> UnixSeconds {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    /// Every firing in [from, to], walking forward.
    fn firings(t: &Timing, from: UnixSeconds, to: UnixSeconds) -> Vec<UnixSeconds> {
        let mut out = Vec::new();
        let mut cursor = from - 1;
        while let Some(next) = t.next_after(cursor) {
            if next > to {
                break;
            }
            out.push(next);
            cursor = next;
        }
        out
    }

    /// The backward search agrees with the forward one: from just before each firing, the
    /// latest is the previous firing; at each firing, that firing.
    fn assert_backward_agrees(t: &Timing, all: &[UnixSeconds]) {
        for w in all.windows(2) {
            assert_eq!(t.latest_at_or_before(w[1]), Some(w[1]), "at {}", w[1]);
            assert_eq!(
                t.latest_at_or_before(w[1] - 1),
                Some(w[0]),
                "before {}",
                w[1]
            );
            assert_eq!(t.due(w[0], w[1] - 1), None, "nothing owed between firings");
            assert_eq!(t.due(w[0], w[1]), Some(w[1]));
        }
    }

    const NY: Tz = chrono_tz::America::New_York;
    const LONDON: Tz = chrono_tz::Europe::London;

    #[test]
    fn spring_forward_fixed_time_in_the_skipped_hour_fires_once_after_the_gap() {
        // America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT; 02:30 does not exist.
        let t = Timing::new("30 2 * * *", "America/New_York").unwrap();
        let day_before = at(NY, 2026, 3, 7, 0, 0, true);
        let all = firings(&t, day_before, at(NY, 2026, 3, 10, 0, 0, true));
        assert_eq!(
            all,
            vec![
                utc("2026-03-07T07:30:00Z"), // 02:30 EST
                utc("2026-03-08T07:00:00Z"), // 03:00 EDT, the first instant after the gap
                utc("2026-03-09T06:30:00Z"), // 02:30 EDT
            ]
        );
        assert_eq!(t.local_rfc3339(all[1]), "2026-03-08T03:00:00-04:00");
        assert_backward_agrees(&t, &all);
        // A daemon that was down from before the gap until after it still owes that firing.
        assert_eq!(t.due(all[0], utc("2026-03-08T12:00:00Z")), Some(all[1]));
    }

    #[test]
    fn spring_forward_in_london_too() {
        // Europe/London, 2026-03-29: 01:00 GMT becomes 02:00 BST; 01:15 does not exist.
        let t = Timing::new("0 15 1 * * *", "Europe/London").unwrap();
        let all = firings(
            &t,
            at(LONDON, 2026, 3, 28, 0, 0, true),
            at(LONDON, 2026, 3, 30, 23, 0, true),
        );
        assert_eq!(
            all,
            vec![
                utc("2026-03-28T01:15:00Z"),
                utc("2026-03-29T01:00:00Z"), // 02:00 BST
                utc("2026-03-30T00:15:00Z"), // 01:15 BST
            ]
        );
        assert_backward_agrees(&t, &all);
    }

    #[test]
    fn fall_back_fixed_time_in_the_repeated_hour_fires_once() {
        // America/New_York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
        let t = Timing::new("30 1 * * *", "America/New_York").unwrap();
        let all = firings(
            &t,
            at(NY, 2026, 10, 31, 0, 0, true),
            at(NY, 2026, 11, 2, 23, 0, true),
        );
        assert_eq!(
            all,
            vec![
                utc("2026-10-31T05:30:00Z"), // 01:30 EDT
                utc("2026-11-01T05:30:00Z"), // 01:30 EDT, the first of the two
                utc("2026-11-02T06:30:00Z"), // 01:30 EST
            ]
        );
        assert_backward_agrees(&t, &all);
        // During the second 01:30 (EST) nothing more is owed.
        let second_half = at(NY, 2026, 11, 1, 1, 45, false);
        assert_eq!(second_half, utc("2026-11-01T06:45:00Z"));
        assert_eq!(t.latest_at_or_before(second_half), Some(all[1]));
        assert_eq!(t.due(all[1], second_half), None);
        assert_eq!(t.next_after(all[1]), Some(all[2]));
    }

    #[test]
    fn fall_back_in_london_fires_once() {
        // Europe/London, 2026-10-25: 02:00 BST becomes 01:00 GMT; 01:30 happens twice.
        let t = Timing::new("30 1 * * *", "Europe/London").unwrap();
        let all = firings(
            &t,
            at(LONDON, 2026, 10, 24, 12, 0, true),
            at(LONDON, 2026, 10, 26, 12, 0, true),
        );
        assert_eq!(
            all,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
        assert_backward_agrees(&t, &all);
    }

    #[test]
    fn interval_patterns_stay_evenly_spaced_across_both_transitions() {
        let t = Timing::new("*/15 * * * *", "America/New_York").unwrap();
        for (from, to, count) in [
            // Spring forward: 00:00-04:00 local is 3 real hours.
            (
                at(NY, 2026, 3, 8, 0, 0, true),
                at(NY, 2026, 3, 8, 4, 0, true),
                3 * 4 + 1,
            ),
            // Fall back: 00:00-03:00 local is 4 real hours; both 01:xx halves fire.
            (
                at(NY, 2026, 11, 1, 0, 0, true),
                at(NY, 2026, 11, 1, 3, 0, true),
                4 * 4 + 1,
            ),
        ] {
            let all = firings(&t, from, to);
            assert_eq!(all.len(), count, "{all:?}");
            assert!(all.windows(2).all(|w| w[1] - w[0] == 900), "{all:?}");
            assert_backward_agrees(&t, &all);
        }
    }

    #[test]
    fn hourly_pattern_skips_the_missing_hour_and_runs_both_repeated_ones() {
        let t = Timing::new("30 * * * *", "Europe/London").unwrap();
        let spring = firings(
            &t,
            at(LONDON, 2026, 3, 29, 0, 0, true),
            at(LONDON, 2026, 3, 29, 3, 0, true),
        );
        // 00:30 GMT, (01:30 does not exist), 02:30 BST: an hour apart in real time.
        assert_eq!(
            spring,
            vec![utc("2026-03-29T00:30:00Z"), utc("2026-03-29T01:30:00Z")]
        );
        let autumn = firings(
            &t,
            at(LONDON, 2026, 10, 25, 0, 0, true),
            at(LONDON, 2026, 10, 25, 2, 0, true),
        );
        // 00:30 BST, 01:30 BST, 01:30 GMT: an hour apart in real time.
        assert_eq!(
            autumn,
            vec![
                utc("2026-10-24T23:30:00Z"),
                utc("2026-10-25T00:30:00Z"),
                utc("2026-10-25T01:30:00Z"),
            ]
        );
        assert_backward_agrees(&t, &autumn);
    }

    #[test]
    fn catch_up_owes_only_the_most_recent_missed_firing() {
        // Weekdays at 20:00 London. Last applied: Monday 2026-11-23 20:00.
        let t = Timing::new("0 20 * * MON-FRI", "Europe/London").unwrap();
        let monday = utc("2026-11-23T20:00:00Z");
        // Down until Thursday 23:00: only Thursday's firing is owed, not Tue-Wed's too.
        let thursday_late = utc("2026-11-26T23:00:00Z");
        assert_eq!(
            t.due(monday, thursday_late),
            Some(utc("2026-11-26T20:00:00Z"))
        );
        // Down across a weekend: Friday's.
        assert_eq!(
            t.due(monday, utc("2026-11-30T08:00:00Z")),
            Some(utc("2026-11-27T20:00:00Z"))
        );
        // Back before the next firing: nothing.
        assert_eq!(t.due(monday, utc("2026-11-24T19:59:59Z")), None);
        // A schedule defined after its latest firing owes nothing until the next one.
        let defined = utc("2026-11-24T21:00:00Z");
        assert_eq!(t.due(defined, utc("2026-11-24T22:00:00Z")), None);
        assert_eq!(t.next_after(defined), Some(utc("2026-11-25T20:00:00Z")));
        // In summer 20:00 London is 19:00 UTC: the zone's rules, not a frozen offset.
        assert_eq!(
            t.next_after(utc("2026-07-01T00:00:00Z")),
            Some(utc("2026-07-01T19:00:00Z"))
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let t = Timing::new("*/5 * * * * *", "UTC").unwrap();
        let base = utc("2026-01-01T00:00:00Z");
        assert_eq!(t.next_after(base), Some(base + 5));
        assert_eq!(t.latest_at_or_before(base + 7), Some(base + 5));
        let t = Timing::new("30 0 20 * * *", "UTC").unwrap();
        assert_eq!(t.next_after(base), Some(utc("2026-01-01T20:00:30Z")));
    }

    #[test]
    fn bad_patterns_and_zones_name_their_field() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* 25 * * *",
            "nonsense",
            "0 0 30 2 *",
        ] {
            let err = Timing::new(bad, "UTC").unwrap_err();
            assert_eq!(err.field, "cron", "{bad:?}: {err}");
        }
        for bad in ["Mars/Olympus", "", "europe/london ", "+01:00"] {
            let err = Timing::new("0 20 * * *", bad).unwrap_err();
            assert_eq!(err.field, "timezone", "{bad:?}: {err}");
        }
        assert!(Timing::new("0 20 * * MON-FRI", "Europe/London").is_ok());
        assert!(Timing::new("@daily", "UTC").is_ok());
    }

    fn spec(json: serde_json::Value) -> Result<ScheduleSpec, SpecError> {
        let s = ScheduleSpec::from_json(json.to_string().as_bytes())?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn specs_validate_naming_the_field() {
        let ok = serde_json::json!({"name": "gpu-night", "pool": "maya", "cron": "0 20 * * MON-FRI",
                                    "timezone": "Europe/London", "set": {"max": 0}});
        assert!(spec(ok.clone()).is_ok());
        let field = |patch: serde_json::Value| {
            let mut v = ok.clone();
            for (k, val) in patch.as_object().unwrap() {
                if val.is_null() {
                    v.as_object_mut().unwrap().remove(k);
                } else {
                    v[k] = val.clone();
                }
            }
            spec(v).err().map(|e| e.field)
        };
        let f = |s: &str| Some(s.to_string());
        assert_eq!(field(serde_json::json!({"cron": "0 25 * * *"})), f("cron"));
        assert_eq!(
            field(serde_json::json!({"timezone": "Nowhere/Land"})),
            f("timezone")
        );
        assert_eq!(field(serde_json::json!({"name": "Bad Name"})), f("name"));
        assert_eq!(field(serde_json::json!({"pool": "Bad"})), f("pool"));
        assert_eq!(field(serde_json::json!({"pool": null})), f("pool"));
        assert_eq!(
            field(serde_json::json!({"pool_tag": {"show": "x"}})),
            f("pool_tag")
        );
        assert_eq!(
            field(serde_json::json!({"pool": null, "pool_tag": {}})),
            f("pool_tag")
        );
        assert_eq!(
            field(serde_json::json!({"pool": null, "pool_tag": {"show": "x"}})),
            None
        );
        assert_eq!(field(serde_json::json!({"set": {}})), f("set"));
        assert_eq!(field(serde_json::json!({"set": {"max": -1}})), f("set.max"));
        assert_eq!(
            field(serde_json::json!({"set": {"maximum": 1}})),
            f("set.maximum")
        );
        assert_eq!(
            field(serde_json::json!({"set": {"max": 9000}})),
            f("set.max")
        );
        assert_eq!(
            field(serde_json::json!({"set": {"min": 3, "max": 2}})),
            f("set.min")
        );
        assert_eq!(
            field(serde_json::json!({"set": {"target": 3, "max": 2}})),
            f("set.target")
        );
        assert_eq!(
            field(serde_json::json!({"set": {"target": 1, "min": 2}})),
            f("set.target")
        );
        assert_eq!(field(serde_json::json!({"cron": null})), f("cron"));
        assert_eq!(field(serde_json::json!({"extra": 1})), f("extra"));
    }

    #[test]
    fn tag_selectors_need_every_pair() {
        let s = spec(serde_json::json!({"name": "n", "pool_tag": {"show": "ep101", "gpu": "yes"},
                                        "cron": "0 20 * * *", "timezone": "UTC", "set": {"max": 0}}))
        .unwrap();
        let tags = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(s.targets("a", &tags(&[("show", "ep101"), ("gpu", "yes"), ("x", "y")])));
        assert!(!s.targets("a", &tags(&[("show", "ep101")])));
        assert!(!s.targets("a", &tags(&[("show", "ep102"), ("gpu", "yes")])));
    }

    #[test]
    fn sets_move_unnamed_bounds_as_little_as_needed() {
        let b = |min, max, target| Bounds { min, max, target };
        let set = |min, max, target| ScheduleSet { min, max, target };
        // Night: max 0 takes min and target down with it.
        assert_eq!(set(None, Some(0), None).apply(b(2, 10, 5)), Ok(b(0, 0, 0)));
        // Morning: max back up; target is not raised by itself.
        assert_eq!(set(None, Some(10), None).apply(b(0, 0, 0)), Ok(b(0, 10, 0)));
        // Warm 10 nodes.
        assert_eq!(
            set(None, None, Some(10)).apply(b(0, 20, 0)),
            Ok(b(0, 20, 10))
        );
        // A raised min drags the target up.
        assert_eq!(set(Some(4), None, None).apply(b(0, 20, 1)), Ok(b(4, 20, 4)));
        // A named min or target above an unnamed max changes nothing.
        assert!(set(Some(5), None, None).apply(b(0, 3, 0)).is_err());
        assert!(set(None, None, Some(5)).apply(b(0, 3, 0)).is_err());
        assert_eq!(
            set(Some(1), Some(8), Some(2)).apply(b(0, 3, 0)),
            Ok(b(1, 8, 2))
        );
        assert_eq!(set(None, Some(0), None).describe(), "max=0");
        assert_eq!(set(Some(1), None, Some(2)).describe(), "min=1 target=2");
    }
}
