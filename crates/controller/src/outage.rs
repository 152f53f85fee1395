//! An ARM outage made visible: while every ARM request fails (5xx, 408, no answer) and the
//! activation could not list Azure, every pool carries an `ArmUnavailable` condition saying
//! since when and with what, `/v1/status` shows it (`controller.arm_unavailable` and each
//! pool's conditions), and one `arm.unavailable` event marks the start, one `arm.recovered`
//! the end. The condition goes with the first activation that lists Azure again.
//!
//! When ARM started failing is the ARM client's to know (`ArmClient::arm_outage`, from every
//! attempt, retries included), not this activation's: the first failed attempt after the last
//! answer.

use rb_core::task::Task;
use serde_json::json;

use crate::{ActivationStatus, Controller, Error, chain, execute, now};

/// The condition's type, before `: ` (the pool conditions' "Type: message" convention).
pub const ARM_UNAVAILABLE: &str = "ArmUnavailable";

/// `ArmUnavailable: Azure Resource Manager failing since 2025-12-03 16:12:41 UTC: 503
/// ServiceUnavailable`: the creation gate's words for an outage, shown here when Azure could
/// not be listed at all.
pub fn condition(since_unix: i64, last_error: &str) -> String {
    rb_core::gate::arm_unavailable(since_unix, last_error)
}

/// After an activation: marks every pool while ARM is failing and Azure could not be listed,
/// and reports the start and end of an outage as events.
pub(crate) async fn report(ctl: &Controller, status: &mut ActivationStatus) {
    let sh = &ctl.shared;
    let outage = if status.observed {
        None
    } else {
        sh.arm.arm_outage()
    };
    let was = ctl
        .outage_reported
        .lock()
        .map(|mut r| std::mem::replace(&mut *r, outage.as_ref().map(|o| o.since_unix)))
        .unwrap_or(None);
    let Some(outage) = outage else {
        if let (Some(since), true) = (was, status.observed) {
            tracing::info!(since, "Azure Resource Manager answers again");
            let _ = execute::event(
                sh,
                "arm.recovered",
                None,
                None,
                &format!(
                    "Azure Resource Manager answers again after {} s",
                    now() - since
                ),
                json!({"since": since}),
            )
            .await;
        }
        return;
    };
    let cond = condition(outage.since_unix, &outage.last_error);
    if was.is_none() {
        tracing::warn!(since = outage.since_unix, error = %outage.last_error, "Azure Resource Manager is failing");
        let _ = execute::event(
            sh,
            "arm.unavailable",
            None,
            None,
            &cond,
            json!({"since": outage.since_unix, "error": outage.last_error, "failed_attempts": outage.failed_attempts}),
        )
        .await;
    }
    let pools = match sh.store.list_pools().await {
        Ok(p) => p,
        Err(e) => {
            status.errors.push(chain(&Error::from(e)).to_string());
            return;
        }
    };
    let previous = sh.store.task_statuses().await.unwrap_or_default();
    for record in &pools {
        let task = Task::pool(&record.spec.name);
        let mut pool = previous.get(&task).unwrap_or_default();
        // Nothing was planned from this activation; what was known before stays, with the
        // outage in place of an older outage or observation failure.
        pool.actions.clear();
        let mut texts: Vec<String> = pool
            .conditions
            .iter()
            .filter(|c| c.kind != ARM_UNAVAILABLE && c.kind != "ObserveFailed")
            .map(|c| c.text())
            .collect();
        texts.push(cond.clone());
        pool.conditions = crate::typed_conditions(sh, &record.spec.name, &texts, now());
        let _ = sh.store.put_task_status(&task, &pool).await;
        status.pools.insert(record.spec.name.clone(), pool);
    }
    status.arm_unavailable = Some(cond);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_says_since_when_and_what() {
        assert_eq!(
            condition(1_764_778_361, "503 ServiceUnavailable"),
            "ArmUnavailable: Azure Resource Manager failing since 2025-12-03 16:12:41 UTC: 503 ServiceUnavailable"
        );
    }
}
