//! The `api_tokens` table: API tokens by name and role, stored only as the hex SHA-256 of the
//! token. Hashing and comparing are the API's; the store only finds a row by its hash.

use rb_core::UnixSeconds;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::is_unique_violation;
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

    pub async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, role, token_hash, created_at FROM api_tokens WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
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
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(token_what(name)));
        }
        Ok(())
    }
}
