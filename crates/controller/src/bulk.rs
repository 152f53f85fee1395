//! VM writes in bulk through Compute Schedule (`Microsoft.ComputeSchedule`, 2025-05-01; see
//! `docs/compute-schedule.md`): up to 100 creates, starts, deallocations or deletes in one ARM
//! write instead of one each, so a large scale-up is bounded by Compute's own buckets rather
//! than ARM's 10 writes a second.
//!
//! Bulk writes are journalled like any other: every VM's intent is opened (with its plan
//! event) before the request; the request's answer gives each VM its operation id, stored as
//! the intent's operation (`{"bulk": {"location", "operation_id"}}`), so a restarted daemon
//! follows each VM's operation to its end and never writes it twice. Each VM is then followed
//! like a single write (`follow`): by the listings, its operation read only when a listing
//! cannot tell. A VM the service refused, or whose operation failed, is recorded as the same
//! single write's failure would be (`failure::record`: quota and capacity mark the offering).

use std::time::Duration;

use arm_model::compute::VirtualMachine;
use arm_model::computeschedule::{BaseProfile, MAX_RESOURCES_PER_REQUEST, RetryPolicy};
use azure::computeschedule::CreateBatch;
use azure::{ArmError, bulk_error};
use rb_core::VmActionKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Shared;
use crate::execute::conclude;

/// `[controller] bulk`: when writes go through Compute Schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkMode {
    /// When a plan has more writes of one kind than one Compute Schedule request takes.
    #[default]
    Auto,
    /// Never: one ARM write per VM.
    Off,
    /// Every create, start, deallocation and delete of a plan, however few.
    Always,
}

/// How many writes of one kind a plan needs before `auto` sends them in bulk: more than one
/// request's worth. Below that, one write per VM starts at once (ARM's write bucket holds 200)
/// while a bulk operation waits for the service to schedule it.
pub const AUTO_MIN_WRITES: usize = MAX_RESOURCES_PER_REQUEST;

/// Whether `n` writes of one kind go in bulk.
pub fn wants_bulk(mode: BulkMode, kind: VmActionKind, n: usize) -> bool {
    let bulkable = matches!(
        kind,
        VmActionKind::Create
            | VmActionKind::Start
            | VmActionKind::Deallocate
            | VmActionKind::Delete
    );
    bulkable
        && match mode {
            BulkMode::Off => false,
            BulkMode::Always => n > 0,
            BulkMode::Auto => n > AUTO_MIN_WRITES,
        }
}

/// A VM's operation in a Compute Schedule request, as the intent keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkOperation {
    pub location: String,
    pub operation_id: String,
}

/// The intent's `operation` for a bulk write: `{"bulk": {...}}`, told apart from an ARM
/// long-running operation's handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub bulk: BulkOperation,
}

impl BulkOperation {
    pub fn from_intent(v: &Value) -> Option<Self> {
        serde_json::from_value::<Stored>(v.clone())
            .ok()
            .map(|s| s.bulk)
    }

    pub fn to_intent(&self) -> Value {
        serde_json::to_value(Stored { bulk: self.clone() }).unwrap_or_default()
    }

