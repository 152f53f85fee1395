//! Validation of a `bootstrap` section for the pool's OS: every error names its field
//! (`bootstrap.mounts[0].source`). Field grammars are in `grammar.rs`, time zones in
//! `time_zone.rs`.

use std::net::IpAddr;

use crate::spec::{Os, SpecError};

use super::grammar::{
    is_account_name, is_drive, is_env_name, is_mount_target, is_nfs_source, is_ou, is_share_name,
    is_storage_account, is_user_name, smb_parts,
};
use super::section::{
    BootstrapSpec, EnvValue, MAX_REGISTER_TIMEOUT_SECONDS, MIN_REGISTER_TIMEOUT_SECONDS, Mount,
    MountKind, RESERVED_ENV_PREFIX, SecretRef,
};
use super::time_zone::{is_iana_zone, windows_time_zone};

pub(super) fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::new(field, message)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), SpecError> {
    if s.trim().is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if has_control(s) {
        return Err(err(
            field,
            "must not contain control characters (newlines, tabs)",
        ));
    }
    if s.chars().count() > max {
        return Err(err(field, format!("at most {max} characters")));
    }
    Ok(())
}

fn check_secret(field: &str, s: &SecretRef) -> Result<(), SpecError> {
    s.name()
        .map(|_| ())
        .map_err(|m| err(format!("{field}.secret"), m))
}

/// A DNS host name (labels of letters, digits and '-', separated by '.').
pub(super) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// What [`is_account_name`] accepts, for error messages.
const ACCOUNT_NAME: &str =
    "an account like render, STUDIO\\render or render@studio.local (letters, digits and ._-@\\)";

