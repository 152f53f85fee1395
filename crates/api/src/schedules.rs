//! `/v1/schedules`: off-hours schedules (issue 7). Admins create and delete them; every
//! role reads them, with each one's next firing in its zone and in UTC, and its last firing.
//!
//! A write validates the whole body first (a bad `cron` or `timezone` is a 422 naming that
//! field, an unknown pool a 404 naming `pool`) and stores nothing on error. The store tells
//! the scheduler of every change itself; the scheduler, not the API, applies firings.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rb_core::{ScheduleSpec, Timing, UnixSeconds};
use serde::Serialize;
use serde_json::json;
use store::{NewEvent, ScheduleRecord, StoreError};
use utoipa::ToSchema;

use crate::auth::{Admin, Reader};
use crate::error::ApiError;
use crate::extract::{Body, path_param};
use crate::view::{self, Rfc3339};
use crate::{ApiState, audit};

const CODE: &str = "invalid_schedule";

/// A schedule: its spec's fields, plus its next firing (in UTC and in its zone) and its last.
#[derive(Debug, Serialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    /// Exactly one of `pool` and `pool_tag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub pool: Option<String>,
    /// Every pool whose tags include all of these pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub pool_tag: Option<BTreeMap<String, String>>,
    pub cron: String,
    pub timezone: String,
    pub set: rb_core::ScheduleSet,
    /// UTC; null if the pattern never fires again.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_firing_utc: Option<Rfc3339>,
    /// The same instant, RFC 3339 with the zone's offset then.
    pub next_firing_local: Option<String>,
    /// The scheduled instant of the last firing applied.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_firing_utc: Option<Rfc3339>,
    pub last_firing_local: Option<String>,
    /// When it was applied (later than the firing after downtime).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_applied_at: Option<Rfc3339>,
    /// What it did.
    pub last_outcome: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Rfc3339,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Rfc3339,
}

/// `GET /v1/schedules`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// A schedule as shown: its spec, its next firing (UTC and local) and its last firing.
pub fn schedule_json(r: &ScheduleRecord, now: UnixSeconds) -> Schedule {
    let timing = Timing::new(&r.spec.cron, &r.spec.timezone).ok();
    let local = |t: Option<UnixSeconds>| match (&timing, t) {
        (Some(timing), Some(t)) => Some(timing.local_rfc3339(t)),
        _ => None,
    };
    let next = timing.as_ref().and_then(|t| t.next_after(now));
    // Every field named: a field added to the spec does not compile until it is shown.
    let ScheduleSpec {
        name,
        pool,
        pool_tag,
        cron,
        timezone,
        set,
    } = r.spec.clone();
    Schedule {
        name,
        pool,
        pool_tag,
        cron,
        timezone,
        set,
        next_firing_utc: next.map(Rfc3339),
        next_firing_local: local(next),
        last_firing_utc: r.last_fired_at.map(Rfc3339),
        last_firing_local: local(r.last_fired_at),
        last_applied_at: r.last_applied_at.map(Rfc3339),
        last_outcome: r.last_outcome.clone(),
        created_at: Rfc3339(r.created_at),
        updated_at: Rfc3339(r.updated_at),
    }
}

/// A schedule name from the path; a malformed one is a 400 naming `name`.
pub struct ScheduleName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ScheduleName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let name = path_param(parts, state, "name").await?;
        rb_core::schedule::validate_schedule_name(&name)
            .map_err(|e| ApiError::bad_request("invalid_name", e.message).with_field("name"))?;
        Ok(ScheduleName(name))
    }
}

