//! The careful hand-written script (`scripts/careful_burst.py`, Microsoft's Python SDK) run
//! through the same 0 -> N -> 0 as `converge`, against a fresh simulator with the same limits
//! and latencies, measured the same way (the simulator's census, polled every 100 ms): the
//! baseline renderburst is compared with in the same run (`converge --careful PYTHON`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::converge::{ARM_WRITES, lower_bound_down, lower_bound_up};
use crate::harness::{self, World};

const SCRIPT: &str = include_str!("../scripts/careful_burst.py");

pub async fn run(python: &Path, n: u64) -> anyhow::Result<Value> {
    let w = World::start(std::path::PathBuf::new(), "careful").await?;
    let script = w.dir.join("careful_burst.py");
    std::fs::write(&script, SCRIPT)?;
    let id = w.sim.identity();
    let mut child = tokio::process::Command::new(python)
        .arg(&script)
        .args(["--url", w.sim.base_url()])
        .arg("--ca")
        .arg(w.dir.join("ca.pem"))
        .args(["--tenant", &id.tenant_id, "--client-id", &id.client_id])
        .args([
            "--secret",
            &id.client_secret,
            "--subscription",
            &id.subscription_id,
        ])
        .args([
            "--rg",
            "careful",
            "--location",
            "westeurope",
            "--n",
            &n.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut stderr = child.stderr.take().context("stderr")?;
    let expect = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
                        want: &str|
           -> anyhow::Result<()> {
        match tokio::time::timeout(Duration::from_secs(600), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.trim() == want => Ok(()),
            other => bail!("the careful script did not say {want:?}: {other:?}"),
        }
    };
    if let Err(e) = expect(&mut lines, "ready").await {
        let mut err = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await;
        bail!("{e}; its stderr:\n{err}");
    }
    let deadline = |lb: f64| Duration::from_secs_f64(lb * 10.0 + 60.0);
    let poll = Duration::from_millis(100);

    let before = w.stats().await?;
    let t0 = Instant::now();
    stdin.write_all(b"up\n").await?;
    let after_up = w
        .wait_for("0 -> N", poll, deadline(lower_bound_up(n)), |st| {
            harness::power(st, "running") == n
        })
        .await?;
    let up = t0.elapsed().as_secs_f64();
    expect(&mut lines, "done").await?;
    let taken = harness::writes(&after_up) - harness::writes(&before);
    let refill = (taken as f64).min(ARM_WRITES.burst) / ARM_WRITES.per_s + 1.0;
    tokio::time::sleep(Duration::from_secs_f64(refill)).await;

    let t1 = Instant::now();
    stdin.write_all(b"down\n").await?;
    w.wait_for("N -> 0", poll, deadline(lower_bound_down(n)), |st| {
        harness::power(st, "deallocated") == n
    })
    .await?;
    let down = t1.elapsed().as_secs_f64();
    expect(&mut lines, "done").await?;
    drop(stdin);
    let _ = child.wait().await;
    let after = w.stats().await?;

    let per_vm = |a: &Value, b: &Value| {
        let c = harness::by_class(a, b);
        json!({"read": c["read"].as_u64().unwrap_or(0) as f64 / n as f64,
               "write": c["write"].as_u64().unwrap_or(0) as f64 / n as f64})
    };
    let lower = lower_bound_up(n) + lower_bound_down(n);
    Ok(json!({
        "wall_s": up + down,
        "ratio": (up + down) / lower,
        "up_s": up,
        "up_ratio": up / lower_bound_up(n),
        "down_s": down,
        "down_ratio": down / lower_bound_down(n),
        // Its own listing until it saw the farm, included.
        "arm_requests_per_vm": per_vm(&after, &before),
        "throttled_429": harness::throttled(&after, &before),
    }))
}
