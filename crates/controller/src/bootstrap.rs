//! Node bootstrap on the daemon's side: the per-node token (made when a create is executed,
//! kept only as a hash), secret references resolved from the daemon's environment or files,
//! and the rendered script for the VM's `customData`.

use rb_core::bootstrap::{self, RenderedNode, SecretRef, SecretSource};
use rb_core::{PoolSpec, SpecError};
use sha2::{Digest, Sha256};

/// What the daemon knows that a pool spec does not (its URL, time zone, hosts entry).
pub use rb_core::bootstrap::BootstrapDefaults as BootstrapConfig;

/// Prefix of node tokens: API tokens start with `rb_`, so the API knows which table to ask.
pub const NODE_TOKEN_PREFIX: &str = "rbn_";

/// Prefix of Batch pools' enrollment tokens (see `rb_core::bootstrap::render_start_task`).
pub const POOL_TOKEN_PREFIX: &str = "rbp_";

/// A fresh node token: `rbn_` + 40 characters of `[A-Za-z0-9]` ([`store::random_token`]).
pub fn generate_node_token() -> String {
    store::random_token(NODE_TOKEN_PREFIX)
}

/// A fresh enrollment token for a Batch pool: `rbp_` + 40 characters, as node tokens.
pub fn generate_pool_token() -> String {
    store::random_token(POOL_TOKEN_PREFIX)
}

/// Lower-case hex SHA-256, the only form in which tokens are stored (as `api::sha256_hex`).
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Resolves a secret reference from the daemon's environment or a file (one trailing
/// newline dropped). Errors say what is missing, never a value.
pub fn resolve_secret(r: &SecretRef) -> Result<String, String> {
    match r.source()? {
        SecretSource::Env(name) => std::env::var(name)
            .map_err(|_| format!("the daemon's environment has no variable {name}")),
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {path}: {}", e.kind()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
        }
    }
}

/// Renders what node `node` of `spec` runs on its first boot, with `token` and the daemon's
/// secrets. None for a pool without a `bootstrap` section.
pub fn render(
    cfg: &BootstrapConfig,
    spec: &PoolSpec,
    node: &str,
    token: &str,
    resolve: bootstrap::Resolver<'_>,
) -> Result<Option<RenderedNode>, SpecError> {
    let Some(b) = spec.node_bootstrap() else {
        return Ok(None);
    };
    bootstrap::render_node(&b, spec.os, &cfg.node(&spec.name, node, token), resolve).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_tokens_are_long_random_and_prefixed() {
        let a = generate_node_token();
        let b = generate_node_token();
        assert_ne!(a, b);
        assert_eq!(
            a.len(),
            NODE_TOKEN_PREFIX.len() + store::tokens::TOKEN_CHARS
        );
        assert!(a.starts_with("rbn_"));
        assert!(a[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        let p = generate_pool_token();
        assert!(p.starts_with("rbp_") && p.len() == a.len());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_come_from_files_without_their_trailing_newline() {
        let path = std::env::temp_dir().join(format!("rb-secret-{}", std::process::id()));
        std::fs::write(&path, "hunter2\n").unwrap();
        let r = SecretRef {
            secret: format!("file:{}", path.display()),
        };
        assert_eq!(resolve_secret(&r).unwrap(), "hunter2");
        std::fs::remove_file(&path).unwrap();
        let e = resolve_secret(&r).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let missing = SecretRef {
            secret: "env:RENDERBURST_TEST_SURELY_UNSET_VARIABLE".into(),
        };
        assert!(
            resolve_secret(&missing)
                .unwrap_err()
                .contains("no variable")
        );
    }
}
