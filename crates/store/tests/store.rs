//! The store against real SQLite files in temporary directories: every method, the one-daemon
//! lock, reopening, and concurrency.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rb_core::task::{ActivationStatus, BatchAccounts, Task, TaskKey};
use rb_core::{
    ActionKind, NodeState, Offering, Os, PoolMode, PoolSpec, Priority, ScaleDown, SpotSpec,
    Unavailable, UnavailableReason,
};
use store::{IntentOutcome, NewEvent, NewIntent, Store, StoreError, VmRecord};

mod common;

use common::TempDir;

async fn open(path: &Path) -> Store {
    Store::open(path).await.expect("open store")
}

fn spec(name: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        mode: PoolMode::Vm,
        vm_sizes: vec![
            "Standard_NC4as_T4_v3".to_string(),
            "Standard_NC8as_T4_v3".to_string(),
        ],
        priority: Priority::Spot,
        spot: SpotSpec::default(),
        image: "Canonical:ubuntu-24_04-lts:server:latest".to_string(),
        os: Os::Linux,
        min: 0,
        max: 50,
        target: 0,
        idle_timeout_seconds: 900,
        scale_down_stabilization_seconds: 0,
        scale_down: ScaleDown::Deallocate,
        tags: BTreeMap::from([("show".to_string(), "ep101".to_string())]),
        bootstrap: None,
        batch: None,
        licenses: vec![],
    }
}

fn vm(name: &str, pool: &str) -> VmRecord {
    VmRecord {
        name: name.to_string(),
        pool: pool.to_string(),
        size: "Standard_NC4as_T4_v3".to_string(),
        priority: Priority::Spot,
        state: NodeState::Creating,
        power_state: None,
        azure_id: None,
        failed_code: None,
        created_at: 1_000,
        started_at: None,
        deallocated_at: None,
        last_seen: None,
        last_heartbeat: None,
        busy: false,
        draining: false,
        registered_at: None,
        node_seen_at: None,
    }
}

fn event(kind: &str, message: &str) -> NewEvent {
    NewEvent {
        kind: kind.to_string(),
        pool: Some("maya".to_string()),
        node: None,
        actor: "controller".to_string(),
        message: message.to_string(),
        data: serde_json::json!({"n": 1}),
    }
}

#[tokio::test]
async fn pools_lifecycle() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;

    assert!(store.list_pools().await.unwrap().is_empty());
    assert_eq!(store.get_pool("maya").await.unwrap(), None);

    let created = store.create_pool(&spec("maya")).await.unwrap();
    assert_eq!(created.spec, spec("maya"));
    assert_eq!(created.generation, 1);
    assert!(!created.deleting);
    assert_eq!(created.next_index, 1);
    assert!(created.created_at > 0 && created.updated_at == created.created_at);

    let err = store.create_pool(&spec("maya")).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.to_string(), "pool \"maya\" already exists");

    let mut changed = spec("maya");
    changed.max = 10;
    changed.vm_sizes = vec!["Standard_D4s_v5".to_string()];
    let replaced = store.replace_pool(&changed).await.unwrap();
    assert_eq!(replaced.spec, changed);
    assert_eq!(replaced.generation, 2);
    assert_eq!(replaced.created_at, created.created_at);

    let err = store.replace_pool(&spec("nope")).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), "pool \"nope\" does not exist");

    let scaled = store.set_target("maya", 7).await.unwrap();
    assert_eq!(scaled.spec.target, 7);
    assert_eq!(scaled.spec.max, 10, "set_target changes only the target");
    assert_eq!(scaled.spec.vm_sizes, changed.vm_sizes);
    assert_eq!(scaled.generation, 3);
    assert!(
        store
            .set_target("nope", 1)
            .await
            .unwrap_err()
            .is_not_found()
    );

    store.create_pool(&spec("arnold")).await.unwrap();
    let names: Vec<String> = store
        .list_pools()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.spec.name)
        .collect();
    assert_eq!(names, ["arnold", "maya"]);
    assert_eq!(store.get_pool("maya").await.unwrap(), Some(scaled.clone()));

    let deleting = store.mark_pool_deleting("maya").await.unwrap();
    assert!(deleting.deleting);
    assert_eq!(deleting.generation, 4);
    // Idempotent: a second mark changes nothing.
    assert_eq!(store.mark_pool_deleting("maya").await.unwrap(), deleting);
    assert!(
        store
            .mark_pool_deleting("nope")
            .await
            .unwrap_err()
            .is_not_found()
    );
    // A pool being deleted cannot be changed or re-created.
    let err = store.set_target("maya", 1).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.to_string(), "pool \"maya\" is being deleted");
    assert!(
        store
            .replace_pool(&spec("maya"))
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(
        store
            .create_pool(&spec("maya"))
            .await
            .unwrap_err()
            .is_conflict()
    );

    store.upsert_vm(&vm("maya-00001", "maya")).await.unwrap();
    store
        .upsert_vm(&vm("arnold-00001", "arnold"))
        .await
        .unwrap();
    store.remove_pool("maya").await.unwrap();
    assert_eq!(store.get_pool("maya").await.unwrap(), None);
    assert!(
        store.list_vms(Some("maya")).await.unwrap().is_empty(),
        "its vms go with it"
    );
    assert_eq!(
        store.list_vms(None).await.unwrap().len(),
        1,
        "other pools' vms stay"
    );
    assert!(store.remove_pool("maya").await.unwrap_err().is_not_found());

    // The name is free again.
    assert_eq!(
        store.create_pool(&spec("maya")).await.unwrap().generation,
        1
    );
    store.check_integrity().await.unwrap();
}

