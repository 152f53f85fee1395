//! The `pools` table: desired state, one row per pool.
//!
//! A pool's `generation` goes up on every change of its spec or target (and when it is marked
//! for deletion), so the controller and the API can tell that desired state moved. Its
//! `next_index` is the next free node index: node names (`{pool}-{index:05}`) are reserved
//! with [`Store::reserve_node_indexes`] and never reused, even after the node is gone.

use rb_core::{PoolSpec, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError, now, parse_json, to_i64, to_json};

/// A pool as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRecord {
    pub spec: PoolSpec,
    /// 1 at creation; bumped on every change of spec or target, and when deletion starts.
    pub generation: i64,
    /// Deletion requested: the pool drains to zero resources, then [`Store::remove_pool`].
    pub deleting: bool,
    /// The next free node index (the first is 1).
    pub next_index: u64,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

const COLUMNS: &str = "spec, generation, deleting, next_index, created_at, updated_at";

fn from_row(row: &SqliteRow) -> Result<PoolRecord, StoreError> {
    let spec: String = row.try_get("spec")?;
    let next_index: i64 = row.try_get("next_index")?;
    Ok(PoolRecord {
        spec: parse_json("pools.spec", &spec)?,
        generation: row.try_get("generation")?,
        deleting: row.try_get("deleting")?,
        next_index: u64::try_from(next_index).map_err(|_| {
            StoreError::Corrupt(format!("pools.next_index {next_index} is negative"))
        })?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn pool_what(name: &str) -> String {
    format!("pool {name:?}")
}

impl Store {
    /// Stores a new pool at generation 1 with `next_index` 1.
    ///
    /// Errors: [`StoreError::Conflict`] if a pool of that name exists (even one being deleted).
    /// The spec is stored as given: validating it is the caller's job.
    pub async fn create_pool(&self, spec: &PoolSpec) -> Result<PoolRecord, StoreError> {
        let at = now();
        let sql = format!(
            "INSERT INTO pools (name, spec, generation, deleting, next_index, created_at, updated_at) \
             VALUES (?, ?, 1, 0, 1, ?, ?) RETURNING {COLUMNS}"
        );
        let result = sqlx::query(&sql)
            .bind(&spec.name)
            .bind(to_json(spec))
            .bind(at)
            .bind(at)
            .fetch_one(&self.writer)
            .await;
        match result {
            Ok(row) => from_row(&row),
            Err(e) if crate::error::is_unique_violation(&e) => Err(StoreError::conflict(format!(
                "{} already exists",
                pool_what(&spec.name)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the spec of the pool named `spec.name` and bumps its generation.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] if the pool is being deleted.
    pub async fn replace_pool(&self, spec: &PoolSpec) -> Result<PoolRecord, StoreError> {
        let sql = format!(
            "UPDATE pools SET spec = ?, generation = generation + 1, updated_at = ? \
             WHERE name = ? AND deleting = 0 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(to_json(spec))
            .bind(now())
            .bind(&spec.name)
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(self.why_not_updatable(&spec.name).await),
        }
    }

    /// Sets the pool's manual target (`spec.target`) and bumps its generation. The caller
    /// checks the bounds; the store does not.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] if the pool is being deleted.
    pub async fn set_target(&self, name: &str, target: u32) -> Result<PoolRecord, StoreError> {
        // One statement, so a concurrent replace_pool cannot be lost between a read and a write.
        let sql = format!(
            "UPDATE pools SET spec = json_set(spec, '$.target', ?), generation = generation + 1, \
             updated_at = ? WHERE name = ? AND deleting = 0 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(i64::from(target))
            .bind(now())
            .bind(name)
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(self.why_not_updatable(name).await),
        }
    }

    /// Marks the pool for deletion and bumps its generation. Idempotent: marking a pool that
    /// is already being deleted returns it unchanged.
    ///
    /// Errors: [`StoreError::NotFound`].
    pub async fn mark_pool_deleting(&self, name: &str) -> Result<PoolRecord, StoreError> {
        let sql = format!(
            "UPDATE pools SET deleting = 1, generation = generation + 1, updated_at = ? \
             WHERE name = ? AND deleting = 0 RETURNING {COLUMNS}"
        );
        if let Some(row) = sqlx::query(&sql)
            .bind(now())
            .bind(name)
            .fetch_optional(&self.writer)
            .await?
        {
            return from_row(&row);
        }
        self.get_pool(name)
            .await?
            .ok_or_else(|| StoreError::not_found(pool_what(name)))
    }

    /// Removes the pool, its inventory rows and its node requests, for good (its intents and
    /// events stay: they are history).
    ///
    /// Errors: [`StoreError::NotFound`].
    pub async fn remove_pool(&self, name: &str) -> Result<(), StoreError> {
        // Every statement writes, so the transaction holds the write lock from its first
        // statement on and never has to upgrade a read lock.
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM vms WHERE pool = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM requests WHERE pool = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM batch_pools WHERE pool = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM pools WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::not_found(pool_what(name)));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_pool(&self, name: &str) -> Result<Option<PoolRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM pools WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every pool, including those being deleted, ordered by name.
    pub async fn list_pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM pools ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Reserves `n` consecutive node indexes and returns the first; the pool's `next_index`
    /// moves past them, so no two callers ever get the same index and names are never reused.
    /// `n = 0` returns the current `next_index` and reserves nothing.
    ///
    /// Errors: [`StoreError::NotFound`].
    pub async fn reserve_node_indexes(&self, name: &str, n: u64) -> Result<u64, StoreError> {
        let n = to_i64("node index count", n)?;
        // A single UPDATE ... RETURNING: the read and the write are one atomic statement.
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE pools SET next_index = next_index + ? WHERE name = ? RETURNING next_index",
        )
        .bind(n)
        .bind(name)
        .fetch_optional(&self.writer)
        .await?;
        let next = next.ok_or_else(|| StoreError::not_found(pool_what(name)))?;
        u64::try_from(next - n)
            .map_err(|_| StoreError::Corrupt(format!("pools.next_index {next} is negative")))
    }

    /// Why an update guarded by `deleting = 0` touched no row.
    pub(crate) async fn why_not_updatable(&self, name: &str) -> StoreError {
        match self.get_pool(name).await {
            Ok(Some(_)) => StoreError::conflict(format!("{} is being deleted", pool_what(name))),
            Ok(None) => StoreError::not_found(pool_what(name)),
            Err(e) => e,
        }
    }
}
