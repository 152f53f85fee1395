//! The daemon's configuration: a TOML file (optional) under environment overrides
//! (`RENDERBURST__SECTION__KEY`), read with the `config` crate. Unknown keys and bad values
//! are errors that name the key and the file, so a typo never silently does nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use rb_core::{PoolSpec, ScheduleSpec};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub controller: ControllerSection,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Batch nodes' enrollment: window and token rotation.
    #[serde(default)]
    pub bootstrap: BootstrapSection,
    /// Absent (or without a subscription): the embedded simulator.
    pub azure: Option<AzureSection>,
    #[serde(default)]
    pub pools: Vec<PoolSpec>,
    /// Off-hours schedules (same shape as `POST /v1/schedules`), created or replaced at
    /// every start; schedules created through the API are left alone.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Settings of the embedded simulator (same keys as `renderburst sim --config`), used
    /// only when no subscription is configured: latencies, quotas, capacity, faults.
    pub simulator: Option<serde_json::Value>,
    /// Secrets nodes may receive (`[secrets.NAME]`, or `RENDERBURST__SECRETS__NAME__ENV`),
    /// declared by the operator only: pool specs name them, never a variable or a file.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretDecl>,
    /// Where this configuration was read from, for errors found at start.
    #[serde(skip)]
    pub source: String,
    /// The configuration file, if any: one of the daemon's own credential files.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[secrets.NAME]`: where the daemon reads a secret it gives to nodes. Exactly one of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// The daemon's environment variable.
    pub env: Option<String>,
    /// A regular file of at most 64 KiB (one trailing newline dropped).
    pub file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The daemon's URL as render nodes reach it, for their bootstrap call-backs
    /// (`POST /v1/nodes/{name}/register`, heartbeats). Default: `http://` (`https://` with
    /// TLS) + the listen address (the machine's host name when listening on all addresses)
    /// and the port.
    pub advertise_url: Option<String>,
    /// IANA time zone nodes get when their pool's `bootstrap.time_zone` is not set.
    /// Default: the daemon machine's (`TZ`, `/etc/timezone`, `/etc/localtime`), else UTC.
    pub time_zone: Option<String>,
    /// PEM certificate chain (the server's first) and private key: serve HTTPS. Both or
    /// neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address, which is refused otherwise: tokens would
    /// cross the network in clear. Only for a network the operator knows is private; logged
    /// as a warning at every start.
    #[serde(default)]
    pub insecure_http: bool,
    /// A new connection's first request head (and TLS handshake) must arrive within this,
    /// and every later request head on HTTP/1.1. At most 30.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Every request is received and answered within this, else a 408 and the connection
    /// is closed.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// A connection with no request in flight is closed after this.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Connections served at once; more wait in the accept backlog until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            advertise_url: None,
            time_zone: None,
            tls_cert_file: None,
            tls_key_file: None,
            insecure_http: false,
            header_read_timeout_seconds: default_header_read_timeout(),
            request_timeout_seconds: default_request_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_header_read_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}
fn default_idle_timeout() -> u64 {
    60
}
/// Half the usual soft limit of 1024 open files, so the store and the ARM client keep
/// theirs when the cap is reached.
fn default_max_connections() -> usize {
    512
}

impl ServerConfig {
    /// True when both TLS files are set (validation refuses one without the other).
    pub fn tls(&self) -> bool {
        self.tls_cert_file.is_some() && self.tls_key_file.is_some()
    }

