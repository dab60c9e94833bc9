//! The gateway: accepts clients on the public port and links (business workers and API
//! callers) on the internal port, forwards client events to workers and executes their
//! commands (spec sections 1-6).
//!
//! [`GatewayCore`] is the whole gateway as a sans-IO state machine (quinn-proto/str0m
//! style): the driver feeds it bytes, closes and time, and carries out the [`Action`]s it
//! drains after every input. The client-facing protocol (websocket, text or frame) runs
//! inside the core, so a test can split or merge reads anywhere.
//!
//! * `config`: [`GatewayConfig`] with every bound (`*_max`).
//! * `action`: handles, [`Action`]s, refusals and counters.
//! * `clients`: the client table and its uid/group indexes, in the original's orders.
//! * `routing`: sticky least-connections (or seeded random) worker choice.
//! * `core`: lifecycle, event forwarding, delivery, heartbeat and keep-alive timers.
//! * `commands`: the commands and queries arriving on links.

mod action;
mod clients;
mod commands;
mod config;
mod core;
mod routing;
mod wire;

#[cfg(test)]
mod tests;

pub use action::{Action, CloseReason, ConnectionId, GatewayStats, LinkId, Refused, Target};
pub use clients::IdAllocator;
pub use commands::{array_key, message_payload};
pub use config::{GatewayConfig, PublicProtocol, RoutingMode};
pub use core::{
    ClientSnapshot, GatewayCore, GatewaySnapshot, LINK_PING_INTERVAL, REGISTER_RECONNECT_DELAY,
};
pub use routing::{RouteEntry, SplitMix64};

pub mod driver;
pub mod shards;
