//! Gateway settings: identity on the wire, client heartbeat, routing, and every bound.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;

pub use crate::protocol::public::PublicProtocol;

/// How a client without a (still registered) worker gets one (spec 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMode {
    /// The original's default: the registered worker key with the fewest bound clients,
    /// ties to the earliest inserted key.
    LeastConnections,
    /// A uniformly random registered key, drawn from a generator seeded with `seed`.
    Random {
        /// Seed of the deterministic generator (splitmix64).
        seed: u64,
    },
}

/// Everything a [`GatewayCore`](super::GatewayCore) needs to know, fixed at creation.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `lanIp`: put in every event header as `local_ip` and announced to the register.
    pub lan_ip: Ipv4Addr,
    /// `lanPort`: the internal port workers connect to.
    pub lan_port: u16,
    /// The public port clients connect to (`gateway_port` in event headers).
    pub gateway_port: u16,
    /// Secret shared with workers and API callers; empty = none (spec 4).
    pub secret_key: Bytes,
    /// The client-facing protocol.
    pub protocol: PublicProtocol,
    /// Worker selection for new clients.
    pub routing: RoutingMode,
    /// `pingInterval`; zero turns the client heartbeat off (spec 5.4).
    pub ping_interval: Duration,
    /// `pingNotResponseLimit` (L): with L > 0 a client silent for 2L+2 ticks is destroyed.
    pub ping_not_response_limit: u32,
    /// `pingData`: sent to clients through their protocol; empty = send nothing.
    pub ping_data: Bytes,
    /// Register addresses (`host:port`), each kept connected (spec 8).
    pub register_addresses: Vec<String>,
    /// Per-client pending output, default 1 024 000 bytes (the original's
    /// `sendToClientBufferSize`). A message for a client whose unflushed output has
    /// reached it is dropped (counted in `client_messages_dropped`, logged); the client
    /// stays connected.
    pub client_pending_max: usize,
    /// Messages queued for a websocket client before its handshake completes, default
    /// 1 024 000 bytes (workerman bounds this queue by the send buffer size). Over it
    /// the message is dropped like at `client_pending_max`.
    pub pending_before_handshake_max: usize,
    /// Per-link pending output, default 10 240 000 bytes (`sendToWorkerBufferSize`).
    /// An event (or ping) for a link whose unflushed output has reached it is dropped
    /// (counted in `link_frames_dropped`, logged); the link stays open. A reply is never
    /// dropped: one that would take the output past this plus one largest reply record
    /// closes the link (see `reply_size_max`).
    pub link_pending_max: usize,
    /// Largest reply payload, default 64 MiB ([`crate::protocol::frame::REPLY_SIZE_MAX_DEFAULT`],
    /// what workers and GatewayClients accept). A reply that would be larger closes the
    /// link instead of being sent (the peer fails its pending calls).
    pub reply_size_max: usize,
    /// Largest internal frame and largest client message, default 10 485 760 bytes
    /// (workerman's `maxPackageSize`). A larger one closes that connection.
    pub package_size_max: usize,
    /// Time a websocket client has to complete its handshake, default 10 s; zero turns the
    /// limit off. At the bound the client is destroyed (ON_CLOSE follows). The original has
    /// no such limit: a client that trickles a request head (slowloris) or sends nothing
    /// would hold its connection, and its worker's count, forever.
    pub handshake_timeout: Duration,
    /// Most clients at once, default 1 000 000. At the bound a new client is refused at
    /// accept (the driver drops the socket; no event reaches a worker).
    pub clients_max: usize,
    /// Most internal links at once, default 10 000. At the bound a new link is refused.
    pub links_max: usize,
}

impl GatewayConfig {
    /// The original's defaults for a gateway at `lan_ip:lan_port` serving websocket
    /// clients on `gateway_port`: no secret, least-connections routing, no heartbeat,
    /// no register.
    pub fn new(lan_ip: Ipv4Addr, lan_port: u16, gateway_port: u16) -> GatewayConfig {
        GatewayConfig {
            lan_ip,
            lan_port,
            gateway_port,
            secret_key: Bytes::new(),
            protocol: PublicProtocol::Websocket,
            routing: RoutingMode::LeastConnections,
            ping_interval: Duration::ZERO,
            ping_not_response_limit: 0,
            ping_data: Bytes::new(),
            register_addresses: Vec::new(),
            client_pending_max: 1_024_000,
            pending_before_handshake_max: 1_024_000,
            link_pending_max: 10_240_000,
            reply_size_max: crate::protocol::frame::REPLY_SIZE_MAX_DEFAULT as usize,
            package_size_max: crate::protocol::frame::PACKAGE_SIZE_MAX_DEFAULT as usize,
            handshake_timeout: Duration::from_secs(10),
            clients_max: 1_000_000,
            links_max: 10_000,
        }
    }

    /// The period of the client heartbeat timer (spec 5.4), `None` when it is off.
    pub fn heartbeat_period(&self) -> Option<Duration> {
        if self.ping_interval.is_zero() {
            return None;
        }
        let period = if self.ping_not_response_limit > 0 {
            self.ping_interval / 2
        } else {
            self.ping_interval
        };
        (!period.is_zero()).then_some(period)
    }

    /// `lanIp:lanPort`, the address announced to the register.
    pub fn lan_address(&self) -> String {
        format!("{}:{}", self.lan_ip, self.lan_port)
    }
}
