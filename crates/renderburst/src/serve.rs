//! `renderburst serve`: wires the store, the ARM client (real Azure, or the embedded
//! simulator), the controller and the HTTP API together, and runs until SIGINT/SIGTERM.
//!
//! About 600 lines with its tests: the start-up sequence reads best in one place.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use azure::{ArmClient, AzureConfig, CredentialConfig};
use azure_core::credentials::Secret;
use controller::{Controller, ControllerConfig, Placement};
use store::Store;

use crate::config::{Config, CredentialKind};

/// The Batch account the embedded default creates in its simulator, for `mode: batch` pools.
pub const EMBEDDED_BATCH_ACCOUNT: &str = "renderburst";

/// Everything a running daemon holds; tests build one on port 0.
pub struct Daemon {
    pub api_addr: std::net::SocketAddr,
    pub admin_token: String,
    pub controller: Arc<Controller>,
    pub simulator: Option<azure_sim::Simulator>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Asks everything to stop and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(sim) = self.simulator.take() {
            sim.shutdown().await;
        }
    }
}

/// Where the embedded simulator keeps its world: beside the database, named after it
/// (`renderburst.azure-sim.json` for `renderburst.db`), because the database's VMs, Batch
/// account endpoint and operation URLs are only true of that world.
pub fn embedded_state_file(db: &std::path::Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "renderburst".into());
    db.with_file_name(format!("{stem}.azure-sim.json"))
}

/// The embedded simulator's settings: realistic enough to watch, fast enough to enjoy.
fn embedded_sim_config(
    overrides: Option<&serde_json::Value>,
) -> anyhow::Result<azure_sim::SimConfig> {
    let base = azure_sim::SimConfig::default()
        .merged(&serde_json::json!({"latency_ms": {"vm_create": 3000, "vm_start": 1500, "vm_deallocate": 1500,
                                                    "vm_delete": 1500, "nic": 200, "disk": 500}}))?;
    match overrides {
        Some(o) => base
            .merged(o)
            .map_err(|e| anyhow::anyhow!("[simulator]: {e}")),
        None => Ok(base),
    }
}

