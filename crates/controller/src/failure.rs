//! A write that Azure refused, or whose operation ended in failure, is recorded here and only
//! here, whichever backend made it and whether this process saw it end or recovery found it
//! after a restart: its intents closed as failed, the offering marked unavailable for a
//! capacity or quota refusal (else the pool's writes of that kind back off, live ones), the
//! pool's last error set, and one `arm.error` event. What is particular to a backend (a
//! failed create's name kept for reuse, a placeholder row forgotten) stays with its executor.
//!
//! Failures in the daemon itself (the store could not keep a token) are not Azure's answers:
//! [`record_failed_here`] closes the intent and sets the pool's error, nothing else.

use azure::ArmError;
use rb_core::task::{PoolError, Task};
use rb_core::{ActionKind, Offering, Unavailable};
use serde_json::{Value, json};
use store::IntentOutcome;

use crate::error::{Error, chain};
use crate::execute::{event, unavailability, verb_of};
use crate::{Shared, now};

/// One failed write, as its backend describes it.
pub(crate) struct Failed<'a> {
    pub pool: &'a str,
    pub kind: ActionKind,
    /// What failed, as people read it: `create maya-00001`, `resize of Batch pool maya`.
    pub what: String,
    /// The node the event is about (None: the write was on a Batch pool, or on several nodes).
    pub node: Option<&'a str>,
    /// The intents the write held.
    pub intents: &'a [i64],
    /// What a capacity or quota refusal marks unavailable (None: the backend has its own
    /// marks, as Batch pools have from their resize errors).
    pub offering: Option<Offering>,
    /// The pool's generation when the write was planned: a live failure backs off; one found
    /// by recovery (None) does not, the next plan starts a fresh streak if it fails again.
    pub generation: Option<i64>,
    /// More for the event's data (`{"nodes": [...]}`, `{"recovered": true}`...).
    pub data: Value,
}

/// Records `f`, which failed with `e`.
pub(crate) async fn record(sh: &Shared, f: Failed<'_>, e: &ArmError) {
    let verb = verb_of(f.kind);
    tracing::warn!(pool = %f.pool, node = ?f.node, action = %verb, code = %e.code, error = %chain(e), "write failed");
    let outcome = IntentOutcome::Failed {
        code: e.code.clone(),
        message: e.message.clone(),
    };
    for intent in f.intents {
        let _ = sh.store.close_intent(*intent, &outcome).await;
    }
    let mut data =
        json!({"code": e.code, "status": e.status, "action": verb, "request_id": e.request_id});
    if let (Value::Object(extra), Some(map)) = (f.data, data.as_object_mut()) {
        map.extend(extra);
    }
    let marked = match (unavailability(e), f.offering) {
        (Some(reason), Some(offering)) if !offering.size.is_empty() => {
            let u = Unavailable::new(offering, reason, &e.code, now());
            data["unavailable_until"] = json!(u.until);
            let _ = sh.store.set_unavailable(&u).await;
            true
        }
        _ => false,
    };
    // A capacity or quota refusal marks the offering instead: the planner tries another.
    if !marked && let Some(generation) = f.generation {
        crate::backoff::failed(sh, f.pool, f.kind, generation, e).await;
    }
    let _ = sh
        .store
        .put_task_status(
            &Task::pool_error(f.pool),
            &PoolError {
                code: e.code.clone(),
                message: format!("{}: {}", f.what, e.message),
                at: now(),
            },
        )
        .await;
    let _ = event(
        sh,
        "arm.error",
        Some(f.pool),
        f.node,
        &format!("{} failed: {}: {}", f.what, e.code, e.message),
        data,
    )
    .await;
}

/// What a write that failed in the daemon leaves, for VM and Batch writes alike: its intent
/// closed as failed and the pool's last error, both saying `what` failed and why.
pub(crate) async fn record_failed_here(
    sh: &Shared,
    pool: &str,
    intent: i64,
    what: &str,
    err: &Error,
) {
    let message = format!("{what}: {}", err.message());
    let _ = sh
        .store
        .close_intent(
            intent,
            &IntentOutcome::Failed {
                code: err.code().to_owned(),
                message: message.clone(),
            },
        )
        .await;
    let _ = sh
        .store
        .put_task_status(
            &Task::pool_error(pool),
            &PoolError {
                code: err.code().to_owned(),
                message,
                at: now(),
            },
        )
        .await;
}