#[tokio::test]
async fn node_indexes_are_reserved_once() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("maya")).await.unwrap();

    assert_eq!(store.reserve_node_indexes("maya", 3).await.unwrap(), 1);
    assert_eq!(store.reserve_node_indexes("maya", 2).await.unwrap(), 4);
    assert_eq!(store.reserve_node_indexes("maya", 0).await.unwrap(), 6);
    assert_eq!(store.get_pool("maya").await.unwrap().unwrap().next_index, 6);
    assert!(
        store
            .reserve_node_indexes("nope", 1)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Reserving indexes is not a change of desired state.
    assert_eq!(store.get_pool("maya").await.unwrap().unwrap().generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_overlap() {
    let dir = TempDir::new("test");
    let store = Arc::new(open(&dir.db()).await);
    store.create_pool(&spec("maya")).await.unwrap();

    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let n = i % 4 + 1;
                let first = store.reserve_node_indexes("maya", n).await.unwrap();
                (first..first + n).collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for index in task.await.unwrap() {
            assert!(seen.insert(index), "index {index} handed out twice");
            total += 1;
        }
    }
    // Contiguous from 1, no gaps, and next_index just past them.
    assert_eq!(seen, (1..=total).collect::<HashSet<u64>>());
    assert_eq!(
        store.get_pool("maya").await.unwrap().unwrap().next_index,
        total + 1
    );
    store.check_integrity().await.unwrap();
}

#[tokio::test]
async fn inventory() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("maya")).await.unwrap();
    store.create_pool(&spec("arnold")).await.unwrap();

    let err = store
        .upsert_vm(&vm("ghost-00001", "ghost"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "a vm needs its pool: {err:?}");

    let mut a = vm("maya-00002", "maya");
    store.upsert_vm(&a).await.unwrap();
    store.upsert_vm(&vm("maya-00001", "maya")).await.unwrap();
    store
        .upsert_vm(&vm("arnold-00001", "arnold"))
        .await
        .unwrap();
    assert_eq!(store.get_vm("maya-00002").await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_vm("nope").await.unwrap(), None);

    let names = |vms: Vec<VmRecord>| vms.into_iter().map(|v| v.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_vms(Some("maya")).await.unwrap()),
        ["maya-00001", "maya-00002"]
    );
    assert_eq!(
        names(store.list_vms(None).await.unwrap()),
        ["arnold-00001", "maya-00001", "maya-00002"]
    );
    assert!(store.list_vms(Some("nope")).await.unwrap().is_empty());

    // Heartbeat and drain belong to the node API.
    store
        .set_heartbeat("maya-00002", true, 5_000)
        .await
        .unwrap();
    store.set_draining("maya-00002", true).await.unwrap();
    let err = store.set_heartbeat("nope", false, 5_000).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "vm \"nope\" does not exist");
    assert!(
        store
            .set_draining("nope", true)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // An upsert from the controller's view replaces everything else and keeps those.
    a.state = NodeState::Running;
    a.power_state = Some("PowerState/running".to_string());
    a.azure_id = Some(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/maya-00002"
            .into(),
    );
    a.failed_code = Some("none".to_string());
    a.started_at = Some(2_000);
    a.deallocated_at = Some(1_500);
    a.last_seen = Some(2_100);
    a.size = "Standard_NC8as_T4_v3".to_string();
    a.priority = Priority::Regular;
    a.last_heartbeat = None;
    a.busy = false;
    a.draining = false;
    store.upsert_vm(&a).await.unwrap();
    let stored = store.get_vm("maya-00002").await.unwrap().unwrap();
    assert_eq!(
        stored,
        VmRecord {
            last_heartbeat: Some(5_000),
            busy: true,
            draining: true,
            registered_at: None,
            node_seen_at: None,
            ..a.clone()
        },
        "upsert keeps heartbeat, busy and draining"
    );

    store
        .set_heartbeat("maya-00002", false, 6_000)
        .await
        .unwrap();
    store.set_draining("maya-00002", false).await.unwrap();
    let stored = store.get_vm("maya-00002").await.unwrap().unwrap();
    assert_eq!(
        (stored.last_heartbeat, stored.busy, stored.draining),
        (Some(6_000), false, false)
    );

    // A new row takes those fields from the record.
    let fresh = VmRecord {
        last_heartbeat: Some(7),
        busy: true,
        draining: true,
        registered_at: None,
        node_seen_at: None,
        ..vm("maya-00003", "maya")
    };
    store.upsert_vm(&fresh).await.unwrap();
    assert_eq!(store.get_vm("maya-00003").await.unwrap(), Some(fresh));

    // Every state round-trips.
    for state in [
        NodeState::Creating,
        NodeState::Starting,
        NodeState::Running,
        NodeState::Stopped,
        NodeState::Deallocating,
        NodeState::Deallocated,
        NodeState::Deleting,
        NodeState::Failed,
        NodeState::Missing,
    ] {
        let v = VmRecord {
            state,
            ..vm("maya-00009", "maya")
        };
        store.upsert_vm(&v).await.unwrap();
        assert_eq!(
            store.get_vm("maya-00009").await.unwrap().unwrap().state,
            state
        );
    }

    assert!(store.delete_vm("maya-00001").await.unwrap());
    assert!(
        !store.delete_vm("maya-00001").await.unwrap(),
        "deleting again is a no-op"
    );
    assert_eq!(store.get_vm("maya-00001").await.unwrap(), None);
}

#[tokio::test]
async fn intent_journal() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;

    let new = |node: &str, kind| NewIntent {
        pool: "maya".to_string(),
        node: node.to_string(),
        kind,
        detail: serde_json::json!({"size": "Standard_NC4as_T4_v3", "priority": "spot"}),
        reason: "scale up: 0 of 3 running".to_string(),
    };
    let a = store
        .open_intent(&new("maya-00001", ActionKind::Create))
        .await
        .unwrap();
    let b = store
        .open_intent(&new("maya-00002", ActionKind::Deallocate))
        .await
        .unwrap();
    let c = store
        .open_intent(&new("maya-00003", ActionKind::Delete))
        .await
        .unwrap();
    let d = store
        .open_intent(&new("maya-00004", ActionKind::Start))
        .await
        .unwrap();
    assert!(a < b && b < c && c < d);

    let op = serde_json::json!({"url": "https://management.azure.com/operations/1", "kind": "azure-async"});
    store.set_intent_operation(a, &op).await.unwrap();
    assert!(
        store
            .set_intent_operation(999, &op)
            .await
            .unwrap_err()
            .is_not_found()
    );

    let open = store.open_intents().await.unwrap();
    assert_eq!(open.iter().map(|i| i.id).collect::<Vec<_>>(), [a, b, c, d]);
    let first = &open[0];
    assert_eq!(first.pool, "maya");
    assert_eq!(first.node, "maya-00001");
    assert_eq!(first.kind, ActionKind::Create);
    assert_eq!(first.detail["size"], "Standard_NC4as_T4_v3");
    assert_eq!(first.reason, "scale up: 0 of 3 running");
    assert_eq!(first.operation, Some(op.clone()));
    assert!(first.opened_at > 0);
    assert_eq!((first.closed_at, &first.outcome), (None, &None));
    assert_eq!(open[1].operation, None);

    store
        .close_intent(a, &IntentOutcome::Succeeded)
        .await
        .unwrap();
    let failed = IntentOutcome::Failed {
        code: "AllocationFailed".into(),
        message: "no capacity".into(),
    };
    store.close_intent(b, &failed).await.unwrap();
    let abandoned = IntentOutcome::Abandoned {
        why: "not found after restart".into(),
    };
    store.close_intent(c, &abandoned).await.unwrap();

    let err = store
        .close_intent(a, &IntentOutcome::Succeeded)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.to_string(), format!("intent {a} is already closed"));
    assert!(
        store
            .set_intent_operation(a, &op)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(
        store
            .close_intent(999, &IntentOutcome::Succeeded)
            .await
            .unwrap_err()
            .is_not_found()
    );

    assert_eq!(
        store
            .open_intents()
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        [d]
    );

    let recent = store.recent_intents(3).await.unwrap();
    assert_eq!(
        recent.iter().map(|i| i.id).collect::<Vec<_>>(),
        [d, c, b],
        "newest first"
    );
    assert_eq!(recent[0].outcome, None);
    assert_eq!(recent[1].outcome, Some(abandoned));
    assert_eq!(recent[2].outcome, Some(failed));
    assert!(recent[1].closed_at.is_some());
    let all = store.recent_intents(100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].outcome, Some(IntentOutcome::Succeeded));
    assert_eq!(all[3].kind, ActionKind::Create);
    assert_eq!(all[2].kind, ActionKind::Deallocate);
}

