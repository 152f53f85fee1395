//! The world a scenario runs in: the simulator in this process with Azure's real limits, and
//! the daemon as a child process (`renderburst serve --config FILE`) so its CPU time and peak
//! memory are its own, read from `/proc/<pid>` at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use azure_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

/// Operation latencies of the simulator, in milliseconds (its defaults: Azure's scaled down).
pub const VM_CREATE_MS: u64 = 800;
pub const VM_DEALLOCATE_MS: u64 = 500;
pub const VM_START_MS: u64 = 500;

/// How a daemon ended up: its pid's CPU seconds (user + system) and peak RSS (`VmHWM`).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
}

pub struct World {
    pub sim: Simulator,
    pub sim_http: reqwest::Client,
    pub api_http: reqwest::Client,
    pub dir: PathBuf,
    renderburst: PathBuf,
    daemon: Option<Child>,
    pub api: String,
    keep_dir: bool,
    /// `[azure] subnet_id` with `ensure_network = false` (an admin's own network), set
    /// before the daemon starts; `None`: the daemon ensures its network.
    pub subnet_id: Option<String>,
    /// `[controller] bulk` for the daemon (`"off"`, `"always"`...); `None`: its default.
    pub bulk: Option<&'static str>,
}

/// The `renderburst` binary: `--renderburst`, else beside this binary (same target dir).
pub fn locate_renderburst(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--renderburst {}: no such file", p.display());
        }
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().context("cannot find this binary's path")?;
    let dir = me.parent().context("this binary has no directory")?;
    // `cargo test` runs binaries from target/<profile>/deps; the daemon is one level up.
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let p = d.join(format!("renderburst{}", std::env::consts::EXE_SUFFIX));
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the renderburst binary is not beside {} (build it: cargo build --release -p renderburst; \
         or pass --renderburst PATH)",
        me.display()
    )
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) without unsafe code: ask getconf; Linux has used 100 for decades.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds and peak RSS of a live process, from `/proc`.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3,
    // utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
        .context("no utime/stime in /proc/PID/stat")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(Usage {
        cpu_s: ticks / clock_ticks(),
        peak_rss_mib: hwm_kib / 1024.0,
    })
}

impl World {
    /// Starts the simulator with Azure's request limits and the benchmark latencies.
    pub async fn start(renderburst: PathBuf, tag: &str) -> anyhow::Result<World> {
        let cfg = SimConfig::default().merged(&json!({"latency_ms": {
            "vm_create": VM_CREATE_MS, "vm_deallocate": VM_DEALLOCATE_MS, "vm_start": VM_START_MS}}))?;
        let sim = Simulator::start("127.0.0.1:0".parse()?, cfg).await?;
        let dir = std::env::temp_dir().join(format!(
            "renderburst-bench-{tag}-{}-{}",
            std::process::id(),
            nonce()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("ca.pem"), sim.ca_pem())?;
        let sim_http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(
                sim.ca_pem().as_bytes(),
            )?)
            .build()?;
        Ok(World {
            sim,
            sim_http,
            api_http: reqwest::Client::new(),
            dir,
            renderburst,
            daemon: None,
            api: String::new(),
            keep_dir: std::env::var_os("RENDERBURST_BENCH_KEEP").is_some(),
            subnet_id: None,
            bulk: None,
        })
    }

