//! The `pool_backoff` and `pool_reusable_names` tables: the controller's backoff of a pool's
//! writes after failures, one row per pool and kind of write while its failure streak runs,
//! and the node names of failed creates that the next creates reuse. Kept across restarts so a
//! restarted daemon holds what the previous one held (no extra attempt, the condition keeps
//! its `since`), and so the API's what-if plan can show the hold. The controller decides
//! (streaks, delays, jitter); this module only keeps what it decided.

use rb_core::{ActionKind, Hold, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError, enum_str, parse_enum};

/// One pool's failure streak for one kind of write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffRow {
    pub pool: String,
    /// The kind of write held (`Create` for VM creates, `ResizePool` for Batch resizes...).
    pub kind: ActionKind,
    /// Failed attempts in a row (writes dispatched together that fail together count once).
    pub streak: u32,
    /// Writes of this kind are held until then.
    pub until: UnixSeconds,
    /// The last failure was permanent: the pool is `Blocked`.
    pub permanent: bool,
    /// The last failure's error code.
    pub code: String,
    /// `"Blocked: ..."` or `"BackingOff: ..."` (the pool conditions' text convention).
    pub condition: String,
    /// The pool's generation at the last failure (or when the hold was last opened): a
    /// change (scale, PUT) retries at once.
    pub generation: i64,
    /// The admin changed the pool since the last failure: the next attempt is a full one,
    /// not a probe.
    pub open: bool,
    /// When the condition's type (`Blocked`, `BackingOff`) appeared on the pool.
    pub since: UnixSeconds,
}

impl BackoffRow {
    /// The hold the planner gets for the pool now at `generation`, without changing the row:
    /// a pool changed since the last failure is not held (the admin's change retries at once)
    /// and gets no probe limit. The controller records the change ([`BackoffRow::reopen`]);
    /// the API's what-if only reads.
    pub fn hold_at(&self, generation: i64, now: UnixSeconds) -> Hold {
        let open = self.open || generation != self.generation;
        Hold {
            until: if generation != self.generation {
                self.until.min(now)
            } else {
                self.until
            },
            probe: if open { None } else { Some(1) },
            condition: self.condition.clone(),
        }
    }

    /// Records that the pool changed to `generation` at `now` (see [`BackoffRow::hold_at`]);
    /// true when the row changed and must be stored again.
    pub fn reopen(&mut self, generation: i64, now: UnixSeconds) -> bool {
        if generation == self.generation {
            return false;
        }
        self.generation = generation;
        self.until = self.until.min(now);
        self.open = true;
        true
    }
}

const COLUMNS: &str =
    "pool, kind, streak, until, permanent, code, condition, generation, open, since";

fn from_row(row: &SqliteRow) -> Result<BackoffRow, StoreError> {
    let kind: String = row.try_get("kind")?;
    let streak: i64 = row.try_get("streak")?;
    Ok(BackoffRow {
        pool: row.try_get("pool")?,
        kind: parse_enum("pool_backoff.kind", &kind)?,
        streak: u32::try_from(streak).unwrap_or(u32::MAX),
        until: row.try_get("until")?,
        permanent: row.try_get("permanent")?,
        code: row.try_get("code")?,
        condition: row.try_get("condition")?,
        generation: row.try_get("generation")?,
        open: row.try_get("open")?,
        since: row.try_get("since")?,
    })
}

impl Store {
    /// Records (or replaces) a pool's streak for one kind of write. A pool that no longer
    /// exists is not an error: the streak of a pool deleted meanwhile is moot.
    pub async fn put_backoff(&self, row: &BackoffRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO pool_backoff ({COLUMNS}) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS (SELECT 1 FROM pools WHERE name = ?1) \
             ON CONFLICT (pool, kind) DO UPDATE SET streak = excluded.streak, until = excluded.until, \
             permanent = excluded.permanent, code = excluded.code, condition = excluded.condition, \
             generation = excluded.generation, open = excluded.open, since = excluded.since"
        );
        sqlx::query(&sql)
            .bind(&row.pool)
            .bind(enum_str(&row.kind))
            .bind(i64::from(row.streak.max(1)))
            .bind(row.until)
            .bind(row.permanent)
            .bind(&row.code)
            .bind(&row.condition)
            .bind(row.generation)
            .bind(row.open)
            .bind(row.since)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends a pool's streak for one kind of write; true if there was one.
    pub async fn delete_backoff(&self, pool: &str, kind: ActionKind) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pool_backoff WHERE pool = ? AND kind = ?")
            .bind(pool)
            .bind(enum_str(&kind))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The running streaks, of one pool or of all, ordered by pool and kind.
    pub async fn list_backoffs(&self, pool: Option<&str>) -> Result<Vec<BackoffRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pool_backoff WHERE ?1 IS NULL OR pool = ?1 ORDER BY pool, kind"
        );
        let rows = sqlx::query(&sql).bind(pool).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Keeps the name of a VM create that failed definitely, for the pool's next creates.
    pub async fn add_reusable_name(&self, pool: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pool_reusable_names (pool, node) SELECT ?1, ?2 \
             WHERE EXISTS (SELECT 1 FROM pools WHERE name = ?1) ON CONFLICT DO NOTHING",
        )
        .bind(pool)
        .bind(node)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The pool's reusable names, lowest first.
    pub async fn reusable_names(&self, pool: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT node FROM pool_reusable_names WHERE pool = ? ORDER BY node")
            .bind(pool)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("node").map_err(StoreError::from))
            .collect()
    }

    /// Accepts a plan's creates, named as the plan named them ([`rb_core::PoolSnapshot`]):
    /// names of failed creates are taken out of the pool's reusable ones, and the fresh names
    /// — `{pool}-{index}` from `next_index` on, in order — reserve their indexes, in one
    /// transaction. Answers the names reused. A plan made from a snapshot whose `next_index`
    /// is no longer the pool's (another plan was accepted since) is refused as a conflict and
    /// reserves nothing: names are handed out once.
    pub async fn accept_creates(
        &self,
        pool: &str,
        next_index: u64,
        names: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        let mut reused = Vec::new();
        let mut fresh = 0u64;
        for name in names {
            let taken = sqlx::query("DELETE FROM pool_reusable_names WHERE pool = ? AND node = ?")
                .bind(pool)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if taken == 1 {
                reused.push(name.clone());
                continue;
            }
            let expected = rb_core::plan::node_name(pool, next_index + fresh);
            if *name != expected {
                return Err(StoreError::conflict(format!(
                    "the plan of pool {pool} names {name} where the next fresh name is {expected}"
                )));
            }
            fresh += 1;
        }
        if fresh > 0 {
            let moved = sqlx::query(
                "UPDATE pools SET next_index = next_index + ? WHERE name = ? AND next_index = ?",
            )
            .bind(crate::to_i64("node index count", fresh)?)
            .bind(pool)
            .bind(crate::to_i64("next_index", next_index)?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                return Err(StoreError::conflict(format!(
                    "the plan of pool {pool} was made from next_index {next_index}, which is no longer the pool's"
                )));
            }
        }
        tx.commit().await?;
        Ok(reused)
    }

    /// Takes names out of the pool's reusable ones (they are being created again).
    pub async fn take_reusable_names(
        &self,
        pool: &str,
        nodes: &[String],
    ) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for node in nodes {
            sqlx::query("DELETE FROM pool_reusable_names WHERE pool = ? AND node = ?")
                .bind(pool)
                .bind(node)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
