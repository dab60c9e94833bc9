//! gatewayworker: a Rust reimplementation of the GatewayWorker long-connection system.
//!
//! The crate is laid out the way the system is built:
//!
//! * [`protocol`]: wire codecs with no I/O (the 28-byte GatewayProtocol frame, client ids,
//!   PHP values, register messages, the client-facing protocols).
//! * later: `gateway`, `worker`, `register`, `client` (each a sans-IO core plus its tokio
//!   driver), `wasm` (the plugin host) and `cli`.
//!
//! Nothing under `protocol` reads a clock, a random source or a socket.

#![warn(missing_docs)]
// Without the `runtime` feature (the fuzz build) only the codecs are compiled: `protocol`
// and `wasm::value`; helpers of theirs used only by the runtime are then unused.
#![cfg_attr(not(feature = "runtime"), allow(dead_code, unused_imports))]

#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod gateway;
#[cfg(feature = "runtime")]
pub mod net;
pub mod protocol;
#[cfg(feature = "runtime")]
pub mod register;
#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod testing;
pub mod wasm;
#[cfg(feature = "runtime")]
pub mod worker;
