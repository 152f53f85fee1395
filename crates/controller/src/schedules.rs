//! The scheduler: applies the firings of off-hours schedules to pools' `min`, `max` and
//! `target`, records an event per pool (actor: the schedule's name) and wakes the
//! reconciler, which does the rest as for any change of desired state (busy nodes are never
//! removed; a `max` of 0 deallocates nodes as they become idle).
//!
//! Like the reconciler it takes no input: each tick re-reads every schedule and asks the pure
//! [`rb_core::Timing::due`] which firing is owed now, so a tick on time, the first tick after
//! downtime (catch-up) and a tick after the wall clock jumped all follow the same rule: at
//! most one firing per schedule, the most recent, applied once ([`store::Store::record_firing`]
//! is guarded by the last firing recorded). Owed firings of different schedules are applied
//! oldest first, so a missed 20:00 "max 0" and a missed 07:30 "max 10" end at the morning's.
//!
//! Why not tokio-cron-scheduler (which issue 7 suggested): its jobs keep the UTC offset their
//! zone had when they were created (a `FixedOffset`) and compute every later tick in it, so a
//! 20:00 Europe/London job fires at 21:00 after the clocks change, and gaps and repeated hours
//! do not exist for it; and it has no notion of a firing missed while the process was down.
//! The firing times here come from `croner` (which tokio-cron-scheduler itself uses) read in
//! the IANA zone (chrono-tz), and one loop sleeps until the earliest next firing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::task::Task;
use rb_core::{Bounds, Timing, UnixSeconds};
use serde_json::json;
use store::{FiringOutcome, NewEvent, PoolBoundsUpdate, ScheduleRecord, Store, StoreError};
use tokio::sync::{Notify, watch};

use crate::{Error, chain};

/// Longest sleep between ticks, so a wall-clock jump is noticed within a minute.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Sleep after a tick that failed on the store.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// How often a firing is retried at once when a pool changed under it.
const MAX_ATTEMPTS: usize = 5;

pub use rb_core::task::TickReport;

pub struct Scheduler {
    store: Arc<Store>,
    wake: Arc<Notify>,
}

/// One firing to apply.
struct Owed {
    record: ScheduleRecord,
    timing: Timing,
    fired_at: UnixSeconds,
    /// Re-apply the current firing, only to these pools (the configuration file reset them).
    again: Option<HashSet<String>>,
}

impl Scheduler {
    /// `wake` is the reconciler's waker.
    pub fn new(store: Arc<Store>, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Applies every firing owed at `now`, oldest first, and returns what it did.
    ///
    /// `reset_pools` are pools the configuration file has just created or replaced (at
    /// start): a schedule that already applied its current firing to one of them applies it
    /// again to those pools, so a restart at 23:00 does not undo the 20:00 firing by
    /// re-reading the file.
    pub async fn tick(&self, now: UnixSeconds, reset_pools: &HashSet<String>) -> TickReport {
        let mut report = TickReport {
            at: now,
            ..Default::default()
        };
        let records = match self.store.list_schedules().await {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(chain(&Error::from(e)).to_string());
                return report;
            }
        };
        let pools = if reset_pools.is_empty() {
            Vec::new()
        } else {
            match self.store.list_pools().await {
                Ok(p) => p,
                Err(e) => {
                    report.errors.push(chain(&Error::from(e)).to_string());
                    return report;
                }
            }
        };
        let mut owed = Vec::new();
        for record in records {
            let timing = match Timing::new(&record.spec.cron, &record.spec.timezone) {
                Ok(t) => t,
                Err(e) => {
                    // Validated before it was stored; only a newer version's row gets here.
                    report
                        .errors
                        .push(format!("schedule {}: {e}", record.spec.name));
                    continue;
                }
            };
            if let Some(next) = timing.next_after(now) {
                report.next_firing = Some(report.next_firing.map_or(next, |n| n.min(next)));
            }
            if let Some(fired_at) = timing.due(record.floor(), now) {
                owed.push(Owed {
                    record,
                    timing,
                    fired_at,
                    again: None,
                });
                continue;
            }
            let latest = timing.latest_at_or_before(now);
            if latest.is_some() && latest == record.last_fired_at {
                let reset: HashSet<String> = pools
                    .iter()
                    .filter(|p| reset_pools.contains(&p.spec.name))
                    .filter(|p| record.spec.targets(&p.spec.name, &p.spec.tags))
                    .map(|p| p.spec.name.clone())
                    .collect();
                if !reset.is_empty() {
                    owed.push(Owed {
                        fired_at: latest.unwrap_or_default(),
                        record,
                        timing,
                        again: Some(reset),
                    });
                }
            }
        }
        owed.sort_by(|a, b| {
            (a.fired_at, &a.record.spec.name).cmp(&(b.fired_at, &b.record.spec.name))
        });
        for o in owed {
            match self.fire(&o).await {
                Ok(true) => report
                    .applied
                    .push((o.record.spec.name.clone(), o.fired_at)),
                Ok(false) => {}
                Err(e) => report.errors.push(format!(
                    "schedule {}: firing of {}: {}",
                    o.record.spec.name,
                    o.timing.local_rfc3339(o.fired_at),
                    chain(&e)
                )),
            }
        }
        report
    }

