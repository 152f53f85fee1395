//! `renderburst pool`: list, show, apply, scale, delete a pool, and wait for the result.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{Client, Output, PoolCmd, blocked, condition_text, spec_of};
use crate::outln;
use crate::output;

impl Client {
    pub async fn pool(&self, cmd: PoolCmd) -> anyhow::Result<()> {
        use reqwest::Method;
        match cmd {
            PoolCmd::List => {
                let v = self.ok(Method::GET, "/v1/pools", None).await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                    return Ok(());
                }
                let requested = self.requested().await;
                crate::summary::pool_table(&v, &requested).print();
            }
            PoolCmd::Bootstrap { name, node_preview } => {
                if !node_preview {
                    let pool = self
                        .ok(Method::GET, &format!("/v1/pools/{name}"), None)
                        .await?;
                    if pool["bootstrap"].is_null() {
                        bail!("pool {name} has no bootstrap section");
                    }
                    if pool["bootstrap"]["redacted"] == true {
                        bail!(
                            "pool {name} has a bootstrap section; it is shown to admin tokens only"
                        );
                    }
                    // Secrets are references in the spec, never values.
                    self.print_json(&pool["bootstrap"]);
                    return Ok(());
                }
                let v = self
                    .ok(Method::GET, &format!("/v1/pools/{name}/bootstrap"), None)
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                    return Ok(());
                }
                // The script exactly as the node gets it; notes go to stderr.
                output::raw(v["script"].as_str().unwrap_or_default());
                if let Some(task) = v["start_task"].as_object() {
                    eprintln!(
                        "# {}: what a Batch node gets when its start task enrolls it; secrets and the node token masked",
                        v["format"].as_str().unwrap_or("")
                    );
                    eprintln!(
                        "# start task: {}",
                        task["command_line"].as_str().unwrap_or("")
                    );
                    for e in task["environment"].as_array().cloned().unwrap_or_default() {
                        eprintln!(
                            "# start task environment: {}={}",
                            e["name"].as_str().unwrap_or(""),
                            e["value"].as_str().unwrap_or("")
                        );
                    }
                } else {
                    eprintln!(
                        "# {} for node {}: {} of {} bytes of base64 customData; secrets and the node token masked",
                        v["format"].as_str().unwrap_or(""),
                        v["node"].as_str().unwrap_or(""),
                        v["custom_data_bytes"],
                        v["custom_data_limit"]
                    );
                }
                for s in v["unresolved_secrets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    eprintln!(
                        "warning: the daemon cannot resolve {}: new nodes will fail to bootstrap",
                        s.as_str().unwrap_or("")
                    );
                }
            }
            PoolCmd::Show { name } => {
                let pool = self
                    .ok(Method::GET, &format!("/v1/pools/{name}"), None)
                    .await?;
                let plan = self
                    .ok(Method::GET, &format!("/v1/pools/{name}/plan"), None)
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&json!({"pool": pool, "plan": plan}));
                    return Ok(());
                }
                let requested = self.requested().await.get(&name).copied().unwrap_or(0);
                for l in crate::summary::pool_lines(&pool, &plan, requested) {
                    outln!("{l}");
                }
            }
            PoolCmd::Apply { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let spec: Value = if file.extension().is_some_and(|e| e == "toml") {
                    let t: toml::Value = toml::from_str(&text)
                        .with_context(|| format!("{} is not valid TOML", file.display()))?;
                    serde_json::to_value(t)?
                } else {
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not valid JSON", file.display()))?
                };
                let name = spec["name"]
                    .as_str()
                    .context("the pool spec has no \"name\"")?
                    .to_owned();
                let (status, before) = self
                    .call(Method::GET, &format!("/v1/pools/{name}"), None)
                    .await?;
                let v = if status == 404 {
                    self.ok(Method::POST, "/v1/pools", Some(&spec)).await?
                } else {
                    self.ok(Method::PUT, &format!("/v1/pools/{name}"), Some(&spec))
                        .await?
                };
                if self.output == Output::Json {
                    self.print_json(&v);
                } else if status == 404 {
                    outln!("pool {name} created");
                } else if spec_of(&before) == spec_of(&v) {
                    outln!("pool {name} unchanged");
                } else {
                    outln!("pool {name} updated");
                }
            }
            PoolCmd::Scale {
                name,
                target,
                wait,
                timeout,
            } => {
                let v = self
                    .ok(
                        Method::POST,
                        &format!("/v1/pools/{name}/scale"),
                        Some(&json!({"target": target})),
                    )
                    .await?;
                if !wait {
                    if self.output == Output::Json {
                        self.print_json(&v);
                    } else {
                        outln!("pool {name}: target set to {target}");
                    }
                    return Ok(());
                }
                let generation = v["generation"].as_i64();
                self.wait_converged(&name, generation, Duration::from_secs(timeout))
                    .await?;
            }
            PoolCmd::Delete {
                name,
                wait,
                timeout,
                force,
            } => {
                let path = if force {
                    format!("/v1/pools/{name}?force=true")
                } else {
                    format!("/v1/pools/{name}")
                };
                // A refusal reported before this request is not its answer: the controller
                // answers it in the activation after the next one at the latest.
                let asked_at = if force { self.activation().await? } else { 0 };
                self.ok(Method::DELETE, &path, None).await?;
                if !wait {
                    outln!("pool {name}: deleting (its nodes are removed first)");
                    return Ok(());
                }
                let force = force.then_some(asked_at);
                self.wait_deleted(&name, force, Duration::from_secs(timeout))
                    .await?;
            }
        }
        Ok(())
    }

    /// The reconciler's activation number, as `/v1/status` shows it.
    async fn activation(&self) -> anyhow::Result<u64> {
        let (_, v) = self.call(reqwest::Method::GET, "/v1/status", None).await?;
        Ok(v["controller"]["reconciler"]["number"]
            .as_u64()
            .unwrap_or(0))
    }

    /// Polls a pool being deleted until it is gone: a spinner on a terminal, else a line on
    /// stderr each time the count of nodes left changes; `pool NAME deleted` on stdout.
    /// With `force` (the activation number when it was asked), fails with what remains in
    /// Azure once the controller has answered the forced deletion.
    async fn wait_deleted(
        &self,
        name: &str,
        force: Option<u64>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        use std::io::IsTerminal;
        let on_terminal = std::io::stderr().is_terminal();
        let bar = indicatif::ProgressBar::new_spinner();
        if on_terminal {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        let started = Instant::now();
        let deadline = started + timeout;
        let mut said: Option<String> = None;
        loop {
            let (status, v) = self
                .call(reqwest::Method::GET, &format!("/v1/pools/{name}"), None)
                .await?;
            if status == 404 {
                bar.finish_and_clear();
                outln!("pool {name} deleted in {} s", started.elapsed().as_secs());
                return Ok(());
            }
            if let Some(asked_at) = force
                && let Some(why) = blocked(&v)
                && self.activation().await? >= asked_at + 2
            {
                bar.abandon();
                bail!("pool {name} not forgotten: {why}");
            }
            let s = &v["status"];
            let left = crate::summary::nodes_left(s);
            let mut progress = format!("deleting pool {name}: {left} nodes left");
            let conditions = output::conditions(s);
            if !conditions.is_empty() {
                progress.push_str(&format!(" ({})", conditions.join("; ")));
            }
            if on_terminal {
                bar.set_message(progress.clone());
            } else if said.as_ref() != Some(&progress) {
                eprintln!("{progress}");
            }
            said = Some(progress);
            if Instant::now() > deadline {
                bar.abandon();
                bail!(
                    "pool {name} still has {left} nodes after {} s",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Polls the pool until running == desired with nothing in transit. Fails at once when
    /// the controller, having seen `generation` (the scale's), reports the pool `Blocked`.
    async fn wait_converged(
        &self,
        name: &str,
        generation: Option<i64>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} running ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let started = Instant::now();
        let deadline = started + timeout;
        let mut no_capacity_since: Option<Instant> = None;
        loop {
            let v = self
                .ok(reqwest::Method::GET, &format!("/v1/pools/{name}"), None)
                .await?;
            let s = &v["status"];
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            let desired = n("desired");
            let running = n("running");
            let transit = n("creating") + n("starting") + n("deallocating") + n("deleting");
            bar.set_length(desired);
            bar.set_position(running.min(desired));
            bar.set_message(format!(
                "{name}: {} creating, {} starting, {} deallocating",
                n("creating"),
                n("starting"),
                n("deallocating")
            ));
            let conditions: Vec<String> = s["conditions"]
                .as_array()
                .map(|a| a.iter().map(condition_text).collect())
                .unwrap_or_default();
            // A status from before the scale may still show the old block: wait for the
            // controller to have planned from the scale's generation.
            let seen = match (generation, s["observed_generation"].as_i64()) {
                (Some(want), Some(got)) => got >= want,
                _ => true,
            };
            if let Some(blocked) = conditions
                .iter()
                .find_map(|c| c.strip_prefix("Blocked: "))
                .filter(|_| seen)
            {
                bar.abandon();
                let (what, fix) = match blocked.split_once("; fix: ") {
                    Some((what, fix)) => (what, format!("; fix: {fix}")),
                    None => (blocked, String::new()),
                };
                bail!(
                    "pool {name} is blocked: {what}{fix} ({running}/{desired} running; creates are retried with backoff)"
                );
            }
            if running == desired && transit == 0 && n("stopped") == 0 {
                bar.finish_and_clear();
                println!(
                    "pool {name}: {running}/{desired} running, converged in {} s",
                    started.elapsed().as_secs()
                );
                return Ok(());
            }
            if conditions.iter().any(|c| c.starts_with("NoCapacity")) {
                let since = *no_capacity_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    bar.abandon();
                    bail!("pool {name} cannot converge: {}", conditions.join("; "));
                }
            } else {
                no_capacity_since = None;
            }
            if Instant::now() > deadline {
                bar.abandon();
                bail!(
                    "pool {name} did not converge in {} s ({running}/{desired} running; {})",
                    timeout.as_secs(),
                    conditions.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
