//! Planner tables: one scenario per rule, each a few lines of nodes in and actions out.

use std::collections::BTreeMap;

use rb_core::offerings::{Offering, Unavailable, UnavailableReason};
use rb_core::plan::node_name;
use rb_core::spec::{Os, PoolMode, ScaleDown, SpotSpec};
use rb_core::{
    CreateGate, GateReason, Hold, NodeState, NodeView, Plan, PlanInput, PoolSpec, Priority,
    ReusableName, VmAction, VmActionKind, plan,
};

const NOW: i64 = 1_700_000_000;
const T4: &str = "Standard_NC4as_T4_v3";
const T8: &str = "Standard_NC8as_T4_v3";

fn spec() -> PoolSpec {
    PoolSpec {
        name: "maya".into(),
        mode: PoolMode::Vm,
        vm_sizes: vec![T4.into(), T8.into()],
        priority: Priority::Regular,
        spot: SpotSpec::default(),
        image: "Canonical:ubuntu-24_04-lts:server:latest".into(),
        os: Os::Linux,
        min: 0,
        max: 50,
        target: 0,
        idle_timeout_seconds: 900,
        scale_down_stabilization_seconds: 0,
        scale_down: ScaleDown::Deallocate,
        tags: BTreeMap::new(),
        batch: None,
        licenses: vec![],
        bootstrap: None,
    }
}

fn spot_spec(fallback: bool) -> PoolSpec {
    let mut s = spec();
    s.priority = Priority::Spot;
    s.spot.fallback_to_regular = fallback;
    s
}

/// Node `i` of pool maya, created and started `i` seconds after an hour ago: higher index
/// means newer. Running nodes have run for about an hour and never sent a heartbeat.
fn node(i: u64, state: NodeState) -> NodeView {
    let created_at = NOW - 3600 + i as i64;
    NodeView {
        name: node_name("maya", i),
        size: T4.into(),
        priority: Priority::Regular,
        state,
        failed_code: None,
        created_at,
        started_at: match state {
            NodeState::Creating => None,
            _ => Some(created_at),
        },
        last_heartbeat: None,
        busy: false,
        draining: false,
        in_flight: false,
        pending: None,
        registered_at: None,
    }
}

fn nodes(range: std::ops::Range<u64>, state: NodeState) -> Vec<NodeView> {
    range.map(|i| node(i, state)).collect()
}

fn unavailable(size: &str, priority: Priority, code: &str) -> Unavailable {
    Unavailable::new(
        Offering::new(size, priority),
        UnavailableReason::Capacity,
        code,
        NOW - 60,
    )
}

struct Case<'a> {
    spec: &'a PoolSpec,
    desired: u32,
    nodes: &'a [NodeView],
    unavailable: &'a [Unavailable],
    next_index: u64,
    deleting: bool,
    hold: Option<&'a Hold>,
    reusable: &'a [ReusableName],
    no_room: std::collections::BTreeSet<String>,
}

impl<'a> Case<'a> {
    fn new(spec: &'a PoolSpec, desired: u32, nodes: &'a [NodeView]) -> Self {
        Self {
            spec,
            desired,
            nodes,
            unavailable: &[],
            next_index: 100,
            deleting: false,
            hold: None,
            reusable: &[],
            no_room: Default::default(),
        }
    }

    fn run(&self) -> Plan {
        plan(&PlanInput {
            spec: self.spec,
            desired: self.desired,
            nodes: self.nodes,
            unavailable: self.unavailable,
            next_index: self.next_index,
            deleting: self.deleting,
            gate: &CreateGate::backoff(self.hold),
            reusable: self.reusable,
            no_room: &self.no_room,
            now: NOW,
        })
    }
}

fn of_kind(plan: &Plan, kind: VmActionKind) -> Vec<&VmAction> {
    plan.actions.iter().filter(|a| a.kind == kind).collect()
}

fn names(plan: &Plan, kind: VmActionKind) -> Vec<String> {
    of_kind(plan, kind).iter().map(|a| a.node.clone()).collect()
}

fn condition<'p>(plan: &'p Plan, prefix: &str) -> Option<&'p str> {
    plan.conditions
        .iter()
        .map(String::as_str)
        .find(|c| c.starts_with(prefix))
}

fn names_of(range: impl IntoIterator<Item = u64>) -> Vec<String> {
    range.into_iter().map(|i| node_name("maya", i)).collect()
}

#[test]
fn zero_to_twelve_creates_twelve_with_consecutive_names() {
    let spec = spec();
    let mut case = Case::new(&spec, 12, &[]);
    case.next_index = 7;
    let plan = case.run();
    assert_eq!(plan.actions.len(), 12);
    assert_eq!(names(&plan, VmActionKind::Create), names_of(7..19));
    assert_eq!(plan.actions[0].node, "maya-00007");
    for a in &plan.actions {
        assert_eq!(a.size.as_deref(), Some(T4));
        assert_eq!(a.priority, Some(Priority::Regular));
        assert!(a.reason.contains("active 0 < desired 12"), "{}", a.reason);
    }
    assert_eq!((plan.active, plan.desired), (0, 12));
    assert!(plan.conditions.is_empty(), "{:?}", plan.conditions);
}

#[test]
fn twelve_running_to_four_deallocates_the_eight_newest() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let nodes = nodes(0..12, NodeState::Running);
    let plan = Case::new(&spec, 4, &nodes).run();
    assert_eq!(plan.actions.len(), 8);
    assert_eq!(
        names(&plan, VmActionKind::Deallocate),
        names_of((4..12).rev())
    );
    assert!(
        plan.actions[0]
            .reason
            .starts_with("pool above desired (active 12 > desired 4); idle "),
        "{}",
        plan.actions[0].reason
    );
    assert_eq!(plan.active, 12);
    assert!(plan.conditions.is_empty());
}

