//! The `vms` table: the inventory of VMs renderburst created, with what Azure last showed
//! about each, plus the heartbeat and drain marks that the node API writes.
//!
//! Two writers share a row and own different columns: the controller's [`Store::upsert_vm`]
//! writes what it observed, and never touches `last_heartbeat`, `busy` or `draining`, which
//! belong to [`Store::set_heartbeat`] and [`Store::set_draining`].

use rb_core::{NodeState, Priority, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{is_foreign_key_violation, is_unique_violation};
use crate::{Store, StoreError, enum_str, parse_enum};

/// One VM of the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRecord {
    pub name: String,
    pub pool: String,
    pub size: String,
    pub priority: Priority,
    pub state: NodeState,
    /// Azure's power state code as last seen (`"PowerState/running"`...), if any.
    pub power_state: Option<String>,
    pub azure_id: Option<String>,
    /// ARM error code when `state` is Failed.
    pub failed_code: Option<String>,
    pub created_at: UnixSeconds,
    pub started_at: Option<UnixSeconds>,
    pub deallocated_at: Option<UnixSeconds>,
    /// When an ARM list last showed it.
    pub last_seen: Option<UnixSeconds>,
    pub last_heartbeat: Option<UnixSeconds>,
    pub busy: bool,
    pub draining: bool,
    /// When the node first registered with its own token (bootstrap pools).
    pub registered_at: Option<UnixSeconds>,
    /// Last call the node made with its own token (register or heartbeat).
    pub node_seen_at: Option<UnixSeconds>,
}

const COLUMNS: &str = "name, pool, size, priority, state, power_state, azure_id, failed_code, created_at, \
                       started_at, deallocated_at, last_seen, last_heartbeat, busy, draining, \
                       registered_at, node_seen_at";

fn from_row(row: &SqliteRow) -> Result<VmRecord, StoreError> {
    let priority: String = row.try_get("priority")?;
    let state: String = row.try_get("state")?;
    Ok(VmRecord {
        name: row.try_get("name")?,
        pool: row.try_get("pool")?,
        size: row.try_get("size")?,
        priority: parse_enum("vms.priority", &priority)?,
        state: parse_enum("vms.state", &state)?,
        power_state: row.try_get("power_state")?,
        azure_id: row.try_get("azure_id")?,
        failed_code: row.try_get("failed_code")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        deallocated_at: row.try_get("deallocated_at")?,
        last_seen: row.try_get("last_seen")?,
        last_heartbeat: row.try_get("last_heartbeat")?,
        busy: row.try_get("busy")?,
        draining: row.try_get("draining")?,
        registered_at: row.try_get("registered_at")?,
        node_seen_at: row.try_get("node_seen_at")?,
    })
}

/// The outcome of an UPDATE of one inventory row by name: NotFound if it touched none.
fn one_vm(done: &sqlx::sqlite::SqliteQueryResult, name: &str) -> Result<(), StoreError> {
    if done.rows_affected() == 0 {
        return Err(StoreError::not_found(vm_what(name)));
    }
    Ok(())
}

fn vm_what(name: &str) -> String {
    format!("vm {name:?}")
}

