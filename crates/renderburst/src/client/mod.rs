//! Client commands: talk to a running daemon's HTTP API.
//!
//! The token comes from `--token-file`, else `RENDERBURST_TOKEN`, else `./admin.token` (the
//! file the daemon writes on first start next to its default SQLite file), so on one machine
//! a newcomer needs no token handling at all.
//!
//! The command groups with most to say have a file each (`pool.rs`, `node.rs` with requests,
//! `schedule.rs`, `events.rs`); tokens, offerings and status stay here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::args::Role;
use crate::outln;
use crate::output::{self, Align, Table};
mod events;
mod node;
mod pool;
mod schedule;
pub use events::EventsArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The daemon's API URL (a bare loopback HOST:PORT means http://HOST:PORT).
    #[arg(
        long,
        env = "RENDERBURST_API",
        default_value = "http://127.0.0.1:7878",
        global = true,
        value_parser = crate::args::parse_api
    )]
    pub api: String,
    /// File holding the API token (default: $RENDERBURST_TOKEN, else ./admin.token).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM certificate(s) to trust for an https:// API besides the system's: the daemon's
    /// own (self-signed) certificate or the CA that signed it.
    #[arg(long, env = "RENDERBURST_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// List pools: bounds (min, max, target), requested, desired, running and ready nodes,
    /// what is happening, and condition types (`pool show NAME` has their messages).
    List,
    /// Show one pool: its bounds and nodes, what is happening and why, and the next steps the
    /// controller would take (or why it can take none). `-o json` for the spec and plan.
    Show { name: String },
    /// Create or replace a pool from a JSON or TOML file.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Set a pool's target node count.
    Scale {
        name: String,
        /// Nodes to keep (0 or more, at most the pool's max); requests can raise the
        /// desired count above it, min keeps it from going lower.
        target: u32,
        /// Wait, with a progress bar, until the pool has converged.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Show a pool's bootstrap section; with --node-preview, the exact script its next node
    /// would get (cloud-init or PowerShell; for a Batch pool, its start task and what a node
    /// gets when it enrolls), with secrets and tokens masked.
    Bootstrap {
        name: String,
        #[arg(long)]
        node_preview: bool,
    },
    /// Delete a pool: its nodes are removed, then the pool.
    Delete {
        name: String,
        /// Wait until the pool is gone, showing how many nodes are left.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Forget the pool once nothing tagged with it remains in Azure, whatever the daemon's
        /// inventory says; with --wait, print what remains and fail if something does.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes: pool, state, private IP, size, priority, busy and draining.
    List {
        /// Only the nodes of this pool (a pool name, as `pool list` shows).
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
    },
    /// Give a node no new work and remove it once idle.
    Drain { name: String },
    /// Cancel a drain: the node takes work again.
    Undrain { name: String },
}

#[derive(Subcommand, Debug)]
pub enum RequestCmd {
    /// Ask for COUNT nodes of POOL for a while (a lease; it adds to the pool's desired count).
    Create {
        pool: String,
        count: u32,
        /// How long the request lives: 90s, 30m, 2h, 1h30m, 1d (default 1h, at most 7d).
        #[arg(long, value_parser = crate::args::parse_ttl)]
        ttl: Option<u64>,
        /// The render job this is for (shown in events).
        #[arg(long)]
        job: Option<String>,
    },
    /// List live requests.
    List {
        /// Only the requests for this pool (a pool name).
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
        /// Include released and expired requests.
        #[arg(long)]
        all: bool,
    },
    /// Release a request before it expires.
    Release { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token; it is printed once and only its hash is kept.
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: Role,
        /// A name for the token (shown as the actor of what it does; `admin` is reserved).
        #[arg(long)]
        name: String,
    },
    /// List tokens: name, role, when created (never the token).
    List,
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum OfferingsCmd {
    /// List the sizes avoided now, and until when (the default).
    List,
    /// Forget them all (capacity or quota is back): the preferred sizes are tried again.
    Clear,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// List schedules with their next firing (in their zone) and their last.
    List,
    /// Show one schedule, with its next firing in its zone and in UTC.
    Show { name: String },
    /// Create a schedule: at each CRON time in TIMEZONE, set the pool's min, max or target.
    Create {
        /// The schedule's name ([a-z][a-z0-9-]*, at most 63 characters): the actor of the
        /// events its firings record.
        name: String,
        /// The pool to set (a pool name).
        #[arg(
            long,
            value_name = "POOL",
            required_unless_present = "pool_tag",
            conflicts_with = "pool_tag"
        )]
        pool: Option<String>,
        /// Instead of --pool: every pool with this tag (NAME=VALUE; repeat to require several).
        #[arg(long = "pool-tag", value_parser = parse_tag)]
        pool_tag: Vec<(String, String)>,
        /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
        #[arg(long)]
        cron: String,
        /// IANA time zone, such as Europe/London.
        #[arg(long)]
        timezone: String,
        /// Set the pool's min: nodes kept even with no work (0 or more).
        #[arg(long, value_name = "N")]
        min: Option<u32>,
        /// Set the pool's max: nodes never exceeded (0 or more; 0 stops the pool, and takes
        /// min and target down with it).
        #[arg(long, value_name = "N")]
        max: Option<u32>,
        /// Set the pool's target: nodes wanted without requests (0 or more, at most max).
        #[arg(long, value_name = "N")]
        target: Option<u32>,
    },
    /// Delete a schedule (what it already set on pools stays).
    Delete { name: String },
}