#[tokio::test]
async fn events_append_page_and_trim() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;

    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            store
                .append_event(&event("vm.create", &format!("created {i}")))
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let page = store.events_after(0, 4).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..4]);
    let e = &page[0];
    assert_eq!(
        (e.kind.as_str(), e.pool.as_deref(), e.node.as_deref()),
        ("vm.create", Some("maya"), None)
    );
    assert_eq!(
        (e.actor.as_str(), e.message.as_str()),
        ("controller", "created 0")
    );
    assert_eq!(e.data, serde_json::json!({"n": 1}));
    assert!(e.at > 0);
    let next = store.events_after(page[3].id, 100).await.unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), ids[4..]);
    assert!(store.events_after(ids[9], 10).await.unwrap().is_empty());

    assert_eq!(store.trim_events(3).await.unwrap(), 7);
    assert_eq!(
        store
            .events_after(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        ids[7..]
    );
    assert_eq!(
        store.trim_events(3).await.unwrap(),
        0,
        "already within the bound"
    );
    assert_eq!(store.trim_events(100).await.unwrap(), 0);

    // Ids are never reused after a trim, so `after=` cursors stay valid.
    assert_eq!(store.trim_events(0).await.unwrap(), 3);
    assert!(store.events_after(0, 100).await.unwrap().is_empty());
    let id = store
        .append_event(&event("pool.created", "again"))
        .await
        .unwrap();
    assert!(id > ids[9]);
}

#[tokio::test]
async fn unavailable_offerings_expire() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    let entry = |size: &str, priority, reason, until| Unavailable {
        offering: Offering::new(size, priority),
        reason,
        code: "AllocationFailed".to_string(),
        since: 100,
        until,
    };

    store
        .set_unavailable(&entry(
            "Standard_NC4as_T4_v3",
            Priority::Spot,
            UnavailableReason::Capacity,
            3_700,
        ))
        .await
        .unwrap();
    store
        .set_unavailable(&entry(
            "Standard_NC4as_T4_v3",
            Priority::Regular,
            UnavailableReason::Quota,
            700,
        ))
        .await
        .unwrap();
    store
        .set_unavailable(&entry(
            "Standard_D4s_v5",
            Priority::Spot,
            UnavailableReason::SkuNotAvailable,
            90_000,
        ))
        .await
        .unwrap();

    let listed = store.list_unavailable(500).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0].offering,
        Offering::new("standard_d4s_v5", Priority::Spot)
    );
    assert_eq!(listed[0].reason, UnavailableReason::SkuNotAvailable);
    assert_eq!(
        listed[1],
        entry(
            "standard_nc4as_t4_v3",
            Priority::Regular,
            UnavailableReason::Quota,
            700
        )
    );

    // Setting again (any casing) replaces the entry.
    let mut longer = entry(
        "STANDARD_NC4AS_T4_V3",
        Priority::Regular,
        UnavailableReason::Capacity,
        800,
    );
    longer.offering.size = "STANDARD_NC4AS_T4_V3".to_string();
    store.set_unavailable(&longer).await.unwrap();
    let listed = store.list_unavailable(500).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1].until, 800);
    assert_eq!(listed[1].reason, UnavailableReason::Capacity);
    assert_eq!(listed[1].offering.size, "standard_nc4as_t4_v3");

    // until == now has expired; expired entries are gone for good.
    let listed = store.list_unavailable(800).await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.until).collect::<Vec<_>>(),
        [90_000, 3_700]
    );
    assert_eq!(
        store.list_unavailable(0).await.unwrap().len(),
        2,
        "expired rows were deleted"
    );
}

#[tokio::test]
async fn task_statuses_and_owner_id() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;

    assert!(store.task_statuses().await.unwrap().is_empty());
    let activation = |number| ActivationStatus {
        number,
        ..Default::default()
    };
    let accounts = BatchAccounts {
        observed_at: 5,
        default_resource_group: "rg".into(),
        accounts: vec!["rg/acct".into()],
    };
    store
        .put_task_status(&Task::reconciler(), &activation(1))
        .await
        .unwrap();
    store
        .put_task_status(&Task::batch_accounts(), &accounts)
        .await
        .unwrap();
    store
        .put_task_status(&Task::reconciler(), &activation(2))
        .await
        .unwrap();
    let statuses = store.task_statuses().await.unwrap();
    let rows = statuses.rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0].key, &rows[0].status),
        (
            &TaskKey::BatchAccounts,
            &serde_json::json!({"observed_at": 5, "default_resource_group": "rg", "accounts": ["rg/acct"]})
        )
    );
    assert_eq!(rows[1].key, TaskKey::Reconciler);
    assert_eq!(rows[1].status["number"], 2);
    assert!(rows[1].updated_at > 0);
    assert_eq!(statuses.get(&Task::reconciler()).map(|s| s.number), Some(2));
    let (one, at) = store
        .task_status(&Task::batch_accounts())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((one, at), (accounts, rows[0].updated_at));
    assert!(
        store
            .task_status(&Task::scheduler())
            .await
            .unwrap()
            .is_none()
    );
    // A status of any shape, as an older version may have stored it, is kept as it is and
    // does not read as the type.
    store
        .put_task_json(&TaskKey::Scheduler, &serde_json::json!({"removed": 0}))
        .await
        .unwrap();
    let statuses = store.task_statuses().await.unwrap();
    assert_eq!(
        statuses.raw(&TaskKey::Scheduler),
        Some(&serde_json::json!({"removed": 0}))
    );
    assert!(
        store
            .task_status(&Task::scheduler())
            .await
            .unwrap()
            .is_none()
    );
    store
        .delete_task_status(&Task::batch_accounts())
        .await
        .unwrap();
    assert!(
        store
            .task_status(&Task::batch_accounts())
            .await
            .unwrap()
            .is_none()
    );

    let owner = store.owner_id().await.unwrap();
    assert_eq!(owner.len(), 36, "a uuid: {owner}");
    assert_eq!(store.owner_id().await.unwrap(), owner, "generated once");
}

#[tokio::test]
async fn tokens() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    let hash = |c: char| c.to_string().repeat(64);

    let ci = store
        .insert_token("ci", "requester", &hash('a'))
        .await
        .unwrap();
    assert_eq!((ci.name.as_str(), ci.role.as_str()), ("ci", "requester"));
    assert_eq!(ci.token_hash, hash('a'));
    assert!(ci.created_at > 0);
    store
        .insert_token("admin", "admin", &hash('b'))
        .await
        .unwrap();

    let err = store
        .insert_token("ci", "viewer", &hash('c'))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(err.to_string(), "token \"ci\" already exists");
    let err = store
        .insert_token("other", "viewer", &hash('a'))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(err.to_string(), "a token with the same hash already exists");

    assert_eq!(
        store.find_token_by_hash(&hash('a')).await.unwrap(),
        Some(ci.clone())
    );
    assert_eq!(store.find_token_by_hash(&hash('z')).await.unwrap(), None);
    let names: Vec<String> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["admin", "ci"]);

    store.delete_token("ci").await.unwrap();
    assert_eq!(store.find_token_by_hash(&hash('a')).await.unwrap(), None);
    let err = store.delete_token("ci").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "token \"ci\" does not exist");

    // Lookups are served from memory: a token created after a lookup missed is found, and
    // one revoked after a lookup hit is not.
    assert_eq!(store.find_token_by_hash(&hash('d')).await.unwrap(), None);
    store
        .insert_token("late", "viewer", &hash('d'))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_token_by_hash(&hash('d'))
            .await
            .unwrap()
            .map(|t| t.name),
        Some("late".to_string())
    );
    store.delete_token("late").await.unwrap();
    assert_eq!(store.find_token_by_hash(&hash('d')).await.unwrap(), None);
}

