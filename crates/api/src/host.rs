//! The `Host` check of loopback listeners, against DNS rebinding.
//!
//! A page on `attacker.example` whose name the attacker re-points at 127.0.0.1 makes the
//! victim's browser send requests to the daemon on loopback, as a same-origin page that can
//! read the answers. Such requests come from a loopback peer, which `/metrics` and
//! `/openapi.json` serve without a token, but they carry the attacker's name in `Host`. So a
//! loopback listener answers only requests addressed to a loopback name (`localhost`,
//! `127.x.x.x`, `[::1]`, any port) or to the host of `server.advertise_url`; any other `Host`
//! gets a 421, a missing or malformed one a 400, both with the usual JSON error body.
//!
//! What it does not cover, deliberately: listeners on other addresses. They serve HTTPS (a
//! browser refuses the daemon's certificate for the attacker's name before sending anything),
//! or plain HTTP only where `server.insecure_http` says the network is private.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// The names a loopback listener answers to besides the loopback ones.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// Lower-case host names or IP literals (IPv6 in brackets), without a port.
    extra: Vec<String>,
}

impl AllowedHosts {
    /// Loopback names plus `extra` (for example the host of `server.advertise_url`;
    /// `host[:port]` or `[v6][:port]`, any case).
    pub fn new(extra: impl IntoIterator<Item = String>) -> Self {
        Self {
            extra: extra
                .into_iter()
                .filter_map(|h| split_host(&h).map(|(host, _)| host.to_ascii_lowercase()))
                .collect(),
        }
    }

    /// True if a request whose `Host` (or HTTP/2 `:authority`) is `authority` may be
    /// answered.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, _)) = split_host(authority) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        host == "localhost"
            || host == "[::1]"
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
            || self.extra.contains(&host)
    }
}

/// `host[:port]` or `[v6][:port]` → (host, port). `None` when it is neither.
fn split_host(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    ok.then_some((host, port))
}

/// The middleware: lets a request through only if its `Host` is allowed.
pub async fn check(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the `:authority` pseudo-header, which
    // hyper puts in the URI.
    let authority = match request.headers().get(header::HOST) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => request.uri().authority().map(|a| a.as_str().to_owned()),
    };
    match authority {
        None => ApiError::bad_request(
            "bad_host",
            "the request has no valid Host header; this listener answers only requests addressed to localhost",
        )
        .with_field("Host")
        .into_response(),
        Some(host) if allowed.allows(&host) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            "this loopback listener answers only requests addressed to localhost, 127.0.0.1, [::1] or the host of server.advertise_url",
        )
        .with_field("Host")
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::AllowedHosts;

    #[test]
    fn loopback_names_and_the_advertised_host_only() {
        let allowed = AllowedHosts::new(["Render-Burst.studio.local:7878".to_owned()]);
        for ok in [
            "localhost",
            "LOCALHOST:7878",
            "127.0.0.1",
            "127.0.0.1:7878",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:7878",
            "render-burst.studio.local",
            "render-burst.studio.local:443",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7878",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.4:7878",
            "[::2]",
            "[::1]x",
            "localhost:http",
            "localhost:99999",
            "",
            ":7878",
            "local host",
        ] {
            assert!(!allowed.allows(bad), "{bad}");
        }
        assert!(!AllowedHosts::default().allows("render-burst.studio.local"));
    }
}
