//! The controller against the simulator, one step at a time: executor, start-up recovery and
//! garbage collection at the controller's own level (before, only the binary's end-to-end
//! tests reached them). A test steps `Controller::activate` itself and moves the simulator's
//! clock past Azure's latencies instead of waiting them out, against a real SQLite file and
//! the simulator over HTTPS on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure::{ArmClient, AzureConfig, CredentialConfig};
use azure_sim::{SimConfig, Simulator};
use controller::{BootstrapConfig, Controller, ControllerConfig, DeclaredSecrets, Placement};
use rb_core::{ActionKind, NodeState};
use serde_json::{Value, json};
use store::{IntentOutcome, Store};

const RG: &str = "burst";
const LOCATION: &str = "westeurope";

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "renderburst-controller-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The simulator (Azure's default latencies: a VM create takes 800 ms of its clock), a
/// store, a network, and an ARM client like the daemon's.
struct Farm {
    sim: Simulator,
    store: Arc<Store>,
    subnet_id: String,
    /// The store's owner id, which tags every resource of ours.
    owner: String,
    _dir: TempDir,
}

fn arm_client(sim: &Simulator) -> ArmClient {
    let id = sim.identity();
    let mut a = AzureConfig::new(
        id.subscription_id.clone(),
        CredentialConfig::ClientSecret {
            tenant_id: id.tenant_id.clone(),
            client_id: id.client_id.clone(),
            client_secret: azure_core::credentials::Secret::new(id.client_secret.clone()),
        },
    );
    a.arm_endpoint = sim.base_url().to_owned();
    a.authority_host = sim.base_url().to_owned();
    a.extra_ca_pem = Some(sim.ca_pem().as_bytes().to_vec());
    a.poll.max_interval = Some(Duration::from_millis(200));
    ArmClient::new(a).unwrap()
}

async fn farm(tag: &str) -> Farm {
    farm_with(tag, SimConfig::default()).await
}

async fn farm_with(tag: &str, cfg: SimConfig) -> Farm {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let arm = arm_client(&sim);
    let dir = TempDir::new(tag);
    let store = Arc::new(Store::open(&dir.0.join("renderburst.db")).await.unwrap());
    let owner = store.owner_id().await.unwrap();
    let tags = [(rb_core::TAG_OWNER.to_owned(), owner.clone())].into();
    arm.ensure_resource_group(RG, LOCATION, &tags)
        .await
        .unwrap();
    let vnet = serde_json::from_value(json!({"location": LOCATION,
        "properties": {"addressSpace": {"addressPrefixes": ["10.80.0.0/16"]}}}))
    .unwrap();
    arm.ensure_vnet(RG, "vnet", &vnet).await.unwrap();
    let subnet =
        serde_json::from_value(json!({"properties": {"addressPrefix": "10.80.0.0/20"}})).unwrap();
    let subnet_id = arm
        .ensure_subnet(RG, "vnet", "nodes", &subnet)
        .await
        .unwrap()
        .id
        .unwrap();
    Farm {
        sim,
        store,
        subnet_id,
        owner,
        _dir: dir,
    }
}

impl Farm {
    fn controller(&self) -> Arc<Controller> {
        self.controller_with(controller::BulkMode::Off)
    }

    fn controller_with(&self, bulk: controller::BulkMode) -> Arc<Controller> {
        Controller::new(
            self.store.clone(),
            arm_client(&self.sim),
            ControllerConfig {
                resource_group: RG.into(),
                placement: Placement {
                    location: LOCATION.into(),
                    subnet_id: self.subnet_id.clone(),
                    nsg_id: None,
                    owner_id: self.owner.clone(),
                    admin_username: "render".into(),
                    ssh_public_key: None,
                },
                reconcile_interval: Duration::from_secs(3600),
                activation_timeout: Duration::from_secs(60),
                max_concurrent_operations: 64,
                gc_grace: Duration::ZERO,
                events_retained: 10_000,
                batch_account: None,
                bootstrap: BootstrapConfig::default(),
                enrollment: Default::default(),
                secrets: Arc::new(DeclaredSecrets::default()),
                error_backoff_max: Duration::from_secs(900),
                bulk,
            },
        )
    }

