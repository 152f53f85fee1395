//! `renderburst schedule`: off-hours schedules.

use serde_json::json;

use super::{Client, Output, ScheduleCmd, schedule_set, schedule_target};
use crate::outln;
use crate::output::{self, Align, Table};

impl Client {
    pub async fn schedule(&self, cmd: ScheduleCmd) -> anyhow::Result<()> {
        use reqwest::Method;
        match cmd {
            ScheduleCmd::List => {
                let v = self.ok(Method::GET, "/v1/schedules", None).await?;
                if self.output == Output::Json {
                    self.print_json(&v);
                    return Ok(());
                }
                let mut t = Table::new(&[
                    ("NAME", Align::Left),
                    ("POOL", Align::Left),
                    ("CRON", Align::Left),
                    ("TIMEZONE", Align::Left),
                    ("SET", Align::Left),
                    ("NEXT", Align::Left),
                    ("LAST", Align::Left),
                ]);
                for s in v["schedules"].as_array().into_iter().flatten() {
                    t.row(vec![
                        output::text(&s["name"]),
                        schedule_target(s),
                        output::text(&s["cron"]),
                        output::text(&s["timezone"]),
                        schedule_set(s),
                        s["next_firing_local"]
                            .as_str()
                            .unwrap_or("never")
                            .to_owned(),
                        output::text(&s["last_firing_local"]),
                    ]);
                }
                t.print();
            }
            ScheduleCmd::Show { name } => {
                let s = self
                    .ok(Method::GET, &format!("/v1/schedules/{name}"), None)
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&s);
                    return Ok(());
                }
                let text = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
                outln!("name:        {}", text("name"));
                outln!("pools:       {}", schedule_target(&s));
                outln!("cron:        {}", text("cron"));
                outln!("timezone:    {}", text("timezone"));
                outln!("set:         {}", schedule_set(&s));
                outln!(
                    "next firing: {} ({} UTC)",
                    text("next_firing_local"),
                    text("next_firing_utc")
                );
                outln!(
                    "last firing: {} ({} UTC), applied at {}",
                    text("last_firing_local"),
                    text("last_firing_utc"),
                    text("last_applied_at")
                );
                outln!("last outcome: {}", text("last_outcome"));
            }
            ScheduleCmd::Create {
                name,
                pool,
                pool_tag,
                cron,
                timezone,
                min,
                max,
                target,
            } => {
                let mut set = serde_json::Map::new();
                for (k, v) in [("min", min), ("max", max), ("target", target)] {
                    if let Some(v) = v {
                        set.insert(k.into(), json!(v));
                    }
                }
                let mut body =
                    json!({"name": name, "cron": cron, "timezone": timezone, "set": set});
                match pool {
                    Some(p) => body["pool"] = json!(p),
                    None => {
                        body["pool_tag"] = json!(
                            pool_tag
                                .into_iter()
                                .collect::<std::collections::BTreeMap<_, _>>()
                        )
                    }
                }
                let s = self.ok(Method::POST, "/v1/schedules", Some(&body)).await?;
                if self.output == Output::Json {
                    self.print_json(&s);
                } else {
                    outln!(
                        "schedule {name} created; next firing {} ({} UTC)",
                        s["next_firing_local"].as_str().unwrap_or("never"),
                        s["next_firing_utc"].as_str().unwrap_or("-")
                    );
                }
            }
            ScheduleCmd::Delete { name } => {
                let s = self
                    .ok(Method::DELETE, &format!("/v1/schedules/{name}"), None)
                    .await?;
                if self.output == Output::Json {
                    self.print_json(&s);
                } else {
                    outln!("schedule {name} deleted");
                }
            }
        }
        Ok(())
    }
}
