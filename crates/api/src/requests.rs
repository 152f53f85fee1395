//! Node requests (leases): a render manager asks for nodes of a pool for a while; live
//! requests add to the pool's desired count (`Store::desired`), expired ones stop counting on
//! their own. Create and release are one statement each in the store, so concurrent render
//! managers never lose or double-count a request; the audit event follows the write and its
//! failure is logged, never turned into a lost request.
//!
//! A request belongs to the token that made it (its hash is stored with it): a requester
//! token lists and releases only its own, and another's is a 404 like an unknown id, so
//! requests of other render managers can be neither released nor probed. The body's
//! `requester` is a label for people, not an owner.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::NewEvent;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Reader, Requester};
use crate::error::ApiError;
use crate::extract::{Body, JsonQuery, PoolName, RequestBody, path_param};
use crate::view::{self, NodeRequest, request_json};
use crate::{ApiState, audit};

/// Default lifetime of a request when the body gives no `ttl_seconds`: an hour.
pub const DEFAULT_TTL_SECONDS: u64 = 3600;
/// Longest lifetime of a request: a week.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// Longest `requester` and `job`.
pub const MAX_LABEL_CHARS: usize = 200;

const CODE: &str = "invalid_request";

/// `POST /v1/pools/{name}/requests`. A null member is the same as an absent one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// In [1, the pool's max].
    #[schema(minimum = 1)]
    pub count: u64,
    /// In [1, 604800]; default 3600.
    #[schema(minimum = 1, maximum = 604800, required = false)]
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Default: the token's name. At most 200 characters, no control characters.
    #[schema(required = false, max_length = 200)]
    #[serde(default)]
    pub requester: Option<String>,
    /// At most 200 characters, no control characters.
    #[schema(required = false, max_length = 200)]
    #[serde(default)]
    pub job: Option<String>,
}

impl RequestBody for NewRequestBody {
    const CODE: &'static str = CODE;
}

/// The body of `POST /v1/pools/{name}/requests`, checked.
struct NewRequest {
    count: u64,
    ttl_seconds: u64,
    requester: Option<String>,
    job: Option<String>,
}

/// `field` in `range`: 422 naming it otherwise.
fn in_range(field: &str, n: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, ApiError> {
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::unprocessable(
            CODE,
            format!(
                "{field} {n} is outside [{}, {}]",
                range.start(),
                range.end()
            ),
        )
        .with_field(field))
    }
}

/// A label of at most [`MAX_LABEL_CHARS`] characters with no control characters.
fn label(field: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    let invalid = |message: String| ApiError::unprocessable(CODE, message).with_field(field);
    match text {
        Some(text) if text.chars().count() > MAX_LABEL_CHARS => Err(invalid(format!(
            "{field} is longer than {MAX_LABEL_CHARS} characters"
        ))),
        Some(text) if text.chars().any(char::is_control) => {
            Err(invalid(format!("{field} contains control characters")))
        }
        other => Ok(other),
    }
}

fn check_request(body: NewRequestBody) -> Result<NewRequest, ApiError> {
    let count = in_range("count", body.count, 1..=u64::from(u32::MAX))?;
    let ttl_seconds = in_range(
        "ttl_seconds",
        body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS),
        1..=MAX_TTL_SECONDS,
    )?;
    let requester = label("requester", body.requester)?;
    if requester.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(ApiError::unprocessable(
            CODE,
            "requester must not be empty; leave it out to use the token's name",
        )
        .with_field("requester"));
    }
    // An empty job is the same as none.
    let job = label("job", body.job)?.filter(|j| !j.is_empty());
    Ok(NewRequest {
        count,
        ttl_seconds,
        requester,
        job,
    })
}

#[cfg(test)]
fn parse_request(body: &serde_json::Value) -> Result<NewRequest, ApiError> {
    check_request(crate::extract::decode(body.clone(), CODE)?)
}

/// 422 on `count` for a request larger than the pool can ever hold.
fn too_many(pool: &str, count: u64, max: Option<u32>) -> ApiError {
    let max = max.map_or_else(String::new, |m| format!(" (max {m})"));
    ApiError::unprocessable(
        CODE,
        format!("count {count} is more than pool {pool:?} can ever have{max}"),
    )
    .with_field("count")
}

