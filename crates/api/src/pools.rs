//! `/v1/pools`: desired state of pools. Each write validates, persists in the store, records
//! an event naming the caller, wakes the controller, and returns; the controller makes Azure
//! match later. Nothing is written unless the whole request is valid.
//!
//! About 600 lines with its tests: one handler per pool route, each short; they share the
//! parsing and status helpers here.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rb_core::task::{ForceDelete, Task, TaskStatuses};
use rb_core::{PoolPlan, PoolSpec};
use serde_json::{Value, json};
use store::{NewEvent, PoolRecord, Store};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::{Admin, Caller, Reader};
use crate::error::ApiError;
use crate::extract::{Body, PoolName, RequestBody};
use crate::pool_write::{self, Origin, PoolWrite, PoolWriteError, Written, write_pool};
use crate::view::{self, Pool, pool_json};

/// `GET /v1/pools` → `{"pools":[pool...]}`, ordered by name; the `bootstrap` sections
/// redacted unless the caller is an admin.
#[utoipa::path(
    get,
    path = "/v1/pools",
    tag = "pools",
    security(("bearer" = ["viewer", "requester", "admin"])),
    responses((status = 200, description = "Every pool with its status, by name", body = PoolList))
)]
pub async fn list(
    Reader(caller): Reader,
    State(st): State<ApiState>,
) -> Result<Json<PoolList>, ApiError> {
    let records = st.store.list_pools().await?;
    let vms = st.store.list_vms(None).await?;
    let tasks = task_map(&st.store).await?;
    let now = view::now();
    let mut pools = Vec::with_capacity(records.len());
    for r in &records {
        let desired = st.store.desired(r, now).await?;
        let mine: Vec<_> = vms.iter().filter(|v| v.pool == r.spec.name).collect();
        let mut pool = pool_json(r, desired, &mine, &tasks);
        if !caller.sees_bootstrap() {
            view::redact_pool(&mut pool);
        }
        pools.push(pool);
    }
    Ok(Json(PoolList { pools }))
}

/// `POST /v1/pools` (body: PoolSpec) → 201 with the pool; 409 if the name is taken.
#[utoipa::path(
    post,
    path = "/v1/pools",
    tag = "pools",
    security(("bearer" = ["admin"])),
    request_body = rb_core::PoolSpec,
    responses(
        (status = 201, description = "Created", body = Pool),
        (status = 409, description = "A pool of that name exists", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid spec, naming the field", body = crate::error::ErrorBody),
    )
)]
pub async fn create(
    Admin(caller): Admin,
    State(st): State<ApiState>,
    Body(spec): Body<PoolSpec>,
) -> Result<Response, ApiError> {
    check_spec(&st, &spec)?;
    check_batch_account(&st.store, &spec).await?;
    let written = write(&st, &caller, &spec, PoolWrite::Create).await?;
    let pool = pool_with_status(&st.store, written.record()).await?;
    let mut response = (StatusCode::CREATED, Json(pool)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/pools/{}", spec.name)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/pools/{name}` → the pool, its `bootstrap` section redacted unless the caller is
/// an admin; 404 if missing.
#[utoipa::path(
    get,
    path = "/v1/pools/{name}",
    tag = "pools",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")),
    responses(
        (status = 200, description = "The pool", body = Pool),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
    )
)]
pub async fn get(
    Reader(caller): Reader,
    PoolName(name): PoolName,
    State(st): State<ApiState>,
) -> Result<Json<Pool>, ApiError> {
    let record = existing(&st.store, &name).await?;
    let mut pool = pool_with_status(&st.store, &record).await?;
    if !caller.sees_bootstrap() {
        view::redact_pool(&mut pool);
    }
    Ok(Json(pool))
}

/// `PUT /v1/pools/{name}` (body: PoolSpec, same name) → 200 with the pool; 404 if missing,
/// 409 if it is being deleted.
#[utoipa::path(
    put,
    path = "/v1/pools/{name}",
    tag = "pools",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")),
    request_body = rb_core::PoolSpec,
    responses(
        (status = 200, description = "Replaced", body = Pool),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
        (status = 409, description = "Being deleted", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid spec, naming the field", body = crate::error::ErrorBody),
    )
)]
pub async fn replace(
    Admin(caller): Admin,
    PoolName(name): PoolName,
    State(st): State<ApiState>,
    Body(spec): Body<PoolSpec>,
) -> Result<Json<Pool>, ApiError> {
    check_spec(&st, &spec)?;
    if spec.name != name {
        return Err(ApiError::unprocessable(
            "invalid_spec",
            format!(
                "the body names pool {:?} but the path names {name:?}; a pool cannot be renamed",
                spec.name
            ),
        )
        .with_field("name"));
    }
    let written = write(&st, &caller, &spec, PoolWrite::Replace).await?;
    Ok(Json(pool_with_status(&st.store, written.record()).await?))
}

