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
//! - `arm`: the ARM front door (auth, api-version, faults, throttling, routing); `pipeline`:
//!   the order a request goes through it, and the Batch data plane's.
//! - `resources`, `compute`, `network`, `batch`: resource providers.
//! - `auth`: tokens and their verification; `entra`: the Entra ID endpoints; `tls`: the
//!   generated CA.
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
mod entra;
mod network;
mod persist;
mod pipeline;
mod reply;
mod resources;
mod schedule;
mod state;
mod throttle;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use config::SimConfig;

use crate::auth::TokenMint;
use crate::pipeline::arm_entry;

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
