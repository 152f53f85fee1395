//! The `renderburst` binary's library half: configuration, the daemon's wiring, and the
//! client commands. Split from `main.rs` so end-to-end tests can start a daemon in-process.

pub mod admin_token;
pub mod args;
pub mod client;
pub mod config;
pub mod network;
pub mod output;
pub mod serve;
pub mod sim;
pub mod summary;
pub mod tls;