#[tokio::test]
async fn one_daemon_per_database() {
    let dir = TempDir::new("test");
    let db = dir.db();
    let first = open(&db).await;

    let err = Store::open(&db).await.unwrap_err();
    let StoreError::Locked { path, pid } = &err else {
        panic!("expected Locked, got {err:?}")
    };
    assert_eq!(path, &db);
    assert_eq!(
        *pid,
        Some(std::process::id()),
        "the lock file names the holder"
    );
    let message = err.to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(
        message.contains("is locked by another running renderburst daemon"),
        "{message}"
    );
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    assert!(
        message.contains("stop it or use a different [store] url"),
        "{message}"
    );

    // Through the config's url too.
    let url = format!("sqlite://{}", db.display());
    assert!(matches!(
        Store::open_url(&url).await,
        Err(StoreError::Locked { .. })
    ));

    // Dropping the holder releases the lock at once.
    drop(first);
    let second = open(&db).await;
    second.close().await;
    let third = open(&db).await;
    third.ping().await.unwrap();
}

/// The environment variable that makes [`hold_lock_in_child`] hold a database.
const HOLD_ENV: &str = "RENDERBURST_STORE_TEST_HOLD";

/// Run only as a child process by [`a_killed_daemon_releases_the_lock`]: opens the database,
/// says so, and waits to be killed.
#[tokio::test]
#[ignore = "run as a child process by a_killed_daemon_releases_the_lock"]
async fn hold_lock_in_child() {
    let Some(db) = std::env::var_os(HOLD_ENV) else {
        return;
    };
    let _store = open(Path::new(&db)).await;
    println!("holding");
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_killed_daemon_releases_the_lock() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = TempDir::new("test");
    let db = dir.db();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "hold_lock_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let holding = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("holding"));
    assert!(holding, "the child never opened the database");

    let err = Store::open(&db).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { pid: Some(pid), .. } if pid == child.id()),
        "expected Locked by the child: {err:?}"
    );

    // SIGKILL: no destructor runs; the kernel drops the lock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    let store = open(&db).await;
    store.check_integrity().await.unwrap();
}

#[tokio::test]
async fn data_survives_reopen_and_migrations_are_idempotent() {
    let dir = TempDir::new("test");
    let db = dir.db();

    let store = open(&db).await;
    let owner = store.owner_id().await.unwrap();
    store.create_pool(&spec("maya")).await.unwrap();
    store.set_target("maya", 4).await.unwrap();
    store.reserve_node_indexes("maya", 4).await.unwrap();
    store.upsert_vm(&vm("maya-00001", "maya")).await.unwrap();
    store.set_heartbeat("maya-00001", true, 42).await.unwrap();
    let intent = store
        .open_intent(&NewIntent {
            pool: "maya".into(),
            node: "maya-00001".into(),
            kind: ActionKind::Create,
            detail: serde_json::json!({}),
            reason: "r".into(),
        })
        .await
        .unwrap();
    store
        .append_event(&event("pool.created", "made"))
        .await
        .unwrap();
    store.insert_token("ci", "viewer", "ab").await.unwrap();
    store.close().await;

    for _ in 0..2 {
        let store = open(&db).await;
        assert_eq!(store.owner_id().await.unwrap(), owner);
        let pool = store.get_pool("maya").await.unwrap().unwrap();
        assert_eq!(
            (pool.spec.target, pool.generation, pool.next_index),
            (4, 2, 5)
        );
        let v = store.get_vm("maya-00001").await.unwrap().unwrap();
        assert_eq!((v.last_heartbeat, v.busy), (Some(42), true));
        assert_eq!(store.open_intents().await.unwrap()[0].id, intent);
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1);
        assert!(store.find_token_by_hash("ab").await.unwrap().is_some());
        store.check_integrity().await.unwrap();
        store.close().await;
    }

    // Exactly one row per migration: reopening applied nothing twice.
    let applied = store_migrations(&db).await;
    assert_eq!(applied, store::MIGRATOR.iter().count());
}

/// Counts the applied migrations with a plain connection (the test's own SQL, read-only).
async fn store_migrations(db: &Path) -> usize {
    use sqlx::ConnectOptions;
    use sqlx::Connection;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    count as usize
}

#[tokio::test]
async fn urls() {
    assert_eq!(
        store::path_from_url("sqlite://renderburst.db").unwrap(),
        PathBuf::from("renderburst.db")
    );
    assert_eq!(
        store::path_from_url("sqlite:data/rb.db").unwrap(),
        PathBuf::from("data/rb.db")
    );
    assert_eq!(
        store::path_from_url("sqlite:///var/lib/rb/rb.db").unwrap(),
        PathBuf::from("/var/lib/rb/rb.db")
    );
    for bad in [
        "postgres://x",
        "renderburst.db",
        "sqlite://",
        "sqlite://rb.db?mode=rwc",
        "sqlite::memory:",
    ] {
        let err = store::path_from_url(bad).unwrap_err();
        assert!(matches!(err, StoreError::BadUrl { .. }), "{bad}: {err:?}");
        assert!(err.to_string().starts_with("[store] url"), "{err}");
    }
    assert_eq!(
        store::lock_path(Path::new("/x/rb.db")),
        PathBuf::from("/x/rb.db.lock")
    );

    let dir = TempDir::new("test");
    let store = Store::open_url(&format!("sqlite://{}", dir.db().display()))
        .await
        .unwrap();
    assert_eq!(store.path(), dir.db());
    assert!(dir.0.join("renderburst.db.lock").exists());
}

#[tokio::test]
async fn corrupt_rows_are_reported() {
    let dir = TempDir::new("test");
    let db = dir.db();
    let store = open(&db).await;
    store.create_pool(&spec("maya")).await.unwrap();
    store.close().await;

    // Break a row behind the store's back, without its lock.
    {
        use sqlx::ConnectOptions;
        use sqlx::Connection;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .unwrap();
        sqlx::query("UPDATE pools SET spec = '{not json'")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let store = open(&db).await;
    let err = store.get_pool("maya").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("corrupt row: pools.spec"),
        "{err}"
    );
}

