//! The event log's queries (`Store::events`: newest N, one pool, since a time, paging both
//! ways), the decision event written with its intent, the journal's last word on a node, and
//! task counters.

use rb_core::ActionKind;
use rb_core::task::{Evictions, Task, TaskKey};
use store::{EventQuery, IntentOutcome, NewEvent, NewIntent, Store};

mod common;

use common::TempDir;

fn event(kind: &str, pool: Option<&str>, message: &str) -> NewEvent {
    NewEvent {
        kind: kind.to_string(),
        pool: pool.map(str::to_owned),
        node: None,
        actor: "controller".to_string(),
        message: message.to_string(),
        data: serde_json::json!({}),
    }
}

fn ids(events: &[store::Event]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn newest_n_one_pool_and_paging_both_ways() {
    let dir = TempDir::new("events");
    let store = Store::open(&dir.0.join("rb.db")).await.unwrap();
    let mut maya = Vec::new();
    let mut all = Vec::new();
    for i in 0..30 {
        let pool = if i % 3 == 0 { "houdini" } else { "maya" };
        let id = store
            .append_event(&event("vm.create", Some(pool), &format!("{i}")))
            .await
            .unwrap();
        all.push(id);
        if pool == "maya" {
            maya.push(id);
        }
    }
    let id = store
        .append_event(&event("token.created", None, "no pool"))
        .await
        .unwrap();
    all.push(id);

    // The newest 5, returned oldest first.
    let q = EventQuery {
        limit: 5,
        newest: true,
        ..Default::default()
    };
    assert_eq!(ids(&store.events(&q).await.unwrap()), all[all.len() - 5..]);
    // The oldest 5.
    let q = EventQuery {
        limit: 5,
        ..Default::default()
    };
    assert_eq!(ids(&store.events(&q).await.unwrap()), all[..5]);

    // One pool: newest 4, then the 4 before them.
    let q = EventQuery {
        pool: Some("maya".into()),
        limit: 4,
        newest: true,
        ..Default::default()
    };
    let page = store.events(&q).await.unwrap();
    assert_eq!(ids(&page), maya[maya.len() - 4..]);
    assert!(page.iter().all(|e| e.pool.as_deref() == Some("maya")));
    let back = store
        .events(&EventQuery {
            before: Some(page[0].id),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(ids(&back), maya[maya.len() - 8..maya.len() - 4]);
    // Forward from an id, one pool.
    let fwd = store
        .events(&EventQuery {
            after: Some(maya[2]),
            pool: Some("maya".into()),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&fwd), maya[3..6]);
    // A pool with no events.
    let none = store
        .events(&EventQuery {
            pool: Some("arnold".into()),
            limit: 10,
            newest: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());

    // Since: everything was written now, so a time in the future keeps nothing and one in
    // the past keeps everything.
    let at = store.events(&q).await.unwrap()[0].at;
    let later = store
        .events(&EventQuery {
            since: Some(at + 3600),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(later.is_empty());
    let earlier = store
        .events(&EventQuery {
            since: Some(at - 3600),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&earlier), all);
}

#[tokio::test]
async fn a_decision_event_is_written_with_its_intent() {
    let dir = TempDir::new("events");
    let store = Store::open(&dir.0.join("rb.db")).await.unwrap();
    let intent = NewIntent {
        pool: "maya".into(),
        node: "maya-00001".into(),
        kind: ActionKind::Delete,
        detail: serde_json::json!({"size": "Standard_D2s_v5"}),
        reason: "pool above desired".into(),
    };
    let mut decision = event("plan.delete", Some("maya"), "pool above desired");
    decision.node = Some("maya-00001".into());
    decision.data = serde_json::json!({"size": "Standard_D2s_v5"});
    let (intent_id, event_id) = store
        .open_intent_with_event(&intent, &decision)
        .await
        .unwrap();
    let open = store.open_intents().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, intent_id);
    let events = store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, event_id);
    assert_eq!(events[0].kind, "plan.delete");
    assert_eq!(
        events[0].data,
        serde_json::json!({"size": "Standard_D2s_v5", "intent": intent_id})
    );

    // The journal's last word on a node, open or closed.
    let last = store.last_intent_for("maya-00001").await.unwrap().unwrap();
    assert_eq!(
        (last.id, last.kind, last.outcome),
        (intent_id, ActionKind::Delete, None)
    );
    store
        .close_intent(intent_id, &IntentOutcome::Succeeded)
        .await
        .unwrap();
    let last = store.last_intent_for("maya-00001").await.unwrap().unwrap();
    assert_eq!(last.outcome, Some(IntentOutcome::Succeeded));
    assert!(store.last_intent_for("maya-00002").await.unwrap().is_none());
}

#[tokio::test]
async fn task_counters_count_across_reopen() {
    let dir = TempDir::new("events");
    let db = dir.0.join("rb.db");
    let store = Store::open(&db).await.unwrap();
    assert_eq!(
        store
            .bump_task_counter(&Task::evictions("maya"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .bump_task_counter(&Task::evictions("maya"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .bump_task_counter(&Task::evictions("arnold"))
            .await
            .unwrap(),
        1
    );
    store.close().await;
    let store = Store::open(&db).await.unwrap();
    assert_eq!(
        store
            .bump_task_counter(&Task::evictions("maya"))
            .await
            .unwrap(),
        3
    );
    let tasks = store.task_statuses().await.unwrap();
    let maya = tasks.raw(&TaskKey::Evictions("maya".into())).unwrap();
    assert_eq!(*maya, serde_json::json!({"total": 3}));
    assert_eq!(
        tasks.get(&Task::evictions("maya")),
        Some(Evictions { total: 3 })
    );
}
