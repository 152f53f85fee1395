//! Sending one request to ARM or the Batch service: bearer token, request ids, user agent,
//! per-request timeout, the rate governor, and bounded retries with jittered exponential
//! backoff.
//!
//! Retried: 5xx, 408, 429 (after the governor's hold), dropped connections and timeouts.
//! Never retried: any other 4xx — a bad request or a conflict does not get better by
//! repetition, and a quota error must reach the planner at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arm_model::{ErrorDetail, ErrorResponse};
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

use crate::credential::TokenSource;
use crate::error::{ArmError, ErrorKind, Result};
use crate::governor::{Draw, Governor, Ticket};

/// Knobs of the request pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Time allowed for one attempt, connection to last byte.
    pub request_timeout: Duration,
    /// Attempts after the first.
    pub max_retries: u32,
    /// No retry starts after this much time has passed since the first attempt.
    pub max_retry_time: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub user_agent: String,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_retries: 8,
            max_retry_time: Duration::from_secs(120),
            base_backoff: Duration::from_millis(400),
            max_backoff: Duration::from_secs(20),
            user_agent: format!("renderburst/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// An answer with a success status.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: Option<String>,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::decode(format!(
                "cannot decode the answer (HTTP {}): {e}; body starts {:?}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            ))
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Counters for metrics and status; labels are low-cardinality (class, status code).
#[derive(Debug, Default)]
pub struct PipelineCounters {
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub throttled_429: AtomicU64,
    pub transport_errors: AtomicU64,
    pub governor_wait_us: AtomicU64,
    by_status: std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    /// Set by the first ARM attempt that failed (5xx, 408, no answer) after the last one that
    /// got any other answer; cleared by the next such answer.
    outage: std::sync::Mutex<Option<ArmOutage>>,
}

/// ARM failing: since when every ARM attempt has failed with a 5xx, a 408 or no answer, and
/// the last failure (`"503 ServiceUnavailable"`, `"no answer: timeout"`). Any other answer
/// (2xx, 3xx, 4xx including 429) ends it: ARM answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmOutage {
    /// Unix seconds of the first failed attempt.
    pub since_unix: i64,
    pub failed_attempts: u64,
    pub last_error: String,
}

impl PipelineCounters {
    /// (ARM class or `batch`, HTTP status) → count.
    pub fn by_status(&self) -> Vec<(String, u16, u64)> {
        self.by_status
            .lock()
            .map(|m| m.iter().map(|((c, s), n)| (c.clone(), *s, *n)).collect())
            .unwrap_or_default()
    }

    /// ARM failing now, if it is (see [`ArmOutage`]).
    pub fn arm_outage(&self) -> Option<ArmOutage> {
        self.outage.lock().ok().and_then(|o| o.clone())
    }

    /// One ARM attempt's outcome: `Some(what)` if it failed as an outage does.
    fn arm_attempt(&self, failure: Option<String>) {
        let Ok(mut o) = self.outage.lock() else {
            return;
        };
        match (failure, o.as_mut()) {
            (None, _) => *o = None,
            (Some(e), Some(out)) => {
                out.failed_attempts += 1;
                out.last_error = e;
            }
            (Some(e), None) => {
                let since_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                *o = Some(ArmOutage {
                    since_unix,
                    failed_attempts: 1,
                    last_error: e,
                });
            }
        }
    }

    fn count(&self, class: &str, status: u16) {
        if let Ok(mut m) = self.by_status.lock() {
            *m.entry((class.to_owned(), status)).or_default() += 1;
        }
    }
}

pub(crate) struct Pipeline {
    pub http: reqwest::Client,
    pub governor: Arc<Governor>,
    pub opts: PipelineOptions,
    pub counters: Arc<PipelineCounters>,
}

/// A governor draw in flight: completed with the answer, or without one when dropped. A
/// caller may drop a request's future (the controller bounds its activations with a
/// deadline); without this the governor would count the draw in flight for ever.
struct InFlight<'a> {
    governor: &'a Governor,
    draw: Option<(&'a Draw, Ticket)>,
}

impl InFlight<'_> {
    /// Completes the draw; returns its ticket, for [`Governor::throttled`].
    fn complete(mut self, answer: Option<(u16, &HeaderMap)>) -> Option<Ticket> {
        let (d, t) = self.draw.take()?;
        self.governor.complete(d, &t, answer);
        Some(t)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((d, t)) = self.draw.take() {
            self.governor.complete(d, &t, None);
        }
    }
}

/// One logical request.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: url::Url,
    pub body: Option<Bytes>,
    pub tokens: &'a TokenSource,
    /// What it draws on in the governor; `None` for the Batch data plane, which has no ARM
    /// buckets.
    pub draw: Option<Draw>,
    pub extra_headers: Vec<(&'static str, String)>,
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms")
        .or_else(|| get("x-ms-retry-after-ms"))
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    let v = get("retry-after")?;
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    // An HTTP date.
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - time::OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0) as u64;
    Some(Duration::from_secs(secs))
}

