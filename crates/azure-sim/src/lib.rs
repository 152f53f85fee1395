//! azure-sim: a stateful, behavioural model of Azure Resource Manager, the Azure Batch data
//! plane and Entra ID, served over HTTPS on loopback.
//!
//! It is what renderburst's tests run against and what a newcomer's first `renderburst
//! serve` talks to, so it models ARM rather than scripting it: resources with requested and
//! current state, asynchronous operations that complete after configured latencies, token
//! buckets, quotas, capacity, Spot evictions and injected faults. Official SDKs and the Azure
//! CLI work against it given only the endpoint and the CA (`shared/DESIGN.md` section 6).
//!
//! Module map:
//! - [`config`]: tunables (`--config` TOML, `PUT /_sim/config`).
//! - `state`: the world behind one lock, and lazy time (`advance`).
//! - `arm`: the ARM front door (auth, api-version, faults, throttling, routing).
//! - `resources`, `compute`, `network`, `batch`: resource providers.
//! - `auth`: Entra ID endpoints and token verification; `tls`: the generated CA.
//! - `control`: the `/_sim/*` API for tests, demos and benchmarks.
//! - `persist`: the state file of a simulator that survives restarts.

pub mod config;

mod arm;
mod auth;
mod batch;
mod boot;
mod clock;
mod compute;
mod control;
mod network;
mod persist;
mod reply;
mod resources;
mod state;
mod throttle;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use config::SimConfig;

use crate::arm::Ctx;
use crate::auth::{Audience, TokenMint};
use crate::reply::{ArmErr, Reply};
use crate::throttle::ArmClass;

/// Largest request body accepted (ARM's own limit is 4 MB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// State shared by every connection.
pub(crate) struct Shared {
    state: Mutex<state::State>,
    /// The same clock as the state's, readable without the lock.
    clock: Arc<clock::Clock>,
    mint: TokenMint,
    initial: SimConfig,
    /// Set for a persistent simulator ([`Simulator::start_persistent`]).
    persist: Option<persist::Persist>,
}

impl Shared {
    /// Moves the clock ahead and applies what came due; VMs that reached running boot.
    fn advance_clock(self: &Arc<Self>, by: std::time::Duration) {
        self.clock.advance(by);
        let now = self.clock.now();
        self.lock().advance(now);
        boot::spawn_pending(self);
    }

    fn lock(&self) -> MutexGuard<'_, state::State> {
        // A panic while holding the lock would be a bug; keep serving rather than poison
        // every later request.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator.
pub struct Simulator {
    base_url: String,
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// A persistent simulator's saver, told to stop (and save last) after the accept loop.
    saver: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Simulator {
    /// Binds `addr` (port 0 for any) and serves until [`Simulator::shutdown`] or drop.
    pub async fn start(addr: SocketAddr, cfg: SimConfig) -> anyhow::Result<Simulator> {
        cfg.validate()?;
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, cfg).await
    }

    /// Serves on an already bound listener.
    pub async fn serve(listener: TcpListener, cfg: SimConfig) -> anyhow::Result<Simulator> {
        let tls = tls::generate()?;
        let state = state::State::new(cfg.clone(), tokio::time::Instant::now().into_std());
        Self::run(listener, cfg, tls, TokenMint::new(), state, None)
    }

