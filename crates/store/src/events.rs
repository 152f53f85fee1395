//! The `events` table: the append-only audit log behind `GET /v1/events` (who asked what,
//! what was done, what failed). Rows are never changed; old ones are trimmed to a bound. Ids
//! are never reused, so `after=ID` paging stays correct across trims. Reads filter by pool
//! (index `events_pool`, migration 0010) and time, oldest first or the newest N.

use rb_core::UnixSeconds;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError, now, parse_json, to_i64, to_json};

/// An event to append; the store stamps it with the current time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Dotted, low-cardinality: `"pool.created"`, `"vm.create"`, `"arm.error"`...
    pub kind: String,
    pub pool: Option<String>,
    pub node: Option<String>,
    /// The API token's name, or `"controller"`.
    pub actor: String,
    pub message: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub at: UnixSeconds,
    pub kind: String,
    pub pool: Option<String>,
    pub node: Option<String>,
    pub actor: String,
    pub message: String,
    pub data: serde_json::Value,
}

/// Which events to read: every filter is optional and they combine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventQuery {
    /// Only ids greater than this.
    pub after: Option<i64>,
    /// Only ids smaller than this (paging back through history).
    pub before: Option<i64>,
    /// Only this pool's events.
    pub pool: Option<String>,
    /// Only events at or after this time.
    pub since: Option<UnixSeconds>,
    pub limit: u32,
    /// The newest `limit` that match (still returned oldest first) rather than the oldest.
    pub newest: bool,
}

fn from_row(row: &SqliteRow) -> Result<Event, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(Event {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        pool: row.try_get("pool")?,
        node: row.try_get("node")?,
        actor: row.try_get("actor")?,
        message: row.try_get("message")?,
        data: parse_json("events.data", &data)?,
    })
}

impl Store {
    /// Appends an event stamped with the current time; returns its id.
    pub async fn append_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO events (at, kind, pool, node, actor, message, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now())
        .bind(&event.kind)
        .bind(&event.pool)
        .bind(&event.node)
        .bind(&event.actor)
        .bind(&event.message)
        .bind(to_json(&event.data))
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    /// Up to `limit` events with id greater than `after_id`, in ascending id order
    /// (`after_id = 0` starts from the oldest kept).
    pub async fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, kind, pool, node, actor, message, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Events matching `q`, always in ascending id order: the oldest `q.limit` that match,
    /// or with `q.newest` the newest `q.limit` (so a client prints the tail of the log the
    /// way it reads, top to bottom).
    pub async fn events(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at, kind, pool, node, actor, message, data FROM events WHERE 1 = 1",
        );
        if q.after.is_some() {
            sql.push_str(" AND id > ?");
        }
        if q.before.is_some() {
            sql.push_str(" AND id < ?");
        }
        if q.pool.is_some() {
            sql.push_str(" AND pool = ?");
        }
        if q.since.is_some() {
            sql.push_str(" AND at >= ?");
        }
        sql.push_str(if q.newest {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id LIMIT ?"
        });
        let mut query = sqlx::query(&sql);
        if let Some(after) = q.after {
            query = query.bind(after);
        }
        if let Some(before) = q.before {
            query = query.bind(before);
        }
        if let Some(pool) = &q.pool {
            query = query.bind(pool);
        }
        if let Some(since) = q.since {
            query = query.bind(since);
        }
        let rows = query.bind(i64::from(q.limit)).fetch_all(&self.pool).await?;
        let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        if q.newest {
            events.reverse();
        }
        Ok(events)
    }

    /// Deletes all but the `keep_last` newest events; returns how many were deleted.
    pub async fn trim_events(&self, keep_last: u64) -> Result<u64, StoreError> {
        let keep_last = to_i64("events to keep", keep_last)?;
        // The newest event beyond the bound and everything older go; ids only grow.
        let done = sqlx::query(
            "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
        )
        .bind(keep_last)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}