/// `show=ep101` → (`show`, `ep101`).
fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("bad tag '{text}': use NAME=VALUE")),
    }
}

/// `90`, `90s`, `30m`, `2h`, `1h30m`, `1d` → seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("bad duration '{text}': use 90s, 30m, 2h or 1h30m"))?;
        digits.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("bad duration '{text}': unknown unit '{c}'")),
        };
    }
    if !digits.is_empty() {
        return Err(format!(
            "bad duration '{text}': a number needs a unit (s, m, h, d)"
        ));
    }
    if total == 0 {
        return Err(format!("bad duration '{text}': must be more than zero"));
    }
    Ok(total)
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    output: Output,
}

impl Client {
    pub fn new(conn: &Conn) -> anyhow::Result<Self> {
        let token = match &conn.token_file {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read the token file {}", p.display()))?,
            None => match std::env::var("RENDERBURST_TOKEN") {
                Ok(t) if !t.trim().is_empty() => t,
                _ => std::fs::read_to_string("admin.token").context(
                    "no API token: pass --token-file, set RENDERBURST_TOKEN, or run this next to the daemon's admin.token",
                )?,
            },
        };
        Ok(Self {
            http: http_client(Duration::from_secs(30), conn.ca_cert.as_deref())?,
            base: conn.api.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            output: conn.output,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the renderburst API at {}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Like `call`, but a non-2xx answer is an error that quotes the API's message.
    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let msg = v["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        match v["error"]["field"].as_str() {
            Some(f) => bail!("{method} {path}: {status}: {f}: {msg}"),
            None => bail!("{method} {path}: {status}: {msg}"),
        }
    }

    fn print_json(&self, v: &Value) {
        outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    /// Live requested nodes by pool. Requesters see only their own requests, so for them this
    /// undercounts; a failure reads as none rather than failing the listing.
    async fn requested(&self) -> std::collections::BTreeMap<String, u64> {
        match self.ok(reqwest::Method::GET, "/v1/requests", None).await {
            Ok(v) => crate::summary::requested_by_pool(&v),
            Err(_) => Default::default(),
        }
    }

    pub async fn token(&self, cmd: TokenCmd) -> anyhow::Result<()> {
        use reqwest::Method;
        match cmd {
            TokenCmd::Create { role, name } => {
                let v = self
                    .ok(
                        Method::POST,
                        "/v1/tokens",
                        Some(&json!({"name": name, "role": role.as_str()})),
                    )
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                } else {
                    outln!("{}", v["token"].as_str().unwrap_or_default());
                    eprintln!(
                        "token {name} ({}) created; it is shown only this once",
                        role.as_str()
                    );
                }
            }
            TokenCmd::List => {
                let v = self.ok(Method::GET, "/v1/tokens", None).await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                    return Ok(());
                }
                let mut t = Table::new(&[
                    ("NAME", Align::Left),
                    ("ROLE", Align::Left),
                    ("CREATED", Align::Left),
                ]);
                for tok in v["tokens"].as_array().into_iter().flatten() {
                    t.row(vec![
                        output::text(&tok["name"]),
                        output::text(&tok["role"]),
                        output::time(&tok["created_at"]),
                    ]);
                }
                t.print();
            }
            TokenCmd::Revoke { name } => {
                self.ok(Method::DELETE, &format!("/v1/tokens/{name}"), None)
                    .await?;
                outln!("token {name} revoked");
            }
        }
        Ok(())
    }

    pub async fn offerings(&self, cmd: Option<OfferingsCmd>) -> anyhow::Result<()> {
        use reqwest::Method;
        if let Some(OfferingsCmd::Clear) = cmd {
            let v = self
                .ok(Method::DELETE, "/v1/offerings/unavailable", None)
                .await?;
            if self.output == Output::Json {
                self.print_json(&v);
            } else {
                outln!(
                    "{} unavailable offerings cleared: the preferred sizes are tried again",
                    v["cleared"]
                );
            }
            return Ok(());
        }
        let v = self
            .ok(Method::GET, "/v1/offerings/unavailable", None)
            .await?;
        if self.output == Output::Json {
            self.print_json(&v);
            return Ok(());
        }
        let marks = v["unavailable"].as_array().cloned().unwrap_or_default();
        if marks.is_empty() {
            outln!("no VM size is being avoided");
            return Ok(());
        }
        let mut t = Table::new(&[
            ("SIZE", Align::Left),
            ("PRIORITY", Align::Left),
            ("REASON", Align::Left),
            ("CODE", Align::Left),
            ("UNTIL", Align::Left),
            ("POOL", Align::Left),
        ]);
        for m in marks {
            t.row(vec![
                output::text(&m["size"]),
                output::text(&m["priority"]),
                output::text(&m["reason"]),
                output::text(&m["code"]),
                output::time(&m["until"]),
                m["pool"].as_str().unwrap_or("(all VM pools)").to_owned(),
            ]);
        }
        t.print();
        Ok(())
    }

    /// A summary for people; `-o json` prints `GET /v1/status` as it is.
    pub async fn status(&self) -> anyhow::Result<()> {
        let v = self.ok(reqwest::Method::GET, "/v1/status", None).await?;
        if self.output == Output::Json {
            self.print_json(&v);
            return Ok(());
        }
        let pools = self.ok(reqwest::Method::GET, "/v1/pools", None).await?;
        for l in crate::summary::status_lines(&v, &pools) {
            outln!("{l}");
        }
        Ok(())
    }
}

/// A pool's spec as the API shows it: the pool without what the daemon adds.
fn spec_of(pool: &Value) -> Value {
    let mut spec = pool.clone();
    if let Value::Object(fields) = &mut spec {
        for k in ["status", "generation", "deleting"] {
            fields.remove(k);
        }
    }
    spec
}

/// `maya` or `tag show=ep101`.
fn schedule_target(s: &Value) -> String {
    match (s["pool"].as_str(), s["pool_tag"].as_object()) {
        (Some(p), _) => p.to_owned(),
        (None, Some(tags)) => {
            let pairs: Vec<String> = tags
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            format!("tag {}", pairs.join(","))
        }
        _ => String::new(),
    }
}

/// `max=0 target=2`.
fn schedule_set(s: &Value) -> String {
    let parts: Vec<String> = ["min", "max", "target"]
        .iter()
        .filter_map(|k| s["set"][k].as_u64().map(|v| format!("{k}={v}")))
        .collect();
    parts.join(" ")
}

/// Asks `GET {api}/readyz` until it answers 200 or `wait` has passed (at least once).
///
/// Errors: the daemon's last answer, or why it could not be reached.
/// An HTTP client for the daemon's API that also trusts the certificates in `ca_cert`.
fn http_client(timeout: Duration, ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("--ca-cert: cannot read {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-cert: {} is not PEM", path.display()))?;
        if certs.is_empty() {
            bail!("--ca-cert: {} holds no certificate", path.display());
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder.build()?)
}

