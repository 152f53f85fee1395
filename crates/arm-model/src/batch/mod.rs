//! Azure Batch, on both of its planes.
//!
//! The *management* plane is ARM (`Microsoft.Batch/batchAccounts[/pools]`): envelopes, ARM
//! errors, ARM paging. The *data* plane (list and remove nodes) is served at the account
//! endpoint with its own token audience and api-versions like `2024-07-01.20.0`; it is not ARM
//! and differs in three ways modelled here: pages link with `odata.nextLink`, errors have a
//! localized `message` object, and enum values are lowercase (`idle`, `requeue`).
//!
//! Management-plane shapes follow the Batch management REST spec, 2025-06-01
//! (azure-rest-api-specs `specification/batch/resource-manager/Microsoft.Batch/Batch/stable/
//! 2025-06-01/openapi.json`, `definitions`); each type names its definition.
//!
//! `management.rs` holds the management plane's types, `data_plane.rs` the data plane's; both
//! are re-exported here, so a type's path is `batch::Name` whichever plane it belongs to.

mod data_plane;
mod management;
#[cfg(test)]
mod tests;

pub use data_plane::*;
pub use management::*;