#[tokio::test]
async fn node_requests_count_until_released_or_expired() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    let mut maya = spec("maya");
    maya.min = 1;
    maya.max = 10;
    maya.target = 2;
    store.create_pool(&maya).await.unwrap();
    store.create_pool(&spec("blender")).await.unwrap();
    let t0 = 1_000_000;
    let record = store.get_pool("maya").await.unwrap().unwrap();
    assert_eq!(store.desired(&record, t0).await.unwrap(), 2, "target alone");

    let a = store
        .create_request("maya", 3, 1, "deadline", Some("shot-010"), "test", None, t0)
        .await
        .unwrap();
    assert_eq!(a.id.len(), 36);
    assert_eq!(
        (
            a.pool.as_str(),
            a.count,
            a.requester.as_str(),
            a.job.as_deref()
        ),
        ("maya", 3, "deadline", Some("shot-010"))
    );
    assert_eq!(
        (a.created_at, a.expires_at, a.ttl_seconds()),
        (t0, t0 + 1, 1)
    );
    assert_eq!((a.released_at, a.released_by.as_deref()), (None, None));
    let b = store
        .create_request("maya", 4, 3600, "royal", None, "test", None, t0)
        .await
        .unwrap();
    store
        .create_request("blender", 5, 3600, "opencue", None, "test", None, t0)
        .await
        .unwrap();
    assert_ne!(a.id, b.id);

    assert_eq!(store.live_request_sum("maya", t0).await.unwrap(), 7);
    assert_eq!(store.live_request_sum("blender", t0).await.unwrap(), 5);
    assert_eq!(store.live_request_sum("nosuch", t0).await.unwrap(), 0);
    assert_eq!(
        store.desired(&record, t0).await.unwrap(),
        7,
        "max(target, requests)"
    );
    // The plan counts them too (controller and what-if alike).
    let plan = store
        .vm_snapshot(&record, &Default::default(), t0)
        .await
        .unwrap()
        .plan(&record.spec, &rb_core::CreateGate::open(), t0);
    assert_eq!(plan.desired, 7);

    // Expiry: `expires_at > now` is live; at expires_at it stops counting, nobody writing.
    assert_eq!(store.live_request_sum("maya", t0 + 1).await.unwrap(), 4);
    assert_eq!(store.desired(&record, t0 + 1).await.unwrap(), 4);
    let live: Vec<String> = store
        .list_requests(Some("maya"), false, t0 + 1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, [b.id.as_str()]);
    let all = store
        .list_requests(Some("maya"), true, t0 + 1)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(!all[0].is_live(t0 + 1) && all[1].is_live(t0 + 1));
    assert_eq!(store.list_requests(None, false, t0).await.unwrap().len(), 3);

    // Release: stops counting at once; again is harmless and keeps the first release.
    let released = store
        .release_request(&b.id, "farm-manager", t0 + 5)
        .await
        .unwrap();
    assert_eq!(
        (released.released_at, released.released_by.as_deref()),
        (Some(t0 + 5), Some("farm-manager"))
    );
    assert_eq!(store.live_request_sum("maya", t0 + 2).await.unwrap(), 0);
    let again = store.release_request(&b.id, "other", t0 + 9).await.unwrap();
    assert_eq!(again, released);
    assert_eq!(store.get_request(&b.id).await.unwrap(), Some(released));
    // Below min and target, the spec still rules.
    assert_eq!(store.desired(&record, t0 + 6).await.unwrap(), 2);
    let err = store.release_request("nope", "x", t0).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Clamped to max however much is asked.
    store
        .create_request("maya", 10, 60, "deadline", None, "test", None, t0)
        .await
        .unwrap();
    store
        .create_request("maya", 10, 60, "deadline", None, "test", None, t0)
        .await
        .unwrap();
    assert_eq!(store.live_request_sum("maya", t0).await.unwrap(), 23);
    assert_eq!(store.desired(&record, t0).await.unwrap(), 10);

    // Unknown and deleting pools take no requests; zero counts are refused.
    let err = store
        .create_request("nosuch", 1, 60, "x", None, "test", None, t0)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        store
            .create_request("maya", 0, 60, "x", None, "test", None, t0)
            .await
            .unwrap_err()
            .is_conflict()
    );
    let deleting = store.mark_pool_deleting("maya").await.unwrap();
    assert_eq!(store.desired(&deleting, t0).await.unwrap(), 0);
    let err = store
        .create_request("maya", 1, 60, "x", None, "test", None, t0)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");

    // Pruning takes only ended requests; removing a pool takes its requests.
    assert_eq!(store.prune_requests(t0 + 100).await.unwrap(), 4);
    assert_eq!(store.list_requests(None, true, t0).await.unwrap().len(), 1);
    store.remove_pool("maya").await.unwrap();
    store.remove_pool("blender").await.unwrap();
    assert!(
        store
            .list_requests(None, true, t0)
            .await
            .unwrap()
            .is_empty()
    );
    store.check_integrity().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_are_never_lost() {
    let dir = TempDir::new("test");
    let store = Arc::new(open(&dir.db()).await);
    store.create_pool(&spec("maya")).await.unwrap();
    let t0 = 2_000_000;
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut kept = 0u64;
            for j in 0..5u32 {
                let r = store
                    .create_request(
                        "maya",
                        1 + (i + j) % 3,
                        600,
                        &format!("rm-{i}"),
                        None,
                        "test",
                        None,
                        t0,
                    )
                    .await
                    .unwrap();
                if j % 2 == 0 {
                    store.release_request(&r.id, "x", t0).await.unwrap();
                } else {
                    kept += u64::from(r.count);
                }
            }
            kept
        }));
    }
    let mut expected = 0;
    for t in tasks {
        expected += t.await.unwrap();
    }
    assert_eq!(store.live_request_sum("maya", t0).await.unwrap(), expected);
    assert_eq!(
        store.list_requests(None, true, t0).await.unwrap().len(),
        200
    );
    assert_eq!(
        store.list_requests(None, false, t0).await.unwrap().len(),
        80
    );
}

#[tokio::test]
async fn batch_state_round_trips_and_goes_with_its_pool() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("maya")).await.unwrap();
    assert_eq!(store.get_batch_state("maya").await.unwrap(), None);
    let state = store::BatchState {
        pool: "maya".into(),
        observed_at: Some(1_800_000_000),
        observed: Some(rb_core::BatchPoolView {
            owned: true,
            deleting: false,
            steady: false,
            targets: rb_core::BatchTargets {
                dedicated: 2,
                spot: 8,
            },
            current: rb_core::BatchTargets {
                dedicated: 2,
                spot: 3,
            },
            resize_errors: vec![rb_core::ResizeErrorView {
                code: "AccountLowPriorityCoreQuotaReached".into(),
                message: "quota".into(),
            }],
        }),
        account_endpoint: Some("rbfarm.westeurope.batch.azure.com".into()),
        empty_since: None,
        reported_resize: Some("2026-11-29T08:00:00Z".into()),
        unavailable: vec![Unavailable::new(
            Offering::new("Standard_D4s_v5", Priority::Spot),
            UnavailableReason::Quota,
            "AccountLowPriorityCoreQuotaReached",
            1_800_000_000,
        )],
        preempted_total: 3,
    };
    store.put_batch_state(&state).await.unwrap();
    assert_eq!(
        store.get_batch_state("maya").await.unwrap(),
        Some(state.clone())
    );
    // Overwrites every column; a Batch pool that went away is None.
    let gone = store::BatchState {
        observed: None,
        empty_since: Some(1_800_000_100),
        ..state.clone()
    };
    store.put_batch_state(&gone).await.unwrap();
    assert_eq!(store.get_batch_state("maya").await.unwrap(), Some(gone));
    let orphan = store::BatchState {
        pool: "nope".into(),
        ..state
    };
    assert!(matches!(
        store.put_batch_state(&orphan).await,
        Err(StoreError::NotFound { .. })
    ));
    store.remove_pool("maya").await.unwrap();
    assert_eq!(store.get_batch_state("maya").await.unwrap(), None);
}

