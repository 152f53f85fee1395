use super::*;
use super::{BatchAction, BatchActionKind};
use crate::UnixSeconds;
use crate::gate::CreateGate;
use crate::offerings::{Offering, Unavailable, UnavailableReason};
use crate::plan::{NodeView, Plan};
use crate::spec::{BatchLifecycle, BatchSpec, PoolMode, PoolSpec, Priority};

const NOW: UnixSeconds = 1_800_000_000;

fn spec(priority: Priority, lifecycle: BatchLifecycle) -> PoolSpec {
    PoolSpec {
        name: "maya".into(),
        mode: PoolMode::Batch,
        vm_sizes: vec!["Standard_D4s_v5".into()],
        priority,
        spot: Default::default(),
        image: "Canonical:ubuntu-24_04-lts:server:latest".into(),
        os: Default::default(),
        min: 0,
        max: 20,
        target: 0,
        idle_timeout_seconds: 0,
        scale_down_stabilization_seconds: 0,
        scale_down: Default::default(),
        tags: Default::default(),
        batch: Some(BatchSpec {
            account: "rbfarm".into(),
            resource_group: None,
            node_agent_sku_id: "batch.node.ubuntu 24.04".into(),
            lifecycle,
            auto_delete_after_seconds: 300,
            task_slots_per_node: 1,
            spot_cap: None,
            dedicated_floor: 0,
            spot_fallback_to_dedicated: false,
            start_task: None,
            subnet_id: None,
            existing_pool: None,
            application_licenses: None,
        }),
        licenses: vec![],
        bootstrap: None,
    }
}

fn node(id: &str, dedicated: bool, state: &str) -> BatchNodeView {
    BatchNodeView {
        node: NodeView {
            name: id.into(),
            size: "Standard_D4s_v5".into(),
            priority: if dedicated {
                Priority::Regular
            } else {
                Priority::Spot
            },
            state: node_state(state),
            failed_code: None,
            created_at: NOW - 1000,
            started_at: Some(NOW - 900),
            last_heartbeat: None,
            busy: false,
            draining: false,
            registered_at: None,
            in_flight: false,
            pending: None,
        },
        batch_state: state.into(),
    }
}

fn pool(d: u32, s: u32) -> BatchPoolView {
    BatchPoolView {
        owned: true,
        deleting: false,
        steady: true,
        targets: BatchTargets {
            dedicated: d,
            spot: s,
        },
        current: BatchTargets {
            dedicated: d,
            spot: s,
        },
        resize_errors: vec![],
    }
}

fn input<'a>(
    spec: &'a PoolSpec,
    desired: u32,
    pool: Option<&'a BatchPoolView>,
    nodes: &'a [BatchNodeView],
) -> BatchInput<'a> {
    BatchInput {
        spec,
        desired,
        pool,
        nodes,
        unavailable: &[],
        empty_since: None,
        pool_in_flight: false,
        deleting: false,
        gate: &OPEN,
        now: NOW,
    }
}

static OPEN: CreateGate = CreateGate {
    reasons: Vec::new(),
};

fn kinds(plan: &Plan<BatchAction>) -> Vec<(BatchActionKind, String, Option<BatchTargets>)> {
    plan.actions
        .iter()
        .map(|a| (a.kind, a.node.clone(), a.targets))
        .collect()
}

fn t(dedicated: u32, spot: u32) -> Option<BatchTargets> {
    Some(BatchTargets { dedicated, spot })
}

#[test]
fn split_fills_spot_first_within_cap_and_floor() {
    let mut s = spec(Priority::Spot, BatchLifecycle::Persistent);
    assert_eq!(
        split(&s, 10),
        BatchTargets {
            dedicated: 0,
            spot: 10
        }
    );
    let b = s.batch.as_mut().unwrap();
    b.spot_cap = Some(6);
    b.dedicated_floor = 2;
    assert_eq!(
        split(&s, 10),
        BatchTargets {
            dedicated: 4,
            spot: 6
        }
    );
    assert_eq!(
        split(&s, 5),
        BatchTargets {
            dedicated: 2,
            spot: 3
        }
    );
    assert_eq!(
        split(&s, 1),
        BatchTargets {
            dedicated: 1,
            spot: 0
        }
    );
    assert_eq!(split(&s, 0), BatchTargets::default());
    let r = spec(Priority::Regular, BatchLifecycle::Persistent);
    assert_eq!(
        split(&r, 7),
        BatchTargets {
            dedicated: 7,
            spot: 0
        }
    );
}

