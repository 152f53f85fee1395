//! Per-pool backoff of creates after failures (issue 13: a missing subnet made 6,241 VM PUTs
//! in ten minutes). A create that fails with a permanent error (`ArmError::is_permanent`: a
//! missing subnet, a refused permission, an image that does not exist) puts the pool in a
//! `Blocked` condition naming the code and what to fix, and holds its creates for 10 s,
//! doubling up to `[controller] error_backoff_max_seconds`; other failures (5xx, 429 beyond
//! the pipeline's retries, timeouts) hold it the same way up to [`TRANSIENT_MAX_SECONDS`].
//! Capacity and quota errors are not here: they mark the offering unavailable and the
//! planner moves to the next size. Once a hold lapses the planner makes one create (a probe),
//! not the whole gap. A success ends the streak; an admin's change of the pool (its
//! generation) retries at once.
//!
//! The clock is the controller's: the planner gets a [`Hold`] and stays pure.

use rb_core::{Hold, UnixSeconds};

/// The first hold after a failure.
pub const FIRST_DELAY_SECONDS: u64 = 10;
/// The cap for failures that are not permanent.
pub const TRANSIENT_MAX_SECONDS: u64 = 120;

/// The hold after the `streak`-th failed attempt in a row (1 for the first), before jitter:
/// 10 s doubling, never above `cap`.
pub fn delay(streak: u32, cap: u64) -> u64 {
    let doublings = streak.saturating_sub(1).min(32);
    FIRST_DELAY_SECONDS
        .saturating_mul(1u64 << doublings)
        .min(cap)
        .max(1)
}

/// `delay` less up to a quarter, by `r` in [0, 1): pools that failed together do not all
/// retry in the same second, and the hold is never longer than the schedule (so the bounds
/// [`attempts_within`] computes hold).
pub fn jittered(delay: u64, r: f64) -> u64 {
    let cut = (delay as f64 * 0.25 * r.clamp(0.0, 1.0)) as u64;
    (delay - cut).max(1)
}

/// Attempts made within `window` seconds of the first failure when every one fails, with
/// the shortest holds jitter allows (the worst case): the first attempt, then one probe at
/// the end of each hold. Each attempt's own duration is ignored (it only makes fewer).
pub fn attempts_within(window: u64, cap: u64) -> u32 {
    let mut t = 0u64;
    let mut attempts = 1;
    for streak in 1.. {
        t += jittered(delay(streak, cap), 0.999_999);
        if t > window {
            break;
        }
        attempts += 1;
    }
    attempts
}

/// A pool's failure streak, in controller memory (a restart retries at once, which costs one
/// attempt).
#[derive(Debug, Clone)]
pub(crate) struct PoolBackoff {
    /// Failed attempts in a row (failures of creates dispatched together count once).
    pub streak: u32,
    /// Creates are held until then.
    pub until: UnixSeconds,
    /// The last failure was permanent (the pool is `Blocked`).
    pub permanent: bool,
    pub code: String,
    /// `"Blocked: ..."` or `"BackingOff: ..."`.
    pub condition: String,
    /// The pool's generation when it last failed: a change (scale, PUT) retries at once.
    pub generation: i64,
    /// The admin changed the pool since: the next attempt is a full one, not a probe.
    pub open: bool,
}

impl PoolBackoff {
    /// The hold the planner gets for a pool now at `generation`.
    pub fn hold(&mut self, generation: i64, now: UnixSeconds) -> Hold {
        if generation != self.generation {
            self.generation = generation;
            self.until = self.until.min(now);
            self.open = true;
        }
        Hold {
            until: self.until,
            probe: if self.open { None } else { Some(1) },
            condition: self.condition.clone(),
        }
    }
}

/// What a failure did to the streak.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Another create of an attempt already counted: nothing new.
    SameAttempt,
    /// The streak grew; `blocked` when the pool newly became Blocked (or with another code).
    Failed { hold_seconds: u64, blocked: bool },
}

