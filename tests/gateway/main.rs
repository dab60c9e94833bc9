//! The gateway and the register on real sockets: protocols, hostile input, attacks,
//! TLS, reply alignment, panic containment, accept backoff, hash keys, register bounds.
//!
//! Integration tests are grouped by area, one binary per folder of `tests/`, so the suite
//! links a few binaries instead of one per file (each links wasmtime).
#![allow(
    clippy::disallowed_methods,
    reason = "tests drive real sockets and processes: wall-clock deadlines, helper threads"
)]
mod accept_backoff;
mod attacks;
#[path = "../common/mod.rs"]
mod common;
mod compression;
mod hash_keys;
mod hostile;
mod pacing;
mod panic_containment;
mod register_budget;
mod register_core;
mod register_sockets;
mod reply_alignment;
mod sockets;
mod tls;
