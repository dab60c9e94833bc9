//! The turmoil world for gatewayworker: hosts, workloads, faults and the reference model.
//!
//! * `net`: [`TurmoilNet`], turmoil's simulated TCP behind the drivers' `Net` trait, so
//!   the real drivers run unchanged inside simulated hosts.
//! * `choppy`: [`ChoppyStream`], which cuts and merges a peer's writes at seeded random
//!   points (turmoil itself delivers every write whole), so framing is always stressed.
//! * `world`: the whole cluster (register, gateways, worker hosts running the `probe`
//!   guest, clients) and the run loop; `workload`: the clients' seeded programs; `model`:
//!   the reference model and oracle; `faults`: the fault switches and schedule; `trace`:
//!   the observed events and their hash; `conn`: a client's WebSocket or text connection.
//!   See `sim/README.md`.

#![warn(missing_docs)]

pub mod api;
pub mod choppy;
pub mod conn;
pub mod faults;
pub mod md5;
pub mod model;
pub mod net;
pub mod observe;
pub mod php;
pub mod trace;
pub mod workload;
pub mod world;

pub use choppy::{ChoppyStream, TINY_CHUNK_MAX};
pub use faults::Faults;
pub use net::{TurmoilListener, TurmoilNet, TurmoilStream};
pub use world::{run, Outcome, SimConfig};

use std::time::{Duration, SystemTime};

/// The simulated wall clock's start (2023-11-14T22:13:20Z): fixed, because turmoil's
/// default epoch is the real `SystemTime::now()`.
pub const EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// A turmoil builder with the determinism settings every simulation needs: an explicit
/// RNG seed (turmoil's default is OS-random) and a fixed epoch. Inside hosts, use
/// `tokio::time` (simulated), never `std::time` (real), and make every `select!` `biased;`.
pub fn builder(seed: u64) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    builder.rng_seed(seed).epoch(SystemTime::UNIX_EPOCH + EPOCH);
    builder
}
