//! Wire types for the JSON that Azure Resource Manager, the Batch service and Entra ID
//! exchange with renderburst.
//!
//! This crate owns the *shape* of the wire format and nothing else: no HTTP, no IO, no
//! behaviour. Both the ARM client (`crates/azure`) and the simulator (`crates/azure-sim`)
//! depend on it, so the two cannot drift apart silently.
//!
//! Conventions:
//! - Field names follow the REST specifications (`camelCase` on the wire).
//! - Every optional field is `Option` and skipped when `None`, so a value we did not set is
//!   never sent as `null` (ARM rejects some explicit nulls).
//! - Unknown fields are accepted and ignored on deserialization: Azure adds fields with every
//!   api-version and the client must keep working.
//! - Enumerations whose set Azure extends over time (power states, priorities, error codes)
//!   are plain strings with associated constants, not closed Rust enums. Constants of a set
//!   shared by several fields sit on a unit struct named after it (`compute::Priority::SPOT`,
//!   `batch::AllocationState::STEADY`); compare case-insensitively, as Azure does.
//! - Types are re-exported only from `common`; everything else is reached through its module
//!   (`arm_model::compute::VirtualMachine`), since names like `ImageReference` exist per provider.

pub mod auth;
pub mod batch;
pub mod common;
pub mod compute;
pub mod computeschedule;
pub mod network;
pub mod resources;
pub mod sizes;

pub use common::*;
