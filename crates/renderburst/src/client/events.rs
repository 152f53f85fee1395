//! `renderburst events`: the newest events by default, one pool's with `--pool`, those since
//! a time with `--since`, and `--follow` from now (history only when `--since` or
//! `--from-start` asks for it).

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::{Client, Output};

/// Most events one API page holds (`GET /v1/events?limit=`).
const PAGE: u32 = 1000;

#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Print at most N events (1-100000). Default 20, the newest; with --since or
    /// --from-start every event from there unless --limit is given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: Option<u32>,
    /// Only the events of the pool NAME (as `pool list` shows it).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Events since a duration ago (90s, 10m, 2h, 1h30m, 7d) or an RFC 3339 time
    /// (2026-01-31T18:00:00Z), oldest first.
    #[arg(long, value_name = "DURATION|TIME", conflicts_with = "from_start")]
    pub since: Option<String>,
    /// Every event kept, oldest first.
    #[arg(long)]
    pub from_start: bool,
    /// Events after this event id, oldest first (as `next_after` in `-o json` pages).
    #[arg(long, value_name = "ID", conflicts_with_all = ["since", "from_start"])]
    pub after: Option<i64>,
    /// Keep printing new events as they happen. Starts from now: add --since or --from-start
    /// to print history first.
    #[arg(long)]
    pub follow: bool,
}

impl Client {
    /// Runs `renderburst events`.
    pub async fn events(&self, args: &EventsArgs) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match self.events_inner(args, &mut out).await {
            Err(e) if is_broken_pipe(&e) => Ok(()), // `events | head`: the reader has enough.
            other => other,
        }
    }

    async fn events_inner(&self, args: &EventsArgs, out: &mut impl Write) -> anyhow::Result<()> {
        let filter = |extra: &str| {
            let mut q = extra.to_owned();
            if let Some(pool) = &args.pool {
                q.push_str(&format!("&pool={}", encode(pool)));
            }
            q
        };
        let history = args.since.is_some() || args.from_start || args.after.is_some();
        let mut after = if history {
            // Oldest first from the starting point, page after page.
            let mut after = args.after.unwrap_or(0);
            let mut left = args.limit.unwrap_or(u32::MAX);
            let since = args
                .since
                .as_deref()
                .map(|s| format!("&since={}", encode(s)))
                .unwrap_or_default();
            while left > 0 {
                let page = left.min(PAGE);
                let v = self
                    .get(&filter(&format!("after={after}&limit={page}{since}")))
                    .await?;
                let events = v["events"].as_array().cloned().unwrap_or_default();
                for e in events.iter().take(left as usize) {
                    self.print_event(out, e)?;
                }
                left = left.saturating_sub(events.len() as u32);
                let next = v["next_after"].as_i64().unwrap_or(after);
                if next == after {
                    break; // The end of the log.
                }
                after = next;
            }
            after
        } else if args.follow && args.limit.is_none() {
            // From now: where the whole log ends, so no history is printed.
            let v = self.get("order=desc&limit=1").await?;
            v["next_after"].as_i64().unwrap_or(0)
        } else {
            // The newest N (oldest of them first, so they read top to bottom).
            let mut left = args.limit.unwrap_or(20);
            let mut pages: Vec<Vec<Value>> = Vec::new();
            let mut before: Option<i64> = None;
            let mut newest = 0;
            while left > 0 {
                let page = left.min(PAGE);
                let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
                let v = self
                    .get(&filter(&format!("order=desc&limit={page}{cursor}")))
                    .await?;
                newest = newest.max(v["next_after"].as_i64().unwrap_or(0));
                let events = v["events"].as_array().cloned().unwrap_or_default();
                let Some(oldest) = events.last().and_then(|e| e["id"].as_i64()) else {
                    break;
                };
                left = left.saturating_sub(events.len() as u32);
                pages.push(events);
                before = Some(oldest);
            }
            for e in pages.iter().rev().flat_map(|p| p.iter().rev()) {
                self.print_event(out, e)?;
            }
            if args.follow && newest == 0 {
                // No event of this pool yet: follow from the end of the whole log.
                let v = self.get("order=desc&limit=1").await?;
                newest = v["next_after"].as_i64().unwrap_or(0);
            }
            newest
        };
        if !args.follow {
            return Ok(());
        }
        out.flush()?;
        loop {
            let v = self
                .get(&filter(&format!("after={after}&limit={PAGE}")))
                .await?;
            let events = v["events"].as_array().cloned().unwrap_or_default();
            for e in &events {
                self.print_event(out, e)?;
            }
            out.flush()?;
            let next = v["next_after"].as_i64().unwrap_or(after);
            if next == after {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            after = next;
        }
    }

    async fn get(&self, query: &str) -> anyhow::Result<Value> {
        self.ok(reqwest::Method::GET, &format!("/v1/events?{query}"), None)
            .await
    }

    fn print_event(&self, out: &mut impl Write, e: &Value) -> std::io::Result<()> {
        if self.output == Output::Json {
            return writeln!(out, "{e}");
        }
        let place = match (e["pool"].as_str(), e["node"].as_str()) {
            (Some(p), Some(n)) => format!("{p}/{n}"),
            (Some(p), None) => p.to_owned(),
            (None, Some(n)) => n.to_owned(),
            (None, None) => "-".to_owned(),
        };
        writeln!(
            out,
            "{} {:<16} {:<24} {:<12} {}",
            e["at"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            place,
            e["actor"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        )
    }
}

/// Percent-encodes a query value (pool names and RFC 3339 times carry `+` and `:`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::encode("maya-spot"), "maya-spot");
        assert_eq!(
            super::encode("2026-01-31T18:00:00+01:00"),
            "2026-01-31T18%3A00%3A00%2B01%3A00"
        );
    }
}