#[test]
fn persistent_pool_is_created_at_once_auto_pool_on_demand() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let plan = plan_batch(&input(&p, 0, None, &[]));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::CreatePool, "maya".into(), t(0, 0))]
    );

    let a = spec(Priority::Spot, BatchLifecycle::Auto);
    let plan = plan_batch(&input(&a, 0, None, &[]));
    assert!(plan.actions.is_empty());
    assert!(plan.conditions[0].starts_with("AutoPoolAbsent"));
    let plan = plan_batch(&input(&a, 4, None, &[]));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::CreatePool, "maya".into(), t(0, 4))]
    );
}

#[test]
fn adopted_pool_is_never_created_and_foreign_pool_never_touched() {
    let mut p = spec(Priority::Spot, BatchLifecycle::Persistent);
    p.batch.as_mut().unwrap().existing_pool = Some("legacy_pool".into());
    let plan = plan_batch(&input(&p, 3, None, &[]));
    assert!(plan.actions.is_empty());
    assert!(
        plan.conditions[0].starts_with("BatchPoolNotFound"),
        "{:?}",
        plan.conditions
    );
    let mut foreign = pool(0, 0);
    foreign.owned = false;
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let plan = plan_batch(&input(&p, 3, Some(&foreign), &[]));
    assert!(plan.actions.is_empty());
    assert!(plan.conditions[0].starts_with("BatchPoolNotOurs"));
}

#[test]
fn scale_up_sets_targets_and_waits_while_resizing() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let bp = pool(0, 0);
    let plan = plan_batch(&input(&p, 20, Some(&bp), &[]));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::ResizePool, "maya".into(), t(0, 20))]
    );
    let mut resizing = pool(0, 20);
    resizing.steady = false;
    let plan = plan_batch(&input(&p, 5, Some(&resizing), &[]));
    assert!(plan.actions.is_empty());
    assert!(plan.conditions[0].starts_with("Resizing"));
}

#[test]
fn a_resize_is_stopped_when_demand_moves_while_the_pool_grows() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let mut growing = pool(0, 20);
    growing.steady = false;
    growing.current.spot = 6;
    // Same demand: wait.
    assert!(
        plan_batch(&input(&p, 20, Some(&growing), &[]))
            .actions
            .is_empty()
    );
    // More, or less: stop, then set targets once Steady.
    for desired in [30, 4] {
        let plan = plan_batch(&input(&p, desired, Some(&growing), &[]));
        assert_eq!(
            kinds(&plan),
            vec![(BatchActionKind::StopResize, "maya".into(), None)]
        );
    }
    // Batch already gave up on part of it: the resize ends by itself.
    growing.resize_errors = vec![ResizeErrorView {
        code: "AccountLowPriorityCoreQuotaReached".into(),
        message: "quota".into(),
    }];
    assert!(
        plan_batch(&input(&p, 4, Some(&growing), &[]))
            .actions
            .is_empty()
    );
    // Shrinking (nodes leaving) is never stopped.
    let mut shrinking = pool(0, 2);
    shrinking.steady = false;
    shrinking.current.spot = 5;
    assert!(
        plan_batch(&input(&p, 1, Some(&shrinking), &[]))
            .actions
            .is_empty()
    );
    // Our own stop is not shown as an error.
    let mut stopped = pool(0, 6);
    stopped.resize_errors = vec![ResizeErrorView {
        code: RESIZE_STOPPED.into(),
        message: "stopped".into(),
    }];
    let plan = plan_batch(&input(&p, 6, Some(&stopped), &[]));
    assert!(
        !plan.conditions.iter().any(|c| c.starts_with("ResizeError")),
        "{:?}",
        plan.conditions
    );
}