/// [`Store::upsert_vm`] on a connection (or in a transaction) of the writer.
pub(crate) async fn upsert_vm_in(
    conn: &mut sqlx::SqliteConnection,
    vm: &VmRecord,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO vms ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET pool = excluded.pool, size = excluded.size, \
         priority = excluded.priority, state = excluded.state, power_state = excluded.power_state, \
         azure_id = excluded.azure_id, failed_code = excluded.failed_code, \
         created_at = excluded.created_at, started_at = excluded.started_at, \
         deallocated_at = excluded.deallocated_at, last_seen = excluded.last_seen"
    );
    let result = sqlx::query(&sql)
        .bind(&vm.name)
        .bind(&vm.pool)
        .bind(&vm.size)
        .bind(enum_str(&vm.priority))
        .bind(enum_str(&vm.state))
        .bind(&vm.power_state)
        .bind(&vm.azure_id)
        .bind(&vm.failed_code)
        .bind(vm.created_at)
        .bind(vm.started_at)
        .bind(vm.deallocated_at)
        .bind(vm.last_seen)
        .bind(vm.last_heartbeat)
        .bind(vm.busy)
        .bind(vm.draining)
        .bind(vm.registered_at)
        .bind(vm.node_seen_at)
        .execute(&mut *conn)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => {
            Err(StoreError::not_found(format!("pool {:?}", vm.pool)))
        }
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Inserts the VM, or replaces every field of an existing row except `last_heartbeat`,
    /// `busy`, `draining`, `registered_at` and `node_seen_at`, which keep their stored values
    /// (the record's values for those are used only when the row is new).
    ///
    /// Errors: [`StoreError::NotFound`] if its pool does not exist.
    pub async fn upsert_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        upsert_vm_in(&mut conn, vm).await
    }

    /// [`Store::upsert_vm`] for many rows in one transaction (all or none).
    pub async fn upsert_vms(&self, vms: &[VmRecord]) -> Result<(), StoreError> {
        if vms.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for vm in vms {
            upsert_vm_in(&mut tx, vm).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The inventory, of one pool or of all, ordered by name.
    pub async fn list_vms(&self, pool: Option<&str>) -> Result<Vec<VmRecord>, StoreError> {
        let rows = match pool {
            Some(pool) => {
                let sql = format!("SELECT {COLUMNS} FROM vms WHERE pool = ? ORDER BY name");
                sqlx::query(&sql).bind(pool).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM vms ORDER BY name");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    pub async fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM vms WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Removes the VM from the inventory. Idempotent: returns whether a row was removed.
    pub async fn delete_vm(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM vms WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a heartbeat: the node is alive at `now` and `busy` or idle.
    ///
    /// Errors: [`StoreError::NotFound`] if no such VM is in the inventory.
    pub async fn set_heartbeat(
        &self,
        name: &str,
        busy: bool,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE vms SET last_heartbeat = ?, busy = ? WHERE name = ?")
            .bind(now)
            .bind(busy)
            .bind(name)
            .execute(&self.writer)
            .await?;
        one_vm(&done, name)
    }

    /// Stores the hash of the node's own token (replacing any earlier one).
    ///
    /// Errors: [`StoreError::NotFound`] if no such VM is in the inventory.
    pub async fn set_node_token(
        &self,
        node: &str,
        token_hash: &str,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.put_token_hash(
            "INSERT INTO node_tokens (node, token_hash, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (node) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at = excluded.created_at",
            (node, token_hash, now),
            || vm_what(node),
            None,
        )
        .await
    }

    /// Stores the hash of the node's first token: enrollment (Batch nodes) happens once.
    ///
    /// Errors: [`StoreError::NotFound`] if no such node is in the inventory,
    /// [`StoreError::Conflict`] if it has a token already.
    pub async fn enroll_node_token(
        &self,
        node: &str,
        token_hash: &str,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.put_token_hash(
            "INSERT INTO node_tokens (node, token_hash, created_at) VALUES (?, ?, ?)",
            (node, token_hash, now),
            || vm_what(node),
            Some(format!("node {node:?} enrolled already")),
        )
        .await
    }

    /// Forgets a node's token and registration: a preempted Spot node that Batch
    /// reallocates is a fresh machine under the same id, which enrolls and registers again.
    pub async fn forget_node_enrollment(&self, node: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM node_tokens WHERE node = ?")
            .bind(node)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE vms SET registered_at = NULL, node_seen_at = NULL WHERE name = ?")
            .bind(node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores the hash of a pool's enrollment token, replacing every earlier one (the Batch
    /// pool is being created: no start task carries another).
    ///
    /// Errors: [`StoreError::NotFound`] if no such pool exists.
    pub async fn set_pool_enroll_token(
        &self,
        pool: &str,
        token_hash: &str,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.put_enroll_key(pool, token_hash, now, true).await
    }

    /// Adds a pool enrollment token beside the ones it has: a rotation stores the new token
    /// before the start task carries it, and the old ones keep working until
    /// [`Store::observe_enroll_token`] sees the new one published.
    ///
    /// Errors: [`StoreError::NotFound`] if no such pool exists.
    pub async fn add_pool_enroll_token(
        &self,
        pool: &str,
        token_hash: &str,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.put_enroll_key(pool, token_hash, now, false).await
    }

    async fn put_enroll_key(
        &self,
        pool: &str,
        token_hash: &str,
        now: UnixSeconds,
        replace: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        if replace {
            sqlx::query("DELETE FROM pool_enroll_keys WHERE pool = ?")
                .bind(pool)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query(
            "INSERT INTO pool_enroll_keys (token_hash, pool, created_at, expires_at) \
             VALUES (?, ?, ?, NULL)",
        )
        .bind(token_hash)
        .bind(pool)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::not_found(format!("pool {pool:?}")));
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records which token the Batch pool's start task carries (`published`, its hash), as
    /// the controller observed it at `now`: that one never expires; every other token of the
    /// pool that had no end gets `now + overlap_seconds` (nodes allocated before a rotation
    /// still have the old one); tokens past their end are deleted. Returns when the
    /// published token was made, or None when it is not one of the pool's (nothing is
    /// expired then: the start task needs a token of ours first).
    pub async fn observe_enroll_token(
        &self,
        pool: &str,
        published: &str,
        now: UnixSeconds,
        overlap_seconds: i64,
    ) -> Result<Option<UnixSeconds>, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM pool_enroll_keys WHERE pool = ? AND expires_at <= ?")
            .bind(pool)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let created: Option<UnixSeconds> = sqlx::query_scalar(
            "UPDATE pool_enroll_keys SET expires_at = NULL WHERE pool = ? AND token_hash = ? \
             RETURNING created_at",
        )
        .bind(pool)
        .bind(published)
        .fetch_optional(&mut *tx)
        .await?;
        if created.is_some() {
            sqlx::query(
                "UPDATE pool_enroll_keys SET expires_at = ? \
                 WHERE pool = ? AND token_hash <> ? AND expires_at IS NULL",
            )
            .bind(now.saturating_add(overlap_seconds))
            .bind(pool)
            .bind(published)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Runs one of the token-hash inserts above: a missing owner (foreign key) is NotFound
    /// naming `what`; a unique violation is `conflict` when given, else a database error.
    async fn put_token_hash(
        &self,
        sql: &str,
        (owner, token_hash, now): (&str, &str, UnixSeconds),
        what: impl FnOnce() -> String,
        conflict: Option<String>,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(sql)
            .bind(owner)
            .bind(token_hash)
            .bind(now)
            .execute(&self.writer)
            .await;
        match (result, conflict) {
            (Ok(_), _) => Ok(()),
            (Err(e), _) if is_foreign_key_violation(&e) => Err(StoreError::not_found(what())),
            (Err(e), Some(conflict)) if is_unique_violation(&e) => {
                Err(StoreError::conflict(conflict))
            }
            (Err(e), _) => Err(e.into()),
        }
    }

    /// The pool whose enrollment token has this hash, if any and not expired now.
    pub async fn pool_for_enroll_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        self.pool_for_enroll_token_hash_at(token_hash, crate::now())
            .await
    }

    /// As [`Store::pool_for_enroll_token_hash`], at `now`.
    pub async fn pool_for_enroll_token_hash_at(
        &self,
        token_hash: &str,
        now: UnixSeconds,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT pool FROM pool_enroll_keys WHERE token_hash = ? \
             AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("pool")).transpose()?)
    }

    /// Until when node `node` may enroll (see [`Store::set_enroll_until`]); None: never.
    pub async fn enroll_until(&self, node: &str) -> Result<Option<UnixSeconds>, StoreError> {
        let until: Option<Option<UnixSeconds>> =
            sqlx::query_scalar("SELECT enroll_until FROM vms WHERE name = ?")
                .bind(node)
                .fetch_optional(&self.pool)
                .await?;
        Ok(until.flatten())
    }

    /// Sets until when a listed Batch node may enroll (its allocation plus the window). The
    /// controller writes it when it lists a node not registered yet; [`Store::upsert_vm`]
    /// leaves it alone.
    ///
    /// Errors: [`StoreError::NotFound`] if no such node is in the inventory.
    pub async fn set_enroll_until(&self, node: &str, until: UnixSeconds) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE vms SET enroll_until = ? WHERE name = ? AND enroll_until IS NOT ?")
                .bind(until)
                .bind(node)
                .bind(until)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 && self.get_vm(node).await?.is_none() {
            return Err(StoreError::not_found(vm_what(node)));
        }
        Ok(())
    }

    /// The node whose token has this hash, if any.
    pub async fn node_for_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT node FROM node_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("node")).transpose()?)
    }

    /// Records a registration: `registered_at` keeps the first one, `node_seen_at` is `now`.
    ///
    /// Errors: [`StoreError::NotFound`] if no such VM is in the inventory.
    pub async fn register_node(&self, name: &str, now: UnixSeconds) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE vms SET registered_at = COALESCE(registered_at, ?), node_seen_at = ? WHERE name = ?",
        )
        .bind(now)
        .bind(now)
        .bind(name)
        .execute(&self.writer)
        .await?;
        one_vm(&done, name)
    }

    /// Records that the node itself called (a liveness heartbeat with its own token).
    ///
    /// Errors: [`StoreError::NotFound`] if no such VM is in the inventory.
    pub async fn set_node_seen(&self, name: &str, now: UnixSeconds) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE vms SET node_seen_at = ? WHERE name = ?")
            .bind(now)
            .bind(name)
            .execute(&self.writer)
            .await?;
        one_vm(&done, name)
    }

    /// Marks the VM for drain (or clears the mark).
    ///
    /// Errors: [`StoreError::NotFound`] if no such VM is in the inventory.
    pub async fn set_draining(&self, name: &str, draining: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE vms SET draining = ? WHERE name = ?")
            .bind(draining)
            .bind(name)
            .execute(&self.writer)
            .await?;
        one_vm(&done, name)
    }
}
