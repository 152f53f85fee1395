//! The `unavailable_offerings` table: VM sizes (at a priority) that Azure refused for capacity
//! or quota, and until when the planner avoids them. Kept across restarts so a restarted
//! daemon does not hammer a size that just failed. Sizes are stored lower-cased (they compare
//! case-insensitively, as in Azure).
//!
//! An admin can clear every mark at once ([`Store::clear_unavailable`], when capacity or quota
//! is back before the mark lapses): the subscription-wide rows are deleted, and the time of
//! the clear (`meta.offerings_cleared_at`) hides the per-pool marks of Batch pools recorded
//! before it (they live in `batch_pools.unavailable`, which only the controller writes).

use rb_core::{Offering, Unavailable, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError, enum_str, parse_enum};

fn from_row(row: &SqliteRow) -> Result<Unavailable, StoreError> {
    let size: String = row.try_get("size")?;
    let priority: String = row.try_get("priority")?;
    let reason: String = row.try_get("reason")?;
    Ok(Unavailable {
        offering: Offering::new(
            &size,
            parse_enum("unavailable_offerings.priority", &priority)?,
        ),
        reason: parse_enum("unavailable_offerings.reason", &reason)?,
        code: row.try_get("code")?,
        since: row.try_get("since")?,
        until: row.try_get("until")?,
    })
}

impl Store {
    /// Records (or replaces) the unavailability of an offering.
    pub async fn set_unavailable(&self, entry: &Unavailable) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO unavailable_offerings (size, priority, reason, code, since, until) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (size, priority) DO UPDATE SET reason = excluded.reason, code = excluded.code, \
             since = excluded.since, until = excluded.until",
        )
        .bind(entry.offering.size.to_lowercase())
        .bind(enum_str(&entry.offering.priority))
        .bind(enum_str(&entry.reason))
        .bind(&entry.code)
        .bind(entry.since)
        .bind(entry.until)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The offerings still unavailable at `now` (`until > now`), ordered by size and
    /// priority. Expired entries are deleted on the way.
    pub async fn list_unavailable(&self, now: UnixSeconds) -> Result<Vec<Unavailable>, StoreError> {
        sqlx::query("DELETE FROM unavailable_offerings WHERE until <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?;
        let rows = sqlx::query(
            "SELECT size, priority, reason, code, since, until FROM unavailable_offerings \
             WHERE until > ? ORDER BY size, priority",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Clears every unavailable mark recorded up to `now`: deletes the subscription-wide
    /// rows and records the time, so that [`Store::get_batch_state`] drops Batch pools' older
    /// marks. Returns how many marks were in force (both kinds).
    pub async fn clear_unavailable(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query("DELETE FROM unavailable_offerings WHERE until > ?")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM unavailable_offerings")
            .execute(&mut *tx)
            .await?;
        let since = self.offerings_cleared_at_in(&mut tx).await?;
        let rows: Vec<String> = sqlx::query_scalar("SELECT unavailable FROM batch_pools")
            .fetch_all(&mut *tx)
            .await?;
        let mut batch = 0u64;
        for text in rows {
            let marks: Vec<Unavailable> = crate::parse_json("batch_pools.unavailable", &text)?;
            batch += marks
                .iter()
                .filter(|u| u.until > now && since.is_none_or(|c| u.since > c))
                .count() as u64;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('offerings_cleared_at', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(now.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted + batch)
    }

    /// When an admin last cleared the unavailable marks, if ever.
    pub async fn offerings_cleared_at(&self) -> Result<Option<UnixSeconds>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.offerings_cleared_at_in(&mut conn).await
    }

    async fn offerings_cleared_at_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
    ) -> Result<Option<UnixSeconds>, StoreError> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'offerings_cleared_at'")
                .fetch_optional(conn)
                .await?;
        Ok(value.and_then(|v| v.parse().ok()))
    }
}