impl BootstrapSpec {
    /// Checks every item for the pool's OS; errors name the field
    /// (`bootstrap.mounts[0].source`).
    pub fn validate(&self, os: Os) -> Result<(), SpecError> {
        const B: &str = "bootstrap";
        if let Some(tz) = &self.time_zone {
            if !is_iana_zone(tz) {
                return Err(err(
                    format!("{B}.time_zone"),
                    format!("{tz:?} is not an IANA time zone name like \"Europe/Berlin\""),
                ));
            }
            if os == Os::Windows && windows_time_zone(tz).is_none() {
                return Err(err(
                    format!("{B}.time_zone"),
                    format!(
                        "{tz:?} has no Windows time zone id known to renderburst; use a zone of the same offset, such as \"Europe/Berlin\" or \"America/Los_Angeles\""
                    ),
                ));
            }
        }
        if self.hosts.len() > 100 {
            return Err(err(format!("{B}.hosts"), "at most 100 entries"));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let f = format!("{B}.hosts[{i}]");
            if h.ip.parse::<IpAddr>().is_err() {
                return Err(err(
                    format!("{f}.ip"),
                    format!("{:?} is not an IP address", h.ip),
                ));
            }
            if h.names.is_empty() {
                return Err(err(format!("{f}.names"), "list at least one host name"));
            }
            for (j, n) in h.names.iter().enumerate() {
                if !is_host_name(n) {
                    return Err(err(
                        format!("{f}.names[{j}]"),
                        format!("{n:?} is not a host name"),
                    ));
                }
            }
        }
        if let Some(d) = &self.domain {
            let f = format!("{B}.domain");
            if !is_host_name(&d.name) || !d.name.contains('.') {
                return Err(err(
                    format!("{f}.name"),
                    format!(
                        "{:?} is not a DNS domain name like \"studio.local\"",
                        d.name
                    ),
                ));
            }
            if let Some(ou) = &d.ou {
                check_text(&format!("{f}.ou"), ou, 512)?;
                if !is_ou(ou) {
                    return Err(err(
                        format!("{f}.ou"),
                        "an OU is a distinguished name like \"OU=Render,DC=studio,DC=local\" (letters, digits, spaces and =,._-)",
                    ));
                }
            }
            check_text(&format!("{f}.username"), &d.username, 104)?;
            if !is_account_name(&d.username) {
                return Err(err(format!("{f}.username"), ACCOUNT_NAME));
            }
            check_secret(&format!("{f}.password"), &d.password)?;
        }
        if self.mounts.len() > 20 {
            return Err(err(format!("{B}.mounts"), "at most 20 mounts"));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            self.validate_mount(i, m, os)?;
        }
        if self.firewall_ports.len() > 50 {
            return Err(err(format!("{B}.firewall_ports"), "at most 50 ports"));
        }
        for (i, p) in self.firewall_ports.iter().enumerate() {
            if p.port == 0 {
                return Err(err(
                    format!("{B}.firewall_ports[{i}].port"),
                    "must be between 1 and 65535",
                ));
            }
        }
        if let Some(a) = &self.admin {
            let f = format!("{B}.admin");
            if !is_user_name(&a.username) {
                return Err(err(
                    format!("{f}.username"),
                    format!(
                        "{:?} is not a user name: 1 to 20 letters, digits, '_', '-' or '.', starting with a letter",
                        a.username
                    ),
                ));
            }
            let reserved = ["root", "administrator", "admin", "guest", "renderburst"];
            if reserved.iter().any(|r| r.eq_ignore_ascii_case(&a.username)) {
                return Err(err(
                    format!("{f}.username"),
                    format!("{:?} is reserved by the OS or Azure", a.username),
                ));
            }
            if a.ssh_public_key.is_none() && a.password.is_none() {
                return Err(err(
                    f.clone(),
                    "give ssh_public_key, password (a secret reference), or both",
                ));
            }
            if let Some(key) = &a.ssh_public_key {
                let parts: Vec<&str> = key.split_whitespace().collect();
                let ok = key.bytes().all(|b| (0x20..0x7f).contains(&b))
                    && key.len() <= 16 * 1024
                    && parts.len() >= 2
                    && (parts[0].starts_with("ssh-") || parts[0].starts_with("ecdsa-"))
                    && parts[1]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
                if !ok {
                    return Err(err(
                        format!("{f}.ssh_public_key"),
                        "not an OpenSSH public key (\"ssh-ed25519 AAAA... comment\", one line)",
                    ));
                }
            }
            if let Some(p) = &a.password {
                check_secret(&format!("{f}.password"), p)?;
            }
        }
        if self.env.len() > 100 {
            return Err(err(format!("{B}.env"), "at most 100 variables"));
        }
        for (k, v) in &self.env {
            let f = format!("{B}.env.{k}");
            if !is_env_name(k) {
                return Err(err(
                    f,
                    "variable names are letters, digits and '_', not starting with a digit",
                ));
            }
            if k.to_ascii_uppercase().starts_with(RESERVED_ENV_PREFIX) {
                return Err(err(
                    f,
                    format!("names starting with {RESERVED_ENV_PREFIX} are renderburst's own"),
                ));
            }
            match v {
                EnvValue::Plain(s) => {
                    if has_control(s) || s.len() > 4096 {
                        return Err(err(f, "values are one line of at most 4096 characters"));
                    }
                }
                EnvValue::Secret(s) => check_secret(&f, s)?,
            }
        }
        if let Some(rc) = &self.render_client {
            check_text(&format!("{B}.render_client.command"), &rc.command, 4096)?;
        }
        if !(MIN_REGISTER_TIMEOUT_SECONDS..=MAX_REGISTER_TIMEOUT_SECONDS)
            .contains(&self.register_timeout_seconds)
        {
            return Err(err(
                format!("{B}.register_timeout_seconds"),
                format!(
                    "must be between {MIN_REGISTER_TIMEOUT_SECONDS} and {MAX_REGISTER_TIMEOUT_SECONDS} (a day)"
                ),
            ));
        }
        Ok(())
    }

