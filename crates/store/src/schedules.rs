//! The `schedules` table: off-hours schedules, with the last firing each one applied.
//!
//! A firing is recorded together with the pool bounds it sets, in one transaction guarded by
//! each pool's generation ([`Store::record_firing`]): a firing is applied exactly once, and a
//! concurrent change of a pool (an admin's PUT) is never overwritten with stale values.
//!
//! Every change of the table notifies [`Store::schedule_changes`], so the scheduler
//! recomputes its next wake-up at once.

use rb_core::{Bounds, ScheduleSpec, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::is_unique_violation;
use crate::{Store, StoreError, now, parse_json, to_json};

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub spec: ScheduleSpec,
    /// When the current definition took effect: firings before it are not owed.
    pub since: UnixSeconds,
    /// The scheduled instant of the last firing applied.
    pub last_fired_at: Option<UnixSeconds>,
    /// When that firing was applied (later than `last_fired_at` after downtime).
    pub last_applied_at: Option<UnixSeconds>,
    /// What that firing did, for people.
    pub last_outcome: Option<String>,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

impl ScheduleRecord {
    /// The instant after which a firing is owed: the later of `since` and the last firing.
    pub fn floor(&self) -> UnixSeconds {
        self.last_fired_at.map_or(self.since, |f| f.max(self.since))
    }
}

/// What [`Store::put_schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Replaced,
    Unchanged,
}

/// New bounds for one pool, valid only if the pool is still at `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolBoundsUpdate {
    pub pool: String,
    pub generation: i64,
    pub bounds: Bounds,
}

/// What [`Store::record_firing`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringOutcome {
    /// The bounds and the firing are stored.
    Applied,
    /// A pool changed (or started deleting) since it was read: nothing stored; read again.
    PoolMoved,
    /// The schedule was deleted, or this firing (or a later one) is already recorded:
    /// nothing stored.
    NotOwed,
}

const COLUMNS: &str =
    "spec, since, last_fired_at, last_applied_at, last_outcome, created_at, updated_at";

fn from_row(row: &SqliteRow) -> Result<ScheduleRecord, StoreError> {
    let spec: String = row.try_get("spec")?;
    Ok(ScheduleRecord {
        spec: parse_json("schedules.spec", &spec)?,
        since: row.try_get("since")?,
        last_fired_at: row.try_get("last_fired_at")?,
        last_applied_at: row.try_get("last_applied_at")?,
        last_outcome: row.try_get("last_outcome")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn schedule_what(name: &str) -> String {
    format!("schedule {name:?}")
}

impl Store {
    /// Notified after every change of the `schedules` table.
    pub fn schedule_changes(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.schedules_changed.clone()
    }

    fn schedules_changed(&self) {
        // One listener (the scheduler); a permit is kept if it is not waiting right now.
        self.schedules_changed.notify_one();
    }

    /// Stores a new schedule, owing firings after now.
    ///
    /// Errors: [`StoreError::Conflict`] if a schedule of that name exists. The spec is stored
    /// as given: validating it is the caller's job.
    pub async fn create_schedule(&self, spec: &ScheduleSpec) -> Result<ScheduleRecord, StoreError> {
        let at = now();
        let sql = format!(
            "INSERT INTO schedules (name, spec, since, created_at, updated_at) VALUES (?, ?, ?, ?, ?) \
             RETURNING {COLUMNS}"
        );
        let result = sqlx::query(&sql)
            .bind(&spec.name)
            .bind(to_json(spec))
            .bind(at)
            .bind(at)
            .bind(at)
            .fetch_one(&self.writer)
            .await;
        match result {
            Ok(row) => {
                self.schedules_changed();
                from_row(&row)
            }
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(format!(
                "{} already exists",
                schedule_what(&spec.name)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the schedule, or replaces its spec if it differs (then it owes firings after
    /// now, and keeps its last firing). For the configuration file, applied at every start.
    pub async fn put_schedule(
        &self,
        spec: &ScheduleSpec,
    ) -> Result<(ScheduleRecord, PutOutcome), StoreError> {
        match self.get_schedule(&spec.name).await? {
            None => Ok((self.create_schedule(spec).await?, PutOutcome::Created)),
            Some(existing) if existing.spec == *spec => Ok((existing, PutOutcome::Unchanged)),
            Some(_) => {
                let at = now();
                let sql = format!(
                    "UPDATE schedules SET spec = ?, since = ?, updated_at = ? WHERE name = ? \
                     RETURNING {COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(to_json(spec))
                    .bind(at)
                    .bind(at)
                    .bind(&spec.name)
                    .fetch_optional(&self.writer)
                    .await?
                    .ok_or_else(|| StoreError::not_found(schedule_what(&spec.name)))?;
                self.schedules_changed();
                Ok((from_row(&row)?, PutOutcome::Replaced))
            }
        }
    }

    pub async fn get_schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every schedule, by name.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Removes the schedule and returns it. What it already set on pools stays.
    ///
    /// Errors: [`StoreError::NotFound`].
    pub async fn delete_schedule(&self, name: &str) -> Result<ScheduleRecord, StoreError> {
        let sql = format!("DELETE FROM schedules WHERE name = ? RETURNING {COLUMNS}");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.writer)
            .await?
            .ok_or_else(|| StoreError::not_found(schedule_what(name)))?;
        self.schedules_changed();
        from_row(&row)
    }

    /// Applies one firing of `schedule` (the instant `fired_at`): every pool update, and the
    /// schedule's last firing, in one transaction. Each pool must still be at the generation
    /// it was read at and not deleting; the firing must be later than the last one recorded,
    /// unless `again` (re-applying the current firing after the configuration file reset a
    /// pool). Otherwise nothing is stored and the outcome says why.
    pub async fn record_firing(
        &self,
        schedule: &str,
        fired_at: UnixSeconds,
        again: bool,
        updates: &[PoolBoundsUpdate],
        outcome: &str,
    ) -> Result<FiringOutcome, StoreError> {
        let at = now();
        // Every statement writes, so the transaction holds the write lock from the first one.
        let mut tx = self.writer.begin().await?;
        for u in updates {
            let done = sqlx::query(
                "UPDATE pools SET spec = json_set(spec, '$.min', ?, '$.max', ?, '$.target', ?), \
                 generation = generation + 1, updated_at = ? \
                 WHERE name = ? AND generation = ? AND deleting = 0",
            )
            .bind(i64::from(u.bounds.min))
            .bind(i64::from(u.bounds.max))
            .bind(i64::from(u.bounds.target))
            .bind(at)
            .bind(&u.pool)
            .bind(u.generation)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(FiringOutcome::PoolMoved);
            }
        }
        let done = sqlx::query(
            "UPDATE schedules SET last_fired_at = ?, last_applied_at = ?, last_outcome = ? \
             WHERE name = ? AND (? OR last_fired_at IS NULL OR last_fired_at < ?)",
        )
        .bind(fired_at)
        .bind(at)
        .bind(outcome)
        .bind(schedule)
        .bind(again)
        .bind(fired_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(FiringOutcome::NotOwed);
        }
        tx.commit().await?;
        Ok(FiringOutcome::Applied)
    }
}
