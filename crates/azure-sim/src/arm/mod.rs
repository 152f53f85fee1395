//! The ARM front door: authentication, api-version, fault injection, subscription
//! throttling, routing by path, and the headers ARM puts on every answer.
//!
//! Here: the parsed request and the checks every provider shares (api-version, names, tags);
//! `route.rs` maps a path to its operation; `dispatch.rs` throttles and dispatches it.

use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::TokenError;
use crate::reply::{ArmErr, Reply};
use crate::state::RType;

/// One parsed request, as handlers see it.
pub struct Ctx {
    pub method: Method,
    /// Path segments, percent-decoded.
    pub segs: Vec<String>,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `scheme://host[:port]` the client used, for absolute URLs in answers.
    pub base: String,
    /// Host and port only, for Batch `accountEndpoint`.
    pub host: String,
    pub body: bytes::Bytes,
    pub if_match: Option<String>,
    pub now: Instant,
    pub api_version: String,
    /// Headers added by throttling checks (`x-ms-ratelimit-remaining-resource`).
    pub extra_headers: Vec<(&'static str, String)>,
    /// The ARM type the request is about, for `/_sim/stats`.
    pub stat_type: Option<String>,
    /// A POST that only reads (Compute Schedule's status and error polls): not a write for
    /// `Stats::last_write_unix_ms`, though ARM counts it in its write bucket.
    pub read_only: bool,
}

impl Ctx {
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON object; malformed JSON is ARM's `InvalidRequestContent`.
    pub fn json_body(&self) -> Result<Value, ArmErr> {
        if self.body.is_empty() {
            return Err(ArmErr::invalid_content(
                "The request content was invalid and could not be deserialized: 'Request body is empty.'",
            ));
        }
        let v: Value = serde_json::from_slice(&self.body).map_err(|e| {
            ArmErr::invalid_content(format!(
                "The request content was invalid and could not be deserialized: '{e}'."
            ))
        })?;
        if !v.is_object() {
            return Err(ArmErr::invalid_content(
                "The request content was invalid and could not be deserialized: 'expected a JSON object'.",
            ));
        }
        Ok(v)
    }

    /// URLs of a new operation: (Azure-AsyncOperation, Location).
    pub fn op_urls(
        &self,
        sub: &str,
        namespace: &str,
        location: &str,
        op: &str,
    ) -> (String, String) {
        let base = format!(
            "{}/subscriptions/{sub}/providers/{namespace}/locations/{location}/operations/{op}",
            self.base
        );
        let p = &op[..8.min(op.len())];
        (
            format!("{base}?p={p}&api-version={}", self.api_version),
            format!("{base}?p={p}&monitor=true&api-version={}", self.api_version),
        )
    }

    /// A 202 with both polling headers, as Compute answers POST actions and DELETE.
    pub fn accepted(
        &self,
        sub: &str,
        namespace: &str,
        location: &str,
        op: &str,
        retry_s: u64,
    ) -> Reply {
        let (aao, loc) = self.op_urls(sub, namespace, location, op);
        Reply::empty(StatusCode::ACCEPTED)
            .header("azure-asyncoperation", aao)
            .header("location", loc)
            .header("azure-asyncnotification", "Enabled")
            .header("retry-after", retry_s.to_string())
    }

    /// Splits `items` into the requested page, with an absolute `nextLink` that keeps every
    /// query parameter of the first call (api-version, $filter, statusOnly...).
    pub fn page(&self, items: Vec<Value>, page_size: usize, link_key: &str) -> Value {
        let (skip, size) = self.page_bounds(page_size);
        let total = items.len();
        let value: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
        self.paged(value, skip, size, total, link_key)
    }

