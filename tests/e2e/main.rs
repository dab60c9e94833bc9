//! Whole systems: register + gateway + business worker with real guests and real
//! WebSocket clients, the GatewayClient library, and the `gatewayworker` binary.
//!
//! Integration tests are grouped by area, one binary per folder of `tests/`, so the suite
//! links a few binaries instead of one per file (each links wasmtime).
#![allow(
    clippy::disallowed_methods,
    reason = "tests drive real sockets and processes: wall-clock deadlines, helper threads"
)]
mod check_wasm;
mod cli;
mod client_cli;
mod client_scripted;
mod client_sockets;
mod client_suspect;
#[path = "../common/mod.rs"]
mod common;
mod guest_all_or_nothing;
mod guest_fuel;
mod guest_languages;
mod guest_limits;
mod guests;
mod packaging;
mod probe;
mod reload_rollback;
#[path = "../system/mod.rs"]
mod system;
