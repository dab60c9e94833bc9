//! gatewayworker: a Rust reimplementation of the GatewayWorker long-connection system
//! (Register, Gateway, BusinessWorker running wasm plugins, GatewayClient), byte-compatible
//! with the PHP original's binary protocol.
//!
//! Codemap of `src/`: each role is a sans-IO core (no socket, no clock, no randomness:
//! time and keys come in as inputs) plus a driver that owns the sockets.
//!
//! * [`protocol`]: wire codecs with no I/O: the 28-byte GatewayProtocol frame, client ids,
//!   PHP serialize/unserialize and JSON, register lines, the client-facing protocols
//!   (websocket, text).
//! * [`net`]: the [`net::Net`] trait drivers are generic over (tokio sockets here, turmoil
//!   in `sim/`), the per-connection I/O loop shared by the gateway and register drivers
//!   (with its panic containment), accept-loop backoff, TLS for `wss://`.
//! * [`register`]: the directory of gateway addresses: core and driver.
//! * [`gateway`]: the client-facing server: the client table, worker links and routing
//!   (core), one driver per shard, and [`gateway::shards`] to run `count` shards.
//! * [`api`]: the Gateway API as data, transport-free: [`api::ApiCall`], the planner that
//!   turns a call into frames per gateway, and how query replies merge. Used by the
//!   worker, the wasm host and the client.
//! * [`worker`]: the worker engine: [`worker::WorkerCore`] (links to every gateway, events
//!   out, API calls in) and [`worker::WorkerDriver`], which runs a core's links on one task.
//! * [`wasm`]: the plugin host running the business logic as wasm modules.
//! * [`business`]: the BusinessWorker process: `count` instances, each one wasm instance
//!   and one engine on a thread of its own; reload; metrics.
//! * [`client`]: the GatewayClient library, the Gateway API for programs outside the
//!   cluster.
//! * [`drop_log`]: the rate-limited log line every core writes for what it drops at a
//!   bound (counts per kind, the worst connection), so a burst never floods the log.
//! * [`splitmix`]: the seeded generator cores draw from (their seed is an input).
//! * `testing` (hidden): vectors and helpers shared by tests, `sim/` and benches.
//!
//! The `gatewayworker` binary (`src/main.rs`, `src/cli/`) adds the command line, the
//! config file, logging, the metrics endpoint and the demo.

// `deny`, not `forbid`: the one exception is `net::memory`'s `malloc_trim` call (glibc FFI,
// no arguments, no invariants), allowed there by name.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Without the `runtime` feature (the fuzz build) only the codecs are compiled, `protocol`
// and `wasm::value`, and with `cores` the worker's sans-IO core and what it needs (`api`,
// `drop_log`, `splitmix`); helpers of theirs used only by the runtime are then unused.
#![cfg_attr(not(feature = "runtime"), allow(dead_code, unused_imports))]

#[cfg(feature = "cores")]
pub mod api;
#[cfg(feature = "runtime")]
pub mod business;
#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "cores")]
pub mod drop_log;
#[cfg(feature = "runtime")]
pub mod gateway;
#[cfg(feature = "runtime")]
pub mod net;
pub mod protocol;
#[cfg(feature = "runtime")]
pub mod register;
#[cfg(feature = "cores")]
pub mod splitmix;
#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod testing;
pub mod wasm;
#[cfg(feature = "cores")]
pub mod worker;
