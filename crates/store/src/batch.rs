//! The `batch_pools` table: the controller's last observation of each `mode: batch` pool's
//! Azure Batch pool, and what the Batch planner needs to remember between activations (since
//! when the pool is empty, which resize errors were reported, offerings Batch refused).

use rb_core::{BatchPoolView, Unavailable, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::is_foreign_key_violation;
use crate::{Store, StoreError, parse_json, to_json};

/// One row of `batch_pools`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchState {
    pub pool: String,
    /// None until the first complete observation.
    pub observed_at: Option<UnixSeconds>,
    /// None when Azure has no such Batch pool.
    pub observed: Option<BatchPoolView>,
    pub account_endpoint: Option<String>,
    pub empty_since: Option<UnixSeconds>,
    pub reported_resize: Option<String>,
    pub unavailable: Vec<Unavailable>,
    pub preempted_total: u64,
}

const COLUMNS: &str = "pool, observed_at, observed, account_endpoint, empty_since, reported_resize, \
                       unavailable, preempted_total";

fn from_row(row: &SqliteRow) -> Result<BatchState, StoreError> {
    let observed: Option<String> = row.try_get("observed")?;
    let unavailable: String = row.try_get("unavailable")?;
    let preempted: i64 = row.try_get("preempted_total")?;
    Ok(BatchState {
        pool: row.try_get("pool")?,
        observed_at: row.try_get("observed_at")?,
        observed: observed
            .map(|o| parse_json("batch_pools.observed", &o))
            .transpose()?,
        account_endpoint: row.try_get("account_endpoint")?,
        empty_since: row.try_get("empty_since")?,
        reported_resize: row.try_get("reported_resize")?,
        unavailable: parse_json("batch_pools.unavailable", &unavailable)?,
        preempted_total: u64::try_from(preempted).unwrap_or_default(),
    })
}

impl Store {
    /// The Batch state of `pool`, if the controller wrote one. Unavailable marks recorded
    /// before an admin cleared them ([`Store::clear_unavailable`]) are left out.
    pub async fn get_batch_state(&self, pool: &str) -> Result<Option<BatchState>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM batch_pools WHERE pool = ?");
        let row = sqlx::query(&sql)
            .bind(pool)
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut state) = row.as_ref().map(from_row).transpose()? else {
            return Ok(None);
        };
        if let Some(cleared) = self.offerings_cleared_at().await? {
            state.unavailable.retain(|u| u.since > cleared);
        }
        Ok(Some(state))
    }

    /// Writes every column of the row (the controller is its only writer).
    ///
    /// Errors: [`StoreError::NotFound`] if the pool does not exist.
    pub async fn put_batch_state(&self, s: &BatchState) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO batch_pools ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (pool) DO UPDATE SET observed_at = excluded.observed_at, \
             observed = excluded.observed, account_endpoint = excluded.account_endpoint, \
             empty_since = excluded.empty_since, reported_resize = excluded.reported_resize, \
             unavailable = excluded.unavailable, preempted_total = excluded.preempted_total"
        );
        let result = sqlx::query(&sql)
            .bind(&s.pool)
            .bind(s.observed_at)
            .bind(s.observed.as_ref().map(to_json))
            .bind(&s.account_endpoint)
            .bind(s.empty_since)
            .bind(&s.reported_resize)
            .bind(to_json(&s.unavailable))
            .bind(i64::try_from(s.preempted_total).unwrap_or(i64::MAX))
            .execute(&self.writer)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found(format!("pool {:?}", s.pool)))
            }
            Err(e) => Err(e.into()),
        }
    }
}
