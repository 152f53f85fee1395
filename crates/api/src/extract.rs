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
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| {
                ApiError::bad_request(
                    "bad_path",
                    format!("bad pool name in the path: {}", r.body_text()),
                )
                .with_field("name")
            })?;
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
