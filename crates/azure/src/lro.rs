//! Long-running operations: a handle built from the `Azure-AsyncOperation` / `Location`
//! headers of the first answer, that can be polled, persisted (it is plain serde data) and
//! resumed by another client after a restart, and resolved to the final resource or an
//! [`ArmError`] with the same classification as a synchronous failure.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ArmClient;
use crate::error::{ArmError, ErrorKind, Result};
use crate::pipeline::Response;

/// The first poll's delay when the first answer had no `Retry-After`.
const FIRST_POLL_WITHOUT_HINT: Duration = Duration::from_secs(1);

/// A long-running operation in flight. Serialize it to resume polling elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The method that started it (`PUT`, `PATCH`, `POST`, `DELETE`).
    pub method: String,
    /// The resource (or action) URL it was started on.
    pub resource_url: String,
    /// `Azure-AsyncOperation`, polled for `{"status": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_url: Option<String>,
    /// `Location`, polled until it stops answering 202.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_url: Option<String>,
    /// True when the first answer was already final (200/204 without polling headers).
    #[serde(default)]
    pub completed: bool,
    /// The first answer's `Retry-After`: how long to wait before the first poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// The result of one poll.
#[derive(Debug, Clone)]
pub enum Poll {
    /// Still running; poll again after this long.
    Pending(Duration),
    /// Done; the final resource body for PUT/PATCH, None otherwise.
    Done(Option<Value>),
}

