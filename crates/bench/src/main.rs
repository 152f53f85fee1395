//! `renderburst-bench`: standing proof that renderburst is fast and frugal with ARM, measured
//! against the simulator with Azure's real request limits and its default (scaled-down)
//! operation latencies, with the daemon (`renderburst serve`) as a child process.
//!
//! Scenarios: `converge`, `throttle`, `reaction`, `restart`, `plan`, the audits `chaos` and
//! `crashloop`, and `blocked` (see README, "Benchmarks"). Each
//! prints a table on stdout; with `--json` each prints one JSON object on one line on stdout
//! instead (JSON lines) and its table on stderr. Exit codes: 0 ok, 1 error or audit
//! violation, 2 usage.

mod blocked;
mod careful;
mod chaos;
mod converge;
mod harness;
mod plan;
mod reaction;
mod report;
mod restart;
mod throttle;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "renderburst-bench",
    version,
    about = "Benchmarks renderburst against the Azure simulator with Azure's request limits"
)]
struct Cli {
    /// One JSON object per scenario run, one per line, on stdout (tables go to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// The renderburst binary to run as the daemon (default: beside this binary).
    #[arg(long, global = true, env = "RENDERBURST_BIN")]
    renderburst: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// A pool 0 -> N VMs and back to 0: wall time / lower bound, ARM requests per VM by
    /// class, 429s, daemon CPU seconds and peak RSS.
    Converge {
        /// Pool sizes, repeatable or comma-separated; each runs with a fresh simulator and
        /// daemon.
        #[arg(long, value_delimiter = ',', default_values_t = [100u64, 500, 2000],
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        vms: Vec<u64>,
        /// `on`: the daemon sends its writes through Compute Schedule (`[controller] bulk =
        /// "always"`) and the bound is the bulk one; `off`: one ARM write per VM.
        #[arg(long, default_value = "off", value_parser = ["on", "off"])]
        bulk: String,
        /// A Python with Microsoft's SDKs (tests/compat/requirements.txt, e.g.
        /// `.venv-compat/bin/python`): also run the careful hand-written script
        /// (`scripts/careful_burst.py`) through the same phases, against a fresh simulator, and
        /// report it beside renderburst (`careful_script`).
        #[arg(long)]
        careful: Option<PathBuf>,
    },
    /// A pool 0 -> N VMs and back to 0 with ARM's write bucket far smaller than Azure's
    /// default (5 burst, 4/s) and the daemon not told: 429s over the whole run and wall time
    /// / the lower bound of that bucket.
    Throttle {
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        vms: u64,
    },
    /// Time from a node request to the first ARM write, on a pool at a steady state.
    Reaction {
        /// Nodes the pool holds (by requests) before the measured requests.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=1000))]
        steady: u64,
        /// Measured requests of one node each.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
        repeats: u64,
    },
    /// The daemon SIGKILLed with N VMs under management and restarted: ARM reads until
    /// ready, against pages listed, and 429s.
    Restart {
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        vms: u64,
    },
    /// Random scale changes, node requests, evictions, out-of-band deletions, faults and
    /// capacity exhaustion for M minutes, then quiesce and audit (desired == actual, no
    /// orphans, no duplicate creates, every ARM error seen is in the event log). Exits 1
    /// naming each violation.
    Chaos {
        /// Minutes of chaos (fractions allowed).
        #[arg(long, default_value_t = 2.0, value_parser = minutes)]
        minutes: f64,
        #[arg(long, default_value_t = 8)]
        seed: u64,
        /// `on`: every write through Compute Schedule (`[controller] bulk = "always"`).
        #[arg(long, default_value = "off", value_parser = ["on", "off"])]
        bulk: String,
    },
    /// The chaos with the daemon SIGKILLed K times at random moments and started again on the
    /// same database; the same audit plus `PRAGMA integrity_check`.
    Crashloop {
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        kills: u32,
        #[arg(long, default_value_t = 2.0, value_parser = minutes)]
        minutes: f64,
        #[arg(long, default_value_t = 8)]
        seed: u64,
        /// `on`: every write through Compute Schedule (`[controller] bulk = "always"`).
        #[arg(long, default_value = "off", value_parser = ["on", "off"])]
        bulk: String,
    },
    /// A configured subnet that does not exist, with the default backoff cap: VM PUTs in the
    /// first 150 s and in M minutes, time to `Blocked`, time until `pool scale --wait` fails,
    /// events written; then the subnet is created and the time to converge measured.
    Blocked {
        /// Minutes the pool stays blocked (fractions allowed).
        #[arg(long, default_value_t = 10.0, value_parser = minutes)]
        minutes: f64,
        /// The pool's target (and max).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
        target: u64,
        /// Exit 1 unless the Must-hold holds: at most 12 VM PUTs in the first 150 s,
        /// Blocked naming the code, `--wait` failing within a minute, convergence once the
        /// subnet exists.
        #[arg(long)]
        check: bool,
    },
    /// The pure planner's time for P pools x V VMs.
    Plan {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        pools: u64,
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        vms_per_pool: u64,
        #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u64).range(1..=1000))]
        runs: u64,
    },
}