    async fn pool(&self, name: &str, target: u32) {
        let spec = serde_json::from_value(json!({
            "name": name, "mode": "vm", "vm_sizes": ["Standard_D8s_v5"],
            "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 10, "target": target,
            // Scale-down without waiting out an idle period in real time.
            "idle_timeout_seconds": 0}))
        .unwrap();
        self.store.create_pool(&spec).await.unwrap();
    }

    /// Runs a controller until `n` intents are open with their operations (ARM accepted the
    /// writes), then stops it before they end: what a SIGTERM or a crash leaves.
    async fn run_until_accepted(&self, bulk: controller::BulkMode, n: usize) {
        let first = self.controller_with(bulk);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(first.clone().run(stopped));
        let mut open = Vec::new();
        for _ in 0..400 {
            open = self.store.open_intents().await.unwrap();
            if open.len() == n && open.iter().all(|i| i.operation.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(open.len(), n, "{open:?}");
        stop.send_replace(true);
        running.await.unwrap();
    }

    /// Activates, moves the simulator's clock a minute, and checks, until `done` holds;
    /// fails after 200 steps. Returns how many activations it took.
    async fn step_until(
        &self,
        ctl: &Controller,
        what: &str,
        done: impl AsyncFn(&Farm) -> bool,
    ) -> u32 {
        for step in 1..=200 {
            ctl.activate().await;
            // The garbage collector's own task, stepped after the activation it reads.
            ctl.collect_garbage().await;
            self.sim.advance_clock(Duration::from_secs(60));
            if done(self).await {
                return step;
            }
            // The executor follows operations in its own tasks: let them see the answer.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not reached in 200 activations: {what}");
    }

    /// A `/_sim` control call's answer.
    async fn sim_get(&self, path: &str) -> Value {
        let c = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.sim.ca_pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        c.get(format!("{}{path}", self.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn stats(&self) -> Value {
        self.sim_get("/_sim/stats").await
    }

    async fn vm_puts(&self) -> u64 {
        self.stats().await["by_type"]["Microsoft.Compute/virtualMachines"]["PUT"]
            .as_u64()
            .unwrap_or(0)
    }

    async fn running(&self, pool: &str) -> usize {
        self.store
            .list_vms(Some(pool))
            .await
            .unwrap()
            .iter()
            .filter(|v| v.state == NodeState::Running)
            .count()
    }
}

#[tokio::test]
async fn the_executor_creates_what_the_plan_says_once_each_and_closes_every_intent() {
    let f = farm("executor").await;
    f.pool("maya", 3).await;
    let ctl = f.controller();
    ctl.start_up().await;
    let steps = f
        .step_until(&ctl, "3 running, no intent open", async |f| {
            f.running("maya").await == 3 && f.store.open_intents().await.unwrap().is_empty()
        })
        .await;
    assert!(steps <= 20, "{steps} activations");
    assert_eq!(f.vm_puts().await, 3, "one PUT per planned create");
    let names: Vec<String> = f
        .store
        .list_vms(Some("maya"))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["maya-00001", "maya-00002", "maya-00003"]);
    let intents = f.store.recent_intents(100).await.unwrap();
    let creates: Vec<_> = intents
        .iter()
        .filter(|i| i.kind == ActionKind::Create)
        .collect();
    assert_eq!(creates.len(), 3, "{intents:?}");
    for i in creates {
        assert_eq!(i.outcome, Some(IntentOutcome::Succeeded), "{i:?}");
        assert!(i.operation.is_some(), "the operation was journalled: {i:?}");
    }

    // Scaling down: the plan's deallocations, each journalled and closed.
    f.store.set_target("maya", 1).await.unwrap();
    f.step_until(&ctl, "1 running, 2 deallocated", async |f| {
        let vms = f.store.list_vms(Some("maya")).await.unwrap();
        let dealloc = vms
            .iter()
            .filter(|v| v.state == NodeState::Deallocated)
            .count();
        f.running("maya").await == 1
            && dealloc == 2
            && f.store.open_intents().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(f.vm_puts().await, 3, "no create while scaling down");
}

#[tokio::test]
async fn recovery_follows_the_operations_a_stopped_controller_left_without_writing_again() {
    let f = farm("recovery").await;
    f.pool("maya", 2).await;
    // The first controller sends its creates, then stops before they end: its intents stay
    // open with their operations (what a SIGTERM or a crash leaves).
    f.run_until_accepted(controller::BulkMode::Off, 2).await;
    assert_eq!(f.vm_puts().await, 2);
    assert_eq!(
        f.store.open_intents().await.unwrap().len(),
        2,
        "still open after the stop"
    );

    // The operations end while nobody watches; the next controller's start-up follows them.
    f.sim.advance_clock(Duration::from_secs(60));
    let second = f.controller();
    second.start_up().await;
    assert!(
        f.store.open_intents().await.unwrap().is_empty(),
        "start-up resolved every open intent"
    );
    for i in f.store.recent_intents(10).await.unwrap() {
        assert_eq!(i.outcome, Some(IntentOutcome::Succeeded), "{i:?}");
    }
    f.step_until(&second, "2 running", async |f| f.running("maya").await == 2)
        .await;
    assert_eq!(f.vm_puts().await, 2, "recovery wrote nothing again");
}

/// A VM tagged as ours, of a pool that does not exist (a pool deleted while the daemon was
/// down, an older install's leftover), its NIC `{name}-nic` and OS disk `disk` deleted with it
/// or not (`delete_option`: `Delete`, `Detach`).
async fn ghost_vm(f: &Farm, name: &str, disk: &str, delete_option: &str) {
    let arm = arm_client(&f.sim);
    let body = json!({
        "location": LOCATION,
        "tags": {rb_core::TAG_POOL: "ghost", rb_core::TAG_OWNER: f.owner},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"name": disk, "createOption": "FromImage", "deleteOption": delete_option,
                           "managedDisk": {"storageAccountType": "Premium_LRS"}}
            },
            "osProfile": {"computerName": name, "adminUsername": "render",
                          "linuxConfiguration": {"disablePasswordAuthentication": true}},
            "networkProfile": {
                "networkApiVersion": "2020-11-01",
                "networkInterfaceConfigurations": [{
                    "name": format!("{name}-nic"),
                    "properties": {"primary": true, "deleteOption": delete_option, "ipConfigurations": [
                        {"name": "ipconfig1", "properties": {"subnet": {"id": f.subnet_id}}}]}
                }]
            }
        }
    });
    let (_, op) = arm
        .create_or_update_vm(RG, name, &serde_json::from_value(body).unwrap())
        .await
        .unwrap();
    f.sim.advance_clock(Duration::from_secs(60));
    op.wait(&arm).await.unwrap();
}

#[tokio::test]
async fn garbage_collection_removes_a_vm_of_ours_that_no_pool_wants_with_its_nic_and_disk() {
    let f = farm("gc").await;
    f.pool("maya", 0).await;
    // A VM tagged as ours, of a pool that does not exist (a pool deleted while the daemon was
    // down, an older install's leftover).
    ghost_vm(&f, "ghost-00001", "ghost-00001-osdisk", "Delete").await;
    let ours = async |f: &Farm| {
        let all = f.sim_get("/_sim/resources").await;
        all["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("ghost-")))
            .map(|r| r["type"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ours(&f).await.len(),
        3,
        "VM, NIC and disk: {:?}",
        ours(&f).await
    );

    let ctl = f.controller();
    ctl.start_up().await;
    f.step_until(
        &ctl,
        "the ghost VM, NIC and disk gone, the delete closed",
        async |f| ours(f).await.is_empty() && f.store.open_intents().await.unwrap().is_empty(),
    )
    .await;
    assert!(f.store.list_vms(None).await.unwrap().is_empty());
    // Journalled like every ARM write: the intent before the call, the operation, the outcome.
    let deleted = f
        .store
        .last_intent_for("ghost-00001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.kind, ActionKind::Delete, "{deleted:?}");
    assert!(deleted.operation.is_some(), "{deleted:?}");
    assert_eq!(
        deleted.outcome,
        Some(IntentOutcome::Succeeded),
        "{deleted:?}"
    );
    assert!(f.store.open_intents().await.unwrap().is_empty());
}

/// An intent left open while the daemon runs (its task ended without closing it) is not
/// left until the next restart: the next activation resolves it, as start-up would.
#[tokio::test]
async fn an_intent_left_open_while_running_is_resolved_by_the_next_activation() {
    let f = farm("stranded").await;
    f.pool("maya", 0).await;
    let ctl = f.controller();
    ctl.start_up().await;
    ctl.activate().await;
    // A create whose write never reached Azure, and nothing in this process working on it.
    let id = f
        .store
        .open_intent(&store::NewIntent {
            pool: "maya".into(),
            node: "maya-00042".into(),
            kind: ActionKind::Create,
            detail: json!({"size": "Standard_D8s_v5", "priority": "regular"}),
            reason: "a write whose task died".into(),
        })
        .await
        .unwrap();
    f.step_until(&ctl, "the stranded intent closed", async |f| {
        f.store.open_intents().await.unwrap().is_empty()
    })
    .await;
    let closed = f
        .store
        .last_intent_for("maya-00042")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.id, id);
    assert!(
        matches!(closed.outcome, Some(IntentOutcome::Abandoned { .. })),
        "the write never reached Azure: {closed:?}"
    );
    assert_eq!(f.vm_puts().await, 0, "resolving writes nothing");
}

/// NICs and OS disks named like ours that no VM uses (left by a VM deleted with `Detach`) are
/// deleted by the garbage collector, each delete journalled as an intent of its own kind.
#[tokio::test]
async fn detached_nics_and_disks_are_collected_each_delete_journalled() {
    let f = farm("gc-leftovers").await;
    f.pool("maya", 0).await;
    ghost_vm(&f, "ghost-00002", "ghost-00002-os", "Detach").await;
    let ctl = f.controller();
    ctl.start_up().await;
    let left = async |f: &Farm| {
        let all = f.sim_get("/_sim/resources").await;
        all["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("ghost-")))
            .count()
    };
    f.step_until(
        &ctl,
        "the ghost VM, its detached NIC and disk gone, every delete closed",
        async |f| left(f).await == 0 && f.store.open_intents().await.unwrap().is_empty(),
    )
    .await;
    // The collector ran as its own task on the activations' listings, and said so.
    let (gc, _) = f
        .store
        .task_status(&rb_core::task::Task::garbage_collector())
        .await
        .unwrap()
        .expect("the gc task status");
    assert!(
        gc.activation >= 1 && !gc.cut && gc.errors.is_empty(),
        "{gc:?}"
    );
    for (node, kind) in [
        ("ghost-00002", ActionKind::Delete),
        ("ghost-00002-nic", ActionKind::DeleteNic),
        ("ghost-00002-os", ActionKind::DeleteDisk),
    ] {
        let i = f.store.last_intent_for(node).await.unwrap().unwrap();
        assert_eq!(i.kind, kind, "{i:?}");
        assert_eq!(i.outcome, Some(IntentOutcome::Succeeded), "{i:?}");
    }
}

/// Compute Schedule requests of `call` (`ExecuteCreate`...) the simulator answered.
async fn bulk_calls(f: &Farm, call: &str) -> u64 {
    f.stats().await["by_type"][format!("Microsoft.ComputeSchedule/virtualMachines{call}")]["POST"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn bulk_writes_go_through_compute_schedule_journalled_and_followed_like_single_ones() {
    let f = farm("bulk").await;
    f.pool("maya", 3).await;
    let ctl = f.controller_with(controller::BulkMode::Always);
    ctl.start_up().await;
    f.step_until(&ctl, "3 running, no intent open", async |f| {
        f.running("maya").await == 3 && f.store.open_intents().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(f.vm_puts().await, 0, "no VM PUT: the creates went in bulk");
    assert_eq!(
        bulk_calls(&f, "ExecuteCreate").await,
        1,
        "one request for 3"
    );
    let intents = f.store.recent_intents(100).await.unwrap();
    for i in intents.iter().filter(|i| i.kind == ActionKind::Create) {
        assert_eq!(i.outcome, Some(IntentOutcome::Succeeded), "{i:?}");
        let op = i.operation.as_ref().expect("journalled");
        assert!(op["bulk"]["operation_id"].is_string(), "{op}");
    }
    assert_eq!(f.stats().await["vm_creates_repeated"], json!({}));

    f.store.set_target("maya", 1).await.unwrap();
    f.step_until(&ctl, "1 running, 2 deallocated", async |f| {
        let vms = f.store.list_vms(Some("maya")).await.unwrap();
        let dealloc = vms
            .iter()
            .filter(|v| v.state == NodeState::Deallocated)
            .count();
        f.running("maya").await == 1
            && dealloc == 2
            && f.store.open_intents().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(bulk_calls(&f, "ExecuteDeallocate").await, 1);
}

#[tokio::test]
async fn a_controller_stopped_mid_bulk_is_followed_by_the_next_without_writing_again() {
    let f = farm("bulk-recovery").await;
    f.pool("maya", 2).await;
    f.run_until_accepted(controller::BulkMode::Always, 2).await;
    assert_eq!(bulk_calls(&f, "ExecuteCreate").await, 1);

    // The service runs the operations while nobody watches; the next start-up follows each
    // VM's operation id to its end, and creates nothing again.
    f.sim.advance_clock(Duration::from_secs(60));
    let second = f.controller_with(controller::BulkMode::Always);
    second.start_up().await;
    assert!(
        f.store.open_intents().await.unwrap().is_empty(),
        "start-up resolved every open intent"
    );
    f.step_until(&second, "2 running", async |f| f.running("maya").await == 2)
        .await;
    assert_eq!(
        bulk_calls(&f, "ExecuteCreate").await,
        1,
        "nothing sent again"
    );
    assert_eq!(f.vm_puts().await, 0);
    let st = f.stats().await;
    assert_eq!(st["vm_creates_repeated"], json!({}), "{st}");
}

#[tokio::test]
async fn a_bulk_create_short_of_capacity_marks_the_offering_and_the_next_size_fills_in() {
    // Room for one Standard_D8s_v5: of a bulk request for three, two fail for capacity.
    let cfg = SimConfig::default()
        .merged(&json!({"capacity": {"Standard_D8s_v5": 1}}))
        .unwrap();
    let f = farm_with("bulk-capacity", cfg).await;
    let spec = serde_json::from_value(json!({
        "name": "maya", "mode": "vm", "vm_sizes": ["Standard_D8s_v5", "Standard_D4s_v5"],
        "image": "Canonical:ubuntu-24_04-lts:server:latest", "max": 10, "target": 3,
        "idle_timeout_seconds": 0}))
    .unwrap();
    f.store.create_pool(&spec).await.unwrap();
    let ctl = f.controller_with(controller::BulkMode::Always);
    ctl.start_up().await;
    f.step_until(&ctl, "3 running, no intent open", async |f| {
        f.running("maya").await == 3 && f.store.open_intents().await.unwrap().is_empty()
    })
    .await;
    let vms = f.store.list_vms(Some("maya")).await.unwrap();
    let sizes = |s: &str| {
        vms.iter()
            .filter(|v| v.size.eq_ignore_ascii_case(s))
            .count()
    };
    assert_eq!(
        (sizes("Standard_D8s_v5"), sizes("Standard_D4s_v5")),
        (1, 2),
        "{vms:?}"
    );
    // The per-VM capacity failures marked the offering, as a single create's would.
    let avoided = f.store.list_unavailable(controller::now()).await.unwrap();
    assert!(
        avoided
            .iter()
            .any(|u| u.offering.size.eq_ignore_ascii_case("Standard_D8s_v5")),
        "{avoided:?}"
    );
    assert_eq!(f.stats().await["vm_creates_repeated"], json!({}));
    // The first three in one request; the two failed names are created again one at a
    // time (each deletes its failed VM first), on the next size.
    assert_eq!(bulk_calls(&f, "ExecuteCreate").await, 1);
    assert_eq!(f.vm_puts().await, 2);
}