    /// A simulator whose world outlives the process: loaded from `state_file` if it exists
    /// (resources, Batch pools and nodes, operations, statistics, the address, the CA and
    /// certificate, the token key; `cfg` replaces the settings), else started empty on
    /// `addr` (port 0: a free port, kept from then on). The world is saved to the file
    /// (mode 0600, replaced atomically) shortly after every write request and on
    /// [`Simulator::shutdown`]; see the `persist` module. A saved address that another
    /// process holds is an error that says so.
    pub async fn start_persistent(
        state_file: &Path,
        addr: SocketAddr,
        cfg: SimConfig,
    ) -> anyhow::Result<Simulator> {
        use anyhow::Context;
        cfg.validate()?;
        let path = state_file.to_path_buf();
        let loaded = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || persist::load(&p)).await??
        };
        let (listener, tls, mint, state) = match loaded {
            Some(snap) => {
                let listener = persist::bind_saved(snap.addr, &path).await?;
                let tls = tls::from_parts(snap.tls.clone())
                    .with_context(|| format!("the TLS certificate in {}", path.display()))?;
                let mint = TokenMint::from_key(snap.token_key()?);
                let state = snap.into_state(cfg.clone(), tokio::time::Instant::now().into_std());
                (listener, tls, mint, state)
            }
            None => {
                let listener = persist::bind_first(addr)
                    .await
                    .with_context(|| format!("cannot start the simulator on {addr}"))?;
                let state = state::State::new(cfg.clone(), tokio::time::Instant::now().into_std());
                (listener, tls::generate()?, TokenMint::new(), state)
            }
        };
        let bound = listener.local_addr()?;
        let keep = persist::Persist::new(path, bound, tls.parts.clone());
        let mut sim = Self::run(listener, cfg, tls, mint, state, Some(keep))?;
        // Saved at once: a first start's address, or what came due while stopped.
        persist::save_logged(&sim.shared).await;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(persist::run(sim.shared.clone(), stop_rx));
        sim.saver = Some((stop, task));
        // Machines that came up while stopped boot now.
        boot::spawn_pending(&sim.shared);
        Ok(sim)
    }

    fn run(
        listener: TcpListener,
        cfg: SimConfig,
        tls: tls::SimTls,
        mint: TokenMint,
        state: state::State,
        persist: Option<persist::Persist>,
    ) -> anyhow::Result<Simulator> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            clock: state.clock.clone(),
            state: Mutex::new(state),
            mint,
            initial: cfg,
            persist,
        });
        let router = router(shared.clone());
        let (tx, rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let task = tokio::spawn(accept_loop(listener, acceptor, router, shared.clone(), rx));
        let host = if addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", addr.port())
        } else {
            addr.to_string()
        };
        Ok(Simulator {
            base_url: format!("https://{host}"),
            addr,
            ca_pem: tls.ca_pem,
            shared,
            shutdown: tx,
            task: Some(task),
            saver: None,
        })
    }

    /// The state file of a persistent simulator.
    pub fn state_file(&self) -> Option<&Path> {
        self.shared.persist.as_ref().map(|p| p.path.as_path())
    }

    /// Moves the simulator's clock `by` ahead at once, as `POST /_sim/clock` does: what
    /// came due meanwhile (operations, evictions, Batch allocations) happens now.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.shared.advance_clock(by);
    }

    /// `https://127.0.0.1:PORT`, the ARM endpoint and the Entra authority host alike.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The credentials and subscription the simulator accepts.
    pub fn identity(&self) -> config::Identity {
        self.shared.lock().cfg.identity.clone()
    }

    /// Stops accepting connections and waits for the accept loop to end; a persistent
    /// simulator then saves its world one last time.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some((stop, task)) = self.saver.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some((stop, _)) = &self.saver {
            let _ = stop.send(true);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
        let Ok((tcp, _peer)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shared = shared.clone();
        conns.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    let shared = shared.clone();
                    async move {
                        // What may have changed the world is saved soon; reads only advance lazy time.
                        let write =
                            !matches!(*req.method(), http::Method::GET | http::Method::HEAD);
                        let arm = is_faultable(req.uri().path());
                        // Dropped connections are decided here, below HTTP: half of them before
                        // the request is handled, half after (the change happened, the answer
                        // is lost), which is the case that tests a client's idempotency.
                        let drop = drop_decision(&shared, req.uri().path());
                        if drop == DropWhen::Before {
                            return Err(std::io::Error::other("simulated dropped connection"));
                        }
                        let resp = router.oneshot(req.map(Body::new)).await;
                        if let Some(p) = &shared.persist
                            && (write || arm)
                        {
                            p.mark(write);
                        }
                        if drop == DropWhen::After {
                            return Err(std::io::Error::other("simulated dropped connection"));
                        }
                        resp.map_err(|never| match never {})
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
    conns.abort_all();
}

#[derive(Debug, PartialEq, Eq)]
enum DropWhen {
    Never,
    Before,
    After,
}

fn is_faultable(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.starts_with("/subscriptions") || p.starts_with("/batch/")
}

fn drop_decision(shared: &Shared, path: &str) -> DropWhen {
    if !is_faultable(path) {
        return DropWhen::Never;
    }
    let mut st = shared.lock();
    let rate = st.cfg.faults.drop_rate;
    if rate > 0.0 && fastrand::f64() < rate {
        st.stats.faults_injected += 1;
        if fastrand::bool() {
            DropWhen::Before
        } else {
            DropWhen::After
        }
    } else {
        DropWhen::Never
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra::openid_configuration),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(entra::openid_configuration),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route("/common/discovery/instance", get(entra::instance_discovery))
        .route("/metadata/endpoints", get(entra::cloud_metadata))
        .route(
            "/metadata/identity/oauth2/token",
            get(entra::managed_identity_token),
        )
        .merge(control::routes())
        .fallback(arm_entry)
        .with_state(shared)
}

/// `https://host[:port]` as the client addressed us.
fn base_of(parts: &http::request::Parts) -> (String, String) {
    let host = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    (format!("https://{host}"), host)
}

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
async fn arm_entry(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
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
    if ctx.method != http::Method::GET {
        st.stats.last_write_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as u64);
    }
    let class = ArmClass::of(&ctx.method);
    let result = arm_pipeline(&mut st, shared, ctx, auth, class);
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

mod entra {
    //! Entra ID endpoints (see `auth` for tokens).

    use std::sync::Arc;

    use axum::Form;
    use axum::extract::{Path, Query, State};
    use axum::response::{IntoResponse, Response};
    use http::{HeaderMap, StatusCode};
    use serde_json::json;

    use super::{Shared, base_of};
    use crate::auth::Audience;
    use crate::reply::Reply;

    fn base(headers: &HeaderMap, uri: &http::Uri) -> String {
        let mut req = http::Request::new(());
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        let (parts, _) = req.into_parts();
        base_of(&parts).0
    }

    pub async fn openid_configuration(
        Path(tenant): Path<String>,
        headers: HeaderMap,
        uri: http::Uri,
    ) -> Response {
        let b = base(&headers, &uri);
        Reply::ok(json!({
            "token_endpoint": format!("{b}/{tenant}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{b}/{tenant}/oauth2/v2.0/logout"),
            "issuer": format!("{b}/{tenant}/v2.0"),
            "jwks_uri": format!("{b}/{tenant}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "azure-sim",
        }))
        .into_response()
    }

    pub async fn instance_discovery(headers: HeaderMap, uri: http::Uri) -> Response {
        let b = base(&headers, &uri);
        let host = b.trim_start_matches("https://").to_owned();
        Reply::ok(json!({
            "tenant_discovery_endpoint": format!("{b}/common/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }))
        .into_response()
    }

    /// What the Azure CLI reads to register a cloud from its ARM endpoint.
    pub async fn cloud_metadata(headers: HeaderMap, uri: http::Uri) -> Response {
        let b = base(&headers, &uri);
        let doc = json!({
            "name": "AzureSim",
            "portal": format!("{b}/portal"),
            "resourceManager": format!("{b}/"),
            "authentication": {
                "loginEndpoint": format!("{b}/"),
                "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "media": format!("{b}/media"),
            "graphAudience": "https://graph.windows.net/",
            "graph": "https://graph.windows.net/",
            "batch": "https://batch.core.windows.net/",
            "gallery": format!("{b}/gallery"),
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
            "sqlManagement": "https://management.core.windows.net:8443/",
            "vmImageAliasDoc": format!("{b}/vmimagealiases"),
            "activeDirectoryDataLake": "https://datalake.azure.net/",
            "appInsightsResourceId": "https://api.applicationinsights.io",
            "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
            "attestationResourceId": "https://attest.azure.net",
            "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
            "logAnalyticsResourceId": "https://api.loganalytics.io",
            "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
            "suffixes": {
                "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                "acrLoginServer": "azurecr.io",
                "sqlServerHostname": "database.windows.net",
                "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
                "keyVaultDns": "vault.azure.net",
                "storage": "core.windows.net",
                "azureFrontDoorEndpointSuffix": "azurefd.net",
                "storageSyncEndpointSuffix": "afs.azure.net",
                "mhsmDns": "managedhsm.azure.net",
                "mysqlServerEndpoint": "mysql.database.azure.com",
                "postgresqlServerEndpoint": "postgres.database.azure.com",
                "mariadbServerEndpoint": "mariadb.database.azure.com",
                "synapseAnalytics": "dev.azuresynapse.net",
                "attestationEndpoint": "attest.azure.net",
            },
        });
        // api-version 2022-09-01 answers one object (what current Azure CLIs read); the
        // 2019-05-01 to 2020-06-01 versions answered an array of clouds.
        let as_array = uri.query().is_some_and(|q| {
            ["2019-05-01", "2020-06-01"]
                .iter()
                .any(|v| q.contains(&format!("api-version={v}")))
        });
        Reply::ok(if as_array { json!([doc]) } else { doc }).into_response()
    }

    #[derive(serde::Deserialize)]
    pub struct TokenForm {
        grant_type: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        client_assertion: Option<String>,
        client_assertion_type: Option<String>,
        scope: Option<String>,
    }

    fn token_error(status: StatusCode, error: &str, code: u64, description: String) -> Response {
        let body = arm_model::TokenErrorResponse {
            error: error.to_owned(),
            error_description: description,
            error_codes: vec![code],
            timestamp: Some(crate::state::rfc3339(time::OffsetDateTime::now_utc())),
            trace_id: Some(uuid::Uuid::new_v4().to_string()),
            correlation_id: Some(uuid::Uuid::new_v4().to_string()),
            error_uri: Some(format!(
                "https://login.microsoftonline.com/error?code={code}"
            )),
        };
        Reply::json(status, serde_json::to_value(body).unwrap_or_default()).into_response()
    }

    pub async fn token(
        State(shared): State<Arc<Shared>>,
        Path(tenant): Path<String>,
        headers: HeaderMap,
        uri: http::Uri,
        form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
    ) -> Response {
        let Ok(Form(form)) = form else {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "AADSTS900144: The request body must contain the following parameter: 'grant_type'.".into(),
            );
        };
        let id = shared.lock().cfg.identity.clone();
        if !tenant.eq_ignore_ascii_case(&id.tenant_id) {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90002,
                format!(
                    "AADSTS90002: Tenant '{}' not found.",
                    crate::arm::truncate(&tenant, 64)
                ),
            );
        }
        if form.grant_type.as_deref() != Some("client_credentials") {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "AADSTS70003: The app requested an unsupported grant type; only client_credentials is simulated.".into(),
            );
        }
        if !form
            .client_id
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(&id.client_id))
        {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                format!(
                    "AADSTS700016: Application with identifier '{}' was not found in the directory '{}'.",
                    crate::arm::truncate(form.client_id.as_deref().unwrap_or(""), 64),
                    id.tenant_id
                ),
            );
        }
        // A client assertion (workload identity, certificates) is accepted without checking
        // its signature: the simulator has no trust configuration to check it against.
        let assertion_ok = form.client_assertion_type.as_deref()
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && form
                .client_assertion
                .as_deref()
                .is_some_and(|a| !a.is_empty());
        if !assertion_ok && form.client_secret.as_deref() != Some(id.client_secret.as_str()) {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    id.client_id
                ),
            );
        }
        let scope = form.scope.unwrap_or_default();
        let Some((_, aud)) = Audience::from_scope(&scope) else {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                format!(
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
                    crate::arm::truncate(&scope, 200)
                ),
            );
        };
        let b = base(&headers, &uri);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = shared.mint.issue(
            &id.tenant_id,
            &id.client_id,
            &aud,
            &format!("{b}/{}/v2.0", id.tenant_id),
            now,
            id.token_lifetime_seconds,
        );
        let body = arm_model::TokenResponse {
            token_type: "Bearer".into(),
            expires_in: id.token_lifetime_seconds,
            ext_expires_in: Some(id.token_lifetime_seconds),
            access_token: token,
        };
        Reply::ok(serde_json::to_value(body).unwrap_or_default()).into_response()
    }

    #[derive(serde::Deserialize)]
    pub struct MiQuery {
        resource: Option<String>,
    }

    /// A managed-identity endpoint in the App Service style (`IDENTITY_ENDPOINT` +
    /// `IDENTITY_HEADER`), so managed-identity credentials can be exercised on loopback.
    pub async fn managed_identity_token(
        State(shared): State<Arc<Shared>>,
        Query(q): Query<MiQuery>,
        headers: HeaderMap,
        uri: http::Uri,
    ) -> Response {
        let has_header = headers.contains_key("x-identity-header")
            || headers.get("metadata").is_some_and(|v| v == "true");
        if !has_header {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                0,
                "Required metadata header not specified".into(),
            );
        }
        let resource = q.resource.unwrap_or_default();
        let Some((_, aud)) = Audience::from_scope(&resource) else {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                0,
                format!(
                    "Unknown resource '{}'.",
                    crate::arm::truncate(&resource, 200)
                ),
            );
        };
        let id = shared.lock().cfg.identity.clone();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let b = base(&headers, &uri);
        let token = shared.mint.issue(
            &id.tenant_id,
            &id.client_id,
            &aud,
            &format!("{b}/{}/v2.0", id.tenant_id),
            now,
            id.token_lifetime_seconds,
        );
        Reply::ok(json!({
            "access_token": token,
            "expires_in": id.token_lifetime_seconds.to_string(),
            "expires_on": (now + id.token_lifetime_seconds as i64).to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": id.client_id,
        }))
        .into_response()
    }
}
