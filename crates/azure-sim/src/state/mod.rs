//! The simulator's world: resources, asynchronous operations, throttling buckets and
//! statistics, behind one lock.
//!
//! Time is modelled lazily: every operation, eviction and Batch node carries the instant it
//! completes, and `advance` applies everything that is due before a request is answered. So
//! state never changes between two requests that nobody sees, no background task is needed,
//! and a test that polls sees transitions exactly when their latency has passed.
//!
//! `ops.rs` holds the operations and `advance`; `stats.rs` what is counted; the world's types
//! and its resource bookkeeping are here.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use arm_model::ErrorDetail;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config::SimConfig;
use crate::persist::{StaticStr, datetime, instant, opt_instant, static_str};
use crate::throttle::{ArmClass, ComputeGroup, TokenBucket};

mod ops;
mod stats;

pub use stats::Stats;

/// Upper bounds that keep memory bounded whatever clients do.
pub const MAX_RESOURCES: usize = 200_000;
pub const MAX_OPS: usize = 100_000;
/// Finished operations stay readable this long (clients poll them after completion).
pub const OP_RETENTION: Duration = Duration::from_secs(15 * 60);

/// The resource types the simulator models, with their canonical ARM type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RType {
    ResourceGroup,
    VirtualNetwork,
    Subnet,
    NetworkSecurityGroup,
    NetworkInterface,
    VirtualMachine,
    Disk,
    BatchAccount,
    BatchPool,
}

