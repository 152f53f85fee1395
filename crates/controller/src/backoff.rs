//! Per-pool backoff of writes after failures (issue 13: a missing subnet made 6,241 VM PUTs
//! in ten minutes). A write that fails with a permanent error (`ArmError::is_permanent`: a
//! missing subnet, a refused permission, an image or VM size that does not exist) puts the
//! pool in a `Blocked` condition naming the code and what to fix, and holds further writes of
//! that kind for 10 s, doubling up to `[controller] error_backoff_max_seconds`; other
//! failures (5xx, 429 beyond the pipeline's retries, timeouts) hold them the same way up to
//! [`TRANSIENT_MAX_SECONDS`], as `BackingOff`. The kinds are VM creates, starts, deallocates
//! and deletes, and Batch pool creates, resizes, stop-resizes and deletes ([`backs_off`]),
//! each with its own streak: failing deletes do not stop scale-up, and a pool being deleted
//! is still deleted, with backoff. Capacity and quota refusals of VM writes are not here: they
//! mark the offering unavailable and the planner moves to the next size. Once a hold lapses
//! one write of the kind is made (a probe), not all that are wanted. A success ends the
//! streak; an admin's change of the pool (its generation) retries at once.
//!
//! Streaks are kept in the store (`pool_backoff`), written on every transition (a failure
//! that grows the streak, the success that ends it, an admin's change that opens it) and read
//! at start: a restarted (or crash-looping) daemon holds what the previous one held and makes
//! no extra attempt, and the condition keeps its `since`. The API's what-if plan reads the
//! same rows to show what is held.
//!
//! The clock is the controller's: the planner gets a [`Hold`] and stays pure.

use std::sync::atomic::Ordering;

use azure::ArmError;
use rb_core::{ActionKind, Hold, UnixSeconds};
use serde_json::json;

use crate::{Shared, now};

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

/// A pool's failure streak for one kind of write: the store's row, which the controller
/// keeps in memory (one lock orders transitions) and writes through on every transition, so
/// a restarted daemon holds what this one held.
pub(crate) type PoolBackoff = store::BackoffRow;

/// The in-memory map's key: the pool and the kind of write.
pub(crate) type Key = (String, ActionKind);

/// The kinds of write whose failures hold further writes of that kind. Forgetting a node
/// makes no ARM call; removing Batch nodes and rotating the enrollment token are left to their
/// own retries.
pub(crate) fn backs_off(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::Create
            | ActionKind::Start
            | ActionKind::Deallocate
            | ActionKind::Delete
            | ActionKind::CreatePool
            | ActionKind::ResizePool
            | ActionKind::DeletePool
            | ActionKind::StopResize
    )
}

/// What a failure did to the streak.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Another write of an attempt already counted: nothing new.
    SameAttempt,
    /// The streak grew; `blocked` when the pool newly became Blocked (or with another code).
    Failed { hold_seconds: u64, blocked: bool },
}

/// Azure's message as a clause that more words follow (`"...not found."` then `"; fix: ..."`
/// read as `"...not found; fix: ..."`, not `"...found.; fix:"`).
fn clause(message: &str) -> &str {
    message.trim_end().trim_end_matches('.')
}

/// The condition a failure of `kind` shows: `Blocked` naming the code and the fix for a
/// permanent one, `BackingOff` otherwise.
pub(crate) fn condition(kind: ActionKind, e: &ArmError) -> String {
    let words = rb_core::write_words(kind);
    if e.is_permanent() {
        let what = match kind {
            // The words the pool showed before other writes backed off too.
            ActionKind::Create => String::new(),
            _ => format!("{words} fails with "),
        };
        match e.fix_hint() {
            Some(h) => format!(
                "Blocked: {what}{}: {}; fix: {h}",
                e.code,
                clause(&e.message)
            ),
            None => format!("Blocked: {what}{}: {}", e.code, e.message),
        }
    } else {
        format!(
            "BackingOff: {words}s are failing ({}: {}); retrying with backoff",
            e.code, e.message
        )
    }
}

