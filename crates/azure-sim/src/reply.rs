//! What a handler answers: a status, headers and an optional JSON body, and ARM's error
//! responses with the codes and messages real clients classify on.

use arm_model::{ErrorDetail, ErrorResponse};
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = match self.body {
            Some(body) => {
                let mut r = (self.status, body.to_string()).into_response();
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                r
            }
            None => {
                let mut r = self.status.into_response();
                r.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                r
            }
        };
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().append(HeaderName::from_static(name), v);
            }
        }
        resp
    }
}

/// An ARM error answer. Handlers return it with `?`; the pipeline adds the usual headers.
#[derive(Debug, Clone)]
pub struct ArmErr {
    pub status: StatusCode,
    pub body: Box<ErrorResponse>,
    pub retry_after_s: Option<u64>,
}

impl ArmErr {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorResponse::new(code, message)),
            retry_after_s: None,
        }
    }

    pub fn target(mut self, target: &str) -> Self {
        self.body.error.target = Some(target.to_owned());
        self
    }

    pub fn detail(mut self, detail: ErrorDetail) -> Self {
        self.body.error.details.push(detail);
        self
    }

    pub fn retry_after(mut self, s: u64) -> Self {
        self.retry_after_s = Some(s);
        self
    }

    pub fn code(&self) -> &str {
        &self.body.error.code
    }

    pub fn into_reply(self) -> Reply {
        let mut reply = Reply::json(
            self.status,
            serde_json::to_value(&*self.body).unwrap_or(Value::Null),
        )
        .header("x-ms-error-code", self.body.error.code.clone());
        if let Some(s) = self.retry_after_s {
            reply = reply.header("retry-after", s.to_string());
        }
        reply
    }

    // Constructors for the errors clients classify on. Messages follow Azure's wording
    // (see shared/fixtures/arm/errors) because SDKs and our own classifier match on them.

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid_parameter(target: &str, message: impl Into<String>) -> Self {
        Self::bad_request("InvalidParameter", message).target(target)
    }

    pub fn invalid_content(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidRequestContent", message)
    }

    pub fn not_found(type_name: &str, name: &str, rg: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{type_name}/{name}' under resource group '{rg}' was not found. \
                 For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    pub fn rg_not_found(rg: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: simulated fault.",
        )
    }
}

impl From<ArmErr> for Reply {
    fn from(e: ArmErr) -> Self {
        e.into_reply()
    }
}
