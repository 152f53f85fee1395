//! `GET /v1/events?after=ID&limit=N`: the append-only audit log, oldest first, in pages.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::Reader;
use crate::error::ApiError;
use crate::extract::JsonQuery;
use crate::view::{event_json, redact_event};

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most events per page.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// `after` (default 0: from the oldest kept) a non-negative integer; `limit` (default 100) in
/// [1, 1000]. 422 naming the parameter otherwise.
fn parse_query(query: &EventsQuery) -> Result<(i64, u32), ApiError> {
    let invalid = |field: &str, message: String| {
        ApiError::unprocessable("invalid_query", message).with_field(field)
    };
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| {
                invalid(
                    "after",
                    format!("after must be an event id (an integer >= 0), got {text:?}"),
                )
            })?,
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("limit must be an integer in [1, {MAX_LIMIT}], got {text:?}"),
                )
            })?,
    };
    Ok((after, limit))
}

/// `GET /v1/events?after=ID&limit=N` → `{"events":[{id, at, kind, pool, node, actor, message,
/// data}], "next_after": ID}`: up to `limit` events with id greater than `after`, oldest first.
/// `next_after` is the last id returned, or `after` when there is nothing new: pass it as the
/// next `after` to follow the log. To viewers and requesters, pool specs in events come with
/// their `bootstrap` section redacted, and bootstrap failures without their details. A
/// requester gets no `request.*` event another token acted on (so a page may hold fewer
/// than `limit` events before the end of the log; follow `next_after`).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(
        ("after" = Option<i64>, Query, description = "Events with a greater id (default 0)", minimum = 0),
        ("limit" = Option<u32>, Query, description = "At most this many, in [1, 1000] (default 100)", minimum = 1, maximum = 1000),
    ),
    responses((status = 200, description = "Events, oldest first", body = crate::openapi::EventList))
)]
pub async fn list(
    Reader(caller): Reader,
    State(st): State<ApiState>,
    JsonQuery(query): JsonQuery<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = parse_query(&query)?;
    let events = st.store.events_after(after, limit).await?;
    // Computed before the filter below: a page a requester sees in part still moves it on.
    let next_after = events.last().map_or(after, |e| e.id);
    let events: Vec<Value> = events
        .iter()
        .filter(|e| {
            // A requester sees only its own requests, in the log too: not the `request.*`
            // events of other tokens (their ids, labels, jobs).
            caller.sees_all_requests() || !e.kind.starts_with("request.") || e.actor == caller.name
        })
        .map(|e| {
            let mut event = event_json(e);
            if !caller.sees_bootstrap() {
                redact_event(&mut event);
            }
            event
        })
        .collect();
    Ok(Json(json!({ "events": events, "next_after": next_after })))
}
