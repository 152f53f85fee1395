//! The planner: a pure function from a pool's spec, its desired count, what Azure shows and
//! what renderburst is already doing, to the actions of one activation, each with a reason.
//!
//! Over 600 lines: one planner whose steps share one state (`Planner`); its tests live in
//! `tests/planner.rs`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::gate::CreateGate;
use crate::offerings::{Offering, Unavailable, format_utc, is_unavailable};
use crate::spec::{PoolSpec, Priority, ScaleDown};

/// A node's state as observed in Azure (or in flight through renderburst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Creating,
    Starting,
    Running,
    /// Powered off but still allocated (and billed): not renderburst's doing.
    Stopped,
    Deallocating,
    Deallocated,
    Deleting,
    /// Provisioning failed (for example AllocationFailed on create).
    Failed,
    /// In renderburst's inventory but no longer in Azure (deleted or evicted outside).
    Missing,
    /// A Batch Spot node that Azure took back; Batch reallocates it in place.
    Preempted,
}

/// One VM of the pool, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    /// VM size, canonical casing.
    pub size: String,
    pub priority: Priority,
    pub state: NodeState,
    /// ARM error code when `state` is Failed.
    pub failed_code: Option<String>,
    pub created_at: UnixSeconds,
    /// When it last started running (creation counts); None if never ran.
    pub started_at: Option<UnixSeconds>,
    /// Last heartbeat from the render manager or the node, and what it said.
    pub last_heartbeat: Option<UnixSeconds>,
    pub busy: bool,
    /// Marked for drain: gets no new work, leaves when idle.
    pub draining: bool,
    /// renderburst has an operation in flight on it (an open intent): leave it alone.
    pub in_flight: bool,
    /// The kind of that write, from its intent: what the node is becoming, so a second plan
    /// made before Azure shows the write counts it as it will be (a node being deleted or
    /// deallocated is not active, one being started is), not as the last listing saw it.
    #[serde(default)]
    pub pending: Option<ActionKind>,
    /// When the node first called `POST /v1/nodes/{name}/register` with its token. In a
    /// pool with a `bootstrap` section a running node that has not registered within
    /// `register_timeout_seconds` of starting is a zombie, and is replaced.
    #[serde(default)]
    pub registered_at: Option<UnixSeconds>,
}

/// Every kind of write the journal records, whichever backend plans it: an intent's kind,
/// a backoff streak's kind, the verb of `plan.*` events. Plans are typed per backend
/// ([`VmActionKind`], [`crate::batch::BatchActionKind`]); each kind converts into this one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Create a VM (one ARM write: NIC and OS disk inline, `deleteOption: Delete`).
    Create,
    Start,
    Deallocate,
    Delete,
    /// Drop a Missing node from the inventory (no ARM call).
    Forget,
    /// Create the Batch pool (management plane PUT, with its first targets).
    CreatePool,
    /// Set the Batch pool's fixed-scale targets (management plane PATCH).
    ResizePool,
    /// Remove one Batch node (data plane `removenodes`; the executor groups them).
    RemoveNode,
    /// Delete the Batch pool (management plane DELETE, long-running).
    DeletePool,
    /// Stop the Batch pool's resize (management plane `stopResize`), so new targets can be set.
    StopResize,
    /// Replace the enrollment token in the Batch pool's start task (management plane PATCH);
    /// decided by the Batch controller from the token's age, not by the planner.
    RotateEnrollToken,
    /// Delete a NIC no VM uses (the garbage collector; Network DELETE, long-running).
    DeleteNic,
    /// Delete an OS disk no VM uses (the garbage collector; Compute DELETE, long-running).
    DeleteDisk,
}

/// What a VM pool's plan does to one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmActionKind {
    /// Create a VM (one ARM write: NIC and OS disk inline, `deleteOption: Delete`).
    Create,
    Start,
    Deallocate,
    Delete,
    /// Drop a Missing node from the inventory (no ARM call).
    Forget,
}

