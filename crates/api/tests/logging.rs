//! The request log, in a test binary of its own: it installs a global subscriber, which would
//! capture the other tests' requests too, and a thread-local one races with tracing's
//! per-callsite interest cache when tests run in parallel.

mod common;

use std::sync::Arc;

use common::*;
use reqwest::{Method, StatusCode};

/// Collects log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_request_is_logged_once_by_route_without_credentials() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter("api=info")
        .with_writer(move || writer.clone())
        .init();

    let app = spawn_app().await;
    app.create(spec("maya")).await;
    let (status, _) = app.admin(Method::GET, "/v1/pools/maya", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Method::GET, "/v1/pools/maya", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Method::GET, "/v1/nowhere", Some(VIEWER_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("request")).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].contains("method=POST")
            && lines[0].contains("route=/v1/pools")
            && lines[0].contains("status=201"),
        "{text}"
    );
    assert!(
        lines[1].contains("route=/v1/pools/{name}")
            && lines[1].contains("status=200")
            && lines[1].contains("latency_ms="),
        "{text}"
    );
    assert!(
        lines[3].contains("route=unmatched") && lines[3].contains("status=404"),
        "{text}"
    );
    for secret in [ADMIN_TOKEN, VIEWER_TOKEN, "Bearer", "authorization"] {
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "{secret} in the log: {text}"
        );
    }
}
