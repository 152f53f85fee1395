//! The `unavailable_offerings` table: VM sizes (at a priority) that Azure refused for capacity
//! or quota, and until when the planner avoids them. Kept across restarts so a restarted
//! daemon does not hammer a size that just failed. Sizes are stored lower-cased (they compare
//! case-insensitively, as in Azure).

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
}
