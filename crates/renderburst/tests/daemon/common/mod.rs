//! What the end-to-end test files share: polling for a condition and running the daemon as
//! a child process (for the tests that SIGKILL it).

#![allow(dead_code)] // Each test file uses its own subset.

pub mod world;

use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it gives a value; fails the test after `secs`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port free a moment ago (for a child daemon that must keep its port across
/// restarts).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `renderburst serve --config cfg` as a child process, quiet.
pub fn spawn_daemon(cfg: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["serve", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the daemon at `base` answers `/healthz`.
pub async fn wait_answers(http: &reqwest::Client, base: &str) {
    eventually("the daemon answers", 30, || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// Runs the `renderburst` CLI against the daemon at `base` with `token` (written to a file
/// in `dir`, as admins keep it): exit code, stdout, stderr.
pub async fn cli(base: &str, token: &str, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let file = dir.join("cli.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(args)
        .arg("--api")
        .arg(base)
        .arg("--token-file")
        .arg(&file)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