#[test]
fn scale_down_with_delete_deletes() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    spec.scale_down = ScaleDown::Delete;
    let nodes = nodes(0..5, NodeState::Running);
    let plan = Case::new(&spec, 2, &nodes).run();
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([4, 3, 2]));
    assert_eq!(plan.actions.len(), 3);
}

#[test]
fn deallocated_eight_and_desired_ten_starts_six_oldest_and_creates_none() {
    let spec = spec();
    let mut all = nodes(0..4, NodeState::Running);
    all.extend(nodes(4..12, NodeState::Deallocated));
    let plan = Case::new(&spec, 10, &all).run();
    assert_eq!(names(&plan, VmActionKind::Start), names_of(4..10));
    assert_eq!(plan.actions.len(), 6, "{:?}", plan.actions);
    assert!(plan.actions[0].reason.contains("active 4 < desired 10"));
}

#[test]
fn starts_come_before_creates() {
    let spec = spec();
    let all = nodes(0..3, NodeState::Deallocated);
    let mut case = Case::new(&spec, 5, &all);
    case.next_index = 3;
    let plan = case.run();
    let kinds: Vec<_> = plan
        .actions
        .iter()
        .map(|a| (a.kind, a.node.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (VmActionKind::Start, "maya-00000"),
            (VmActionKind::Start, "maya-00001"),
            (VmActionKind::Start, "maya-00002"),
            (VmActionKind::Create, "maya-00003"),
            (VmActionKind::Create, "maya-00004"),
        ]
    );
}

#[test]
fn first_size_unavailable_creates_use_the_second() {
    let spec = spec();
    // Sizes compare case-insensitively: the entry is lower-cased, the spec is not.
    let unavailable = [unavailable(T4, Priority::Regular, "AllocationFailed")];
    let mut case = Case::new(&spec, 3, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    let creates = of_kind(&plan, VmActionKind::Create);
    assert_eq!(creates.len(), 3);
    for a in creates {
        assert_eq!(a.size.as_deref(), Some(T8));
        assert!(a.reason.contains("AllocationFailed"), "{}", a.reason);
    }
    assert_eq!(
        condition(&plan, "SizeUnavailable:"),
        Some(
            "SizeUnavailable: Standard_NC4as_T4_v3 (regular) AllocationFailed until 2023-11-14T23:12:20Z"
        )
    );
}

#[test]
fn an_expired_entry_no_longer_counts() {
    let spec = spec();
    let mut entry = unavailable(T4, Priority::Regular, "AllocationFailed");
    entry.until = NOW;
    let unavailable = [entry];
    let mut case = Case::new(&spec, 1, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    assert_eq!(
        of_kind(&plan, VmActionKind::Create)[0].size.as_deref(),
        Some(T4)
    );
    assert!(plan.conditions.is_empty());
}

#[test]
fn an_entry_at_another_priority_does_not_count() {
    let spec = spec();
    let unavailable = [unavailable(T4, Priority::Spot, "AllocationFailed")];
    let mut case = Case::new(&spec, 1, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    assert_eq!(
        of_kind(&plan, VmActionKind::Create)[0].size.as_deref(),
        Some(T4)
    );
}

#[test]
fn spot_with_fallback_creates_regular_when_every_spot_size_is_out() {
    let spec = spot_spec(true);
    let unavailable = [
        unavailable(T4, Priority::Spot, "AllocationFailed"),
        unavailable(T8, Priority::Spot, "OperationNotAllowed"),
    ];
    let mut case = Case::new(&spec, 2, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    let creates = of_kind(&plan, VmActionKind::Create);
    assert_eq!(creates.len(), 2);
    for a in creates {
        assert_eq!(a.size.as_deref(), Some(T4));
        assert_eq!(a.priority, Some(Priority::Regular));
        assert!(a.reason.contains("falling back to regular"), "{}", a.reason);
    }
    assert!(condition(&plan, "SpotFallback:").is_some());
}

#[test]
fn spot_prefers_a_second_spot_size_over_fallback() {
    let spec = spot_spec(true);
    let unavailable = [unavailable(T4, Priority::Spot, "AllocationFailed")];
    let mut case = Case::new(&spec, 1, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    let a = &plan.actions[0];
    assert_eq!(
        (a.size.as_deref(), a.priority),
        (Some(T8), Some(Priority::Spot))
    );
    assert!(condition(&plan, "SpotFallback:").is_none());
}

#[test]
fn spot_without_fallback_reports_no_capacity() {
    let spec = spot_spec(false);
    let unavailable = [
        unavailable(T4, Priority::Spot, "AllocationFailed"),
        unavailable(T8, Priority::Spot, "OperationNotAllowed"),
    ];
    let mut case = Case::new(&spec, 2, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let c = condition(&plan, "NoCapacity: every size is unavailable (").unwrap();
    assert!(c.contains("Standard_NC4as_T4_v3 (spot): AllocationFailed until 2023-11-14T23:12:20Z"));
    assert!(c.contains("Standard_NC8as_T4_v3 (spot): OperationNotAllowed"));
    assert_eq!(
        plan.conditions
            .iter()
            .filter(|c| c.starts_with("SizeUnavailable:"))
            .count(),
        2
    );
}

#[test]
fn busy_nodes_are_never_chosen() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let mut all = nodes(0..12, NodeState::Running);
    // The eight newest are busy, heartbeating a second ago.
    for n in &mut all[4..] {
        n.busy = true;
        n.last_heartbeat = Some(NOW - 1);
    }
    let plan = Case::new(&spec, 4, &all).run();
    assert_eq!(
        names(&plan, VmActionKind::Deallocate),
        names_of((0..4).rev())
    );
    assert_eq!(
        condition(&plan, "WaitingForIdle:"),
        Some(
            "WaitingForIdle: 4 nodes above desired are busy, not idle for 0 s yet, or still starting"
        )
    );
}

#[test]
fn busy_without_a_heartbeat_time_is_busy() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let mut all = nodes(0..2, NodeState::Running);
    all[1].busy = true;
    let plan = Case::new(&spec, 0, &all).run();
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([0]));
}

#[test]
fn a_busy_heartbeat_goes_stale() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let mut all = nodes(0..2, NodeState::Running);
    all[0].busy = true;
    all[0].last_heartbeat = Some(NOW - rb_core::plan::BUSY_HEARTBEAT_TTL_SECONDS);
    all[1].busy = true;
    all[1].last_heartbeat = Some(NOW - rb_core::plan::BUSY_HEARTBEAT_TTL_SECONDS + 1);
    let plan = Case::new(&spec, 0, &all).run();
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([0]));

    // With a longer idle timeout, the idle timeout is the staleness bound.
    spec.idle_timeout_seconds = 3000;
    all[0].last_heartbeat = Some(NOW - 2999);
    all[1].last_heartbeat = Some(NOW - 3000);
    all[1].started_at = Some(NOW - 4000);
    let plan = Case::new(&spec, 0, &all).run();
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([1]));
}

