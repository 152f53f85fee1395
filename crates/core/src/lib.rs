//! renderburst's domain: what a pool is, how many nodes it should have, and the planner that
//! turns desired and observed state into actions with reasons.
//!
//! Nothing here does IO or reads the clock: time comes in as `now` (Unix seconds), Azure's
//! state comes in as [`NodeView`]s, and plans come out as data. That keeps the heart of the
//! daemon testable in microseconds and makes every decision explainable.

pub mod arm_names;
pub mod batch;
pub mod bootstrap;
pub mod condition;
mod cron_fields;
pub mod gate;
pub mod offerings;
pub mod plan;
pub mod schedule;
pub mod schedule_clash;
pub mod serde_words;
pub mod snapshot;
pub mod spec;
pub mod task;

pub use batch::{
    BatchAction, BatchActionKind, BatchInput, BatchNodeView, BatchPoolView, BatchTargets,
    ResizeErrorView, plan_batch,
};
pub use bootstrap::{BootstrapSpec, SecretRef};
pub use condition::{Condition, Hold, apply_holds, write_words};
pub use gate::{CreateGate, GateReason};
pub use offerings::{Offering, Unavailable, UnavailableReason};
pub use plan::{
    ActionKind, NodeState, NodeView, Plan, PlanInput, ReusableName, Step, VmAction, VmActionKind,
    plan,
};
pub use schedule::{Bounds, ScheduleSet, ScheduleSpec, Timing};
pub use snapshot::{BatchSnapshot, PoolPlan, PoolSnapshot, VmSnapshot};
pub use spec::{
    BatchLifecycle, BatchSpec, LicenseServer, Os, PoolMode, PoolSpec, Priority, ScaleDown,
    SpecError, SpotSpec, StartTaskSpec, desired_count, requested_peak,
};

/// Unix time in seconds.
pub type UnixSeconds = i64;

/// Tag names every resource renderburst creates carries.
pub const TAG_POOL: &str = "renderburst-pool";
pub const TAG_OWNER: &str = "renderburst-owner";
