//! `renderburst node` and `renderburst request`: nodes, their drains, and requests for nodes.

use serde_json::json;

use super::{Client, NodeCmd, Output, RequestCmd};
use crate::outln;
use crate::output::{self, Align, Table};

impl Client {
    pub async fn node(&self, cmd: NodeCmd) -> anyhow::Result<()> {
        match cmd {
            NodeCmd::Drain { name } => return self.drain(&name, true).await,
            NodeCmd::Undrain { name } => return self.drain(&name, false).await,
            NodeCmd::List { pool } => {
                let path = match &pool {
                    Some(p) => format!("/v1/nodes?pool={p}"),
                    None => "/v1/nodes".into(),
                };
                let v = self.ok(reqwest::Method::GET, &path, None).await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                    return Ok(());
                }
                crate::summary::node_table(&v).print();
            }
        }
        Ok(())
    }

    /// Drains a node, or (`drain` false) cancels its drain.
    pub async fn drain(&self, name: &str, drain: bool) -> anyhow::Result<()> {
        let method = if drain {
            reqwest::Method::POST
        } else {
            reqwest::Method::DELETE
        };
        let v = self
            .ok(method, &format!("/v1/nodes/{name}/drain"), None)
            .await?;
        if self.output == Output::Json {
            self.print_json(&v);
        } else if drain {
            outln!("node {name}: draining (no new work; removed once idle)");
        } else {
            outln!("node {name}: no longer draining (takes work again)");
        }
        Ok(())
    }

    pub async fn request(&self, cmd: RequestCmd) -> anyhow::Result<()> {
        use reqwest::Method;
        match cmd {
            RequestCmd::Create {
                pool,
                count,
                ttl,
                job,
            } => {
                let mut body = json!({"count": count});
                if let Some(t) = ttl {
                    body["ttl_seconds"] = json!(t);
                }
                if let Some(j) = job {
                    body["job"] = json!(j);
                }
                let v = self
                    .ok(
                        Method::POST,
                        &format!("/v1/pools/{pool}/requests"),
                        Some(&body),
                    )
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                } else {
                    outln!("{}", v["id"].as_str().unwrap_or_default());
                    eprintln!(
                        "request for {count} nodes of {pool}, until {}",
                        v["expires_at"].as_str().unwrap_or("?")
                    );
                }
            }
            RequestCmd::List { pool, all } => {
                let mut path = "/v1/requests?".to_owned();
                if let Some(p) = &pool {
                    path.push_str(&format!("pool={p}&"));
                }
                if all {
                    path.push_str("all=true");
                }
                let path = path.trim_end_matches(['?', '&']).to_owned();
                let v = self.ok(Method::GET, &path, None).await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                    return Ok(());
                }
                let mut t = Table::new(&[
                    ("ID", Align::Left),
                    ("POOL", Align::Left),
                    ("COUNT", Align::Right),
                    ("REQUESTER", Align::Left),
                    ("JOB", Align::Left),
                    ("STATE", Align::Left),
                    ("EXPIRES", Align::Left),
                ]);
                for r in v["requests"].as_array().into_iter().flatten() {
                    t.row(vec![
                        output::text(&r["id"]),
                        output::text(&r["pool"]),
                        r["count"].as_u64().unwrap_or(0).to_string(),
                        output::text(&r["requester"]),
                        output::text(&r["job"]),
                        output::text(&r["state"]),
                        output::time(&r["expires_at"]),
                    ]);
                }
                t.print();
            }
            RequestCmd::Release { id } => {
                let v = self
                    .ok(Method::DELETE, &format!("/v1/requests/{id}"), None)
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                } else {
                    outln!("request {id} released");
                }
            }
        }
        Ok(())
    }
}