impl Operation {
    pub(crate) fn from_response(method: &http::Method, url: &url::Url, resp: &Response) -> Self {
        let async_url = resp.header("azure-asyncoperation").map(str::to_owned);
        let location_url = resp.header("location").map(str::to_owned);
        let state = if resp.body.is_empty() {
            None
        } else {
            serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| {
                    v.pointer("/properties/provisioningState")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
        };
        let terminal_body = state.as_deref().is_none_or(is_terminal);
        let completed = async_url.is_none()
            && location_url.is_none()
            && resp.status != 202
            && (resp.status != 201 || state.is_some())
            && terminal_body;
        Self {
            method: method.to_string(),
            resource_url: url.to_string(),
            async_url,
            location_url,
            completed,
            retry_after_seconds: retry_after(resp).map(|d| d.as_secs()),
        }
    }

    /// Polls once.
    pub async fn poll(&self, client: &ArmClient) -> Result<Poll> {
        self.poll_for(client, true).await
    }

    /// Polls once; `fetch` false skips the final GET of a PUT/PATCH resource (`Done(None)`).
    async fn poll_for(&self, client: &ArmClient, fetch: bool) -> Result<Poll> {
        let default_wait = client.poll_interval(None);
        if self.completed {
            return self.final_result(client, fetch).await;
        }
        if let Some(url) = &self.async_url {
            let resp = client.get_url(url).await?;
            let status: arm_model::OperationStatus = resp.json()?;
            let wait = client.poll_interval(retry_after(&resp));
            return match status.status.to_ascii_lowercase().as_str() {
                "succeeded" => self.final_result(client, fetch).await,
                "failed" | "canceled" | "cancelled" => {
                    let detail = status.error.unwrap_or_else(|| arm_model::ErrorDetail {
                        code: if status.status.eq_ignore_ascii_case("failed") {
                            "OperationFailed"
                        } else {
                            "OperationCanceled"
                        }
                        .into(),
                        message: format!("the operation ended {}", status.status),
                        ..Default::default()
                    });
                    let mut e = ArmError::from_detail(ErrorKind::Operation, None, detail);
                    e.request_id = resp.request_id.clone();
                    Err(e)
                }
                _ => Ok(Poll::Pending(wait)),
            };
        }
        if let Some(url) = &self.location_url {
            return match client.get_url(url).await {
                Ok(resp) if resp.status == 202 => {
                    Ok(Poll::Pending(client.poll_interval(retry_after(&resp))))
                }
                Ok(resp) => {
                    if self.method == "PUT" || self.method == "PATCH" {
                        self.final_result(client, fetch).await
                    } else {
                        Ok(Poll::Done(serde_json::from_slice(&resp.body).ok()))
                    }
                }
                Err(mut e)
                    if e.kind == ErrorKind::Http
                        && !e.is_throttled()
                        && e.status.is_some_and(|s| s < 500) =>
                {
                    // The monitor URL answers with the operation's own failure.
                    e.kind = ErrorKind::Operation;
                    Err(e)
                }
                Err(e) => Err(e),
            };
        }
        // No polling headers: PUT/PATCH whose body carries a non-terminal provisioningState.
        let resp = client.get_url(&self.resource_url).await?;
        let body: Value = resp.json()?;
        match body
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
        {
            Some(s) if s.eq_ignore_ascii_case("failed") || s.eq_ignore_ascii_case("canceled") => {
                Err(ArmError::new(
                    ErrorKind::Operation,
                    "ProvisioningFailed",
                    format!("provisioningState is {s} for {}", self.resource_url),
                ))
            }
            Some(s) if !is_terminal(s) => Ok(Poll::Pending(default_wait)),
            _ => Ok(Poll::Done(Some(body))),
        }
    }

    async fn final_result(&self, client: &ArmClient, fetch: bool) -> Result<Poll> {
        match self.method.as_str() {
            "PUT" | "PATCH" if fetch => {
                let resp = client.get_url(&self.resource_url).await?;
                Ok(Poll::Done(Some(resp.json()?)))
            }
            _ => Ok(Poll::Done(None)),
        }
    }

    /// Polls until the operation ends, honouring `Retry-After` (the first answer's too:
    /// polling at once would only hear "InProgress"); the final resource for PUT/PATCH.
    pub async fn wait(&self, client: &ArmClient) -> Result<Option<Value>> {
        self.wait_for(client, true).await
    }

    /// Like [`Operation::wait`] without the final GET of the resource: for callers that
    /// only need to know the operation succeeded (one read less per operation, which counts
    /// against ARM's read budget when hundreds run at once).
    pub async fn wait_done(&self, client: &ArmClient) -> Result<()> {
        self.wait_for(client, false).await.map(|_| ())
    }

    /// How long after the first answer the operation is worth a first look: its
    /// `Retry-After`, or without a hint (Compute's VM PUT gives none) a second, since short
    /// operations are done by then and long ones are looked at on the usual interval after.
    pub fn first_look(&self, client: &ArmClient) -> Duration {
        match self.retry_after_seconds {
            Some(s) => client.poll_interval(Some(Duration::from_secs(s))),
            None => client.poll_interval(None).min(FIRST_POLL_WITHOUT_HINT),
        }
    }

    async fn wait_for(&self, client: &ArmClient, fetch: bool) -> Result<Option<Value>> {
        if !self.completed {
            tokio::time::sleep(self.first_look(client)).await;
        }
        loop {
            match self.poll_for(client, fetch).await? {
                Poll::Done(v) => return Ok(v),
                Poll::Pending(d) => tokio::time::sleep(d).await,
            }
        }
    }
}

fn is_terminal(state: &str) -> bool {
    ["succeeded", "failed", "canceled"]
        .iter()
        .any(|t| state.eq_ignore_ascii_case(t))
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let op = Operation {
            method: "PUT".into(),
            resource_url: "https://arm/x".into(),
            async_url: Some("https://arm/op?api-version=1".into()),
            location_url: None,
            completed: false,
            retry_after_seconds: Some(10),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<Operation>(&text).unwrap(), op);
        // An operation persisted by an earlier version (no retry_after_seconds) still loads.
        let old = r#"{"method":"POST","resource_url":"https://arm/x","completed":false}"#;
        assert_eq!(
            serde_json::from_str::<Operation>(old)
                .unwrap()
                .retry_after_seconds,
            None
        );
    }
}