    fn write_config(&self, port: u16) -> anyhow::Result<PathBuf> {
        let id = self.sim.identity();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [store]\nurl = \"sqlite://{db}\"\n\
             [auth]\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [azure]\nsubscription_id = \"{s}\"\ntenant_id = \"{t}\"\nclient_id = \"{c}\"\n\
             client_secret = \"{x}\"\narm_endpoint = \"{u}\"\nauthority_host = \"{u}\"\n\
             ca_cert_file = \"{ca}\"\nresource_group = \"bench\"\n{network}{controller}",
            db = self.dir.join("bench.db").display(),
            s = id.subscription_id,
            t = id.tenant_id,
            c = id.client_id,
            x = id.client_secret,
            u = self.sim.base_url(),
            ca = self.dir.join("ca.pem").display(),
            network = match &self.subnet_id {
                Some(id) => format!("ensure_network = false\nsubnet_id = \"{id}\"\n"),
                None => "ensure_network = true\n".to_owned(),
            },
            controller = match self.bulk {
                Some(mode) => format!("[controller]\nbulk = \"{mode}\"\n"),
                None => String::new(),
            }
        );
        let path = self.dir.join("bench.toml");
        std::fs::write(&path, toml)?;
        Ok(path)
    }

    /// Starts the daemon (on a fresh port, the same database) and waits until it answers
    /// `/readyz` with 200; returns how long that took.
    pub async fn start_daemon(&mut self) -> anyhow::Result<Duration> {
        if self.daemon.is_some() {
            bail!("the daemon is already running");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = self.write_config(port)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        let t0 = Instant::now();
        let child = Command::new(&self.renderburst)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("RENDERBURST_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.renderburst.display()))?;
        self.daemon = Some(child);
        self.api = format!("http://127.0.0.1:{port}");
        self.wait_ready(Duration::from_secs(120)).await?;
        Ok(t0.elapsed())
    }

    /// Polls `/readyz` every 20 ms until 200; fails if the daemon exits or the deadline passes.
    pub async fn wait_ready(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        loop {
            if let Some(child) = self.daemon.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the daemon exited ({status}) before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = self
                .api_http
                .get(format!("{}/readyz", self.api))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if t0.elapsed() > deadline {
                bail!(
                    "the daemon was not ready within {deadline:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// The running daemon's CPU seconds and peak RSS so far.
    pub fn daemon_usage(&self) -> anyhow::Result<Usage> {
        usage(self.daemon_pid().context("no daemon running")?)
    }

    /// SIGKILLs the daemon and reaps it.
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.daemon.take() {
            child.kill().context("cannot kill the daemon")?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A call to the daemon's API as admin; fails on a non-2xx answer, naming it.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .api_http
            .request(method.clone(), format!("{}{path}", self.api))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a VM pool the scenarios scale.
    pub async fn create_pool(&self, name: &str, max: usize) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/v1/pools",
            Some(
                json!({"name": name, "mode": "vm", "vm_sizes": ["Standard_D4s_v5"],
                "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": max,
                "idle_timeout_seconds": 0}),
            ),
        )
        .await?;
        Ok(())
    }

    /// Merges `patch` into the simulator's settings (`PUT /_sim/config`); a change of
    /// `limits` refills every bucket to its new size.
    pub async fn put_sim_config(&self, patch: Value) -> anyhow::Result<()> {
        let r = self
            .sim_http
            .put(format!("{}/_sim/config", self.sim.base_url()))
            .json(&patch)
            .send()
            .await
            .context("PUT /_sim/config")?;
        let status = r.status();
        if !status.is_success() {
            bail!(
                "PUT /_sim/config {patch}: {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn stats(&self) -> anyhow::Result<Value> {
        let r = self
            .sim_http
            .get(format!("{}/_sim/stats", self.sim.base_url()))
            .send()
            .await
            .context("GET /_sim/stats")?;
        Ok(r.json().await?)
    }

    /// An ARM token from the simulator's Entra ID, as the daemon gets one.
    pub async fn arm_token(&self) -> anyhow::Result<String> {
        let id = self.sim.identity();
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            id.client_id, id.client_secret, "https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
        let r: Value = self
            .sim_http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.sim.base_url(),
                id.tenant_id
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .context("token request")?
            .json()
            .await?;
        r["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access_token: {r}"))
    }

    /// A PUT through the simulator's ARM front door, as an admin would make it (portal, CLI):
    /// `path` from `/subscriptions/...` with its `api-version`; fails on a non-2xx answer.
    pub async fn arm_put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let token = self.arm_token().await?;
        let r = self
            .sim_http
            .put(format!("{}{path}", self.sim.base_url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("PUT {path}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("PUT {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Every event the daemon has written, oldest first (paged with `after`).
    pub async fn all_events(&self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut after = 0i64;
        loop {
            let page = self
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/events?after={after}&limit=1000"),
                    None,
                )
                .await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            let next = page["next_after"].as_i64().unwrap_or(after);
            let done = events.is_empty() || next == after;
            all.extend(events);
            if done {
                return Ok(all);
            }
            after = next;
        }
    }

    /// The renderburst binary the daemon runs (its CLI too).
    pub fn renderburst(&self) -> &Path {
        &self.renderburst
    }

    /// Polls the simulator's stats every `every` until `done` holds; progress on stderr every
    /// 10 s.
    pub async fn wait_for(
        &self,
        what: &str,
        every: Duration,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let t0 = Instant::now();
        let mut next_note = Duration::from_secs(10);
        loop {
            let st = self.stats().await?;
            if done(&st) {
                return Ok(st);
            }
            if t0.elapsed() > deadline {
                bail!(
                    "{what}: not within {deadline:?}; VMs by power state: {}; daemon log:\n{}",
                    st["vm_power"],
                    self.log_tail()
                );
            }
            if t0.elapsed() >= next_note {
                eprintln!(
                    "  {:>4.0} s: {what}: VMs {}",
                    t0.elapsed().as_secs_f64(),
                    st["vm_power"]
                );
                next_note += Duration::from_secs(10);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Kills the daemon and removes the scratch directory (kept with RENDERBURST_BENCH_KEEP
    /// set); the simulator stops when dropped.
    pub async fn stop(mut self) {
        let _ = self.kill_daemon();
        if self.keep_dir {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Never leave a daemon behind, even when a scenario fails half-way.
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos().into())
        .unwrap_or(0)
}

/// VMs in a power state, from `/_sim/stats`.
pub fn power(st: &Value, state: &str) -> u64 {
    st["vm_power"][state].as_u64().unwrap_or(0)
}

/// ARM requests between two stats snapshots by class: GET read; PUT, PATCH, POST write;
/// DELETE delete.
pub fn by_class(after: &Value, before: &Value) -> Value {
    let d = |m: &str| {
        after["requests"][m].as_u64().unwrap_or(0) - before["requests"][m].as_u64().unwrap_or(0)
    };
    json!({"read": d("GET"), "write": d("PUT") + d("PATCH") + d("POST"), "delete": d("DELETE")})
}

pub fn throttled(after: &Value, before: &Value) -> u64 {
    after["throttled_429"].as_u64().unwrap_or(0) - before["throttled_429"].as_u64().unwrap_or(0)
}

/// GETs between two snapshots by resource type, most first.
pub fn gets_by_type(after: &Value, before: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = after["by_type"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(ty, m)| {
            (
                ty.clone(),
                m["GET"].as_u64().unwrap_or(0) - before["by_type"][ty]["GET"].as_u64().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v
}

pub fn writes(st: &Value) -> u64 {
    ["PUT", "PATCH", "POST", "DELETE"]
        .iter()
        .map(|m| st["requests"][m].as_u64().unwrap_or(0))
        .sum()
}