impl From<VmActionKind> for ActionKind {
    fn from(k: VmActionKind) -> Self {
        match k {
            VmActionKind::Create => ActionKind::Create,
            VmActionKind::Start => ActionKind::Start,
            VmActionKind::Deallocate => ActionKind::Deallocate,
            VmActionKind::Delete => ActionKind::Delete,
            VmActionKind::Forget => ActionKind::Forget,
        }
    }
}

/// The VM write an intent of this kind journals, for the kinds a VM pool plans.
impl TryFrom<ActionKind> for VmActionKind {
    type Error = ActionKind;

    fn try_from(kind: ActionKind) -> Result<Self, ActionKind> {
        match kind {
            ActionKind::Create => Ok(VmActionKind::Create),
            ActionKind::Start => Ok(VmActionKind::Start),
            ActionKind::Deallocate => Ok(VmActionKind::Deallocate),
            ActionKind::Delete => Ok(VmActionKind::Delete),
            ActionKind::Forget => Ok(VmActionKind::Forget),
            other => Err(other),
        }
    }
}

/// One thing a VM pool's plan does, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmAction {
    pub kind: VmActionKind,
    /// VM name; for Create, the name the plan reserves (see [`Plan`]).
    pub node: String,
    /// For Create: the size and priority chosen.
    pub size: Option<String>,
    pub priority: Option<Priority>,
    pub reason: String,
}

/// What every backend's action tells the journal and the holds: its kind of write, the
/// node (or pool) it is on, and why.
pub trait Step {
    fn kind(&self) -> ActionKind;
    fn node(&self) -> &str;
    fn reason(&self) -> &str;
}

impl Step for VmAction {
    fn kind(&self) -> ActionKind {
        self.kind.into()
    }
    fn node(&self) -> &str {
        &self.node
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

/// Everything the planner needs. No IO handles, no clock.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub spec: &'a PoolSpec,
    pub desired: u32,
    pub nodes: &'a [NodeView],
    pub unavailable: &'a [Unavailable],
    /// The next free node index for new names (`{pool}-{index:05}`); the store keeps it so
    /// names are never reused.
    pub next_index: u64,
    /// The pool is being deleted: remove every node (busy ones once idle).
    pub deleting: bool,
    /// Every reason the pool may not create now (the controller's backoff, an ARM outage...):
    /// no creates while it is closed, at most what it lets through otherwise; its conditions
    /// are shown while the pool needs nodes.
    pub gate: &'a CreateGate,
    /// Names of the pool's creates that failed definitely, kept so failures never burn names:
    /// creates take them (lowest first) before fresh indexes from `next_index`.
    pub reusable: &'a [ReusableName],
    /// Nodes (lower-case names) whose own Compute bucket has no room now (Compute throttles
    /// power operations per VM as well as per subscription): among nodes equally good to
    /// start or remove, the planner takes others first.
    pub no_room: &'a std::collections::BTreeSet<String>,
    pub now: UnixSeconds,
}

/// A name of a create that failed definitely, kept for the pool's next creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReusableName {
    pub name: String,
    /// A write on that name is in flight (an open intent, or one this process runs).
    pub in_flight: bool,
}

/// The plan of one activation of one pool, typed by its backend's actions (`Plan` is a VM
/// pool's; a Batch pool's is `Plan<BatchAction>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan<A = VmAction> {
    pub actions: Vec<A>,
    /// Why the pool cannot reach its desired count now, or other facts an admin should
    /// see (`"NoCapacity: ..."`, `"AtMax"`...). Stable prefixes, human text after.
    pub conditions: Vec<String>,
    /// Nodes counted toward the desired count (creating, starting, running, not draining).
    pub active: u32,
    pub desired: u32,
    /// Running nodes that did not register in time (bootstrap pools): deleted by this plan
    /// and replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zombies: Vec<String>,
}

