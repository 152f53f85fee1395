//! Extractors that turn axum's plain-text rejections into the API's JSON errors: the request
//! body (JSON only, at most [`crate::MAX_BODY_BYTES`], read into a typed DTO that refuses
//! unknown fields), a pool name in the path, and query strings.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use rb_core::PoolSpec;
use serde::de::DeserializeOwned;

use crate::MAX_BODY_BYTES;
use crate::error::ApiError;

/// A request body: JSON only, read into the typed DTO `T` ([`RequestBody`]). Every body of
/// the API goes through it, so every one answers the same way: 400 `bad_content_type` for
/// another content type, 400 `malformed_json` for a body that is not JSON, 413 above
/// [`crate::MAX_BODY_BYTES`], and 422 with `T`'s code naming the field for a body that is
/// JSON but does not fit `T` (an unknown or missing field, a wrong type), or `body` when it
/// is not an object.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

/// A typed request body: its 422 code, and how it is read (serde, naming the field through
/// `serde_path_to_error`, unless the type has a parser of its own that names fields, like
/// [`PoolSpec::from_json`]). Checks serde cannot make (ranges, lengths) are the handler's.
pub trait RequestBody: DeserializeOwned {
    /// The `code` of a 422 for a body that does not fit.
    const CODE: &'static str;

    /// Reads the body (`bytes`, which parse to the JSON `value`).
    fn read(bytes: &[u8], value: serde_json::Value) -> Result<Self, ApiError> {
        let _ = bytes;
        decode(value, Self::CODE)
    }
}

/// `value` read into `T`, refusing anything but an object: 422 with `code`, naming `body`,
/// or the path of the field serde stopped at (`a.b`), or the missing field.
pub fn decode<T: DeserializeOwned>(
    value: serde_json::Value,
    code: &'static str,
) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(
            ApiError::unprocessable(code, "the body must be a JSON object").with_field("body"),
        );
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // A missing field is named by the message (in backticks), under the object's path.
        let missing = message.strip_prefix("missing field ").and_then(backticked);
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_string(),
            (".", None) => "body".to_string(),
            (_, Some(name)) => format!("{path}.{name}"),
            (_, None) => path,
        };
        ApiError::unprocessable(code, format!("{field}: {message}")).with_field(field)
    })
}

/// For `#[serde(default, deserialize_with = "present")]`: an optional member that may be
/// absent but not null.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::bad_request(
                "bad_content_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let value = serde_json::from_slice(&bytes).map_err(|err| {
            ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {err}"),
            )
        })?;
        T::read(&bytes, value).map(Body)
    }
}

/// A pool spec body: the spec's own parser names the field (`tags`, `batch.account`...).
impl RequestBody for PoolSpec {
    const CODE: &'static str = "invalid_spec";

    fn read(bytes: &[u8], _: serde_json::Value) -> Result<Self, ApiError> {
        PoolSpec::from_json(bytes).map_err(ApiError::invalid_spec)
    }
}

/// A schedule body: the schedule's own parser names the field (`set.max`...).
impl RequestBody for rb_core::ScheduleSpec {
    const CODE: &'static str = "invalid_schedule";

    fn read(bytes: &[u8], _: serde_json::Value) -> Result<Self, ApiError> {
        rb_core::ScheduleSpec::from_json(bytes)
            .map_err(|e| ApiError::unprocessable(Self::CODE, e.message).with_field(e.field))
    }
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {} KiB", MAX_BODY_BYTES / 1024),
        )
    } else {
        ApiError::bad_request(
            "bad_body",
            format!("cannot read the body: {}", rejection.body_text()),
        )
    }
}

/// A pool name from the path (`/v1/pools/{name}...`), checked against the naming rule so
/// that a malformed name is a 400 naming `name` rather than a confusing 404.
#[derive(Debug, Clone)]
pub struct PoolName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PoolName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let name = path_param(parts, state, "name").await?;
        if let Err(err) = check_pool_name(&name) {
            return Err(ApiError::bad_request("invalid_name", err.message).with_field("name"));
        }
        Ok(PoolName(name))
    }
}