#[test]
fn scale_down_removes_idle_nodes_only_never_busy_ones() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let bp = pool(0, 4);
    let mut nodes: Vec<BatchNodeView> = (0..4)
        .map(|i| node(&format!("n{i}"), false, "idle"))
        .collect();
    nodes[0].node.busy = true;
    nodes[0].node.last_heartbeat = Some(NOW - 5);
    nodes[1].batch_state = "running".into();
    // Newest first among idle ones.
    nodes[3].node.started_at = Some(NOW - 10);
    let plan = plan_batch(&input(&p, 1, Some(&bp), &nodes));
    assert_eq!(
        kinds(&plan),
        vec![
            (BatchActionKind::RemoveNode, "n3".into(), None),
            (BatchActionKind::RemoveNode, "n2".into(), None)
        ]
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("WaitingForIdle: 1"))
    );
    // To zero: the busy ones stay.
    let plan = plan_batch(&input(&p, 0, Some(&bp), &nodes));
    let removed: Vec<String> = plan.actions.iter().map(|a| a.node.clone()).collect();
    assert_eq!(removed, vec!["n3", "n2"]);
}

#[test]
fn idle_timeout_is_respected_and_a_stale_busy_heartbeat_expires() {
    let mut p = spec(Priority::Regular, BatchLifecycle::Persistent);
    p.idle_timeout_seconds = 600;
    let bp = pool(2, 0);
    let mut nodes = vec![node("a", true, "idle"), node("b", true, "idle")];
    nodes[0].node.last_heartbeat = Some(NOW - 60);
    nodes[1].node.busy = true;
    nodes[1].node.last_heartbeat = Some(NOW - 5000);
    let plan = plan_batch(&input(&p, 0, Some(&bp), &nodes));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::RemoveNode, "b".into(), None)]
    );
}

#[test]
fn targets_never_drop_below_existing_nodes() {
    // Quota left the pool at 4 of 10 Spot nodes; demand falls to 6: lower the target to
    // 6 (no node is chosen by Batch), remove nothing.
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let mut bp = pool(0, 10);
    bp.current.spot = 4;
    let nodes: Vec<BatchNodeView> = (0..4)
        .map(|i| node(&format!("n{i}"), false, "idle"))
        .collect();
    let plan = plan_batch(&input(&p, 6, Some(&bp), &nodes));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::ResizePool, "maya".into(), t(0, 6))]
    );
    let plan = plan_batch(&input(&p, 2, Some(&bp), &nodes));
    assert_eq!(plan.actions.len(), 2);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.kind == BatchActionKind::RemoveNode)
    );
}

fn spot_quota() -> Vec<Unavailable> {
    vec![Unavailable::new(
        Offering::new("Standard_D4s_v5", Priority::Spot),
        UnavailableReason::Quota,
        "AccountLowPriorityCoreQuotaReached",
        NOW - 10,
    )]
}

#[test]
fn spot_shortfall_falls_back_to_dedicated_when_allowed() {
    let mut p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let mut bp = pool(0, 10);
    bp.current.spot = 4;
    bp.resize_errors = vec![ResizeErrorView {
        code: "AccountLowPriorityCoreQuotaReached".into(),
        message: "quota".into(),
    }];
    let nodes: Vec<BatchNodeView> = (0..4)
        .map(|i| node(&format!("n{i}"), false, "idle"))
        .collect();
    let unavailable = spot_quota();
    let mut i = input(&p, 10, Some(&bp), &nodes);
    i.unavailable = &unavailable;
    // Not allowed: the shortfall is reported, targets stay.
    let plan = plan_batch(&i);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("ResizeError: AccountLowPriorityCoreQuotaReached"))
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("SpotShortfall: Batch could not allocate 6"))
    );
    // Allowed: 6 dedicated make it up.
    p.batch.as_mut().unwrap().spot_fallback_to_dedicated = true;
    let mut i = input(&p, 10, Some(&bp), &nodes);
    i.unavailable = &unavailable;
    let plan = plan_batch(&i);
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::ResizePool, "maya".into(), t(6, 4))]
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("SpotFallback"))
    );
}

