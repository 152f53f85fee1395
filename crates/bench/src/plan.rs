//! `plan`: the pure planner's time for P pools of V VMs each (default 100 × 10,000), in the
//! mix of states a busy farm shows (running and busy, idle, deallocated, in flight, failed,
//! evicted), planned repeatedly; the median over runs of all pools' plans and of one pool's.
//! Sized by the command line (`--pools`, `--vms-per-pool`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use rb_core::offerings::{Offering, Unavailable, UnavailableReason};
use rb_core::plan::node_name;
use rb_core::spec::{Os, PoolMode, ScaleDown, SpotSpec};
use rb_core::{NodeState, NodeView, PlanInput, PoolSpec, Priority, plan};
use serde_json::{Value, json};

use crate::report::{Row, Table};

const NOW: i64 = 1_700_000_000;
const SIZES: [&str; 3] = [
    "Standard_NC4as_T4_v3",
    "Standard_NC8as_T4_v3",
    "Standard_NC16as_T4_v3",
];

/// A small deterministic generator, so every run plans the same farm.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Pool {
    spec: PoolSpec,
    desired: u32,
    nodes: Vec<NodeView>,
    unavailable: Vec<Unavailable>,
}

fn pool(i: usize, nodes_per_pool: u64) -> Pool {
    let mut rng = Lcg(i as u64 + 1);
    let spot = i.is_multiple_of(2);
    let priority = if spot {
        Priority::Spot
    } else {
        Priority::Regular
    };
    let name = format!("pool-{i:03}");
    let spec = PoolSpec {
        name: name.clone(),
        mode: PoolMode::Vm,
        vm_sizes: SIZES.iter().map(|s| s.to_string()).collect(),
        priority,
        spot: SpotSpec {
            fallback_to_regular: i.is_multiple_of(4),
            ..SpotSpec::default()
        },
        image: "Canonical:ubuntu-24_04-lts:server:latest".into(),
        os: Os::Linux,
        min: 0,
        max: (nodes_per_pool * 12 / 10).max(1) as u32,
        target: 0,
        idle_timeout_seconds: 900,
        scale_down_stabilization_seconds: 300,
        scale_down: if i.is_multiple_of(3) {
            ScaleDown::Delete
        } else {
            ScaleDown::Deallocate
        },
        tags: BTreeMap::new(),
        batch: None,
        licenses: vec![],
        bootstrap: None,
    };
    let nodes = (0..nodes_per_pool)
        .map(|k| {
            // Per 1000: 550 running, 300 deallocated, 30 creating, 20 starting, 20 deallocating,
            // 10 deleting, 10 stopped, 40 failed, 20 missing.
            let state = match rng.below(1000) {
                0..550 => NodeState::Running,
                550..850 => NodeState::Deallocated,
                850..880 => NodeState::Creating,
                880..900 => NodeState::Starting,
                900..920 => NodeState::Deallocating,
                920..930 => NodeState::Deleting,
                930..940 => NodeState::Stopped,
                940..980 => NodeState::Failed,
                _ => NodeState::Missing,
            };
            let created_at = NOW - 86_400 + rng.below(80_000) as i64;
            let running = state == NodeState::Running;
            let heartbeat = running && rng.below(10) < 8;
            let busy = heartbeat && rng.below(10) < 5;
            let in_flight = matches!(
                state,
                NodeState::Creating
                    | NodeState::Starting
                    | NodeState::Deallocating
                    | NodeState::Deleting
            ) || rng.below(100) == 0;
            NodeView {
                name: node_name(&name, k),
                size: SIZES[rng.below(3) as usize].to_string(),
                priority: if spot && rng.below(10) < 8 {
                    Priority::Spot
                } else {
                    Priority::Regular
                },
                state,
                failed_code: (state == NodeState::Failed).then(|| "AllocationFailed".to_string()),
                created_at,
                started_at: (state != NodeState::Creating)
                    .then(|| created_at + rng.below(3600) as i64),
                last_heartbeat: heartbeat.then(|| NOW - rng.below(3600) as i64),
                busy,
                draining: running && rng.below(100) == 0,
                in_flight,
                pending: None,
                registered_at: None,
            }
        })
        .collect();
    // Scale down hard, hold, scale up into deallocated nodes, scale up into creates.
    // Scaled with the pool's size: 20 %, 55 %, 80 %, 110 % of it.
    let desired = (nodes_per_pool * [20, 55, 80, 110][i % 4] / 100) as u32;
    let unavailable = vec![
        Unavailable::new(
            Offering::new(SIZES[0], Priority::Spot),
            UnavailableReason::Capacity,
            "AllocationFailed",
            NOW - 60,
        ),
        Unavailable::new(
            Offering::new(SIZES[1], Priority::Regular),
            UnavailableReason::Quota,
            "OperationNotAllowed",
            NOW - 60,
        ),
    ];
    Pool {
        spec,
        desired,
        nodes,
        unavailable,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Plans `pools` pools of `per_pool` VMs `runs` times; returns the scenario's JSON.
pub fn run(pools: usize, per_pool: u64, runs: usize) -> Value {
    let runs = runs.max(1);
    let farm: Vec<Pool> = (0..pools).map(|i| pool(i, per_pool)).collect();
    let open = rb_core::CreateGate::open();
    let no_room = std::collections::BTreeSet::new();
    let inputs: Vec<PlanInput<'_>> = farm
        .iter()
        .map(|p| PlanInput {
            spec: &p.spec,
            desired: p.desired,
            nodes: &p.nodes,
            unavailable: &p.unavailable,
            next_index: per_pool,
            deleting: false,
            gate: &open,
            reusable: &[],
            no_room: &no_room,
            now: NOW,
        })
        .collect();

    // Warm up caches and the allocator; count what a round does so the numbers mean something.
    let mut actions = 0;
    for input in &inputs {
        actions += black_box(plan(input)).actions.len();
    }
    let mut totals = Vec::with_capacity(runs);
    let mut per_pool_times = Vec::with_capacity(runs * pools);
    for _ in 0..runs {
        let start = Instant::now();
        for input in &inputs {
            let t = Instant::now();
            black_box(plan(black_box(input)));
            per_pool_times.push(t.elapsed());
        }
        totals.push(start.elapsed());
    }
    let slowest = per_pool_times.iter().max().copied().unwrap_or_default();
    let total = median(totals);
    let one = if per_pool_times.is_empty() {
        Duration::ZERO
    } else {
        median(per_pool_times)
    };
    json!({
        "scenario": "plan",
        "vms": pools as u64 * per_pool,
        "pools": pools,
        "runs": runs,
        "actions_per_round": actions,
        "wall_s": total.as_secs_f64(),
        "per_pool_median_s": one.as_secs_f64(),
        "per_pool_slowest_s": slowest.as_secs_f64(),
        "lower_bound_s": null,
        "ratio": null,
        "arm_requests": null,
        "throttled_429": null,
        "cpu_s": null,
        "peak_rss_mib": null,
    })
}

pub fn table(v: &Value) -> Table {
    let ms = |k: &str| format!("{:.3}", v[k].as_f64().unwrap_or(f64::NAN) * 1000.0);
    Table {
        title: format!(
            "plan: {} pools x {} VMs, {} actions per round, median of {} runs",
            v["pools"],
            v["vms"].as_u64().unwrap_or(0) / v["pools"].as_u64().unwrap_or(1).max(1),
            v["actions_per_round"],
            v["runs"]
        ),
        header: vec!["all pools ms", "per pool median ms", "per pool slowest ms"],
        rows: vec![Row(vec![
            ms("wall_s"),
            ms("per_pool_median_s"),
            ms("per_pool_slowest_s"),
        ])],
        notes: vec![],
    }
}
