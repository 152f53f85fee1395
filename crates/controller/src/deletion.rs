//! The end of a pool's deletion: forced deletions asked through the API, what of a pool is
//! still tagged in Azure, and the pool's row removed once nothing of it is left.

use std::collections::HashMap;

use rb_core::task::Task;
use rb_core::{PoolMode, UnixSeconds};

use crate::observe::Observation;
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

/// What is still in Azure tagged with this pool, from this activation's complete listing of
/// our VMs and the Batch pool's observation (a Batch pool that could not be observed never
/// gets here: nothing is forgotten from part of the picture).
pub(crate) async fn tagged_remains(
    sh: &Shared,
    record: &store::PoolRecord,
    observation: &Observation,
) -> Vec<String> {
    let name = &record.spec.name;
    let mut remains: Vec<String> = observation
        .vms
        .values()
        .filter(|o| o.pool == *name)
        .map(|o| format!("VM {}", o.name))
        .collect();
    remains.sort();
    if record.spec.mode == PoolMode::Batch {
        match sh.store.get_batch_state(name).await {
            Ok(Some(state)) => {
                if state.observed.as_ref().is_some_and(|v| v.owned) {
                    remains.push(format!(
                        "Batch pool {} in account {}",
                        record
                            .spec
                            .batch
                            .as_ref()
                            .and_then(|b| b.existing_pool.clone())
                            .unwrap_or_else(|| name.clone()),
                        record
                            .spec
                            .batch
                            .as_ref()
                            .map_or("?", |b| b.account.as_str())
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => remains.push(format!("unknown (store: {e})")),
        }
    }
    remains
}
