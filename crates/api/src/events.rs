//! `GET /v1/events`: the append-only audit log, oldest first in pages, or its newest events,
//! of every pool or one, from a point in time.

use axum::Json;
use axum::extract::State;
use rb_core::UnixSeconds;
use serde::{Deserialize, Serialize};
use store::EventQuery;
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::auth::Reader;
use crate::error::ApiError;
use crate::extract::JsonQuery;
use crate::view::{EventView, event_json, redact_event};

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most events per page.
pub const MAX_LIMIT: u32 = 1000;

/// The query of `GET /v1/events`, as text: each parameter is parsed (and a bad one named)
/// by [`parse_query`]; the documented types are what it accepts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with a greater id (default 0)
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Events with a smaller id (paging back)
    #[param(value_type = Option<i64>, minimum = 0)]
    before: Option<String>,
    /// At most this many, in [1, 1000] (default 100)
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only this pool's events
    pool: Option<String>,
    /// Only events at or after this: a duration back from now (90s, 10m, 2h, 1h30m, 7d) or an RFC 3339 time
    since: Option<String>,
    /// asc (default): the oldest that match, oldest first; desc: the newest that match, newest first
    #[param(example = "desc")]
    order: Option<String>,
}

/// `GET /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    /// Pass as the next `after` to follow the log.
    pub next_after: i64,
}

/// Which end of the log a page comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The oldest events that match, oldest first (paging forward with `after`).
    Asc,
    /// The newest events that match, newest first (the tail; page back with `before`).
    Desc,
}

/// The query, parsed: what the store is asked and in which order the answer is shown.
#[derive(Debug)]
struct Parsed {
    query: EventQuery,
    order: Order,
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::unprocessable("invalid_query", message).with_field(field)
}

fn event_id(field: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|a| *a >= 0)
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    field,
                    format!("{field} must be an event id (an integer >= 0), got {text:?}"),
                )
            }),
    }
}

/// `90s`, `10m`, `2h`, `1h30m`, `7d` → seconds; None if it is not such a duration.
pub fn parse_duration_seconds(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (digits.is_empty() && !text.is_empty()).then_some(total)
}

/// `since`: a duration back from `now` (`10m`, `2h`, `1h30m`) or an RFC 3339 time.
fn parse_since(text: &str, now: UnixSeconds) -> Result<UnixSeconds, ApiError> {
    if let Some(seconds) = parse_duration_seconds(text) {
        return Ok(now.saturating_sub(seconds));
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            invalid(
                "since",
                format!(
                    "since must be a duration back from now (90s, 10m, 2h, 1h30m, 7d) or an RFC 3339 time (2026-01-31T18:00:00Z), got {text:?}"
                ),
            )
        })
}

/// `after`, `before` non-negative integers; `limit` (default 100) in [1, 1000]; `pool` a
/// pool name (not checked against the pools: a deleted pool's events are still there);
/// `since` as [`parse_since`]; `order` `asc` (default) or `desc`. 422 naming the parameter
/// otherwise. `order=desc` with `after` is allowed (the newest events after an id).
fn parse_query(query: &EventsQuery, now: UnixSeconds) -> Result<Parsed, ApiError> {
    let after = event_id("after", query.after.as_deref())?;
    let before = event_id("before", query.before.as_deref())?;
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
    let pool = match query.pool.as_deref() {
        None => None,
        Some("") => return Err(invalid("pool", "pool must name a pool".into())),
        Some(p) if p.len() > 256 => {
            return Err(invalid("pool", "pool is longer than any pool name".into()));
        }
        Some(p) => Some(p.to_owned()),
    };
    let since = match query.since.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_since(text, now)?),
    };
    let order = match query.order.as_deref() {
        None | Some("") | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(other) => {
            return Err(invalid(
                "order",
                format!("order must be asc (oldest first) or desc (newest first), got {other:?}"),
            ));
        }
    };
    Ok(Parsed {
        query: EventQuery {
            after,
            before,
            pool,
            since,
            limit,
            newest: order == Order::Desc,
        },
        order,
    })
}

/// `GET /v1/events` → `{"events":[{id, at, kind, pool, node, actor, message, data}],
/// "next_after": ID}`.
///
/// - `order=asc` (default): up to `limit` events with id greater than `after` (default 0),
///   oldest first. `next_after` is the last id returned, or `after` when there is nothing
///   new: pass it as the next `after` to follow the log.
/// - `order=desc`: the newest `limit` events that match, newest first (`before=ID` pages
///   back). `next_after` is the greatest id returned, or `after` (or 0): following from
///   there prints only what happens next.
///
/// `pool=NAME` keeps one pool's events; `since` (`10m`, `2h`, or an RFC 3339 time) those at
/// or after it. To viewers and requesters, pool specs in events come with their `bootstrap`
/// section redacted, and bootstrap failures without their details. A requester gets no
/// `request.*` event another token acted on (so a page may hold fewer than `limit` events
/// before the end of the log; follow `next_after`).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(EventsQuery),
    responses(
        (status = 200, description = "Events", body = EventList),
        (status = 422, description = "A parameter is invalid; `field` names it"),
    )
)]
pub async fn list(
    Reader(caller): Reader,
    State(st): State<ApiState>,
    JsonQuery(query): JsonQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Parsed { query, order } = parse_query(&query, now)?;
    let events = st.store.events(&query).await?;
    // Computed before the filter below: a page a requester sees in part still moves it on.
    let after = query.after.unwrap_or(0);
    let next_after = events
        .iter()
        .map(|e| e.id)
        .max()
        .unwrap_or(after)
        .max(after);
    let mut events: Vec<EventView> = events
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
    if order == Order::Desc {
        events.reverse();
    }
    Ok(Json(EventList { events, next_after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> EventsQuery {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        EventsQuery {
            after: get("after"),
            before: get("before"),
            limit: get("limit"),
            pool: get("pool"),
            since: get("since"),
            order: get("order"),
        }
    }

    #[test]
    fn durations_and_times_for_since() {
        assert_eq!(parse_duration_seconds("10m"), Some(600));
        assert_eq!(parse_duration_seconds("1h30m"), Some(5400));
        assert_eq!(parse_duration_seconds("2d"), Some(172_800));
        assert_eq!(parse_duration_seconds("10"), None);
        assert_eq!(parse_duration_seconds("10x"), None);
        assert_eq!(parse_duration_seconds(""), None);
        let now = 1_800_000_000;
        assert_eq!(parse_since("2h", now).unwrap(), now - 7200);
        assert_eq!(
            parse_since("2026-01-31T18:00:00Z", now).unwrap(),
            1_769_882_400
        );
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let now = 1_800_000_000;
        for (pairs, field) in [
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "1001")], "limit"),
            (vec![("after", "-1")], "after"),
            (vec![("before", "x")], "before"),
            (vec![("since", "soon")], "since"),
            (vec![("order", "newest")], "order"),
            (vec![("pool", "")], "pool"),
        ] {
            let err = parse_query(&q(&pairs), now).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{pairs:?}");
        }
        let ok = parse_query(
            &q(&[
                ("order", "desc"),
                ("limit", "5"),
                ("pool", "maya"),
                ("since", "10m"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(ok.order, Order::Desc);
        assert_eq!(
            ok.query,
            EventQuery {
                after: None,
                before: None,
                pool: Some("maya".into()),
                since: Some(now - 600),
                limit: 5,
                newest: true,
            }
        );
    }
}
