//! The daemon's end-to-end tests, one binary: each module is a scenario against the real
//! daemon (in process, or the `renderburst` binary as a child for the tests that kill it), the
//! simulator over HTTPS on loopback and a real SQLite file. One binary links once, and its
//! tests — which mostly wait on the daemon, the simulator's latencies and backoff windows —
//! run side by side (`RUST_TEST_THREADS`, `.cargo/config.toml`); each test has its own
//! ports, files and simulator, so none depends on another.

mod common;

mod addresses;
mod backoff_batch;
mod backoff_restart;
mod batch_e2e;
mod blocked;
mod cli;
mod drain;
mod e2e;
mod embedded_restart;
mod events;
mod exposure;
mod outage;
mod reuse;
mod schedule_clashes;
mod stuck;
mod stuck_batch;
