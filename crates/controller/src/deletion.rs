//! The end of a pool's deletion: forced deletions asked through the API, and the pool's row
//! removed once nothing of it is left (what is left is each backend's to say:
//! [`crate::backend::PoolBackend::remains`], [`crate::backend::PoolBackend::released`]).

use std::collections::HashMap;

use rb_core::UnixSeconds;
use rb_core::task::Task;

use crate::{Shared, backoff, error, execute};

/// The last step of deleting a pool, once nothing of it is left in Azure: its row goes.
pub(crate) async fn remove_deleted_pool(sh: &Shared, pool: &str, what: &str) -> error::Result<()> {
    sh.store.remove_pool(pool).await?;
    // Its backoff rows and reusable names went with its row.
    backoff::forget(sh, pool);
    // A forced deletion asked for is done, whichever path got here.
    let _ = sh.store.delete_task_status(&Task::force_delete(pool)).await;
    let _ = execute::event(
        sh,
        "pool.deleted",
        Some(pool),
        None,
        &format!("the pool has no {what} left and is gone"),
        serde_json::json!({}),
    )
    .await;
    Ok(())
}

/// Pools whose forced deletion was asked for (`DELETE /v1/pools/{name}?force=true`), with
/// the `created_at` of the pool row it was asked for.
pub(crate) async fn force_requests(sh: &Shared) -> HashMap<String, UnixSeconds> {
    sh.store
        .task_statuses()
        .await
        .unwrap_or_default()
        .force_deletes()
        .map(|(pool, request)| (pool.to_owned(), request.created_at))
        .collect()
}
