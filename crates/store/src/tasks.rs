//! The `task_status` table: the last typed status each background task reported, as JSON, so
//! `GET /v1/status` can show it (and so it survives a restart).

use rb_core::UnixSeconds;

use crate::{Store, StoreError, now, parse_json, to_json};

impl Store {
    /// Stores the task's latest status, stamped with the current time.
    pub async fn put_task_status(
        &self,
        name: &str,
        status: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO task_status (name, status, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(to_json(status))
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Adds one to the integer `field` of the task's status object (creating the status
    /// `{field: 1}` if there is none), in one statement; returns the new count. For counters
    /// the controller keeps across restarts, such as a VM pool's Spot evictions.
    pub async fn bump_task_counter(&self, name: &str, field: &str) -> Result<u64, StoreError> {
        let path = format!("$.{field}");
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO task_status (name, status, updated_at) VALUES (?, json_object(?, 1), ?) \
             ON CONFLICT (name) DO UPDATE SET \
             status = json_set(status, ?, coalesce(json_extract(status, ?), 0) + 1), \
             updated_at = excluded.updated_at \
             RETURNING json_extract(status, ?)",
        )
        .bind(name)
        .bind(field)
        .bind(now())
        .bind(&path)
        .bind(&path)
        .bind(&path)
        .fetch_one(&self.writer)
        .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Forgets a task's status (a request it recorded that was carried out).
    pub async fn delete_task_status(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM task_status WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Every task's latest status and when it was stored, ordered by task name.
    pub async fn task_statuses(
        &self,
    ) -> Result<Vec<(String, serde_json::Value, UnixSeconds)>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, status, updated_at FROM task_status ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(name, status, at)| Ok((name, parse_json("task_status.status", &status)?, at)))
            .collect()
    }
}
