//! A certificate authority generated at start and a server certificate it signs.
//!
//! The CA is a proper one (basicConstraints CA, keyCertSign, subject and authority key
//! identifiers) so strict verifiers — rustls/webpki, OpenSSL via Python's `ssl`, the Azure
//! CLI — accept it once it is trusted. The server certificate names `127.0.0.1`, `::1` and
//! `localhost`.
//!
//! A persistent simulator ([`crate::Simulator::start_persistent`]) keeps the DER of the chain
//! and key ([`TlsParts`]) in its state file, so clients that trust its CA keep trusting it
//! across restarts.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct SimTls {
    /// PEM of the CA certificate, for clients to trust.
    pub ca_pem: String,
    pub server_config: std::sync::Arc<rustls::ServerConfig>,
    /// What [`from_parts`] rebuilds this from.
    pub parts: TlsParts,
}

/// The certificates and the server key, as a state file keeps them (DER, base64).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct TlsParts {
    pub ca_pem: String,
    /// Server certificate first, then the CA's.
    pub chain_der_b64: Vec<String>,
    /// The server certificate's PKCS#8 key.
    pub key_der_b64: String,
}

impl std::fmt::Debug for TlsParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsParts")
            .field("certificates", &self.chain_der_b64.len())
            .finish_non_exhaustive()
    }
}

pub fn generate() -> anyhow::Result<SimTls> {
    use base64::Engine;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "renderburst azure-sim CA");
    dn.push(DnType::OrganizationName, "renderburst");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.use_authority_key_identifier_extension = true;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    from_parts(TlsParts {
        ca_pem,
        chain_der_b64: vec![b64(leaf_cert.der()), b64(ca_cert.der())],
        key_der_b64: b64(&leaf_key.serialize_der()),
    })
}

/// The server configuration for certificates made earlier (by [`generate`]).
pub fn from_parts(parts: TlsParts) -> anyhow::Result<SimTls> {
    use base64::Engine;
    let der = |b64: &str| base64::engine::general_purpose::STANDARD.decode(b64);
    let chain = parts
        .chain_der_b64
        .iter()
        .map(|c| der(c).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der(&parts.key_der_b64)?));
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(SimTls {
        ca_pem: parts.ca_pem.clone(),
        server_config: std::sync::Arc::new(cfg),
        parts,
    })
}