fn minutes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 && m <= 24.0 * 60.0 => Ok(m),
        _ => Err(format!("{s:?} is not a number of minutes in (0, 1440]")),
    }
}

async fn chaos_run(
    json: bool,
    bin: PathBuf,
    minutes: f64,
    seed: u64,
    kills: u32,
    bulk: bool,
) -> anyhow::Result<()> {
    eprintln!(
        "{}: {minutes} min of chaos (seed {seed}, {kills} kills), then quiesce and audit ...",
        if kills > 0 { "crashloop" } else { "chaos" }
    );
    let opts = chaos::Opts {
        minutes,
        seed,
        kills,
        bulk,
    };
    let v = chaos::run(bin, &opts).await?;
    emit(json, &v, chaos::table(&v));
    let n = v["violations"].as_array().map_or(0, Vec::len);
    if n > 0 {
        anyhow::bail!("the audit found {n} violation(s) (listed above)");
    }
    Ok(())
}

fn emit(json: bool, v: &Value, table: report::Table) {
    if json {
        println!("{v}");
        eprint!("{}", table.render());
    } else {
        println!("{}", table.render());
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    let daemon = || harness::locate_renderburst(cli.renderburst.as_deref());
    match cli.scenario {
        Scenario::Converge {
            vms,
            bulk,
            careful: python,
        } => {
            let bin = daemon()?;
            for n in vms {
                eprintln!("converge: 0 -> {n} -> 0 (bulk {bulk}) ...");
                let mut v = converge::run(bin.clone(), n, bulk == "on").await?;
                if let Some(python) = &python {
                    eprintln!("converge: the careful script, 0 -> {n} -> 0 ...");
                    let c = careful::run(python, n).await?;
                    v["vs_careful_script"] = serde_json::json!(
                        v["wall_s"].as_f64().unwrap_or(0.0) / c["wall_s"].as_f64().unwrap_or(1.0)
                    );
                    v["careful_script"] = c;
                }
                emit(json, &v, converge::table(&v));
            }
        }
        Scenario::Throttle { vms } => {
            eprintln!(
                "throttle: 0 -> {vms} -> 0 with a write bucket of {} + {}/s ...",
                throttle::TIGHT_WRITES.burst,
                throttle::TIGHT_WRITES.per_s
            );
            let v = throttle::run(daemon()?, vms, throttle::TIGHT_WRITES).await?;
            emit(json, &v, throttle::table(&v));
        }
        Scenario::Reaction { steady, repeats } => {
            let v = reaction::run(daemon()?, steady, repeats).await?;
            emit(json, &v, reaction::table(&v));
        }
        Scenario::Restart { vms } => {
            eprintln!("restart: scaling up to {vms} VMs first ...");
            let v = restart::run(daemon()?, vms).await?;
            emit(json, &v, restart::table(&v));
        }
        Scenario::Chaos {
            minutes,
            seed,
            bulk,
        } => {
            chaos_run(json, daemon()?, minutes, seed, 0, bulk == "on").await?;
        }
        Scenario::Crashloop {
            kills,
            minutes,
            seed,
            bulk,
        } => {
            chaos_run(json, daemon()?, minutes, seed, kills, bulk == "on").await?;
        }
        Scenario::Blocked {
            minutes,
            target,
            check,
        } => {
            eprintln!(
                "blocked: a missing subnet for {minutes} min (target {target}), then the subnet ..."
            );
            let v = blocked::run(
                daemon()?,
                &blocked::Opts {
                    minutes,
                    target,
                    check,
                },
            )
            .await?;
            emit(json, &v, blocked::table(&v));
            let n = v["violations"].as_array().map_or(0, Vec::len);
            if check && n > 0 {
                anyhow::bail!("the Must-hold does not hold: {n} violation(s) (listed above)");
            }
        }
        Scenario::Plan {
            pools,
            vms_per_pool,
            runs,
        } => {
            let v = plan::run(pools as usize, vms_per_pool, runs as usize);
            emit(json, &v, plan::table(&v));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
