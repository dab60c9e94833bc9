//! The worker engine: what links a business worker to the cluster.
//!
//! * [`core`]: [`WorkerCore`], the sans-IO engine: register and gateway links, client
//!   events out, Gateway API calls in, query replies gathered, sessions written back.
//! * [`driver`]: the tokio loop around the core, generic over [`crate::net::Net`].
//!
//! Depends on [`crate::protocol`], [`crate::api`] and [`crate::net`]; knows nothing of
//! wasm (the [`crate::business`] process puts a wasm instance on top).

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;

pub use self::core::WorkerCore;
#[cfg(feature = "runtime")]
pub use self::driver::{DriverConfig, WorkerDriver};
