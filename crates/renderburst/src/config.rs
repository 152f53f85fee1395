//! The daemon's configuration: a TOML file (optional) under environment overrides
//! (`RENDERBURST__SECTION__KEY`), read with the `config` crate. Unknown keys and bad values
//! are errors that name the key and the file, so a typo never silently does nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
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

impl Config {
    /// Reads `file` (if given) and the environment. Errors name the file and the key.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with_env(file, None)
    }

    /// As [`Config::load`], with `env` standing for the process environment when given.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> anyhow::Result<Config> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("RENDERBURST")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(env),
        );
        let where_ = file.map_or_else(
            || "the environment (RENDERBURST__*)".to_owned(),
            |p| p.display().to_string(),
        );
        let raw = builder
            .build()
            .with_context(|| format!("cannot read the configuration from {where_}"))?;
        let mut cfg: Config = raw.try_deserialize().map_err(|e| {
            anyhow::anyhow!(
                "configuration error in {where_}: {}",
                key_first(&e.to_string())
            )
        })?;
        cfg.source = where_.clone();
        cfg.file = file.map(Path::to_path_buf);
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("configuration error in {where_}: {e}"))?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.server.validate()?;
        // Checked against the IANA database (chrono-tz, the one schedules use): a name that
        // merely looks like one (`Mars/Base`) would otherwise reach every node's cloud-init.
        if let Some(tz) = &self.server.time_zone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            bail!(
                "server.time_zone: {tz:?} is not an IANA time zone name like \"Europe/Berlin\" or \"UTC\""
            );
        }
        if self.controller.error_backoff_max_seconds == 0 {
            bail!("controller.error_backoff_max_seconds must be at least 1");
        }
        if self.controller.reconcile_interval_seconds == 0 {
            bail!("controller.reconcile_interval_seconds must be at least 1");
        }
        if self.controller.activation_timeout_seconds == 0 {
            bail!("controller.activation_timeout_seconds must be at least 1");
        }
        if self.controller.max_concurrent_operations == 0 {
            bail!("controller.max_concurrent_operations must be at least 1");
        }
        let b = &self.bootstrap;
        for (key, v) in [
            ("enroll_window_seconds", b.enroll_window_seconds),
            ("enroll_token_rotate_seconds", b.enroll_token_rotate_seconds),
            (
                "enroll_token_overlap_seconds",
                b.enroll_token_overlap_seconds,
            ),
        ] {
            if v == 0 {
                bail!("bootstrap.{key} must be at least 1");
            }
        }
        if b.enroll_token_overlap_seconds < b.enroll_window_seconds {
            bail!(
                "bootstrap.enroll_token_overlap_seconds ({}) must be at least bootstrap.enroll_window_seconds ({}): a node allocated just before a rotation enrolls with the token it replaced",
                b.enroll_token_overlap_seconds,
                b.enroll_window_seconds
            );
        }
        if let Some(a) = &self.azure
            && a.subscription_id.is_some()
        {
            if a.credential == CredentialKind::ClientSecret {
                for (key, v) in [
                    ("tenant_id", &a.tenant_id),
                    ("client_id", &a.client_id),
                    ("client_secret", &a.client_secret),
                ] {
                    if v.as_deref().is_none_or(str::is_empty) {
                        bail!("azure.{key} is required with credential = \"client_secret\"");
                    }
                }
            }
            if a.subnet_id.is_none() && !a.ensure_network {
                bail!("azure.subnet_id is required unless azure.ensure_network = true");
            }
        }
        if let Some(a) = &self.azure {
            check_azure_names(a)?;
        }
        let secrets = self.declared_secrets()?;
        let declared = secrets.names();
        for (i, p) in self.pools.iter().enumerate() {
            p.validate(&|s| arm_model::sizes::lookup(s).is_some())
                .map_err(|e| {
                    anyhow::anyhow!("pools[{i}] ({}).{}: {}", p.name, e.field, e.message)
                })?;
            for (field, r) in p.bootstrap.iter().flat_map(|b| b.secret_refs()) {
                if !declared.contains(&r.secret) {
                    bail!(
                        "pools[{i}] ({}).{field}.secret: secret {:?} is not declared: add [secrets.{}] with env = \"VAR\" or file = \"/path\"",
                        p.name,
                        r.secret,
                        r.secret
                    );
                }
            }
        }
        let mut names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("pools: the pool name {} appears twice", w[0]);
        }
        for (i, s) in self.schedules.iter().enumerate() {
            s.validate().map_err(|e| {
                anyhow::anyhow!("schedules[{i}] ({}).{}: {}", s.name, e.field, e.message)
            })?;
        }
        let mut names: Vec<&str> = self.schedules.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("schedules: the schedule name {} appears twice", w[0]);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // Tag selectors reach the `[[pools]]` that carry their tags (pools only in the
        // database are compared when the schedules are stored, see `apply_config_schedules`).
        let pools: rb_core::schedule_clash::PoolTags = self
            .pools
            .iter()
            .map(|p| (p.name.clone(), p.tags.clone()))
            .collect();
        for (i, a) in self.schedules.iter().enumerate() {
            for (j, b) in self.schedules.iter().enumerate().skip(i + 1) {
                if let Some(clash) = rb_core::schedule_clash::clash(b, a, &pools, now) {
                    bail!(
                        "schedules[{j}] ({}).set.{}: {}",
                        b.name,
                        clash.bound,
                        clash.message(b, a)
                    );
                }
            }
        }
        Ok(())
    }

    /// The declared secrets (`[secrets.NAME]`), checked: names, one source each, and none
    /// of the daemon's own credentials (its configuration file, admin token, database, the
    /// workload identity's token file, its own environment variables). Errors name the key.
    pub fn declared_secrets(&self) -> anyhow::Result<controller::DeclaredSecrets> {
        use rb_core::bootstrap::SecretSource;
        let mut declared = BTreeMap::new();
        for (name, d) in &self.secrets {
            let source = match (&d.env, &d.file) {
                (Some(var), None) => SecretSource::Env(var.clone()),
                (None, Some(path)) => SecretSource::File(path.clone()),
                (Some(_), Some(_)) => bail!("secrets.{name}: give env or file, not both"),
                (None, None) => {
                    bail!("secrets.{name}: give env = \"VARIABLE\" or file = \"/absolute/path\"")
                }
            };
            declared.insert(name.clone(), source);
        }
        let mut own = Vec::new();
        own.extend(self.file.clone());
        // The API's TLS private key is the daemon's too.
        own.extend(self.server.tls_key_file.clone());
        if let Ok(db) = self.store_path() {
            // As serve::admin_token places it.
            let dir = db
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            own.push(dir.join("admin.token"));
            for suffix in ["", "-wal", "-shm", ".lock"] {
                let mut name = db.clone().into_os_string();
                name.push(suffix);
                own.push(PathBuf::from(name));
            }
        }
        for var in [
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_CLIENT_CERTIFICATE_PATH",
        ] {
            if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
                own.push(PathBuf::from(path));
            }
        }
        controller::DeclaredSecrets::new(declared, own).map_err(|e| anyhow::anyhow!(e))
    }

    /// The SQLite file path from `store.url`.
    pub fn store_path(&self) -> anyhow::Result<PathBuf> {
        let url = &self.store.url;
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                anyhow::anyhow!("store.url must look like sqlite://renderburst.db, got {url}")
            })?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            bail!(
                "store.url must name a file (the daemon's state must survive restarts), got {url}"
            );
        }
        Ok(PathBuf::from(path))
    }

    /// True when no subscription is configured: run against the embedded simulator.
    pub fn embedded(&self) -> bool {
        self.azure
            .as_ref()
            .is_none_or(|a| a.subscription_id.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join(format!("cfg-{}.toml", fastrand::u64(..)));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_and_errors_name_key_and_file() {
        let dir = std::env::temp_dir();
        let cfg = Config::load(Some(&write(
            &dir,
            "[server]\nlisten = \"127.0.0.1:9000\"\n",
        )))
        .unwrap();
        assert_eq!(cfg.server.listen.port(), 9000);
        assert_eq!(cfg.controller.reconcile_interval_seconds, 15);
        assert!(cfg.embedded());
        let path = write(&dir, "[controller]\nreconcile_interval = 5\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("reconcile_interval") && err.contains(&path.display().to_string()),
            "{err}"
        );
        let err = Config::load(Some(&write(
            &dir,
            "[azure]\nsubscription_id = \"s\"\ntenant_id = \"t\"\nclient_id = \"c\"\n",
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains("azure.client_secret"), "{err}");
        let err = Config::load(Some(&write(&dir, "[[pools]]\nname = \"Bad Name\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = 3\n"))).unwrap_err().to_string();
        assert!(err.contains("pools[0]") && err.contains("name"), "{err}");
        assert!(Config::load(Some(Path::new("/nonexistent/renderburst.toml"))).is_err());
        let path = write(&dir, "[server]\nadvertise_url = \"10.0.0.4:7878\"\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("server.advertise_url") && err.contains(&path.display().to_string()),
            "{err}"
        );
        let err = Config::load(Some(&write(
            &dir,
            "[server]\ntime_zone = \"Berlin time\"\n",
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.time_zone"), "{err}");
        let path = write(&dir, "[controller]\nreconcile_interval_seconds = -5\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("reconcile_interval_seconds")
                && err.contains("must be 0 or more, got -5")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
        let path = write(
            &dir,
            "[[pools]]\nname = \"maya\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = -5\n",
        );
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("max: must be 0 or more, got -5")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
        // Shaped like a zone, but not in the IANA database: refused naming key and file.
        let path = write(&dir, "[server]\ntime_zone = \"Mars/Base\"\n");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("server.time_zone")
                && err.contains("Mars/Base")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
        let cfg = Config::load(Some(&write(
            &dir,
            "[server]\nadvertise_url = \"https://render-burst.studio.local:7878/\"\ntime_zone = \"Europe/Berlin\"\n",
        )))
        .unwrap();
        assert_eq!(
            check_advertise_url(cfg.server.advertise_url.as_deref().unwrap()).unwrap(),
            "https://render-burst.studio.local:7878"
        );
        assert!(check_advertise_url("http://h:1/v1").is_err());
        assert!(check_advertise_url("ftp://h").is_err());
    }

    /// Issue 12 item 8: names that reach ARM URLs follow ARM's rules, and a configured subnet
    /// is in the configured subscription.
    #[test]
    fn azure_names_that_reach_urls_are_checked() {
        let dir = std::env::temp_dir();
        let base = "[azure]\nsubscription_id = \"11111111-2222-3333-4444-555555555555\"\n\
                    tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\nensure_network = true\n";
        assert!(Config::load(Some(&write(&dir, base))).is_ok());
        for (extra, key) in [
            ("resource_group = \"..\"\n", "azure.resource_group"),
            ("resource_group = \"a/b\"\n", "azure.resource_group"),
            ("batch_account = \"../x\"\n", "azure.batch_account"),
            ("location = \"west europe\"\n", "azure.location"),
            (
                "subnet_id = \"/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/../providers/Microsoft.Network/virtualNetworks/vn/subnets/s\"\n",
                "azure.subnet_id",
            ),
            (
                "subnet_id = \"/subscriptions/99999999-2222-3333-4444-555555555555/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vn/subnets/s\"\n",
                "azure.subscription_id",
            ),
        ] {
            let path = write(&dir, &format!("{base}{extra}"));
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(&path.display().to_string()),
                "{extra}: {err}"
            );
        }
        let err = Config::load(Some(&write(
            &dir,
            &base.replace("11111111-2222-3333-4444-555555555555", "../../x"),
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains("azure.subscription_id"), "{err}");
    }

    #[test]
    fn non_loopback_listen_needs_tls_or_an_explicit_insecure_http() {
        let dir = std::env::temp_dir();
        for listen in ["0.0.0.0:7878", "10.0.0.4:7878", "[::]:7878"] {
            let path = write(&dir, &format!("[server]\nlisten = \"{listen}\"\n"));
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains("server.tls_cert_file")
                    && err.contains("server.tls_key_file")
                    && err.contains("server.insecure_http")
                    && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
        let cfg = Config::load(Some(&write(
            &dir,
            "[server]\nlisten = \"0.0.0.0:7878\"\ninsecure_http = true\n",
        )))
        .unwrap();
        assert!(cfg.server.insecure_http && !cfg.server.tls());
        let cfg = Config::load(Some(&write(
            &dir,
            "[server]\nlisten = \"0.0.0.0:7878\"\ntls_cert_file = \"/etc/renderburst/tls/cert.pem\"\ntls_key_file = \"/etc/renderburst/tls/key.pem\"\n",
        )))
        .unwrap();
        assert!(cfg.server.tls());
        let err = Config::load(Some(&write(
            &dir,
            "[server]\ntls_cert_file = \"/etc/renderburst/tls/cert.pem\"\n",
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.tls_key_file"), "{err}");
        // Loopback needs neither.
        Config::load(Some(&write(&dir, "[server]\nlisten = \"[::1]:7878\"\n"))).unwrap();
    }

    #[test]
    fn connection_limits_have_safe_defaults_and_bounds() {
        let s = ServerConfig::default();
        assert!(s.header_read_timeout_seconds <= 30);
        assert!(s.max_connections >= 256);
        assert!(s.request_timeout_seconds >= 1 && s.idle_timeout_seconds >= 1);
        let dir = std::env::temp_dir();
        for (text, key) in [
            (
                "header_read_timeout_seconds = 31",
                "server.header_read_timeout_seconds",
            ),
            (
                "header_read_timeout_seconds = 0",
                "server.header_read_timeout_seconds",
            ),
            (
                "request_timeout_seconds = 0",
                "server.request_timeout_seconds",
            ),
            ("idle_timeout_seconds = 0", "server.idle_timeout_seconds"),
            ("max_connections = 0", "server.max_connections"),
        ] {
            let path = write(&dir, &format!("[server]\n{text}\n"));
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(&path.display().to_string()),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn advertise_url_is_strict_because_nodes_source_it() {
        for ok in [
            "http://10.0.0.4:7878",
            "https://render-burst.studio.local",
            "https://render-burst.studio.local:443/",
            "http://[fd00::4]:7878",
            "http://[::1]",
        ] {
            check_advertise_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://$(id):7878",
            "http://10.0.0.4:7878$(id)",
            "http://`id`",
            "http://h;reboot",
            "http://h'x",
            "http://h\"x",
            "http://h x",
            "http://h\nRB_X=1",
            "http://h:7878/v1",
            "http://user@h",
            "http://h?x=1",
            "http://h#x",
            "http://h:",
            "http://h:0",
            "http://h:99999",
            "http://-h",
            "http://h..x",
            "http://[::1",
            "http://[nothex]:1",
            "http://",
            "ftp://h",
        ] {
            assert!(check_advertise_url(bad).is_err(), "{bad:?} was accepted");
        }
        let path = write(
            &std::env::temp_dir(),
            "[server]\nadvertise_url = \"http://$(id):7878\"\n",
        );
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("server.advertise_url") && err.contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_admin_token_or_the_client_secret() {
        let cfg = Config::load(Some(&write(
            &std::env::temp_dir(),
            "[auth]\nadmin_token = \"debug-shows-no-admin-token\"\n[azure]\n\
             subscription_id = \"11111111-2222-3333-4444-555555555555\"\ntenant_id = \"t\"\n\
             client_id = \"c\"\nclient_secret = \"debug-shows-no-client-secret\"\n\
             ensure_network = true\n",
        )))
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("debug-shows-no-admin-token"), "{shown}");
        assert!(!shown.contains("debug-shows-no-client-secret"), "{shown}");
    }

    #[test]
    fn schedules_parse_and_errors_name_key_and_file() {
        let dir = std::env::temp_dir();
        let ok = "[[schedules]]\nname = \"gpu-night\"\npool = \"maya\"\ncron = \"0 20 * * MON-FRI\"\ntimezone = \"Europe/London\"\nset = { max = 0 }\n\n[[schedules]]\nname = \"warm\"\npool_tag = { show = \"ep101\" }\ncron = \"0 30 7 * * *\"\ntimezone = \"UTC\"\nset = { target = 10, max = 20 }\n";
        let path = write(&dir, ok);
        let cfg = Config::load(Some(&path)).unwrap();
        assert_eq!(cfg.schedules.len(), 2);
        assert_eq!(cfg.schedules[0].set.max, Some(0));
        assert_eq!(cfg.schedules[1].pool_tag.as_ref().unwrap()["show"], "ep101");
        assert_eq!(cfg.source, path.display().to_string());
        for (text, key) in [
            (
                ok.replace("0 20 * * MON-FRI", "0 25 * * *"),
                "schedules[0] (gpu-night).cron",
            ),
            (
                ok.replace("Europe/London", "Europe/Londres"),
                "schedules[0] (gpu-night).timezone",
            ),
            (
                ok.replace("{ max = 0 }", "{ }"),
                "schedules[0] (gpu-night).set",
            ),
            (
                ok.replace("name = \"warm\"", "name = \"gpu-night\""),
                "gpu-night appears twice",
            ),
            (
                ok.replace("set = { max = 0 }", "set = { max = 0 }\nwhen = 1"),
                "when",
            ),
        ] {
            let path = write(&dir, &text);
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(&path.display().to_string()),
                "{key}: {err}"
            );
        }
    }

    /// Issue 13 item 8: a `pool_tag` schedule and a `pool` schedule of the file that set one
    /// bound differently at the same minute on a `[[pools]]` pool carrying the tag are an
    /// error naming the key, both schedules and the pool; on an untagged pool they are not.
    #[test]
    fn a_tag_schedule_clashing_with_a_pool_schedule_is_an_error() {
        let dir = std::env::temp_dir();
        let text = "[[pools]]\nname = \"maya\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = 3\ntags = { show = \"ep101\" }\n\n\
                    [[schedules]]\nname = \"night\"\npool = \"maya\"\ncron = \"0 20 * * *\"\ntimezone = \"UTC\"\nset = { max = 0 }\n\n\
                    [[schedules]]\nname = \"show-night\"\npool_tag = { show = \"ep101\" }\ncron = \"0 20 * * *\"\ntimezone = \"UTC\"\nset = { max = 5 }\n";
        let path = write(&dir, text);
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("schedules[1] (show-night).set.max")
                && err.contains("\"show-night\" and \"night\"")
                && err.contains("pool maya (tagged show=ep101)")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
        let untagged = text.replace("tags = { show = \"ep101\" }", "tags = { show = \"ep102\" }");
        Config::load(Some(&write(&dir, &untagged))).unwrap();
    }

    /// Secrets are declared in the file or the environment only; an unknown key, a name of
    /// the wrong shape, the daemon's own credentials and a pool naming an undeclared secret
    /// are errors naming the key (and the file).
    #[test]
    fn secrets_are_declared_by_name_in_the_file_or_the_environment() {
        let dir = std::env::temp_dir();
        let pool = "[[pools]]\nname = \"maya\"\nmode = \"vm\"\nvm_sizes = [\"Standard_D4s_v5\"]\nimage = \"a:b:c:d\"\nmax = 3\nbootstrap = { domain = { name = \"studio.local\", username = \"j\", password = { secret = \"ad_join\" } } }\n";
        let secrets = "[secrets.ad_join]\nenv = \"AD_JOIN_PASSWORD\"\n[secrets.smb]\nfile = \"/etc/renderburst/smb.password\"\n";
        let cfg = Config::load(Some(&write(&dir, &format!("{secrets}{pool}")))).unwrap();
        let s = cfg.declared_secrets().unwrap();
        assert_eq!(
            s.names().into_iter().collect::<Vec<_>>(),
            ["ad_join", "smb"]
        );
        // From the environment alone, like every key.
        let env: std::collections::HashMap<String, String> = [(
            "RENDERBURST__SECRETS__AD_JOIN__ENV".to_string(),
            "AD_JOIN_PASSWORD".to_string(),
        )]
        .into();
        let path = write(&dir, pool);
        let cfg = Config::load_with_env(Some(&path), Some(env.clone())).unwrap();
        assert_eq!(
            cfg.secrets["ad_join"].env.as_deref(),
            Some("AD_JOIN_PASSWORD")
        );
        let cfg = Config::load_with_env(None, Some(env)).unwrap();
        assert!(cfg.declared_secrets().unwrap().names().contains("ad_join"));
        // Not declared: the pool's key is named.
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("pools[0] (maya).bootstrap.domain.password.secret")
                && err.contains("[secrets.ad_join]")
                && err.contains(&path.display().to_string()),
            "{err}"
        );
        // The old form in a pool: how to declare it.
        let path = write(&dir, &pool.replace("\"ad_join\"", "\"env:AD_PASS\""));
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("no longer accepted")
                && err.contains("[secrets.ad_pass] env = \"AD_PASS\""),
            "{err}"
        );
        for (text, key) in [
            ("[secrets.x]\nenvv = \"A\"\n", "envv"),
            ("[secrets.x]\nenv = \"A\"\nfile = \"/x\"\n", "secrets.x"),
            ("[secrets.x]\n", "secrets.x"),
            ("[secrets.Bad]\nenv = \"A\"\n", "secrets.Bad"),
            (
                "[secrets.x]\nenv = \"RENDERBURST__AZURE__CLIENT_SECRET\"\n",
                "secrets.x.env",
            ),
            (
                "[secrets.x]\nenv = \"AZURE_FEDERATED_TOKEN_FILE\"\n",
                "secrets.x.env",
            ),
            (
                "[secrets.x]\nfile = \"/proc/self/environ\"\n",
                "secrets.x.file",
            ),
            (
                "[store]\nurl = \"sqlite:///var/lib/rb/state.db\"\n[secrets.x]\nfile = \"/var/lib/rb/admin.token\"\n",
                "secrets.x.file",
            ),
        ] {
            let path = write(&dir, text);
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(&path.display().to_string()),
                "{text}: {err}"
            );
        }
        // The configuration file itself (it may hold the client secret).
        let path = write(&dir, "");
        std::fs::write(
            &path,
            format!("[secrets.x]\nfile = \"{}\"\n", path.display()),
        )
        .unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("secrets.x.file") && err.contains("own"),
            "{err}"
        );
    }

    #[test]
    fn store_urls() {
        let mut cfg = Config::default();
        assert_eq!(cfg.store_path().unwrap(), PathBuf::from("renderburst.db"));
        cfg.store.url = "sqlite:///var/lib/renderburst/state.db?mode=rwc".into();
        assert_eq!(
            cfg.store_path().unwrap(),
            PathBuf::from("/var/lib/renderburst/state.db")
        );
        cfg.store.url = "postgres://x".into();
        assert!(cfg.store_path().is_err());
        cfg.store.url = "sqlite::memory:".into();
        assert!(cfg.store_path().is_err());
    }

    #[test]
    fn shipped_example_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let cfg = Config::load(Some(&root.join("default.toml"))).unwrap();
        assert!(cfg.embedded());
        assert_eq!(cfg.server.listen, default_listen());
        // The file says the defaults, so it cannot drift from them.
        let d = ServerConfig::default();
        assert_eq!(
            (
                cfg.server.insecure_http,
                cfg.server.header_read_timeout_seconds,
                cfg.server.request_timeout_seconds,
                cfg.server.idle_timeout_seconds,
                cfg.server.max_connections,
            ),
            (
                d.insecure_http,
                d.header_read_timeout_seconds,
                d.request_timeout_seconds,
                d.idle_timeout_seconds,
                d.max_connections,
            )
        );
        // The Azure example keeps the secret out of the file on purpose.
        // The commented [[schedules]] example, uncommented, is a valid configuration.
        let text = std::fs::read_to_string(root.join("default.toml")).unwrap();
        let example: String = text[text.find("# [[schedules]]").unwrap()..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l).to_owned() + "\n")
            .collect();
        let cfg = Config::load(Some(&write(&std::env::temp_dir(), &example))).unwrap();
        assert_eq!(cfg.schedules.len(), 2, "{example}");
        let err = Config::load(Some(&root.join("azure.example.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("azure.client_secret"), "{err}");
        let cfg = Config::load(Some(&root.join("batch.example.toml"))).unwrap();
        assert_eq!(cfg.pools.len(), 1);
        assert_eq!(cfg.pools[0].mode, rb_core::PoolMode::Batch);
        assert_eq!(cfg.pools[0].licenses.len(), 2);
    }
}
