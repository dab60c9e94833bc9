//! The wasm plugin host: business logic written once, compiled to a core wasm module that
//! speaks the `gw` ABI (`wasm-workers/ABI.md`), run in isolated instances.
//!
//! * [`WasmHost`]: the engine and the linker with every `gw` import, built once per process;
//!   compiles modules into [`Plugin`]s (compile once, instantiate many times).
//! * [`PluginSlot`]: the module a worker runs now; hot reload compiles off the event path
//!   and swaps between events.
//! * [`WasmWorker`]: one instance with its own store: fuel per event (deterministic CPU
//!   budget), an optional epoch deadline (wall-clock backstop), a memory limit. A trap costs
//!   only the event that caused it; the instance is recreated.
//! * [`ApiHandler`]: how guest API calls leave the host — the worker driver implements it
//!   with frames to gateways; queries await replies without blocking other instances.
//!
//! The guest side (SDK, examples) lives in the separate `wasm-workers/` workspace.

// Without the `runtime` feature (the fuzz build) only the GWV codec is compiled.
#[cfg(feature = "runtime")]
pub mod abi;
#[cfg(feature = "runtime")]
pub mod check;
#[cfg(feature = "runtime")]
mod config;
#[cfg(feature = "runtime")]
mod event;
#[cfg(feature = "runtime")]
mod handler;
#[cfg(feature = "runtime")]
mod host;
#[cfg(feature = "runtime")]
mod imports;
#[cfg(feature = "runtime")]
mod reload;
#[cfg(feature = "runtime")]
mod session;
#[cfg(feature = "runtime")]
mod store;
pub mod value;
#[cfg(feature = "runtime")]
mod worker;

#[cfg(feature = "runtime")]
pub use config::{HostConfig, FUEL_PER_INPUT_BYTE_DEFAULT, MEMORY_SIZE_MAX_DEFAULT};
#[cfg(feature = "runtime")]
pub use event::{ClientInfo, EventFailure, EventKind, EventOutcome, FailureKind, WorkerEvent};
#[cfg(feature = "runtime")]
pub use handler::{ApiHandler, ApiRequest, LogLevel};
#[cfg(feature = "runtime")]
pub use host::{HostError, LoadError, Plugin, WasmHost};
#[cfg(feature = "runtime")]
pub use imports::{AbiViolation, SLEEP_MS_MAX};
#[cfg(feature = "runtime")]
pub use reload::{FileWatcher, PluginSlot, ReloadHandle};
#[cfg(feature = "runtime")]
pub use store::StoreData;
#[cfg(feature = "runtime")]
pub use worker::{InstanceStats, WasmWorker};
