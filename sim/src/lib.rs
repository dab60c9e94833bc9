//! The turmoil world for gatewayworker: hosts, workloads, faults and the reference model.
//!
//! * `net`: [`TurmoilNet`], turmoil's simulated TCP behind the drivers' `Net` trait, so
//!   the real drivers run unchanged inside simulated hosts.
//! * `choppy`: [`ChoppyStream`], which cuts and merges a peer's writes at seeded random
//!   points (turmoil itself delivers every write whole), so framing is always stressed.

#![warn(missing_docs)]

pub mod choppy;
pub mod net;

pub use choppy::{ChoppyStream, TINY_CHUNK_MAX};
pub use net::{TurmoilListener, TurmoilNet, TurmoilStream};