    /// Applies one firing; `Ok(false)` if it was not owed any more (deleted, or recorded).
    async fn fire(&self, o: &Owed) -> Result<bool, StoreError> {
        let spec = &o.record.spec;
        let when = format!(
            "{} ({} UTC)",
            o.timing.local_rfc3339(o.fired_at),
            rfc3339_utc(o.fired_at)
        );
        for _ in 0..MAX_ATTEMPTS {
            let pools = self.store.list_pools().await?;
            let mut updates = Vec::new();
            let mut changes = Vec::new();
            let mut refused = Vec::new();
            let mut matched = 0;
            for p in pools.iter().filter(|p| !p.deleting) {
                if !spec.targets(&p.spec.name, &p.spec.tags) {
                    continue;
                }
                if let Some(only) = &o.again
                    && !only.contains(&p.spec.name)
                {
                    continue;
                }
                matched += 1;
                let before = Bounds {
                    min: p.spec.min,
                    max: p.spec.max,
                    target: p.spec.target,
                };
                match spec.set.apply(before) {
                    Ok(after) if after == before => {}
                    Ok(after) => {
                        updates.push(PoolBoundsUpdate {
                            pool: p.spec.name.clone(),
                            generation: p.generation,
                            bounds: after,
                        });
                        changes.push((p.spec.name.clone(), before, after));
                    }
                    Err(why) => refused.push((p.spec.name.clone(), why)),
                }
            }
            let mut outcome = if matched == 0 {
                match &spec.pool {
                    Some(pool) => format!("pool {pool:?} does not exist (or is being deleted)"),
                    None => "no pool has these tags".to_string(),
                }
            } else if changes.is_empty() {
                "every pool was already there".to_string()
            } else {
                let names: Vec<&str> = changes.iter().map(|c| c.0.as_str()).collect();
                format!("set {} on {}", spec.set.describe(), names.join(", "))
            };
            for (pool, why) in &refused {
                outcome.push_str(&format!("; {pool} left alone: {why}"));
            }
            let again = o.again.is_some();
            match self
                .store
                .record_firing(&spec.name, o.fired_at, again, &updates, &outcome)
                .await?
            {
                FiringOutcome::PoolMoved => continue,
                FiringOutcome::NotOwed => return Ok(false),
                FiringOutcome::Applied => {}
            }
            let occasion = if again {
                "re-applied after the configuration file reset the pool"
            } else {
                "firing"
            };
            tracing::info!(schedule = %spec.name, fired_at = %when, %outcome, again, "schedule fired");
            for (pool, before, after) in &changes {
                self.event(
                    spec.name.as_str(),
                    "pool.scheduled",
                    Some(pool),
                    format!(
                        "schedule {} ({occasion} of {when}) set {}: min {}→{}, max {}→{}, target {}→{}",
                        spec.name,
                        spec.set.describe(),
                        before.min,
                        after.min,
                        before.max,
                        after.max,
                        before.target,
                        after.target
                    ),
                    json!({"schedule": spec.name, "fired_at": rfc3339_utc(o.fired_at),
                           "fired_at_local": o.timing.local_rfc3339(o.fired_at), "set": spec.set,
                           "before": before, "after": after, "again": again}),
                )
                .await;
            }
            for (pool, why) in &refused {
                self.event(
                    &spec.name,
                    "schedule.refused",
                    Some(pool),
                    format!("schedule {} ({occasion} of {when}) left {pool} alone: {why}", spec.name),
                    json!({"schedule": spec.name, "fired_at": rfc3339_utc(o.fired_at), "set": spec.set}),
                )
                .await;
            }
            // A firing that found every pool already there records no event (its outcome
            // is the schedule's `last_outcome`): a seconds pattern would flood the log.
            if matched == 0 {
                self.event(
                    &spec.name,
                    "schedule.fired",
                    spec.pool.as_deref(),
                    format!("schedule {} ({occasion} of {when}): {outcome}", spec.name),
                    json!({"schedule": spec.name, "fired_at": rfc3339_utc(o.fired_at), "set": spec.set}),
                )
                .await;
            }
            if !changes.is_empty() {
                self.wake.notify_one();
            }
            return Ok(true);
        }
        Err(StoreError::Conflict {
            what: format!(
                "the pools kept changing during {MAX_ATTEMPTS} attempts; the next tick tries again"
            ),
        })
    }

    /// Appends an event after a firing that is stored; a failure is logged, not returned.
    async fn event(
        &self,
        schedule: &str,
        kind: &str,
        pool: Option<&str>,
        message: String,
        data: serde_json::Value,
    ) {
        let event = NewEvent {
            kind: kind.into(),
            pool: pool.map(str::to_owned),
            node: None,
            actor: schedule.into(),
            message,
            data,
        };
        if let Err(e) = self.store.append_event(&event).await {
            tracing::error!(error = %chain(&e), kind, "cannot record the event of a schedule's firing");
        }
    }

    /// Ticks until `shutdown` flips to true: at every schedule's next firing, at most every
    /// minute, and whenever a schedule is created, replaced or deleted.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let changes = self.store.schedule_changes();
        loop {
            let report = self.tick(unix_now(), &HashSet::new()).await;
            for e in &report.errors {
                tracing::warn!(error = %e, "scheduler");
            }
            if !report.applied.is_empty() || !report.errors.is_empty() {
                let _ = self
                    .store
                    .put_task_status(&Task::scheduler(), &report)
                    .await;
            }
            let sleep = if report.errors.is_empty() {
                report.next_firing.map_or(MAX_SLEEP, until).min(MAX_SLEEP)
            } else {
                RETRY_AFTER_ERROR
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = changes.notified() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }
}

/// Now, in whole Unix seconds.
pub fn unix_now() -> UnixSeconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// From now until the start of second `t` (plus a few milliseconds, so the tick that wakes
/// reads a clock at or past `t`).
fn until(t: UnixSeconds) -> Duration {
    let target = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64) + Duration::from_millis(5);
    target
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

fn rfc3339_utc(t: UnixSeconds) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