/// `POST /v1/pools/{name}/requests` `{"count":N,"ttl_seconds":S,"requester":"..","job":".."}`
/// → 201 with the request. `count` in [1, the pool's max]; `ttl_seconds` in [1, 7 days],
/// default 3600; `requester` defaults to the token's name; `job` optional, at most 200
/// characters. 422 naming the field; 404 for an unknown pool; 409 if it is being deleted.
#[utoipa::path(
    post,
    path = "/v1/pools/{name}/requests",
    tag = "requests",
    security(("bearer" = ["requester", "admin"])),
    params(("name" = String, Path, description = "Pool name: [a-z][a-z0-9-]{0,19}", pattern = "^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")),
    request_body = NewRequestBody,
    responses(
        (status = 201, description = "The request", body = NodeRequest),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
        (status = 409, description = "The pool is being deleted", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid body, naming the field", body = crate::error::ErrorBody),
    )
)]
pub async fn create(
    Requester(caller): Requester,
    PoolName(pool): PoolName,
    State(st): State<ApiState>,
    Body(body): Body<NewRequestBody>,
) -> Result<Response, ApiError> {
    let new = check_request(body)?;
    let count = u32::try_from(new.count).map_err(|_| too_many(&pool, new.count, None))?;
    let requester = new.requester.unwrap_or_else(|| caller.name.clone());
    let now = view::now();
    // One statement on the hot path: the store checks the pool (exists, not deleting,
    // `max`) and writes the audit event with the request. The pool is read only to explain
    // a refusal.
    let created = st
        .store
        .create_request(
            &pool,
            count,
            new.ttl_seconds,
            &requester,
            new.job.as_deref(),
            &caller.name,
            Some(&caller.token_sha256),
            now,
        )
        .await;
    let request = match created {
        Ok(r) => r,
        Err(e) if e.is_conflict() || e.is_not_found() => {
            return Err(match st.store.get_pool(&pool).await? {
                None => ApiError::not_found(format!("pool {pool:?} does not exist")),
                Some(p) if p.deleting => {
                    ApiError::conflict(format!("pool {pool:?} is being deleted"))
                }
                Some(p) if new.count > u64::from(p.spec.max) => {
                    too_many(&pool, new.count, Some(p.spec.max))
                }
                Some(_) => ApiError::from(e),
            });
        }
        Err(e) => return Err(e.into()),
    };
    st.wake.notify_one();
    let mut response = (StatusCode::CREATED, Json(request_json(&request, now))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/requests/{}", request.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The query of `GET /v1/requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this pool's
    pool: Option<String>,
    /// Also released and expired ones
    #[param(value_type = Option<bool>)]
    all: Option<String>,
}

/// `GET /v1/requests?pool=&all=` → `{"requests":[...]}`, oldest first: the live ones, or
/// with `all=true` also the released and expired ones still kept. A requester token sees
/// only the requests it made; viewers and admins see all. 404 naming `pool` for an unknown
/// pool; 422 naming `all` unless it is `true` or `false`.
#[utoipa::path(
    get,
    path = "/v1/requests",
    tag = "requests",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(ListQuery),
    responses(
        (status = 200, description = "Requests, oldest first", body = RequestList),
        (status = 404, description = "No such pool", body = crate::error::ErrorBody),
    )
)]
pub async fn list(
    Reader(caller): Reader,
    State(st): State<ApiState>,
    JsonQuery(query): JsonQuery<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let all = match query.all.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("all must be true or false, got {other:?}"),
            )
            .with_field("all"));
        }
    };
    let pool = query.pool.filter(|p| !p.is_empty());
    if let Some(pool) = &pool
        && st.store.get_pool(pool).await?.is_none()
    {
        return Err(ApiError::not_found(format!("pool {pool:?} does not exist")).with_field("pool"));
    }
    let now = view::now();
    let owner = (!caller.sees_all_requests()).then_some(caller.token_sha256.as_str());
    let requests = st
        .store
        .list_requests_owned(owner, pool.as_deref(), all, now)
        .await?;
    let requests = requests.iter().map(|r| request_json(r, now)).collect();
    Ok(Json(RequestList { requests }))
}