    /// Refuses plain HTTP on a non-loopback `listen` unless `insecure_http` says so.
    pub fn check_exposure(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if !listen.ip().to_canonical().is_loopback() && !self.tls() && !self.insecure_http {
            bail!(
                "server.listen = {listen} is not a loopback address, and API tokens must not cross \
                 the network in clear: set server.tls_cert_file and server.tls_key_file to serve \
                 HTTPS, or server.insecure_http = true if this network is private"
            );
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.advertise_url {
            check_advertise_url(url).map_err(|e| anyhow::anyhow!("server.advertise_url: {e}"))?;
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => bail!("server.tls_key_file is required with server.tls_cert_file"),
            (None, Some(_)) => bail!("server.tls_cert_file is required with server.tls_key_file"),
            _ => {}
        }
        self.check_exposure(self.listen)?;
        if !(1..=30).contains(&self.header_read_timeout_seconds) {
            bail!(
                "server.header_read_timeout_seconds must be from 1 to 30, got {}",
                self.header_read_timeout_seconds
            );
        }
        for (key, v) in [
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
            ("max_connections", self.max_connections as u64),
        ] {
            if v == 0 {
                bail!("server.{key} must be at least 1");
            }
        }
        Ok(())
    }
}

/// Checks an `advertise_url` strictly, for it ends up in shell scripts and environment files
/// on nodes: `http(s)://host[:port]` with a DNS name (letters, digits, `.`, `-`), an IPv4
/// address or a bracketed IPv6 one, an optional port, and nothing after but one `/`. Returns
/// it without the trailing `/`.
pub fn check_advertise_url(url: &str) -> Result<String, String> {
    let trimmed = url.strip_suffix('/').unwrap_or(url);
    // One grammar for the URL, the one the bootstrap renderers rely on.
    rb_core::bootstrap::validate_advertise_url(trimmed)?;
    let rest = trimmed.split_once("://").map_or(trimmed, |(_, r)| r);
    if rest.contains('/') {
        return Err(format!(
            "{url:?} must be http(s)://host[:port] with no path, user or query"
        ));
    }
    Ok(trimmed.to_string())
}

/// The `[azure]` names that reach ARM URLs follow ARM's naming rules (rb_core::arm_names),
/// and a configured subnet belongs to the configured subscription: a VM's NIC can only join
/// a virtual network of its own subscription.
fn check_azure_names(a: &AzureSection) -> anyhow::Result<()> {
    use rb_core::arm_names;
    arm_names::resource_group(&a.resource_group)
        .map_err(|e| anyhow::anyhow!("azure.resource_group: {e}"))?;
    arm_names::location(&a.location).map_err(|e| anyhow::anyhow!("azure.location: {e}"))?;
    if let Some(acct) = &a.batch_account {
        arm_names::batch_account(acct).map_err(|e| anyhow::anyhow!("azure.batch_account: {e}"))?;
    }
    if let Some(sub) = &a.subscription_id {
        arm_names::subscription_id(sub)
            .map_err(|e| anyhow::anyhow!("azure.subscription_id: {e}"))?;
    }
    if let Some(id) = &a.subnet_id {
        let subnet =
            arm_names::SubnetId::parse(id).map_err(|e| anyhow::anyhow!("azure.subnet_id: {e}"))?;
        if let Some(sub) = &a.subscription_id
            && !subnet.subscription_id.eq_ignore_ascii_case(sub)
        {
            bail!(
                "azure.subnet_id is in subscription {} but azure.subscription_id is {sub}: \
                 render nodes can only join a subnet of the subscription they are created in",
                subnet.subscription_id
            );
        }
    }
    Ok(())
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7878))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store_url")]
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> String {
    "sqlite://renderburst.db".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSection {
    #[serde(default = "default_interval")]
    pub reconcile_interval_seconds: u64,
    /// Longest an activation reads Azure before it is cut (and the next one runs): bounds how
    /// stale `/v1/status` gets while ARM fails, whatever the ARM client's retry budget.
    #[serde(default = "default_activation_timeout")]
    pub activation_timeout_seconds: u64,
    #[serde(default = "default_concurrency")]
    pub max_concurrent_operations: usize,
    #[serde(default = "default_gc_grace")]
    pub gc_grace_seconds: u64,
    #[serde(default = "default_events_retained")]
    pub events_retained: u64,
    /// The longest a pool's creates are held after failures that retrying will not fix (a
    /// missing subnet, a refused permission): 10 s doubling up to this.
    #[serde(default = "default_error_backoff_max")]
    pub error_backoff_max_seconds: u64,
    /// When VM writes go through Compute Schedule in bulk: `auto` (a plan with more than 100
    /// writes of one kind), `off` (one ARM write per VM), `always`.
    #[serde(default)]
    pub bulk: controller::BulkMode,
}

impl Default for ControllerSection {
    fn default() -> Self {
        Self {
            reconcile_interval_seconds: default_interval(),
            activation_timeout_seconds: default_activation_timeout(),
            max_concurrent_operations: default_concurrency(),
            gc_grace_seconds: default_gc_grace(),
            events_retained: default_events_retained(),
            error_backoff_max_seconds: default_error_backoff_max(),
            bulk: controller::BulkMode::default(),
        }
    }
}

fn default_error_backoff_max() -> u64 {
    900
}

fn default_interval() -> u64 {
    15
}
/// Four default reconcile intervals: a healthy activation of a large farm takes seconds, and
/// an outage shows within a minute rather than after the client's two-minute retry budget.
fn default_activation_timeout() -> u64 {
    60
}
fn default_concurrency() -> usize {
    64
}
fn default_gc_grace() -> u64 {
    600
}
fn default_events_retained() -> u64 {
    100_000
}

/// `[bootstrap]`: how Batch nodes enroll (see docs/bootstrap.md, "Batch pools").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSection {
    /// A Batch node may enroll only this long after Batch allocated it.
    #[serde(default = "default_enroll_window")]
    pub enroll_window_seconds: u64,
    /// A Batch pool's enrollment token is replaced (through ARM) this often.
    #[serde(default = "default_enroll_rotate")]
    pub enroll_token_rotate_seconds: u64,
    /// The token a rotation replaced keeps working this long; at least the window, since a
    /// node allocated just before the rotation carries it.
    #[serde(default = "default_enroll_overlap")]
    pub enroll_token_overlap_seconds: u64,
}

