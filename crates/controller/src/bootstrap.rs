//! Node bootstrap on the daemon's side: the per-node token (made when a create is executed,
//! kept only as a hash), the secrets the operator declared ([`DeclaredSecrets`]) resolved
//! from the daemon's environment or files, and the rendered script for the VM's
//! `customData`.
//!
//! Over 600 lines: the second half is its unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rb_core::bootstrap::{self, RenderedNode, SecretRef, SecretSource};
use rb_core::task::{PoolError, SECRET_NOT_DECLARED, Task};
use rb_core::{PoolSpec, SpecError};
use serde_json::json;
use sha2::{Digest, Sha256};
use store::{NewEvent, Store};

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

/// Largest secret file the daemon reads.
pub const MAX_SECRET_FILE_BYTES: usize = 64 * 1024;

/// Environment variables that hold the daemon's own credentials, besides every name starting
/// with `RENDERBURST_` (its configuration, `RENDERBURST__AZURE__CLIENT_SECRET`,
/// `RENDERBURST__AUTH__ADMIN_TOKEN`...): what the Azure SDK's credentials read.
const OWN_ENV: &[&str] = &[
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_FEDERATED_TOKEN",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_PASSWORD",
    "IDENTITY_HEADER",
    "MSI_SECRET",
];

/// Whether an environment variable is one of the daemon's own credentials.
pub fn is_own_env(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    upper.starts_with("RENDERBURST_") || OWN_ENV.contains(&upper.as_str())
}

/// Directories whose files are the kernel's view of processes and devices (the daemon's own
/// environment is `/proc/self/environ`), never secrets.
const SYSTEM_DIRS: &[&str] = &["/proc", "/sys", "/dev"];

/// The secrets the operator declared in the configuration (`[secrets.NAME]`), the only ones a
/// pool spec can name. None of them is one of the daemon's own credentials: checked when
/// declared and again, for files, when read (a symbolic link can change).
///
/// Resolution reads the environment or a file, so it blocks: call [`DeclaredSecrets::resolve`]
/// off the async runtime (`spawn_blocking`).
#[derive(Debug, Clone, Default)]
pub struct DeclaredSecrets {
    by_name: BTreeMap<String, SecretSource>,
    /// The daemon's own credential files: its configuration, admin token, database, the
    /// workload identity's token file.
    own_files: Vec<PathBuf>,
}

impl DeclaredSecrets {
    /// Checks the declarations: names, sources, and none of the daemon's own credentials
    /// (`own_files`, and the variables of [`is_own_env`]). Errors name the key
    /// (`secrets.NAME.env`, `secrets.NAME.file`).
    pub fn new(
        declared: BTreeMap<String, SecretSource>,
        own_files: Vec<PathBuf>,
    ) -> Result<Self, String> {
        for (name, source) in &declared {
            bootstrap::check_secret_name(name).map_err(|e| format!("secrets.{name}: {e}"))?;
            match source {
                SecretSource::Env(var) => {
                    let shaped = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !shaped {
                        return Err(format!(
                            "secrets.{name}.env: {var:?} is not an environment variable name (letters, digits, '_')"
                        ));
                    }
                    if is_own_env(var) {
                        return Err(format!(
                            "secrets.{name}.env: {var} holds the daemon's own credentials or configuration and can never be given to nodes"
                        ));
                    }
                }
                SecretSource::File(path) => {
                    let p = Path::new(path);
                    if !p.is_absolute() || path.contains('\0') {
                        return Err(format!(
                            "secrets.{name}.file: {path:?} is not an absolute path"
                        ));
                    }
                    if let Some(why) = own_file(p, &own_files) {
                        return Err(format!(
                            "secrets.{name}.file: {path} {why} and can never be given to nodes"
                        ));
                    }
                }
            }
        }
        Ok(Self {
            by_name: declared,
            own_files,
        })
    }

