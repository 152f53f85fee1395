//! The `intents` table: the journal of ARM writes. An intent is opened before the call,
//! given the long-running operation to poll once ARM accepts it, and closed with its outcome.
//! Intents still open at start-up are what recovery resolves (by a GET) before anything else.

use rb_core::{ActionKind, UnixSeconds};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError, enum_str, now, parse_enum, parse_json, to_json};

/// An intent to write, as the executor opens it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIntent {
    pub pool: String,
    /// The VM the write is about.
    pub node: String,
    pub kind: ActionKind,
    /// Whatever the executor needs to redo or check the write (size, priority...).
    pub detail: serde_json::Value,
    /// The planner's reason for the action.
    pub reason: String,
}

/// How an intent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentOutcome {
    Succeeded,
    /// ARM refused or the operation failed, with ARM's error code and message.
    Failed {
        code: String,
        message: String,
    },
    /// Given up without an answer (for example: recovery found nothing to resolve).
    Abandoned {
        why: String,
    },
}

/// A journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub id: i64,
    pub pool: String,
    pub node: String,
    pub kind: ActionKind,
    pub detail: serde_json::Value,
    pub reason: String,
    /// The serialized long-running operation, once ARM accepted the write.
    pub operation: Option<serde_json::Value>,
    pub opened_at: UnixSeconds,
    pub closed_at: Option<UnixSeconds>,
    /// None while open.
    pub outcome: Option<IntentOutcome>,
}

const COLUMNS: &str = "id, pool, node, kind, detail, reason, operation, opened_at, closed_at, outcome, error_code, error_message";

fn from_row(row: &SqliteRow) -> Result<Intent, StoreError> {
    let kind: String = row.try_get("kind")?;
    let detail: String = row.try_get("detail")?;
    let operation: Option<String> = row.try_get("operation")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    let outcome = match outcome.as_deref() {
        None => None,
        Some("succeeded") => Some(IntentOutcome::Succeeded),
        Some("failed") => Some(IntentOutcome::Failed {
            code: code.unwrap_or_default(),
            message: message.unwrap_or_default(),
        }),
        Some("abandoned") => Some(IntentOutcome::Abandoned {
            why: message.unwrap_or_default(),
        }),
        Some(other) => {
            return Err(StoreError::Corrupt(format!(
                "intents.outcome {other:?} is unknown"
            )));
        }
    };
    Ok(Intent {
        id: row.try_get("id")?,
        pool: row.try_get("pool")?,
        node: row.try_get("node")?,
        kind: parse_enum("intents.kind", &kind)?,
        detail: parse_json("intents.detail", &detail)?,
        reason: row.try_get("reason")?,
        operation: operation
            .as_deref()
            .map(|op| parse_json("intents.operation", op))
            .transpose()?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
        outcome,
    })
}

fn intent_what(id: i64) -> String {
    format!("intent {id}")
}

/// One write of a plan for [`Store::open_intents`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenIntent {
    pub intent: NewIntent,
    /// The decision, as `plan.{verb}`; its `data` gains `"intent": ID`.
    pub event: crate::NewEvent,
    /// A create's inventory row, written with its intent.
    pub placeholder: Option<crate::VmRecord>,
}

