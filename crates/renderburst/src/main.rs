//! `renderburst`: the daemon (`serve`), the simulator (`sim`), and the client commands.
//! Exit codes: 0 ok, 1 error, 2 usage.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
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
        /// The daemon's API (a bare loopback HOST:PORT means http://HOST:PORT).
        #[arg(long, env = "RENDERBURST_API", default_value = "http://127.0.0.1:7878",
              value_parser = renderburst::args::parse_api)]
        api: String,
        /// Keep asking for this many seconds (0: ask once).
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// PEM certificate(s) to trust for an https:// API besides the system's.
        #[arg(long, env = "RENDERBURST_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Print a shell completion script: `renderburst completions bash > /etc/bash_completion.d/renderburst`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `renderburst man > renderburst.1`; with --dir, write one page
    /// per command into DIR.
    Man {
        /// Write renderburst.1 and a page per subcommand (renderburst-pool.1, ...) here.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Output still printed with `println!` panics on a closed pipe; that panic, and only that
/// one, ends the process quietly with 0 (see `output::line`, which most output goes through).
fn quiet_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if renderburst::output::is_closed_pipe_panic(message) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// `renderburst man`: the page on stdout, or every page into `dir`.
fn man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
            renderburst::outln!("man pages written to {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            renderburst::output::raw(&String::from_utf8_lossy(&page));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    quiet_closed_pipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "renderburst", &mut script);
            renderburst::output::raw(&String::from_utf8_lossy(&script));
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            return match man(dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    // Colours only for a person: a log file or journald gets no escape codes.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
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
            Command::Completions { .. } | Command::Man { .. } => Ok(()),
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
