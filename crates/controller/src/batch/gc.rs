//! Garbage collection of Batch pools: ours (by tag or metadata) and wanted by no pool.

use std::collections::HashSet;

use rb_core::batch::pool_intent_node;
use rb_core::{ActionKind, TAG_POOL};
use serde_json::json;
use store::PoolRecord;

use super::{owned_by, target};
use crate::Shared;
use crate::gc::{Garbage, GarbageDelete, Kind};

/// Batch pools tagged with our owner id that no pool wants (in the accounts pools name and
/// the configured one) are deleted once they have been garbage for the grace period, as VMs
/// are. Adopted pools never carry our tag, so they are never collected.
pub(crate) async fn collect_garbage(
    sh: &std::sync::Arc<Shared>,
    pools: &[PoolRecord],
    owner: &str,
) {
    let mut accounts: Vec<(String, String)> = Vec::new();
    let mut wanted: HashSet<String> = HashSet::new();
    for r in pools {
        if let Some(tg) = target(sh, &r.spec) {
            let acct = (tg.rg.to_ascii_lowercase(), tg.account.to_ascii_lowercase());
            wanted.insert(format!(
                "{}/{}/{}",
                acct.0,
                acct.1,
                tg.name.to_ascii_lowercase()
            ));
            if !accounts.contains(&acct) {
                accounts.push(acct);
            }
        }
    }
    if let Some(a) = &sh.cfg.batch_account {
        let acct = (
            sh.cfg.resource_group.to_ascii_lowercase(),
            a.to_ascii_lowercase(),
        );
        if !accounts.contains(&acct) {
            accounts.push(acct);
        }
    }
    let mut garbage = HashSet::new();
    for (rg, account) in accounts {
        let listed = match sh.arm.list_pools(&rg, &account).collect_all().await {
            Ok(p) => p,
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(account = %account, error = %crate::chain(&e), "cannot list Batch pools for garbage collection");
                }
                continue;
            }
        };
        for p in listed {
            let Some(name) = p.name.clone() else { continue };
            let key = format!("{rg}/{account}/{}", name.to_ascii_lowercase());
            if wanted.contains(&key) || !owned_by(&p, owner) {
                continue;
            }
            let deleting = p
                .properties
                .as_ref()
                .and_then(|p| p.provisioning_state.as_deref())
                .is_some_and(|s| s.eq_ignore_ascii_case("Deleting"));
            let g = Garbage::batch_pool(&rg, &account, &name);
            garbage.insert(g.clone());
            if deleting || !crate::gc::due(sh, &g) {
                continue;
            }
            let tag_pool = p.tags.as_ref().and_then(|t| t.get(TAG_POOL).cloned());
            crate::gc::delete_journalled(
                sh,
                GarbageDelete {
                    garbage: g,
                    node: pool_intent_node(&name),
                    pool: tag_pool.as_deref().unwrap_or_default(),
                    kind: ActionKind::DeletePool,
                    event: "gc.batch_pool",
                    message: format!(
                        "deleting Batch pool {name} in account {account}: ours, and no pool wants it"
                    ),
                    data: json!({"owner": owner}),
                },
                sh.arm.delete_pool(&rg, &account, &name),
            )
            .await;
        }
    }
    crate::gc::forget_except(sh, Kind::BatchPool, &garbage);
}