pub async fn wait_ready(api: &str, wait: Duration, ca_cert: Option<&Path>) -> anyhow::Result<()> {
    let http = http_client(Duration::from_secs(5), ca_cert)?;
    let url = format!("{}/readyz", api.trim_end_matches('/'));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let why = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                outln!("ready");
                return Ok(());
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                format!("{url} answered {status}: {}", body.trim())
            }
            Err(e) => format!("cannot reach {url}: {e}"),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("not ready: {why}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One condition of a pool status as a line: `Type: message`. Takes the objects the API
/// shows (`{"type", "message", "since"}`) and the strings older daemons showed.
pub fn condition_text(c: &Value) -> String {
    crate::output::condition_line(c)
}

/// The pool's `ForceDeleteBlocked` condition (what remains in Azure), if it has one.
fn blocked(pool: &Value) -> Option<String> {
    pool["status"]["conditions"]
        .as_array()?
        .iter()
        .find_map(|c| {
            let (kind, message, _) = crate::output::condition_parts(c);
            (kind == "ForceDeleteBlocked").then_some(message)
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_condition_reads_the_same_from_either_shape() {
        let object = serde_json::json!({"type": "Blocked", "message": "InvalidResourceReference: x", "since": "2026-01-01T00:00:00Z"});
        assert_eq!(
            super::condition_text(&object),
            "Blocked: InvalidResourceReference: x"
        );
        let text = serde_json::json!("Blocked: InvalidResourceReference: x");
        assert_eq!(super::condition_text(&text), super::condition_text(&object));
        assert_eq!(
            super::condition_text(&serde_json::json!({"type": "AtMax", "message": ""})),
            "AtMax"
        );
    }

    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("1h30").is_err());
        assert!(parse_duration("0m").is_err());
    }
}
