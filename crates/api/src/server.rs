//! Serving the API on a listener: HTTPS or plain HTTP, limits on slow and stuck clients, the
//! `Host` check of loopback listeners, and graceful shutdown.
//!
//! What a client cannot do here, and how each is enforced:
//! - Hold a connection without asking anything: its first request head must be complete
//!   within `header_read_timeout` of the accept (TLS handshake included), and a connection
//!   with no request in flight is closed after `idle_timeout`. HTTP/1.1 also restarts
//!   hyper's header timer after every answer, so a kept-alive HTTP/1.1 connection must begin
//!   its next request within `header_read_timeout` too.
//! - Send a head slowly (slowloris): hyper's `header_read_timeout`.
//! - Send a body slowly, or make a request last: each request is answered within
//!   `request_timeout` (body read included), else with a JSON 408, and the connection is
//!   closed.
//! - Read the answer slowly: once a connection is being closed, it gets `header_read_timeout`
//!   more to take what is written, then it is dropped.
//! - Open many connections: at most `max_connections` are served at once; further ones wait
//!   in the kernel's accept backlog until a slot frees, so good clients are served as soon as
//!   bad ones are cut.
//!
//! `axum::serve` exposes none of these, so connections are served with hyper-util's builder,
//! as the simulator does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::host::{self, AllowedHosts};
use crate::{ApiError, ApiState};

/// How the API is served. [`Default`] is the daemon's defaults, plain HTTP.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Serve HTTPS with this configuration; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A new connection's first request head (and TLS handshake) must arrive within this;
    /// on HTTP/1.1, every later request head too.
    pub header_read_timeout: Duration,
    /// Every request is answered within this, reading its body included.
    pub request_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Accepted in `Host` by a loopback listener besides loopback names: the host of
    /// `server.advertise_url` (`host[:port]`).
    pub advertised_host: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            advertised_host: None,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish (within `request_timeout`), closes idle connections and returns.
pub async fn serve_with(
    listener: TcpListener,
    state: ApiState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let mut app = crate::router(state);
    if local.ip().to_canonical().is_loopback() {
        let allowed = Arc::new(AllowedHosts::new(options.advertised_host.clone()));
        app = app.layer(middleware::from_fn_with_state(allowed, host::check));
    }
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let options = Arc::new(options);
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: at the cap, new connections wait in the backlog, not in memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.as_mut() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.as_mut() => break,
        };
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: back off rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection; retrying in a second");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.as_mut() => break,
                }
            }
        };
        connections.spawn(connection(
            tcp,
            peer,
            app.clone(),
            acceptor.clone(),
            options.clone(),
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    stop.send_replace(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One connection, from the TLS handshake to its close. Holds its slot until it ends.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    options: Arc<ServeOptions>,
    mut stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let first_request_by = Instant::now() + options.header_read_timeout;
    match acceptor {
        None => serve_io(tcp, peer, app, &options, first_request_by, stopping).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                r = tokio::time::timeout_at(first_request_by, acceptor.accept(tcp)) => r,
                _ = stopping.wait_for(|s| *s) => return,
            };
            match handshake {
                Ok(Ok(tls)) => {
                    serve_io(tls, peer, app, &options, first_request_by, stopping).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake too slow: connection closed"),
            }
        }
    }
}

/// What a connection is doing: requests in flight, and how many were started.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    in_flight: usize,
    started: u64,
}

/// Lowers `in_flight` when a request's future ends, answered or dropped.
struct InFlight(watch::Sender<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| a.in_flight -= 1);
    }
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    options: &ServeOptions,
    first_request_by: Instant,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (activity, mut watch_activity) = watch::channel(Activity::default());
    let request_timeout = options.request_timeout;
    let service =
        hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            let app = app.clone();
            activity.send_modify(|a| {
                a.in_flight += 1;
                a.started += 1;
            });
            let in_flight = InFlight(activity.clone());
            async move {
                let _in_flight = in_flight;
                // What `into_make_service_with_connect_info` would add: `/metrics` and
                // `/openapi.json` tell loopback peers by it.
                req.extensions_mut().insert(ConnectInfo(peer));
                let version = req.version();
                let answer = tokio::time::timeout(request_timeout, app.oneshot(req.map(Body::new)));
                Ok::<_, Infallible>(match answer.await {
                    Ok(response) => response.unwrap_or_else(|never| match never {}),
                    Err(_) => too_slow(version, request_timeout),
                })
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    // Once closing, what is left of the connection gets this long.
    let mut close_by: Option<Instant> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = idle(&mut watch_activity, first_request_by, options.idle_timeout), if close_by.is_none() => {
                tracing::debug!(%peer, "idle or silent connection closed");
                conn.as_mut().graceful_shutdown();
                close_by = Some(Instant::now() + options.header_read_timeout);
            }
            _ = stopping.wait_for(|s| *s), if close_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                close_by = Some(Instant::now() + options.request_timeout + options.header_read_timeout);
            }
            () = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => {
                tracing::debug!(%peer, "connection too slow to close: dropped");
                return;
            }
        }
    }
}

/// Completes when the connection should be closed for doing nothing: no request started by
/// `first_request_by`, or no request in flight for `idle_timeout`.
async fn idle(
    activity: &mut watch::Receiver<Activity>,
    first_request_by: Instant,
    idle_timeout: Duration,
) {
    // (The `Ref`s `wait_for` returns are dropped at once: they hold the channel's lock.)
    let first = async { activity.wait_for(|a| a.started > 0).await.is_ok() };
    match tokio::time::timeout_at(first_request_by, first).await {
        Err(_) => return,
        // The connection is ending by itself.
        Ok(false) => return std::future::pending().await,
        Ok(true) => {}
    }
    loop {
        if activity.wait_for(|a| a.in_flight == 0).await.is_err() {
            return std::future::pending().await;
        }
        match tokio::time::timeout(idle_timeout, activity.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {}
        }
    }
}

/// The answer to a request not complete within `request_timeout`; HTTP/1 connections close
/// after it (the rest of the body is not worth reading).
fn too_slow(version: Version, request_timeout: Duration) -> axum::response::Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request was not received and answered within {} s",
            request_timeout.as_secs_f64()
        ),
    )
    .into_response();
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
