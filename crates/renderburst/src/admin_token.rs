//! The daemon's admin token: `auth.admin_token` from the configuration, else the one in
//! `admin.token` beside the database, generated there at the first start.
//!
//! The file is the key to everything the daemon can do, so it is made mode 0600 (created so,
//! never widened afterwards), and an existing one that others could read or write, or that
//! another user owns, is refused at start with the command that fixes it: a token that
//! leaked cannot be made safe again by the daemon, only replaced by the operator.
//! Generated tokens come from the one secret generator ([`store::secret`], the OS CSPRNG).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Config;

/// Shortest `auth.admin_token` accepted: 16 characters of any kind (an operator's own
/// format, a password manager's). Shorter would be guessable.
pub const MIN_CONFIGURED_CHARS: usize = 16;

/// The admin token and, when it lives in a file, that file's path.
pub fn load_or_create(cfg: &Config, db: &Path) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(t) = &cfg.auth.admin_token {
        check_configured(t)?;
        return Ok((t.clone(), None));
    }
    let path = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("admin.token");
    if let Some(token) = read_existing(&path)? {
        return Ok((token, Some(path)));
    }
    let token = store::secret::admin_token();
    write_new(&path, &token)?;
    Ok((token, Some(path)))
}

/// `auth.admin_token`: at least [`MIN_CONFIGURED_CHARS`] characters; the error names the key.
pub fn check_configured(token: &str) -> anyhow::Result<()> {
    let chars = token.chars().count();
    if chars < MIN_CONFIGURED_CHARS {
        bail!(
            "auth.admin_token must be at least {MIN_CONFIGURED_CHARS} characters, got {chars}; \
             leave it out to have the daemon generate one into admin.token"
        );
    }
    Ok(())
}

/// The token in an existing `admin.token`, once its owner and mode are checked; `None` if
/// there is no file or it is empty (a new token is then written into it).
fn read_existing(path: &Path) -> anyhow::Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !meta.is_file() {
        bail!(
            "{} is not a regular file: remove it, or set auth.admin_token",
            path.display()
        );
    }
    check_private(path, &meta)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token in {}", path.display()))?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

/// Refuses a token file that is not private to this user.
#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    private_file_problem(path, meta.mode(), meta.uid(), effective_uid())
        .map_or(Ok(()), |problem| Err(anyhow::anyhow!(problem)))
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> anyhow::Result<()> {
    Ok(())
}

/// What is wrong with a secret file of `mode` owned by `owner`, for a daemon running as
/// `me` (`None` when that cannot be told: only the mode is checked then); `None` if nothing.
pub fn private_file_problem(path: &Path, mode: u32, owner: u32, me: Option<u32>) -> Option<String> {
    let shown = path.display();
    if let Some(me) = me
        && owner != me
    {
        return Some(format!(
            "{shown} belongs to user id {owner}, not to the daemon's user (id {me}): another \
             user could have read or replaced the admin token. If you trust it, give it to the \
             daemon's user (chown {me} {shown}); else delete it and a new token is generated"
        ));
    }
    if mode & 0o077 != 0 {
        return Some(format!(
            "{shown} is accessible to other users (mode {:03o}): they could have read the admin \
             token. Make it private with `chmod 600 {shown}` (and replace the token if it may \
             have leaked: delete the file and a new one is generated)",
            mode & 0o777
        ));
    }
    None
}