#[test]
fn idle_timeout_is_respected() {
    let spec = spec(); // 900 s
    let mut all = nodes(0..4, NodeState::Running);
    // 0: idle heartbeat 901 s ago: goes. 1: idle heartbeat 899 s ago: stays.
    all[0].last_heartbeat = Some(NOW - 901);
    all[1].last_heartbeat = Some(NOW - 899);
    // 2: never heartbeated, started 900 s ago: goes. 3: started 100 s ago: stays.
    all[2].started_at = Some(NOW - 900);
    all[3].started_at = Some(NOW - 100);
    let plan = Case::new(&spec, 0, &all).run();
    // Newest first by start time: node 2 started later than node 0.
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([2, 0]));
    assert!(
        plan.actions[0].reason.ends_with("idle 900 s"),
        "{}",
        plan.actions[0].reason
    );
    assert!(
        plan.actions[1].reason.ends_with("idle 901 s"),
        "{}",
        plan.actions[1].reason
    );
    assert!(
        condition(&plan, "WaitingForIdle: 2 ").is_some(),
        "{:?}",
        plan.conditions
    );
}

#[test]
fn a_restart_resets_idle_time_despite_an_old_heartbeat() {
    let spec = spec();
    let mut all = nodes(0..1, NodeState::Running);
    all[0].last_heartbeat = Some(NOW - 5000);
    all[0].started_at = Some(NOW - 60);
    let plan = Case::new(&spec, 0, &all).run();
    assert!(plan.actions.is_empty());
}

#[test]
fn in_flight_nodes_are_left_alone() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    spec.scale_down = ScaleDown::Delete;
    let mut all = vec![
        node(0, NodeState::Running),
        node(1, NodeState::Running),
        node(2, NodeState::Failed),
        node(3, NodeState::Missing),
        node(4, NodeState::Stopped),
        node(5, NodeState::Deallocated),
    ];
    for n in &mut all {
        n.in_flight = true;
    }
    let plan = Case::new(&spec, 0, &all).run();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.active, 2);
    assert!(condition(&plan, "WaitingForIdle: 2").is_some());

    // An in-flight deallocated node is not started either; it is waited for rather than
    // replaced by a new VM.
    let plan = Case::new(&spec, 3, &all).run();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(condition(&plan, "WaitingForDeallocation: 1 ").is_some());
    let plan = Case::new(&spec, 4, &all).run();
    assert_eq!(names(&plan, VmActionKind::Create), names_of([100]));
}

#[test]
fn creating_and_starting_nodes_count_and_are_never_scaled_down() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let mut all = nodes(0..2, NodeState::Running);
    all.extend(nodes(2..6, NodeState::Creating));
    all.extend(nodes(6..8, NodeState::Starting));
    let plan = Case::new(&spec, 4, &all).run();
    assert_eq!(plan.active, 8);
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([1, 0]));
    assert!(condition(&plan, "WaitingForIdle: 2 ").is_some());
    let plan = Case::new(&spec, 8, &all).run();
    assert!(plan.actions.is_empty());
}

#[test]
fn max_caps_creates() {
    let mut spec = spec();
    spec.max = 10;
    let plan = Case::new(&spec, 12, &[]).run();
    assert_eq!(of_kind(&plan, VmActionKind::Create).len(), 10);
    assert_eq!(
        condition(&plan, "AtMax:"),
        Some("AtMax: 10 nodes exist or are being created (max 10); 2 more wanted")
    );
}