    /// The declared names.
    pub fn names(&self) -> BTreeSet<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The declared secret whose source is `source`, if exactly that one was declared (to
    /// rewrite a reference of the old form).
    pub fn name_of(&self, source: &SecretSource) -> Option<&str> {
        self.by_name
            .iter()
            .find(|(_, s)| *s == source)
            .map(|(n, _)| n.as_str())
    }

    /// The value of a declared secret: the environment variable, or the file (a regular file
    /// of at most [`MAX_SECRET_FILE_BYTES`], one trailing newline dropped). Errors say what is
    /// wrong, never a value. Blocking: call it off the async runtime.
    pub fn resolve(&self, r: &SecretRef) -> Result<String, String> {
        let name = r.name()?;
        let source = self.by_name.get(name).ok_or_else(|| {
            format!("no secret {name:?} is declared: add [secrets.{name}] to the configuration")
        })?;
        match source {
            SecretSource::Env(var) => std::env::var(var)
                .map_err(|_| format!("the daemon's environment has no variable {var}")),
            SecretSource::File(path) => read_secret_file(Path::new(path), &self.own_files),
        }
    }
}

/// Why `path` is one of the daemon's own files or the kernel's, if it is: compared by
/// canonical path and by device and inode, so a link to one is caught too.
fn own_file(path: &Path, own_files: &[PathBuf]) -> Option<&'static str> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if SYSTEM_DIRS
        .iter()
        .any(|d| canonical.starts_with(d) || path.starts_with(d))
    {
        return Some("is a file of the kernel (/proc, /sys, /dev)");
    }
    let meta = std::fs::metadata(path).ok();
    for own in own_files {
        let own_canonical = std::fs::canonicalize(own).unwrap_or_else(|_| own.clone());
        let same_inode = match (&meta, std::fs::metadata(own)) {
            (Some(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if canonical == own_canonical || path == own || same_inode {
            return Some("is one of the daemon's own credential files");
        }
    }
    None
}

/// Reads a secret file without trusting it: opened non-blocking (a FIFO with no writer
/// would block `open` forever), a regular file only (checked on the open file, so not
/// FIFOs, devices such as `/dev/zero`, directories), not one of the daemon's own files, and
/// never more than [`MAX_SECRET_FILE_BYTES`] + 1 bytes read.
fn read_secret_file(path: &Path, own_files: &[PathBuf]) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{shown} is not a regular file (a directory, FIFO, socket or device)"
        ));
    }
    let kernel = SYSTEM_DIRS
        .iter()
        .any(|d| std::fs::metadata(d).is_ok_and(|m| m.dev() == meta.dev()));
    let own = own_files.iter().any(|o| {
        std::fs::metadata(o).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    });
    if kernel || own {
        return Err(format!(
            "{shown} is one of the daemon's own or the kernel's files: refused"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
    if bytes.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "{shown} is larger than {} KiB: not a secret",
            MAX_SECRET_FILE_BYTES / 1024
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// At start: pools stored with references of the old form (`env:VAR`, `file:/path`), which
/// let whoever wrote the spec name any of the daemon's variables or files. A reference whose
/// source the operator declared is rewritten to that secret's name (event
/// `pool.secret_migrated`); any other is refused: logged, recorded as the pool's error and
/// as an event `pool.secret_refused`, each saying how to declare it. Such a pool keeps its
/// spec, and its nodes cannot be bootstrapped (creates fail before any Azure call, Batch
/// enrollments answer 503) until the secret is declared and the daemon restarted, or the
/// spec is replaced; other pools are not affected. Returns the refusals.
pub async fn migrate_legacy_secret_refs(store: &Store, secrets: &DeclaredSecrets) -> Vec<String> {
    let mut refused = Vec::new();
    let pools = match store.list_pools().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %crate::chain(&e), "cannot read pools to check their secret references");
            return refused;
        }
    };
    for record in pools {
        let Some(section) = &record.spec.bootstrap else {
            continue;
        };
        let mut rewrites = Vec::new();
        let mut problems = Vec::new();
        for (field, r) in section.secret_refs() {
            let Some(source) = r.legacy_source() else {
                continue;
            };
            match secrets.name_of(&source) {
                Some(name) => rewrites.push((r.secret.clone(), name.to_string(), field)),
                None => problems.push(format!(
                    "{field}.secret: {}",
                    r.name().err().unwrap_or_default()
                )),
            }
        }
        let pool = record.spec.name.clone();
        if problems.is_empty() && !rewrites.is_empty() {
            let mut spec = record.spec.clone();
            if let Some(b) = spec.bootstrap.as_mut() {
                rewrite_refs(b, &rewrites);
            }
            match store.replace_pool(&spec).await {
                Ok(_) => {
                    tracing::info!(pool = %pool, "secret references of the old form rewritten to the declared secrets");
                    let fields: Vec<_> = rewrites
                        .iter()
                        .map(|(old, new, field)| json!({"field": field, "from": old, "to": new}))
                        .collect();
                    let _ = store
                        .append_event(&NewEvent {
                            kind: "pool.secret_migrated".into(),
                            pool: Some(pool.clone()),
                            node: None,
                            actor: "renderburst".into(),
                            message: "secret references of the old form (env:, file:) now name the secrets declared with those sources".into(),
                            data: json!({"fields": fields}),
                        })
                        .await;
                    continue;
                }
                Err(e) => problems.push(format!("cannot rewrite the pool: {e}")),
            }
        }
        if problems.is_empty() {
            continue;
        }
        let message = format!(
            "pool {pool}: its nodes cannot be bootstrapped: {}",
            problems.join("; ")
        );
        tracing::error!(pool = %pool, "{message}");
        let _ = store
            .put_task_status(
                &Task::pool_error(&pool),
                &PoolError {
                    code: SECRET_NOT_DECLARED.into(),
                    message: message.clone(),
                    at: crate::now(),
                },
            )
            .await;
        let _ = store
            .append_event(&NewEvent {
                kind: "pool.secret_refused".into(),
                pool: Some(pool.clone()),
                node: None,
                actor: "renderburst".into(),
                message: message.clone(),
                data: json!({}),
            })
            .await;
        refused.push(message);
    }
    refused
}

