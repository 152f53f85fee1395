//! Serving: slow and stuck clients are cut while good ones are served, the connection cap,
//! the `Host` check of loopback listeners, and HTTPS. Each test serves the real router on
//! 127.0.0.1:0 with short limits and talks to it over raw sockets where a well-behaved
//! client library would not misbehave on purpose.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::ServeOptions;
use common::{ADMIN_TOKEN, app_state};
use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot, watch};

struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn serve(options: ServeOptions) -> Server {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "renderburst-api-server-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("renderburst.db")).await.unwrap());
    let (_ready, ready) = watch::channel(true);
    let state = app_state(store, Arc::new(Notify::new()), ready);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(api::serve_with(listener, state, options, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        _stop: stop,
        _dir: tempdir::Dir(dir),
    }
}

fn options(
    header_read_s: u64,
    request_s: u64,
    idle_s: u64,
    max_connections: usize,
) -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_secs(header_read_s),
        request_timeout: Duration::from_secs(request_s),
        idle_timeout: Duration::from_secs(idle_s),
        max_connections,
        ..ServeOptions::default()
    }
}

/// Reads until the server closes the connection (EOF or reset); fails the test after
/// `secs`. Returns what was read and when the close was seen.
async fn read_until_closed(sock: &mut TcpStream, secs: u64) -> (String, Instant) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), read)
        .await
        .unwrap_or_else(|_| panic!("the server kept the connection open for {secs} s"));
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

/// One request over a fresh connection that asks to be closed; the whole answer.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(request.as_bytes()).await.unwrap();
    read_until_closed(&mut sock, 20).await.0
}

/// A good client: a fresh connection, `GET /healthz`, 200.
async fn good_client(addr: SocketAddr) {
    let answer = raw(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Writes `bytes` one at a time, `every` apart, until the server closes the socket.
fn trickle(mut sock: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    tokio::spawn(async move {
        for b in bytes.iter().cycle() {
            if sock.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[tokio::test]
async fn slowloris_headers_are_cut_within_the_header_timeout_while_good_clients_are_served() {
    let server = serve(options(1, 30, 60, 512)).await;
    let started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..50 {
        let sock = TcpStream::connect(server.addr).await.unwrap();
        let (read, mut write) = sock.into_split();
        write
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        // A header byte every 100 ms: never a complete head.
        trickle(write, b"abcdefgh".to_vec(), Duration::from_millis(100));
        readers.push(read);
    }
    good_client(server.addr).await;
    let mut slowest = Duration::ZERO;
    for mut read in readers {
        let cut = tokio::time::timeout(Duration::from_secs(15), async {
            let mut buf = [0u8; 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return Instant::now(),
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a slowloris connection was still open after 15 s");
        slowest = slowest.max(cut - started);
    }
    println!("50 slowloris connections closed within {slowest:?} (header timeout 1 s)");
    good_client(server.addr).await;
}

#[tokio::test]
async fn a_slow_body_is_answered_408_and_cut_within_the_request_timeout() {
    let server = serve(options(10, 1, 60, 512)).await;
    let sock = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = sock.into_split();
    let head = format!(
        "POST /v1/pools HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // A body byte every 100 ms: 4000 bytes would take 400 s.
    trickle(write, b" ".to_vec(), Duration::from_millis(100));
    let answer = tokio::time::timeout(Duration::from_secs(15), async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("a slow body kept its connection open for 15 s");
    println!(
        "slow body cut after {:?} (request timeout 1 s)",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    good_client(server.addr).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timer would close it only after 30 s.
    let server = serve(options(30, 30, 1, 512)).await;
    let mut sock = TcpStream::connect(server.addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut sock, 15).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    println!(
        "idle connection closed after {:?} (idle timeout 1 s)",
        closed - started
    );
}

#[tokio::test]
async fn the_connection_cap_holds_and_a_good_client_is_served_once_bad_ones_are_cut() {
    const CAP: usize = 4;
    let server = serve(options(1, 30, 60, CAP)).await;
    let first_bad = Instant::now();
    // CAP + 3 connections that never send a byte.
    let mut bad = Vec::new();
    for _ in 0..CAP + 3 {
        bad.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Queued behind them: it is accepted only when a slot frees, which is when a bad
    // connection has been served for the header timeout.
    good_client(server.addr).await;
    let waited = first_bad.elapsed();
    println!(
        "a good client behind {} silent connections (cap {CAP}) was served after {waited:?}",
        CAP + 3
    );
    assert!(
        waited >= Duration::from_secs(1),
        "served after {waited:?}: more than {CAP} connections were served at once"
    );
    for mut sock in bad {
        read_until_closed(&mut sock, 15).await;
    }
    good_client(server.addr).await;
}

#[tokio::test]
async fn a_loopback_listener_answers_only_loopback_and_advertised_hosts() {
    let server = serve(ServeOptions {
        advertised_host: Some("render-burst.studio.local:7878".into()),
        ..ServeOptions::default()
    })
    .await;
    for host in [
        "localhost",
        "localhost:7878",
        "127.0.0.1",
        "[::1]:7878",
        "render-burst.studio.local:7878",
    ] {
        let answer = raw(
            server.addr,
            &format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    for path in ["/metrics", "/openapi.json", "/healthz"] {
        let answer = raw(
            server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 421"), "{path}: {answer}");
        assert!(answer.contains(r#""code":"host_not_allowed""#), "{answer}");
        assert!(!answer.contains("renderburst_"), "{answer}");
    }
    let answer = raw(server.addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(answer.contains(r#""field":"Host""#), "{answer}");
}

#[tokio::test]
async fn https_is_served_with_the_given_certificate() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let server = serve(ServeOptions {
        tls: Some(Arc::new(tls)),
        ..options(1, 30, 60, 512)
    })
    .await;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let url = format!("https://localhost:{}", server.addr.port());
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Loopback peers read /metrics without a token over HTTPS too (h2 by ALPN).
    let r = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    // Plain HTTP on the HTTPS port gets nothing useful.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A TLS handshake that never starts is cut like a silent connection.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    read_until_closed(&mut silent, 15).await;
}
