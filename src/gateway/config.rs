//! Gateway settings: identity on the wire, client heartbeat, routing, and every bound.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;

pub use crate::protocol::public::{CompressionMode, PublicProtocol};

/// The 128-bit key of the hasher of the gateway's maps keyed by names a peer chooses
/// (uids, groups: the chat example's room names come from clients).
///
/// With a key an attacker knows, names that all fall into one bucket can be computed
/// offline and sent to make every lookup in that map linear (hash flooding). The core
/// takes the key as config and never draws randomness itself: the production path
/// ([`GatewaySettings::new`](super::shards::GatewaySettings::new)) draws a random key
/// per process with [`HashKey::random`] (in `shards.rs`, driver side), the simulation derives one from its seed with
/// [`HashKey::from_seed`]. [`GatewayConfig::new`] uses the fixed all-zero key, for
/// tests and tools that want identical runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashKey(pub [u64; 2]);

impl HashKey {
    /// A key derived from `seed` (splitmix64 steps): the same seed gives the same key.
    pub fn from_seed(seed: u64) -> HashKey {
        let mut rng = crate::splitmix::SplitMix64(seed);
        HashKey([rng.next_u64(), rng.next_u64()])
    }
}

/// The hasher of maps keyed by peer-chosen names: keyed SipHash-2-4 with a
/// [`HashKey`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NameState {
    key: HashKey,
}

impl NameState {
    /// The hasher for `key`.
    pub fn new(key: HashKey) -> NameState {
        NameState { key }
    }
}

impl std::hash::BuildHasher for NameState {
    // std's keyed SipHash-2-4: deprecated only in favour of out-of-tree crates, and the one
    // keyed SipHash std exposes (`RandomState` cannot take a key, which the simulation needs).
    #[allow(deprecated)]
    type Hasher = std::hash::SipHasher;

    #[allow(deprecated)]
    fn build_hasher(&self) -> std::hash::SipHasher {
        std::hash::SipHasher::new_with_keys(self.key.0[0], self.key.0[1])
    }
}