impl<A> Default for Plan<A> {
    fn default() -> Self {
        Self {
            actions: Vec::new(),
            conditions: Vec::new(),
            active: 0,
            desired: 0,
            zombies: Vec::new(),
        }
    }
}

/// The VM name for a node index: `{pool}-{index:05}`.
pub fn node_name(pool: &str, index: u64) -> String {
    format!("{pool}-{index:05}")
}

/// How long a `busy: true` heartbeat is believed, at least. A node that crashed mid-frame
/// stops heartbeating; after this (or the idle timeout, if longer) it counts as idle since its
/// last heartbeat. Not the idle timeout alone: with `idle_timeout_seconds = 0` a busy node
/// would be removable a second after saying it is busy.
pub const BUSY_HEARTBEAT_TTL_SECONDS: i64 = 600;

/// Plans one activation of one pool.
///
/// Rules, in the order they apply:
/// - in-flight nodes are left alone, whatever their state;
/// - missing nodes are forgotten, failed nodes deleted;
/// - a pool being deleted deletes every node that is not busy;
/// - drained nodes leave once not busy, whatever the desired count, and do not count toward
///   it (so they are replaced); one found deallocated (drained while parked) is deleted;
/// - below desired: start stopped nodes, then deallocated ones (oldest first), wait for
///   deallocating ones, then create on the first available size, never above `max`;
/// - above desired: remove idle running nodes, newest first, never busy ones;
/// - stopped nodes not needed are deallocated, or deleted with `scale_down: delete`, which also
///   deletes deallocated nodes that are not needed.
///
/// The output depends only on the input (nodes are ordered by name first), so the same
/// observation always gives the same plan and the what-if endpoint shows what will happen.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut nodes: Vec<&NodeView> = input.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut planner = Planner {
        input,
        spec: input.spec,
        now: input.now,
        plan: Plan {
            active: count(&nodes, is_active),
            desired: if input.deleting { 0 } else { input.desired },
            ..Plan::default()
        },
    };
    planner.size_conditions();
    planner.forget_and_clean_up(&nodes);
    if input.deleting {
        planner.delete_everything(&nodes);
    } else {
        // Zombies are deleted and no longer count: the gap they leave is filled like any.
        let zombies = planner.zombies(&nodes);
        let rest: Vec<&NodeView> = nodes
            .iter()
            .copied()
            .filter(|n| !zombies.contains(&n.name))
            .collect();
        planner.plan.active = count(&rest, is_active);
        planner.reconcile(&rest);
    }
    planner.plan
}

struct Planner<'a> {
    input: &'a PlanInput<'a>,
    spec: &'a PoolSpec,
    now: UnixSeconds,
    plan: Plan,
}