fn schedule(name: &str, pool: &str, max: u32) -> rb_core::ScheduleSpec {
    rb_core::ScheduleSpec {
        name: name.to_string(),
        pool: Some(pool.to_string()),
        pool_tag: None,
        cron: "0 20 * * MON-FRI".to_string(),
        timezone: "Europe/London".to_string(),
        set: rb_core::ScheduleSet {
            min: None,
            max: Some(max),
            target: None,
        },
    }
}

#[tokio::test]
async fn schedules_lifecycle_and_firings_apply_once() {
    use store::{FiringOutcome, PoolBoundsUpdate, PutOutcome};
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    let changes = store.schedule_changes();
    let night = schedule("night", "maya", 0);
    let created = store.create_schedule(&night).await.unwrap();
    assert_eq!(created.spec, night);
    assert_eq!(created.last_fired_at, None);
    assert_eq!(created.floor(), created.since);
    // The scheduler hears of it.
    tokio::time::timeout(std::time::Duration::from_secs(2), changes.notified())
        .await
        .expect("a change notification");
    assert!(
        store
            .create_schedule(&night)
            .await
            .unwrap_err()
            .is_conflict()
    );
    // The config's upsert: unchanged, then replaced.
    assert_eq!(
        store.put_schedule(&night).await.unwrap().1,
        PutOutcome::Unchanged
    );
    let mut edited = night.clone();
    edited.cron = "0 21 * * MON-FRI".into();
    let (record, outcome) = store.put_schedule(&edited).await.unwrap();
    assert_eq!(
        (outcome, record.spec.cron.as_str()),
        (PutOutcome::Replaced, "0 21 * * MON-FRI")
    );
    assert_eq!(
        store
            .put_schedule(&schedule("morning", "maya", 10))
            .await
            .unwrap()
            .1,
        PutOutcome::Created
    );
    let names: Vec<String> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    assert_eq!(names, ["morning", "night"]);

    // A firing sets the pool's bounds and records itself, in one transaction.
    let mut pool = spec("maya");
    pool.min = 1;
    pool.target = 5;
    let p = store.create_pool(&pool).await.unwrap();
    let update = PoolBoundsUpdate {
        pool: "maya".into(),
        generation: p.generation,
        bounds: rb_core::Bounds {
            min: 0,
            max: 0,
            target: 0,
        },
    };
    let fired = 1_780_000_000;
    assert_eq!(
        store
            .record_firing(
                "night",
                fired,
                false,
                std::slice::from_ref(&update),
                "set max=0 on maya"
            )
            .await
            .unwrap(),
        FiringOutcome::Applied
    );
    let after = store.get_pool("maya").await.unwrap().unwrap();
    assert_eq!(
        (after.spec.min, after.spec.max, after.spec.target),
        (0, 0, 0)
    );
    assert_eq!(after.generation, p.generation + 1);
    assert_eq!(after.spec.vm_sizes, pool.vm_sizes, "only the bounds change");
    let night = store.get_schedule("night").await.unwrap().unwrap();
    assert_eq!(night.last_fired_at, Some(fired));
    assert_eq!(night.last_outcome.as_deref(), Some("set max=0 on maya"));
    assert!(night.last_applied_at.is_some());
    assert_eq!(night.floor(), fired.max(night.since));

    // The same firing again is not owed (and the stale generation would not apply anyway).
    let fresh = PoolBoundsUpdate {
        generation: after.generation,
        ..update.clone()
    };
    assert_eq!(
        store
            .record_firing("night", fired, false, std::slice::from_ref(&fresh), "again")
            .await
            .unwrap(),
        FiringOutcome::NotOwed
    );
    assert_eq!(
        store.get_pool("maya").await.unwrap().unwrap().generation,
        after.generation,
        "nothing stored"
    );
    // A pool that moved since it was read: nothing stored, the firing is still owed.
    assert_eq!(
        store
            .record_firing("night", fired + 86_400, false, &[update], "stale")
            .await
            .unwrap(),
        FiringOutcome::PoolMoved
    );
    assert_eq!(
        store
            .get_schedule("night")
            .await
            .unwrap()
            .unwrap()
            .last_fired_at,
        Some(fired)
    );
    // Re-applying the current firing on purpose (the config reset the pool).
    assert_eq!(
        store
            .record_firing("night", fired, true, &[fresh], "re-applied")
            .await
            .unwrap(),
        FiringOutcome::Applied
    );

    let gone = store.delete_schedule("night").await.unwrap();
    assert_eq!(gone.spec.name, "night");
    assert!(
        store
            .delete_schedule("night")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        store
            .record_firing("night", fired + 1, false, &[], "deleted")
            .await
            .unwrap(),
        FiringOutcome::NotOwed
    );
    // Survives a reopen.
    drop(store);
    let store = open(&dir.db()).await;
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);
}

#[tokio::test]
async fn node_tokens_and_registration() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("maya")).await.unwrap();
    // A token needs its VM.
    assert!(matches!(
        store.set_node_token("maya-00001", "h1", 10).await,
        Err(StoreError::NotFound { .. })
    ));
    store.upsert_vm(&vm("maya-00001", "maya")).await.unwrap();
    store.upsert_vm(&vm("maya-00002", "maya")).await.unwrap();
    store.set_node_token("maya-00001", "h1", 10).await.unwrap();
    store.set_node_token("maya-00002", "h2", 10).await.unwrap();
    assert_eq!(
        store.node_for_token_hash("h1").await.unwrap().as_deref(),
        Some("maya-00001")
    );
    assert_eq!(store.node_for_token_hash("nope").await.unwrap(), None);
    // A hash belongs to one node only.
    assert!(store.set_node_token("maya-00002", "h1", 11).await.is_err());

    // Registration keeps the first time; the inventory upsert never touches it.
    store.register_node("maya-00001", 100).await.unwrap();
    store.register_node("maya-00001", 200).await.unwrap();
    store.set_node_seen("maya-00001", 250).await.unwrap();
    let mut v = store.get_vm("maya-00001").await.unwrap().unwrap();
    assert_eq!((v.registered_at, v.node_seen_at), (Some(100), Some(250)));
    v.state = NodeState::Running;
    v.registered_at = None;
    v.node_seen_at = None;
    store.upsert_vm(&v).await.unwrap();
    let v = store.get_vm("maya-00001").await.unwrap().unwrap();
    assert_eq!((v.registered_at, v.node_seen_at), (Some(100), Some(250)));
    assert_eq!(v.state, NodeState::Running);
    assert!(matches!(
        store.register_node("maya-00099", 1).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_node_seen("maya-00099", 1).await,
        Err(StoreError::NotFound { .. })
    ));

    // The token goes with its VM.
    assert!(store.delete_vm("maya-00001").await.unwrap());
    assert_eq!(store.node_for_token_hash("h1").await.unwrap(), None);
    assert_eq!(
        store.node_for_token_hash("h2").await.unwrap().as_deref(),
        Some("maya-00002")
    );
}