/// Builds the error for a non-success answer, from ARM's or the Batch service's error body.
fn error_from(status: u16, headers: &HeaderMap, body: &[u8], client_request_id: &str) -> ArmError {
    let detail = serde_json::from_slice::<ErrorResponse>(body)
        .map(|e| e.error)
        .or_else(|_| {
            // Batch data plane: {"code": "...", "message": {"value": "..."}}
            serde_json::from_slice::<serde_json::Value>(body).map(|v| ErrorDetail {
                code: v["code"].as_str().unwrap_or_default().to_owned(),
                message: v["message"]["value"]
                    .as_str()
                    .or_else(|| v["message"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                ..Default::default()
            })
        })
        .unwrap_or_default();
    let mut detail = detail;
    if detail.code.is_empty() {
        detail.code = match status {
            401 => "Unauthorized".into(),
            403 => "Forbidden".into(),
            404 => "NotFound".into(),
            409 => "Conflict".into(),
            429 => "TooManyRequests".into(),
            s if s >= 500 => "ServerError".into(),
            _ => format!("Http{status}"),
        };
        detail.message = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    }
    let mut e = ArmError::from_detail(ErrorKind::Http, Some(status), detail);
    e.request_id = headers
        .get("x-ms-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    e.client_request_id = Some(client_request_id.to_owned());
    e.retry_after = retry_after(headers);
    e
}

impl Pipeline {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .opts
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.opts.max_backoff);
        // Full jitter on the upper half keeps retries of many callers apart.
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    pub async fn send(&self, call: Call<'_>) -> Result<Response> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let class_label = call.draw.as_ref().map_or("batch", |d| d.class.as_str());
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            let mut draw = None;
            if let Some(d) = &call.draw {
                let ticket = self.governor.acquire(d).await;
                self.counters
                    .governor_wait_us
                    .fetch_add(ticket.waited.as_micros() as u64, Ordering::Relaxed);
                draw = Some((d, ticket));
            }
            let in_flight = InFlight {
                governor: &self.governor,
                draw,
            };
            let token = match call.tokens.token().await {
                Ok(t) => t,
                Err(e) => {
                    in_flight.complete(None);
                    return Err(e);
                }
            };
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .http
                .request(call.method.clone(), call.url.clone())
                .timeout(self.opts.request_timeout)
                .header(http::header::AUTHORIZATION, token.header_value())
                .header("x-ms-client-request-id", &client_request_id)
                .header("x-ms-return-client-request-id", "true")
                .header(http::header::USER_AGENT, &self.opts.user_agent)
                .header(http::header::ACCEPT, "application/json");
            for (k, v) in &call.extra_headers {
                req = req.header(*k, v);
            }
            if let Some(b) = &call.body {
                req = req
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let t0 = Instant::now();
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let elapsed_ms = t0.elapsed().as_millis() as u64;
            let may_retry =
                attempt < self.opts.max_retries && started.elapsed() < self.opts.max_retry_time;
            match outcome {
                Err(e) => {
                    in_flight.complete(None);
                    if call.draw.is_some() {
                        let what = if e.is_timeout() {
                            "timeout"
                        } else {
                            "connection failed"
                        };
                        self.counters
                            .arm_attempt(Some(format!("no answer: {what}")));
                    }
                    self.counters
                        .transport_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%client_request_id, method = %call.method, path = call.url.path(), attempt, elapsed_ms, error = %e, "no answer");
                    if !may_retry {
                        let mut err = ArmError::new(
                            ErrorKind::Transport,
                            if e.is_timeout() {
                                "Timeout"
                            } else {
                                "Transport"
                            },
                            format!(
                                "{} {} got no answer after {} attempts: {e}",
                                call.method,
                                call.url.path(),
                                attempt + 1
                            ),
                        );
                        err.client_request_id = Some(client_request_id);
                        return Err(err);
                    }
                    let delay = self.backoff(attempt);
                    attempt += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                }
                Ok((status, headers, body)) => {
                    let ticket = in_flight.complete(Some((status, &headers)));
                    self.counters.count(class_label, status);
                    if call.draw.is_some() {
                        let failed = status == 408 || status >= 500;
                        self.counters.arm_attempt(failed.then(|| {
                            let err = error_from(status, &headers, &body, &client_request_id);
                            format!("{status} {}", err.code)
                        }));
                    }
                    tracing::debug!(%client_request_id, method = %call.method, path = call.url.path(), status, attempt, elapsed_ms, "answer");
                    if (200..400).contains(&status) {
                        return Ok(Response {
                            status,
                            request_id: headers
                                .get("x-ms-request-id")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            headers,
                            body,
                        });
                    }
                    let err = error_from(status, &headers, &body, &client_request_id);
                    if status == 401
                        && !reauthenticated
                        && matches!(
                            err.code.as_str(),
                            "ExpiredAuthenticationToken" | "InvalidAuthenticationToken"
                        )
                    {
                        // The token was rejected: fetch a new one once.
                        reauthenticated = true;
                        call.tokens.invalidate().await;
                        continue;
                    }
                    if status == 429 {
                        self.counters.throttled_429.fetch_add(1, Ordering::Relaxed);
                        let wait = err.retry_after.unwrap_or(Duration::from_secs(5));
                        let scope = err
                            .details
                            .iter()
                            .find(|d| d.code == "TooManyRequests")
                            .and_then(|d| d.target.clone());
                        if let (Some(d), Some(t)) = (&call.draw, &ticket) {
                            self.governor.throttled(d, t, wait, scope.as_deref());
                        }
                        tracing::info!(%client_request_id, class = class_label, retry_after_s = wait.as_secs_f64(), code = %err.code, "throttled by Azure");
                        if !may_retry || started.elapsed() + wait > self.opts.max_retry_time {
                            return Err(err);
                        }
                        attempt += 1;
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        if call.draw.is_none() {
                            tokio::time::sleep(wait).await;
                        }
                        continue;
                    }
                    let retryable = status == 408 || status >= 500;
                    if !retryable || !may_retry {
                        return Err(err);
                    }
                    let delay = self
                        .backoff(attempt)
                        .max(err.retry_after.unwrap_or_default());
                    attempt += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