impl Planner<'_> {
    fn push(&mut self, kind: VmActionKind, node: &str, reason: String) {
        self.plan.actions.push(VmAction {
            kind,
            node: node.to_string(),
            size: None,
            priority: None,
            reason,
        });
    }

    fn condition(&mut self, text: String) {
        self.plan.conditions.push(text);
    }

    /// What scale-down does to a node, per the spec.
    fn remove_kind(&self) -> VmActionKind {
        match self.spec.scale_down {
            ScaleDown::Deallocate => VmActionKind::Deallocate,
            ScaleDown::Delete => VmActionKind::Delete,
        }
    }

    /// The node's own Compute bucket has no room now (see [`PlanInput::no_room`]).
    fn no_room(&self, n: &NodeView) -> bool {
        !self.input.no_room.is_empty() && self.input.no_room.contains(&n.name.to_ascii_lowercase())
    }

    fn idle_timeout(&self) -> i64 {
        i64::try_from(self.spec.idle_timeout_seconds).unwrap_or(i64::MAX)
    }

    /// Busy as far as removal is concerned: said so recently enough to be believed.
    fn is_busy(&self, n: &NodeView) -> bool {
        is_busy(n, self.now, self.idle_timeout())
    }

    fn idle_since(&self, n: &NodeView) -> UnixSeconds {
        idle_since(n)
    }

    /// The entry that makes a node's offering unavailable now, if any.
    fn offering_unavailable(&self, size: &str, priority: Priority) -> Option<&Unavailable> {
        is_unavailable(
            self.input.unavailable,
            &Offering::new(size, priority),
            self.now,
        )
    }

    fn in_spec(&self, size: &str) -> bool {
        self.spec
            .vm_sizes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(size))
    }

    /// Why a deallocated node cannot be started now, or None if it can.
    fn why_not_startable(&self, n: &NodeView) -> Option<String> {
        if !self.in_spec(&n.size) {
            return Some(format!("size {} is no longer in vm_sizes", n.size));
        }
        self.offering_unavailable(&n.size, n.priority).map(|u| {
            format!(
                "size {} ({}) unavailable ({})",
                n.size,
                priority_str(n.priority),
                u.code
            )
        })
    }

    /// One `SizeUnavailable` condition per unavailable offering of the pool's sizes, in
    /// preference order, so an admin sees why a pool runs on its second choice.
    fn size_conditions(&mut self) {
        let mut seen: Vec<(usize, Priority, &Unavailable)> = Vec::new();
        for u in self
            .input
            .unavailable
            .iter()
            .filter(|u| u.is_active(self.now))
        {
            let Some(pos) = self
                .spec
                .vm_sizes
                .iter()
                .position(|s| s.eq_ignore_ascii_case(&u.offering.size))
            else {
                continue;
            };
            let priority = u.offering.priority;
            if seen.iter().any(|&(p, pr, _)| p == pos && pr == priority) {
                continue;
            }
            // The longest entry decides when the offering can be tried again.
            let longest =
                is_unavailable(self.input.unavailable, &u.offering, self.now).unwrap_or(u);
            seen.push((pos, priority, longest));
        }
        seen.sort_by_key(|&(pos, priority, _)| (pos, priority));
        for (pos, priority, u) in seen {
            let text = format!(
                "SizeUnavailable: {} ({}) {} until {}",
                self.spec.vm_sizes[pos],
                priority_str(priority),
                u.code,
                format_utc(u.until)
            );
            self.condition(text);
        }
    }

    fn forget_and_clean_up(&mut self, nodes: &[&NodeView]) {
        for n in nodes.iter().filter(|n| !n.in_flight) {
            match n.state {
                NodeState::Missing => self.push(
                    VmActionKind::Forget,
                    &n.name,
                    "deleted or evicted outside renderburst".to_string(),
                ),
                NodeState::Failed => {
                    let code = n.failed_code.as_deref().unwrap_or("no error code");
                    self.push(
                        VmActionKind::Delete,
                        &n.name,
                        format!("provisioning failed: {code}"),
                    );
                }
                _ => {}
            }
        }
    }

    /// Bootstrap pools only: running nodes that have not registered within
    /// `register_timeout_seconds` of starting are deleted (busy ones are never removed);
    /// younger unregistered nodes are reported as waiting.
    fn zombies(&mut self, nodes: &[&NodeView]) -> Vec<String> {
        let Some(b) = &self.spec.bootstrap else {
            return Vec::new();
        };
        let timeout = i64::try_from(b.register_timeout_seconds).unwrap_or(i64::MAX);
        let mut zombies = Vec::new();
        let mut waiting = 0;
        for n in nodes
            .iter()
            .filter(|n| !n.in_flight && n.state == NodeState::Running && n.registered_at.is_none())
        {
            let since = n.started_at.unwrap_or(n.created_at);
            let waited = self.now.saturating_sub(since);
            if waited < timeout || self.is_busy(n) {
                waiting += 1;
                continue;
            }
            self.push(
                VmActionKind::Delete,
                &n.name,
                format!(
                    "zombie: running for {waited} s without registering (register_timeout_seconds {timeout}); replacing it"
                ),
            );
            self.condition(format!(
                "Zombie: {} did not register within {timeout} s of starting; replacing it",
                n.name
            ));
            zombies.push(n.name.clone());
        }
        if waiting > 0 {
            self.condition(format!(
                "WaitingForRegistration: {waiting} running nodes have not registered yet"
            ));
        }
        self.plan.zombies = zombies.clone();
        zombies
    }

    /// The pool is going away: delete every node, except busy ones, which finish first.
    fn delete_everything(&mut self, nodes: &[&NodeView]) {
        let mut waiting = 0;
        for n in nodes.iter().filter(|n| !n.in_flight) {
            match n.state {
                NodeState::Missing | NodeState::Failed | NodeState::Deleting => {}
                NodeState::Running if self.is_busy(n) => waiting += 1,
                _ => self.push(
                    VmActionKind::Delete,
                    &n.name,
                    "pool is being deleted".to_string(),
                ),
            }
        }
        if waiting > 0 {
            self.condition(format!(
                "WaitingForBusyNodes: {waiting} busy nodes finish their work before the pool is deleted"
            ));
        }
    }

    fn reconcile(&mut self, nodes: &[&NodeView]) {
        let desired = self.input.desired;
        let active = self.plan.active;
        let remove = self.remove_kind();
        // Nodes that count toward `max` and get deleted by this plan.
        let mut deleted = 0u32;

        // Drained nodes go as soon as they are not busy: they get no new work, so waiting for
        // the idle timeout would only cost money.
        let mut drain_waiting = 0;
        for n in nodes
            .iter()
            .filter(|n| n.draining && !n.in_flight && n.state == NodeState::Running)
        {
            if self.is_busy(n) {
                drain_waiting += 1;
            } else {
                self.push(remove, &n.name, "drained; not busy".to_string());
                deleted += u32::from(remove == VmActionKind::Delete);
            }
        }
        if drain_waiting > 0 {
            self.condition(format!(
                "WaitingForDrain: {drain_waiting} drained nodes are still busy"
            ));
        }

        // Below desired: start what exists before creating, oldest first. Stopped nodes first:
        // they are allocated and billed already, and starting them needs no capacity.
        let mut need = desired.saturating_sub(active);
        let mut stopped: Vec<&NodeView> = nodes
            .iter()
            .copied()
            .filter(|n| n.state == NodeState::Stopped && !n.in_flight)
            .collect();
        stopped.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        let mut deallocated: Vec<&NodeView> = nodes
            .iter()
            .copied()
            .filter(|n| n.state == NodeState::Deallocated && !n.in_flight)
            .collect();
        deallocated.sort_by(|a, b| {
            (self.no_room(a), a.created_at, &a.name).cmp(&(self.no_room(b), b.created_at, &b.name))
        });

        // A drain ends with its node deallocated (the controller clears the flag then), so a
        // node still flagged while deallocated was drained after it was parked: it is out of
        // service for good, and deleting it frees its place (and its disk) at once rather
        // than at the next scale-up that needs room.
        let (drained_parked, deallocated): (Vec<&NodeView>, Vec<&NodeView>) =
            deallocated.into_iter().partition(|n| n.draining);
        for n in &drained_parked {
            self.push(
                VmActionKind::Delete,
                &n.name,
                "drained while deallocated; deleting it".to_string(),
            );
            deleted += 1;
        }

        let gap = format!("pool below desired (active {active} < desired {desired})");
        let mut started: HashSet<&str> = HashSet::new();
        for n in stopped.iter().filter(|n| !n.draining) {
            if need == 0 {
                break;
            }
            self.push(
                VmActionKind::Start,
                &n.name,
                format!("{gap}; powered off outside renderburst but still allocated, so starting it is fastest"),
            );
            started.insert(&n.name);
            need -= 1;
        }
        for n in &deallocated {
            if need == 0 {
                break;
            }
            if self.why_not_startable(n).is_none() {
                self.push(
                    VmActionKind::Start,
                    &n.name,
                    format!("{gap}; starting a deallocated node is faster than creating one"),
                );
                started.insert(&n.name);
                need -= 1;
            }
        }

        // Stopped nodes not started are billed for nothing.
        for n in stopped
            .iter()
            .filter(|n| !started.contains(&n.name.as_str()))
        {
            let why = if n.draining { "drained" } else { "not needed" };
            self.push(
                remove,
                &n.name,
                format!("powered off outside renderburst but still allocated (billed); {why}"),
            );
            deleted += u32::from(remove == VmActionKind::Delete);
        }
        // With scale_down = delete, deallocated nodes not started now are not kept.
        let mut spare: Vec<(&NodeView, String)> = Vec::new();
        for n in deallocated
            .iter()
            .filter(|n| !started.contains(&n.name.as_str()))
        {
            let why = self.why_not_startable(n);
            if remove == VmActionKind::Delete {
                let why = why.unwrap_or_else(|| "not needed".to_string());
                self.push(
                    VmActionKind::Delete,
                    &n.name,
                    format!("deallocated and {why}; scale_down is delete"),
                );
                deleted += 1;
            } else if let Some(why) = why {
                spare.push((n, why));
            }
        }

        if need > 0 {
            self.scale_up(nodes, need, deleted, &spare, &gap);
        } else if active > desired {
            self.scale_down(nodes, active, desired);
        }
    }

    fn scale_up(
        &mut self,
        nodes: &[&NodeView],
        mut need: u32,
        deleted: u32,
        spare: &[(&NodeView, String)],
        gap: &str,
    ) {
        // Deallocating nodes become startable within minutes: wait for them rather than pay
        // for new VMs (and their disks) that scale-down would soon park again. A node whose
        // deallocation renderburst has not finished recording (in flight, already showing
        // deallocated) is the same case.
        let deallocating = nodes
            .iter()
            .filter(|n| {
                (n.state == NodeState::Deallocating
                    || (n.in_flight && n.state == NodeState::Deallocated))
                    && !n.draining
                    && self.why_not_startable(n).is_none()
            })
            .count();
        let deallocating = u32::try_from(deallocating).unwrap_or(u32::MAX).min(need);
        if deallocating > 0 {
            need -= deallocating;
            self.condition(format!(
                "WaitingForDeallocation: {deallocating} nodes are deallocating and will be started instead of creating new ones"
            ));
        }
        if need == 0 {
            return;
        }
        let allowed = self.input.gate.allows(self.now);
        for text in self.input.gate.conditions(self.now) {
            self.condition(text);
        }
        let Some(choice) = self.choose_offering() else {
            let tried = self.unavailable_summary();
            self.condition(format!("NoCapacity: every size is unavailable ({tried})"));
            return;
        };
        if choice.fallback {
            self.condition(
                "SpotFallback: no Spot size is available; creating regular VMs as the spec allows"
                    .to_string(),
            );
        }

        let max = self.spec.max;
        let total = u32::try_from(nodes.iter().filter(|n| counts_toward_max(n.state)).count())
            .unwrap_or(u32::MAX)
            .saturating_sub(deleted);
        let mut room = max.saturating_sub(total);
        let mut replaced = 0;
        // At the cap, deallocated nodes that cannot be started only hold places: replace them.
        for (n, why) in spare {
            if room >= need {
                break;
            }
            self.push(VmActionKind::Delete, &n.name, format!("{why}; replacing"));
            room += 1;
            replaced += 1;
        }
        let mut creates = need.min(room);
        if creates < need {
            self.condition(format!(
                "AtMax: {} nodes exist or are being created (max {max}); {} more wanted",
                total - replaced + creates,
                need - creates
            ));
        }
        if let Some(allowed) = allowed {
            creates = creates.min(allowed);
        }
        for name in self.create_names(creates) {
            self.plan.actions.push(VmAction {
                kind: VmActionKind::Create,
                node: name,
                size: Some(choice.size.clone()),
                priority: Some(choice.priority),
                reason: format!("{gap}; {}", choice.why),
            });
        }
    }

    /// Names for `n` creates, as the executor will use them (it makes no choice): names of
    /// failed creates first, lowest first, where nothing of that name is in flight, planned
    /// already (but the delete of its failed VM, which the create takes over: it deletes the
    /// failed VM first) or in the inventory but a failed VM; then fresh indexes from
    /// `next_index`, which the store reserves when the plan is accepted. So a failed VM's
    /// name is created again in the plan that deletes it, never passed over for a new one.
    fn create_names(&mut self, n: u32) -> Vec<String> {
        let failed_delete =
            |a: &VmAction| {
                a.kind == VmActionKind::Delete
                    && self.input.nodes.iter().any(|v| {
                        v.name.eq_ignore_ascii_case(&a.node) && v.state == NodeState::Failed
                    })
            };
        let mut reusable: Vec<&ReusableName> = self
            .input
            .reusable
            .iter()
            .filter(|r| !r.in_flight)
            .filter(|r| {
                self.plan
                    .actions
                    .iter()
                    .all(|a| !a.node.eq_ignore_ascii_case(&r.name) || failed_delete(a))
            })
            .filter(|r| {
                self.input.nodes.iter().all(|v| {
                    !v.name.eq_ignore_ascii_case(&r.name)
                        || (v.state == NodeState::Failed && !v.in_flight)
                })
            })
            .collect();
        reusable.sort_by(|a, b| a.name.cmp(&b.name));
        let mut names: Vec<String> = reusable
            .into_iter()
            .take(n as usize)
            .map(|r| r.name.clone())
            .collect();
        self.plan
            .actions
            .retain(|a| !names.iter().any(|n| n.eq_ignore_ascii_case(&a.node)));
        let fresh = u64::from(n) - names.len() as u64;
        names.extend((0..fresh).map(|k| node_name(&self.spec.name, self.input.next_index + k)));
        names
    }

    /// The first size of the preference list available at the pool's priority, or at regular
    /// priority when every Spot size is out and the spec allows falling back.
    fn choose_offering(&self) -> Option<Choice> {
        let mut skipped: Vec<String> = Vec::new();
        let mut priorities = vec![self.spec.priority];
        if self.spec.priority == Priority::Spot && self.spec.spot.fallback_to_regular {
            priorities.push(Priority::Regular);
        }
        for (i, &priority) in priorities.iter().enumerate() {
            for size in &self.spec.vm_sizes {
                match self.offering_unavailable(size, priority) {
                    Some(u) => skipped.push(format!(
                        "{size} ({}) unavailable: {} until {}",
                        priority_str(priority),
                        u.code,
                        format_utc(u.until)
                    )),
                    None => {
                        let mut why = format!("creating {size} ({})", priority_str(priority));
                        if i > 0 {
                            why.push_str(
                                "; every Spot size is unavailable, falling back to regular priority as the spec allows",
                            );
                        }
                        if !skipped.is_empty() {
                            why.push_str(&format!("; skipped {}", skipped.join(", ")));
                        }
                        return Some(Choice {
                            size: size.clone(),
                            priority,
                            fallback: i > 0,
                            why,
                        });
                    }
                }
            }
        }
        None
    }

    /// "size (priority): CODE until T, ..." for every size the pool could create.
    fn unavailable_summary(&self) -> String {
        let mut parts = Vec::new();
        let mut priorities = vec![self.spec.priority];
        if self.spec.priority == Priority::Spot && self.spec.spot.fallback_to_regular {
            priorities.push(Priority::Regular);
        }
        for &priority in &priorities {
            for size in &self.spec.vm_sizes {
                if let Some(u) = self.offering_unavailable(size, priority) {
                    parts.push(format!(
                        "{size} ({}): {} until {}",
                        priority_str(priority),
                        u.code,
                        format_utc(u.until)
                    ));
                }
            }
        }
        parts.join(", ")
    }

    /// Above desired: remove running nodes that have been idle for the idle timeout, newest
    /// first (oldest nodes have warm caches). Busy and in-flight nodes never go.
    fn scale_down(&mut self, nodes: &[&NodeView], active: u32, desired: u32) {
        let surplus = active - desired;
        let timeout = self.idle_timeout();
        let mut candidates: Vec<(&NodeView, i64)> = nodes
            .iter()
            .copied()
            .filter(|n| {
                n.state == NodeState::Running && !n.draining && !n.in_flight && !self.is_busy(n)
            })
            .map(|n| (n, self.now.saturating_sub(self.idle_since(n))))
            .filter(|&(_, idle)| idle >= timeout)
            .collect();
        candidates.sort_by(|(a, _), (b, _)| {
            let ka = (a.started_at.unwrap_or(a.created_at), &a.name);
            let kb = (b.started_at.unwrap_or(b.created_at), &b.name);
            // Nodes with room in their Compute bucket first; then newest first.
            (self.no_room(a), kb).cmp(&(self.no_room(b), ka))
        });
        let remove = self.remove_kind();
        let mut taken = 0;
        for (n, idle) in candidates.into_iter().take(surplus as usize) {
            self.push(
                remove,
                &n.name,
                format!("pool above desired (active {active} > desired {desired}); idle {idle} s"),
            );
            taken += 1;
        }
        if taken < surplus {
            self.condition(format!(
                "WaitingForIdle: {} nodes above desired are busy, not idle for {timeout} s yet, or still starting",
                surplus - taken
            ));
        }
    }
}

