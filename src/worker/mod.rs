//! The business worker: a sans-IO core that links to every gateway, turns client events into
//! handler calls and Gateway API calls into frames, plus its tokio driver.
//!
//! * [`api`]: the calls of the original `Lib\Gateway` as data ([`api::ApiCall`]).
//! * [`sender`]: a call → the exact frames per gateway (pure; shared with a GatewayClient).
//! * [`merge`]: query replies of several gateways → one result, as the original folds them.
//! * [`gather`]: the reply slots of one query in flight, its deadline and timeout policy.
//! * [`core`]: [`core::WorkerCore`], the sans-IO engine (register and gateway links,
//!   events, calls, session write-back).
//! * [`driver`]: the tokio loop around the core, generic over [`crate::net::Net`].
//! * [`business`]: the BusinessWorker process: `count` instances, each a driver and a wasm
//!   instance of the same module on a thread of its own.
//! * [`metrics`]: event durations and failures, and the observer view of a running worker.

#[allow(missing_docs)] // Variant fields are the original API's parameters, named as there.
pub mod api;
pub mod business;
pub mod core;
mod defer;
pub mod driver;
pub mod gather;
pub mod merge;
pub mod metrics;
pub mod sender;