/// Starts the daemon; `listen` overrides `server.listen` (tests pass port 0).
pub async fn start(cfg: Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<Daemon> {
    // Exposure first: nothing starts on a configuration that would serve tokens in clear.
    let listen = listen.unwrap_or(cfg.server.listen);
    // Errors that come from a configured key also name the file it is in.
    let in_config = |e: anyhow::Error| match cfg.source.as_str() {
        "" => e,
        source => e.context(format!("configuration error in {source}")),
    };
    cfg.server.check_exposure(listen).map_err(in_config)?;
    let tls = match (&cfg.server.tls_cert_file, &cfg.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key).map_err(in_config)?),
        _ => None,
    };
    if tls.is_none() && cfg.server.insecure_http && !listen.ip().to_canonical().is_loopback() {
        tracing::warn!(%listen, "server.insecure_http = true: serving plain HTTP beyond loopback; API tokens cross the network in clear");
    }
    // Bound before anything is created (database, admin token, simulator), so a port in use
    // stops the daemon with nothing left behind; and before the controller starts, since the
    // bootstrap call-back URL needs the real port.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another daemon running?)"))?;
    let api_addr = listener.local_addr()?;
    let db = cfg.store_path()?;
    let store = Arc::new(
        Store::open(&db)
            .await
            .with_context(|| format!("cannot open the store {}", db.display()))?,
    );
    let (token, token_file) = crate::admin_token::load_or_create(&cfg, &db)?;
    if let Some(p) = &token_file {
        tracing::info!(path = %p.display(), "admin token file (client commands on this machine read it)");
    }

    let mut simulator = None;
    let (azure_cfg, rg, location, subnet_id, ensure_network, admin_user, ssh_key, batch_account) =
        if cfg.embedded() {
            let state_file = embedded_state_file(&db);
            let sim = azure_sim::Simulator::start_persistent(
                &state_file,
                "127.0.0.1:0".parse()?,
                embedded_sim_config(cfg.simulator.as_ref())?,
            )
            .await
            .context("the embedded Azure simulator")?;
            tracing::info!(
                url = sim.base_url(),
                state_file = %state_file.display(),
                "no Azure subscription configured: using the built-in Azure simulator (nothing is created in Azure; configure [azure] to use a real subscription)"
            );
            let id = sim.identity();
            let mut a = AzureConfig::new(
                id.subscription_id.clone(),
                CredentialConfig::ClientSecret {
                    tenant_id: id.tenant_id.clone(),
                    client_id: id.client_id.clone(),
                    client_secret: Secret::new(id.client_secret.clone()),
                },
            );
            a.arm_endpoint = sim.base_url().to_owned();
            a.authority_host = sim.base_url().to_owned();
            a.extra_ca_pem = Some(sim.ca_pem().as_bytes().to_vec());
            a.poll.max_interval = Some(Duration::from_millis(500));
            simulator = Some(sim);
            (
                a,
                "renderburst".to_owned(),
                "westeurope".to_owned(),
                None,
                true,
                "render".to_owned(),
                None,
                Some(EMBEDDED_BATCH_ACCOUNT.to_owned()),
            )
        } else {
            let az = cfg.azure.clone().context("the [azure] section")?;
            let sub = az.subscription_id.clone().unwrap_or_default();
            let credential = match az.credential {
                CredentialKind::ClientSecret => CredentialConfig::ClientSecret {
                    tenant_id: az.tenant_id.clone().unwrap_or_default(),
                    client_id: az.client_id.clone().unwrap_or_default(),
                    client_secret: Secret::new(az.client_secret.clone().unwrap_or_default()),
                },
                CredentialKind::ManagedIdentity => CredentialConfig::ManagedIdentity {
                    client_id: az.client_id.clone(),
                },
                CredentialKind::WorkloadIdentity => CredentialConfig::WorkloadIdentity {
                    tenant_id: az.tenant_id.clone(),
                    client_id: az.client_id.clone(),
                    token_file: None,
                },
                CredentialKind::AzureCli => CredentialConfig::AzureCli {
                    tenant_id: az.tenant_id.clone(),
                },
            };
            let mut a = AzureConfig::new(sub, credential);
            a.arm_endpoint = az.arm_endpoint.clone();
            a.authority_host = az.authority_host.clone();
            a.token_scope = az.token_scope.clone();
            if let Some(ca) = &az.ca_cert_file {
                a.extra_ca_pem = Some(
                    std::fs::read(ca)
                        .with_context(|| {
                            format!("azure.ca_cert_file: cannot read {}", ca.display())
                        })
                        .map_err(in_config)?,
                );
            }
            (
                a,
                az.resource_group,
                az.location,
                az.subnet_id,
                az.ensure_network,
                az.admin_username,
                az.ssh_public_key,
                az.batch_account,
            )
        };
    let arm = ArmClient::new(azure_cfg).map_err(|e| anyhow::anyhow!("azure: {e}"))?;

    let owner = store.owner_id().await?;
    let (subnet_id, nsg_id) = if ensure_network {
        // Config validation parsed it already; parse again for the parts.
        let configured = subnet_id
            .as_deref()
            .map(rb_core::arm_names::SubnetId::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("azure.subnet_id: {e}"))?;
        let (s, n) =
            crate::network::ensure(&arm, &rg, &location, &owner, configured.as_ref()).await?;
        (s, Some(n))
    } else {
        (subnet_id.context("azure.subnet_id")?, None)
    };

    if ensure_network && let Some(account) = &batch_account {
        crate::network::ensure_batch_account(&arm, &rg, &location, account, &owner).await?;
    }

    // Declared by the operator only; stored specs of the old form are rewritten or refused.
    let secrets = Arc::new(cfg.declared_secrets().map_err(in_config)?);
    let reset_pools =
        crate::network::apply_config_pools(&store, &cfg.pools, &secrets.names(), &cfg.source)
            .await?;
    controller::bootstrap::migrate_legacy_secret_refs(&store, &secrets).await;
    crate::network::apply_config_schedules(&store, &cfg.schedules, &cfg.source).await?;

    // For `GET /v1/status`: what an orphan audit filters Azure by (README "Troubleshoot").
    let identity = serde_json::json!({"owner_id": owner, "resource_group": rg});
    // And, on the embedded default, where its simulated Azure is and is kept.
    let simulator_status = simulator.as_ref().map(|s: &azure_sim::Simulator| {
        serde_json::json!({
            "url": s.base_url(),
            "state_file": s.state_file().map(|p| p.display().to_string()),
        })
    });
    let bootstrap = bootstrap_defaults(&cfg, api_addr, tls.is_some()).await?;
    if !cfg.embedded()
        && bootstrap
            .daemon_host
            .as_ref()
            .and_then(|h| h.ip.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback())
    {
        tracing::warn!(url = %bootstrap.api_url, "server.advertise_url is a loopback address: bootstrapped nodes in Azure cannot reach it and will be replaced as zombies; set server.advertise_url");
    }
    tracing::info!(url = %bootstrap.api_url, time_zone = %bootstrap.default_time_zone, "nodes call back to this URL");

    let controller = Controller::new(
        store.clone(),
        arm.clone(),
        ControllerConfig {
            resource_group: rg,
            placement: Placement {
                location,
                subnet_id,
                nsg_id,
                owner_id: owner,
                admin_username: admin_user,
                ssh_public_key: ssh_key,
            },
            reconcile_interval: Duration::from_secs(cfg.controller.reconcile_interval_seconds),
            activation_timeout: Duration::from_secs(cfg.controller.activation_timeout_seconds),
            max_concurrent_operations: cfg.controller.max_concurrent_operations,
            gc_grace: Duration::from_secs(cfg.controller.gc_grace_seconds),
            events_retained: cfg.controller.events_retained,
            batch_account: batch_account.clone(),
            bootstrap: bootstrap.clone(),
            enrollment: cfg.bootstrap.enrollment(),
            secrets: secrets.clone(),
            error_backoff_max: Duration::from_secs(cfg.controller.error_backoff_max_seconds),
            bulk: cfg.controller.bulk,
        },
    );
    // Catch-up before the first activation: the firings missed while the daemon was down
    // (and the current ones of pools the file just reset), so the reconciler never acts on
    // bounds a schedule has already changed.
    let scheduler = controller::Scheduler::new(store.clone(), controller.waker());
    let reset_pools: std::collections::HashSet<String> = reset_pools.into_iter().collect();
    let caught_up = scheduler
        .tick(controller::schedules::unix_now(), &reset_pools)
        .await;
    for e in &caught_up.errors {
        tracing::warn!(error = %e, "schedule catch-up at start");
    }
    if !caught_up.applied.is_empty() {
        tracing::info!(firings = ?caught_up.applied, "applied schedule firings missed while stopped");
    }
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(controller.clone().run(shutdown_rx.clone())));
    tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));

    let status_controller = controller.clone();
    let metrics_controller = controller.clone();
    let state = api::ApiState {
        store: store.clone(),
        wake: controller.waker(),
        admin_token_sha256: api::sha256_hex(&token),
        ready: controller.ready(),
        status: Arc::new(move || {
            let mut status = serde_json::json!({
                "owner_id": identity["owner_id"],
                "resource_group": identity["resource_group"],
                "reconciler": status_controller.last_status(),
                "arm_governor": status_controller.arm().governor(),
                "arm_requests": {
                    "attempts": status_controller.arm().counters().attempts.load(std::sync::atomic::Ordering::Relaxed),
                    "retries": status_controller.arm().counters().retries.load(std::sync::atomic::Ordering::Relaxed),
                    "throttled_429": status_controller.arm().counters().throttled_429.load(std::sync::atomic::Ordering::Relaxed),
                },
            });
            if let Some(sim) = &simulator_status {
                status["simulator"] = sim.clone();
            }
            status
        }),
        metrics: Arc::new(move || render_metrics(&metrics_controller)),
        bootstrap: Arc::new(bootstrap),
        secret_names: Arc::new(secrets.names()),
        resolve_secret: Arc::new(move |r| secrets.resolve(r)),
    };
    let serving = api::ServeOptions {
        tls,
        header_read_timeout: Duration::from_secs(cfg.server.header_read_timeout_seconds),
        request_timeout: Duration::from_secs(cfg.server.request_timeout_seconds),
        idle_timeout: Duration::from_secs(cfg.server.idle_timeout_seconds),
        max_connections: cfg.server.max_connections,
        advertised_host: cfg
            .server
            .advertise_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .map(|(_, authority)| authority.trim_end_matches('/').to_owned()),
    };
    let mut rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = api::serve_with(listener, state, serving, stop).await {
            tracing::error!(error = %e, "the API server stopped");
        }
    }));
    tracing::info!(%api_addr, "renderburst is serving its API");
    Ok(Daemon {
        api_addr,
        admin_token: token,
        controller,
        simulator,
        shutdown,
        tasks,
    })
}