async fn insert_intent(
    conn: &mut sqlx::SqliteConnection,
    intent: &NewIntent,
    at: UnixSeconds,
) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO intents (pool, node, kind, detail, reason, opened_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&intent.pool)
    .bind(&intent.node)
    .bind(enum_str(&intent.kind))
    .bind(to_json(&intent.detail))
    .bind(&intent.reason)
    .bind(at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

async fn insert_intent_with_event(
    tx: &mut sqlx::SqliteConnection,
    intent: &NewIntent,
    event: &crate::NewEvent,
    at: UnixSeconds,
) -> Result<(i64, i64), StoreError> {
    let id = insert_intent(tx, intent, at).await?;
    let mut data = event.data.clone();
    if let serde_json::Value::Object(fields) = &mut data {
        fields.insert("intent".into(), id.into());
    }
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO events (at, kind, pool, node, actor, message, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(at)
    .bind(&event.kind)
    .bind(&event.pool)
    .bind(&event.node)
    .bind(&event.actor)
    .bind(&event.message)
    .bind(to_json(&data))
    .fetch_one(&mut *tx)
    .await?;
    Ok((id, event_id))
}

impl Store {
    /// Records an intent before its ARM write; returns its id.
    pub async fn open_intent(&self, intent: &NewIntent) -> Result<i64, StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_intent(&mut conn, intent, now()).await
    }

    /// Records an intent and the event that announces the decision in one transaction, so a
    /// crash keeps both or neither (the log never misses a decision the journal acted on, nor
    /// shows one that was never made). Returns the intent's id and the event's id; the event's
    /// `data` gains `"intent": ID`.
    pub async fn open_intent_with_event(
        &self,
        intent: &NewIntent,
        event: &crate::NewEvent,
    ) -> Result<(i64, i64), StoreError> {
        let mut tx = self.writer.begin().await?;
        let ids = insert_intent_with_event(&mut tx, intent, event, now()).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// A plan's writes opened together: every intent with its event (as
    /// [`Store::open_intent_with_event`]) and, for a create, the inventory row that counts the
    /// node from now on ([`Store::upsert_vm`]'s rules), in one transaction — a plan of a
    /// hundred creates costs one commit, not two hundred, and a crash keeps all of it or none.
    /// Returns the intents' ids in order.
    ///
    /// Errors: [`StoreError::NotFound`] if a placeholder's pool does not exist (nothing is
    /// kept).
    pub async fn open_plan_intents(&self, opening: &[OpenIntent]) -> Result<Vec<i64>, StoreError> {
        let at = now();
        let mut tx = self.writer.begin().await?;
        let mut ids = Vec::with_capacity(opening.len());
        for o in opening {
            let (id, _) = insert_intent_with_event(&mut tx, &o.intent, &o.event, at).await?;
            if let Some(vm) = &o.placeholder {
                crate::vms::upsert_vm_in(&mut tx, vm).await?;
            }
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// The most recent intent about `node` (open or closed), if any: who last acted on a VM,
    /// which tells our own delete from one outside renderburst after a restart.
    pub async fn last_intent_for(&self, node: &str) -> Result<Option<Intent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM intents WHERE node = ? ORDER BY id DESC LIMIT 1");
        let row = sqlx::query(&sql)
            .bind(node)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records the long-running operation ARM returned for an open intent (replacing any).
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] if the intent is closed.
    pub async fn set_intent_operation(
        &self,
        id: i64,
        operation: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE intents SET operation = ? WHERE id = ? AND closed_at IS NULL")
                .bind(to_json(operation))
                .bind(id)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 {
            return Err(self.why_not_open(id).await);
        }
        Ok(())
    }

    /// Closes an open intent with its outcome.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] if it is already closed.
    pub async fn close_intent(&self, id: i64, outcome: &IntentOutcome) -> Result<(), StoreError> {
        let (name, code, message) = match outcome {
            IntentOutcome::Succeeded => ("succeeded", None, None),
            IntentOutcome::Failed { code, message } => {
                ("failed", Some(code.as_str()), Some(message.as_str()))
            }
            IntentOutcome::Abandoned { why } => ("abandoned", None, Some(why.as_str())),
        };
        let done = sqlx::query(
            "UPDATE intents SET closed_at = ?, outcome = ?, error_code = ?, error_message = ? \
             WHERE id = ? AND closed_at IS NULL",
        )
        .bind(now())
        .bind(name)
        .bind(code)
        .bind(message)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.why_not_open(id).await);
        }
        Ok(())
    }

    /// Every intent not yet closed, oldest first.
    pub async fn open_intents(&self) -> Result<Vec<Intent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM intents WHERE closed_at IS NULL ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// The `limit` most recent intents, open or closed, newest first.
    pub async fn recent_intents(&self, limit: u32) -> Result<Vec<Intent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM intents ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn why_not_open(&self, id: i64) -> StoreError {
        let exists = sqlx::query_scalar::<_, i64>("SELECT id FROM intents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await;
        match exists {
            Ok(Some(_)) => StoreError::conflict(format!("{} is already closed", intent_what(id))),
            Ok(None) => StoreError::not_found(intent_what(id)),
            Err(e) => e.into(),
        }
    }
}
