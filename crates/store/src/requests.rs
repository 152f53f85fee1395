//! The `requests` table: node requests (leases) from render managers. A request asks for
//! `count` nodes of a pool until `expires_at`, or until someone releases it.
//!
//! A request is *live* while it is not released and `expires_at > now`. The desired count of
//! a pool adds up its live rows when it is asked for ([`Store::live_request_sum`],
//! [`Store::desired`]), so an expired request stops counting without anyone writing anything,
//! and concurrent creates and releases can never lose or double-count one: each is a single
//! statement on its own row, and the sum is always computed from the rows.

use rb_core::{UnixSeconds, desired_count};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::is_foreign_key_violation;
use crate::{PoolRecord, Store, StoreError, to_i64};

/// A request create waiting for the batcher.
pub(crate) struct CreateJob {
    id: String,
    pool: String,
    count: i64,
    requester: String,
    job: Option<String>,
    created_by: String,
    owner: Option<String>,
    created_at: UnixSeconds,
    expires_at: UnixSeconds,
    /// Some(record) if inserted, None if the pool refused it (missing, deleting, max).
    reply: tokio::sync::oneshot::Sender<Result<Option<RequestRecord>, StoreError>>,
}

/// Most creates committed by one statement.
const MAX_BATCH: usize = 64;

/// Group commit: creates that arrive while one statement runs are inserted together by the
/// next, one multi-row guarded `INSERT ... SELECT` (the audit events come from the trigger).
/// Each row is checked against its pool on its own, so one refused request never affects
/// another; a batch the database rejects as a whole is retried row by row.
pub(crate) fn spawn_create_batcher(
    writer: sqlx::SqlitePool,
) -> tokio::sync::mpsc::Sender<CreateJob> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<CreateJob>(1024);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            match insert_batch(&writer, &jobs).await {
                Ok(mut rows) => {
                    for job in jobs {
                        let _ = job.reply.send(Ok(rows.remove(&job.id)));
                    }
                }
                Err(_) if jobs.len() > 1 => {
                    for job in jobs {
                        let one = insert_batch(&writer, std::slice::from_ref(&job)).await;
                        let _ = job.reply.send(one.map(|mut rows| rows.remove(&job.id)));
                    }
                }
                Err(e) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(clone_error(&e, &job.pool)));
                    }
                }
            }
        }
    });
    tx
}

fn clone_error(e: &StoreError, pool: &str) -> StoreError {
    match e {
        StoreError::Db(err) if is_foreign_key_violation(err) => {
            StoreError::not_found(format!("pool {pool:?}"))
        }
        other => StoreError::Corrupt(other.to_string()),
    }
}

async fn insert_batch(
    writer: &sqlx::SqlitePool,
    jobs: &[CreateJob],
) -> Result<std::collections::HashMap<String, RequestRecord>, StoreError> {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; jobs.len()].join(", ");
    let sql = format!(
        "INSERT INTO requests (id, pool, count, requester, job, created_at, expires_at, created_by, \
                               owner_token_sha256) \
         SELECT v.column1, p.name, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, \
                v.column9 \
         FROM (VALUES {values}) AS v, pools AS p \
         WHERE p.name = v.column2 AND p.deleting = 0 AND json_extract(p.spec, '$.max') >= v.column3 \
         RETURNING {COLUMNS}"
    );
    let mut q = sqlx::query(&sql);
    for j in jobs {
        q = q
            .bind(&j.id)
            .bind(&j.pool)
            .bind(j.count)
            .bind(&j.requester)
            .bind(&j.job)
            .bind(j.created_at)
            .bind(j.expires_at)
            .bind(&j.created_by)
            .bind(&j.owner);
    }
    let rows = q.fetch_all(writer).await?;
    let mut out = std::collections::HashMap::new();
    for row in &rows {
        let r = from_row(row)?;
        out.insert(r.id.clone(), r);
    }
    Ok(out)
}

/// One node request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// UUID v4, lower-case and hyphenated.
    pub id: String,
    pub pool: String,
    pub count: u32,
    /// Who asked: the caller's choice, by default its token's name.
    pub requester: String,
    /// The render job it is for, if the caller said.
    pub job: Option<String>,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub released_at: Option<UnixSeconds>,
    /// The token name that released it.
    pub released_by: Option<String>,
    /// The token that made it, by its hex SHA-256: the API shows a requester token only
    /// the requests it owns. None: no token owns it (made before owners were recorded by a
    /// token since revoked, or by the admin token then).
    pub owner_token_sha256: Option<String>,
}