    /// Reads the operation's status until it is terminal: `Ok` when it succeeded, its error
    /// otherwise. Each read is one ARM write (Compute Schedule's calls are POSTs), so this is
    /// for what a listing cannot tell, a few times per VM at most.
    pub async fn wait_done(&self, sh: &Shared) -> azure::Result<()> {
        let ids = [self.operation_id.clone()];
        let mut wait = Duration::from_secs(2);
        loop {
            let results = sh.arm.operation_status(&self.location, &ids).await?;
            let Some(r) = results.into_iter().next() else {
                return Err(ArmError::new(
                    azure::ErrorKind::Operation,
                    "OperationNotFound",
                    format!(
                        "Compute Schedule has no operation {} in {}",
                        self.operation_id, self.location
                    ),
                ));
            };
            if r.operation.as_ref().is_none_or(|o| o.is_terminal()) {
                return match bulk_error(&r) {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
}

/// What differs in `vm` from `base`, as the override Compute Schedule merges deeply over the
/// base profile: objects key by key, anything else (arrays included) whole. Pure.
pub fn overrides(base: &Value, vm: &Value) -> Option<Value> {
    match (base, vm) {
        (Value::Object(b), Value::Object(v)) => {
            let mut out = serde_json::Map::new();
            for (k, value) in v {
                match b.get(k) {
                    Some(bv) => {
                        if let Some(d) = overrides(bv, value) {
                            out.insert(k.clone(), d);
                        }
                    }
                    None => {
                        out.insert(k.clone(), value.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (b, v) if b == v => None,
        (_, v) => Some(v.clone()),
    }
}

/// The retry policy bulk writes ask for: none. A failed VM is the planner's to decide on
/// (another size, a backoff), as a failed single write is; the service retrying it for up
/// to two hours would hide capacity and quota failures from it.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_count: Some(0),
        retry_window_in_minutes: None,
    }
}

/// One create request for `bodies` (each a VM's name and its PUT's body): the first body is
/// the base profile, each VM's override what differs from it, with its name.
pub fn create_batch(
    resource_group: &str,
    compute_api_version: &str,
    bodies: &[(String, VirtualMachine)],
) -> Result<CreateBatch, serde_json::Error> {
    let mut base_vm = bodies.first().map(|(_, b)| b.clone()).unwrap_or_default();
    base_vm.name = None;
    let base_json = serde_json::to_value(&base_vm)?;
    let mut out = Vec::with_capacity(bodies.len());
    for (name, vm) in bodies {
        let mut v = vm.clone();
        v.name = None;
        let mut diff = overrides(&base_json, &serde_json::to_value(&v)?)
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let Value::Object(m) = &mut diff {
            m.insert("name".into(), Value::from(name.clone()));
        }
        out.push(serde_json::from_value::<VirtualMachine>(diff)?);
    }
    Ok(CreateBatch {
        base: BaseProfile {
            resource_group_name: resource_group.to_owned(),
            compute_api_version: Some(compute_api_version.to_owned()),
            vm: base_vm,
        },
        overrides: out,
        retry: retry_policy(),
    })
}

/// Runs one chunk (at most [`MAX_RESOURCES_PER_REQUEST`] writes of one kind, their intents
/// open) as one Compute Schedule request, then follows each VM like a single write. Every
/// node of the chunk is claimed by the caller; each is released once its outcome is
/// recorded.
pub(crate) async fn run_chunk(
    sh: std::sync::Arc<Shared>,
    spec: rb_core::PoolSpec,
    generation: i64,
    kind: VmActionKind,
    chunk: Vec<(rb_core::VmAction, i64)>,
) {
    // A create's body first (its node's bootstrap token and script): one that cannot be
    // made fails that create alone, before any call, as a single create's would.
    let mut writes = Vec::with_capacity(chunk.len());
    for (action, intent) in chunk {
        let body = if kind == VmActionKind::Create {
            match crate::execute::create_body(&sh, &spec, &action).await {
                Ok(body) => Some(body),
                Err(e) => {
                    conclude(&sh, &spec.name, generation, &action, intent, Err(e)).await;
                    continue;
                }
            }
        } else {
            None
        };
        writes.push((action, intent, body));
    }
    if writes.is_empty() {
        return;
    }
    let mut stopping = sh.stopping.subscribe();
    let answer = tokio::select! {
        a = request(&sh, kind, &writes) => a,
        // Stopping before the service answered: the intents stay open without an
        // operation, and the next start looks at each VM.
        _ = stopping.wait_for(|s| *s) => return,
    };
    let accepted = tokio::time::Instant::now();
    let results: Vec<Result<BulkOperation, ArmError>> = match answer {
        Ok(results) => results,
        // The request itself failed: every write of it did.
        Err(e) => writes.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut following = tokio::task::JoinSet::new();
    for ((action, intent, _), result) in writes.into_iter().zip(results) {
        let op = match result {
            Ok(op) => op,
            Err(e) => {
                conclude(&sh, &spec.name, generation, &action, intent, Err(e.into())).await;
                continue;
            }
        };
        let _ = sh.store.set_intent_operation(intent, &op.to_intent()).await;
        let (sh2, pool) = (sh.clone(), spec.name.clone());
        following.spawn(async move {
            let mut stopping = sh2.stopping.subscribe();
            let followed = tokio::select! {
                f = crate::follow::outcome(&sh2, kind, &action.node, crate::follow::Handle::Bulk(&op), accepted) => f,
                _ = stopping.wait_for(|s| *s) => return,
            };
            let (result, recorded) = followed;
            conclude(&sh2, &pool, generation, &action, intent, result.map_err(Into::into)).await;
            drop(recorded);
        });
    }
    sh.settled.notify_one();
    while following.join_next().await.is_some() {}
}

/// The chunk's request: one answer per write, in the chunk's order — its operation, or the
/// error the service answered for that VM. An error for the whole request fails every write.
async fn request(
    sh: &Shared,
    kind: VmActionKind,
    writes: &[(rb_core::VmAction, i64, Option<VirtualMachine>)],
) -> Result<Vec<Result<BulkOperation, ArmError>>, ArmError> {
    let _permit = sh.permits.clone().acquire_owned().await;
    let location = sh.cfg.placement.location.clone();
    let rg = &sh.cfg.resource_group;
    let answer = match kind {
        VmActionKind::Create => {
            let bodies: Vec<(String, VirtualMachine)> = writes
                .iter()
                .filter_map(|(a, _, b)| Some((a.node.clone(), b.clone()?)))
                .collect();
            let compute = sh.arm.config().api_versions.compute.clone();
            let batch = create_batch(rg, &compute, &bodies).map_err(|e| {
                ArmError::new(
                    azure::ErrorKind::Config,
                    "InvalidRequestContent",
                    format!("cannot build the Compute Schedule create request: {e}"),
                )
            })?;
            sh.arm.execute_create(&location, &batch).await?
        }
        _ => {
            let ids: Vec<String> = writes
                .iter()
                .map(|(a, _, _)| sh.arm.vm_id(rg, &a.node))
                .collect();
            match kind {
                VmActionKind::Start => {
                    sh.arm
                        .execute_start(&location, &ids, retry_policy())
                        .await?
                }
                VmActionKind::Deallocate => {
                    sh.arm
                        .execute_deallocate(&location, &ids, retry_policy())
                        .await?
                }
                _ => {
                    sh.arm
                        .execute_delete(&location, &ids, retry_policy())
                        .await?
                }
            }
        }
    };
    let results = answer.results.unwrap_or_default();
    Ok(writes
        .iter()
        .enumerate()
        .map(|(i, (action, _, _))| {
            // By the VM's name; a create's answer is in the request's order too.
            let r = results
                .iter()
                .find(|r| {
                    r.resource_id
                        .as_deref()
                        .and_then(|id| id.rsplit('/').next())
                        .is_some_and(|n| n.eq_ignore_ascii_case(&action.node))
                })
                .or(results.get(i).filter(|_| kind == VmActionKind::Create));
            let Some(r) = r else {
                return Err(ArmError::new(
                    azure::ErrorKind::Operation,
                    "MissingResult",
                    format!("Compute Schedule answered nothing for {}", action.node),
                ));
            };
            if let Some(e) = bulk_error(r) {
                return Err(e);
            }
            match &r.operation {
                Some(op) => Ok(BulkOperation {
                    location: location.clone(),
                    operation_id: op.operation_id.clone(),
                }),
                None => Err(ArmError::new(
                    azure::ErrorKind::Operation,
                    "MissingOperation",
                    format!("Compute Schedule gave {} no operation", action.node),
                )),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auto_goes_bulk_past_one_request_and_never_for_forgets() {
        use VmActionKind::*;
        assert!(!wants_bulk(BulkMode::Auto, Create, 100));
        assert!(wants_bulk(BulkMode::Auto, Create, 101));
        assert!(!wants_bulk(BulkMode::Off, Create, 2000));
        assert!(wants_bulk(BulkMode::Always, Deallocate, 1));
        assert!(!wants_bulk(BulkMode::Always, Forget, 5));
    }

    #[test]
    fn an_override_is_what_differs_objects_key_by_key_arrays_whole() {
        let base = json!({"location": "westeurope", "tags": {"a": "1", "b": "2"},
                          "properties": {"osProfile": {"computerName": "maya-00001", "adminUsername": "rb"},
                                         "networkProfile": {"nics": [{"name": "maya-00001-nic"}]}}});
        let vm = json!({"location": "westeurope", "tags": {"a": "1", "b": "2"},
                        "properties": {"osProfile": {"computerName": "maya-00002", "adminUsername": "rb"},
                                       "networkProfile": {"nics": [{"name": "maya-00002-nic"}]}}});
        assert_eq!(
            overrides(&base, &vm),
            Some(
                json!({"properties": {"osProfile": {"computerName": "maya-00002"},
                                       "networkProfile": {"nics": [{"name": "maya-00002-nic"}]}}})
            )
        );
        assert_eq!(overrides(&base, &base), None);
    }

    #[test]
    fn the_intent_keeps_a_bulk_operation_apart_from_an_arm_one() {
        let op = BulkOperation {
            location: "westeurope".into(),
            operation_id: "23480d2f-1dca-4610-afb4-dd25eec1f34a".into(),
        };
        let v = op.to_intent();
        assert_eq!(BulkOperation::from_intent(&v), Some(op));
        let arm = json!({"method": "PUT", "resource_url": "https://arm/x", "completed": false});
        assert_eq!(BulkOperation::from_intent(&arm), None);
    }
}
