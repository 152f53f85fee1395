//! The `api_tokens` table: API tokens by name and role, stored only as the hex SHA-256 of the
//! token. Hashing and comparing are the API's; the store only finds a row by its hash.
//!
//! Every authenticated API call looks its token up, so the table is kept in memory: loaded on
//! the first lookup, dropped by every insert and delete (this process is the only writer: it
//! holds the one-daemon lock). A generation counter keeps a load that raced a revoke from
//! putting the revoked token back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rb_core::UnixSeconds;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::is_unique_violation;
/// Tokens are made by [`crate::secret`]; kept here for the callers that ask for their length.
pub use crate::secret::TOKEN_CHARS;
use crate::{Store, StoreError, now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    /// `admin`, `requester` or `viewer`; the API decides what they mean.
    pub role: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub created_at: UnixSeconds,
}

fn from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        token_hash: row.try_get("token_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The in-memory copy of `api_tokens`, by hash.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    inner: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// Bumped by every change of the table.
    generation: u64,
    by_hash: Option<Arc<HashMap<String, TokenRecord>>>,
}

impl TokenCache {
    fn get(&self) -> (u64, Option<Arc<HashMap<String, TokenRecord>>>) {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (state.generation, state.by_hash.clone())
    }

    /// Keeps `loaded` unless the table changed since `generation` was read.
    fn fill(&self, generation: u64, loaded: Arc<HashMap<String, TokenRecord>>) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if state.generation == generation {
            state.by_hash = Some(loaded);
        }
    }

    fn invalidate(&self) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        state.by_hash = None;
    }
}

fn token_what(name: &str) -> String {
    format!("token {name:?}")
}

impl Store {
    /// Stores a new token.
    ///
    /// Errors: [`StoreError::Conflict`] if a token of that name, or with that hash, exists.
    pub async fn insert_token(
        &self,
        name: &str,
        role: &str,
        token_hash: &str,
    ) -> Result<TokenRecord, StoreError> {
        let result = sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?) \
             RETURNING name, role, token_hash, created_at",
        )
        .bind(name)
        .bind(role)
        .bind(token_hash)
        .bind(now())
        .fetch_one(&self.writer)
        .await;
        self.tokens.invalidate();
        match result {
            Ok(row) => from_row(&row),
            Err(e) if is_unique_violation(&e) => {
                let name_taken = self.list_tokens().await?.iter().any(|t| t.name == name);
                Err(StoreError::conflict(if name_taken {
                    format!("{} already exists", token_what(name))
                } else {
                    "a token with the same hash already exists".to_string()
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The token with this hash, from the in-memory copy of the table (see the module docs).
    pub async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let (generation, cached) = self.tokens.get();
        let by_hash = match cached {
            Some(by_hash) => by_hash,
            None => {
                let loaded: HashMap<String, TokenRecord> = self
                    .list_tokens()
                    .await?
                    .into_iter()
                    .map(|t| (t.token_hash.clone(), t))
                    .collect();
                let loaded = Arc::new(loaded);
                self.tokens.fill(generation, loaded.clone());
                loaded
            }
        };
        Ok(by_hash.get(token_hash).cloned())
    }

    /// Every token, ordered by name.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT name, role, token_hash, created_at FROM api_tokens ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(from_row).collect()
    }

    /// Errors: [`StoreError::NotFound`].
    pub async fn delete_token(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await;
        self.tokens.invalidate();
        let done = done?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(token_what(name)));
        }
        Ok(())
    }
}