/// Default [`GatewayConfig::link_pause_max`].
pub const LINK_PAUSE_MAX_DEFAULT: Duration = Duration::from_millis(1000);

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
    /// reached it is dropped (counted in `client_messages_dropped`, logged at most once per 10 s with the other
    /// drops, see [`crate::drop_log`]); the client
    /// stays connected.
    pub client_pending_max: usize,
    /// Messages queued for a websocket client before its handshake completes, default
    /// 1 024 000 bytes (workerman bounds this queue by the send buffer size). Over it
    /// the message is dropped like at `client_pending_max`.
    pub pending_before_handshake_max: usize,
    /// Longest a worker link stays paused in one pause episode, default 1 s; zero turns
    /// pacing off (the original's drop-at-the-bound only).
    ///
    /// Pacing (issue 18): when a message from a link takes a client's unflushed output to
    /// the high-water mark (3/4 of `client_pending_max`), the gateway stops reading that
    /// link (TCP backpressure to the worker, whose own link queue is bounded) until every
    /// client holding it has drained to the low-water mark (1/4). An episode that lasts
    /// this long ends anyway: the link is read again and the clients still holding it
    /// fall back to drop-and-count at `client_pending_max` until they drain to the
    /// low-water mark, without pausing any link meanwhile. So other clients of a link wait
    /// at most this long per episode for a slow one, and a client that did not drain in
    /// time cannot pause a link again before it has drained to the low-water mark. Keep
    /// it under the workers' `--suspect-after-ms` (2 s): a query a worker sends behind a
    /// paused link waits for it. See [`GatewayCore`](super::GatewayCore), "Pacing".
    pub link_pause_max: Duration,
    /// Per-link pending output, default 10 240 000 bytes (`sendToWorkerBufferSize`).
    /// An event (or ping) for a link whose unflushed output has reached it is dropped
    /// (counted in `link_frames_dropped`, logged at most once per 10 s); the link stays open. A reply is never
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
    /// permessage-deflate (RFC 7692) on the websocket port, default off. See
    /// [`CompressionMode`] and README, Compression.
    pub compression: CompressionMode,
    /// Messages to clients shorter than this go out uncompressed even to clients that
    /// negotiated compression, default 64 bytes.
    pub compression_min_size: usize,
    /// Key of the hasher of the uid and group maps; see [`HashKey`]. The all-zero key by
    /// default; the production path sets a random one.
    pub hash_key: HashKey,
    /// Longest delay between attempts to reach a register, default 500 ms: each delay is
    /// drawn uniformly in `[interval/2, interval]` from a generator seeded with
    /// `jitter_seed`; no backoff, so the gateway is back in the register's list within
    /// one interval of its return. (The original retries every second.)
    pub register_retry_interval: Duration,
    /// While a register cannot be reached: one warning at once, then at most one per
    /// this interval, default 30 s.
    pub register_warn_interval: Duration,
    /// Seed of the register retry jitter; 0 by default, the production path draws a
    /// random one (driver side; the core draws nothing).
    pub jitter_seed: u64,
    /// Tests only: the driver panics (after the core took the bytes) when a client's or
    /// link's input contains this sequence, to prove panic containment. `None` by
    /// default; no setting or command-line flag reaches it.
    #[doc(hidden)]
    pub test_panic_trigger: Option<Bytes>,
    /// Tests and simulation only: the driver calls this with the core after every input
    /// (bytes, closes, timers, accepts), e.g. to run [`GatewayCore::check_invariants`] and
    /// to observe the routing table. `None` by default; no setting reaches it.
    ///
    /// [`GatewayCore::check_invariants`]: super::GatewayCore::check_invariants
    #[doc(hidden)]
    pub after_input: Option<fn(&super::GatewayCore)>,
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
            link_pause_max: LINK_PAUSE_MAX_DEFAULT,
            reply_size_max: crate::protocol::frame::REPLY_SIZE_MAX_DEFAULT as usize,
            package_size_max: crate::protocol::frame::PACKAGE_SIZE_MAX_DEFAULT as usize,
            handshake_timeout: Duration::from_secs(10),
            clients_max: 1_000_000,
            links_max: 10_000,
            compression: CompressionMode::Off,
            compression_min_size: crate::protocol::public::deflate::MIN_SIZE_DEFAULT,
            hash_key: HashKey::default(),
            register_retry_interval: Duration::from_millis(500),
            register_warn_interval: Duration::from_secs(30),
            jitter_seed: 0,
            test_panic_trigger: None,
            after_input: None,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{GatewayConfig, HashKey};
    use crate::gateway::GatewayCore;

    fn core_with(key: HashKey) -> GatewayCore {
        let mut config = GatewayConfig::new("10.0.0.5".parse().unwrap(), 2000, 8282);
        config.hash_key = key;
        GatewayCore::new(config, Duration::ZERO)
    }

    /// The uid and group maps hash names with the configured key: another key, other
    /// hashes (so colliding names computed for one key are not collisions for another).
    #[test]
    fn the_cores_name_hash_depends_on_the_configured_key() {
        let a = core_with(HashKey([1, 2]));
        let b = core_with(HashKey([3, 4]));
        let a_again = core_with(HashKey([1, 2]));
        for name in [&b"room"[..], b"", b"1", b"a somewhat longer group name"] {
            assert_ne!(a.clients.name_hash(name), b.clients.name_hash(name));
            assert_eq!(a.clients.name_hash(name), a_again.clients.name_hash(name));
        }
    }

    #[test]
    fn keys_from_a_seed_are_reproducible_and_random_keys_differ() {
        assert_eq!(HashKey::from_seed(7), HashKey::from_seed(7));
        assert_ne!(HashKey::from_seed(7), HashKey::from_seed(8));
        let (r1, r2) = (HashKey::random(), HashKey::random());
        assert_ne!(r1, r2);
        assert_ne!(r1, HashKey::default());
    }
}
