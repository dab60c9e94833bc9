//! The business worker: its driver against scripted and real gateways, batching,
//! backpressure, and the wasm host with real guest modules.
//!
//! Integration tests are grouped by area, one binary per folder of `tests/`, so the suite
//! links a few binaries instead of one per file (each links wasmtime).
#![allow(
    clippy::disallowed_methods,
    reason = "tests drive real sockets and processes: wall-clock deadlines, helper threads"
)]
mod alloc;
mod backpressure;
mod batching;
#[path = "../common/mod.rs"]
mod common;
mod driver;
mod faults;
mod gateway;
mod harness;
#[path = "../php_values/mod.rs"]
mod php_values;
mod wasm_event_deadline;
mod wasm_host;
mod wasm_probe;