#[tokio::test]
async fn batch_enrollment_tokens_and_one_time_node_enrollment() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    assert!(matches!(
        store.set_pool_enroll_token("nuke", "p1", 10).await,
        Err(StoreError::NotFound { .. })
    ));
    store.create_pool(&spec("nuke")).await.unwrap();
    store.set_pool_enroll_token("nuke", "p1", 10).await.unwrap();
    assert_eq!(
        store
            .pool_for_enroll_token_hash("p1")
            .await
            .unwrap()
            .as_deref(),
        Some("nuke")
    );
    // A new token (the Batch pool created again) replaces the old one.
    store.set_pool_enroll_token("nuke", "p2", 20).await.unwrap();
    assert_eq!(store.pool_for_enroll_token_hash("p1").await.unwrap(), None);
    assert_eq!(
        store
            .pool_for_enroll_token_hash("p2")
            .await
            .unwrap()
            .as_deref(),
        Some("nuke")
    );

    // A node enrolls once; an unknown node not at all.
    assert!(matches!(
        store.enroll_node_token("tvm-1", "n1", 30).await,
        Err(StoreError::NotFound { .. })
    ));
    store.upsert_vm(&vm("tvm-1", "nuke")).await.unwrap();
    store.enroll_node_token("tvm-1", "n1", 30).await.unwrap();
    assert!(matches!(
        store.enroll_node_token("tvm-1", "n2", 31).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.node_for_token_hash("n1").await.unwrap().as_deref(),
        Some("tvm-1")
    );
    assert_eq!(store.node_for_token_hash("n2").await.unwrap(), None);

    // Preempted and reallocated: a fresh machine that enrolls and registers again.
    store.register_node("tvm-1", 40).await.unwrap();
    store.forget_node_enrollment("tvm-1").await.unwrap();
    assert_eq!(store.node_for_token_hash("n1").await.unwrap(), None);
    let v = store.get_vm("tvm-1").await.unwrap().unwrap();
    assert_eq!((v.registered_at, v.node_seen_at), (None, None));
    store.enroll_node_token("tvm-1", "n3", 50).await.unwrap();

    // Both go with their pool.
    store.delete_vm("tvm-1").await.unwrap();
    store.remove_pool("nuke").await.unwrap();
    assert_eq!(store.pool_for_enroll_token_hash("p2").await.unwrap(), None);
}

/// Rotation: a new token is stored beside the old before the start task carries it; once the
/// controller sees the new one published, the old one works `overlap` longer, then never.
/// A Batch node may enroll until the time the controller set for it.
#[tokio::test]
async fn enrollment_tokens_rotate_with_an_overlap_and_nodes_have_a_window() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("nuke")).await.unwrap();
    store
        .set_pool_enroll_token("nuke", "old", 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .observe_enroll_token("nuke", "old", 110, 50)
            .await
            .unwrap(),
        Some(100)
    );
    let pool_at = |hash: &'static str, t| {
        let store = &store;
        async move { store.pool_for_enroll_token_hash_at(hash, t).await.unwrap() }
    };
    // The rotation's new token works at once, the old one too.
    store
        .add_pool_enroll_token("nuke", "new", 200)
        .await
        .unwrap();
    assert_eq!(pool_at("new", 200).await.as_deref(), Some("nuke"));
    assert_eq!(pool_at("old", 10_000).await.as_deref(), Some("nuke"));
    // Observed in the start task at 210: the old one ends at 260.
    assert_eq!(
        store
            .observe_enroll_token("nuke", "new", 210, 50)
            .await
            .unwrap(),
        Some(200)
    );
    assert_eq!(pool_at("old", 259).await.as_deref(), Some("nuke"));
    assert_eq!(pool_at("old", 260).await, None);
    assert_eq!(pool_at("new", 100_000).await.as_deref(), Some("nuke"));
    // A start task carrying no token of ours expires nothing.
    store
        .add_pool_enroll_token("nuke", "lost", 300)
        .await
        .unwrap();
    assert_eq!(
        store
            .observe_enroll_token("nuke", "foreign", 310, 50)
            .await
            .unwrap(),
        None
    );
    assert_eq!(pool_at("lost", 100_000).await.as_deref(), Some("nuke"));
    // A rotation whose PATCH never landed: its token ends `overlap` after the old one is seen
    // again, and the old one, seen again, stays.
    assert_eq!(
        store
            .observe_enroll_token("nuke", "new", 320, 50)
            .await
            .unwrap(),
        Some(200)
    );
    assert_eq!(pool_at("lost", 370).await, None);
    assert_eq!(pool_at("new", 100_000).await.as_deref(), Some("nuke"));
    // Expired rows are deleted by the next observation; the pool's creation replaces all.
    store
        .observe_enroll_token("nuke", "new", 400, 50)
        .await
        .unwrap();
    store
        .set_pool_enroll_token("nuke", "again", 500)
        .await
        .unwrap();
    assert_eq!(pool_at("new", 500).await, None);
    assert_eq!(pool_at("again", 500).await.as_deref(), Some("nuke"));

    // The enrollment window: none until the controller sets one.
    assert!(matches!(
        store.set_enroll_until("tvm-1", 1000).await,
        Err(StoreError::NotFound { .. })
    ));
    store.upsert_vm(&vm("tvm-1", "nuke")).await.unwrap();
    assert_eq!(store.enroll_until("tvm-1").await.unwrap(), None);
    store.set_enroll_until("tvm-1", 1000).await.unwrap();
    store.set_enroll_until("tvm-1", 1000).await.unwrap();
    // The controller's inventory upsert leaves it alone.
    store.upsert_vm(&vm("tvm-1", "nuke")).await.unwrap();
    assert_eq!(store.enroll_until("tvm-1").await.unwrap(), Some(1000));
    assert_eq!(store.enroll_until("nobody").await.unwrap(), None);
}

