//! renderburst's HTTP API (DESIGN.md section 5): the axum router, bearer-token auth, input
//! validation, and the translation of requests into desired state in the store.
//!
//! What it owns: turning a request into either a JSON error naming the bad input, or a change
//! of desired state in the store followed by an audit event and a wake-up of the controller.
//!
//! What it deliberately does not do: call Azure (it does not even depend on the Azure client
//! or the controller). Handlers validate, persist, wake, and return; the controller makes Azure
//! match on its next activation. Reads show the store's view, which the controller refreshes
//! every activation.
//!
//! Every error is `{"error":{"code","message","field"?}}` ([`ApiError`]), including unknown
//! routes (404), wrong methods (405) and oversize bodies (413). A request that fails changes
//! nothing.

mod auth;
mod error;
mod events;
mod extract;
mod host;
pub mod metrics;
mod nodes;
mod offerings;
pub mod openapi;
mod pool_write;
mod pools;
mod requests;
mod schedules;
mod server;
mod throttle;
mod tokens;
mod view;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Json;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router as AxumRouter};
use rb_core::task::TaskKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{NewEvent, Store};
use tokio::sync::{Notify, watch};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{
    Admin, Caller, LocalOrReader, NODE_TOKEN_PREFIX, NodeOrAdmin, NodeOrRequester, Reader,
    Requester, Role, constant_time_eq, sha256_hex,
};
pub use error::ApiError;
pub use extract::{Body, JsonQuery, NodeName, PoolName, RequestBody, check_pool_name};
pub use pool_write::{Origin, PoolWrite, PoolWriteError, Written, check_spec, write_pool};
pub use pools::what_if;
pub use server::{ServeOptions, serve_with};
pub use tokens::{check_token_name, generate_token};
pub use view::PoolStatus;

/// Largest request body accepted; larger ones get a 413. A pool spec is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The store is not `Clone` (it holds the one-daemon lock), so it is shared.
    pub store: Arc<Store>,
    /// Wakes the controller after a change of desired state (it re-reads everything itself).
    pub wake: Arc<Notify>,
    /// Lower-case hex SHA-256 of the admin token. An empty string disables the admin token.
    pub admin_token_sha256: String,
    /// True once the daemon can act on desired state (recovery done, first activation over).
    pub ready: watch::Receiver<bool>,
    /// The controller's status and the ARM governor's snapshot, for `GET /v1/status`;
    /// provided by the binary, which is the only place that knows both.
    pub status: Arc<dyn Fn() -> Value + Send + Sync>,
    /// Prometheus text the binary renders from the controller and the ARM client (ARM
    /// requests, throttling, governor, reconcile durations), appended to `GET /metrics`:
    /// complete families, `renderburst_`-prefixed, low-cardinality labels only.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The daemon's side of node bootstrap (URL, time zone, hosts entry), for previews.
    pub bootstrap: Arc<rb_core::bootstrap::BootstrapDefaults>,
    /// The names of the secrets declared in the daemon's configuration (`[secrets.NAME]`):
    /// the only ones a pool spec may name.
    pub secret_names: Arc<std::collections::BTreeSet<String>>,
    /// Resolves a secret reference (the daemon reads the declared variable or file);
    /// previews only ask whether it resolves, never show the value. It may block on a file:
    /// handlers call it through `spawn_blocking`.
    pub resolve_secret: SecretResolver,
}

/// Looks a declared secret up (the daemon: its environment or a file). Blocking.
pub type SecretResolver = Arc<dyn Fn(&rb_core::SecretRef) -> Result<String, String> + Send + Sync>;

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No token hash in debug output either.
        f.debug_struct("ApiState")
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