/// Records a failed write of `kind` at `now` (`r` in [0, 1) for jitter).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_failure(
    entry: &mut Option<PoolBackoff>,
    pool: &str,
    kind: ActionKind,
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
        // Writes dispatched together fail together: one attempt.
        if permanent && !b.permanent {
            b.permanent = true;
            b.code = code.to_string();
            b.condition = condition;
            b.since = now;
            return Transition::Failed {
                hold_seconds: 0,
                blocked: true,
            };
        }
        return Transition::SameAttempt;
    }
    let (streak, was_blocked, old_code, since) = match entry {
        // The condition's type stays: so does its since.
        Some(b) if b.permanent == permanent => (b.streak + 1, b.permanent, b.code.clone(), b.since),
        Some(b) => (b.streak + 1, b.permanent, b.code.clone(), now),
        None => (1, false, String::new(), now),
    };
    let cap = if permanent {
        cap
    } else {
        cap.min(TRANSIENT_MAX_SECONDS)
    };
    let hold_seconds = jittered(delay(streak, cap), r);
    *entry = Some(PoolBackoff {
        pool: pool.to_string(),
        kind,
        streak,
        until: now + i64::try_from(hold_seconds).unwrap_or(i64::MAX / 2),
        permanent,
        code: code.to_string(),
        condition,
        generation,
        open: false,
        since,
    });
    Transition::Failed {
        hold_seconds,
        blocked: permanent && (!was_blocked || old_code != code),
    }
}

/// Fills the in-memory streaks from the store, once per process (before the first
/// activation plans): a restart keeps holding what was held, and the conditions keep their
/// `since`.
pub(crate) async fn load(sh: &Shared) {
    if sh.backoff_loaded.load(Ordering::Acquire) {
        return;
    }
    let _order = sh.backoff_writes.lock().await;
    if sh.backoff_loaded.load(Ordering::Acquire) {
        return;
    }
    match sh.store.list_backoffs(None).await {
        Ok(rows) => {
            let mut map = sh.backoff.lock().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                tracing::info!(pool = %row.pool, kind = ?row.kind, streak = row.streak, until = row.until, code = %row.code, "pool writes held since before the restart");
                map.insert((row.pool.clone(), row.kind), row);
            }
            sh.backoff_loaded.store(true, Ordering::Release);
        }
        Err(e) => {
            tracing::error!(error = %crate::chain(&e), "cannot read the pools' backoff; retrying next activation")
        }
    }
}

/// The holds of a pool's writes now: the one on VM creates (for the planner) and the others
/// (for [`rb_core::apply_holds`]). An admin's change of the pool since a failure opens the
/// hold at once, and is stored. Each hold's condition keeps the streak's `since`.
pub(crate) async fn holds(
    sh: &Shared,
    record: &store::PoolRecord,
    now: UnixSeconds,
) -> (Option<Hold>, Vec<(ActionKind, Hold)>) {
    let pool = &record.spec.name;
    let _order = sh.backoff_writes.lock().await;
    let mut changed = Vec::new();
    let mut create = None;
    let mut others = Vec::new();
    {
        let mut map = sh.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let mut since = sh.condition_since.lock().unwrap_or_else(|p| p.into_inner());
        for ((p, kind), b) in map.iter_mut() {
            if p != pool {
                continue;
            }
            if b.reopen(record.generation, now) {
                changed.push(b.clone());
            }
            // A condition that (re)appears shows when its streak's type began, also after a
            // restart.
            let kind_of = rb_core::Condition::parse(&b.condition, None).kind;
            since.entry((pool.clone(), kind_of)).or_insert(b.since);
            let hold = b.hold_at(record.generation, now);
            if *kind == ActionKind::Create {
                create = Some(hold);
            } else {
                others.push((*kind, hold));
            }
        }
    }
    for row in changed {
        if let Err(e) = sh.store.put_backoff(&row).await {
            tracing::warn!(pool = %pool, error = %crate::chain(&e), "cannot store the pool's reopened backoff");
        }
    }
    others.sort_by_key(|(k, _)| format!("{k:?}"));
    (create, others)
}

