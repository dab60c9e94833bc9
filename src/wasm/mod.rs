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

pub mod abi;
mod config;
mod event;
mod handler;
mod host;
mod imports;
mod reload;
mod session;
mod store;
pub mod value;
mod worker;

pub use config::HostConfig;
pub use event::{ClientInfo, EventFailure, EventKind, EventOutcome, FailureKind, WorkerEvent};
pub use handler::{ApiHandler, ApiRequest, LogLevel};
pub use host::{HostError, LoadError, Plugin, WasmHost};
pub use imports::{AbiViolation, SLEEP_MS_MAX};
pub use reload::{FileWatcher, PluginSlot, ReloadHandle};
pub use store::StoreData;
pub use worker::{WasmWorker, WorkerStats};