/// Every route with its OpenAPI operation: `routes!` registers a handler under the method and
/// path of its `#[utoipa::path]`, so the router and the document cannot disagree. Add routes
/// here only (never with a plain `.route`), and to the role-matrix table of
/// `tests/render_managers.rs`, which checks the document against it.
///
/// Who may call what (401 without a valid token, 403 with too small a role):
///
/// | route | role |
/// |---|---|
/// | `GET /healthz`, `GET /readyz` | none |
/// | `GET /metrics`, `GET /openapi.json` | none from loopback; elsewhere any valid token |
/// | `GET /v1/pools`, `/v1/pools/{name}`, `/v1/pools/{name}/plan`, `/v1/nodes`, `/v1/requests`, `/v1/events`, `/v1/status` | viewer, requester, admin |
/// | `POST /v1/pools/{name}/requests`, `DELETE /v1/requests/{id}` | requester, admin |
/// | `PUT /v1/nodes/{name}/heartbeat` | requester, admin; that node's own token |
/// | `POST /v1/nodes/{name}/register` | admin; that node's own token |
/// | `POST /v1/pools`, `PUT`/`DELETE /v1/pools/{name}`, `POST /v1/pools/{name}/scale`, `GET /v1/pools/{name}/bootstrap`, `POST`/`DELETE /v1/nodes/{name}/drain` | admin |
/// | `GET`/`POST /v1/tokens`, `DELETE /v1/tokens/{name}` | admin |
/// | `GET /v1/schedules`, `GET /v1/schedules/{name}` | viewer, requester, admin |
/// | `POST /v1/schedules`, `DELETE /v1/schedules/{name}` | admin |
/// | `GET /v1/offerings/unavailable` | viewer, requester, admin |
/// | `DELETE /v1/offerings/unavailable` | admin |
/// | `POST /v1/nodes/{name}/enroll` | a Batch pool's enrollment token, for a node of that pool |
///
/// A node token (`rbn_...`, one per node of a pool with a `bootstrap` section) may do nothing
/// else: 403 on every other route, and on the node routes of any other node. An enrollment
/// token (`rbp_...`, one per Batch pool with a `bootstrap` section) may only enroll.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(pools::list, pools::create))
        .routes(routes!(pools::get, pools::replace, pools::delete))
        .routes(routes!(pools::scale))
        .routes(routes!(pools::plan_pool))
        .routes(routes!(pools::bootstrap_preview))
        .routes(routes!(requests::create))
        .routes(routes!(requests::list))
        .routes(routes!(requests::release))
        .routes(routes!(list_nodes))
        .routes(routes!(nodes::heartbeat))
        .routes(routes!(nodes::register))
        .routes(routes!(nodes::enroll))
        .routes(routes!(nodes::drain, nodes::undrain))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(schedules::get, schedules::delete))
        .routes(routes!(events::list))
        .routes(routes!(offerings::list, offerings::clear))
        .routes(routes!(status))
}

/// The OpenAPI 3 document of [`router`] (served at `GET /openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    openapi::finish(&mut doc);
    doc
}

/// The API's routes (see [`routes`] for who may call what), with JSON fallbacks for unknown
/// paths (404) and methods (405), the body-size limit, and one log line and one latency
/// observation per request.
///
/// `/metrics` and `/openapi.json` need the peer's address to tell loopback: serve the router
/// with `into_make_service_with_connect_info::<SocketAddr>()` ([`serve`] adds the same); without it
/// every peer counts as remote and needs a token.
pub fn router(state: ApiState) -> AxumRouter {
    let http = Arc::new(metrics::HttpMetrics::default());
    let throttle = Arc::new(throttle::AuthThrottle::default());
    let (router, _) = routes().split_for_parts();
    router
        .layer(Extension(Arc::new(nodes::EnrollWakes::default())))
        // After the routes: it applies to the routes registered so far.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(http.clone()))
        .layer(Extension(throttle))
        .layer(middleware::from_fn_with_state(http, log_request))
        .with_state(state)
}

/// Serves the API on `listener` with the default [`ServeOptions`] (plain HTTP) until
/// `shutdown` completes, then finishes the requests in flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ServeOptions::default(), shutdown).await
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security((), ("bearer" = [])),
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json", body = Object))
)]
async fn openapi_json(LocalOrReader: LocalOrReader) -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_json().unwrap_or_else(|_| "{}".into()));
    let mut response = doc.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process answers", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

/// `GET /readyz`: the database answers and the daemon said it is ready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready yet", body = error::ErrorBody),
    )
)]
async fn readyz(State(st): State<ApiState>) -> Result<Json<Health>, ApiError> {
    let not_ready =
        |message: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message);
    if let Err(err) = st.store.ping().await {
        tracing::warn!(error = %error::error_chain(&err), "readiness: the database does not answer");
        return Err(not_ready("the database does not answer"));
    }
    if !*st.ready.borrow() {
        return Err(not_ready(
            "the controller has not finished recovery and its first activation",
        ));
    }
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// The query of `GET /v1/nodes`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct NodesQuery {
    /// Only this pool's nodes
    pool: Option<String>,
}

