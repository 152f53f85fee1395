//! The one error shape every endpoint answers with:
//! `{"error":{"code":"...","message":"...","field":"..."}}`, `field` only when one input is to
//! blame. Codes are stable, low-cardinality identifiers clients can branch on; messages are for
//! people.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rb_core::SpecError;
use serde::Serialize;
use store::StoreError;
use utoipa::ToSchema;

/// Every error: `{"error":{"code","message","field"?}}` (the body [`ApiError`] answers).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable identifier clients can branch on (`not_found`, `invalid_spec`...).
    pub code: String,
    /// For people.
    pub message: String,
    /// The input to blame: a spec field, a path or query parameter, or a body key. Absent
    /// when no single input is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub field: Option<String>,
}

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable identifier (`"invalid_spec"`, `"not_found"`...).
    pub code: &'static str,
    pub message: String,
    /// The input to blame: a spec field (`"vm_sizes"`, `"spot.max_price"`), a path or query
    /// parameter (`"name"`, `"pool"`), or a body key (`"target"`).
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_seconds: None,
        }
    }

    /// Answers with `Retry-After: seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// Blames one input.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A failure that is ours, not the client's. The cause goes to the log, whole; the client
    /// gets no internals.
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(err), "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; the daemon's log has the details"),
        )
    }

    /// Maps a store error on a pool to its meaning: missing → 404, contradiction (exists,
    /// being deleted) → 409, anything else → 500.
    pub fn from_store(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => Self::not_found(capitalized(&err.to_string())),
            StoreError::Conflict { .. } => Self::conflict(capitalized(&err.to_string())),
            other => Self::internal("the database failed", &other),
        }
    }

    /// A spec that does not parse or validate: 422 naming the field.
    pub fn invalid_spec(err: SpecError) -> Self {
        Self::unprocessable("invalid_spec", err.message).with_field(err.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::from_store(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `err: source: source...`, for logs (error `Display`s do not repeat their sources).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