impl RequestRecord {
    /// Counts toward its pool's desired count at `now`.
    pub fn is_live(&self, now: UnixSeconds) -> bool {
        self.released_at.is_none() && self.expires_at > now
    }

    /// The lifetime it was created with.
    pub fn ttl_seconds(&self) -> i64 {
        self.expires_at - self.created_at
    }
}

const COLUMNS: &str = "id, pool, count, requester, job, created_at, expires_at, released_at, \
                       released_by, owner_token_sha256";

fn from_row(row: &SqliteRow) -> Result<RequestRecord, StoreError> {
    let count: i64 = row.try_get("count")?;
    Ok(RequestRecord {
        id: row.try_get("id")?,
        pool: row.try_get("pool")?,
        count: u32::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("requests.count {count} is out of range")))?,
        requester: row.try_get("requester")?,
        job: row.try_get("job")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        released_at: row.try_get("released_at")?,
        released_by: row.try_get("released_by")?,
        owner_token_sha256: row.try_get("owner_token_sha256")?,
    })
}

fn request_what(id: &str) -> String {
    format!("request {id:?}")
}

impl Store {
    /// Stores a new live request for `count` nodes of `pool` from `now` until
    /// `now + ttl_seconds`, with a fresh UUID v4 id, owned by the token whose hash is `owner`.
    ///
    /// One `INSERT ... SELECT` guarded by the pool's `deleting` flag and `max`, so a request
    /// can never slip in after deletion started, and concurrent creates never interfere. The
    /// `request.created` audit event (actor `created_by`) is written by a trigger in the same
    /// statement: the hot path is one round trip and one commit. Other bounds on `ttl_seconds`
    /// are the caller's policy.
    ///
    /// Errors: [`StoreError::NotFound`] if the pool does not exist; [`StoreError::Conflict`]
    /// if it is being deleted, `count` exceeds the pool's `max`, or `count` or `ttl_seconds`
    /// is 0 or too large.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_request(
        &self,
        pool: &str,
        count: u32,
        ttl_seconds: u64,
        requester: &str,
        job: Option<&str>,
        created_by: &str,
        owner: Option<&str>,
        now: UnixSeconds,
    ) -> Result<RequestRecord, StoreError> {
        if count == 0 || ttl_seconds == 0 {
            return Err(StoreError::conflict(
                "a request needs a count and a ttl of at least 1",
            ));
        }
        let ttl = to_i64("request ttl_seconds", ttl_seconds)?;
        let expires_at = now.checked_add(ttl).ok_or_else(|| {
            StoreError::conflict(format!("request ttl {ttl_seconds} s is too large"))
        })?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = CreateJob {
            id: uuid::Uuid::new_v4().to_string(),
            pool: pool.to_owned(),
            count: i64::from(count),
            requester: requester.to_owned(),
            job: job.map(str::to_owned),
            created_by: created_by.to_owned(),
            owner: owner.map(str::to_owned),
            created_at: now,
            expires_at,
            reply,
        };
        self.creates
            .send(job)
            .await
            .map_err(|_| StoreError::Corrupt("the request writer has stopped".into()))?;
        let result = answer
            .await
            .map_err(|_| StoreError::Corrupt("the request writer has stopped".into()))?;
        match result {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(match self.get_pool(pool).await {
                Ok(Some(p)) if !p.deleting && count > p.spec.max => StoreError::conflict(format!(
                    "count {count} is more than pool {pool:?} can ever have (max {})",
                    p.spec.max
                )),
                _ => self.why_not_updatable(pool).await,
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM requests WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Requests of one pool or of all, oldest first: only the live ones at `now`, or with
    /// `include_released` every one still kept (released and expired ones too).
    pub async fn list_requests(
        &self,
        pool: Option<&str>,
        include_released: bool,
        now: UnixSeconds,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        self.list_requests_owned(None, pool, include_released, now)
            .await
    }

    /// As [`Store::list_requests`], only those owned by the token whose hash is `owner`
    /// (`None`: every request, whoever owns it).
    pub async fn list_requests_owned(
        &self,
        owner: Option<&str>,
        pool: Option<&str>,
        include_released: bool,
        now: UnixSeconds,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        // `?1 IS NULL OR pool = ?1`: one statement for both; `?2` switches the live filter
        // off; `?4 IS NULL` the owner filter.
        let sql = format!(
            "SELECT {COLUMNS} FROM requests \
             WHERE (?1 IS NULL OR pool = ?1) \
             AND (?2 OR (released_at IS NULL AND expires_at > ?3)) \
             AND (?4 IS NULL OR owner_token_sha256 = ?4) \
             ORDER BY created_at, rowid"
        );
        let rows = sqlx::query(&sql)
            .bind(pool)
            .bind(include_released)
            .bind(now)
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Releases the request: it stops counting at once. Idempotent: releasing a request that
    /// is already released returns it unchanged (with its first release's time and token).
    /// Releasing an expired request records the release too.
    ///
    /// Errors: [`StoreError::NotFound`].
    pub async fn release_request(
        &self,
        id: &str,
        by: &str,
        now: UnixSeconds,
    ) -> Result<RequestRecord, StoreError> {
        let sql = format!(
            "UPDATE requests SET released_at = ?, released_by = ? \
             WHERE id = ? AND released_at IS NULL RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(by)
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => self
                .get_request(id)
                .await?
                .ok_or_else(|| StoreError::not_found(request_what(id))),
        }
    }

    /// Nodes asked for by the pool's live requests at `now` (not released, `expires_at > now`).
    pub async fn live_request_sum(&self, pool: &str, now: UnixSeconds) -> Result<u64, StoreError> {
        let sum: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(count), 0) FROM requests \
             WHERE pool = ? AND released_at IS NULL AND expires_at > ?",
        )
        .bind(pool)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        u64::try_from(sum)
            .map_err(|_| StoreError::Corrupt(format!("requests of pool {pool:?} sum to {sum}")))
    }

    /// The pool's desired node count at `now`: 0 while it is being deleted, otherwise
    /// `desired_count(spec, live requests)` = clamp(max(target, live requests, min), 0, max).
    /// The one definition used by the planner (controller and what-if) and the pool status.
    ///
    /// Requests count for their peak over the pool's scale-down stabilization window
    /// (`scale_down_stabilization_seconds`), which starts again at the pool's last change
    /// (`updated_at`: a scale, a PUT, a schedule's firing), so demand that dips for a moment
    /// does not scale the pool down and an admin's own change is never delayed. The window is
    /// read from the request rows (ended ones are kept a day), so it survives restarts and the
    /// what-if sees what the controller sees.
    pub async fn desired(&self, record: &PoolRecord, now: UnixSeconds) -> Result<u32, StoreError> {
        if record.deleting {
            return Ok(0);
        }
        let pool = &record.spec.name;
        let live = self.live_request_sum(pool, now).await?;
        let window = i64::try_from(record.spec.scale_down_stabilization_seconds).unwrap_or(0);
        let from = (now - window).max(record.updated_at);
        if window == 0 || from >= now {
            return Ok(desired_count(&record.spec, live));
        }
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT created_at, MIN(expires_at, COALESCE(released_at, expires_at)), count \
             FROM requests WHERE pool = ? AND created_at <= ? \
             AND MIN(expires_at, COALESCE(released_at, expires_at)) > ?",
        )
        .bind(pool)
        .bind(now)
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        let spans: Vec<(UnixSeconds, UnixSeconds, u64)> = rows
            .into_iter()
            .map(|(start, end, count)| (start, end, u64::try_from(count).unwrap_or(0)))
            .collect();
        let peak = rb_core::requested_peak(&spans, from, now);
        Ok(desired_count(&record.spec, live.max(peak)))
    }

    /// Deletes requests that ended (were released or expired) before `ended_before`; returns
    /// how many. With `ended_before <= now`, live requests are never touched.
    pub async fn prune_requests(&self, ended_before: UnixSeconds) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM requests WHERE (released_at IS NOT NULL AND released_at < ?1) \
             OR expires_at < ?1",
        )
        .bind(ended_before)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}
