//! Extractors that turn axum's plain-text rejections into the API's JSON errors: the request
//! body (JSON only, at most [`crate::MAX_BODY_BYTES`]), a pool name in the path, and query
//! strings.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use rb_core::PoolSpec;
use serde::de::DeserializeOwned;

use crate::MAX_BODY_BYTES;
use crate::error::ApiError;

/// A JSON request body: the bytes (for parsers that name fields, like
/// [`PoolSpec::from_json`]) and the document they parse to.
#[derive(Debug, Clone)]
pub struct JsonBody {
    pub bytes: Bytes,
    pub value: serde_json::Value,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
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
        Ok(JsonBody { bytes, value })
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

/// The members of a JSON object body, refusing anything but an object and any member not in
/// `allowed`: 422 with `code`, naming `body` or the unknown member.
pub(crate) fn object_fields<'a>(
    body: &'a serde_json::Value,
    allowed: &[&str],
    code: &'static str,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, ApiError> {
    let serde_json::Value::Object(fields) = body else {
        return Err(
            ApiError::unprocessable(code, "the body must be a JSON object").with_field("body"),
        );
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::unprocessable(
            code,
            format!(
                "unknown field {unknown:?}; expected only {}",
                allowed
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_field(unknown));
    }
    Ok(fields)
}

/// An optional integer member in `range`, or `default` if absent (or null): 422 with `code`
/// naming `field` for a wrong type or a value out of range.
pub(crate) fn int_field(
    fields: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
    default: Option<u64>,
    code: &'static str,
) -> Result<u64, ApiError> {
    let invalid = |message: String| ApiError::unprocessable(code, message).with_field(field);
    match fields.get(field).filter(|v| !v.is_null()) {
        None => default.ok_or_else(|| invalid(format!("missing field {field:?}"))),
        Some(value) => {
            let n = value.as_u64().ok_or_else(|| {
                invalid(format!(
                    "{field} must be an integer in [{}, {}], got {value}",
                    range.start(),
                    range.end()
                ))
            })?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(invalid(format!(
                    "{field} {n} is outside [{}, {}]",
                    range.start(),
                    range.end()
                )))
            }
        }
    }
}

/// An optional string member of at most `max_chars` characters with no control characters:
/// `None` if absent or null; 422 with `code` naming `field` otherwise.
pub(crate) fn text_field(
    fields: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    max_chars: usize,
    code: &'static str,
) -> Result<Option<String>, ApiError> {
    let invalid = |message: String| ApiError::unprocessable(code, message).with_field(field);
    match fields.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => {
            if text.chars().count() > max_chars {
                Err(invalid(format!(
                    "{field} is longer than {max_chars} characters"
                )))
            } else if text.chars().any(char::is_control) {
                Err(invalid(format!("{field} contains control characters")))
            } else {
                Ok(Some(text.clone()))
            }
        }
        Some(other) => Err(invalid(format!("{field} must be a string, got {other}"))),
    }
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
    fn json_content_types() {
        let v = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(Some(&v("application/jsonx"))));
        assert!(!is_json(None));
    }
}
