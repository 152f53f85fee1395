//! How the daemon is exposed: HTTPS from `server.tls_cert_file`/`tls_key_file` with the
//! client commands trusting the certificate they are given, plain HTTP beyond loopback
//! refused at start, and the `Host` check of a loopback listener. The daemon runs on its
//! embedded simulator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use renderburst::config::Config;
use renderburst::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;
use common::{cli, eventually};

const ADMIN: &str = "exposure-admin-token-0123456789";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rb-exposure-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config file in `dir` with `server` as its `[server]` section.
fn config_file(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("renderburst.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\n{server}\n[store]\nurl = \"sqlite://{}\"\n[auth]\nadmin_token = \"{ADMIN}\"\n",
            dir.join("renderburst.db").display()
        ),
    )
    .unwrap();
    path
}

/// A self-signed certificate for localhost; (cert.pem, key.pem) in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

#[tokio::test]
async fn the_api_is_served_over_https_and_the_cli_trusts_the_given_certificate() {
    let dir = temp_dir("tls");
    let (cert, key) = certificate(&dir);
    let path = config_file(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let daemon = serve::start(Config::load(Some(&path)).unwrap(), None)
        .await
        .unwrap();
    let base = format!("https://localhost:{}", daemon.api_addr.port());
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap()])
        .build()
        .unwrap();
    eventually("the daemon is ready over HTTPS", 60, || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let r = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let ca = cert.display().to_string();
    let (code, out, err) = cli(&base, ADMIN, &dir, &["status", "--ca-cert", &ca]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = cli(&base, ADMIN, &dir, &["status"]).await;
    assert_eq!(code, 1, "a certificate nobody vouched for was trusted");
    assert!(err.contains("cannot reach the renderburst API"), "{err}");
    let ready = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["ready", "--api", &base, "--wait", "10"])
        .env("RENDERBURST_CA_CERT", &cert)
        .output()
        .await
        .unwrap();
    assert!(ready.status.success(), "{ready:?}");
    // Plain HTTP on the HTTPS port is not served.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/healthz",
            daemon.api_addr.port()
        ))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_at_start_naming_the_tls_keys() {
    let dir = temp_dir("refuse");
    // The binary, as an operator runs it.
    let path = config_file(&dir, "listen = \"0.0.0.0:0\"");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for key in [
        "server.tls_cert_file",
        "server.tls_key_file",
        "server.insecure_http",
    ] {
        assert!(err.contains(key), "{key}: {err}");
    }
    assert!(err.contains(&path.display().to_string()), "{err}");
    // And a listen address given in-process, past the file's checks.
    let path = config_file(&dir, "listen = \"127.0.0.1:0\"");
    let err = serve::start(
        Config::load(Some(&path)).unwrap(),
        Some("0.0.0.0:0".parse().unwrap()),
    )
    .await
    .err()
    .expect("plain HTTP on 0.0.0.0 was served");
    let err = format!("{err:#}");
    assert!(
        err.contains("server.tls_cert_file") && err.contains("server.tls_key_file"),
        "{err}"
    );
    assert!(
        !dir.join("renderburst.db").exists(),
        "refused before anything started"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request with this `Host`; the status code.
async fn status_with_host(addr: SocketAddr, path: &str, host: &str) -> u16 {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).await.unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {answer}"))
}

#[tokio::test]
async fn a_loopback_daemon_answers_only_requests_addressed_to_it() {
    let dir = temp_dir("host");
    let path = config_file(
        &dir,
        "listen = \"127.0.0.1:0\"\nadvertise_url = \"http://10.0.0.4:7878\"",
    );
    let daemon = serve::start(Config::load(Some(&path)).unwrap(), None)
        .await
        .unwrap();
    let addr = daemon.api_addr;
    for path in ["/metrics", "/openapi.json"] {
        // A DNS-rebinding page: the browser sends its own name.
        assert_eq!(
            status_with_host(addr, path, "evil.example").await,
            421,
            "{path}"
        );
        assert_eq!(
            status_with_host(addr, path, &format!("evil.example:{}", addr.port())).await,
            421,
            "{path}"
        );
        assert_eq!(
            status_with_host(addr, path, &format!("localhost:{}", addr.port())).await,
            200,
            "{path}"
        );
        assert_eq!(status_with_host(addr, path, &addr.to_string()).await, 200);
        // The advertised host, as nodes address a proxy or NAT in front of the daemon.
        assert_eq!(status_with_host(addr, path, "10.0.0.4:7878").await, 200);
    }
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_simulator_refuses_a_remote_listen_without_allow_remote() {
    let dir = temp_dir("sim");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_renderburst"))
        .args(["sim", "--listen", "0.0.0.0:0", "--ca-out"])
        .arg(dir.join("ca.pem"))
        .kill_on_drop(true)
        .output();
    // Refused at once; a simulator that started would run until Ctrl-C.
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the simulator was serving on 0.0.0.0 after 30 s")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(!dir.join("ca.pem").exists(), "refused before it started");
    let _ = std::fs::remove_dir_all(&dir);
}