/// The daemon's side of node bootstrap: the URL nodes call back (`server.advertise_url`, or
/// `http://` (`https://` with TLS) + the bound address), its time zone, and its own hosts
/// entry (the advertised host's address, resolved once here when it is a name).
async fn bootstrap_defaults(
    cfg: &Config,
    bound: std::net::SocketAddr,
    tls: bool,
) -> anyhow::Result<rb_core::bootstrap::BootstrapDefaults> {
    use rb_core::bootstrap::HostEntry;
    let scheme = if tls { "https" } else { "http" };
    let api_url = match &cfg.server.advertise_url {
        Some(url) => crate::config::check_advertise_url(url)
            .map_err(|e| anyhow::anyhow!("server.advertise_url: {e}"))?,
        None if bound.ip().is_unspecified() => {
            format!("{scheme}://{}:{}", host_name(), bound.port())
        }
        None => format!("{scheme}://{bound}"),
    };
    let authority = api_url
        .split_once("://")
        .map_or(api_url.as_str(), |(_, rest)| rest);
    // `[v6]:port`, `host:port` or `host`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, rest) = v6.split_once(']').unwrap_or((v6, ""));
            (
                h.to_string(),
                rest.strip_prefix(':').and_then(|p| p.parse().ok()),
            )
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().ok()),
            None => (authority.to_string(), None),
        },
    };
    let daemon_host = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(HostEntry {
            ip: ip.to_string(),
            names: vec!["renderburst".into()],
        }),
        Err(_) => match tokio::net::lookup_host((host.as_str(), port.unwrap_or(80))).await {
            Ok(mut addrs) => addrs
                .find(std::net::SocketAddr::is_ipv4)
                .map(|a| HostEntry {
                    ip: a.ip().to_string(),
                    names: if host.eq_ignore_ascii_case("renderburst") {
                        vec![host.clone()]
                    } else {
                        vec![host.clone(), "renderburst".into()]
                    },
                }),
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "cannot resolve the advertised host: nodes get no hosts entry for the daemon");
                None
            }
        },
    };
    Ok(rb_core::bootstrap::BootstrapDefaults {
        api_url,
        default_time_zone: cfg.server.time_zone.clone().unwrap_or_else(local_time_zone),
        daemon_host,
    })
}

