//! Shared by the API's integration tests: the real router served on 127.0.0.1:0 with a real
//! store on a temporary SQLite file, and a client for it.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use api::{ApiState, sha256_hex};
use rb_core::{NodeState, Priority};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::{Store, VmRecord};
use tokio::sync::{Notify, oneshot, watch};

pub const ADMIN_TOKEN: &str = "admin-test-token";
pub const VIEWER_TOKEN: &str = "viewer-test-token";
pub const REQUESTER_TOKEN: &str = "requester-test-token";
pub const ODD_ROLE_TOKEN: &str = "odd-role-test-token";

pub struct App {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<Store>,
    pub wake: Arc<Notify>,
    pub ready: watch::Sender<bool>,
    pub dir: PathBuf,
    _shutdown: oneshot::Sender<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn spawn_app() -> App {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "renderburst-api-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("renderburst.db")).await.unwrap());
    store
        .insert_token("ci-viewer", "viewer", &sha256_hex(VIEWER_TOKEN))
        .await
        .unwrap();
    store
        .insert_token("farm-manager", "requester", &sha256_hex(REQUESTER_TOKEN))
        .await
        .unwrap();
    store
        .insert_token("odd", "superuser", &sha256_hex(ODD_ROLE_TOKEN))
        .await
        .unwrap();
    let wake = Arc::new(Notify::new());
    let (ready, ready_rx) = watch::channel(false);
    let state = app_state(store.clone(), wake.clone(), ready_rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        api::serve(listener, state, async move {
            let _ = stop.await;
        })
        .await
        .unwrap();
    });
    App {
        base,
        http: reqwest::Client::new(),
        store,
        wake,
        ready,
        dir,
        _shutdown: shutdown,
    }
}

/// The state the tests serve: the admin token, a fixed controller status, and one line of
/// binary-rendered metrics.
pub fn app_state(store: Arc<Store>, wake: Arc<Notify>, ready: watch::Receiver<bool>) -> ApiState {
    ApiState {
        store,
        wake,
        // Upper case on purpose: the comparison accepts either hex case.
        admin_token_sha256: sha256_hex(ADMIN_TOKEN).to_uppercase(),
        ready,
        status: Arc::new(|| json!({"reconciler": {"number": 7}, "governor": {"writes": 200}})),
        metrics: Arc::new(|| {
            "# HELP renderburst_test_binary Rendered by the binary.\n# TYPE renderburst_test_binary gauge\nrenderburst_test_binary 7\n".to_string()
        }),
        bootstrap: Arc::new(rb_core::bootstrap::BootstrapDefaults {
            api_url: "http://10.0.0.4:7878".into(),
            default_time_zone: "Europe/Berlin".into(),
            daemon_host: Some(rb_core::bootstrap::HostEntry {
                ip: "10.0.0.4".into(),
                names: vec!["renderburst".into()],
            }),
        }),
        // Declared: `smb_pw` resolves, `unset` is declared but its variable is not set.
        secret_names: Arc::new(["smb_pw".to_string(), "unset".to_string()].into()),
        resolve_secret: Arc::new(|r| match r.secret.as_str() {
            "unset" => Err("not set".into()),
            _ => Ok("resolved".into()),
        }),
    }
}

impl App {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        read(resp).await
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_TOKEN), body).await
    }

    /// Sends raw bytes with a chosen content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        read(req.send().await.unwrap()).await
    }

    /// Everything the API could change, as text.
    pub async fn snapshot(&self) -> String {
        let s = &self.store;
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            s.list_pools().await.unwrap(),
            s.list_requests(None, true, 0).await.unwrap(),
            s.list_vms(None).await.unwrap(),
            s.events_after(0, 100_000).await.unwrap(),
            s.task_statuses().await.unwrap(),
            s.list_tokens().await.unwrap(),
            s.list_schedules().await.unwrap(),
        )
    }

    /// Whether the controller was woken (consumes the wake-up).
    pub async fn woken(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.wake.notified())
            .await
            .is_ok()
    }

    pub async fn not_woken(&self) -> bool {
        tokio::time::timeout(Duration::from_millis(50), self.wake.notified())
            .await
            .is_err()
    }

    pub async fn create(&self, spec: Value) {
        let (status, body) = self.admin(Method::POST, "/v1/pools", Some(spec)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(self.woken().await);
    }

    pub async fn add_vm(&self, name: &str, pool: &str, state: NodeState) {
        self.store
            .upsert_vm(&VmRecord {
                name: name.into(),
                pool: pool.into(),
                size: "Standard_NC4as_T4_v3".into(),
                priority: Priority::Regular,
                state,
                power_state: None,
                azure_id: Some(format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}")),
                failed_code: None,
                created_at: 1_700_000_000,
                started_at: None,
                deallocated_at: None,
                last_seen: None,
                last_heartbeat: None,
                busy: false,
                draining: false,
                registered_at: None,
                node_seen_at: None,
            })
            .await
            .unwrap();
    }
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text_plain = resp
        .headers()
        .get("content-type")
        .is_some_and(|ct| ct.to_str().unwrap_or("").starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    if text_plain && status.is_success() {
        // `/metrics`: Prometheus text.
        return (status, Value::String(text));
    }
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, body)
}

pub fn spec(name: &str) -> Value {
    json!({
        "name": name,
        "mode": "vm",
        "vm_sizes": ["Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest",
        "min": 0,
        "max": 10,
        "tags": {"show": "ep101"}
    })
}

pub fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// Asserts the error shape: status, code, and the field to blame (or none).
#[track_caller]
pub fn assert_error(
    got: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "{body}");
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object: {body}"));
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error.get("field").and_then(Value::as_str), field, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}