/// A write of `kind` failed with `e` (not a capacity or quota refusal, which mark the
/// offering instead): the pool's writes of that kind back off, stored; the first failure of
/// a permanent kind (or of another code) is a `pool.blocked` event.
pub(crate) async fn failed(
    sh: &Shared,
    pool: &str,
    kind: ActionKind,
    generation: i64,
    e: &ArmError,
) {
    if !backs_off(kind) {
        return;
    }
    let permanent = e.is_permanent();
    let hint = e.fix_hint();
    let cap = sh.cfg.error_backoff_max.as_secs().max(1);
    let _order = sh.backoff_writes.lock().await;
    let (transition, row) = {
        let mut map = sh.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let key = (pool.to_string(), kind);
        let mut entry = map.remove(&key);
        let t = record_failure(
            &mut entry,
            pool,
            kind,
            permanent,
            &e.code,
            condition(kind, e),
            generation,
            cap,
            now(),
            fastrand::f64(),
        );
        let row = entry.clone();
        if let Some(b) = entry {
            map.insert(key, b);
        }
        (t, row)
    };
    let Transition::Failed {
        hold_seconds,
        blocked,
    } = transition
    else {
        return;
    };
    if let Some(row) = &row
        && let Err(err) = sh.store.put_backoff(row).await
    {
        tracing::warn!(pool, error = %crate::chain(&err), "cannot store the pool's backoff");
    }
    let words = rb_core::write_words(kind);
    tracing::warn!(pool, action = words, code = %e.code, permanent, hold_seconds, "writes of the pool held after a failure");
    if blocked {
        let _ = crate::execute::event(
            sh,
            "pool.blocked",
            Some(pool),
            None,
            &format!(
                "{words}s fail with {}: {}{}; retrying with backoff (up to {cap} s)",
                e.code,
                if hint.is_some() { clause(&e.message) } else { &e.message },
                hint.map(|h| format!("; fix: {h}")).unwrap_or_default()
            ),
            json!({"code": e.code, "hint": hint, "action": words, "hold_seconds": hold_seconds, "max_seconds": cap}),
        )
        .await;
    }
}

/// A write of `kind` succeeded: the pool's streak for that kind ends (stored), and a Blocked
/// pool is unblocked.
pub(crate) async fn succeeded(sh: &Shared, pool: &str, kind: ActionKind) {
    if !backs_off(kind) {
        return;
    }
    let _order = sh.backoff_writes.lock().await;
    let ended = sh
        .backoff
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(pool.to_string(), kind));
    let Some(b) = ended else {
        return;
    };
    if let Err(e) = sh.store.delete_backoff(pool, kind).await {
        tracing::warn!(pool, error = %crate::chain(&e), "cannot store the end of the pool's backoff");
    }
    if b.permanent {
        let words = rb_core::write_words(kind);
        let _ = crate::execute::event(
            sh,
            "pool.unblocked",
            Some(pool),
            None,
            &format!(
                "a {words} succeeded: {} is resolved after {} failed attempts",
                b.code, b.streak
            ),
            json!({"code": b.code, "attempts": b.streak, "action": words}),
        )
        .await;
    }
}

/// The pool is gone: its streaks go (the store's rows went with the pool).
pub(crate) fn forget(sh: &Shared, pool: &str) {
    sh.backoff
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(p, _), _| p != pool);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_condition_reads_as_one_sentence() {
        let e = ArmError::new(
            azure::ErrorKind::Operation,
            "InvalidResourceReference",
            "Resource /subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/nope was not found.",
        );
        let c = condition(ActionKind::Create, &e);
        assert!(
            c.starts_with("Blocked: InvalidResourceReference: Resource "),
            "{c}"
        );
        assert!(
            c.contains("was not found; fix: the subnet does not exist"),
            "{c}"
        );
        assert!(!c.contains(".;"), "{c}");
        let t = ArmError::new(
            azure::ErrorKind::Operation,
            "InternalServerError",
            "Try again.",
        );
        assert_eq!(
            condition(ActionKind::Create, &t),
            "BackingOff: creates are failing (InternalServerError: Try again.); retrying with backoff"
        );
    }

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
            "maya",
            ActionKind::Create,
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
                "maya",
                ActionKind::Create,
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
            "maya",
            ActionKind::Create,
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
            "maya",
            ActionKind::Create,
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
        let h = b.hold_at(3, 1031);
        assert_eq!((h.until, h.probe), (1070, Some(1)));
        // The streak's condition type began with the first failure; Blocked all along.
        assert_eq!(b.since, 1000);
        assert!(!b.reopen(3, 1031));
        let h = b.hold_at(4, 1031);
        assert_eq!((h.until, h.probe), (1031, None));
        assert!(b.reopen(4, 1031));
        assert_eq!((b.until, b.open, b.generation), (1031, true, 4));
        assert_eq!(b.hold_at(4, 1032).probe, None);
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
                "maya",
                ActionKind::Create,
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
