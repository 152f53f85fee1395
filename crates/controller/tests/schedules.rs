//! The scheduler against a real SQLite store, with `now` passed in: catch-up order, the
//! configuration file's reset, refusals and tag selectors. (Firing on time, with the daemon
//! running, is the e2e test's.)

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use controller::Scheduler;
use rb_core::{PoolSpec, ScheduleSpec, Timing};
use serde_json::json;
use store::Store;
use tokio::sync::Notify;

struct Fixture {
    store: Arc<Store>,
    wake: Arc<Notify>,
    scheduler: Scheduler,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "rb-sched-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("rb.db")).await.unwrap());
    let wake = Arc::new(Notify::new());
    let scheduler = Scheduler::new(store.clone(), wake.clone());
    Fixture {
        store,
        wake,
        scheduler,
        dir,
    }
}

fn pool(name: &str, max: u32, target: u32, tags: &[(&str, &str)]) -> PoolSpec {
    PoolSpec::from_json(
        json!({"name": name, "mode": "vm", "vm_sizes": ["Standard_D4s_v5"],
               "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": max, "target": target,
               "tags": tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn schedule(v: serde_json::Value) -> ScheduleSpec {
    let s = ScheduleSpec::from_json(v.to_string().as_bytes()).unwrap();
    s.validate().unwrap();
    s
}

async fn bounds(store: &Store, name: &str) -> (u32, u32, u32) {
    let p = store.get_pool(name).await.unwrap().unwrap().spec;
    (p.min, p.max, p.target)
}

fn timing(s: &ScheduleSpec) -> Timing {
    Timing::new(&s.cron, &s.timezone).unwrap()
}

fn none() -> HashSet<String> {
    HashSet::new()
}

async fn woken(wake: &Notify) -> bool {
    tokio::time::timeout(Duration::from_secs(1), wake.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn catch_up_applies_the_latest_missed_firings_oldest_first() {
    let f = fixture().await;
    f.store
        .create_pool(&pool("maya", 10, 4, &[]))
        .await
        .unwrap();
    let night = schedule(
        json!({"name": "night", "pool": "maya", "cron": "0 20 * * *",
                                "timezone": "America/New_York", "set": {"max": 0}}),
    );
    let morning = schedule(
        json!({"name": "morning", "pool": "maya", "cron": "30 7 * * *",
                                  "timezone": "America/New_York", "set": {"max": 10, "target": 6}}),
    );
    let since = f.store.create_schedule(&night).await.unwrap().since;
    f.store.create_schedule(&morning).await.unwrap();

    // Nothing is owed for firings before the schedules existed.
    let report = f.scheduler.tick(since, &none()).await;
    assert_eq!(report.applied, vec![], "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    let first_night = timing(&night).next_after(since).unwrap();
    assert!(report.next_firing.is_some_and(|n| n <= first_night));

    // On time: the night's firing, once (after the morning's, if that came first).
    let first_morning = timing(&morning).next_after(since).unwrap();
    let mut expected = vec![("night".to_string(), first_night)];
    if first_morning < first_night {
        expected.insert(0, ("morning".to_string(), first_morning));
    }
    let report = f.scheduler.tick(first_night, &none()).await;
    assert_eq!(report.applied, expected);
    assert_eq!(bounds(&f.store, "maya").await, (0, 0, 0));
    assert!(woken(&f.wake).await, "the reconciler is woken");
    let again = f.scheduler.tick(first_night + 30, &none()).await;
    assert_eq!(again.applied, vec![], "a firing applies once");

    // Down for three days, back at 09:00: the latest night, then the latest morning.
    let back = timing(&morning)
        .next_after(first_night + 2 * 86_400)
        .unwrap()
        + 5400;
    let latest_night = timing(&night).latest_at_or_before(back).unwrap();
    let latest_morning = timing(&morning).latest_at_or_before(back).unwrap();
    assert!(latest_night < latest_morning);
    let report = f.scheduler.tick(back, &none()).await;
    assert_eq!(
        report.applied,
        vec![
            ("night".to_string(), latest_night),
            ("morning".to_string(), latest_morning)
        ]
    );
    assert_eq!(
        bounds(&f.store, "maya").await,
        (0, 10, 6),
        "the morning's wins"
    );
    let events = f.store.events_after(0, 1000).await.unwrap();
    let fired: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.kind == "pool.scheduled")
        .map(|e| (e.actor.as_str(), e.pool.as_deref().unwrap()))
        .collect();
    // The second night found the pool already at max 0: no change, so no pool event.
    let mut want = vec![("night", "maya"), ("morning", "maya")];
    if first_morning < first_night {
        want.insert(0, ("morning", "maya"));
    }
    assert_eq!(fired, want);
    assert!(
        !events.iter().any(|e| e.kind == "schedule.fired"),
        "a firing that changes nothing records no event: {events:?}"
    );
    let night_record = f.store.get_schedule("night").await.unwrap().unwrap();
    assert_eq!(night_record.last_fired_at, Some(latest_night));
    assert_eq!(
        night_record.last_outcome.as_deref(),
        Some("every pool was already there")
    );
    let last = events.last().unwrap();
    assert!(
        last.message.contains("max 0→10") && last.message.contains("target 0→6"),
        "{}",
        last.message
    );
    let record = f.store.get_schedule("morning").await.unwrap().unwrap();
    assert_eq!(record.last_fired_at, Some(latest_morning));
    assert_eq!(
        record.last_outcome.as_deref(),
        Some("set max=10 target=6 on maya")
    );
}

#[tokio::test]
async fn a_pool_reset_by_the_config_file_gets_the_current_firing_again() {
    let f = fixture().await;
    f.store
        .create_pool(&pool("maya", 10, 4, &[]))
        .await
        .unwrap();
    f.store
        .create_pool(&pool("nuke", 10, 4, &[]))
        .await
        .unwrap();
    let night = schedule(
        json!({"name": "night", "pool": "maya", "cron": "0 20 * * *",
                                "timezone": "Europe/London", "set": {"max": 0}}),
    );
    let since = f.store.create_schedule(&night).await.unwrap().since;
    let fired = timing(&night).next_after(since).unwrap();
    f.scheduler.tick(fired, &none()).await;
    assert_eq!(bounds(&f.store, "maya").await, (0, 0, 0));
    // The daemon restarts at 23:00 and the file puts max back to 10.
    f.store
        .replace_pool(&pool("maya", 10, 4, &[]))
        .await
        .unwrap();
    let restart = fired + 3 * 3600;
    let other: HashSet<String> = ["nuke".to_string()].into();
    assert_eq!(f.scheduler.tick(restart, &other).await.applied, vec![]);
    assert_eq!(bounds(&f.store, "maya").await, (0, 10, 4));
    let reset: HashSet<String> = ["maya".to_string()].into();
    let report = f.scheduler.tick(restart, &reset).await;
    assert_eq!(report.applied, vec![("night".to_string(), fired)]);
    assert_eq!(bounds(&f.store, "maya").await, (0, 0, 0));
    let last = f.store.events_after(0, 1000).await.unwrap();
    assert!(
        last.last().unwrap().message.contains("re-applied"),
        "{:?}",
        last.last()
    );
    // A schedule that has not applied its latest firing has nothing to re-apply.
    f.store
        .replace_pool(&pool("maya", 10, 4, &[]))
        .await
        .unwrap();
    f.store.delete_schedule("night").await.unwrap();
    let since = f.store.create_schedule(&night).await.unwrap().since;
    assert_eq!(f.scheduler.tick(since, &reset).await.applied, vec![]);
    assert_eq!(bounds(&f.store, "maya").await, (0, 10, 4));
}

#[tokio::test]
async fn tag_selectors_refusals_and_missing_pools() {
    let f = fixture().await;
    f.store
        .create_pool(&pool("maya", 10, 2, &[("show", "ep101")]))
        .await
        .unwrap();
    f.store
        .create_pool(&pool("nuke", 3, 0, &[("show", "ep101")]))
        .await
        .unwrap();
    f.store
        .create_pool(&pool("other", 10, 2, &[("show", "ep102")]))
        .await
        .unwrap();
    f.store
        .create_pool(&pool("leaving", 10, 2, &[("show", "ep101")]))
        .await
        .unwrap();
    f.store.mark_pool_deleting("leaving").await.unwrap();
    let warm = schedule(
        json!({"name": "warm", "pool_tag": {"show": "ep101"}, "cron": "0 0 7 * * *",
                               "timezone": "UTC", "set": {"min": 5}}),
    );
    let since = f.store.create_schedule(&warm).await.unwrap().since;
    let fired = timing(&warm).next_after(since).unwrap();
    let report = f.scheduler.tick(fired, &none()).await;
    assert_eq!(report.applied, vec![("warm".to_string(), fired)]);
    assert_eq!(bounds(&f.store, "maya").await, (5, 10, 5));
    assert_eq!(
        bounds(&f.store, "nuke").await,
        (0, 3, 0),
        "min 5 above max 3: left alone"
    );
    assert_eq!(bounds(&f.store, "other").await, (0, 10, 2), "not tagged");
    assert_eq!(
        bounds(&f.store, "leaving").await,
        (0, 10, 2),
        "being deleted"
    );
    let events = f.store.events_after(0, 1000).await.unwrap();
    let refused = events
        .iter()
        .find(|e| e.kind == "schedule.refused")
        .unwrap();
    assert_eq!(
        (refused.pool.as_deref(), refused.actor.as_str()),
        (Some("nuke"), "warm")
    );
    assert!(
        refused.message.contains("above the pool's max 3"),
        "{}",
        refused.message
    );
    let record = f.store.get_schedule("warm").await.unwrap().unwrap();
    assert_eq!(
        record.last_fired_at,
        Some(fired),
        "a refusal is not retried forever"
    );

    let gone = schedule(
        json!({"name": "gone", "pool": "nosuch", "cron": "0 0 7 * * *",
                               "timezone": "UTC", "set": {"max": 0}}),
    );
    f.store.create_schedule(&gone).await.unwrap();
    let report = f.scheduler.tick(fired + 86_400, &none()).await;
    assert!(
        report
            .applied
            .contains(&("gone".to_string(), fired + 86_400))
    );
    let event = f
        .store
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.actor == "gone")
        .unwrap();
    assert_eq!(event.kind, "schedule.fired");
    assert!(
        event.message.contains("does not exist"),
        "{}",
        event.message
    );
}
