//! The register: the directory service through which gateways announce their internal
//! address and workers (and API callers) learn the list (spec section 8).
//!
//! [`RegisterCore`] is the whole register as a sans-IO state machine (quinn-proto/str0m
//! style): the driver feeds it connects, bytes, closes and time, and carries out the
//! [`Action`]s it drains after every input. Line framing and the PHP reading of each line
//! run inside the core, so a test can split or merge reads anywhere.
//!
//! * `config`: [`RegisterConfig`] with the secret, the first-line timeout and every bound.
//! * `action`: connection handles, [`Action`]s, refusals and counters.
//! * `core`: the connection table, the gateway and worker registries, the broadcast.
//! * [`driver`]: the tokio (or turmoil) driver, and [`driver::start`] for real sockets.

mod action;
mod config;
mod core;

pub use action::{Action, CloseReason, PeerId, Refused, RegisterStats};
pub use config::RegisterConfig;
pub use core::RegisterCore;

pub mod driver;