#[test]
fn every_existing_node_counts_toward_max_except_failed_missing_deleting() {
    let mut spec = spec();
    spec.max = 10;
    let mut all = nodes(0..4, NodeState::Running);
    all.push(node(4, NodeState::Deallocating)); // counts
    all[3].draining = true; // counts, not active, busy so it stays
    all[3].busy = true;
    all[3].last_heartbeat = Some(NOW);
    all.push(node(5, NodeState::Failed));
    all.push(node(6, NodeState::Missing));
    all.push(node(7, NodeState::Deleting));
    let mut case = Case::new(&spec, 10, &all);
    case.next_index = 8;
    let plan = case.run();
    // active 3, need 7; one deallocating node will be started later; 5 exist → 5 of 6 creates.
    assert_eq!(names(&plan, VmActionKind::Create), names_of(8..13));
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([5]));
    assert_eq!(names(&plan, VmActionKind::Forget), names_of([6]));
    assert!(
        condition(&plan, "AtMax: 10 nodes").is_some(),
        "{:?}",
        plan.conditions
    );
    assert!(condition(&plan, "WaitingForDeallocation: 1 ").is_some());
}

#[test]
fn at_max_unstartable_deallocated_nodes_are_replaced_oldest_first() {
    let mut spec = spot_spec(false);
    spec.max = 10;
    let mut all = nodes(0..6, NodeState::Running);
    // Four evicted Spot nodes of a size that has no Spot capacity now.
    all.extend(nodes(6..10, NodeState::Deallocated));
    for n in &mut all {
        n.priority = Priority::Spot;
    }
    let unavailable = [unavailable(T4, Priority::Spot, "AllocationFailed")];
    let mut case = Case::new(&spec, 8, &all);
    case.unavailable = &unavailable;
    case.next_index = 10;
    let plan = case.run();
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([6, 7]));
    assert_eq!(
        of_kind(&plan, VmActionKind::Delete)[0].reason,
        "size Standard_NC4as_T4_v3 (spot) unavailable (AllocationFailed); replacing"
    );
    let creates = of_kind(&plan, VmActionKind::Create);
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].size.as_deref(), Some(T8));
    assert!(names(&plan, VmActionKind::Start).is_empty());
    assert!(condition(&plan, "AtMax").is_none());
}

#[test]
fn below_max_unstartable_deallocated_nodes_are_kept() {
    let spec = spot_spec(false);
    let mut all = nodes(0..2, NodeState::Deallocated);
    for n in &mut all {
        n.priority = Priority::Spot;
    }
    let unavailable = [unavailable(T4, Priority::Spot, "AllocationFailed")];
    let mut case = Case::new(&spec, 2, &all);
    case.unavailable = &unavailable;
    let plan = case.run();
    assert_eq!(of_kind(&plan, VmActionKind::Create).len(), 2);
    assert_eq!(plan.actions.len(), 2);
}

#[test]
fn at_max_with_no_size_available_nothing_is_replaced() {
    let mut spec = spot_spec(false);
    spec.max = 2;
    let mut all = nodes(0..2, NodeState::Deallocated);
    for n in &mut all {
        n.priority = Priority::Spot;
    }
    let unavailable = [
        unavailable(T4, Priority::Spot, "AllocationFailed"),
        unavailable(T8, Priority::Spot, "AllocationFailed"),
    ];
    let mut case = Case::new(&spec, 2, &all);
    case.unavailable = &unavailable;
    let plan = case.run();
    assert!(plan.actions.is_empty());
    assert!(condition(&plan, "NoCapacity:").is_some());
}

#[test]
fn deallocated_nodes_of_a_size_no_longer_listed_are_not_started() {
    let mut spec = spec();
    spec.max = 2;
    let mut all = nodes(0..2, NodeState::Deallocated);
    all[0].size = "Standard_D4s_v5".into();
    let mut case = Case::new(&spec, 2, &all);
    case.next_index = 2;
    let plan = case.run();
    assert_eq!(names(&plan, VmActionKind::Start), names_of([1]));
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([0]));
    assert_eq!(names(&plan, VmActionKind::Create), names_of([2]));
}

#[test]
fn deleting_removes_everything_but_busy_and_in_flight_nodes() {
    let spec = spec();
    let mut all = vec![
        node(0, NodeState::Running),
        node(1, NodeState::Running),
        node(2, NodeState::Deallocated),
        node(3, NodeState::Stopped),
        node(4, NodeState::Creating),
        node(5, NodeState::Failed),
        node(6, NodeState::Missing),
        node(7, NodeState::Deleting),
        node(8, NodeState::Running),
        node(9, NodeState::Deallocating),
    ];
    all[1].busy = true;
    all[1].last_heartbeat = Some(NOW - 5);
    all[8].in_flight = true;
    let mut case = Case::new(&spec, 7, &all);
    case.deleting = true;
    let plan = case.run();
    assert_eq!(plan.desired, 0);
    assert_eq!(
        names(&plan, VmActionKind::Delete),
        names_of([5, 0, 2, 3, 4, 9])
    );
    assert_eq!(names(&plan, VmActionKind::Forget), names_of([6]));
    assert!(of_kind(&plan, VmActionKind::Create).is_empty());
    assert_eq!(
        condition(&plan, "WaitingForBusyNodes:"),
        Some("WaitingForBusyNodes: 1 busy nodes finish their work before the pool is deleted")
    );
    assert_eq!(
        of_kind(&plan, VmActionKind::Delete)[1].reason,
        "pool is being deleted"
    );
}

