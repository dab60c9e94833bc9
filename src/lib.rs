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

pub mod client;
pub mod gateway;
pub mod net;
pub mod protocol;
pub mod register;
#[doc(hidden)]
pub mod testing;
pub mod wasm;
pub mod worker;