impl RType {
    pub fn arm_type(self) -> &'static str {
        match self {
            RType::ResourceGroup => "Microsoft.Resources/resourceGroups",
            RType::VirtualNetwork => "Microsoft.Network/virtualNetworks",
            RType::Subnet => "Microsoft.Network/virtualNetworks/subnets",
            RType::NetworkSecurityGroup => "Microsoft.Network/networkSecurityGroups",
            RType::NetworkInterface => "Microsoft.Network/networkInterfaces",
            RType::VirtualMachine => "Microsoft.Compute/virtualMachines",
            RType::Disk => "Microsoft.Compute/disks",
            RType::BatchAccount => "Microsoft.Batch/batchAccounts",
            RType::BatchPool => "Microsoft.Batch/batchAccounts/pools",
        }
    }

    pub fn namespace(self) -> &'static str {
        self.arm_type().split('/').next().unwrap_or_default()
    }

    /// The last segment of the type, as it appears in URLs (`virtualMachines`).
    pub fn segment(self) -> &'static str {
        self.arm_type().rsplit('/').next().unwrap_or_default()
    }

    /// Top-level types by (namespace, type), case-insensitively.
    pub fn top_level(ns: &str, ty: &str) -> Option<RType> {
        [
            RType::VirtualNetwork,
            RType::NetworkSecurityGroup,
            RType::NetworkInterface,
            RType::VirtualMachine,
            RType::Disk,
            RType::BatchAccount,
        ]
        .into_iter()
        .find(|t| t.namespace().eq_ignore_ascii_case(ns) && t.segment().eq_ignore_ascii_case(ty))
    }

    /// Child types by (parent, child segment).
    pub fn child(parent: RType, child: &str) -> Option<RType> {
        match parent {
            RType::VirtualNetwork if child.eq_ignore_ascii_case("subnets") => Some(RType::Subnet),
            RType::BatchAccount if child.eq_ignore_ascii_case("pools") => Some(RType::BatchPool),
            _ => None,
        }
    }

    /// Longest name Azure accepts for the type.
    pub fn max_name_len(self) -> usize {
        match self {
            RType::ResourceGroup => 90,
            RType::VirtualMachine => 64,
            RType::BatchAccount => 24,
            RType::BatchPool => 64,
            _ => 80,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Power {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
}

impl Power {
    pub fn code(self) -> &'static str {
        match self {
            Power::Starting => "starting",
            Power::Running => "running",
            Power::Stopping => "stopping",
            Power::Stopped => "stopped",
            Power::Deallocating => "deallocating",
            Power::Deallocated => "deallocated",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Power::Starting => "VM starting",
            Power::Running => "VM running",
            Power::Stopping => "VM stopping",
            Power::Stopped => "VM stopped",
            Power::Deallocating => "VM deallocating",
            Power::Deallocated => "VM deallocated",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    pub size: String,
    pub vcpus: u64,
    #[serde(with = "static_str")]
    pub family: StaticStr,
    pub spot: bool,
    pub evict_delete: bool,
    pub provisioning: String,
    /// Error code of the last failed operation, shown as `ProvisioningState/failed/<code>`.
    pub failed_code: Option<String>,
    pub power: Power,
    /// Holds capacity (and, for regular VMs, quota) now.
    pub allocated: bool,
    /// The operation in flight, if any; a second one is refused with 409.
    pub busy_op: Option<String>,
    pub deleting: bool,
    /// NICs attached, with whether they go with the VM (`deleteOption: Delete`).
    pub nics: Vec<(String, bool)>,
    pub os_disk: Option<(String, bool)>,
    pub location: String,
    /// The decoded `customData` it was created with (kept out of every answer).
    pub custom_data: Option<String>,
    /// Booted once already (bootstrap runs on the first boot only).
    pub booted: bool,
}

/// A VM (or Batch node) that reached running and will call its bootstrap's register URL.
#[derive(Debug, Clone)]
pub struct PendingBoot {
    /// VM name or Batch node id.
    pub vm: String,
    pub script: BootScript,
}

/// Where a booting machine finds its bootstrap.
#[derive(Debug, Clone)]
pub enum BootScript {
    /// A VM: the decoded `customData` it was created with.
    CustomData(String),
    /// A Batch node: its pool's start task enrolls it (`POST {url}` with the pool's token)
    /// and gets the script back.
    Enroll { url: String, token: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NicState {
    pub attached_vm: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskState {
    pub managed_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchNode {
    pub id: String,
    pub dedicated: bool,
    /// `creating` until `due`, then `idle`; `leavingpool` until `due`, then gone.
    #[serde(with = "static_str")]
    pub state: StaticStr,
    #[serde(with = "opt_instant")]
    pub due: Option<Instant>,
    #[serde(with = "datetime")]
    pub allocation_time: OffsetDateTime,
    #[serde(with = "datetime")]
    pub state_time: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolState {
    pub account_id: String,
    pub vm_size: String,
    pub vcpus: u64,
    pub target_dedicated: u64,
    pub target_spot: u64,
    pub dealloc_option: String,
    pub nodes: Vec<BatchNode>,
    pub resize_errors: Vec<ErrorDetail>,
    #[serde(with = "datetime")]
    pub resize_start: OffsetDateTime,
    #[serde(with = "static_str")]
    pub allocation_state: StaticStr,
    #[serde(with = "datetime")]
    pub allocation_time: OffsetDateTime,
    pub etag: u64,
    pub next_node: u64,
    pub deleting: bool,
    #[serde(with = "datetime")]
    pub created: OffsetDateTime,
    #[serde(with = "datetime")]
    pub modified: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Kind {
    Plain,
    Vm(Box<VmState>),
    Nic(NicState),
    Disk(DiskState),
    Pool(Box<PoolState>),
}

/// One resource. `body` is what the client last PUT (plus fields the service fills in);
/// `kind` holds the behavioural state that rendering overlays on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Res {
    pub id: String,
    pub rtype: RType,
    pub name: String,
    /// Resource group name, lower-cased (empty for none).
    pub rg: String,
    pub body: Value,
    pub kind: Kind,
    pub provisioning: String,
    #[serde(with = "datetime")]
    pub created: OffsetDateTime,
}

impl Res {
    pub fn vm(&self) -> Option<&VmState> {
        match &self.kind {
            Kind::Vm(v) => Some(v),
            _ => None,
        }
    }

    pub fn vm_mut(&mut self) -> Option<&mut VmState> {
        match &mut self.kind {
            Kind::Vm(v) => Some(v),
            _ => None,
        }
    }

    pub fn pool_mut(&mut self) -> Option<&mut PoolState> {
        match &mut self.kind {
            Kind::Pool(p) => Some(p),
            _ => None,
        }
    }

    pub fn tags(&self) -> Value {
        self.body.get("tags").cloned().unwrap_or_else(|| json!({}))
    }
}

/// What happens to the world when an operation completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Effect {
    /// Nothing beyond marking the operation done (network PUTs, updates).
    None,
    VmCreate {
        vm: String,
    },
    VmUpdate {
        vm: String,
    },
    VmStart {
        vm: String,
    },
    VmDeallocate {
        vm: String,
    },
    VmPowerOff {
        vm: String,
    },
    VmRestart {
        vm: String,
    },
    VmDelete {
        vm: String,
    },
    DiskCreate {
        disk: String,
    },
    /// Removes a resource (and, for a resource group, everything in it).
    Remove {
        id: String,
    },
    PoolDelete {
        pool: String,
    },
}

impl Effect {
    pub fn vm(&self) -> Option<&str> {
        match self {
            Effect::VmCreate { vm }
            | Effect::VmUpdate { vm }
            | Effect::VmStart { vm }
            | Effect::VmDeallocate { vm }
            | Effect::VmPowerOff { vm }
            | Effect::VmRestart { vm }
            | Effect::VmDelete { vm } => Some(vm),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpStatus {
    InProgress,
    Succeeded,
    Failed(
        ErrorDetail,
        #[serde(with = "crate::persist::status_code")] http::StatusCode,
    ),
    Canceled(ErrorDetail),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Op {
    pub id: String,
    #[serde(with = "datetime")]
    pub start: OffsetDateTime,
    #[serde(with = "crate::persist::opt_datetime")]
    pub end: Option<OffsetDateTime>,
    #[serde(with = "instant")]
    pub due: Instant,
    #[serde(with = "opt_instant")]
    pub finished_at: Option<Instant>,
    pub seq: u64,
    pub effect: Effect,
    /// Decided when the operation starts (capacity, injected faults); applied when due.
    #[serde(with = "crate::persist::opt_failure")]
    pub fail_with: Option<(ErrorDetail, http::StatusCode)>,
    pub status: OpStatus,
    /// Its failure was answered to a poll of the operation's status (counted once, in
    /// `Stats::failures_reported`).
    pub failure_reported: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingEviction {
    #[serde(with = "instant")]
    pub due: Instant,
    pub vm: String,
}

pub struct State {
    pub cfg: SimConfig,
    pub res: BTreeMap<String, Res>,
    pub ops: HashMap<String, Op>,
    pub evictions: Vec<PendingEviction>,
    pub arm_buckets: HashMap<ArmClass, TokenBucket>,
    pub compute_buckets: HashMap<ComputeGroup, TokenBucket>,
    pub vm_buckets: HashMap<(String, ComputeGroup), TokenBucket>,
    /// Compute Schedule operations by id (`schedule` module).
    pub bulk: BTreeMap<String, crate::schedule::BulkOp>,
    pub stats: Stats,
    pub seq: u64,
    /// Unused since NICs get the next free address of their subnet
    /// (`State::allocate_private_ip`); kept so state files keep their format.
    pub next_ip: u32,
    /// VMs that booted since the last request took them (`boot.enabled`).
    pub boots: Vec<PendingBoot>,
    /// The simulator's clock (shared with `Shared`, kept across `/_sim/reset`).
    pub clock: std::sync::Arc<crate::clock::Clock>,
}

pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl State {
    pub fn new(cfg: SimConfig, now: Instant) -> Self {
        let mut s = Self {
            cfg,
            res: BTreeMap::new(),
            ops: HashMap::new(),
            evictions: Vec::new(),
            arm_buckets: HashMap::new(),
            compute_buckets: HashMap::new(),
            vm_buckets: HashMap::new(),
            bulk: BTreeMap::new(),
            stats: Stats::default(),
            seq: 0,
            next_ip: 4,
            boots: Vec::new(),
            clock: Default::default(),
        };
        s.reset_buckets(now);
        s
    }

    /// Refills every bucket to its (possibly new) size.
    pub fn reset_buckets(&mut self, now: Instant) {
        let l = &self.cfg.limits;
        self.arm_buckets = HashMap::from([
            (
                ArmClass::Reads,
                TokenBucket::new(l.reads_bucket, l.reads_per_s, now),
            ),
            (
                ArmClass::Writes,
                TokenBucket::new(l.writes_bucket, l.writes_per_s, now),
            ),
            (
                ArmClass::Deletes,
                TokenBucket::new(l.deletes_bucket, l.deletes_per_s, now),
            ),
        ]);
        let f = l.compute_factor;
        self.compute_buckets = ComputeGroup::ALL
            .into_iter()
            .map(|g| {
                let (burst, per_min) = g.subscription_limits();
                // A bucket smaller than one token would refuse every request forever.
                let size = (burst * f).max(1.0);
                (g, TokenBucket::new(size, per_min * f / 60.0, now))
            })
            .collect();
        self.vm_buckets.clear();
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn get(&self, id: &str) -> Option<&Res> {
        self.res.get(&key(id))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Res> {
        self.res.get_mut(&key(id))
    }

    pub fn insert(&mut self, res: Res) {
        self.res.insert(key(&res.id), res);
    }
}

impl State {
    /// Removes a VM and, per each `deleteOption`, its NICs and OS disk; what stays is
    /// detached.
    pub fn remove_vm(&mut self, vm_id: &str) {
        let Some(res) = self.res.remove(&key(vm_id)) else {
            return;
        };
        self.vm_buckets.retain(|(vm, _), _| vm != &key(vm_id));
        let Kind::Vm(v) = res.kind else { return };
        for (nic, delete) in &v.nics {
            if *delete {
                self.res.remove(&key(nic));
            } else if let Some(Res {
                kind: Kind::Nic(n), ..
            }) = self.res.get_mut(&key(nic))
            {
                n.attached_vm = None;
            }
        }
        if let Some((disk, delete)) = &v.os_disk {
            if *delete {
                self.res.remove(&key(disk));
            } else if let Some(Res {
                kind: Kind::Disk(d),
                ..
            }) = self.res.get_mut(&key(disk))
            {
                d.managed_by = None;
            }
        }
    }

    /// The OS disk created with a VM finishes provisioning with it.
    fn os_disk_provisioned(&mut self, vm_id: &str) {
        let disk = self
            .get(vm_id)
            .and_then(Res::vm)
            .and_then(|v| v.os_disk.clone());
        if let Some((disk, _)) = disk
            && let Some(d) = self.get_mut(&disk)
        {
            d.provisioning = "Succeeded".into();
        }
    }

    /// Removes a resource and everything whose id lies below it (children, or all
    /// resources of a resource group).
    pub fn remove_tree(&mut self, id: &str) {
        let k = key(id);
        let is_rg = self
            .res
            .get(&k)
            .is_some_and(|r| r.rtype == RType::ResourceGroup);
        let victims: Vec<String> = if is_rg {
            let rg = self.res.get(&k).map(|r| r.rg.clone()).unwrap_or_default();
            self.res
                .iter()
                .filter(|(_, r)| r.rg == rg)
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            let prefix = format!("{k}/");
            self.res
                .keys()
                .filter(|rk| **rk == k || rk.starts_with(&prefix))
                .cloned()
                .collect()
        };
        for v in victims {
            self.res.remove(&v);
        }
        self.vm_buckets.retain(|(vm, _), _| !vm.starts_with(&k));
    }

    /// vCPUs in use for quota purposes: (regional regular, per family regular, spot).
    pub fn quota_usage(&self) -> (u64, HashMap<String, u64>, u64) {
        let mut regional = 0;
        let mut families: HashMap<String, u64> = HashMap::new();
        let mut spot = 0;
        for r in self.res.values() {
            let Some(v) = r.vm() else { continue };
            if v.spot {
                // Azure counts deallocated Spot VMs against the Spot quota.
                if v.allocated || v.power == Power::Deallocated && v.failed_code.is_none() {
                    spot += v.vcpus;
                }
            } else if v.allocated {
                regional += v.vcpus;
                *families.entry(v.family.to_ascii_lowercase()).or_default() += v.vcpus;
            }
        }
        (regional, families, spot)
    }

    /// VMs and Batch nodes of a size that hold capacity now.
    pub fn allocated_of_size(&self, size: &str) -> u64 {
        let mut n = 0;
        for r in self.res.values() {
            match &r.kind {
                Kind::Vm(v) if v.allocated && v.size.eq_ignore_ascii_case(size) => n += 1,
                Kind::Pool(p) if p.vm_size.eq_ignore_ascii_case(size) => {
                    n += p.nodes.iter().filter(|n| n.state != "preempted").count() as u64
                }
                _ => {}
            }
        }
        n
    }

    pub fn has_capacity(&self, size: &str, extra: u64) -> bool {
        match self.cfg.capacity_for(size) {
            Some(cap) => self.allocated_of_size(size) + extra <= cap,
            None => true,
        }
    }
}