#[test]
fn failed_nodes_are_deleted_and_replaced_missing_ones_forgotten_and_replaced() {
    let spec = spec();
    let mut all = nodes(0..2, NodeState::Running);
    let mut failed = node(2, NodeState::Failed);
    failed.failed_code = Some("AllocationFailed".into());
    all.push(failed);
    all.push(node(3, NodeState::Missing));
    let mut case = Case::new(&spec, 4, &all);
    case.next_index = 4;
    let plan = case.run();
    let kinds: Vec<_> = plan
        .actions
        .iter()
        .map(|a| (a.kind, a.node.as_str(), a.reason.as_str()))
        .collect();
    assert_eq!(
        kinds[0],
        (
            VmActionKind::Delete,
            "maya-00002",
            "provisioning failed: AllocationFailed"
        )
    );
    assert_eq!(
        kinds[1],
        (
            VmActionKind::Forget,
            "maya-00003",
            "deleted or evicted outside renderburst"
        )
    );
    assert_eq!(names(&plan, VmActionKind::Create), names_of([4, 5]));
    assert_eq!(plan.actions.len(), 4);
}

#[test]
fn stopped_nodes_are_started_when_needed_before_deallocated_ones() {
    let spec = spec();
    let mut all = nodes(0..2, NodeState::Deallocated);
    all.push(node(2, NodeState::Stopped));
    let plan = Case::new(&spec, 2, &all).run();
    assert_eq!(names(&plan, VmActionKind::Start), names_of([2, 0]));
    assert!(
        of_kind(&plan, VmActionKind::Start)[0]
            .reason
            .contains("powered off outside renderburst")
    );
    assert_eq!(plan.actions.len(), 2);
}

#[test]
fn stopped_nodes_not_needed_are_deallocated_or_deleted() {
    let mut spec = spec();
    let mut all = nodes(0..2, NodeState::Running);
    all.push(node(2, NodeState::Stopped));
    let plan = Case::new(&spec, 2, &all).run();
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([2]));
    assert_eq!(plan.actions.len(), 1);
    spec.scale_down = ScaleDown::Delete;
    let plan = Case::new(&spec, 2, &all).run();
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([2]));
    assert_eq!(plan.actions.len(), 1);
}

#[test]
fn surplus_deallocated_nodes_are_kept_with_deallocate_and_deleted_with_delete() {
    let mut spec = spec();
    let mut all = nodes(0..2, NodeState::Running);
    all.extend(nodes(2..5, NodeState::Deallocated));
    let plan = Case::new(&spec, 3, &all).run();
    assert_eq!(names(&plan, VmActionKind::Start), names_of([2]));
    assert_eq!(plan.actions.len(), 1);

    spec.scale_down = ScaleDown::Delete;
    let plan = Case::new(&spec, 3, &all).run();
    assert_eq!(names(&plan, VmActionKind::Start), names_of([2]));
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([3, 4]));
    assert_eq!(
        of_kind(&plan, VmActionKind::Delete)[0].reason,
        "deallocated and not needed; scale_down is delete"
    );
}

#[test]
fn drained_idle_nodes_leave_regardless_of_surplus_and_are_replaced() {
    let spec = spec(); // idle timeout 900: drained nodes do not wait for it
    let mut all = nodes(0..4, NodeState::Running);
    all[0].draining = true;
    all[0].last_heartbeat = Some(NOW - 1);
    all[1].draining = true;
    all[1].busy = true;
    all[1].last_heartbeat = Some(NOW - 1);
    let mut case = Case::new(&spec, 4, &all);
    case.next_index = 4;
    let plan = case.run();
    assert_eq!(plan.active, 2);
    assert_eq!(names(&plan, VmActionKind::Deallocate), names_of([0]));
    assert_eq!(
        of_kind(&plan, VmActionKind::Deallocate)[0].reason,
        "drained; not busy"
    );
    assert_eq!(names(&plan, VmActionKind::Create), names_of([4, 5]));
    assert_eq!(
        condition(&plan, "WaitingForDrain:"),
        Some("WaitingForDrain: 1 drained nodes are still busy")
    );
}

#[test]
fn drained_deallocated_nodes_are_not_started() {
    let spec = spec();
    let mut all = nodes(0..1, NodeState::Deallocated);
    all[0].draining = true;
    let plan = Case::new(&spec, 1, &all).run();
    assert!(names(&plan, VmActionKind::Start).is_empty());
    assert_eq!(of_kind(&plan, VmActionKind::Create).len(), 1);
}

#[test]
fn a_node_drained_while_deallocated_is_deleted_not_kept_for_a_scale_up() {
    // It used to sit there (disk billed, a place under max taken) until a scale-up at max
    // deleted it to make room.
    let spec = spec();
    let mut all = nodes(0..3, NodeState::Running);
    all.extend(nodes(3..5, NodeState::Deallocated));
    all[3].draining = true;
    let plan = Case::new(&spec, 3, &all).run();
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([3]));
    assert_eq!(
        of_kind(&plan, VmActionKind::Delete)[0].reason,
        "drained while deallocated; deleting it"
    );
    assert!(names(&plan, VmActionKind::Start).is_empty());
    assert!(of_kind(&plan, VmActionKind::Create).is_empty());
    // Below desired, the other deallocated node is started; the drained one never is.
    let plan = Case::new(&spec, 5, &all).run();
    assert_eq!(names(&plan, VmActionKind::Start), names_of([4]));
    assert_eq!(names(&plan, VmActionKind::Delete), names_of([3]));
    assert_eq!(of_kind(&plan, VmActionKind::Create).len(), 1);
}

#[test]
fn deallocating_nodes_are_waited_for_instead_of_creating() {
    let spec = spec();
    let mut all = nodes(0..4, NodeState::Running);
    all.extend(nodes(4..10, NodeState::Deallocating));
    let plan = Case::new(&spec, 12, &all).run();
    assert_eq!(of_kind(&plan, VmActionKind::Create).len(), 2);
    assert!(condition(&plan, "WaitingForDeallocation: 6 ").is_some());
}