/// Busy as far as removal is concerned: said so recently enough to be believed (for at least
/// [`BUSY_HEARTBEAT_TTL_SECONDS`], or the idle timeout if longer).
pub fn is_busy(n: &NodeView, now: UnixSeconds, idle_timeout: i64) -> bool {
    if !n.busy {
        return false;
    }
    match n.last_heartbeat {
        Some(hb) => now.saturating_sub(hb) < idle_timeout.max(BUSY_HEARTBEAT_TTL_SECONDS),
        // Busy without a heartbeat time cannot go stale: never remove it on a guess.
        None => true,
    }
}

/// Since when a node that is not busy has had nothing to do. A node that never sent a
/// heartbeat is idle from when it (last) started running.
pub fn idle_since(n: &NodeView) -> UnixSeconds {
    let started = n.started_at.unwrap_or(n.created_at);
    n.last_heartbeat.map_or(started, |hb| hb.max(started))
}

struct Choice {
    size: String,
    priority: Priority,
    fallback: bool,
    why: String,
}

/// Counted toward the desired count: running or on its way there, and not drained.
fn is_active(n: &NodeView) -> bool {
    let becoming = match n.pending {
        Some(ActionKind::Delete | ActionKind::Deallocate | ActionKind::RemoveNode) => false,
        Some(ActionKind::Create | ActionKind::Start) => true,
        _ => matches!(
            n.state,
            NodeState::Creating | NodeState::Starting | NodeState::Running
        ),
    };
    becoming && !n.draining
}

/// Counted toward `max`: everything that exists and is not on its way out.
fn counts_toward_max(state: NodeState) -> bool {
    !matches!(
        state,
        NodeState::Missing | NodeState::Deleting | NodeState::Failed
    )
}

fn count(nodes: &[&NodeView], f: impl Fn(&NodeView) -> bool) -> u32 {
    u32::try_from(nodes.iter().filter(|n| f(n)).count()).unwrap_or(u32::MAX)
}

pub(crate) fn priority_str(p: Priority) -> &'static str {
    match p {
        Priority::Regular => "regular",
        Priority::Spot => "spot",
    }
}
