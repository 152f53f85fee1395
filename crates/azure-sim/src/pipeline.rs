//! The request pipelines: ARM's (authentication, api-version, throttling, faults, then the
//! resource providers) and the Batch data plane's, from the request to its reply.

use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::{MAX_BODY_BYTES, Shared, arm, auth, base_of, batch, boot, state};
use crate::arm::Ctx;
use crate::auth::Audience;
use crate::reply::{ArmErr, Reply};
use crate::throttle::ArmClass;

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Everything that is not Entra or `/_sim`: ARM, and the Batch data plane.
pub(crate) async fn arm_entry(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ArmErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestContentTooLarge",
                "The request content size exceeds the 4 MB limit.",
            )
            .into_reply()
            .into_response();
        }
    };
    let (base, host) = base_of(&parts);
    let path = parts.uri.path().to_owned();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut ctx = Ctx {
        method: parts.method.clone(),
        segs,
        path,
        query,
        base,
        host,
        body,
        if_match: header("if-match"),
        now: shared.clock.now(),
        api_version: String::new(),
        extra_headers: Vec::new(),
        stat_type: None,
        read_only: false,
    };
    let batch = ctx
        .segs
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("batch"));
    let auth = header("authorization");
    let mut reply = if batch {
        handle_batch(&shared, &mut ctx, auth.as_deref())
    } else {
        handle_arm(&shared, &mut ctx, auth.as_deref())
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    reply.headers.push(("x-ms-request-id", request_id.clone()));
    reply.headers.push(("request-id", request_id));
    reply.headers.push((
        "x-ms-correlation-request-id",
        header("x-ms-correlation-request-id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    ));
    if let Some(id) = header("x-ms-client-request-id").or_else(|| header("client-request-id")) {
        reply.headers.push(("x-ms-client-request-id", id));
    }
    // VMs this request saw reach running may boot now (never under the lock).
    boot::spawn_pending(&shared);
    reply.into_response()
}

fn handle_arm(shared: &Shared, ctx: &mut Ctx, auth: Option<&str>) -> Reply {
    let mut st = shared.lock();
    st.advance(ctx.now);
    *st.stats.requests.entry(ctx.method.to_string()).or_default() += 1;
    let last_write = st.stats.last_write_unix_ms;
    if ctx.method != http::Method::GET {
        st.stats.last_write_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as u64);
    }
    let class = ArmClass::of(&ctx.method);
    let result = arm_pipeline(&mut st, shared, ctx, auth, class);
    if ctx.read_only {
        st.stats.last_write_unix_ms = last_write;
    }
    if let Some(t) = ctx.stat_type.take() {
        *st.stats
            .by_type
            .entry(t)
            .or_default()
            .entry(ctx.method.to_string())
            .or_default() += 1;
    }
    let mut reply = result.unwrap_or_else(ArmErr::into_reply);
    let remaining = st.arm_remaining(class, ctx.now);
    reply.headers.push((
        match class {
            ArmClass::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            ArmClass::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            ArmClass::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        },
        remaining.to_string(),
    ));
    reply.headers.push((
        match class {
            ArmClass::Reads => "x-ms-ratelimit-remaining-subscription-global-reads",
            ArmClass::Writes => "x-ms-ratelimit-remaining-subscription-global-writes",
            ArmClass::Deletes => "x-ms-ratelimit-remaining-subscription-global-deletes",
        },
        (remaining * 15).to_string(),
    ));
    reply.headers.append(&mut ctx.extra_headers);
    reply
}

fn arm_pipeline(
    st: &mut state::State,
    shared: &Shared,
    ctx: &mut Ctx,
    auth: Option<&str>,
    class: ArmClass,
) -> Result<Reply, ArmErr> {
    let unix = time::OffsetDateTime::now_utc().unix_timestamp();
    match shared.mint.verify(auth, unix) {
        Ok(Audience::Arm) => {}
        Ok(_) => return Err(arm::token_error_reply(auth::TokenError::WrongAudience)),
        Err(e) => return Err(arm::token_error_reply(e)),
    }
    let version = ctx.q("api-version").map(str::to_owned);
    match version {
        None => {
            return Err(ArmErr::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        Some(v) if !arm::valid_api_version(&v) => {
            return Err(ArmErr::bad_request(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{}' is invalid. The supported format is 'yyyy-mm-dd' or 'yyyy-mm-dd-preview'.",
                    arm::truncate(&v, 40)
                ),
            ));
        }
        Some(v) => ctx.api_version = v,
    }
    if st.cfg.faults.arm_outage {
        // ARM is down for everyone: 503 with Retry-After, the documented transient answer
        // (see `Faults::arm_outage`), before any bucket is drawn.
        st.stats.faults_injected += 1;
        return Err(ArmErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is unavailable (simulated ARM outage). Please retry after the interval in Retry-After.",
        )
        .retry_after(1));
    }
    inject_faults(st)?;
    let sub = ctx.segs.get(1).cloned().unwrap_or_default();
    if ctx.segs.len() > 1 {
        st.arm_throttle(class, &sub, ctx.now)?;
    }
    st.dispatch(ctx)
}

/// Per-request 5xx and 429 faults, so a client's retry can succeed.
fn inject_faults(st: &mut state::State) -> Result<(), ArmErr> {
    let f = st.cfg.faults.clone();
    if f.http_5xx_rate > 0.0 && fastrand::f64() < f.http_5xx_rate {
        st.stats.faults_injected += 1;
        return Err(if fastrand::bool() {
            ArmErr::internal()
        } else {
            ArmErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable (simulated fault). Please retry.",
            )
        });
    }
    if f.http_429_rate > 0.0 && fastrand::f64() < f.http_429_rate {
        st.stats.faults_injected += 1;
        st.stats.throttled_429 += 1;
        return Err(ArmErr::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "The request was throttled (simulated fault). Please try again after '1' seconds.",
        )
        .retry_after(1));
    }
    Ok(())
}

fn handle_batch(shared: &Shared, ctx: &mut Ctx, auth: Option<&str>) -> Reply {
    let mut st = shared.lock();
    st.advance(ctx.now);
    *st.stats.requests.entry(ctx.method.to_string()).or_default() += 1;
    *st.stats
        .by_type
        .entry("Microsoft.Batch/batchAccounts/pools/nodes".into())
        .or_default()
        .entry(ctx.method.to_string())
        .or_default() += 1;
    let unix = time::OffsetDateTime::now_utc().unix_timestamp();
    match shared.mint.verify(auth, unix) {
        Ok(Audience::Batch) => {}
        Ok(_) => {
            return batch::BatchErr::new(
                StatusCode::FORBIDDEN,
                "InvalidAuthenticationTokenAudience",
                "The access token was not issued for https://batch.core.windows.net/.",
            )
            .into_reply();
        }
        Err(_) => {
            return batch::BatchErr::new(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of the Authorization header is a valid bearer token for https://batch.core.windows.net/.",
            )
            .into_reply();
        }
    }
    match ctx.q("api-version") {
        Some(v) if arm::valid_api_version(v) => ctx.api_version = v.to_owned(),
        _ => {
            return batch::BatchErr::new(
                StatusCode::BAD_REQUEST,
                "MissingRequiredQueryParameter",
                "A query parameter api-version (for example 2024-07-01.20.0) is required.",
            )
            .into_reply();
        }
    }
    if let Err(e) = inject_faults(&mut st) {
        return batch::BatchErr::new(e.status, e.code(), &e.body.error.message).into_reply();
    }
    st.batch_data_plane(ctx)
        .unwrap_or_else(batch::BatchErr::into_reply)
}