#[test]
fn deallocations_still_in_flight_are_waited_for_too() {
    // Azure already shows them deallocated; renderburst has not recorded the end of the
    // operation yet. Creating new VMs now would leave these parked for nothing.
    let spec = spec();
    let mut all = nodes(0..4, NodeState::Running);
    let mut parked = nodes(4..12, NodeState::Deallocated);
    for n in &mut parked {
        n.in_flight = true;
    }
    all.extend(parked);
    let plan = Case::new(&spec, 10, &all).run();
    assert!(of_kind(&plan, VmActionKind::Create).is_empty(), "{plan:?}");
    assert!(
        names(&plan, VmActionKind::Start).is_empty(),
        "in-flight nodes are left alone"
    );
    assert!(condition(&plan, "WaitingForDeallocation: 6 ").is_some());
}

#[test]
fn at_desired_nothing_happens() {
    let spec = spec();
    let mut all = nodes(0..3, NodeState::Running);
    all.extend(nodes(3..5, NodeState::Deallocated));
    let plan = Case::new(&spec, 3, &all).run();
    assert_eq!(
        plan,
        Plan {
            actions: vec![],
            conditions: vec![],
            active: 3,
            desired: 3,
            zombies: vec![],
        }
    );
}

#[test]
fn the_same_input_in_any_order_gives_the_same_plan() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let mut all = nodes(0..6, NodeState::Running);
    all.extend(nodes(6..12, NodeState::Deallocated));
    all.push(node(12, NodeState::Failed));
    all.push(node(13, NodeState::Missing));
    all.push(node(14, NodeState::Stopped));
    // Equal start times: the name breaks the tie.
    for n in &mut all {
        n.created_at = NOW - 3600;
        n.started_at = Some(NOW - 3600);
    }
    let unavailable = [
        unavailable(T8, Priority::Regular, "SkuNotAvailable"),
        unavailable(T4, Priority::Spot, "AllocationFailed"),
    ];
    for desired in [0, 3, 6, 10, 20] {
        let mut case = Case::new(&spec, desired, &all);
        case.unavailable = &unavailable;
        let expected = case.run();
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.swap(1, 7);
        shuffled.swap(3, 11);
        let mut case = Case::new(&spec, desired, &shuffled);
        case.unavailable = &unavailable;
        assert_eq!(case.run(), expected, "desired {desired}");
        assert_eq!(case.run(), expected, "desired {desired}");
    }
    // Equal start times: newest-first falls back to name, descending.
    let plan = Case::new(&spec, 3, &all).run();
    assert_eq!(
        names(&plan, VmActionKind::Deallocate),
        names_of([14, 5, 4, 3])
    );
}

#[test]
fn size_conditions_follow_preference_order_and_keep_the_longest_entry() {
    let spec = spot_spec(true);
    let mut long = unavailable(T4, Priority::Spot, "SkuNotAvailable");
    long.until = NOW + 7200;
    let unavailable = [
        unavailable(T8, Priority::Spot, "OperationNotAllowed"),
        unavailable(T4, Priority::Spot, "AllocationFailed"),
        long,
        unavailable("Standard_D2s_v5", Priority::Spot, "AllocationFailed"),
    ];
    let mut case = Case::new(&spec, 0, &[]);
    case.unavailable = &unavailable;
    let plan = case.run();
    assert_eq!(
        plan.conditions,
        vec![
            "SizeUnavailable: Standard_NC4as_T4_v3 (spot) SkuNotAvailable until 2023-11-15T00:13:20Z",
            "SizeUnavailable: Standard_NC8as_T4_v3 (spot) OperationNotAllowed until 2023-11-14T23:12:20Z",
        ]
    );
}

fn bootstrap_spec(timeout: u64) -> PoolSpec {
    let mut s = spec();
    s.bootstrap = Some(
        serde_json::from_value(serde_json::json!({"register_timeout_seconds": timeout})).unwrap(),
    );
    s
}

#[test]
fn a_node_that_never_registers_is_deleted_and_replaced_after_the_timeout() {
    let spec = bootstrap_spec(600);
    // Node 1 registered; node 2 has run an hour without registering; node 3 started
    // 100 s ago and is still within its time.
    let mut all = vec![node(1, NodeState::Running), node(2, NodeState::Running)];
    all[0].registered_at = Some(NOW - 3000);
    let mut young = node(3, NodeState::Running);
    young.started_at = Some(NOW - 100);
    all.push(young);
    let plan = Case::new(&spec, 3, &all).run();
    assert_eq!(plan.zombies, vec![node_name("maya", 2)]);
    assert_eq!(
        names(&plan, VmActionKind::Delete),
        vec![node_name("maya", 2)]
    );
    assert!(
        of_kind(&plan, VmActionKind::Delete)[0]
            .reason
            .starts_with("zombie:")
    );
    // The zombie does not count: one replacement is created.
    assert_eq!(plan.active, 2);
    assert_eq!(
        names(&plan, VmActionKind::Create),
        vec![node_name("maya", 100)]
    );
    assert!(condition(&plan, "Zombie:").is_some_and(|c| c.contains("maya-00002")));
    assert!(condition(&plan, "WaitingForRegistration:").is_some_and(|c| c.contains(" 1 running")));
}

