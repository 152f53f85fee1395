//! The pool's `bootstrap` section: its types as the spec and the API carry them, secret
//! references, and the section's own limits. Validation is in `validate.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A secret named, never given: the name of a secret the operator declared in the daemon's
/// configuration (`[secrets.NAME]` with `env = "VAR"` or `file = "/path"`). Resolved when a
/// node is rendered, so it never appears in the spec, the logs or the API. A spec, and so the
/// API, can only name declared secrets: never an environment variable or a file of the
/// daemon's machine.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The name of a secret declared in the daemon's configuration (`[secrets.NAME]`).
    pub secret: String,
}

/// Where a declared secret comes from: the daemon's configuration says, never a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The daemon's environment variable.
    Env(String),
    /// A file the daemon reads (one trailing newline dropped).
    File(String),
}

/// Longest secret name.
pub const MAX_SECRET_NAME: usize = 63;

/// Checks a declared secret's name: 1 to 63 of `a-z`, `0-9`, `_`, `-`, starting with a
/// letter or digit. Lower case because the configuration's environment keys are read
/// lower-cased (`RENDERBURST__SECRETS__AD_JOIN__ENV` declares `ad_join`), and no `.`, which
/// separates configuration keys.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_SECRET_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a secret name: 1 to {MAX_SECRET_NAME} of a-z, 0-9, '_' and '-', starting with a letter or digit, declared in the configuration as [secrets.NAME]"
        ))
    }
}

impl SecretRef {
    /// The declared secret's name. A reference of the form accepted before names existed
    /// (`env:VAR`, `file:/path`) is refused with how to declare it.
    pub fn name(&self) -> Result<&str, String> {
        if let Some(source) = self.legacy_source() {
            let name = suggested_name(&source);
            let declaration = match &source {
                SecretSource::Env(var) => format!("env = {var:?}"),
                SecretSource::File(path) => format!("file = {path:?}"),
            };
            return Err(format!(
                "secret {:?} is no longer accepted: declare [secrets.{name}] {declaration} in the config file and refer to it as {{\"secret\": \"{name}\"}}",
                self.secret
            ));
        }
        check_secret_name(&self.secret).map(|()| self.secret.as_str())
    }

    /// What a reference of the form accepted before names existed named: `env:VAR` (the
    /// daemon's environment) or `file:/path`. Such references may still be stored; the daemon
    /// refuses them, or rewrites them to the secret the operator declared with that source.
    pub fn legacy_source(&self) -> Option<SecretSource> {
        if let Some(var) = self.secret.strip_prefix("env:") {
            return Some(SecretSource::Env(var.to_string()));
        }
        self.secret
            .strip_prefix("file:")
            .map(|path| SecretSource::File(path.to_string()))
    }
}

/// A secret name for a legacy reference's source: the variable's name, or the file's,
/// lower-cased, other characters as `_`.
fn suggested_name(source: &SecretSource) -> String {
    let raw = match source {
        SecretSource::Env(var) => var.as_str(),
        SecretSource::File(path) => path.rsplit('/').next().unwrap_or(path),
    };
    let mut name: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_SECRET_NAME)
        .collect();
    name = name.trim_start_matches(['_', '-']).to_string();
    if name.is_empty() {
        name = "secret".into();
    }
    name
}

/// An `/etc/hosts` (or Windows `hosts`) line.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub ip: String,
    pub names: Vec<String>,
}

/// Joining an Active Directory domain: `Add-Computer` on Windows, `realm join` on Linux.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainJoin {
    /// DNS name of the domain (`studio.local`).
    pub name: String,
    /// Organizational unit for the computer account (`OU=Render,DC=studio,DC=local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou: Option<String>,
    /// An account allowed to join computers to the domain.
    pub username: String,
    pub password: SecretRef,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// `//server/share` (or `\\server\share`), with optional credentials.
    Smb,
    /// `server:/export`.
    Nfs,
    /// An Azure Files share (SMB 3), from `account` and `share`, with the account `key`.
    AzureFiles,
    /// An Azure Blob container through blobfuse2 (Linux only), from `account` and `share`
    /// (the container), with the account `key`.
    Blob,
}

/// A share mounted on every node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub kind: MountKind,
    /// For `smb` and `nfs`: what to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For `azure_files` and `blob`: the storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// For `azure_files`: the file share; for `blob`: the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// Linux: an absolute path (`/mnt/assets`); Windows: a drive letter (`R:`).
    pub target: String,
    /// For `smb`: the user to connect as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For `smb`: the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// For `azure_files` and `blob`: the storage account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// An inbound port the render manager needs open on the node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallPort {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

/// A local administrator for remote sessions (SSH on Linux; RDP, and SSH with a key, on
/// Windows).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    pub username: String,
    /// A public key is not a secret: inline (`ssh-ed25519 AAAA... comment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

/// An environment variable's value: plain text (a license server is not a secret), or a
/// secret reference.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret(SecretRef),
}

/// The render client started on every boot (a systemd service on Linux, a start-up
/// scheduled task on Windows), with the environment variables of the section.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderClient {
    /// The command line, run by `/bin/sh -c` on Linux and `cmd.exe /c` on Windows.
    pub command: String,
}

fn default_register_timeout() -> u64 {
    900
}

/// A pool's `bootstrap` section: what every new node does on its first boot.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSpec {
    /// IANA time zone (`Europe/Berlin`); default: the daemon's. Windows nodes get the
    /// matching Windows zone id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Extra hosts entries; the daemon's own address is added automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainJoin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_ports: Vec<FirewallPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminAccount>,
    /// Machine-wide environment variables (`ADSKFLEX_LICENSE_FILE`, `solidangle_LICENSE`,
    /// `RLM_LICENSE`...), also given to the render client.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_client: Option<RenderClient>,
    /// A node that has not registered this long after it started running is a zombie: it
    /// is reported and replaced.
    #[serde(default = "default_register_timeout")]
    pub register_timeout_seconds: u64,
}

/// Bounds of `register_timeout_seconds`.
pub const MIN_REGISTER_TIMEOUT_SECONDS: u64 = 1;
pub const MAX_REGISTER_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// Environment variable names the bootstrap sets itself.
pub const RESERVED_ENV_PREFIX: &str = "RENDERBURST_";
