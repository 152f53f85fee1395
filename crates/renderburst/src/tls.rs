//! The API's TLS configuration, from `server.tls_cert_file` and `server.tls_key_file`.
//!
//! rustls with the same provider (aws-lc-rs) as the ARM client and the simulator, so the
//! daemon carries one TLS stack. HTTP/2 and HTTP/1.1 are offered by ALPN.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads a PEM certificate chain (the server's certificate first) and its private key
/// (PKCS#8, PKCS#1 or SEC1). Errors name the key and the file.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "server.tls_cert_file: cannot read PEM certificates from {}",
                cert_file.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "server.tls_cert_file: {} holds no PEM certificate",
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "server.tls_key_file: cannot read a PEM private key from {}",
                key_file.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "server.tls_cert_file and server.tls_key_file: {} and {} do not make a usable pair",
                cert_file.display(),
                key_file.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