/// `GET /v1/schedules` → `{"schedules":[...]}`, by name.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    security(("bearer" = ["viewer", "requester", "admin"])),
    responses((status = 200, description = "Every schedule with its next and last firing, by name", body = ScheduleList))
)]
pub async fn list(
    Reader(_): Reader,
    State(st): State<ApiState>,
) -> Result<Json<ScheduleList>, ApiError> {
    let now = view::now();
    let schedules = st
        .store
        .list_schedules()
        .await?
        .iter()
        .map(|r| schedule_json(r, now))
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// `POST /v1/schedules` `{"name","pool"|"pool_tag","cron","timezone","set"}` → 201 with the
/// schedule. 422 naming the field (`cron`, `timezone`, `set.max`...); 404 naming `pool` if
/// that pool does not exist; 409 naming `name` if the name is taken.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    security(("bearer" = ["admin"])),
    request_body = rb_core::ScheduleSpec,
    responses(
        (status = 201, description = "Created", body = Schedule),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
        (status = 409, description = "A schedule of that name exists", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid schedule, naming the field", body = crate::error::ErrorBody),
    )
)]
pub async fn create(
    Admin(caller): Admin,
    State(st): State<ApiState>,
    Body(spec): Body<ScheduleSpec>,
) -> Result<Response, ApiError> {
    spec.validate()
        .map_err(|e| ApiError::unprocessable(CODE, e.message).with_field(e.field))?;
    if let Some(pool) = &spec.pool
        && st.store.get_pool(pool).await?.is_none()
    {
        return Err(ApiError::not_found(format!("pool {pool:?} does not exist")).with_field("pool"));
    }
    // Two schedules setting one bound of one pool differently at the same minute: refused
    // now, rather than a result that depends on the order of application later. Every
    // stored schedule is compared (those of the configuration file are stored too), and a
    // tag selector reaches the pools that carry its tags now (pools being deleted aside).
    let now = view::now();
    let pools: rb_core::schedule_clash::PoolTags = st
        .store
        .list_pools()
        .await?
        .into_iter()
        .filter(|p| !p.deleting)
        .map(|p| (p.spec.name, p.spec.tags))
        .collect();
    for other in st.store.list_schedules().await? {
        if other.spec.name == spec.name {
            continue;
        }
        if let Some(clash) = rb_core::schedule_clash::clash(&spec, &other.spec, &pools, now) {
            return Err(
                ApiError::unprocessable(CODE, clash.message(&spec, &other.spec))
                    .with_field(format!("set.{}", clash.bound)),
            );
        }
    }
    let record = st
        .store
        .create_schedule(&spec)
        .await
        .map_err(|err| match err {
            StoreError::Conflict { .. } => ApiError::from(err).with_field("name"),
            other => other.into(),
        })?;
    let target = match (&spec.pool, &spec.pool_tag) {
        (Some(pool), _) => format!("pool {pool}"),
        (None, Some(tags)) => {
            let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("pools tagged {}", pairs.join(", "))
        }
        (None, None) => String::new(),
    };
    audit(
        &st,
        NewEvent {
            kind: "schedule.created".into(),
            pool: spec.pool.clone(),
            node: None,
            actor: caller.name,
            message: format!(
                "schedule {} created: {} at \"{}\" ({}) sets {}",
                spec.name,
                target,
                spec.cron,
                spec.timezone,
                spec.set.describe()
            ),
            data: json!({ "schedule": spec }),
        },
    )
    .await;
    let mut response = (
        StatusCode::CREATED,
        Json(schedule_json(&record, view::now())),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/schedules/{}", spec.name)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/schedules/{name}` → the schedule; 404 if unknown.
#[utoipa::path(
    get,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(("name" = String, Path, description = "Schedule name: [a-z][a-z0-9-]{0,62}")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = 404, description = "No such schedule", body = crate::error::ErrorBody),
    )
)]
pub async fn get(
    Reader(_): Reader,
    ScheduleName(name): ScheduleName,
    State(st): State<ApiState>,
) -> Result<Json<Schedule>, ApiError> {
    let record = st
        .store
        .get_schedule(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("schedule {name:?} does not exist")))?;
    Ok(Json(schedule_json(&record, view::now())))
}

/// `DELETE /v1/schedules/{name}` → 200 with the deleted schedule; 404 if unknown. What its
/// firings set on pools stays.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Schedule name: [a-z][a-z0-9-]{0,62}")),
    responses(
        (status = 200, description = "Deleted", body = Schedule),
        (status = 404, description = "No such schedule", body = crate::error::ErrorBody),
    )
)]
pub async fn delete(
    Admin(caller): Admin,
    ScheduleName(name): ScheduleName,
    State(st): State<ApiState>,
) -> Result<Json<Schedule>, ApiError> {
    let record = st.store.delete_schedule(&name).await?;
    audit(
        &st,
        NewEvent {
            kind: "schedule.deleted".into(),
            pool: record.spec.pool.clone(),
            node: None,
            actor: caller.name,
            message: format!("schedule {name} deleted"),
            data: json!({ "schedule": record.spec }),
        },
    )
    .await;
    Ok(Json(schedule_json(&record, view::now())))
}