#[test]
fn a_lapsed_refusal_retries_the_same_targets() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let mut bp = pool(0, 10);
    bp.current.spot = 4;
    let nodes: Vec<BatchNodeView> = (0..4)
        .map(|i| node(&format!("n{i}"), false, "idle"))
        .collect();
    let plan = plan_batch(&input(&p, 10, Some(&bp), &nodes));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::ResizePool, "maya".into(), t(0, 10))]
    );
    assert!(plan.actions[0].reason.starts_with("retrying"));
}

#[test]
fn growth_never_exceeds_desired_while_extra_dedicated_nodes_remain() {
    // After a fallback: 6 dedicated (busy) and 4 Spot; Spot is available again and the
    // desired count is 10: nothing to grow, since 10 nodes exist.
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let bp = pool(6, 4);
    let mut nodes: Vec<BatchNodeView> = (0..6)
        .map(|i| node(&format!("d{i}"), true, "running"))
        .collect();
    nodes.extend((0..4).map(|i| node(&format!("s{i}"), false, "idle")));
    let plan = plan_batch(&input(&p, 10, Some(&bp), &nodes));
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    // Desired 12: two more, as Spot.
    let plan = plan_batch(&input(&p, 12, Some(&bp), &nodes));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::ResizePool, "maya".into(), t(6, 6))]
    );
}

#[test]
fn failed_preempted_and_drained_nodes() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let bp = pool(0, 4);
    let mut nodes = vec![
        node("a", false, "unusable"),
        node("b", false, "preempted"),
        node("c", false, "idle"),
        node("d", false, "idle"),
    ];
    nodes[2].node.draining = true;
    let plan = plan_batch(&input(&p, 3, Some(&bp), &nodes));
    let removed: Vec<&str> = plan.actions.iter().map(|a| a.node.as_str()).collect();
    // a (failed) and c (drained) at once; then 2 left for 3 wanted: no surplus.
    assert_eq!(removed, vec!["a", "c"]);
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("Preempted: 1"))
    );
    // With desired 1, the preempted node goes before the working one.
    let plan = plan_batch(&input(&p, 1, Some(&bp), &nodes));
    let removed: Vec<&str> = plan.actions.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(removed, vec!["a", "c", "b"]);
}

#[test]
fn auto_pool_is_deleted_after_being_empty_long_enough() {
    let a = spec(Priority::Spot, BatchLifecycle::Auto);
    let bp = pool(0, 0);
    let mut i = input(&a, 0, Some(&bp), &[]);
    i.empty_since = Some(NOW - 100);
    let plan = plan_batch(&i);
    assert!(plan.actions.is_empty());
    assert!(plan.conditions[0].starts_with("AutoDeletePending"));
    i.empty_since = Some(NOW - 300);
    let plan = plan_batch(&i);
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::DeletePool, "maya".into(), None)]
    );
    // A persistent pool survives at zero.
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let mut i = input(&p, 0, Some(&bp), &[]);
    i.empty_since = Some(NOW - 100_000);
    assert!(plan_batch(&i).actions.is_empty());
}

#[test]
fn deleting_removes_idle_nodes_then_the_pool_but_never_an_adopted_one() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let bp = pool(0, 2);
    let mut nodes = vec![node("a", false, "idle"), node("b", false, "running")];
    nodes[0].node.started_at = Some(NOW);
    let mut i = input(&p, 5, Some(&bp), &nodes);
    i.deleting = true;
    let plan = plan_batch(&i);
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::RemoveNode, "a".into(), None)]
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("WaitingForBusyNodes: 1"))
    );
    let empty = pool(0, 0);
    let mut i = input(&p, 5, Some(&empty), &[]);
    i.deleting = true;
    assert_eq!(
        kinds(&plan_batch(&i)),
        vec![(BatchActionKind::DeletePool, "maya".into(), None)]
    );
    let mut adopted = spec(Priority::Spot, BatchLifecycle::Persistent);
    adopted.batch.as_mut().unwrap().existing_pool = Some("legacy".into());
    let mut i = input(&adopted, 5, Some(&empty), &[]);
    i.deleting = true;
    assert!(plan_batch(&i).actions.is_empty());
}