    fn validate_mount(&self, i: usize, m: &Mount, os: Os) -> Result<(), SpecError> {
        let f = format!("bootstrap.mounts[{i}]");
        let need = |name: &str, v: &Option<String>| -> Result<String, SpecError> {
            v.clone().ok_or_else(|| {
                err(
                    format!("{f}.{name}"),
                    format!("required for {:?} mounts", kind_str(m.kind)),
                )
            })
        };
        let forbid = |name: &str, present: bool| -> Result<(), SpecError> {
            if present {
                Err(err(
                    format!("{f}.{name}"),
                    format!("not used by {:?} mounts", kind_str(m.kind)),
                ))
            } else {
                Ok(())
            }
        };
        match os {
            Os::Linux => {
                if !is_mount_target(&m.target) {
                    return Err(err(
                        format!("{f}.target"),
                        "an absolute path of letters, digits and ._/- without .. (like /mnt/assets)",
                    ));
                }
            }
            Os::Windows => {
                if !is_drive(&m.target) {
                    return Err(err(
                        format!("{f}.target"),
                        "an upper-case drive letter and a colon, like R:",
                    ));
                }
            }
        }
        match m.kind {
            MountKind::Smb => {
                let source = need("source", &m.source)?;
                if smb_parts(&source).is_none() {
                    return Err(err(
                        format!("{f}.source"),
                        format!(
                            "{source:?} is not an SMB share like //server/share (path of letters, digits and ._$-)"
                        ),
                    ));
                }
                forbid("account", m.account.is_some())?;
                forbid("share", m.share.is_some())?;
                forbid("key", m.key.is_some())?;
                if let Some(u) = &m.username {
                    check_text(&format!("{f}.username"), u, 104)?;
                    if !is_account_name(u) {
                        return Err(err(format!("{f}.username"), ACCOUNT_NAME));
                    }
                }
                match (&m.username, &m.password) {
                    (Some(_), None) => {
                        return Err(err(format!("{f}.password"), "required with a username"));
                    }
                    (None, Some(_)) => {
                        return Err(err(format!("{f}.username"), "required with a password"));
                    }
                    (_, Some(p)) => check_secret(&format!("{f}.password"), p)?,
                    _ => {}
                }
            }
            MountKind::Nfs => {
                let source = need("source", &m.source)?;
                if !is_nfs_source(&source) {
                    return Err(err(
                        format!("{f}.source"),
                        format!(
                            "{source:?} is not an NFS export like server:/export (path of letters, digits and ._/-)"
                        ),
                    ));
                }
                for (name, present) in [
                    ("account", m.account.is_some()),
                    ("share", m.share.is_some()),
                    ("username", m.username.is_some()),
                    ("password", m.password.is_some()),
                    ("key", m.key.is_some()),
                ] {
                    forbid(name, present)?;
                }
            }
            MountKind::AzureFiles | MountKind::Blob => {
                if m.kind == MountKind::Blob && os == Os::Windows {
                    return Err(err(
                        format!("{f}.kind"),
                        "blob containers mount on Linux only (blobfuse2); use azure_files on Windows",
                    ));
                }
                forbid("source", m.source.is_some())?;
                forbid("username", m.username.is_some())?;
                forbid("password", m.password.is_some())?;
                let account = need("account", &m.account)?;
                if !is_storage_account(&account) {
                    return Err(err(
                        format!("{f}.account"),
                        format!(
                            "{account:?} is not a storage account name (3 to 24 lower-case letters and digits)"
                        ),
                    ));
                }
                let share = need("share", &m.share)?;
                if !is_share_name(&share) {
                    return Err(err(
                        format!("{f}.share"),
                        format!(
                            "{share:?} is not a share or container name (3 to 63 lower-case letters, digits and '-')"
                        ),
                    ));
                }
                match &m.key {
                    Some(k) => check_secret(&format!("{f}.key"), k)?,
                    None => {
                        return Err(err(
                            format!("{f}.key"),
                            "required: the storage account key, as a secret reference",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every secret reference of the section, with the field that holds it.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut out = Vec::new();
        if let Some(d) = &self.domain {
            out.push(("bootstrap.domain.password".to_string(), &d.password));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some(p) = &m.password {
                out.push((format!("bootstrap.mounts[{i}].password"), p));
            }
            if let Some(k) = &m.key {
                out.push((format!("bootstrap.mounts[{i}].key"), k));
            }
        }
        if let Some(p) = self.admin.as_ref().and_then(|a| a.password.as_ref()) {
            out.push(("bootstrap.admin.password".to_string(), p));
        }
        for (k, v) in &self.env {
            if let EnvValue::Secret(s) = v {
                out.push((format!("bootstrap.env.{k}"), s));
            }
        }
        out
    }
}

fn kind_str(k: MountKind) -> &'static str {
    match k {
        MountKind::Smb => "smb",
        MountKind::Nfs => "nfs",
        MountKind::AzureFiles => "azure_files",
        MountKind::Blob => "blob",
    }
}
