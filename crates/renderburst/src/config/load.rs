//! Loading the configuration (file, then environment) and checking it as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Config, CredentialKind, check_azure_names, key_first};

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
