//! The `meta` table: facts about this database itself.

use crate::{Store, StoreError};

impl Store {
    /// This daemon's owner id: a UUID v4 generated the first time it is asked for and stored,
    /// so it survives restarts. It goes into the `renderburst-owner` tag of every resource we
    /// create, telling our resources apart from another renderburst's in the same subscription.
    pub async fn owner_id(&self) -> Result<String, StoreError> {
        // INSERT OR IGNORE then read: two first callers agree on one id.
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('owner_id', ?)")
            .bind(uuid::Uuid::new_v4().to_string())
            .execute(&self.writer)
            .await?;
        let id = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'owner_id'")
            .fetch_one(&self.writer)
            .await?;
        Ok(id)
    }
}
