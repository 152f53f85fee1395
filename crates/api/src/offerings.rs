//! Offerings (a VM size at a priority) that Azure refused for capacity or quota, which the
//! planners avoid until the mark lapses (an hour for capacity, ten minutes for quota, four
//! hours for a size the region does not offer).
//!
//! - `GET /v1/offerings/unavailable` (viewer): the marks in force: subscription-wide ones
//!   (VM pools) and each Batch pool's own (Batch account quotas are not the subscription's).
//! - `DELETE /v1/offerings/unavailable` (admin): clears them all, for when capacity or quota
//!   is back sooner (a quota raised, a region recovered). The next activations try the
//!   preferred sizes again; a refusal marks them again.

use axum::Json;
use axum::extract::State;
use rb_core::{PoolMode, Unavailable};
use serde::Serialize;
use serde_json::json;
use store::NewEvent;
use utoipa::ToSchema;

use crate::auth::{Admin, Reader};
use crate::error::ApiError;
use crate::view::{self, Rfc3339};
use crate::{ApiState, audit};

/// `GET /v1/offerings/unavailable`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailableList {
    pub unavailable: Vec<UnavailableMark>,
}

/// An offering the planners avoid until `until`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailableMark {
    pub size: String,
    /// `regular` or `spot`.
    pub priority: rb_core::Priority,
    /// `capacity`, `quota` or `sku_not_available`.
    #[schema(value_type = String)]
    pub reason: rb_core::UnavailableReason,
    /// The ARM or Batch error code that caused it.
    pub code: String,
    #[schema(value_type = String, format = DateTime)]
    pub since: Rfc3339,
    #[schema(value_type = String, format = DateTime)]
    pub until: Rfc3339,
    /// Null: subscription-wide (VM pools); else the Batch pool whose own mark it is.
    pub pool: Option<String>,
}

/// `DELETE /v1/offerings/unavailable`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cleared {
    /// Marks that were in force.
    pub cleared: u64,
}

fn mark_json(u: &Unavailable, pool: Option<&str>) -> UnavailableMark {
    // Stored lower-cased; shown as Azure spells it.
    let size = arm_model::sizes::lookup(&u.offering.size)
        .map_or_else(|| u.offering.size.clone(), |s| s.name.clone());
    UnavailableMark {
        size,
        priority: u.offering.priority,
        reason: u.reason,
        code: u.code.clone(),
        since: Rfc3339(u.since),
        until: Rfc3339(u.until),
        pool: pool.map(str::to_owned),
    }
}

/// `GET /v1/offerings/unavailable` → `{"unavailable": [{size, priority, reason, code, since,
/// until, pool}]}`: `pool` is null for subscription-wide marks (VM pools), the pool's name
/// for a Batch pool's own.
#[utoipa::path(
    get,
    path = "/v1/offerings/unavailable",
    tag = "offerings",
    security(("bearer" = ["viewer", "requester", "admin"])),
    responses((status = 200, description = "Marks in force", body = UnavailableList))
)]
pub async fn list(
    Reader(_): Reader,
    State(st): State<ApiState>,
) -> Result<Json<UnavailableList>, ApiError> {
    let now = view::now();
    let mut out: Vec<UnavailableMark> = st
        .store
        .list_unavailable(now)
        .await?
        .iter()
        .map(|u| mark_json(u, None))
        .collect();
    for pool in st.store.list_pools().await? {
        if pool.spec.mode != PoolMode::Batch {
            continue;
        }
        if let Some(state) = st.store.get_batch_state(&pool.spec.name).await? {
            out.extend(
                state
                    .unavailable
                    .iter()
                    .filter(|u| u.until > now)
                    .map(|u| mark_json(u, Some(&pool.spec.name))),
            );
        }
    }
    Ok(Json(UnavailableList { unavailable: out }))
}

/// `DELETE /v1/offerings/unavailable` → `{"cleared": N}`: every mark in force is dropped
/// and the controller woken, so the planners try the preferred sizes again.
#[utoipa::path(
    delete,
    path = "/v1/offerings/unavailable",
    tag = "offerings",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Cleared", body = Cleared))
)]
pub async fn clear(
    Admin(caller): Admin,
    State(st): State<ApiState>,
) -> Result<Json<Cleared>, ApiError> {
    let cleared = st.store.clear_unavailable(view::now()).await?;
    if cleared > 0 {
        audit(
            &st,
            NewEvent {
                kind: "offerings.cleared".into(),
                pool: None,
                node: None,
                actor: caller.name,
                message: format!(
                    "{cleared} unavailable offerings cleared: preferred sizes are tried again"
                ),
                data: json!({"cleared": cleared}),
            },
        )
        .await;
        st.wake.notify_one();
    }
    Ok(Json(Cleared { cleared }))
}