#[test]
fn registration_is_not_required_without_a_bootstrap_section_nor_of_busy_or_in_flight_nodes() {
    let all = nodes(1..3, NodeState::Running);
    let plan = Case::new(&spec(), 2, &all).run();
    assert!(
        plan.actions.is_empty() && plan.zombies.is_empty(),
        "{plan:?}"
    );

    let spec = bootstrap_spec(600);
    let mut all = nodes(1..3, NodeState::Running);
    all[0].busy = true;
    all[0].last_heartbeat = Some(NOW - 10);
    all[1].in_flight = true;
    let plan = Case::new(&spec, 2, &all).run();
    assert!(plan.zombies.is_empty(), "{plan:?}");
    assert!(of_kind(&plan, VmActionKind::Delete).is_empty());
}

#[test]
fn the_register_timeout_counts_from_the_last_start() {
    let spec = bootstrap_spec(600);
    let mut n = node(1, NodeState::Running);
    n.started_at = Some(NOW - 599);
    let plan = Case::new(&spec, 1, std::slice::from_ref(&n)).run();
    assert!(plan.zombies.is_empty());
    n.started_at = Some(NOW - 600);
    let plan = Case::new(&spec, 1, std::slice::from_ref(&n)).run();
    assert_eq!(plan.zombies, vec![n.name.clone()]);
    // A pool being deleted deletes it anyway, without calling it a zombie.
    let mut case = Case::new(&spec, 1, std::slice::from_ref(&n));
    case.deleting = true;
    assert!(case.run().zombies.is_empty());
}

#[test]
fn a_held_pool_plans_no_creates_and_says_why() {
    let spec = spec();
    let hold = Hold {
        until: NOW + 40,
        probe: Some(1),
        condition:
            "Blocked: InvalidResourceReference: subnet x was not found; fix: azure.subnet_id".into(),
    };
    let mut case = Case::new(&spec, 5, &[]);
    case.hold = Some(&hold);
    let plan = case.run();
    assert!(
        of_kind(&plan, VmActionKind::Create).is_empty(),
        "{:?}",
        plan.actions
    );
    let blocked = condition(&plan, "Blocked: InvalidResourceReference").unwrap();
    assert!(blocked.contains("fix: azure.subnet_id"), "{blocked}");
    assert!(
        blocked.ends_with(&format!(
            "next create attempt at {}",
            rb_core::offerings::format_utc(NOW + 40)
        )),
        "{blocked}"
    );
    // Same input, same plan: the planner reads no clock.
    assert_eq!(case.run(), plan);
}

#[test]
fn once_the_hold_lapses_one_probe_is_created_not_the_whole_gap() {
    let spec = spec();
    let hold = Hold {
        until: NOW,
        probe: Some(1),
        condition: "Blocked: InvalidResourceReference: subnet x was not found".into(),
    };
    let mut case = Case::new(&spec, 5, &[]);
    case.hold = Some(&hold);
    let plan = case.run();
    assert_eq!(names(&plan, VmActionKind::Create), names_of(100..101));
    assert_eq!(
        condition(&plan, "Blocked:"),
        Some("Blocked: InvalidResourceReference: subnet x was not found")
    );
    // A hold without a probe limit (the admin changed the pool) creates the whole gap.
    let open = Hold {
        probe: None,
        ..hold.clone()
    };
    case.hold = Some(&open);
    assert_eq!(case.run().actions.len(), 5);
}

#[test]
fn a_hold_does_not_stop_starts_or_scale_down() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let hold = Hold {
        until: NOW + 600,
        probe: Some(1),
        condition: "BackingOff: InternalServerError".into(),
    };
    let parked = nodes(0..3, NodeState::Deallocated);
    let mut case = Case::new(&spec, 2, &parked);
    case.hold = Some(&hold);
    assert_eq!(of_kind(&case.run(), VmActionKind::Start).len(), 2);
    let running = nodes(0..4, NodeState::Running);
    let mut down = Case::new(&spec, 2, &running);
    down.hold = Some(&hold);
    let plan = down.run();
    assert_eq!(of_kind(&plan, VmActionKind::Deallocate).len(), 2);
    assert!(condition(&plan, "BackingOff").is_none());
}

/// Creates are named by the plan, as the executor will create them: names of failed creates
/// first (lowest first) where nothing else holds them, then fresh indexes. A failed VM whose
/// name a create takes is not deleted by the plan: the create deletes it first, so its name
/// is never passed over for a fresh one.
#[test]
fn creates_take_failed_names_first_then_fresh_indexes() {
    let spec = spec();
    let reusable = |name: &str, in_flight: bool| ReusableName {
        name: name.to_string(),
        in_flight,
    };
    let mut failed = node(7, NodeState::Failed);
    failed.name = "maya-00007".to_string();
    let inventory = vec![failed];
    let names = [
        reusable("maya-00009", false),
        reusable("maya-00003", true),  // a write on it is in flight
        reusable("maya-00007", false), // its failed VM: the create deletes it first
        reusable("maya-00005", false),
    ];
    let mut case = Case::new(&spec, 4, &inventory);
    case.reusable = &names;
    let p = case.run();
    let created: Vec<&str> = of_kind(&p, VmActionKind::Create)
        .iter()
        .map(|a| a.node.as_str())
        .collect();
    assert_eq!(
        created,
        ["maya-00005", "maya-00007", "maya-00009", "maya-00100"],
        "{p:#?}"
    );
    assert!(
        of_kind(&p, VmActionKind::Delete).is_empty(),
        "the create of maya-00007 takes over the delete of its failed VM: {p:#?}"
    );

    // A name of a VM that is not failed is not reused.
    let running = vec![node(5, NodeState::Running)];
    let mut case = Case::new(&spec, 2, &running);
    let five = [reusable(&running[0].name, false)];
    case.reusable = &five;
    let created: Vec<String> = of_kind(&case.run(), VmActionKind::Create)
        .iter()
        .map(|a| a.node.clone())
        .collect();
    assert_eq!(created, ["maya-00100"]);
}