/// An admin's clear drops every unavailable mark recorded up to then: the subscription-wide
/// rows, and Batch pools' own marks (hidden by time, since only the controller writes those
/// rows and may write an older copy back); marks recorded later stand.
#[tokio::test]
async fn clearing_unavailable_marks_covers_vm_and_batch_pools() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("maya")).await.unwrap();
    let t = 1_800_000_000;
    let mark = |size: &str, at| {
        Unavailable::new(
            Offering::new(size, Priority::Spot),
            UnavailableReason::Capacity,
            "AllocationFailed",
            at,
        )
    };
    store
        .set_unavailable(&mark("Standard_D4s_v5", t))
        .await
        .unwrap();
    let mut state = store::BatchState {
        pool: "maya".into(),
        unavailable: vec![mark("Standard_D8s_v5", t)],
        ..Default::default()
    };
    store.put_batch_state(&state).await.unwrap();
    assert_eq!(store.offerings_cleared_at().await.unwrap(), None);

    assert_eq!(store.clear_unavailable(t + 10).await.unwrap(), 2);
    assert_eq!(store.offerings_cleared_at().await.unwrap(), Some(t + 10));
    assert!(store.list_unavailable(t + 10).await.unwrap().is_empty());
    let got = store.get_batch_state("maya").await.unwrap().unwrap();
    assert!(got.unavailable.is_empty(), "{:?}", got.unavailable);

    // The controller writes its older copy back: still hidden. A new mark stands.
    store.put_batch_state(&state).await.unwrap();
    assert!(
        store
            .get_batch_state("maya")
            .await
            .unwrap()
            .unwrap()
            .unavailable
            .is_empty()
    );
    state.unavailable.push(mark("Standard_D16s_v5", t + 20));
    store.put_batch_state(&state).await.unwrap();
    let got = store.get_batch_state("maya").await.unwrap().unwrap();
    assert_eq!(got.unavailable.len(), 1);
    assert!(
        got.unavailable[0]
            .offering
            .size
            .eq_ignore_ascii_case("Standard_D16s_v5")
    );
    // Nothing in force: a second clear counts nothing stale.
    assert_eq!(store.clear_unavailable(t + 30).await.unwrap(), 1);
    assert_eq!(store.clear_unavailable(t + 31).await.unwrap(), 0);
}

/// The database and its WAL files hold token hashes and the farm's set-up: created for the
/// daemon's user alone, whatever the umask, before SQLite writes anything. The lock file too.
#[cfg(unix)]
#[tokio::test]
async fn a_new_database_and_its_wal_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.insert_token("ci", "viewer", "aa").await.unwrap();
    let mut files = vec![dir.db(), store::lock_path(&dir.db())];
    for suffix in ["-wal", "-shm"] {
        let mut name = dir.db().into_os_string();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in &files {
        let mode = std::fs::metadata(file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", file.display());
    }
    store.close().await;
    // An existing database keeps the mode its operator gave it.
    std::fs::set_permissions(dir.db(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = open(&dir.db()).await;
    let mode = std::fs::metadata(dir.db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    store.close().await;
}

/// A request belongs to the token that made it (by the token's hash), whatever its label:
/// listing by owner shows that token's requests only.
#[tokio::test]
async fn requests_are_listed_by_their_owner_token() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    store.create_pool(&spec("maya")).await.unwrap();
    let t0 = 1_000_000;
    let mine = store
        .create_request("maya", 1, 60, "deadline", None, "rm-a", Some("aa"), t0)
        .await
        .unwrap();
    assert_eq!(mine.owner_token_sha256.as_deref(), Some("aa"));
    // Same label, another token.
    store
        .create_request("maya", 2, 60, "deadline", None, "rm-b", Some("bb"), t0)
        .await
        .unwrap();
    store
        .create_request("maya", 3, 60, "deadline", None, "admin", None, t0)
        .await
        .unwrap();
    let owned = store
        .list_requests_owned(Some("aa"), Some("maya"), true, t0)
        .await
        .unwrap();
    assert_eq!(owned, vec![mine.clone()]);
    assert_eq!(
        store
            .list_requests_owned(None, None, true, t0)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(store.get_request(&mine.id).await.unwrap(), Some(mine));
    assert!(
        store
            .list_requests_owned(Some("cc"), None, true, t0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Migration 0009 gives requests made before it an owner: the token that still has the name
/// they were made with. The admin's, and those of tokens since revoked, stay unowned (admins
/// see them); a requester keeps seeing its own live requests across the upgrade.
#[tokio::test]
async fn request_owners_are_backfilled_from_the_token_names() {
    let dir = TempDir::new("test");
    // The schema as it was before 0009, with rows made then.
    let before = dir.0.join("migrations-before-0009");
    std::fs::create_dir_all(&before).unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0009" {
            std::fs::copy(&path, before.join(&name)).unwrap();
        }
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.db())
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let spec = serde_json::to_string(&spec("maya")).unwrap();
    sqlx::query("INSERT INTO pools (name, spec, created_at, updated_at) VALUES ('maya', ?, 1, 1)")
        .bind(&spec)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ('farm-manager', 'requester', 'aa', 1);
         INSERT INTO requests (id, pool, count, requester, created_at, expires_at, created_by) VALUES
           ('r1', 'maya', 1, 'deadline', 1, 9000000000, 'farm-manager'),
           ('r2', 'maya', 1, 'deadline', 1, 9000000000, 'admin'),
           ('r3', 'maya', 1, 'deadline', 1, 9000000000, 'revoked-since');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = open(&dir.db()).await;
    let owners: Vec<(String, Option<String>)> = store
        .list_requests(None, true, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.owner_token_sha256))
        .collect();
    assert_eq!(
        owners,
        vec![
            ("r1".to_string(), Some("aa".to_string())),
            ("r2".to_string(), None),
            ("r3".to_string(), None),
        ]
    );
}

/// Requested demand counts for its peak over the pool's stabilization window, which starts
/// again at the pool's last change: requests that come and go do not scale the pool down
/// until they have stayed lower that long.
#[tokio::test]
async fn requests_count_for_their_peak_over_the_stabilization_window() {
    let dir = TempDir::new("test");
    let store = open(&dir.db()).await;
    let mut maya = spec("maya");
    maya.max = 10;
    maya.scale_down_stabilization_seconds = 300;
    store.create_pool(&maya).await.unwrap();
    let t0 = 1_000_000;
    let mut record = store.get_pool("maya").await.unwrap().unwrap();
    record.updated_at = t0 - 1000; // changed long before
    let a = store
        .create_request("maya", 4, 3600, "deadline", None, "test", None, t0)
        .await
        .unwrap();
    assert_eq!(store.desired(&record, t0 + 10).await.unwrap(), 4);
    store
        .release_request(&a.id, "deadline", t0 + 20)
        .await
        .unwrap();
    // Released: still 4 for the window after the release...
    assert_eq!(store.desired(&record, t0 + 21).await.unwrap(), 4);
    assert_eq!(store.desired(&record, t0 + 319).await.unwrap(), 4);
    // ...then down.
    assert_eq!(store.desired(&record, t0 + 320).await.unwrap(), 0);
    // The pool's own change (a scale, a PUT, a schedule) starts the window again: the
    // released request no longer holds the pool up.
    record.updated_at = t0 + 25;
    assert_eq!(store.desired(&record, t0 + 26).await.unwrap(), 0);
    // A window of 0 is today's rule: live requests only.
    record.updated_at = t0 - 1000;
    record.spec.scale_down_stabilization_seconds = 0;
    assert_eq!(store.desired(&record, t0 + 21).await.unwrap(), 0);
    // Demand rising is never held back.
    record.spec.scale_down_stabilization_seconds = 300;
    store
        .create_request("maya", 6, 3600, "deadline", None, "test", None, t0 + 330)
        .await
        .unwrap();
    assert_eq!(store.desired(&record, t0 + 330).await.unwrap(), 6);
}