/// Rewrites every reference whose text is a `from` of `rewrites` to its `to`.
fn rewrite_refs(b: &mut rb_core::BootstrapSpec, rewrites: &[(String, String, String)]) {
    let fix = |r: &mut SecretRef| {
        if let Some((_, to, _)) = rewrites.iter().find(|(from, _, _)| *from == r.secret) {
            r.secret = to.clone();
        }
    };
    if let Some(d) = b.domain.as_mut() {
        fix(&mut d.password);
    }
    for m in &mut b.mounts {
        if let Some(p) = m.password.as_mut() {
            fix(p);
        }
        if let Some(k) = m.key.as_mut() {
            fix(k);
        }
    }
    if let Some(p) = b.admin.as_mut().and_then(|a| a.password.as_mut()) {
        fix(p);
    }
    for v in b.env.values_mut() {
        if let bootstrap::EnvValue::Secret(s) = v {
            fix(s);
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

    fn declared(pairs: &[(&str, SecretSource)], own: &[&Path]) -> Result<DeclaredSecrets, String> {
        DeclaredSecrets::new(
            pairs
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            own.iter().map(|p| p.to_path_buf()).collect(),
        )
    }

    fn named(name: &str) -> SecretRef {
        SecretRef {
            secret: name.into(),
        }
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rb-secrets-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn declared_secrets_come_from_files_without_their_trailing_newline() {
        let dir = temp("file");
        let path = dir.join("smb.password");
        std::fs::write(&path, "hunter2\n").unwrap();
        let s = declared(
            &[
                ("smb", SecretSource::File(path.display().to_string())),
                (
                    "gone",
                    SecretSource::Env("RB_TEST_SURELY_UNSET_VARIABLE".into()),
                ),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(s.resolve(&named("smb")).unwrap(), "hunter2");
        assert!(
            s.resolve(&named("gone"))
                .unwrap_err()
                .contains("no variable")
        );
        let e = s.resolve(&named("other")).unwrap_err();
        assert!(e.contains("[secrets.other]"), "{e}");
        // The old forms name nothing, even when the daemon has them.
        let e = s
            .resolve(&named(&format!("file:{}", path.display())))
            .unwrap_err();
        assert!(
            e.contains("no longer accepted") && e.contains("[secrets.smb_password]"),
            "{e}"
        );
        assert!(s.resolve(&named("env:PATH")).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(
            s.resolve(&named("smb"))
                .unwrap_err()
                .contains("cannot read")
        );
    }

    /// A FIFO used to hang the daemon in open(), /dev/zero to fill its memory: both are
    /// refused at once, as are directories and files larger than 64 KiB.
    #[test]
    fn secret_files_are_regular_small_files_read_without_blocking() {
        let dir = temp("odd");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let big = dir.join("big");
        std::fs::write(&big, "x".repeat(MAX_SECRET_FILE_BYTES + 1)).unwrap();
        let edge = dir.join("edge");
        std::fs::write(&edge, "y".repeat(MAX_SECRET_FILE_BYTES)).unwrap();
        let s = declared(
            &[
                ("fifo", SecretSource::File(fifo.display().to_string())),
                ("dir", SecretSource::File(dir.display().to_string())),
                ("big", SecretSource::File(big.display().to_string())),
                ("edge", SecretSource::File(edge.display().to_string())),
            ],
            &[],
        )
        .unwrap();
        let started = std::time::Instant::now();
        for name in ["fifo", "dir"] {
            let e = s.resolve(&named(name)).unwrap_err();
            assert!(e.contains("not a regular file"), "{name}: {e}");
        }
        assert!(
            s.resolve(&named("big"))
                .unwrap_err()
                .contains("larger than 64 KiB")
        );
        assert_eq!(
            s.resolve(&named("edge")).unwrap().len(),
            MAX_SECRET_FILE_BYTES
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // /dev/zero cannot even be declared; a link to it is refused when read.
        let e = declared(&[("z", SecretSource::File("/dev/zero".into()))], &[]).unwrap_err();
        assert!(e.contains("secrets.z.file"), "{e}");
        let link = dir.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let s = DeclaredSecrets {
            by_name: [(
                "z".to_string(),
                SecretSource::File(link.display().to_string()),
            )]
            .into(),
            own_files: Vec::new(),
        };
        assert!(
            s.resolve(&named("z"))
                .unwrap_err()
                .contains("not a regular file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The daemon's own credentials can never be declared: its Azure secret's variable, any
    /// RENDERBURST_ variable, the workload identity's variables, its own files (also through
    /// a link, also when the link is swapped after start).
    #[test]
    fn the_daemon_s_own_credentials_can_never_be_declared() {
        for var in [
            "RENDERBURST__AZURE__CLIENT_SECRET",
            "RENDERBURST__AUTH__ADMIN_TOKEN",
            "renderburst__anything",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
        ] {
            let e = declared(&[("x", SecretSource::Env(var.into()))], &[]).unwrap_err();
            assert!(
                e.starts_with("secrets.x.env:") && e.contains("own"),
                "{var}: {e}"
            );
        }
        for path in ["/proc/self/environ", "relative/path"] {
            let e = declared(&[("x", SecretSource::File(path.into()))], &[]).unwrap_err();
            assert!(e.starts_with("secrets.x.file:"), "{path}: {e}");
        }
        let dir = temp("own");
        let token = dir.join("admin.token");
        std::fs::write(&token, "rb_admin\n").unwrap();
        let link = dir.join("innocent");
        std::os::unix::fs::symlink(&token, &link).unwrap();
        for path in [&token, &link] {
            let e = declared(
                &[("x", SecretSource::File(path.display().to_string()))],
                &[token.as_path()],
            )
            .unwrap_err();
            assert!(e.contains("own credential files"), "{e}");
        }
        // Declared while harmless, then pointed at the admin token: refused when read.
        let harmless = dir.join("harmless");
        std::fs::write(&harmless, "ok\n").unwrap();
        let swap = dir.join("swap");
        std::os::unix::fs::symlink(&harmless, &swap).unwrap();
        let s = declared(
            &[("x", SecretSource::File(swap.display().to_string()))],
            &[token.as_path()],
        )
        .unwrap();
        assert_eq!(s.resolve(&named("x")).unwrap(), "ok");
        std::fs::remove_file(&swap).unwrap();
        std::os::unix::fs::symlink(&token, &swap).unwrap();
        let e = s.resolve(&named("x")).unwrap_err();
        assert!(e.contains("refused") && !e.contains("rb_admin"), "{e}");
        assert!(declared(&[("Bad.Name", SecretSource::Env("X".into()))], &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Pools stored before secrets were declared: a reference whose source the operator
    /// declared is rewritten to its name; any other is refused with how to declare it,
    /// recorded as the pool's error and an event; the daemon goes on and other pools are
    /// untouched.
    #[tokio::test]
    async fn stored_references_of_the_old_form_are_migrated_or_refused() {
        let dir = temp("legacy");
        let store = Store::open(&dir.join("rb.db")).await.unwrap();
        let pool = |name: &str, secret: &str| {
            rb_core::PoolSpec::from_json(
                json!({"name": name, "mode": "vm", "vm_sizes": ["Standard_D4s_v5"],
                       "image": "a:b:c:d", "max": 3,
                       "bootstrap": {"domain": {"name": "studio.local", "username": "j",
                                                "password": {"secret": secret}}}})
                .to_string()
                .as_bytes(),
            )
            .unwrap()
        };
        store
            .create_pool(&pool("maya", "env:AD_PASS"))
            .await
            .unwrap();
        store
            .create_pool(&pool("nuke", "env:RENDERBURST__AZURE__CLIENT_SECRET"))
            .await
            .unwrap();
        store
            .create_pool(&pool("houdini", "ad_pass"))
            .await
            .unwrap();
        let secrets = declared(&[("ad_pass", SecretSource::Env("AD_PASS".into()))], &[]).unwrap();
        let refused = migrate_legacy_secret_refs(&store, &secrets).await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains("nuke")
                && refused[0].contains("bootstrap.domain.password.secret")
                && refused[0].contains("no longer accepted"),
            "{refused:?}"
        );
        let secret_of = |name: &'static str| {
            let store = &store;
            async move {
                let p = store.get_pool(name).await.unwrap().unwrap();
                p.spec.bootstrap.unwrap().domain.unwrap().password.secret
            }
        };
        assert_eq!(secret_of("maya").await, "ad_pass");
        assert_eq!(
            secret_of("nuke").await,
            "env:RENDERBURST__AZURE__CLIENT_SECRET"
        );
        assert_eq!(secret_of("houdini").await, "ad_pass");
        // Nodes of the refused pool cannot get the daemon's variable.
        let r = SecretRef {
            secret: "env:RENDERBURST__AZURE__CLIENT_SECRET".into(),
        };
        assert!(
            secrets
                .resolve(&r)
                .unwrap_err()
                .contains("no longer accepted")
        );
        let kinds: Vec<(String, Option<String>)> = store
            .events_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind.starts_with("pool.secret"))
            .map(|e| (e.kind, e.pool))
            .collect();
        assert_eq!(
            kinds,
            [
                ("pool.secret_migrated".to_string(), Some("maya".to_string())),
                ("pool.secret_refused".to_string(), Some("nuke".to_string())),
            ]
        );
        let statuses = store.task_statuses().await.unwrap();
        assert!(
            statuses
                .get(&Task::pool_error("nuke"))
                .is_some_and(|s| s.code == "SecretNotDeclared"),
            "{statuses:?}"
        );
        // A second start finds nothing more to do.
        assert_eq!(migrate_legacy_secret_refs(&store, &secrets).await.len(), 1);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