/// Stores a pool spec through the one path pools are written by ([`write_pool`]), then
/// wakes the controller. A missing pool is a 404, a taken name a 409 naming `name`, a
/// change that cannot be made a 422 naming the field.
async fn write(
    st: &ApiState,
    caller: &Caller,
    spec: &PoolSpec,
    how: PoolWrite,
) -> Result<Written, ApiError> {
    let origin = Origin::Api {
        actor: &caller.name,
    };
    let written = write_pool(&st.store, spec, how, &st.secret_names, origin)
        .await
        .map_err(|err| match err {
            PoolWriteError::Invalid(e) => ApiError::invalid_spec(e),
            PoolWriteError::Store(e @ store::StoreError::Conflict { .. })
                if how == PoolWrite::Create =>
            {
                ApiError::from(e).with_field("name")
            }
            PoolWriteError::Store(store::StoreError::NotFound { .. }) => {
                ApiError::not_found(format!("pool {:?} does not exist", spec.name))
            }
            PoolWriteError::Store(e) | PoolWriteError::Event(e) => e.into(),
        })?;
    st.wake.notify_one();
    Ok(written)
}

/// The query of `DELETE /v1/pools/{name}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Forget the pool once nothing tagged with it remains in Azure
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    force: bool,
}

/// `DELETE /v1/pools/{name}` → 202 with the pool (`"deleting": true`): the controller drains
/// it to zero resources, then removes it. Repeating it is harmless.
///
/// `?force=true` also records a request to forget the pool: the controller (never this
/// handler: handlers do not call Azure) forgets it as soon as nothing tagged with it remains
/// in Azure, whatever its inventory and intents say, and else shows what remains as the
/// pool's `ForceDeleteBlocked` condition.
#[utoipa::path(
    delete,
    path = "/v1/pools/{name}",
    tag = "pools",
    security(("bearer" = ["admin"])),
    params(
        ("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$"),
        DeleteQuery,
    ),
    responses(
        (status = 202, description = "Deletion under way", body = Pool),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
    )
)]
pub async fn delete(
    Admin(caller): Admin,
    PoolName(name): PoolName,
    State(st): State<ApiState>,
    crate::extract::JsonQuery(query): crate::extract::JsonQuery<DeleteQuery>,
) -> Result<Response, ApiError> {
    let old = existing(&st.store, &name).await?;
    let record = st.store.mark_pool_deleting(&name).await?;
    if query.force {
        // Tied to this pool's row (created_at), so a pool of the same name made later is
        // never forgotten on this request.
        st.store
            .put_task_status(
                &Task::force_delete(&name),
                &ForceDelete {
                    created_at: record.created_at,
                    by: caller.name.clone(),
                    requested_at: view::now(),
                },
            )
            .await?;
        crate::audit(
            &st,
            NewEvent {
                kind: "pool.force_delete".to_string(),
                pool: Some(name.clone()),
                node: None,
                actor: caller.name.clone(),
                message: "forced deletion requested: the pool is forgotten once nothing tagged with it remains in Azure".to_string(),
                data: json!({}),
            },
        )
        .await;
    }
    let message = if old.deleting {
        "pool deletion requested again (already in progress)".to_string()
    } else {
        "pool deletion requested: its nodes will be removed, then the pool".to_string()
    };
    record_change(&st, &caller, "pool.deleting", &name, message, json!({})).await;
    let pool = pool_with_status(&st.store, &record).await?;
    Ok((StatusCode::ACCEPTED, Json(pool)).into_response())
}

