//! `renderburst sim`: the Azure simulator on its own, for demos, the Azure CLI and SDKs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use azure_sim::{SimConfig, Simulator};

#[derive(clap::Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (the printed URL has the real one).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Where to write the PEM of the simulator's CA, for clients to trust.
    #[arg(long, default_value = "azure-sim-ca.pem")]
    ca_out: PathBuf,
    /// TOML file of simulator settings (latency_ms, faults, limits, quota, paging, capacity).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Allow a --listen address other than loopback. The simulator's control API
    /// (`/_sim/*`: reset, faults, settings) needs no token, so anyone who reaches it can
    /// change or wipe the simulated world.
    #[arg(long)]
    allow_remote: bool,
}

/// Refuses a non-loopback `listen` unless `allow_remote`.
pub fn check_listen(listen: SocketAddr, allow_remote: bool) -> anyhow::Result<()> {
    if !listen.ip().to_canonical().is_loopback() && !allow_remote {
        anyhow::bail!(
            "--listen {listen} is not a loopback address: the simulator's control API needs no \
             token, so anyone who reaches it could reset or reconfigure it; pass --allow-remote \
             if that is what you want"
        );
    }
    Ok(())
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    check_listen(args.listen, args.allow_remote)?;
    if !args.listen.ip().to_canonical().is_loopback() {
        tracing::warn!(listen = %args.listen, "--allow-remote: the simulator's unauthenticated control API is reachable beyond this machine");
    }
    let cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read simulator config {}", path.display()))?;
            SimConfig::from_toml_str(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => SimConfig::default(),
    };
    let sim = Simulator::start(args.listen, cfg)
        .await
        .with_context(|| format!("cannot start the simulator on {}", args.listen))?;
    std::fs::write(&args.ca_out, sim.ca_pem()).with_context(|| {
        format!(
            "cannot write the CA certificate to {}",
            args.ca_out.display()
        )
    })?;
    let ca = std::fs::canonicalize(&args.ca_out).unwrap_or(args.ca_out.clone());
    let id = sim.identity();
    let url = sim.base_url();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "azure-sim is running at {url}\n\
         \n  ARM endpoint     {url}\n  authority host   {url}\n  CA certificate   {ca}\n  \
         tenant id        {tenant}\n  client id        {client}\n  client secret    {secret}\n  \
         subscription id  {sub}\n\n\
         For the Azure SDKs: AZURE_AUTHORITY_HOST={url} REQUESTS_CA_BUNDLE={ca} (and disable instance discovery).\n\
         Control API: {url}/_sim/resources, /_sim/stats, /_sim/config. Press Ctrl-C to stop.",
        ca = ca.display(),
        tenant = id.tenant_id,
        client = id.client_id,
        secret = id.client_secret,
        sub = id.subscription_id,
    )?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    tracing::info!("stopping the simulator");
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_listen;

    #[test]
    fn remote_listen_needs_allow_remote() {
        for ok in [
            "127.0.0.1:8443",
            "127.1.2.3:0",
            "[::1]:8443",
            "[::ffff:127.0.0.1]:1",
        ] {
            check_listen(ok.parse().unwrap(), false).unwrap();
        }
        for remote in ["0.0.0.0:8443", "10.0.0.4:8443", "[::]:8443"] {
            let err = check_listen(remote.parse().unwrap(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--allow-remote"), "{err}");
            check_listen(remote.parse().unwrap(), true).unwrap();
        }
    }
}