/// This process's effective user id, from `/proc/self/status` (Linux; the workspace forbids
/// the `unsafe` a `geteuid` call would need). `None` where there is no `/proc`.
#[cfg(unix)]
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, filesystem.
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Writes a new token into `path`, mode 0600 from the start (the umask can only narrow it):
/// the token is never in a file anyone else can open, even for an instant.
fn write_new(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    writeln!(f, "{token}")
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "renderburst-admin-token-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(token: Option<&str>) -> Config {
        let mut cfg = Config::default();
        cfg.auth.admin_token = token.map(str::to_owned);
        cfg
    }

    #[test]
    fn a_generated_token_is_random_prefixed_and_private() {
        let dir = temp_dir("generated");
        let db = dir.join("renderburst.db");
        let (token, path) = load_or_create(&config(None), &db).unwrap();
        let path = path.unwrap();
        assert_eq!(path, dir.join("admin.token"));
        let rest = token.strip_prefix("rba_").expect(&token);
        assert_eq!(rest.len(), 40);
        assert!(rest.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // The next start reads the same token back.
        assert_eq!(load_or_create(&config(None), &db).unwrap().0, token);
        // Another daemon gets another token.
        let other = temp_dir("generated-other");
        let (second, _) = load_or_create(&config(None), &other.join("renderburst.db")).unwrap();
        assert_ne!(second, token);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_with_the_fix() {
        let dir = temp_dir("readable");
        let path = dir.join("admin.token");
        std::fs::write(&path, "rba_shared\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create(&config(None), &dir.join("renderburst.db"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (token, _) = load_or_create(&config(None), &dir.join("renderburst.db")).unwrap();
        assert_eq!(token, "rba_shared");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_token_file_of_another_user_is_refused_with_the_fix() {
        let path = Path::new("/var/lib/renderburst/admin.token");
        let problem = private_file_problem(path, 0o100600, 1001, Some(999)).unwrap();
        assert!(problem.contains("chown 999"), "{problem}");
        assert!(problem.contains("user id 1001"), "{problem}");
        assert_eq!(private_file_problem(path, 0o100600, 999, Some(999)), None);
        assert_eq!(private_file_problem(path, 0o100400, 999, Some(999)), None);
        // Without /proc only the mode can be checked.
        assert_eq!(private_file_problem(path, 0o100600, 1001, None), None);
        assert!(private_file_problem(path, 0o100640, 999, None).is_some());
        // This process's own id is known here (Linux).
        assert!(effective_uid().is_some());
    }

    /// The shipped install steps put secrets in a root-only environment file, never in the
    /// configuration file the service's dynamic user must be able to read.
    #[test]
    fn the_install_steps_keep_secrets_out_of_world_readable_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let unit =
            std::fs::read_to_string(root.join("deploy/systemd/renderburst.service")).unwrap();
        let installs: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("install "))
            .collect();
        assert!(
            installs
                .iter()
                .any(|l| l.starts_with("-m 0600 -o root -g root")
                    && l.contains("/etc/renderburst/renderburst.env")),
            "{installs:?}"
        );
        for l in installs.iter().filter(|l| l.starts_with("-m 0644")) {
            assert!(!l.contains(".env"), "{l}");
        }
        for line in [
            "EnvironmentFile=-/etc/renderburst/renderburst.env",
            "StateDirectoryMode=0700",
            "UMask=0077",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line}");
        }
        // The example configurations set no secret of the daemon's own.
        for file in ["default.toml", "azure.example.toml", "batch.example.toml"] {
            let text = std::fs::read_to_string(root.join("config").join(file)).unwrap();
            for line in text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
            {
                assert!(
                    !line.starts_with("client_secret") && !line.starts_with("admin_token"),
                    "{file}: {line}"
                );
            }
        }
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(readme.contains("`/etc/renderburst/renderburst.env`, mode 0600"));
    }

    #[test]
    fn a_configured_token_of_any_form_needs_16_characters() {
        let db = Path::new("/nonexistent/renderburst.db");
        for ok in [
            "0123456789abcdef",
            "correct horse battery staple",
            "ÄÖÜäöüßÄÖÜäöüßÄÖ",
            "rb_not-our-format-at-all",
        ] {
            let (token, file) = load_or_create(&config(Some(ok)), db).unwrap();
            assert_eq!((token.as_str(), file), (ok, None));
        }
        for short in ["", "0123456789abcde", "ÄÖÜäöüßÄ"] {
            let err = load_or_create(&config(Some(short)), db)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("auth.admin_token must be at least 16"),
                "{err}"
            );
        }
    }
}