/// `POST /v1/pools/{name}/scale` `{"target": N}` → 202 with the pool; 422 naming `target` if
/// N is not an integer in [min, max].
#[utoipa::path(
    post,
    path = "/v1/pools/{name}/scale",
    tag = "pools",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")),
    request_body = ScaleBody,
    responses(
        (status = 202, description = "New target stored", body = Pool),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
        (status = 409, description = "Being deleted", body = crate::error::ErrorBody),
        (status = 422, description = "Target outside [min, max]", body = crate::error::ErrorBody),
    )
)]
pub async fn scale(
    Admin(caller): Admin,
    PoolName(name): PoolName,
    State(st): State<ApiState>,
    Body(ScaleBody { target: requested }): Body<ScaleBody>,
) -> Result<Response, ApiError> {
    let old = existing(&st.store, &name).await?;
    if old.deleting {
        return Err(ApiError::conflict(format!(
            "pool {name:?} is being deleted"
        )));
    }
    let spec = &old.spec;
    let target = u32::try_from(requested)
        .ok()
        .filter(|t| (spec.min..=spec.max).contains(t))
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_target",
                format!(
                    "target {requested} is outside [min {}, max {}]",
                    spec.min, spec.max
                ),
            )
            .with_field("target")
        })?;
    // The bounds were read just before; a concurrent PUT that narrows them can still slip in
    // between, and the controller clamps the desired count to [min, max] regardless.
    let record = st.store.set_target(&name, target).await?;
    let message = format!("target {} → {target}", spec.target);
    let data = json!({ "from": spec.target, "to": target });
    record_change(&st, &caller, "pool.scaled", &name, message, data).await;
    let pool = pool_with_status(&st.store, &record).await?;
    Ok((StatusCode::ACCEPTED, Json(pool)).into_response())
}

/// `GET /v1/pools/{name}/plan` → what the next activation would do, with reasons, from the
/// store alone (the inventory as last observed; no Azure call).
#[utoipa::path(
    get,
    path = "/v1/pools/{name}/plan",
    tag = "pools",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")),
    responses(
        (status = 200, description = "What the next activation would do, with reasons, and the writes its backoff holds back", body = crate::view::PlanView),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
    )
)]
pub async fn plan_pool(
    Reader(_): Reader,
    PoolName(name): PoolName,
    State(st): State<ApiState>,
) -> Result<Json<view::PlanView>, ApiError> {
    let record = existing(&st.store, &name).await?;
    Ok(Json(what_if_held(&st.store, &record).await?))
}