impl Default for BootstrapSection {
    fn default() -> Self {
        Self {
            enroll_window_seconds: default_enroll_window(),
            enroll_token_rotate_seconds: default_enroll_rotate(),
            enroll_token_overlap_seconds: default_enroll_overlap(),
        }
    }
}

fn default_enroll_window() -> u64 {
    1800
}
fn default_enroll_rotate() -> u64 {
    24 * 3600
}
fn default_enroll_overlap() -> u64 {
    3600
}

impl BootstrapSection {
    /// The controller's form.
    pub fn enrollment(&self) -> controller::EnrollmentConfig {
        use std::time::Duration;
        controller::EnrollmentConfig {
            window: Duration::from_secs(self.enroll_window_seconds),
            rotate_every: Duration::from_secs(self.enroll_token_rotate_seconds),
            overlap: Duration::from_secs(self.enroll_token_overlap_seconds),
        }
    }
}

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Else generated once into `admin.token` (0600) beside the SQLite file.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    /// Never prints the admin token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    #[default]
    ClientSecret,
    ManagedIdentity,
    WorkloadIdentity,
    AzureCli,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    pub subscription_id: Option<String>,
    #[serde(default = "default_rg")]
    pub resource_group: String,
    #[serde(default = "default_location")]
    pub location: String,
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub credential: CredentialKind,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    #[serde(default = "default_arm")]
    pub arm_endpoint: String,
    #[serde(default = "default_authority")]
    pub authority_host: String,
    #[serde(default = "default_scope")]
    pub token_scope: String,
    pub ca_cert_file: Option<PathBuf>,
    pub subnet_id: Option<String>,
    pub batch_account: Option<String>,
    #[serde(default)]
    pub ensure_network: bool,
    #[serde(default = "default_admin_user")]
    pub admin_username: String,
    pub ssh_public_key: Option<String>,
}

impl std::fmt::Debug for AzureSection {
    /// Never prints the client secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSection")
            .field("subscription_id", &self.subscription_id)
            .field("resource_group", &self.resource_group)
            .field("location", &self.location)
            .field("tenant_id", &self.tenant_id)
            .field("credential", &self.credential)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("arm_endpoint", &self.arm_endpoint)
            .finish_non_exhaustive()
    }
}

fn default_rg() -> String {
    "render-burst".into()
}
fn default_location() -> String {
    "westeurope".into()
}
fn default_arm() -> String {
    "https://management.azure.com".into()
}
fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_scope() -> String {
    "https://management.azure.com/.default".into()
}
/// The `config` crate's `MESSAGE for key `KEY`` as `KEY: message`, in people's words
/// (`pools[0].max: must be 0 or more, got -5`); other messages as they are.
fn key_first(message: &str) -> String {
    let (text, key) = match message.rsplit_once(" for key `") {
        Some((text, rest)) => (text, rest.split('`').next().unwrap_or("")),
        None => return rb_core::serde_words::humanize(message),
    };
    format!("{key}: {}", rb_core::serde_words::humanize(text))
}

fn default_admin_user() -> String {
    "render".into()
}

mod load;
#[cfg(test)]
mod tests;