/// Checks a pool name with the spec's own rule. `core` keeps the rule private to
/// [`PoolSpec::validate`], which checks the name first; validating a minimal spec with this
/// name asks exactly that rule, so there is no second copy of it to drift.
pub fn check_pool_name(name: &str) -> Result<(), rb_core::SpecError> {
    let minimal = serde_json::json!({
        "name": name, "mode": "vm", "vm_sizes": ["any"], "image": "p:o:s:v", "max": 1,
    });
    let spec = PoolSpec::from_json(minimal.to_string().as_bytes())?;
    match spec.validate(&|_| true) {
        Err(err) if err.field == "name" => Err(err),
        _ => Ok(()),
    }
}

/// A node name from the path (`/v1/nodes/{name}/...`): letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 128 characters (a VM name has at most 64; a Batch
/// node id, `tvmps_` + 64 hex digits + `_d`, has 72). A malformed name is a 400 naming
/// `name`; a well-formed unknown one is the handler's 404.
#[derive(Debug, Clone)]
pub struct NodeName(pub String);

/// Longest node name the API accepts.
pub const MAX_NODE_NAME: usize = 128;

impl<S: Send + Sync> FromRequestParts<S> for NodeName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let name = path_param(parts, state, "name").await?;
        let ok = name.len() <= MAX_NODE_NAME
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_name",
                "a node name has 1 to 128 letters, digits, '.', '_' or '-', and starts with a letter or digit",
            )
            .with_field("name"));
        }
        Ok(NodeName(name))
    }
}

/// The one path parameter of a route, as text; a 400 naming `field` if it cannot be read.
pub(crate) async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    field: &str,
) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .map(|Path(value)| value)
        .map_err(|r| {
            ApiError::bad_request(
                "bad_path",
                format!("bad {field} in the path: {}", r.body_text()),
            )
            .with_field(field)
        })
}

/// A query string parsed into `T`; a bad or unknown parameter is a 400 naming it.
#[derive(Debug, Clone)]
pub struct JsonQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for JsonQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(JsonQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let err = ApiError::bad_request("bad_query", text.clone());
                Err(match backticked(&text) {
                    Some(field) => err.with_field(field),
                    None => err,
                })
            }
        }
    }
}

/// The first name in backticks of a serde message ("unknown field `foo`, expected ...").
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_follow_the_spec_rule() {
        assert!(check_pool_name("maya-spot").is_ok());
        assert!(check_pool_name("a").is_ok());
        for bad in [
            "",
            "Maya",
            "1maya",
            "maya-",
            "maya_spot",
            "abcdefghijklmnopqrstu",
        ] {
            assert_eq!(check_pool_name(bad).unwrap_err().field, "name", "{bad:?}");
        }
    }

    #[test]
    fn bodies_name_the_field_they_fail_on() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            size: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            name: String,
            inner: Inner,
        }
        let ok = serde_json::json!({"name": "a", "inner": {"size": 1}});
        assert!(decode::<Outer>(ok, "bad").is_ok());
        for (body, field) in [
            (serde_json::json!({"inner": {"size": 1}}), "name"),
            (
                serde_json::json!({"name": "a", "inner": {"size": -1}}),
                "inner.size",
            ),
            (serde_json::json!({"name": "a", "inner": {}}), "inner.size"),
            (
                serde_json::json!({"name": "a", "inner": {"size": 1, "x": 1}}),
                "inner.x",
            ),
            (
                serde_json::json!({"name": "a", "inner": {"size": 1}, "y": 1}),
                "y",
            ),
            (serde_json::json!(["a", {"size": 1}]), "body"),
            (serde_json::json!(null), "body"),
        ] {
            let err = decode::<Outer>(body.clone(), "bad").unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(err.code, "bad", "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {}", err.message);
        }
    }

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(Some(&v("application/jsonx"))));
        assert!(!is_json(None));
    }
}