/// `GET /v1/pools/{name}/bootstrap` → the exact script the pool's next node would get
/// (`cloud-init` or `powershell`; for a Batch pool, its start task and the script a node
/// gets when it enrolls), with every secret and token masked; 404 naming
/// `bootstrap` if the pool has no such section. Admin: it shows the farm's set-up (shares,
/// domain, accounts) even without secrets. Secrets that the daemon cannot resolve now are
/// listed by field (never their values).
#[utoipa::path(
    get,
    path = "/v1/pools/{name}/bootstrap",
    tag = "pools",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")),
    responses(
        (status = 200, description = "The script a new node would run, secrets masked", body = BootstrapPreview),
        (status = 404, description = "No such pool, or no bootstrap section", body = crate::error::ErrorBody),
        (status = 422, description = "The section cannot be rendered", body = crate::error::ErrorBody),
    )
)]
pub async fn bootstrap_preview(
    Admin(_): Admin,
    PoolName(name): PoolName,
    State(st): State<ApiState>,
) -> Result<Json<BootstrapPreview>, ApiError> {
    use rb_core::bootstrap;
    let record = existing(&st.store, &name).await?;
    let Some(section) = &record.spec.bootstrap else {
        return Err(
            ApiError::not_found(format!("pool {name:?} has no bootstrap section"))
                .with_field("bootstrap"),
        );
    };
    // Reading a secret may block on a file: off the async runtime.
    let refs: Vec<(String, rb_core::SecretRef)> = section
        .secret_refs()
        .into_iter()
        .map(|(field, r)| (field, r.clone()))
        .collect();
    let resolve = st.resolve_secret.clone();
    let unresolved: Vec<String> = tokio::task::spawn_blocking(move || {
        refs.into_iter()
            .filter(|(_, r)| resolve(r).is_err())
            .map(|(field, r)| format!("{field} ({})", r.secret))
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal("cannot check the pool's secrets", &e))?;
    if record.spec.mode == rb_core::PoolMode::Batch {
        // Batch: the pool's start task, and what a node gets back when it enrolls (its
        // Batch node id is known only then).
        let node = "AZ_BATCH_NODE_ID";
        let merged = record
            .spec
            .node_bootstrap()
            .unwrap_or_else(|| section.clone());
        let ctx = st.bootstrap.node(&name, node, bootstrap::MASK);
        let script =
            bootstrap::render_enrollment_script(&merged, record.spec.os, &ctx, &bootstrap::masked)
                .map_err(ApiError::invalid_spec)?;
        let task =
            bootstrap::render_start_task(record.spec.os, &st.bootstrap.api_url, bootstrap::MASK);
        let format = match record.spec.os {
            rb_core::spec::Os::Linux => "batch-shell",
            rb_core::spec::Os::Windows => "batch-powershell",
        };
        return Ok(Json(BootstrapPreview {
            pool: name,
            node: node.to_string(),
            format: format.to_string(),
            script,
            custom_data_bytes: None,
            custom_data_limit: None,
            start_task: Some(StartTaskPreview {
                command_line: task.command_line,
                environment: task
                    .environment
                    .iter()
                    .map(|(k, v)| NameValue {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            }),
            unresolved_secrets: unresolved,
        }));
    }
    let node = rb_core::plan::node_name(&name, record.next_index);
    let ctx = st.bootstrap.node(&name, &node, bootstrap::MASK);
    let merged = record
        .spec
        .node_bootstrap()
        .unwrap_or_else(|| section.clone());
    let rendered = bootstrap::render_node(&merged, record.spec.os, &ctx, &bootstrap::masked)
        .map_err(ApiError::invalid_spec)?;
    Ok(Json(BootstrapPreview {
        pool: name,
        node,
        format: rendered.format.to_string(),
        custom_data_bytes: Some(bootstrap::base64_len(rendered.text.len())),
        script: rendered.text,
        custom_data_limit: Some(bootstrap::MAX_CUSTOM_DATA_BASE64),
        start_task: None,
        unresolved_secrets: unresolved,
    }))
}

/// `GET /v1/pools`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolList {
    pub pools: Vec<Pool>,
}

/// `GET /v1/pools/{name}/bootstrap`: what a new node of the pool would run.
#[derive(Debug, Serialize, ToSchema)]
pub struct BootstrapPreview {
    pub pool: String,
    /// The name the next node would get.
    pub node: String,
    /// `cloud-init` (Linux VMs), `powershell` (Windows VMs), `batch-shell` or
    /// `batch-powershell` (what a Batch node gets when it enrolls).
    pub format: String,
    /// The exact script, with secrets and the node token masked.
    pub script: String,
    /// VM pools: its size as base64 `customData`, and Azure's limit.
    pub custom_data_bytes: Option<usize>,
    pub custom_data_limit: Option<usize>,
    /// Batch pools: the pool's start task (the enrollment token masked).
    pub start_task: Option<StartTaskPreview>,
    /// Secret references the daemon cannot resolve now (a node would fail to be created).
    pub unresolved_secrets: Vec<String>,
}

/// A Batch pool's start task as renderburst sets it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartTaskPreview {
    pub command_line: String,
    /// `environmentSettings`: name and value.
    pub environment: Vec<NameValue>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// A Batch pool's account against the controller's last listing of the subscription's Batch
/// accounts (task status `batch-accounts`): absent there is a 422 naming `batch.account`.
/// Not listed yet: accepted, and the controller shows `BatchAccountNotFound` if it is missing.
async fn check_batch_account(store: &Store, spec: &PoolSpec) -> Result<(), ApiError> {
    let Some(b) = &spec.batch else {
        return Ok(());
    };
    let Some((listing, _)) = store.task_status(&Task::batch_accounts()).await? else {
        return Ok(());
    };
    let rg = b
        .resource_group
        .clone()
        .unwrap_or_else(|| listing.default_resource_group.clone());
    let key = format!(
        "{}/{}",
        rg.to_ascii_lowercase(),
        b.account.to_ascii_lowercase()
    );
    let known = listing.accounts.contains(&key);
    if known {
        return Ok(());
    }
    let at = view::rfc3339(listing.observed_at)
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    Err(ApiError::unprocessable(
        "invalid_spec",
        format!(
            "Batch account {:?} does not exist in resource group {rg:?} (Azure listed the subscription's Batch accounts at {at}; one created since is seen within a minute)",
            b.account
        ),
    )
    .with_field("batch.account"))
}

/// The plan for a pool from the store alone: the same read model the controller plans
/// from (`Store::pool_snapshot`), with the holds of the controller's backoff (stored) applied as
/// the controller applies them.
pub async fn what_if(store: &Store, record: &PoolRecord) -> Result<PoolPlan, ApiError> {
    Ok(held_plan(store, record).await?.0)
}

/// [`what_if`], with what the holds keep back: the plan made without them, compared kind by
/// kind with the plan made with them.
pub async fn what_if_held(store: &Store, record: &PoolRecord) -> Result<view::PlanView, ApiError> {
    let (plan, held, held_until) = held_plan(store, record).await?;
    Ok(view::PlanView::new(&plan, held, held_until))
}

type HeldPlan = (PoolPlan, Vec<view::HeldWrites>, Option<String>);

async fn held_plan(store: &Store, record: &PoolRecord) -> Result<HeldPlan, ApiError> {
    let now = view::now();
    let rows = store.list_backoffs(Some(&record.spec.name)).await?;
    let snapshot = store
        .pool_snapshot(record, &Default::default(), now)
        .await?;
    let free = snapshot.plan(&record.spec, &rb_core::CreateGate::open(), now);
    let create = rows
        .iter()
        .find(|r| r.kind == rb_core::ActionKind::Create)
        .map(|r| r.hold_at(record.generation, now));
    let mut plan = if create.is_some() && record.spec.mode == rb_core::PoolMode::Vm {
        snapshot.plan(
            &record.spec,
            &rb_core::CreateGate::backoff(create.as_ref()),
            now,
        )
    } else {
        free.clone()
    };
    let others: Vec<(rb_core::ActionKind, rb_core::Hold)> = rows
        .iter()
        .filter(|r| {
            r.kind != rb_core::ActionKind::Create || record.spec.mode != rb_core::PoolMode::Vm
        })
        .map(|r| (r.kind, r.hold_at(record.generation, now)))
        .collect();
    plan.apply_holds(&others, now);
    let mut held_until: Option<i64> = None;
    let held = rows
        .iter()
        .map(|r| {
            let hold = r.hold_at(record.generation, now);
            let steps = free.count(r.kind).saturating_sub(plan.count(r.kind));
            if steps > 0 && now < hold.until {
                held_until = Some(held_until.map_or(hold.until, |t| t.min(hold.until)));
            }
            view::HeldWrites {
                kind: r.kind,
                steps: u32::try_from(steps).unwrap_or(u32::MAX),
                until: view::rfc3339(hold.until)
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                attempts: r.streak,
                code: r.code.clone(),
                condition: rb_core::Condition::parse(&r.condition, Some(r.since)),
            }
        })
        .collect();
    Ok((
        plan,
        held,
        held_until.and_then(|t| view::rfc3339(t).as_str().map(str::to_owned)),
    ))
}

/// The rules of a stored spec ([`pool_write::check_spec`]) before anything else is read:
/// 422 naming the field.
fn check_spec(st: &ApiState, spec: &PoolSpec) -> Result<(), ApiError> {
    pool_write::check_spec(spec, &st.secret_names).map_err(ApiError::invalid_spec)
}

/// `POST /v1/pools/{name}/scale`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    /// In [min, max] of the pool.
    pub target: u64,
}

impl RequestBody for ScaleBody {
    const CODE: &'static str = "invalid_target";
}

/// `{"target": N}` with N a non-negative integer, and nothing else.
#[cfg(test)]
fn parse_target(body: &Value) -> Result<u64, ApiError> {
    crate::extract::decode::<ScaleBody>(body.clone(), ScaleBody::CODE).map(|b| b.target)
}

async fn existing(store: &Store, name: &str) -> Result<PoolRecord, ApiError> {
    store
        .get_pool(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pool {name:?} does not exist")))
}

/// The pool with its status, reading its inventory and task statuses.
async fn pool_with_status(store: &Store, record: &PoolRecord) -> Result<Pool, ApiError> {
    let desired = store.desired(record, view::now()).await?;
    let vms = store.list_vms(Some(&record.spec.name)).await?;
    let tasks = task_map(store).await?;
    let mine: Vec<_> = vms.iter().collect();
    Ok(pool_json(record, desired, &mine, &tasks))
}

pub(crate) async fn task_map(store: &Store) -> Result<TaskStatuses, ApiError> {
    Ok(store.task_statuses().await?)
}

/// After a successful write: the audit event, then the wake-up. The change is already stored,
/// so a failure to record the event is logged rather than turned into an error the client
/// would take for "nothing happened".
async fn record_change(
    st: &ApiState,
    caller: &Caller,
    kind: &str,
    pool: &str,
    message: String,
    data: Value,
) {
    crate::audit(
        st,
        NewEvent {
            kind: kind.to_string(),
            pool: Some(pool.to_string()),
            node: None,
            actor: caller.name.clone(),
            message,
            data,
        },
    )
    .await;
    st.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_non_negative_integers_alone() {
        assert_eq!(parse_target(&json!({"target": 3})).unwrap(), 3);
        for (body, field) in [
            (json!({"target": -1}), "target"),
            (json!({"target": 1.5}), "target"),
            (json!({"target": "3"}), "target"),
            (json!({}), "target"),
            (json!({"target": 1, "extra": 2}), "extra"),
            (json!([1]), "body"),
        ] {
            let err = parse_target(&body).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
    }
}
