//! The `task_status` table: the last typed status each background task reported, as JSON, so
//! `GET /v1/status` can show it (and so it survives a restart). Rows are named and typed by
//! `rb_core::task`.

use rb_core::UnixSeconds;
use rb_core::task::{Task, TaskCounter, TaskKey, TaskRow, TaskStatus, TaskStatuses};

use crate::{Store, StoreError, now, parse_json, to_json};

impl Store {
    /// Stores the task's latest status, stamped with the current time.
    pub async fn put_task_status<S: TaskStatus>(
        &self,
        task: &Task<S>,
        status: &S,
    ) -> Result<(), StoreError> {
        // Through a JSON value, so the row's text is what it was when statuses were values
        // (keys in order). Serializing our own plain data types cannot fail.
        let status = serde_json::to_value(status).expect("serializing a task status to JSON");
        self.put_task_json(task.key(), &status).await
    }

    /// Stores a status as JSON of any shape, as an older version may have written it: for
    /// tests and fixtures. The daemon writes typed statuses ([`Store::put_task_status`]).
    #[doc(hidden)]
    pub async fn put_task_json(
        &self,
        key: &TaskKey,
        status: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO task_status (name, status, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(key.to_string())
        .bind(to_json(status))
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Adds one to the status's counter (creating the status `{field: 1}` if there is none),
    /// in one statement; returns the new count. For counters the controller keeps across
    /// restarts, such as a VM pool's Spot evictions.
    pub async fn bump_task_counter<S: TaskCounter>(
        &self,
        task: &Task<S>,
    ) -> Result<u64, StoreError> {
        let path = format!("$.{}", S::FIELD);
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO task_status (name, status, updated_at) VALUES (?, json_object(?, 1), ?) \
             ON CONFLICT (name) DO UPDATE SET \
             status = json_set(status, ?, coalesce(json_extract(status, ?), 0) + 1), \
             updated_at = excluded.updated_at \
             RETURNING json_extract(status, ?)",
        )
        .bind(task.key().to_string())
        .bind(S::FIELD)
        .bind(now())
        .bind(&path)
        .bind(&path)
        .bind(&path)
        .fetch_one(&self.writer)
        .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Forgets a task's status (a request it recorded that was carried out).
    pub async fn delete_task_status<S>(&self, task: &Task<S>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM task_status WHERE name = ?")
            .bind(task.key().to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Every task's latest status and when it was stored, ordered by row name. A row whose
    /// name no version wrote is left out.
    pub async fn task_statuses(&self) -> Result<TaskStatuses, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, status, updated_at FROM task_status ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, status, updated_at) in rows {
            let Some(key) = TaskKey::parse(&name) else {
                continue;
            };
            out.push(TaskRow {
                key,
                status: parse_json("task_status.status", &status)?,
                updated_at,
            });
        }
        Ok(TaskStatuses::new(out))
    }

    /// One task's typed status and when it was stored; `None` if there is none, or if the
    /// row does not read as the type (a shape no version of it wrote).
    pub async fn task_status<S: TaskStatus>(
        &self,
        task: &Task<S>,
    ) -> Result<Option<(S, UnixSeconds)>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT status, updated_at FROM task_status WHERE name = ?")
                .bind(task.key().to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(status, at)| Some((serde_json::from_str(&status).ok()?, at))))
    }
}
