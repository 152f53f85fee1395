//! Node bootstrap: what a fresh VM does on its first boot so that it joins the farm without
//! anyone logging in — time zone, hosts entries, Active Directory, share mounts, firewall
//! ports, a local administrator, environment variables (license servers), the render client,
//! and the call back to renderburst (`POST /v1/nodes/{name}/register` with the node's own
//! token, then heartbeats).
//!
//! The pool's `bootstrap` section ([`BootstrapSpec`]) is rendered by pure functions:
//! [`render_cloud_init`] (`#cloud-config` for Linux VMs' `customData`),
//! [`render_powershell`] (Windows VMs' `customData`), and for Batch pools
//! [`render_start_task`] (one start task for the pool, which enrolls each node) and
//! [`render_enrollment_script`] (what a node gets when it enrolls).
//!
//! Secrets are never inline: a spec names them with a [`SecretRef`] (`{"secret": "ad-join"}`),
//! the name of a secret the operator declared in the daemon's configuration, and the caller
//! passes a resolver that looks them up when a node is rendered (the daemon reads the
//! declared environment variable or file; a preview passes [`masked`]). Nothing here does IO.
//!
//! Every value that enters a script goes through one function of [`quote`] for the language
//! that reads it (POSIX shell, PowerShell, systemd) or through its YAML serializer; fields with
//! a grammar (paths, drive letters, accounts, hosts, share sources) are validated against it
//! (`grammar`), and the daemon's advertised URL by [`validate_advertise_url`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::spec::{Os, SpecError};

pub use super::grammar::validate_advertise_url;
use super::grammar::{
    is_account_name, is_drive, is_env_name, is_mount_target, is_nfs_source, is_ou, is_share_name,
    is_storage_account, is_user_name, smb_parts,
};
use super::quote::{self, powershell as ps, sh};

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

/// Azure's limit on `osProfile.customData`, counted here on the base64 text (the stricter
/// reading: 64 KiB of base64 is 48 KiB of script).
pub const MAX_CUSTOM_DATA_BASE64: usize = 64 * 1024;

/// Bounds of `register_timeout_seconds`.
pub const MIN_REGISTER_TIMEOUT_SECONDS: u64 = 1;
pub const MAX_REGISTER_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// Environment variable names the bootstrap sets itself.
pub const RESERVED_ENV_PREFIX: &str = "RENDERBURST_";

/// What a masked secret or token shows as.
pub const MASK: &str = "********";

/// Length of base64 text for `n` bytes (standard alphabet, padded).
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// A resolver that masks every secret, for previews.
pub fn masked(_: &SecretRef) -> Result<String, String> {
    Ok(MASK.to_string())
}

/// Looks a secret up by reference. The daemon's reads its environment or a file.
pub type Resolver<'a> = &'a dyn Fn(&SecretRef) -> Result<String, String>;

/// What the daemon knows that a pool spec does not: shared by the controller (which renders
/// real nodes) and the API (which previews them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapDefaults {
    /// The daemon's URL as nodes reach it (`[server] advertise_url`), without a trailing `/`.
    pub api_url: String,
    /// The daemon's IANA time zone: nodes get it when their pool names none.
    pub default_time_zone: String,
    /// The daemon's own hosts entry, added to every node's hosts file.
    pub daemon_host: Option<HostEntry>,
}

impl BootstrapDefaults {
    /// The context of node `node` of `pool`, with `token`.
    pub fn node<'a>(&'a self, pool: &'a str, node: &'a str, token: &'a str) -> NodeContext<'a> {
        NodeContext {
            pool,
            node,
            api_url: &self.api_url,
            token,
            default_time_zone: &self.default_time_zone,
            daemon_host: self.daemon_host.as_ref(),
        }
    }
}

/// Everything about one node that the spec does not say.
#[derive(Debug, Clone)]
pub struct NodeContext<'a> {
    pub pool: &'a str,
    /// The VM name, as in `/v1/nodes/{name}`.
    pub node: &'a str,
    /// The daemon's URL as nodes reach it (`[server] advertise_url`), no trailing `/`.
    pub api_url: &'a str,
    /// The node's own token (or [`MASK`] in a preview).
    pub token: &'a str,
    /// The daemon's IANA time zone, used when the spec names none.
    pub default_time_zone: &'a str,
    /// The daemon's own hosts entry, added before the spec's.
    pub daemon_host: Option<&'a HostEntry>,
}

