//! The `vms` table: the inventory of VMs renderburst created, with what Azure last showed
//! about each, plus the heartbeat and drain marks that the node API writes.
//!
//! Two writers share a row and own different columns: the controller's [`Store::upsert_vm`]
//! writes what it observed, and never touches `last_heartbeat`, `busy` or `draining`, which
//! belong to [`Store::set_heartbeat`] and [`Store::set_draining`].

use rb_core::{NodeState, Priority, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::is_foreign_key_violation;
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
}

const COLUMNS: &str = "name, pool, size, priority, state, power_state, azure_id, failed_code, created_at, \
                       started_at, deallocated_at, last_seen, last_heartbeat, busy, draining";

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
    })
}

fn vm_what(name: &str) -> String {
    format!("vm {name:?}")
}

impl Store {
    /// Inserts the VM, or replaces every field of an existing row except `last_heartbeat`,
    /// `busy` and `draining`, which keep their stored values (the record's values for those
    /// are used only when the row is new).
    ///
    /// Errors: [`StoreError::NotFound`] if its pool does not exist.
    pub async fn upsert_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO vms ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
            .execute(&self.writer)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found(format!("pool {:?}", vm.pool)))
            }
            Err(e) => Err(e.into()),
        }
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
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(vm_what(name)));
        }
        Ok(())
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
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(vm_what(name)));
        }
        Ok(())
    }
}