/// `GET /v1/requests`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<NodeRequest>,
}

/// A request id from the path: a UUID (any case), normalized to the stored form. Anything
/// else is a 400 naming `id`.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let id = path_param(parts, state, "id").await?;
        uuid::Uuid::try_parse(&id)
            .map(|u| RequestId(u.hyphenated().to_string()))
            .map_err(|_| {
                ApiError::bad_request("invalid_id", format!("{id:?} is not a request id (a UUID)"))
                    .with_field("id")
            })
    }
}

/// `DELETE /v1/requests/{id}` → 200 with the released request; it stops counting at once.
/// Releasing it again is harmless and answers the same. 404 for an unknown id, and for a
/// request another token made when the caller is a requester (as if it did not exist).
#[utoipa::path(
    delete,
    path = "/v1/requests/{id}",
    tag = "requests",
    security(("bearer" = ["requester", "admin"])),
    params(("id" = String, Path, description = "Request id (a UUID)", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses(
        (status = 200, description = "Released", body = NodeRequest),
        (status = 404, description = "No such request", body = crate::error::ErrorBody),
    )
)]
pub async fn release(
    Requester(caller): Requester,
    RequestId(id): RequestId,
    State(st): State<ApiState>,
) -> Result<Json<NodeRequest>, ApiError> {
    let missing = || ApiError::not_found(format!("request {id:?} does not exist"));
    let before = st.store.get_request(&id).await?.ok_or_else(missing)?;
    // The owner never changes, so checking it before the release is enough.
    if !caller.sees_all_requests()
        && before.owner_token_sha256.as_deref() != Some(caller.token_sha256.as_str())
    {
        return Err(missing());
    }
    let now = view::now();
    let request = st.store.release_request(&id, &caller.name, now).await?;
    let message = match before.released_at {
        Some(_) => format!(
            "request {id} for {} nodes released again (already released)",
            request.count
        ),
        None if !before.is_live(now) => {
            format!("expired request {id} for {} nodes released", request.count)
        }
        None => format!("request {id} for {} nodes released", request.count),
    };
    audit(
        &st,
        NewEvent {
            kind: "request.released".into(),
            pool: Some(request.pool.clone()),
            node: None,
            actor: caller.name,
            message,
            data: json!({ "id": id, "count": request.count, "requester": request.requester }),
        },
    )
    .await;
    st.wake.notify_one();
    Ok(Json(request_json(&request, now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_checked_field_by_field() {
        let ok = parse_request(&json!({"count": 3})).unwrap();
        assert_eq!(
            (ok.count, ok.ttl_seconds, ok.requester, ok.job),
            (3, DEFAULT_TTL_SECONDS, None, None)
        );
        let ok = parse_request(
            &json!({"count": 1, "ttl_seconds": 604800, "requester": "deadline", "job": ""}),
        )
        .unwrap();
        assert_eq!(
            (ok.ttl_seconds, ok.requester.as_deref(), ok.job),
            (604_800, Some("deadline"), None)
        );
        for (body, field) in [
            (json!({}), "count"),
            (json!({"count": 0}), "count"),
            (json!({"count": -1}), "count"),
            (json!({"count": "2"}), "count"),
            (json!({"count": 1.5}), "count"),
            (json!({"count": 1, "ttl_seconds": 0}), "ttl_seconds"),
            (json!({"count": 1, "ttl_seconds": 604801}), "ttl_seconds"),
            (json!({"count": 1, "ttl_seconds": "1h"}), "ttl_seconds"),
            (json!({"count": 1, "requester": ""}), "requester"),
            (json!({"count": 1, "requester": 7}), "requester"),
            (json!({"count": 1, "job": "x".repeat(201)}), "job"),
            (json!({"count": 1, "job": "a\nb"}), "job"),
            (json!({"count": 1, "pool": "maya"}), "pool"),
            (json!([1]), "body"),
        ] {
            let err = parse_request(&body).err().unwrap();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
    }
}