impl NodeContext<'_> {
    pub fn register_url(&self) -> String {
        format!("{}/v1/nodes/{}/register", self.api_url, self.node)
    }

    pub fn heartbeat_url(&self) -> String {
        format!("{}/v1/nodes/{}/heartbeat", self.api_url, self.node)
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
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

/// IANA zone shape: `UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`.
/// A name in the IANA time zone database (chrono-tz's copy, the one schedules use), so
/// `Mars/Base` never reaches a node's cloud-init or `tzutil`.
fn is_iana_zone(s: &str) -> bool {
    s.len() <= 64 && s.parse::<chrono_tz::Tz>().is_ok()
}

/// The Windows time zone id for an IANA zone (from the CLDR `windowsZones` table, the
/// zones render studios are in most).
pub fn windows_time_zone(iana: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("UTC", "UTC"),
        ("Etc/UTC", "UTC"),
        ("Etc/GMT", "UTC"),
        ("Europe/London", "GMT Standard Time"),
        ("Europe/Dublin", "GMT Standard Time"),
        ("Europe/Lisbon", "GMT Standard Time"),
        ("Europe/Berlin", "W. Europe Standard Time"),
        ("Europe/Amsterdam", "W. Europe Standard Time"),
        ("Europe/Vienna", "W. Europe Standard Time"),
        ("Europe/Rome", "W. Europe Standard Time"),
        ("Europe/Stockholm", "W. Europe Standard Time"),
        ("Europe/Zurich", "W. Europe Standard Time"),
        ("Europe/Oslo", "W. Europe Standard Time"),
        ("Europe/Paris", "Romance Standard Time"),
        ("Europe/Brussels", "Romance Standard Time"),
        ("Europe/Madrid", "Romance Standard Time"),
        ("Europe/Copenhagen", "Romance Standard Time"),
        ("Europe/Warsaw", "Central European Standard Time"),
        ("Europe/Prague", "Central Europe Standard Time"),
        ("Europe/Budapest", "Central Europe Standard Time"),
        ("Europe/Helsinki", "FLE Standard Time"),
        ("Europe/Kiev", "FLE Standard Time"),
        ("Europe/Kyiv", "FLE Standard Time"),
        ("Europe/Athens", "GTB Standard Time"),
        ("Europe/Bucharest", "GTB Standard Time"),
        ("Europe/Istanbul", "Turkey Standard Time"),
        ("Europe/Moscow", "Russian Standard Time"),
        ("America/New_York", "Eastern Standard Time"),
        ("America/Toronto", "Eastern Standard Time"),
        ("America/Chicago", "Central Standard Time"),
        ("America/Denver", "Mountain Standard Time"),
        ("America/Phoenix", "US Mountain Standard Time"),
        ("America/Los_Angeles", "Pacific Standard Time"),
        ("America/Vancouver", "Pacific Standard Time"),
        ("America/Anchorage", "Alaskan Standard Time"),
        ("America/Mexico_City", "Central Standard Time (Mexico)"),
        ("America/Bogota", "SA Pacific Standard Time"),
        ("America/Sao_Paulo", "E. South America Standard Time"),
        ("America/Argentina/Buenos_Aires", "Argentina Standard Time"),
        ("Pacific/Honolulu", "Hawaiian Standard Time"),
        ("Pacific/Auckland", "New Zealand Standard Time"),
        ("Asia/Tokyo", "Tokyo Standard Time"),
        ("Asia/Seoul", "Korea Standard Time"),
        ("Asia/Shanghai", "China Standard Time"),
        ("Asia/Hong_Kong", "China Standard Time"),
        ("Asia/Taipei", "Taipei Standard Time"),
        ("Asia/Singapore", "Singapore Standard Time"),
        ("Asia/Kolkata", "India Standard Time"),
        ("Asia/Dubai", "Arabian Standard Time"),
        ("Australia/Sydney", "AUS Eastern Standard Time"),
        ("Australia/Melbourne", "AUS Eastern Standard Time"),
        ("Australia/Brisbane", "E. Australia Standard Time"),
        ("Australia/Perth", "W. Australia Standard Time"),
        ("Africa/Johannesburg", "South Africa Standard Time"),
    ];
    TABLE.iter().find(|(k, _)| *k == iana).map(|(_, v)| *v)
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

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Secrets resolved for one rendering, by field.
struct Secrets(BTreeMap<String, String>);

impl Secrets {
    fn resolve(spec: &BootstrapSpec, resolver: Resolver<'_>) -> Result<Secrets, SpecError> {
        let mut map = BTreeMap::new();
        for (field, r) in spec.secret_refs() {
            let value = resolver(r).map_err(|m| {
                err(
                    field.clone(),
                    format!("cannot resolve secret {:?}: {m}", r.secret),
                )
            })?;
            if value.is_empty() || value.contains(['\n', '\r', '\0']) {
                return Err(err(
                    field,
                    format!("secret {:?} must be one non-empty line", r.secret),
                ));
            }
            map.insert(field, value);
        }
        Ok(Secrets(map))
    }

    fn get(&self, field: &str) -> &str {
        self.0.get(field).map_or("", String::as_str)
    }
}

fn host_lines(ctx: &NodeContext<'_>, spec: &BootstrapSpec) -> Vec<String> {
    ctx.daemon_host
        .into_iter()
        .chain(spec.hosts.iter())
        .map(|h| format!("{} {}", h.ip, h.names.join(" ")))
        .collect()
}

fn env_pairs(spec: &BootstrapSpec, secrets: &Secrets) -> Vec<(String, String)> {
    spec.env
        .iter()
        .map(|(k, v)| {
            let value = match v {
                EnvValue::Plain(s) => s.clone(),
                EnvValue::Secret(_) => secrets.get(&format!("bootstrap.env.{k}")).to_string(),
            };
            (k.clone(), value)
        })
        .collect()
}

fn protocol_str(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// Where a mount's credentials file lives on Linux.
fn cred_path(i: usize) -> String {
    format!("/etc/renderburst/mount-{i}.cred")
}

/// The node agent: register (retrying until renderburst answers), then a liveness
/// heartbeat every 30 s. It sends `{}` so that it never overwrites the `busy` flag the
/// render manager reports.
const LINUX_AGENT: &str = r#"#!/bin/sh
# renderburst node agent: registers this node, then reports it alive every 30 s.
# The body of the heartbeat is {} (liveness only): "busy" is the render manager's to report.
. /etc/renderburst/node.env
auth="Authorization: Bearer $RENDERBURST_NODE_TOKEN"
until curl -fsS -m 20 -X POST -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"hostname\":\"$(hostname)\"}" "$RENDERBURST_REGISTER_URL" >/dev/null; do
  sleep 10
done
while :; do
  curl -fsS -m 20 -X PUT -H "$auth" -H 'Content-Type: application/json' -d '{}' \
    "$RENDERBURST_HEARTBEAT_URL" >/dev/null || true
  sleep 30
done
"#;

/// A `#cloud-config` document: what renderburst writes of cloud-init's schema, typed so that the
/// YAML serializer (not string formatting) writes every value. The Batch enrollment script is
/// made from the same value ([`cloud_init_as_script`]).
#[derive(Debug, Serialize)]
struct CloudConfig {
    timezone: String,
    write_files: Vec<WriteFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<CloudUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chpasswd: Option<Chpasswd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_pwauth: Option<bool>,
    runcmd: Vec<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct WriteFile {
    path: String,
    permissions: &'static str,
    owner: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    append: bool,
    content: String,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum CloudUser {
    /// `default`: the image's default user stays.
    Default(&'static str),
    Account(CloudAccount),
}

#[derive(Debug, Serialize)]
struct CloudAccount {
    name: String,
    shell: &'static str,
    sudo: String,
    lock_passwd: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Chpasswd {
    expire: bool,
    users: Vec<ChpasswdUser>,
}

#[derive(Debug, Serialize)]
struct ChpasswdUser {
    name: String,
    password: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// blobfuse2's configuration file for one container.
#[derive(Debug, Serialize)]
struct BlobfuseConfig {
    #[serde(rename = "allow-other")]
    allow_other: bool,
    components: [&'static str; 4],
    azstorage: BlobfuseStorage,
}

#[derive(Debug, Serialize)]
struct BlobfuseStorage {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "account-name")]
    account_name: String,
    container: String,
    mode: &'static str,
    #[serde(rename = "account-key")]
    account_key: String,
}

fn write_file(path: &str, mode: &'static str, content: String, append: bool) -> WriteFile {
    WriteFile {
        path: path.to_string(),
        permissions: mode,
        owner: "root:root",
        append,
        content,
    }
}

fn yaml_error(e: String) -> SpecError {
    err("bootstrap", format!("cannot render YAML: {e}"))
}

/// Renders the `#cloud-config` document for a Linux node. Secrets are resolved through
/// `resolve` (pass [`masked`] for a preview).
pub fn render_cloud_init(
    spec: &BootstrapSpec,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<String, SpecError> {
    let doc = cloud_config(spec, ctx, resolve)?;
    let body = quote::yaml(&doc).map_err(yaml_error)?;
    Ok(format!(
        "#cloud-config\n# renderburst bootstrap of node {} (pool {}). Rendered by renderburst: do not edit.\n{body}",
        quote::comment(ctx.node),
        quote::comment(ctx.pool)
    ))
}

fn cloud_config(
    spec: &BootstrapSpec,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<CloudConfig, SpecError> {
    let secrets = Secrets::resolve(spec, resolve)?;
    let file = write_file;
    let tz = spec.time_zone.as_deref().unwrap_or(ctx.default_time_zone);

    let mut files = Vec::new();
    let hosts = host_lines(ctx, spec);
    if !hosts.is_empty() {
        let mut text = String::from("# added by renderburst bootstrap\n");
        for h in &hosts {
            text.push_str(h);
            text.push('\n');
        }
        files.push(file("/etc/hosts", "0644", text, true));
    }
    // Sourced by the node agent (`. /etc/renderburst/node.env`): every value shell-quoted.
    let mut node_env = String::new();
    for (k, v) in [
        ("RENDERBURST_POOL", ctx.pool.to_string()),
        ("RENDERBURST_NODE", ctx.node.to_string()),
        ("RENDERBURST_REGISTER_URL", ctx.register_url()),
        ("RENDERBURST_HEARTBEAT_URL", ctx.heartbeat_url()),
        ("RENDERBURST_NODE_TOKEN", ctx.token.to_string()),
    ] {
        let _ = writeln!(node_env, "{k}={}", sh(&v));
    }
    files.push(file("/etc/renderburst/node.env", "0600", node_env, false));
    files.push(file(
        "/usr/local/lib/renderburst/node-agent.sh",
        "0755",
        LINUX_AGENT.to_string(),
        false,
    ));
    files.push(file(
        "/etc/systemd/system/renderburst-node.service",
        "0644",
        "[Unit]\nDescription=renderburst node agent (register, heartbeat)\nAfter=network-online.target remote-fs.target\nWants=network-online.target\n\n[Service]\nExecStart=/usr/local/lib/renderburst/node-agent.sh\nRestart=always\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n".to_string(),
        false,
    ));
    let env = env_pairs(spec, &secrets);
    // The render client's environment: the section's variables (systemd EnvironmentFile
    // syntax) ...
    let mut render_env = String::new();
    for (k, v) in &env {
        let _ = writeln!(render_env, "{k}={}", quote::systemd_env(v));
    }
    if !env.is_empty() {
        files.push(file(
            "/etc/renderburst/render.env",
            "0600",
            render_env,
            false,
        ));
        // ... and the same for login shells, without secrets (profile.d is world-readable).
        let mut profile = String::from("# renderburst bootstrap: the pool's environment\n");
        for (k, v) in &spec.env {
            if let EnvValue::Plain(value) = v {
                let _ = writeln!(profile, "export {k}={}", sh(value));
            }
        }
        files.push(file(
            "/etc/profile.d/renderburst.sh",
            "0644",
            profile,
            false,
        ));
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        match m.kind {
            MountKind::Smb => {
                if let Some(u) = &m.username {
                    let pw = secrets.get(&format!("bootstrap.mounts[{i}].password"));
                    files.push(file(
                        &cred_path(i),
                        "0600",
                        format!("username={u}\npassword={pw}\n"),
                        false,
                    ));
                }
            }
            MountKind::AzureFiles => {
                let account = m.account.as_deref().unwrap_or_default();
                let key = secrets.get(&format!("bootstrap.mounts[{i}].key"));
                files.push(file(
                    &cred_path(i),
                    "0600",
                    format!("username={account}\npassword={key}\n"),
                    false,
                ));
            }
            MountKind::Blob => {
                let config = BlobfuseConfig {
                    allow_other: true,
                    components: ["libfuse", "file_cache", "attr_cache", "azstorage"],
                    azstorage: BlobfuseStorage {
                        kind: "block",
                        account_name: m.account.clone().unwrap_or_default(),
                        container: m.share.clone().unwrap_or_default(),
                        mode: "key",
                        account_key: secrets
                            .get(&format!("bootstrap.mounts[{i}].key"))
                            .to_string(),
                    },
                };
                files.push(file(
                    &format!("/etc/renderburst/blobfuse-{i}.yaml"),
                    "0600",
                    quote::yaml(&config).map_err(yaml_error)?,
                    false,
                ));
            }
            MountKind::Nfs => {}
        }
    }
    if spec.domain.is_some() {
        files.push(file(
            DOMAIN_PASSWORD_FILE,
            "0600",
            format!("{}\n", secrets.get("bootstrap.domain.password")),
            false,
        ));
    }
    if let Some(rc) = &spec.render_client {
        let env_file = if env.is_empty() {
            String::new()
        } else {
            "EnvironmentFile=/etc/renderburst/render.env\n".to_string()
        };
        files.push(file(
            "/etc/systemd/system/renderburst-render-client.service",
            "0644",
            format!(
                "[Unit]\nDescription=Render client (renderburst bootstrap)\nAfter=network-online.target remote-fs.target\nWants=network-online.target\n\n[Service]\n{env_file}ExecStart=/bin/sh -c {}\nRestart=always\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n",
                quote::systemd_exec(&rc.command)
            ),
            false,
        ));
    }
    files.push(file(BOOTSTRAP_SCRIPT, "0700", linux_script(spec), false));

    let mut doc = CloudConfig {
        timezone: tz.to_string(),
        write_files: files,
        users: Vec::new(),
        chpasswd: None,
        ssh_pwauth: None,
        runcmd: vec![vec![BOOTSTRAP_SCRIPT.to_string()]],
    };
    if let Some(a) = &spec.admin {
        doc.users = vec![
            CloudUser::Default("default"),
            CloudUser::Account(CloudAccount {
                name: a.username.clone(),
                shell: "/bin/bash",
                sudo: "ALL=(ALL) NOPASSWD:ALL".to_string(),
                lock_passwd: a.password.is_none(),
                ssh_authorized_keys: a.ssh_public_key.iter().cloned().collect(),
            }),
        ];
        if a.password.is_some() {
            doc.chpasswd = Some(Chpasswd {
                expire: false,
                users: vec![ChpasswdUser {
                    name: a.username.clone(),
                    password: secrets.get("bootstrap.admin.password").to_string(),
                    kind: "text",
                }],
            });
            doc.ssh_pwauth = Some(true);
        }
    }
    Ok(doc)
}

/// The bootstrap script cloud-init (or the Batch enrollment script) runs once.
const BOOTSTRAP_SCRIPT: &str = "/usr/local/lib/renderburst/bootstrap.sh";
/// The domain-join password, read once by `realm join` and removed on every exit.
const DOMAIN_PASSWORD_FILE: &str = "/etc/renderburst/domain-join.pw";

/// The shell script cloud-init runs once (`runcmd`): packages, firewall, domain, mounts,
/// then the render client and the node agent, which registers last — a node that failed to
/// bootstrap never registers and is replaced as a zombie.
fn linux_script(spec: &BootstrapSpec) -> String {
    let mut o = String::new();
    o.push_str("#!/bin/bash\n# renderburst bootstrap, run once by cloud-init. Registers the node last.\nset -euo pipefail\nexec >>/var/log/renderburst-bootstrap.log 2>&1\n");
    if spec.domain.is_some() {
        // Whether the join works or not, the password does not stay on the disk.
        let _ = writeln!(
            o,
            "trap {} EXIT",
            sh(&format!("rm -f {DOMAIN_PASSWORD_FILE}"))
        );
    }
    o.push('\n');
    o.push_str("install_packages() {\n  if command -v apt-get >/dev/null; then\n    DEBIAN_FRONTEND=noninteractive apt-get -y -q update\n    DEBIAN_FRONTEND=noninteractive apt-get -y -q install \"$@\"\n  elif command -v dnf >/dev/null; then\n    dnf -y -q install \"$@\"\n  else\n    zypper -n -q install \"$@\"\n  fi\n}\n\n");
    let mut pkgs: Vec<&str> = vec!["curl"];
    if spec
        .mounts
        .iter()
        .any(|m| matches!(m.kind, MountKind::Smb | MountKind::AzureFiles))
    {
        pkgs.push("cifs-utils");
    }
    if spec.mounts.iter().any(|m| m.kind == MountKind::Nfs) {
        pkgs.push("nfs-common");
    }
    if spec.domain.is_some() {
        pkgs.extend([
            "realmd",
            "sssd",
            "sssd-tools",
            "adcli",
            "samba-common-bin",
            "krb5-user",
            "packagekit",
        ]);
    }
    let _ = writeln!(
        o,
        "# Packages (Debian and Ubuntu names; apt-get, dnf or zypper is used).\ninstall_packages {}\n",
        pkgs.join(" ")
    );
    if !spec.firewall_ports.is_empty() {
        o.push_str("# Firewall ports for the render manager.\n");
        for p in &spec.firewall_ports {
            let rule = format!("{}/{}", p.port, protocol_str(p.protocol));
            let _ = writeln!(
                o,
                "if command -v ufw >/dev/null; then ufw allow {rule}; fi\nif command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --permanent --add-port={rule}; fi"
            );
        }
        o.push_str("if command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --reload; fi\n\n");
    }
    if let Some(d) = &spec.domain {
        o.push_str("# Active Directory (realmd).\n");
        let ou =
            d.ou.as_ref()
                .map(|ou| format!(" --computer-ou={}", sh(ou)))
                .unwrap_or_default();
        let _ = writeln!(
            o,
            "if ! realm list | grep -qi {dom}; then\n  realm join --verbose{ou} -U {user} {dom} <{pw}\nfi\nrm -f {pw}\n",
            dom = sh(&d.name),
            user = sh(&d.username),
            pw = sh(DOMAIN_PASSWORD_FILE),
        );
    }
    if !spec.mounts.is_empty() {
        o.push_str("# Share mounts.\n");
        for (i, m) in spec.mounts.iter().enumerate() {
            // Validated (`^/[A-Za-z0-9._/-]+$`), so it can stand in an fstab line; quoted
            // wherever it reaches the shell.
            let target = &m.target;
            let _ = writeln!(o, "mkdir -p {}", sh(target));
            let line = match m.kind {
                MountKind::Smb => {
                    let (host, path) =
                        smb_parts(m.source.as_deref().unwrap_or_default()).unwrap_or_default();
                    let creds = if m.username.is_some() {
                        format!("credentials={}", cred_path(i))
                    } else {
                        "guest".to_string()
                    };
                    Some(format!(
                        "//{host}/{path} {target} cifs {creds},vers=3.0,serverino,_netdev,nofail,dir_mode=0777,file_mode=0777 0 0"
                    ))
                }
                MountKind::AzureFiles => Some(format!(
                    "//{}.file.core.windows.net/{} {target} cifs credentials={},vers=3.1.1,serverino,nosharesock,actimeo=30,_netdev,nofail,dir_mode=0777,file_mode=0777 0 0",
                    m.account.as_deref().unwrap_or_default(),
                    m.share.as_deref().unwrap_or_default(),
                    cred_path(i)
                )),
                MountKind::Nfs => Some(format!(
                    "{} {target} nfs defaults,_netdev,nofail 0 0",
                    m.source.as_deref().unwrap_or_default()
                )),
                MountKind::Blob => None,
            };
            match line {
                Some(line) => {
                    let _ = writeln!(
                        o,
                        "grep -qsF {q} /etc/fstab || echo {q} >>/etc/fstab\nmount {t} || mountpoint -q {t}",
                        q = sh(&line),
                        t = sh(target)
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "command -v blobfuse2 >/dev/null || {{ echo {message}; exit 1; }}\nmkdir -p /mnt/blobfuse-cache-{i}\nblobfuse2 mount {t} --config-file=/etc/renderburst/blobfuse-{i}.yaml --tmp-path=/mnt/blobfuse-cache-{i}",
                        message = sh(&format!(
                            "blobfuse2 is not installed on this image: cannot mount {target}"
                        )),
                        t = sh(target)
                    );
                }
            }
        }
        o.push('\n');
    }
    o.push_str("# Services: the render client, then the node agent (registers with renderburst).\nsystemctl daemon-reload\n");
    if spec.render_client.is_some() {
        o.push_str("systemctl enable --now renderburst-render-client.service\n");
    }
    o.push_str("systemctl enable --now renderburst-node.service\n");
    o
}

/// Where Azure saves a Windows VM's `customData` (the VM's `FirstLogonCommands` copy it to a
/// `.ps1` beside it and run that).
const WINDOWS_CUSTOM_DATA: &str = "C:\\AzureData\\CustomData.bin";

/// Renders the PowerShell script a Windows node runs on its first logon (Azure saves
/// `customData` as `C:\AzureData\CustomData.bin`; the VM's `FirstLogonCommands` run it).
pub fn render_powershell(
    spec: &BootstrapSpec,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<String, SpecError> {
    let secrets = Secrets::resolve(spec, resolve)?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# renderburst bootstrap of node {} (pool {}). Rendered by renderburst: do not edit.",
        quote::comment(ctx.node),
        quote::comment(ctx.pool)
    );
    // PowerShell parses the whole script before it runs a line of it, so the script can delete
    // itself (and Azure's copy of customData) first: its secrets are not left on the disk,
    // whether it succeeds or not. Run by Invoke-Expression (Batch), it has no path.
    let _ = writeln!(
        o,
        "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n# This script holds secrets: delete it and customData now (PowerShell has read all of it).\nforeach ($f in @($PSCommandPath, {})) {{ if ($f -and (Test-Path -LiteralPath $f)) {{ Remove-Item -LiteralPath $f -Force }} }}",
        ps(WINDOWS_CUSTOM_DATA)
    );
    o.push_str("$dir = Join-Path $env:ProgramData 'renderburst'\nNew-Item -ItemType Directory -Force -Path $dir | Out-Null\n# Only SYSTEM and Administrators may read what is written here (the node token).\nicacls.exe $dir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null\n\n");
    let tz = spec.time_zone.as_deref().unwrap_or(ctx.default_time_zone);
    match windows_time_zone(tz) {
        Some(id) => {
            let _ = writeln!(
                o,
                "# Time zone ({}).\nSet-TimeZone -Id {}\n",
                quote::comment(tz),
                ps(id)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "# Time zone: {} has no known Windows id; the image's zone is kept.\n",
                quote::comment(tz)
            );
        }
    }
    let hosts = host_lines(ctx, spec);
    if !hosts.is_empty() {
        o.push_str("# Hosts entries.\n$hosts = Join-Path $env:SystemRoot 'System32\\drivers\\etc\\hosts'\n");
        for h in &hosts {
            let _ = writeln!(
                o,
                "Add-Content -Path $hosts -Value {} -Encoding ASCII",
                ps(h)
            );
        }
        o.push('\n');
    }
    if !spec.firewall_ports.is_empty() {
        o.push_str("# Firewall ports for the render manager.\n");
        for p in &spec.firewall_ports {
            let proto = match p.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            };
            let _ = writeln!(
                o,
                "New-NetFirewallRule -DisplayName {} -Direction Inbound -Action Allow -Protocol {proto} -LocalPort {} | Out-Null",
                ps(&format!(
                    "renderburst {}/{}",
                    p.port,
                    protocol_str(p.protocol)
                )),
                p.port
            );
        }
        o.push('\n');
    }
    if let Some(a) = &spec.admin {
        o.push_str("# Local administrator for remote sessions.\n");
        let user = ps(&a.username);
        match &a.password {
            Some(_) => {
                let _ = writeln!(
                    o,
                    "$password = ConvertTo-SecureString {} -AsPlainText -Force\nNew-LocalUser -Name {user} -Password $password -PasswordNeverExpires | Out-Null",
                    ps(secrets.get("bootstrap.admin.password"))
                );
            }
            None => {
                let _ = writeln!(o, "New-LocalUser -Name {user} -NoPassword | Out-Null");
            }
        }
        let _ = writeln!(
            o,
            "Add-LocalGroupMember -Group 'Administrators' -Member {user}\nAdd-LocalGroupMember -Group 'Remote Desktop Users' -Member {user}"
        );
        if let Some(key) = &a.ssh_public_key {
            let _ = writeln!(
                o,
                "Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' | Out-Null\n$keys = Join-Path $env:ProgramData 'ssh\\administrators_authorized_keys'\nNew-Item -ItemType Directory -Force -Path (Split-Path $keys) | Out-Null\nSet-Content -Path $keys -Value {} -Encoding ASCII\nicacls.exe $keys /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null\nSet-Service -Name sshd -StartupType Automatic\nStart-Service sshd\nNew-NetFirewallRule -DisplayName 'renderburst ssh' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 22 | Out-Null",
                ps(key)
            );
        }
        o.push('\n');
    }
    let env = env_pairs(spec, &secrets);
    if !env.is_empty() {
        o.push_str("# Environment (license servers...), machine-wide.\n");
        for (k, v) in &env {
            let _ = writeln!(
                o,
                "[Environment]::SetEnvironmentVariable({}, {}, 'Machine')",
                ps(k),
                ps(v)
            );
        }
        o.push('\n');
    }
    if !spec.mounts.is_empty() {
        o.push_str("# Share mounts (global mappings: visible to services and every session).\n");
        for (i, m) in spec.mounts.iter().enumerate() {
            let target = ps(&m.target);
            match m.kind {
                MountKind::Smb => {
                    let (host, path) =
                        smb_parts(m.source.as_deref().unwrap_or_default()).unwrap_or_default();
                    let unc = format!("\\\\{host}\\{}", path.replace('/', "\\"));
                    match &m.username {
                        Some(u) => {
                            let _ = writeln!(
                                o,
                                "$credential = New-Object System.Management.Automation.PSCredential({}, (ConvertTo-SecureString {} -AsPlainText -Force))\nNew-SmbGlobalMapping -RemotePath {} -LocalPath {target} -Credential $credential -Persistent $true | Out-Null",
                                ps(u),
                                ps(secrets.get(&format!("bootstrap.mounts[{i}].password"))),
                                ps(&unc)
                            );
                        }
                        None => {
                            let _ = writeln!(
                                o,
                                "New-SmbGlobalMapping -RemotePath {} -LocalPath {target} -Persistent $true | Out-Null",
                                ps(&unc)
                            );
                        }
                    }
                }
                MountKind::AzureFiles => {
                    let account = m.account.as_deref().unwrap_or_default();
                    let unc = format!(
                        "\\\\{account}.file.core.windows.net\\{}",
                        m.share.as_deref().unwrap_or_default()
                    );
                    let _ = writeln!(
                        o,
                        "$credential = New-Object System.Management.Automation.PSCredential({}, (ConvertTo-SecureString {} -AsPlainText -Force))\nNew-SmbGlobalMapping -RemotePath {} -LocalPath {target} -Credential $credential -Persistent $true | Out-Null",
                        ps(&format!("localhost\\{account}")),
                        ps(secrets.get(&format!("bootstrap.mounts[{i}].key"))),
                        ps(&unc)
                    );
                }
                MountKind::Nfs => {
                    let _ = writeln!(
                        o,
                        "Install-WindowsFeature -Name NFS-Client | Out-Null\n& mount.exe -o anon,nolock {} {target}",
                        ps(m.source.as_deref().unwrap_or_default())
                    );
                }
                // Refused for Windows by validation.
                MountKind::Blob => {}
            }
        }
        o.push('\n');
    }
    // The node agent registers, then beats; a start-up task, so it runs after reboots too.
    let _ = writeln!(
        o,
        "# Node agent: registers with renderburst, then reports the node alive every 30 s.\n# The heartbeat body is {{}} (liveness only): \"busy\" is the render manager's to report.\n$agent = @'\n$RegisterUrl = {}\n$HeartbeatUrl = {}\n$Headers = @{{ Authorization = 'Bearer ' + {} }}\nwhile ($true) {{\n    try {{\n        Invoke-RestMethod -Method Post -Uri $RegisterUrl -Headers $Headers -ContentType 'application/json' -Body (@{{ hostname = $env:COMPUTERNAME }} | ConvertTo-Json) | Out-Null\n        break\n    }} catch {{ Start-Sleep -Seconds 10 }}\n}}\nwhile ($true) {{\n    try {{ Invoke-RestMethod -Method Put -Uri $HeartbeatUrl -Headers $Headers -ContentType 'application/json' -Body '{{}}' | Out-Null }} catch {{ }}\n    Start-Sleep -Seconds 30\n}}\n'@\nSet-Content -Path (Join-Path $dir 'node-agent.ps1') -Value $agent -Encoding UTF8\n$action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -ExecutionPolicy Bypass -File \"' + (Join-Path $dir 'node-agent.ps1') + '\"')\n$trigger = New-ScheduledTaskTrigger -AtStartup\n$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1)\nRegister-ScheduledTask -TaskName 'renderburst-node' -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null\n",
        ps(&ctx.register_url()),
        ps(&ctx.heartbeat_url()),
        ps(ctx.token),
    );
    let mut tasks = vec!["renderburst-node"];
    if let Some(rc) = &spec.render_client {
        let _ = writeln!(
            o,
            "# Render client: a start-up task running as SYSTEM.\n$action = New-ScheduledTaskAction -Execute 'cmd.exe' -Argument {}\nRegister-ScheduledTask -TaskName 'renderburst-render-client' -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force | Out-Null\n",
            ps(&format!("/c {}", rc.command))
        );
        tasks.insert(0, "renderburst-render-client");
    }
    match &spec.domain {
        Some(d) => {
            let ou =
                d.ou.as_ref()
                    .map(|ou| format!(" -OUPath {}", ps(ou)))
                    .unwrap_or_default();
            let _ = writeln!(
                o,
                "# Active Directory: join, then restart; the start-up tasks run after the restart.\n$joinPassword = ConvertTo-SecureString {} -AsPlainText -Force\n$joinCredential = New-Object System.Management.Automation.PSCredential({}, $joinPassword)\nAdd-Computer -DomainName {}{ou} -Credential $joinCredential -Force -Restart",
                ps(secrets.get("bootstrap.domain.password")),
                ps(&d.username),
                ps(&d.name),
            );
        }
        None => {
            o.push_str("# Start now (they also start at every boot).\n");
            for t in tasks {
                let _ = writeln!(o, "Start-ScheduledTask -TaskName {}", ps(t));
            }
        }
    }
    Ok(o)
}

/// What a node gets, for either OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNode {
    /// `cloud-init` or `powershell`.
    pub format: &'static str,
    pub text: String,
}

/// Renders the node's script for its OS and checks it fits in `customData`.
pub fn render_node(
    spec: &BootstrapSpec,
    os: Os,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<RenderedNode, SpecError> {
    let (format, text) = match os {
        Os::Linux => ("cloud-init", render_cloud_init(spec, ctx, resolve)?),
        Os::Windows => ("powershell", render_powershell(spec, ctx, resolve)?),
    };
    let size = base64_len(text.len());
    if size > MAX_CUSTOM_DATA_BASE64 {
        return Err(err(
            "bootstrap",
            format!(
                "renders to {size} bytes of base64 customData, above Azure's limit of {MAX_CUSTOM_DATA_BASE64}: fewer or shorter items"
            ),
        ));
    }
    Ok(RenderedNode { format, text })
}

/// A Batch start task: its command line and environment settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTask {
    pub command_line: String,
    /// Batch `environmentSettings` (`name`, `value`).
    pub environment: Vec<(String, String)>,
    /// Batch runs start tasks as a user; bootstrap needs an elevated (admin) one.
    pub elevated: bool,
}

/// The start task's variable holding the daemon's URL.
pub const ENV_API_URL: &str = "RENDERBURST_API_URL";
/// The start task's variable holding the pool's enrollment token.
pub const ENV_POOL_TOKEN: &str = "RENDERBURST_POOL_TOKEN";
/// Enrollment attempts of the start task, 5 s apart: a node can boot before the daemon has
/// seen it in the pool's node list (it looks again when asked about an unknown node).
pub const ENROLL_ATTEMPTS: u32 = 60;

/// Renders the start task of a Batch pool with a `bootstrap` section.
///
/// One start task serves every node of a Batch pool and anyone who can read the pool can
/// read it, so it carries no secret and no node token: only the daemon's URL and the pool's
/// **enrollment token**, which can do one thing, enroll a node of this pool that the daemon
/// sees in the pool's node list and that has not enrolled yet
/// (`POST /v1/nodes/{AZ_BATCH_NODE_ID}/enroll`). The answer is the node's own bootstrap
/// script ([`render_enrollment_script`]: its node token, the resolved secrets), run at once
/// and not kept. Batch runs the start task again after a reboot; a node bootstrapped
/// already (its node agent is installed) stops there.
pub fn render_start_task(os: Os, api_url: &str, pool_token: &str) -> StartTask {
    let command_line = match os {
        // Single quotes around the whole script: it contains none itself.
        Os::Linux => format!(
            "/bin/bash -c 'set -eu; umask 077; if [ -s /etc/renderburst/node.env ]; then echo renderburst: bootstrapped already; exit 0; fi; s=\"$AZ_BATCH_TASK_WORKING_DIR/renderburst-bootstrap.sh\"; trap \"rm -f $s\" EXIT; curl -fsS --retry {ENROLL_ATTEMPTS} --retry-delay 5 --retry-all-errors --max-time 60 -X POST -H \"Authorization: Bearer ${ENV_POOL_TOKEN}\" -o \"$s\" \"${ENV_API_URL}/v1/nodes/$AZ_BATCH_NODE_ID/enroll\"; /bin/bash \"$s\"'"
        ),
        Os::Windows => {
            let script = format!(
                "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\nif (Test-Path (Join-Path $env:ProgramData 'renderburst\\node-agent.ps1')) {{ Write-Output 'renderburst: bootstrapped already'; exit 0 }}\n$uri = $env:{ENV_API_URL} + '/v1/nodes/' + $env:AZ_BATCH_NODE_ID + '/enroll'\n$headers = @{{ Authorization = 'Bearer ' + $env:{ENV_POOL_TOKEN} }}\n$script = $null\nfor ($i = 0; $i -lt {ENROLL_ATTEMPTS} -and -not $script; $i++) {{\n    try {{ $script = (Invoke-WebRequest -UseBasicParsing -Method Post -Uri $uri -Headers $headers -TimeoutSec 60).Content }} catch {{ Start-Sleep -Seconds 5 }}\n}}\nif (-not $script) {{ throw 'renderburst: enrollment failed' }}\nInvoke-Expression $script\n"
            );
            let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
            format!(
                "powershell.exe -NoProfile -ExecutionPolicy Bypass -EncodedCommand {}",
                base64_encode(&utf16)
            )
        }
    };
    StartTask {
        command_line,
        environment: vec![
            (ENV_API_URL.to_string(), api_url.to_string()),
            (ENV_POOL_TOKEN.to_string(), pool_token.to_string()),
        ],
        elevated: true,
    }
}

/// The script a Batch node gets when it enrolls: the cloud-init document's files and
/// commands as one shell script on Linux (Batch has no cloud-init step), the PowerShell
/// bootstrap on Windows. It holds the node's token and resolved secrets; it travels only as
/// the answer to the node's own enrollment.
pub fn render_enrollment_script(
    spec: &BootstrapSpec,
    os: Os,
    ctx: &NodeContext<'_>,
    resolve: Resolver<'_>,
) -> Result<String, SpecError> {
    match os {
        Os::Linux => Ok(cloud_init_as_script(&cloud_config(spec, ctx, resolve)?)),
        Os::Windows => render_powershell(spec, ctx, resolve),
    }
}

/// Turns a `#cloud-config` document into a plain shell script (for Batch, which has no
/// cloud-init step): the time zone and users set, the files written with their modes, then
/// the bootstrap script runs. Every value is shell-quoted.
fn cloud_init_as_script(doc: &CloudConfig) -> String {
    let mut o = String::from("#!/bin/bash\nset -euo pipefail\n");
    let _ = writeln!(o, "timedatectl set-timezone {} || true", sh(&doc.timezone));
    for user in &doc.users {
        let CloudUser::Account(u) = user else {
            continue;
        };
        let n = sh(&u.name);
        // sudo skips files of /etc/sudoers.d whose names hold a '.'.
        let sudoers = format!("/etc/sudoers.d/renderburst-{}", u.name.replace('.', "_"));
        let _ = writeln!(
            o,
            "id -u {n} >/dev/null 2>&1 || useradd -m -s {shell} {n}\nprintf '%s\\n' {rule} >{sudoers}",
            shell = sh(u.shell),
            rule = sh(&format!("{} {}", u.name, u.sudo)),
            sudoers = sh(&sudoers),
        );
        if !u.ssh_authorized_keys.is_empty() {
            // sshd reads the keys as the user: the directory and the file are theirs.
            let _ = writeln!(
                o,
                "home=$(getent passwd {n} | cut -d: -f6)\ninstall -d -m 0700 -o {n} \"$home/.ssh\""
            );
            for k in &u.ssh_authorized_keys {
                let _ = writeln!(
                    o,
                    "printf '%s\\n' {} >>\"$home/.ssh/authorized_keys\"",
                    sh(k)
                );
            }
            let _ = writeln!(
                o,
                "chmod 0600 \"$home/.ssh/authorized_keys\"\nchown {n} \"$home/.ssh/authorized_keys\""
            );
        }
    }
    for u in doc.chpasswd.iter().flat_map(|c| &c.users) {
        let _ = writeln!(
            o,
            "printf '%s\\n' {} | chpasswd",
            sh(&format!("{}:{}", u.name, u.password))
        );
    }
    for f in &doc.write_files {
        let redirect = if f.append { ">>" } else { ">" };
        let _ = writeln!(
            o,
            "mkdir -p \"$(dirname {p})\"\nprintf '%s' {c} {redirect}{p}\nchmod {mode} {p}",
            p = sh(&f.path),
            c = sh(&f.content),
            mode = sh(f.permissions),
        );
    }
    for command in &doc.runcmd {
        let words: Vec<String> = command.iter().map(|w| sh(w)).collect();
        let _ = writeln!(o, "{}", words.join(" "));
    }
    o
}

/// Standard base64 with padding (kept here so `core` needs no encoding crate).
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(base64_len(data.len()));
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(A[(n >> 18) as usize & 63]));
        out.push(char::from(A[(n >> 12) as usize & 63]));
        out.push(if chunk.len() > 1 {
            char::from(A[(n >> 6) as usize & 63])
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            char::from(A[n as usize & 63])
        } else {
            '='
        });
    }
    out
}