#[test]
fn nothing_happens_while_the_pool_has_an_operation_in_flight() {
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let mut i = input(&p, 5, None, &[]);
    i.pool_in_flight = true;
    let plan = plan_batch(&i);
    assert!(plan.actions.is_empty());
    assert!(plan.conditions[0].starts_with("WaitingForBatch"));
}
#[test]
fn bootstrap_nodes_that_never_register_are_removed_as_zombies() {
    let mut p = spec(Priority::Regular, BatchLifecycle::Persistent);
    p.bootstrap =
        Some(serde_json::from_value(serde_json::json!({"register_timeout_seconds": 600})).unwrap());
    let registered = |mut n: BatchNodeView| {
        n.node.registered_at = Some(NOW - 800);
        n
    };
    let young = |mut n: BatchNodeView| {
        n.node.started_at = Some(NOW - 10);
        n
    };
    let busy = |mut n: BatchNodeView| {
        n.node.last_heartbeat = Some(NOW - 5);
        n.node.busy = true;
        n
    };
    let b = pool(4, 0);
    let nodes = [
        registered(node("n1", true, "idle")),
        node("n2", true, "idle"),        // 900 s without registering: zombie
        young(node("n3", true, "idle")), // 10 s: still waiting
        busy(node("n4", true, "running")), // busy: never removed
    ];
    let plan = plan_batch(&input(&p, 4, Some(&b), &nodes));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::RemoveNode, "n2".into(), None)]
    );
    assert_eq!(plan.zombies, vec!["n2".to_string()]);
    assert!(
        plan.actions[0]
            .reason
            .starts_with("zombie: running for 900 s")
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("WaitingForRegistration: 2 running nodes")),
        "{:?}",
        plan.conditions
    );
    // Without a bootstrap section registration means nothing.
    p.bootstrap = None;
    let plan = plan_batch(&input(&p, 4, Some(&b), &nodes));
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(plan.zombies.is_empty());
}

#[test]
fn the_creation_gate_caps_how_far_targets_rise_never_a_shrink() {
    let closed = CreateGate::open().with(crate::gate::GateReason::ArmUnavailable {
        since: NOW - 60,
        error: "503 ServiceUnavailable".into(),
    });
    let gated = |i: BatchInput<'_>| plan_batch(&BatchInput { gate: &closed, ..i });
    // A new pool is created with no nodes while the gate is closed, and says why.
    let a = spec(Priority::Spot, BatchLifecycle::Auto);
    let plan = gated(input(&a, 4, None, &[]));
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::CreatePool, "maya".into(), t(0, 0))]
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.starts_with("ArmUnavailable")),
        "{:?}",
        plan.conditions
    );
    // An existing pool is not raised.
    let p = spec(Priority::Spot, BatchLifecycle::Persistent);
    let bp = pool(0, 2);
    let listed = [node("a", false, "idle"), node("b", false, "idle")];
    let plan = gated(input(&p, 20, Some(&bp), &listed));
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    // A probe lets one more node through, Spot first.
    let probe = CreateGate::backoff(Some(&crate::Hold {
        until: NOW - 1,
        probe: Some(1),
        condition: "BackingOff: InternalServerError: boom".into(),
    }));
    let plan = plan_batch(&BatchInput {
        gate: &probe,
        ..input(&p, 20, Some(&bp), &listed)
    });
    assert_eq!(
        kinds(&plan),
        vec![(BatchActionKind::ResizePool, "maya".into(), t(0, 3))]
    );
    // Shrinking goes through whatever the gate says.
    let mut p = spec(Priority::Spot, BatchLifecycle::Persistent);
    p.idle_timeout_seconds = 0;
    let plan = gated(input(&p, 1, Some(&bp), &listed));
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert_eq!(plan.actions[0].kind, BatchActionKind::RemoveNode);
}
