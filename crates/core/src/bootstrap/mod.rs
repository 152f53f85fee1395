//! Node bootstrap (being split into files of one concern; see `cloud_init.rs` for now).

mod cloud_init;
mod grammar;
pub mod quote;

pub use cloud_init::*;