#[test]
fn an_arm_outage_closes_the_gate_on_creates_not_on_starts_or_deletes() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let outage = CreateGate::open().with(GateReason::ArmUnavailable {
        since: NOW - 90,
        error: "503 ServiceUnavailable".into(),
    });
    let parked = nodes(0..2, NodeState::Deallocated);
    let input = |nodes: &[NodeView], desired| {
        plan(&PlanInput {
            spec: &spec,
            desired,
            nodes,
            unavailable: &[],
            next_index: 100,
            deleting: false,
            gate: &outage,
            reusable: &[],
            no_room: &Default::default(),
            now: NOW,
        })
    };
    let up = input(&parked, 5);
    assert_eq!(of_kind(&up, VmActionKind::Start).len(), 2);
    assert!(of_kind(&up, VmActionKind::Create).is_empty(), "{up:?}");
    let shown = condition(&up, "ArmUnavailable").expect("the gate's condition is shown");
    assert!(shown.contains("503 ServiceUnavailable"), "{shown}");
    // Shrinking never waits on the gate, and a pool that wants no node shows no gate.
    let running = nodes(0..3, NodeState::Running);
    let down = input(&running, 1);
    assert_eq!(of_kind(&down, VmActionKind::Deallocate).len(), 2);
    assert!(condition(&down, "ArmUnavailable").is_none());
    // Two reasons: the fewest creates either allows, both shown.
    let probing = Hold {
        until: NOW - 1,
        probe: Some(1),
        condition: "Blocked: InvalidResourceReference: no subnet".into(),
    };
    let both = CreateGate::backoff(Some(&probing));
    let one = plan(&PlanInput {
        spec: &spec,
        desired: 4,
        nodes: &[],
        unavailable: &[],
        next_index: 100,
        deleting: false,
        gate: &both,
        reusable: &[],
        no_room: &Default::default(),
        now: NOW,
    });
    assert_eq!(of_kind(&one, VmActionKind::Create).len(), 1, "a probe");
    let closed = both.with(GateReason::ArmUnavailable {
        since: NOW - 90,
        error: "503".into(),
    });
    let none = plan(&PlanInput {
        spec: &spec,
        desired: 4,
        nodes: &[],
        unavailable: &[],
        next_index: 100,
        deleting: false,
        gate: &closed,
        reusable: &[],
        no_room: &Default::default(),
        now: NOW,
    });
    assert!(of_kind(&none, VmActionKind::Create).is_empty());
    assert!(condition(&none, "Blocked").is_some() && condition(&none, "ArmUnavailable").is_some());
}

/// A second plan made before Azure shows the first one's writes (the listing still says
/// running, or deallocated) counts each node as its write in flight will leave it: scaling
/// 4 → 2 while two deletes are in flight deletes no more, and a start in flight is not
/// started or replaced again.
#[test]
fn writes_in_flight_count_as_what_they_make_the_node() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    spec.scale_down = ScaleDown::Delete;
    let mut running = nodes(0..4, NodeState::Running);
    for n in &mut running[2..] {
        n.in_flight = true;
        n.pending = Some(rb_core::ActionKind::Delete);
    }
    let plan = Case::new(&spec, 2, &running).run();
    assert_eq!(plan.active, 2);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    // Without knowing what is in flight the same listing loses two more nodes.
    for n in &mut running[2..] {
        n.pending = None;
    }
    assert_eq!(
        of_kind(&Case::new(&spec, 2, &running).run(), VmActionKind::Delete).len(),
        2
    );

    let mut parked = nodes(0..3, NodeState::Deallocated);
    parked[0].in_flight = true;
    parked[0].pending = Some(rb_core::ActionKind::Start);
    let plan = Case::new(&spec, 1, &parked).run();
    assert_eq!(plan.active, 1);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.kind != VmActionKind::Start && a.kind != VmActionKind::Create),
        "{:?}",
        plan.actions
    );
}

/// Compute throttles power operations per VM too: among nodes equally good to start or to
/// remove, those whose own bucket has no room go last.
#[test]
fn nodes_without_room_in_their_compute_bucket_go_last() {
    let mut spec = spec();
    spec.idle_timeout_seconds = 0;
    let parked = nodes(0..3, NodeState::Deallocated);
    let mut case = Case::new(&spec, 1, &parked);
    let oldest = parked
        .iter()
        .min_by_key(|n| (n.created_at, n.name.clone()))
        .unwrap();
    assert_eq!(
        of_kind(&case.run(), VmActionKind::Start)[0].node,
        oldest.name,
        "oldest first"
    );
    case.no_room = [oldest.name.to_ascii_lowercase()].into();
    let started = case.run();
    let started = of_kind(&started, VmActionKind::Start);
    assert_eq!(started.len(), 1);
    assert_ne!(
        started[0].node, oldest.name,
        "the oldest has no room: another goes"
    );

    let running = nodes(0..3, NodeState::Running);
    let mut down = Case::new(&spec, 2, &running);
    let newest = of_kind(&down.run(), VmActionKind::Deallocate)[0]
        .node
        .clone();
    down.no_room = [newest.to_ascii_lowercase()].into();
    let plan = down.run();
    let removed = of_kind(&plan, VmActionKind::Deallocate);
    assert_eq!(removed.len(), 1);
    assert_ne!(
        removed[0].node, newest,
        "the newest has no room: another goes"
    );
}