/// Records a failed create at `now` (`r` in [0, 1) for jitter).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_failure(
    entry: &mut Option<PoolBackoff>,
    permanent: bool,
    code: &str,
    condition: String,
    generation: i64,
    cap: u64,
    now: UnixSeconds,
    r: f64,
) -> Transition {
    if let Some(b) = entry.as_mut()
        && b.until > now
    {
        // Creates dispatched together fail together: one attempt.
        if permanent && !b.permanent {
            b.permanent = true;
            b.code = code.to_string();
            b.condition = condition;
            return Transition::Failed {
                hold_seconds: 0,
                blocked: true,
            };
        }
        return Transition::SameAttempt;
    }
    let (streak, was_blocked, old_code) = match entry {
        Some(b) => (b.streak + 1, b.permanent, b.code.clone()),
        None => (1, false, String::new()),
    };
    let cap = if permanent {
        cap
    } else {
        cap.min(TRANSIENT_MAX_SECONDS)
    };
    let hold_seconds = jittered(delay(streak, cap), r);
    *entry = Some(PoolBackoff {
        streak,
        until: now + i64::try_from(hold_seconds).unwrap_or(i64::MAX / 2),
        permanent,
        code: code.to_string(),
        condition,
        generation,
        open: false,
    });
    Transition::Failed {
        hold_seconds,
        blocked: permanent && (!was_blocked || old_code != code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_doubles_from_ten_seconds_to_the_cap() {
        let got: Vec<u64> = (1..=9).map(|n| delay(n, 900)).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(delay(1000, 900), 900, "no overflow");
        assert_eq!(delay(3, 15), 15);
        // Jitter only shortens, by at most a quarter.
        for r in [0.0, 0.3, 0.999] {
            let d = jittered(640, r);
            assert!((480..=640).contains(&d), "{d}");
        }
        assert_eq!(jittered(1, 0.9), 1);
    }

    #[test]
    fn the_default_cap_bounds_attempts_in_the_issues_windows() {
        // Worst case (every hold cut by almost a quarter): attempts at 0, 8, 24, 55, 116 s in
        // the first 150 s; in ten minutes also 237 and 478 s.
        assert_eq!(attempts_within(150, 900), 5);
        assert_eq!(attempts_within(600, 900), 7);
        // Without jitter: 0, 10, 30, 70, 150 and 310 s.
        let mut t = 0;
        let times: Vec<u64> = (1..=5)
            .map(|n| {
                t += delay(n, 900);
                t
            })
            .collect();
        assert_eq!(times, [10, 30, 70, 150, 310]);
    }

    #[test]
    fn creates_failing_together_count_once_and_a_new_code_is_announced() {
        let mut entry = None;
        let t = record_failure(
            &mut entry,
            true,
            "InvalidResourceReference",
            "Blocked: x".into(),
            3,
            900,
            1000,
            0.0,
        );
        assert_eq!(
            t,
            Transition::Failed {
                hold_seconds: 10,
                blocked: true
            }
        );
        for _ in 0..4 {
            let t = record_failure(
                &mut entry,
                true,
                "InvalidResourceReference",
                "Blocked: x".into(),
                3,
                900,
                1001,
                0.0,
            );
            assert_eq!(t, Transition::SameAttempt);
        }
        let t = record_failure(
            &mut entry,
            true,
            "InvalidResourceReference",
            "Blocked: x".into(),
            3,
            900,
            1010,
            0.0,
        );
        assert_eq!(
            t,
            Transition::Failed {
                hold_seconds: 20,
                blocked: false
            }
        );
        let t = record_failure(
            &mut entry,
            true,
            "AuthorizationFailed",
            "Blocked: y".into(),
            3,
            900,
            1030,
            0.0,
        );
        assert_eq!(
            t,
            Transition::Failed {
                hold_seconds: 40,
                blocked: true
            }
        );
        let b = entry.as_mut().unwrap();
        assert_eq!(b.streak, 3);
        // Held, one probe after: unless the admin changed the pool, which retries at once
        // with the whole gap.
        let h = b.hold(3, 1031);
        assert_eq!((h.until, h.probe), (1070, Some(1)));
        let h = b.hold(4, 1031);
        assert_eq!((h.until, h.probe), (1031, None));
    }

    #[test]
    fn transient_failures_back_off_to_a_smaller_cap() {
        let mut entry = None;
        let mut now = 0;
        let mut last = 0;
        for _ in 0..10 {
            if let Transition::Failed {
                hold_seconds,
                blocked,
            } = record_failure(
                &mut entry,
                false,
                "InternalServerError",
                "BackingOff: x".into(),
                1,
                900,
                now,
                0.0,
            ) {
                assert!(!blocked);
                last = hold_seconds;
                now += i64::try_from(hold_seconds).unwrap();
            }
        }
        assert_eq!(last, TRANSIENT_MAX_SECONDS);
    }
}
