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
//! * `pace`: pausing a worker link while clients it feeds are over their high-water mark.
//! * `commands`: the commands and queries arriving on links.
//! * `wire`: thin adapters over `protocol::frame` and `protocol::php`.
//! * `driver`, `shards`: the tokio driver (written separately) that runs cores on sockets.
//!
//! # Differences from the original
//!
//! Byte-exact wherever a peer can observe it, except where the original is broken:
//!
//! * A message the websocket encoder cannot take (int, float, bool, an invalid body) is
//!   sent as its PHP string form instead of stopping the whole gateway process; an array
//!   `json_encode` refuses (invalid UTF-8, INF/NAN) is dropped and counted.
//! * A worker key is removed from routing only if it still maps to the closing link
//!   (quirk 10); a worker that re-registers on the same link keeps one key.
//! * Malformed frame lengths (`pack_len` < 28 or 0, `ext_len` too long) close the link.
//! * Raw (flag 0x02) messages for a websocket client still in its handshake are queued
//!   with the others instead of being written before the 101 response.
//! * `exclude` that is a JSON string excludes nobody (PHP would index into the string).
//! * Flag 0x04 (`FLAG_BINARY`, our extension) marks binary client messages on ON_MESSAGE
//!   and asks for a binary websocket frame on send commands; PHP peers ignore it.

mod action;
mod clients;
mod commands;
mod config;
mod core;
mod pace;
mod routing;
mod wire;

#[cfg(test)]
mod tests;

pub use crate::splitmix::SplitMix64;
pub use action::{Action, CloseReason, ConnectionId, GatewayStats, LinkId, Refused, Target};
pub use clients::IdAllocator;
pub use commands::{array_key, message_payload};
pub use config::{
    CompressionMode, GatewayConfig, HashKey, NameState, PublicProtocol, RoutingMode,
    LINK_PAUSE_MAX_DEFAULT,
};
pub use core::{
    ClientSnapshot, GatewayCore, GatewaySnapshot, LINK_PING_INTERVAL, REGISTER_RECONNECT_DELAY,
};
pub use routing::RouteEntry;

pub mod driver;
pub mod shards;
