//! `renderburst`: the daemon (`serve`), the simulator (`sim`), and the client commands.
//! Exit codes: 0 ok, 1 error, 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use renderburst::client::{
    Client, Conn, EventsArgs, NodeCmd, OfferingsCmd, PoolCmd, RequestCmd, ScheduleCmd, TokenCmd,
};
use renderburst::{serve, sim};

#[derive(Parser)]
#[command(
    name = "renderburst",
    version,
    about = "Burst a render farm into Microsoft Azure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (with no [azure] configured: against the built-in simulator).
    Serve {
        /// TOML configuration file (see config/default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the Azure simulator alone (ARM, Batch and Entra ID over HTTPS) and print its URL.
    Sim(sim::SimArgs),
    /// Pools of render nodes.
    Pool {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: PoolCmd,
    },
    /// Render nodes.
    Node {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Node requests (leases) from render managers.
    Request {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: RequestCmd,
    },
    /// Off-hours schedules: set pools' min, max or target at cron times in a time zone.
    Schedule {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ScheduleCmd,
    },
    /// API tokens (admin only).
    Token {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// The audit log: who asked what, what the controller did and why (the newest 20 unless
    /// asked otherwise).
    Events {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: EventsArgs,
    },
    /// VM sizes Azure refused for capacity or quota, which the planners avoid for a while.
    Offerings {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: Option<OfferingsCmd>,
    },
    /// The controller's status: last activation, throttling, errors.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Exit 0 once the daemon is ready (`GET /readyz`), 1 if it is not within `--wait`; needs
    /// no token. For service managers and container health checks.
    Ready {
        /// The daemon's API.
        #[arg(long, env = "RENDERBURST_API", default_value = "http://127.0.0.1:7878")]
        api: String,
        /// Keep asking for this many seconds (0: ask once).
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// PEM certificate(s) to trust for an https:// API besides the system's.
        #[arg(long, env = "RENDERBURST_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => serve::run(config).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Pool { conn, cmd } => Client::new(&conn)?.pool(cmd).await,
            Command::Node { conn, cmd } => Client::new(&conn)?.node(cmd).await,
            Command::Request { conn, cmd } => Client::new(&conn)?.request(cmd).await,
            Command::Token { conn, cmd } => Client::new(&conn)?.token(cmd).await,
            Command::Schedule { conn, cmd } => Client::new(&conn)?.schedule(cmd).await,
            Command::Events { conn, args } => Client::new(&conn)?.events(&args).await,
            Command::Offerings { conn, cmd } => Client::new(&conn)?.offerings(cmd).await,
            Command::Status { conn } => Client::new(&conn)?.status().await,
            Command::Ready { api, wait, ca_cert } => {
                renderburst::client::wait_ready(
                    &api,
                    std::time::Duration::from_secs(wait),
                    ca_cert.as_deref(),
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
