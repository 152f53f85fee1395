//! The pools' backoff rows and reusable names against a real SQLite file: kept across a
//! reopen, replaced per (pool, kind), ended, read as a hold, and gone with their pool.

use std::collections::BTreeMap;

use rb_core::{ActionKind, Os, PoolMode, PoolSpec, Priority, ScaleDown, SpotSpec};
use store::{BackoffRow, Store};

mod common;

use common::TempDir;

fn spec(name: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        mode: PoolMode::Vm,
        vm_sizes: vec!["Standard_D4s_v5".to_string()],
        priority: Priority::Regular,
        spot: SpotSpec::default(),
        image: "Canonical:ubuntu-24_04-lts:server:latest".to_string(),
        os: Os::Linux,
        min: 0,
        max: 10,
        target: 0,
        idle_timeout_seconds: 900,
        scale_down_stabilization_seconds: 0,
        scale_down: ScaleDown::Deallocate,
        tags: BTreeMap::new(),
        bootstrap: None,
        batch: None,
        licenses: vec![],
    }
}

fn row(pool: &str, kind: ActionKind, streak: u32) -> BackoffRow {
    BackoffRow {
        pool: pool.to_string(),
        kind,
        streak,
        until: 2_000,
        permanent: true,
        code: "InvalidResourceReference".to_string(),
        condition: "Blocked: InvalidResourceReference: subnet x not found; fix: azure.subnet_id"
            .to_string(),
        generation: 1,
        open: false,
        since: 1_000,
    }
}

#[tokio::test]
async fn backoff_rows_survive_a_reopen_and_go_with_their_pool() {
    let dir = TempDir::new("backoff");
    {
        let store = Store::open(&dir.db()).await.unwrap();
        store.create_pool(&spec("maya")).await.unwrap();
        store.create_pool(&spec("nuke")).await.unwrap();
        store
            .put_backoff(&row("maya", ActionKind::Create, 1))
            .await
            .unwrap();
        // The same (pool, kind) again replaces the row; another kind is another row.
        let mut second = row("maya", ActionKind::Create, 2);
        second.until = 2_020;
        store.put_backoff(&second).await.unwrap();
        let mut delete = row("maya", ActionKind::Delete, 1);
        delete.permanent = false;
        delete.code = "InternalServerError".into();
        delete.condition = "BackingOff: deletes are failing".into();
        store.put_backoff(&delete).await.unwrap();
        store
            .put_backoff(&row("nuke", ActionKind::ResizePool, 3))
            .await
            .unwrap();
        // A pool that does not exist (deleted meanwhile) gets no row, and no error.
        store
            .put_backoff(&row("gone", ActionKind::Create, 1))
            .await
            .unwrap();
        store.close().await;
    }
    let store = Store::open(&dir.db()).await.unwrap();
    let all = store.list_backoffs(None).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let maya = store.list_backoffs(Some("maya")).await.unwrap();
    assert_eq!(maya.len(), 2);
    let create = maya.iter().find(|r| r.kind == ActionKind::Create).unwrap();
    assert_eq!(create.streak, 2);
    assert_eq!(create.until, 2_020);
    assert_eq!(create.since, 1_000);
    assert!(create.permanent && !create.open);
    let delete = maya.iter().find(|r| r.kind == ActionKind::Delete).unwrap();
    assert!(!delete.permanent);
    assert_eq!(delete.code, "InternalServerError");

    // The hold the planner gets: held until `until`, one probe after; an admin's change
    // (another generation) opens it at once, without changing the stored row.
    let hold = create.hold_at(1, 1_500);
    assert_eq!((hold.until, hold.probe), (2_020, Some(1)));
    assert_eq!(hold.condition, create.condition);
    let opened = create.hold_at(2, 1_500);
    assert_eq!((opened.until, opened.probe), (1_500, None));
    let mut reopened = create.clone();
    assert!(reopened.reopen(2, 1_500));
    store.put_backoff(&reopened).await.unwrap();
    let stored = store.list_backoffs(Some("maya")).await.unwrap();
    let stored = stored
        .iter()
        .find(|r| r.kind == ActionKind::Create)
        .unwrap();
    assert_eq!(
        (stored.generation, stored.until, stored.open),
        (2, 1_500, true)
    );
    assert_eq!(stored.hold_at(2, 1_600).probe, None);

    // A success ends one kind's streak only.
    assert!(
        store
            .delete_backoff("maya", ActionKind::Delete)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_backoff("maya", ActionKind::Delete)
            .await
            .unwrap()
    );
    assert_eq!(store.list_backoffs(Some("maya")).await.unwrap().len(), 1);

    // Reusable names: kept once each, lowest first, taken out when reused.
    for n in ["maya-00003", "maya-00001", "maya-00003"] {
        store.add_reusable_name("maya", n).await.unwrap();
    }
    store.add_reusable_name("gone", "gone-00001").await.unwrap();
    assert_eq!(
        store.reusable_names("maya").await.unwrap(),
        ["maya-00001", "maya-00003"]
    );
    store
        .take_reusable_names("maya", &["maya-00001".to_string()])
        .await
        .unwrap();
    assert_eq!(store.reusable_names("maya").await.unwrap(), ["maya-00003"]);
    assert!(store.reusable_names("gone").await.unwrap().is_empty());

    // The pool's rows go with it.
    store.remove_pool("maya").await.unwrap();
    assert!(store.list_backoffs(Some("maya")).await.unwrap().is_empty());
    assert!(store.reusable_names("maya").await.unwrap().is_empty());
    assert_eq!(store.list_backoffs(None).await.unwrap().len(), 1);
}

/// A plan's creates are accepted as the plan named them: reused names taken, fresh indexes
/// reserved in order; a plan made from an older `next_index` reserves nothing.
#[tokio::test]
async fn accepting_creates_reserves_the_plan_s_names_once() {
    let dir = TempDir::new("backoff");
    let store = Store::open(&dir.db()).await.unwrap();
    store.create_pool(&spec("maya")).await.unwrap();
    store.add_reusable_name("maya", "maya-00002").await.unwrap();
    let next = store.get_pool("maya").await.unwrap().unwrap().next_index;
    let fresh = |k: u64| rb_core::plan::node_name("maya", next + k);
    let names = ["maya-00002".to_string(), fresh(0), fresh(1)];
    let reused = store.accept_creates("maya", next, &names).await.unwrap();
    assert_eq!(reused, ["maya-00002"]);
    assert!(store.reusable_names("maya").await.unwrap().is_empty());
    assert_eq!(
        store.get_pool("maya").await.unwrap().unwrap().next_index,
        next + 2
    );

    // The same plan again (made from the old snapshot): refused, nothing reserved.
    let stale = store.accept_creates("maya", next, &[fresh(0)]).await;
    assert!(
        matches!(stale, Err(store::StoreError::Conflict { .. })),
        "{stale:?}"
    );
    // A fresh name out of order: refused too.
    let skipped = store.accept_creates("maya", next + 2, &[fresh(3)]).await;
    assert!(
        matches!(skipped, Err(store::StoreError::Conflict { .. })),
        "{skipped:?}"
    );
    assert_eq!(
        store.get_pool("maya").await.unwrap().unwrap().next_index,
        next + 2
    );
    assert!(
        store
            .accept_creates("maya", next + 2, &[])
            .await
            .unwrap()
            .is_empty()
    );
}