    /// The requested page's first item and size (`$skiptoken`, `maxresults`/`$top`).
    pub fn page_bounds(&self, page_size: usize) -> (usize, usize) {
        let skip: usize = self
            .q("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let size = self
            .q("maxresults")
            .or_else(|| self.q("$top"))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .map_or(page_size, |n| n.min(page_size));
        (skip, size)
    }

    /// A page already cut at `skip` (`value`, at most `size` items) of `total`, with its
    /// `nextLink` when more follow: for lists that render only the page they answer.
    pub fn paged(
        &self,
        value: Vec<Value>,
        skip: usize,
        size: usize,
        total: usize,
        link_key: &str,
    ) -> Value {
        let mut out = json!({ "value": value });
        if skip + size < total {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.query {
                if !k.eq_ignore_ascii_case("$skiptoken") {
                    ser.append_pair(k, v);
                }
            }
            ser.append_pair("$skiptoken", &(skip + size).to_string());
            out[link_key] = json!(format!("{}{}?{}", self.base, self.path, ser.finish()));
        }
        out
    }
}

/// `YYYY-MM-DD` with an optional suffix (`-preview`), or Batch's `YYYY-MM-DD.NN.N`.
pub fn valid_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 10 {
        return false;
    }
    let date_ok = b[..10].iter().enumerate().all(|(i, c)| {
        if i == 4 || i == 7 {
            *c == b'-'
        } else {
            c.is_ascii_digit()
        }
    });
    let rest = &v[10..];
    date_ok
        && (rest.is_empty()
            || (rest.starts_with('-')
                && rest.len() > 1
                && rest[1..].chars().all(|c| c.is_ascii_alphanumeric()))
            || (rest.starts_with('.') && rest[1..].chars().all(|c| c.is_ascii_digit() || c == '.')))
}

/// ARM's rules for resource names: 1..=max characters, no `<>%&:\?/` or control
/// characters, not ending in `.` or space. U+FFFD stands for percent escapes that were not
/// UTF-8 (`percent_decode` is lossy), so it is refused too.
pub fn validate_name(rtype: RType, name: &str) -> Result<(), ArmErr> {
    let bad = name.is_empty()
        || name.chars().count() > rtype.max_name_len()
        || name.chars().any(|c| {
            c.is_control() || c == char::REPLACEMENT_CHARACTER || "<>%&:\\?/#*".contains(c)
        })
        || name.ends_with('.')
        || name.ends_with(' ');
    if bad {
        return Err(ArmErr::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name {} is invalid. The name can be up to {} characters long. It must \
                 not contain '<', '>', '%', '&', ':', '\\', '?', '/' or control characters and \
                 must not end with '.' or a space.",
                truncate(name, 100),
                rtype.max_name_len()
            ),
        ));
    }
    Ok(())
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Tag rules: at most 50, names ≤512 characters without `<>%&\?/`, values ≤256.
pub fn validate_tags(body: &Value) -> Result<(), ArmErr> {
    let Some(tags) = body.get("tags") else {
        return Ok(());
    };
    if tags.is_null() {
        return Ok(());
    }
    let Some(map) = tags.as_object() else {
        return Err(ArmErr::invalid_content(
            "The request content was invalid and could not be deserialized: 'tags must be an object'.",
        ));
    };
    if map.len() > 50 {
        return Err(ArmErr::bad_request(
            "InvalidTag",
            format!(
                "The resource has {} tags; at most 50 are allowed.",
                map.len()
            ),
        ));
    }
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > 512 || k.chars().any(|c| "<>%&\\?/".contains(c)) {
            return Err(ArmErr::bad_request(
                "InvalidTagNameCharacters",
                format!("The tag name '{}' is invalid.", truncate(k, 64)),
            ));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= 256 => {}
            _ => {
                return Err(ArmErr::bad_request(
                    "InvalidTag",
                    format!(
                        "The value of tag '{}' must be a string of at most 256 characters.",
                        truncate(k, 64)
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub fn token_error_reply(err: TokenError) -> ArmErr {
    let (code, msg) = match err {
        TokenError::Missing => (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".to_owned(),
        ),
        TokenError::Malformed => (
            "InvalidAuthenticationToken",
            "The access token is invalid.".to_owned(),
        ),
        TokenError::Expired { exp, now } => (
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                fmt_unix(exp),
                fmt_unix(now)
            ),
        ),
        TokenError::WrongAudience => (
            "InvalidAuthenticationTokenAudience",
            "The access token has been obtained for wrong audience or resource.".to_owned(),
        ),
    };
    ArmErr::new(StatusCode::UNAUTHORIZED, code, msg)
}

fn fmt_unix(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(crate::state::rfc3339)
        .unwrap_or_default()
}

mod dispatch;
mod route;
#[cfg(test)]
mod tests;