/// `GET /v1/nodes?pool=` → `{"nodes":[...]}`; 404 naming `pool` if that pool does not exist.
/// An empty `pool=` means every pool.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "nodes",
    security(("bearer" = ["viewer", "requester", "admin"])),
    params(NodesQuery),
    responses(
        (status = 200, description = "Nodes", body = NodeList),
        (status = 404, description = "No such pool", body = error::ErrorBody),
    )
)]
async fn list_nodes(
    Reader(_): Reader,
    State(st): State<ApiState>,
    JsonQuery(query): JsonQuery<NodesQuery>,
) -> Result<Json<NodeList>, ApiError> {
    let pool = query.pool.filter(|p| !p.is_empty());
    if let Some(pool) = &pool
        && st.store.get_pool(pool).await?.is_none()
    {
        return Err(ApiError::not_found(format!("pool {pool:?} does not exist")).with_field("pool"));
    }
    let vms = st.store.list_vms(pool.as_deref()).await?;
    let ips = st.store.node_ips().await?;
    let nodes = vms
        .iter()
        .map(|vm| view::Node {
            private_ip: Some(ips.get(&vm.name).cloned()),
            ..view::node_json(vm)
        })
        .collect();
    Ok(Json(NodeList { nodes }))
}

/// `GET /v1/nodes`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeList {
    pub nodes: Vec<view::Node>,
}

/// `GET /v1/status` → `{"controller": ..., "pools": {name: last activation}, "tasks": [...]}`.
/// `tasks` holds every other background task's last status, with when it was stored.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    security(("bearer" = ["viewer", "requester", "admin"])),
    responses((status = 200, description = "Controller status", body = Status))
)]
async fn status(
    Reader(caller): Reader,
    State(st): State<ApiState>,
) -> Result<Json<Status>, ApiError> {
    let controller = (st.status)();
    let statuses = st.store.task_statuses().await?;
    let pools = st.store.list_pools().await?;
    // Statuses are shown as stored, whichever version wrote them.
    let mut by_pool = std::collections::BTreeMap::new();
    for record in &pools {
        let last = statuses.raw(&TaskKey::Pool(record.spec.name.clone()));
        by_pool.insert(
            record.spec.name.clone(),
            last.cloned().unwrap_or(Value::Null),
        );
    }
    let tasks = statuses
        .rows()
        .iter()
        .filter(|row| !matches!(row.key, TaskKey::Pool(_)))
        .map(|row| {
            let mut status = row.status.clone();
            if !caller.sees_bootstrap() && matches!(row.key, TaskKey::PoolError(_)) {
                view::redact_bootstrap_error(&mut status);
            }
            TaskStatus {
                name: row.key.to_string(),
                status,
                updated_at: view::Rfc3339(row.updated_at),
            }
        })
        .collect();
    Ok(Json(Status {
        controller,
        pools: by_pool,
        tasks,
    }))
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The reconciler's last activation, the ARM governor and request counters.
    pub controller: Value,
    /// Each pool's last activation (null before the first).
    pub pools: std::collections::BTreeMap<String, Value>,
    /// The other background tasks' last status.
    pub tasks: Vec<TaskStatus>,
}

/// A background task's last status, as it stored it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskStatus {
    pub name: String,
    pub status: Value,
    /// When it was stored.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: view::Rfc3339,
}

/// Appends an audit event after a change that is already stored. A failure is logged rather
/// than answered: the client must not take it for "nothing happened".
pub(crate) async fn audit(st: &ApiState, event: NewEvent) {
    if let Err(err) = st.store.append_event(&event).await {
        tracing::error!(
            error = %error::error_chain(&err),
            kind = %event.kind,
            "cannot record the event of a change that was stored"
        );
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; the Allow header lists what is",
            uri.path()
        ),
    )
}

/// One line per request: method, route template (never the raw path, which carries names, nor
/// any header), status and latency.
async fn log_request(
    State(http): State<Arc<metrics::HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let took = started.elapsed();
    http.observe(&method, &route, status, took);
    let latency_ms = took.as_secs_f64() * 1000.0;
    tracing::info!(method = %method, route = %route, status, latency_ms, "request");
    response
}