/// This machine's host name (for the default advertised URL when listening on all
/// addresses).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// This machine's IANA time zone: `TZ`, `/etc/timezone`, the `/etc/localtime` link, else UTC.
fn local_time_zone() -> String {
    let shaped = |tz: &str| {
        let tz = tz.trim().trim_start_matches(':');
        // A zone chrono-tz does not know would reach every node's cloud-init: UTC instead.
        tz.parse::<chrono_tz::Tz>().is_ok().then(|| tz.to_string())
    };
    if let Some(tz) = std::env::var("TZ").ok().as_deref().and_then(shaped) {
        return tz;
    }
    if let Some(tz) = std::fs::read_to_string("/etc/timezone")
        .ok()
        .as_deref()
        .and_then(shaped)
    {
        return tz;
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime")
        && let Some((_, zone)) = target.to_string_lossy().split_once("zoneinfo/")
        && let Some(zone) = shaped(zone)
    {
        return zone;
    }
    "UTC".into()
}

/// The controller's and the ARM client's metrics, in Prometheus text, for `GET /metrics`.
/// Labels: ARM class (`reads`, `writes`, `deletes`, `batch`) and status code, governor bucket.
pub fn render_metrics(controller: &Controller) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let arm = controller.arm();
    let counters = arm.counters();
    let mut out = api::metrics::Exposition::new();
    out.family(
        "renderburst_arm_requests_total",
        "counter",
        "ARM and Batch responses by request class and HTTP status code.",
    );
    for (class, code, n) in counters.by_status() {
        out.sample(
            "renderburst_arm_requests_total",
            &[("class", &class), ("code", &code.to_string())],
            n as f64,
        );
    }
    let plain = [
        (
            "renderburst_arm_attempts_total",
            "HTTP attempts sent to ARM, retries included.",
            counters.attempts.load(Relaxed) as f64,
        ),
        (
            "renderburst_arm_retries_total",
            "Retried ARM attempts.",
            counters.retries.load(Relaxed) as f64,
        ),
        (
            "renderburst_arm_throttled_total",
            "ARM answers that were 429 Too Many Requests.",
            counters.throttled_429.load(Relaxed) as f64,
        ),
        (
            "renderburst_arm_transport_errors_total",
            "ARM attempts that got no HTTP answer (connection, timeout).",
            counters.transport_errors.load(Relaxed) as f64,
        ),
        (
            "renderburst_arm_governor_wait_seconds_total",
            "Time requests waited for the rate governor.",
            counters.governor_wait_us.load(Relaxed) as f64 / 1e6,
        ),
    ];
    for (name, help, value) in plain {
        out.family(name, "counter", help).sample(name, &[], value);
    }
    let governor = arm.governor();
    out.family(
        "renderburst_arm_governor_tokens",
        "gauge",
        "Requests the governor's model of a bucket would let through now.",
    );
    for b in &governor.classes {
        out.sample(
            "renderburst_arm_governor_tokens",
            &[("bucket", &b.name)],
            b.tokens,
        );
    }
    out.family(
        "renderburst_arm_governor_held",
        "gauge",
        "1 while a 429 holds the bucket's requests back.",
    );
    for b in &governor.classes {
        let held = if b.held_for_s.is_some() { 1.0 } else { 0.0 };
        out.sample(
            "renderburst_arm_governor_held",
            &[("bucket", &b.name)],
            held,
        );
    }
    let last = controller.last_status();
    out.family(
        "renderburst_reconcile_last_duration_seconds",
        "gauge",
        "How long the last activation of the reconciler took.",
    )
    .sample(
        "renderburst_reconcile_last_duration_seconds",
        &[],
        last.duration_ms as f64 / 1000.0,
    );
    out.family(
        "renderburst_reconcile_last_actions",
        "gauge",
        "Actions the last activation planned.",
    )
    .sample(
        "renderburst_reconcile_last_actions",
        &[],
        last.actions as f64,
    );
    out.family(
        "renderburst_reconcile_last_errors",
        "gauge",
        "Errors of the last activation.",
    )
    .sample(
        "renderburst_reconcile_last_errors",
        &[],
        last.errors.len() as f64,
    );
    let durations = controller.activation_durations();
    out.family(
        "renderburst_reconcile_duration_seconds",
        "histogram",
        "Duration of every activation of the reconciler since start; _count is the activations.",
    )
    .histogram(
        "renderburst_reconcile_duration_seconds",
        &[],
        &durations.buckets,
        durations.sum_seconds,
        durations.count,
    );
    out.finish()
}

/// `renderburst serve`.
pub async fn run(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = Config::load(config_file.as_deref())?;
    let daemon = start(cfg, None).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    daemon.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::embedded_state_file;

    #[test]
    fn the_embedded_state_file_is_named_after_the_database_beside_it() {
        for (db, file) in [
            ("renderburst.db", "renderburst.azure-sim.json"),
            (
                "/var/lib/renderburst/farm.db",
                "/var/lib/renderburst/farm.azure-sim.json",
            ),
            ("data/studio", "data/studio.azure-sim.json"),
        ] {
            assert_eq!(embedded_state_file(Path::new(db)), PathBuf::from(file));
        }
    }
}
