//! Integration tests of the simulator over real HTTPS: one test binary (to keep link time
//! low), one module per area. Every test starts its own `Simulator` on 127.0.0.1:0 with
//! latencies of a few milliseconds and waits for transitions by polling, never by sleeping
//! for a fixed time.

mod common;

mod addresses;
mod batch;
mod compute_schedule;
mod concurrency;
mod control;
mod entra;
mod eviction;
mod faults;
mod lists;
mod persist;
mod protocol;
mod quota;
mod rg;
mod throttling;
mod vm;
