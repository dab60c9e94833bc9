//! [`GatewayCore`]: connection lifecycle, event forwarding, delivery and timers.
//! Commands arriving on links are in `commands.rs`.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hashbrown::{HashMap, HashSet};

use super::action::{Action, CloseReason, ConnectionId, GatewayStats, LinkId, Refused, Target};
use super::clients::{ClientTable, IdAllocator, IdState};
use super::config::GatewayConfig;
use super::pace::Pacing;
use super::routing::{RouteEntry, Router};
use super::wire;
use crate::drop_log::{DropLog, DROP_LOG_INTERVAL};
use crate::protocol::frame::{
    self, Command, Frame, Header, FLAG_BINARY, FLAG_BODY_IS_SCALAR, HEADER_LEN,
};
use crate::protocol::public::deflate::Deflater;
use crate::protocol::public::{websocket, InflateCx, PublicEvent, PublicProtocol, SharedCodec};
use crate::protocol::register::{LineDecodeError, LineDecoder, ToRegister, FROM_REGISTER_LINE_MAX};
use crate::splitmix::SplitMix64;

/// Keep-alive period of internal links and register connections (spec 5.5).
pub const LINK_PING_INTERVAL: Duration = Duration::from_secs(25);
/// The original's delay before reconnecting to a register (spec 8); ours is
/// [`GatewayConfig::register_retry_interval`], jittered.
pub const REGISTER_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// A register connection up this long makes its loss a new outage, warned about at once
/// even within `register_warn_interval` of the previous warning.
const REGISTER_STABLE_AFTER: Duration = Duration::from_secs(5);
/// Uptime before "no worker" is worth a log line (spec 5.2).
const NO_WORKER_QUIET_PERIOD: Duration = Duration::from_secs(2);
/// Block size of a link's output arena: event frames are encoded into it and split off, so
/// forwarding a client event allocates nothing once the link's writes keep up (the block
/// is reclaimed in place when every frame cut from it has been written and dropped).
const LINK_OUT_BLOCK: usize = 64 * 1024;
/// Block size of the shared arena single-client messages are encoded into (see
/// [`GatewayCore::encode_for_one`]). Bounds what one stuck client can pin: one block.
const CLIENT_OUT_BLOCK: usize = 16 * 1024;

/// A message on its way to one or more clients: encoded once for every client without
/// compression, and compressed at most once for every client that negotiated
/// permessage-deflate without server context takeover (the same bytes for all of them).
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The protocol-encoded frame (or the raw bytes of a flag 0x02 message).
    pub(super) plain: Bytes,
    /// The message payload, kept for compression; empty when `compressible` is false.
    payload: Bytes,
    binary: bool,
    /// A websocket message we framed ourselves (not raw bytes).
    compressible: bool,
    /// The compressed frame shared by fresh-stream clients, made at the first of them
    /// (`plain` again when compression does not make it smaller).
    fresh: Option<Bytes>,
}

impl Outgoing {
    /// Bytes that go out as they are (raw messages, or a protocol without compression).
    pub(super) fn raw(bytes: Bytes) -> Outgoing {
        Outgoing {
            plain: bytes,
            payload: Bytes::new(),
            binary: false,
            compressible: false,
            fresh: None,
        }
    }

    /// A message framed by the public protocol as `plain`, from `payload`.
    pub(super) fn message(plain: Bytes, payload: Bytes, binary: bool) -> Outgoing {
        Outgoing {
            plain,
            payload,
            binary,
            compressible: true,
            fresh: None,
        }
    }
}

/// One internal connection (worker or API caller).
#[derive(Debug)]
pub(super) struct Link {
    pub(super) peer: SocketAddr,
    /// Bytes of an incomplete frame (empty, and unallocated, between frames).
    pub(super) input: BytesMut,
    /// Commands other than 200/202 are accepted (spec 4).
    pub(super) authorised: bool,
    /// Routing key once WORKER_CONNECT succeeded.
    pub(super) key: Option<Bytes>,
    /// Bytes handed to the driver and not yet reported flushed.
    pub(super) pending: usize,
    /// A graceful close was requested; input is ignored until the driver reports it.
    pub(super) closing: bool,
    /// Output arena (see [`LINK_OUT_BLOCK`]); unallocated until the first event.
    pub(super) out: BytesMut,
}

/// A register connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegisterState {
    /// `ConnectRegister` issued, waiting for the driver.
    Connecting,
    /// Connected; next keep-alive due at `ping_at` (none for 127.0.0.1 registers).
    Connected { ping_at: Option<Duration> },
    /// Closed; reconnect at `at`.
    Waiting { at: Duration },
}

/// A register's outage: since when it is unreachable, the failed attempts since, and
/// the bounded-rate warning state.
#[derive(Debug, Default, Clone, Copy)]
struct RegisterOutage {
    /// When the current connection came up.
    connected_at: Option<Duration>,
    down_since: Option<Duration>,
    attempts: u64,
    warned_at: Option<Duration>,
    warned_in_outage: bool,
}

/// The input side of a register connection: its partial line and the line splitter.
#[derive(Debug, Default)]
struct RegisterInput {
    /// Bytes of an incomplete line (under [`FROM_REGISTER_LINE_MAX`]).
    buf: BytesMut,
    lines: LineDecoder,
    /// A line over the bound asked the driver to close the connection: input is ignored
    /// until it reports the close.
    closing: bool,
}

impl RegisterInput {
    fn new() -> RegisterInput {
        RegisterInput {
            buf: BytesMut::new(),
            lines: LineDecoder::new(FROM_REGISTER_LINE_MAX),
            closing: false,
        }
    }
}

/// The gateway's state machine: no sockets, no clock, no randomness.
///
/// # Driving it
///
/// Every input is a `handle_*` call carrying `now`, a monotonic time (for example the
/// time since the driver started); calls must never go back in time. After **each**
/// input the driver drains [`poll_action`](Self::poll_action) until it returns `None`,
/// carrying the actions out in order (transmits to the same target keep their order),
/// then asks [`poll_timeout`](Self::poll_timeout) for the next deadline and calls
/// [`handle_timeout`](Self::handle_timeout) when it passes (early or repeated calls are
/// harmless no-ops).
///
/// * Clients: `handle_client_connected` at accept (the core allocates the connection id
///   of spec 3, or refuses at `clients_max`), `handle_client_bytes` with whatever was
///   read (the public protocol runs inside the core, so reads may split or merge
///   messages at will), `handle_client_flushed` with the number of bytes written to the
///   socket, `handle_client_closed` when the socket is gone — for any reason, including
///   after a `CloseClient` action (the id stays reserved until then).
/// * Links: the same four calls with `link` in the name; the core allocates link ids
///   (never reused). `handle_link_closed` after a `CloseLink` is always safe (the core
///   may already have dropped a link that had nothing left to flush).
/// * Registers: `handle_register_connected/bytes/closed` for register `index`
///   (`ConnectRegister` actions ask for a connection; a failed attempt is reported as
///   closed). The core splits the register's lines itself; a line over
///   [`FROM_REGISTER_LINE_MAX`] gets a `CloseRegister`.
/// * Pacing: `PauseLink` and `ResumeLink` ask the driver to stop and restart reading a
///   link while clients it feeds are over their high-water mark, for at most
///   [`GatewayConfig::link_pause_max`] per episode (see `pace.rs`). Bytes the driver had
///   already read may still be handed in while paused; the core executes them.
///
/// Closing is logical and immediate: when the core decides to close a client (KICK,
/// DESTROY, heartbeat, no worker, protocol close) it emits `CloseClient`, sends
/// ON_CLOSE to the worker and forgets the client at once; queries stop seeing it.
#[derive(Debug)]
pub struct GatewayCore {
    pub(super) config: GatewayConfig,
    started: Duration,
    pub(super) clients: ClientTable,
    /// Ids the core closed and the driver has not yet reported closed.
    closing_clients: HashSet<u32, IdState>,
    ids: IdAllocator,
    pub(super) links: HashMap<u64, Link, IdState>,
    next_link: u64,
    pub(super) router: Router,
    registers: Vec<RegisterState>,
    /// One per register, same index as `registers`.
    register_input: Vec<RegisterInput>,
    /// One per register, same index as `registers`.
    register_outages: Vec<RegisterOutage>,
    /// Register retry jitter, seeded from [`GatewayConfig::jitter_seed`].
    jitter: SplitMix64,
    /// Dropped messages, logged at most once per interval.
    drop_log: DropLog,
    heartbeat_at: Option<Duration>,
    worker_ping_at: Option<Duration>,
    /// Handshake deadlines `(at, connection id, accept seq)` in accept order; with one
    /// fixed timeout they are also in deadline order. Entries of clients that completed
    /// their handshake or left are dropped when they come due (the seq tells a reused id).
    handshake_deadlines: VecDeque<(Duration, u32, u64)>,
    pub(super) actions: VecDeque<Action>,
    pub(super) stats: GatewayStats,
    /// Scratch space for decoded client events, kept to avoid an allocation per read.
    events: Vec<PublicEvent>,
    /// Read buffer shared by every connection that holds no partial unit.
    scratch: BytesMut,
    /// Output arena for single-client messages (see [`CLIENT_OUT_BLOCK`]).
    client_out: BytesMut,
    /// Reused list of a broadcast's recipients.
    pub(super) recipients: Vec<u32>,
    /// The permessage-deflate compressor and decompressor shared by every client of this
    /// core that negotiated no context takeover (allocated at first use).
    codec: SharedCodec,
    /// Scratch output of the compressor.
    deflate_buf: Vec<u8>,
    /// [`GatewayCore::handle_shutdown`] ran: no timers, no register reconnects.
    shutting_down: bool,
    /// Which worker links are paused for which clients (see `pace.rs`).
    pub(super) pacing: Pacing,
}

/// A plain-data view of the core's state, in the original's orders (for tests, the
/// simulation and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySnapshot {
    /// Clients in accept order.
    pub clients: Vec<ClientSnapshot>,
    /// uid → connection ids in bind order, uids sorted by bytes (no output depends on
    /// the order of uids).
    pub uid_index: Vec<(Bytes, Vec<u32>)>,
    /// group → connection ids in join order, groups in creation order.
    pub group_index: Vec<(Bytes, Vec<u32>)>,
    /// Registered workers in tie order with their counts.
    pub workers: Vec<RouteEntry>,
}

/// One client in a [`GatewaySnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSnapshot {
    /// Connection id.
    pub connection_id: u32,
    /// Session string.
    pub session: Bytes,
    /// Bound uid.
    pub uid: Option<Bytes>,
    /// Groups in join order (`None` = never joined).
    pub groups: Option<Vec<Bytes>>,
    /// Routing key of its worker.
    pub worker_key: Option<Bytes>,
    /// Heartbeat counter.
    pub ping_count: i32,
}

impl GatewayCore {
    /// A gateway started at `now`; asks for its register connections at once.
    pub fn new(config: GatewayConfig, now: Duration) -> GatewayCore {
        let heartbeat_at = config.heartbeat_period().map(|p| now + p);
        let worker_ping_at =
            (config.lan_ip != Ipv4Addr::LOCALHOST).then(|| now + LINK_PING_INTERVAL);
        let hash_key = config.hash_key;
        let mut actions = VecDeque::new();
        for index in 0..config.register_addresses.len() {
            actions.push_back(Action::ConnectRegister { index });
        }
        GatewayCore {
            registers: vec![RegisterState::Connecting; config.register_addresses.len()],
            register_input: (0..config.register_addresses.len())
                .map(|_| RegisterInput::new())
                .collect(),
            register_outages: vec![RegisterOutage::default(); config.register_addresses.len()],
            jitter: SplitMix64(config.jitter_seed),
            drop_log: DropLog::new("gateway", DROP_LOG_INTERVAL),
            router: Router::new(config.routing),
            config,
            started: now,
            clients: ClientTable::with_hash_key(hash_key),
            closing_clients: HashSet::default(),
            ids: IdAllocator::default(),
            links: HashMap::default(),
            next_link: 0,
            heartbeat_at,
            worker_ping_at,
            handshake_deadlines: VecDeque::new(),
            actions,
            stats: GatewayStats::default(),
            events: Vec::new(),
            scratch: BytesMut::new(),
            client_out: BytesMut::new(),
            recipients: Vec::new(),
            codec: SharedCodec::default(),
            deflate_buf: Vec::new(),
            shutting_down: false,
            pacing: Pacing::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Drop and error counters.
    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Number of open links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// The registered (authorised) workers in tie order: `<peer ip>:<worker_key>` and
    /// their link. Cheap (no copy), unlike [`GatewayCore::snapshot`].
    pub fn routes(&self) -> &[RouteEntry] {
        self.router.entries()
    }

    /// Bytes queued and not yet written: `(to clients, to links)`. Walks every connection
    /// (for a metrics scrape once a second, not for the hot path).
    #[must_use]
    pub fn queued_bytes(&self) -> (usize, usize) {
        let clients = self
            .clients
            .ids()
            .filter_map(|id| self.clients.get(id))
            .map(|c| c.pending + c.before_handshake.len())
            .sum();
        let links = self.links.values().map(|l| l.pending).sum();
        (clients, links)
    }

    /// Sets the connection id counter (the original's `_connectionIdRecorder`), for
    /// tests of the allocator's wrap-around.
    pub fn set_connection_id_recorder(&mut self, recorder: u32) {
        self.ids.recorder = recorder;
    }

    // ---------------------------------------------------------------- outputs

    /// The next action for the driver; drain until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.shutting_down {
            return None;
        }
        let registers = self.registers.iter().filter_map(|r| match r {
            RegisterState::Connected { ping_at } => *ping_at,
            RegisterState::Waiting { at } => Some(*at),
            RegisterState::Connecting => None,
        });
        let handshake = self.handshake_deadlines.front().map(|(at, _, _)| *at);
        let drops = self.drop_log.poll_timeout();
        let pace = self.pace_poll_timeout();
        [
            self.heartbeat_at,
            self.worker_ping_at,
            handshake,
            drops,
            pace,
        ]
        .into_iter()
        .flatten()
        .chain(registers)
        .min()
    }

    // ---------------------------------------------------------------- clients

    /// A client connected from `peer`: allocates its connection id and sends ON_CONNECT
    /// (before any websocket handshake, spec 2.1). With no worker registered the client
    /// is destroyed at once (a `CloseClient` follows, spec 5.2).
    pub fn handle_client_connected(
        &mut self,
        now: Duration,
        peer: SocketAddr,
    ) -> Result<ConnectionId, Refused> {
        self.pace_clock(now);
        // A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`; they are IPv4
        // clients (client_ip, REMOTE_ADDR), not IPv6 ones with client_ip 0.
        let peer = match peer {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
                None => peer,
            },
            SocketAddr::V4(_) => peer,
        };
        if self.clients.len() + self.closing_clients.len() >= self.config.clients_max {
            return Err(Refused::ClientsMax);
        }
        let (clients, closing) = (&self.clients, &self.closing_clients);
        let id = self
            .ids
            .allocate(|id| clients.contains(id) || closing.contains(&id))
            .ok_or(Refused::NoConnectionId)?;
        let decoder = self
            .config
            .protocol
            .decoder_with(self.config.package_size_max as u32, self.config.compression);
        let needs_handshake = !decoder.is_ready();
        self.clients.insert(id, peer, decoder);
        if needs_handshake && !self.config.handshake_timeout.is_zero() {
            let seq = self.clients.get_mut(id).map_or(0, |c| c.seq);
            let at = now + self.config.handshake_timeout;
            debug_assert!(self
                .handshake_deadlines
                .back()
                .is_none_or(|(last, _, _)| *last <= at));
            self.handshake_deadlines.push_back((at, id, seq));
        }
        self.forward_or_destroy(
            now,
            id,
            Command::OnConnect,
            Bytes::new(),
            FLAG_BODY_IS_SCALAR,
        );
        Ok(ConnectionId(id))
    }

    /// Bytes read from a client.
    pub fn handle_client_bytes(&mut self, now: Duration, id: ConnectionId, bytes: &[u8]) {
        self.pace_clock(now);
        let Some(client) = self.clients.get_mut(id.0) else {
            return;
        };
        self.stats.client_bytes_in += bytes.len() as u64;
        let mut input = std::mem::take(&mut client.input);
        let mut events = std::mem::take(&mut self.events);
        let (mut buf, from_scratch) = Self::read_buffer(&mut self.scratch, &mut input);
        buf.extend_from_slice(bytes);
        if let Some(client) = self.clients.get_mut(id.0) {
            let mut cx = InflateCx {
                shared: &mut self.codec,
                conn: &mut client.deflate,
            };
            client
                .decoder
                .decode_with(&mut buf, &mut cx, &mut |e| events.push(e));
        }
        Self::keep_leftover(&mut self.scratch, buf, from_scratch, &mut input);
        if let Some(client) = self.clients.get_mut(id.0) {
            client.input = input;
        }
        for event in events.drain(..) {
            if !self.clients.contains(id.0) {
                break;
            }
            self.on_client_event(now, id.0, event);
        }
        self.events = events;
    }

    fn on_client_event(&mut self, now: Duration, id: u32, event: PublicEvent) {
        match event {
            PublicEvent::Handshake { request, response } => {
                let Some(peer) = self.clients.get(id).map(|c| c.peer) else {
                    return;
                };
                let data = request.connect_data(peer, self.config.gateway_port);
                let body = Bytes::from(wire::serialize(&data));
                if !self.forward_or_destroy(now, id, Command::OnWebsocketConnect, body, 0) {
                    return;
                }
                self.write_client(id, response);
                // Queued messages go out in one write, as workerman's `tmpWsData`.
                let queued = self
                    .clients
                    .get_mut(id)
                    .map(|c| std::mem::take(&mut c.before_handshake))
                    .unwrap_or_default();
                if !queued.is_empty() {
                    self.write_client(id, queued.freeze());
                }
            }
            PublicEvent::Message { data, binary } => {
                self.stats.client_messages_in += 1;
                if let Some(client) = self.clients.get_mut(id) {
                    client.ping_count = -1;
                }
                let flag = FLAG_BODY_IS_SCALAR | if binary { FLAG_BINARY } else { 0 };
                self.forward_or_destroy(now, id, Command::OnMessage, data, flag);
            }
            PublicEvent::Write(bytes) => self.write_client(id, bytes),
            PublicEvent::Close(reason) => {
                let reason = if reason.is_clean() {
                    CloseReason::ProtocolClose
                } else {
                    tracing::info!(connection_id = id, %reason, "client protocol error");
                    CloseReason::ProtocolError
                };
                self.close_client(id, true, reason);
            }
        }
    }

    /// The gateway is stopping (SIGTERM): every client is closed after its queued output,
    /// websocket clients with a close frame `1001 going away` first; the workers get each
    /// client's ON_CLOSE (as the original's connections close on stop), then their links are
    /// closed after flushing; timers and register reconnects stop. Call it once the driver
    /// accepts no more connections; the driver then waits (bounded) for the closes to finish.
    pub fn handle_shutdown(&mut self, now: Duration) {
        self.pace_clock(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let ids: Vec<u32> = self.clients.ids().collect();
        for id in ids {
            let going_away = self.clients.get(id).is_some_and(|c| {
                c.decoder.protocol() == PublicProtocol::Websocket
                    && c.decoder.is_ready()
                    && !c.decoder.is_closed()
            });
            if going_away {
                let mut frame = BytesMut::with_capacity(4);
                websocket::encode_close(websocket::CLOSE_GOING_AWAY, &mut frame);
                self.write_client(id, frame.freeze());
            }
            self.close_client(id, true, CloseReason::Shutdown);
        }
        let mut links: Vec<u64> = self.links.keys().copied().collect();
        links.sort_unstable();
        for id in links {
            self.close_link(LinkId(id), CloseReason::Shutdown);
        }
    }

    /// The driver wrote `bytes` of a client's output to its socket.
    pub fn handle_client_flushed(&mut self, now: Duration, id: ConnectionId, bytes: usize) {
        self.pace_clock(now);
        self.stats.client_bytes_out += bytes as u64;
        if let Some(client) = self.clients.get_mut(id.0) {
            client.pending = client.pending.saturating_sub(bytes);
            let pending = client.pending;
            self.pace_flushed(id.0, pending);
        }
    }

    /// A client's socket is gone (peer hang-up, error, or the end of a `CloseClient`).
    pub fn handle_client_closed(&mut self, now: Duration, id: ConnectionId) {
        self.pace_clock(now);
        if self.closing_clients.remove(&id.0) {
            return;
        }
        self.forget_client(id.0);
    }

    /// Closes a client: tells the driver, then forgets it (ON_CLOSE included).
    pub(super) fn close_client(&mut self, id: u32, after_flush: bool, reason: CloseReason) {
        if !self.clients.contains(id) {
            return;
        }
        self.closing_clients.insert(id);
        self.actions.push_back(Action::CloseClient {
            id: ConnectionId(id),
            after_flush,
            reason,
        });
        self.forget_client(id);
    }

    /// The original's `onClientClose`: ON_CLOSE to the (possibly re-chosen) worker,
    /// then the least-connections count of the client's key, then the indexes.
    fn forget_client(&mut self, id: u32) {
        let Some(mut client) = self.clients.remove(id) else {
            return;
        };
        self.pace_client_gone(id);
        let session = client.session.clone();
        self.send_event(
            id,
            client.peer,
            session,
            &mut client.worker_key,
            Command::OnClose,
            Bytes::new(),
            FLAG_BODY_IS_SCALAR,
        );
        if let Some(key) = &client.worker_key {
            self.router.release(key);
        }
    }

    /// Forwards an event of a connected client; with no worker, destroys the client
    /// (spec 5.2). Returns whether the client is still connected.
    fn forward_or_destroy(
        &mut self,
        now: Duration,
        id: u32,
        cmd: Command,
        body: Bytes,
        flag: u8,
    ) -> bool {
        if self.router.is_empty() {
            self.stats.clients_without_worker += 1;
            if now.saturating_sub(self.started) >= NO_WORKER_QUIET_PERIOD {
                tracing::error!(
                    connection_id = id,
                    "no business worker connected: client destroyed"
                );
            }
            self.close_client(id, false, CloseReason::NoWorker);
            return false;
        }
        let Some(client) = self.clients.get_mut(id) else {
            return false;
        };
        let (peer, session) = (client.peer, client.session.clone());
        let mut key = client.worker_key.take();
        self.send_event(id, peer, session, &mut key, cmd, body, flag);
        if let Some(client) = self.clients.get_mut(id) {
            client.worker_key = key;
        }
        true
    }

    /// Sends one event frame for `client` to its sticky worker, choosing one when it
    /// has none or its key is no longer registered. Does nothing without workers.
    #[allow(clippy::too_many_arguments)]
    fn send_event(
        &mut self,
        id: u32,
        peer: SocketAddr,
        session: Bytes,
        worker_key: &mut Option<Bytes>,
        cmd: Command,
        body: Bytes,
        flag: u8,
    ) {
        if self.router.is_empty() {
            return;
        }
        let registered = worker_key
            .as_ref()
            .is_some_and(|k| self.router.link_for(k).is_some());
        if !registered {
            *worker_key = self.router.choose();
        }
        let Some(link) = worker_key.as_ref().and_then(|k| self.router.link_for(k)) else {
            return;
        };
        let (client_ip, client_port) = match peer {
            SocketAddr::V4(v4) => (*v4.ip(), v4.port()),
            SocketAddr::V6(v6) => (Ipv4Addr::UNSPECIFIED, v6.port()),
        };
        let header = Header {
            cmd,
            local_ip: self.config.lan_ip,
            local_port: self.config.lan_port,
            client_ip,
            client_port,
            connection_id: id,
            flag,
            gateway_port: self.config.gateway_port,
        };
        let Some(l) = self.links.get_mut(&link.0) else {
            return;
        };
        let len = HEADER_LEN + session.len() + body.len();
        if l.out.capacity() - l.out.len() < len {
            l.out.reserve(len.max(LINK_OUT_BLOCK));
        }
        frame::encode_frame(&mut l.out, &header, &session, &body);
        let bytes = l.out.split().freeze();
        self.transmit_link(link, bytes);
    }

    /// Writes protocol-level bytes (handshake response, pong, close reply) to a client.
    fn write_client(&mut self, id: u32, bytes: Bytes) {
        if let Some(client) = self.clients.get_mut(id) {
            client.pending += bytes.len();
            self.actions.push_back(Action::Transmit {
                to: Target::Client(ConnectionId(id)),
                bytes,
            });
        }
    }

    /// Delivers one encoded message to a client, queueing it before a websocket
    /// handshake and dropping it at the client's bound. A client that negotiated
    /// permessage-deflate gets the compressed form (see [`Outgoing`]) when the message is
    /// at least `compression_min_size` bytes.
    pub(super) fn deliver(&mut self, id: u32, msg: &mut Outgoing) {
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        let bytes = &msg.plain;
        if !client.decoder.is_ready() {
            // Raw (flag 0x02) messages wait too: written before the 101 they would break
            // the client's handshake (the original writes them at once).
            if client.before_handshake.len() >= self.config.pending_before_handshake_max {
                self.stats.client_messages_dropped += 1;
                self.drop_log
                    .record("client_queue_before_handshake", u64::from(id), bytes.len());
                return;
            }
            client.before_handshake.extend_from_slice(bytes);
            return;
        }
        if client.pending >= self.config.client_pending_max {
            let pending = client.pending;
            self.stats.client_messages_dropped += 1;
            self.drop_log
                .record("client_send_buffer", u64::from(id), bytes.len());
            self.pace_offered(id, pending);
            return;
        }
        let negotiated = client.decoder.negotiated();
        let bytes = if msg.compressible
            && negotiated.is_on()
            && msg.payload.len() >= self.config.compression_min_size
        {
            if negotiated.server_no_context_takeover() {
                if negotiated.fresh_stream_fits(msg.payload.len()) {
                    self.fresh_frame(msg)
                } else {
                    msg.plain.clone()
                }
            } else {
                // Compressed only once the message is sure to go out: a dropped message
                // would leave the client's window behind ours.
                let deflater = client
                    .deflate
                    .get_or_insert_with(Box::default)
                    .deflater
                    .get_or_insert_with(Deflater::default);
                self.deflate_buf.clear();
                deflater.deflate(&msg.payload, false, &mut self.deflate_buf);
                let mut frame = BytesMut::with_capacity(self.deflate_buf.len() + 10);
                websocket::encode_deflated(&self.deflate_buf, msg.binary, &mut frame);
                frame.freeze()
            }
        } else {
            msg.plain.clone()
        };
        let Some(client) = self.clients.get_mut(id) else {
            return;
        };
        client.pending += bytes.len();
        let pending = client.pending;
        self.stats.client_messages_out += 1;
        self.actions.push_back(Action::Transmit {
            to: Target::Client(ConnectionId(id)),
            bytes,
        });
        self.pace_offered(id, pending);
    }

    /// The message compressed as a fresh stream, made once per message with the shared
    /// compressor; the plain frame when compression does not make it smaller.
    fn fresh_frame(&mut self, msg: &mut Outgoing) -> Bytes {
        if let Some(frame) = &msg.fresh {
            return frame.clone();
        }
        self.deflate_buf.clear();
        self.codec
            .deflate_fresh(&msg.payload, &mut self.deflate_buf);
        let frame = if self.deflate_buf.len() < msg.payload.len() {
            let mut frame = BytesMut::with_capacity(self.deflate_buf.len() + 10);
            websocket::encode_deflated(&self.deflate_buf, msg.binary, &mut frame);
            frame.freeze()
        } else {
            msg.plain.clone()
        };
        msg.fresh = Some(frame.clone());
        frame
    }

    /// Whether a message of `len` bytes for client `id` may take the uncompressed fast
    /// path (the client did not negotiate compression, or the message is too short).
    pub(super) fn sent_plain(&self, id: u32, len: usize) -> bool {
        len < self.config.compression_min_size
            || self
                .clients
                .get(id)
                .is_none_or(|c| !c.decoder.negotiated().is_on())
    }

    /// Encodes a message for client `id` alone into the shared client arena, when the
    /// client has no unflushed output and is past its handshake; `None` otherwise (the
    /// caller then encodes into a buffer of the message's own).
    ///
    /// Why only then: a frame cut from the arena keeps its whole block alive until it is
    /// written. A client whose output is flushed gets its frame written at once; one that
    /// has output waiting (a slow reader) gets buffers of its own, so it pins at most one
    /// block however long it stalls. In steady traffic the block is reclaimed in place and
    /// a reply costs no allocation.
    pub(super) fn encode_for_one(
        &mut self,
        id: u32,
        payload: &[u8],
        binary: bool,
    ) -> Option<Bytes> {
        let client = self.clients.get(id)?;
        if client.pending != 0 || !client.decoder.is_ready() {
            return None;
        }
        let len = payload.len() + 14;
        if len > CLIENT_OUT_BLOCK {
            return None;
        }
        if self.client_out.capacity() - self.client_out.len() < len {
            self.client_out.reserve(CLIENT_OUT_BLOCK);
        }
        if self
            .config
            .protocol
            .encode(payload, binary, &mut self.client_out)
            .is_err()
        {
            self.client_out.clear();
            return None;
        }
        Some(self.client_out.split().freeze())
    }

    /// Encodes `payload` with the public protocol; `None` when the frame protocol's
    /// length cannot hold it.
    pub(super) fn encode_for_clients(&self, payload: &[u8], binary: bool) -> Option<Bytes> {
        let mut out = BytesMut::with_capacity(payload.len() + 10);
        self.config
            .protocol
            .encode(payload, binary, &mut out)
            .ok()?;
        Some(out.freeze())
    }

    // ---------------------------------------------------------------- links

    /// A worker or API caller connected to the internal port.
    pub fn handle_link_connected(
        &mut self,
        now: Duration,
        peer: SocketAddr,
    ) -> Result<LinkId, Refused> {
        self.pace_clock(now);
        if self.links.len() >= self.config.links_max {
            return Err(Refused::LinksMax);
        }
        self.next_link += 1;
        let id = self.next_link;
        self.links.insert(
            id,
            Link {
                peer,
                input: BytesMut::new(),
                authorised: self.config.secret_key.is_empty(),
                key: None,
                pending: 0,
                closing: false,
                out: BytesMut::new(),
            },
        );
        Ok(LinkId(id))
    }

    /// Bytes read from a link: every complete frame is executed in order.
    pub fn handle_link_bytes(&mut self, now: Duration, id: LinkId, bytes: &[u8]) {
        self.pace_clock(now);
        let Some(link) = self.links.get_mut(&id.0) else {
            return;
        };
        self.stats.link_bytes_in += bytes.len() as u64;
        if link.closing {
            return;
        }
        let (mut buf, from_scratch) = Self::read_buffer(&mut self.scratch, &mut link.input);
        buf.extend_from_slice(bytes);
        // Messages to clients from here on come from this link (pacing).
        self.pacing.feeding = Some(id);
        loop {
            match wire::decode_frame(&mut buf, self.config.package_size_max as u32) {
                Ok(Some(frame)) => self.handle_frame(now, id, frame),
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(link = id.0, %error, "malformed frame: link closed");
                    self.close_link(id, CloseReason::BadFrame);
                    break;
                }
            }
            if self.links.get(&id.0).is_none_or(|l| l.closing) {
                break;
            }
        }
        self.pacing.feeding = None;
        let mut unused = BytesMut::new();
        let leftover = match self.links.get_mut(&id.0) {
            Some(link) if !link.closing => &mut link.input,
            _ => &mut unused,
        };
        Self::keep_leftover(&mut self.scratch, buf, from_scratch, leftover);
    }

    /// The buffer to decode a read in: the connection's own when it holds a partial
    /// unit, else the shared scratch buffer (idle connections keep no buffer).
    fn read_buffer(scratch: &mut BytesMut, own: &mut BytesMut) -> (BytesMut, bool) {
        if own.is_empty() {
            (std::mem::take(scratch), true)
        } else {
            (std::mem::take(own), false)
        }
    }

    /// Puts what is left of a read back: a partial unit in scratch is copied out (right
    /// sized) so the scratch buffer stays shared.
    fn keep_leftover(
        scratch: &mut BytesMut,
        mut buf: BytesMut,
        from_scratch: bool,
        own: &mut BytesMut,
    ) {
        if from_scratch {
            if !buf.is_empty() {
                *own = BytesMut::from(&buf[..]);
            }
            buf.clear();
            *scratch = buf;
        } else {
            *own = buf;
        }
    }

    /// The driver wrote `bytes` of a link's output to its socket.
    pub fn handle_link_flushed(&mut self, now: Duration, id: LinkId, bytes: usize) {
        self.pace_clock(now);
        self.stats.link_bytes_out += bytes as u64;
        if let Some(link) = self.links.get_mut(&id.0) {
            link.pending = link.pending.saturating_sub(bytes);
        }
    }

    /// A link's socket is gone: its worker key leaves routing if it still maps to it.
    pub fn handle_link_closed(&mut self, now: Duration, id: LinkId) {
        // Also called by `close_link` while another link's frames run: that link still
        // feeds the clients, so only the closed one stops feeding.
        self.pacing.clock = self.pacing.clock.max(now);
        if self.pacing.feeding == Some(id) {
            self.pacing.feeding = None;
        }
        self.pace_link_gone(id);
        if let Some(link) = self.links.remove(&id.0) {
            if let Some(key) = &link.key {
                self.router.unregister(key, id);
            }
        }
    }

    /// Closes a link gracefully. Like workerman, a link with no unflushed output closes
    /// at once (it leaves routing now); one with output left is closed when the driver
    /// reports it, which decides the tie position of a re-registered worker key (spec
    /// 5.1, `routing/reregister_*`).
    pub(super) fn close_link(&mut self, id: LinkId, reason: CloseReason) {
        let Some(link) = self.links.get_mut(&id.0) else {
            return;
        };
        if link.closing {
            return;
        }
        link.closing = true;
        link.input = BytesMut::new();
        let (pending, key) = (link.pending, link.key.clone());
        self.pace_link_gone(id);
        self.actions.push_back(Action::CloseLink {
            id,
            after_flush: true,
            reason,
        });
        if pending == 0 {
            self.handle_link_closed(self.pacing.clock, id);
        } else if let Some(key) = key.filter(|_| reason != CloseReason::WorkerReplaced) {
            // A worker closed for its own fault leaves routing now, so its clients move on
            // at their next event instead of losing events while it flushes. (A replaced
            // worker's key already belongs to the new link, in the old one's place.)
            self.router.unregister(&key, id);
        }
    }

    /// Queues a reply record for a link. A reply is never dropped while the link stays
    /// open: the peer matches replies to its requests by order, so one missing reply would
    /// hand every later one to the wrong call. A reply whose payload exceeds
    /// `reply_size_max`, or one that would take the link's pending output past
    /// `link_pending_max` plus one largest reply record (the headroom lets a legitimate big
    /// reply through behind a full window of events), closes the link instead (after
    /// flushing what was queued before; counted in `link_frames_dropped`, logged at
    /// error): the peer sees the close and fails its pending calls.
    pub(super) fn transmit_reply(&mut self, id: LinkId, bytes: Bytes) {
        let Some(link) = self.links.get(&id.0) else {
            return;
        };
        if link.closing {
            // Nothing more goes out on a closing link: no reply can be misaligned.
            // Defensive: `handle_link_bytes` stops at a closing link and the commands that
            // close one send no reply, so no input we found reaches this (the mutation run
            // in sim/README.md); counted, so that it would not be silent if one did
            // (`a_reply_to_a_closing_link_is_dropped_and_counted` drives it directly).
            self.stats.link_frames_dropped += 1;
            return;
        }
        let payload = bytes
            .len()
            .saturating_sub(crate::protocol::frame::REPLY_PREFIX_LEN);
        let record_max = self
            .config
            .reply_size_max
            .saturating_add(crate::protocol::frame::REPLY_PREFIX_LEN);
        let limit = self.config.link_pending_max.saturating_add(record_max);
        let overflow = if payload > self.config.reply_size_max {
            Some("reply larger than reply_size_max")
        } else if link.pending.saturating_add(bytes.len()) > limit {
            Some("link send buffer full")
        } else {
            None
        };
        if let Some(what) = overflow {
            self.stats.link_frames_dropped += 1;
            tracing::error!(
                link = id.0,
                pending = link.pending,
                len = bytes.len(),
                what,
                "reply cannot be queued: link closed"
            );
            self.close_link(id, CloseReason::ReplyOverflow);
            return;
        }
        if let Some(link) = self.links.get_mut(&id.0) {
            link.pending += bytes.len();
        }
        self.actions.push_back(Action::Transmit {
            to: Target::Link(id),
            bytes,
        });
    }

    /// Queues an event (or ping) frame for a link, dropping it at `link_pending_max`
    /// (counted in `link_frames_dropped`, logged), as the original does. Events are not
    /// matched by order, so a dropped one misaligns nothing; replies go through
    /// [`GatewayCore::transmit_reply`].
    pub(super) fn transmit_link(&mut self, id: LinkId, bytes: Bytes) {
        let Some(link) = self.links.get_mut(&id.0) else {
            return;
        };
        if link.closing {
            self.stats.link_frames_dropped += 1;
            return;
        }
        if link.pending >= self.config.link_pending_max {
            self.stats.link_frames_dropped += 1;
            self.drop_log.record("worker_link_queue", id.0, bytes.len());
            return;
        }
        link.pending += bytes.len();
        self.actions.push_back(Action::Transmit {
            to: Target::Link(id),
            bytes,
        });
    }

    // ---------------------------------------------------------------- register

    /// The connection to register `index` is up: announce this gateway (spec 8).
    pub fn handle_register_connected(&mut self, now: Duration, index: usize) {
        let Some(address) = self.config.register_addresses.get(index) else {
            return;
        };
        let ping_at = (!address.starts_with("127.0.0.1")).then(|| now + LINK_PING_INTERVAL);
        // Hand-concatenated like the original (spaces after the commas), quirk 16.
        let mut line = BytesMut::new();
        ToRegister::GatewayConnect {
            address: self.config.lan_address(),
            secret_key: String::from_utf8_lossy(&self.config.secret_key).into_owned(),
        }
        .encode(&mut line);
        let line = line.freeze();
        self.registers[index] = RegisterState::Connected { ping_at };
        self.register_input[index] = RegisterInput::new();
        if let Some(outage) = self.register_outages.get_mut(index) {
            if let Some(since) = outage.down_since.take() {
                if outage.warned_in_outage {
                    tracing::info!(
                        register = %address,
                        down_for = ?now.saturating_sub(since),
                        attempts = outage.attempts,
                        "register reachable again"
                    );
                }
            }
            outage.attempts = 0;
            outage.warned_in_outage = false;
            outage.connected_at = Some(now);
        }
        self.actions.push_back(Action::Transmit {
            to: Target::Register(index),
            bytes: line,
        });
    }

    /// The connection to register `index` closed (or could not be made): retry within
    /// `register_retry_interval` (jittered), warning at a bounded rate.
    pub fn handle_register_closed(&mut self, now: Duration, index: usize) {
        let interval = self.config.register_retry_interval;
        let half = interval / 2;
        let span = u64::try_from((interval - half).as_micros()).unwrap_or(u64::MAX);
        let delay = half + Duration::from_micros(self.jitter.below(span.saturating_add(1)));
        let was_connected = matches!(
            self.registers.get(index),
            Some(RegisterState::Connected { .. })
        );
        if let Some(state) = self.registers.get_mut(index) {
            *state = RegisterState::Waiting { at: now + delay };
        }
        let warn_interval = self.config.register_warn_interval;
        if let (Some(outage), Some(address)) = (
            self.register_outages.get_mut(index),
            self.config.register_addresses.get(index),
        ) {
            let stable = outage
                .connected_at
                .take()
                .is_some_and(|t| now.saturating_sub(t) >= REGISTER_STABLE_AFTER);
            if outage.down_since.is_none() && stable {
                // Lost after a stable connection: a new outage, told at once (the rate
                // limit is for flapping and for long outages).
                outage.warned_at = None;
            }
            let since = *outage.down_since.get_or_insert(now);
            outage.attempts = outage.attempts.saturating_add(1);
            if !self.shutting_down
                && outage
                    .warned_at
                    .is_none_or(|t| now.saturating_sub(t) >= warn_interval)
            {
                outage.warned_at = Some(now);
                outage.warned_in_outage = true;
                tracing::warn!(
                    register = %address,
                    lost = was_connected,
                    down_for = ?now.saturating_sub(since),
                    attempts = outage.attempts,
                    "cannot reach the register; retrying every {interval:?} at most"
                );
            }
        }
        if let Some(input) = self.register_input.get_mut(index) {
            *input = RegisterInput::new();
        }
    }

    /// Bytes read from register `index`, split or merged at will: complete lines are
    /// handled in order. A line over [`FROM_REGISTER_LINE_MAX`] (`\n` included) asks the
    /// driver to close the connection (`CloseRegister`; its close report then schedules
    /// the reconnect) and the rest of its input is ignored.
    pub fn handle_register_bytes(&mut self, now: Duration, index: usize, bytes: &[u8]) {
        let Some(input) = self.register_input.get_mut(index) else {
            return;
        };
        if input.closing {
            return;
        }
        input.buf.extend_from_slice(bytes);
        loop {
            let input = &mut self.register_input[index];
            match input.lines.decode(&mut input.buf) {
                Ok(Some(line)) => self.handle_register_line(now, index, &line),
                Ok(None) => return,
                Err(LineDecodeError::TooLong { line_length_max }) => {
                    tracing::warn!(
                        register = index,
                        line_length_max,
                        "register line too long; closing"
                    );
                    input.closing = true;
                    input.buf = BytesMut::new();
                    self.actions.push_back(Action::CloseRegister {
                        index,
                        reason: CloseReason::RegisterLineTooLong,
                    });
                    return;
                }
            }
        }
    }

    /// A line from register `index`. Registers send gateways nothing meaningful; the
    /// line is ignored.
    fn handle_register_line(&mut self, _now: Duration, index: usize, line: &[u8]) {
        tracing::debug!(register = index, len = line.len(), "register line ignored");
    }

    // ---------------------------------------------------------------- timers

    /// Runs every timer due at `now`; spurious calls do nothing.
    ///
    /// A late call runs each periodic timer once and skips the ticks it missed, like
    /// workerman's timers: a stalled driver must not destroy every silent client in a
    /// burst of catch-up heartbeat ticks.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.pace_clock(now);
        if self.shutting_down {
            return;
        }
        self.expire_handshakes(now);
        self.pace_timeout(now);
        self.drop_log.handle_timeout(now);
        if let Some(at) = self.heartbeat_at.filter(|at| *at <= now) {
            self.heartbeat_tick();
            self.heartbeat_at = self
                .config
                .heartbeat_period()
                .map(|p| next_tick(at, p, now));
        }
        if let Some(at) = self.worker_ping_at.filter(|at| *at <= now) {
            self.ping_workers();
            self.worker_ping_at = Some(next_tick(at, LINK_PING_INTERVAL, now));
        }
        for index in 0..self.registers.len() {
            match self.registers[index] {
                RegisterState::Connected { ping_at: Some(at) } if at <= now => {
                    self.registers[index] = RegisterState::Connected {
                        ping_at: Some(next_tick(at, LINK_PING_INTERVAL, now)),
                    };
                    let mut line = BytesMut::new();
                    ToRegister::Ping.encode(&mut line);
                    self.actions.push_back(Action::Transmit {
                        to: Target::Register(index),
                        bytes: line.freeze(),
                    });
                }
                RegisterState::Waiting { at } if at <= now => {
                    self.registers[index] = RegisterState::Connecting;
                    self.actions.push_back(Action::ConnectRegister { index });
                }
                _ => {}
            }
        }
    }

    /// Destroys websocket clients whose handshake deadline passed before they completed it.
    fn expire_handshakes(&mut self, now: Duration) {
        while let Some(&(at, id, seq)) = self.handshake_deadlines.front() {
            if at > now {
                break;
            }
            self.handshake_deadlines.pop_front();
            let Some(client) = self.clients.get_mut(id) else {
                continue;
            };
            if client.seq != seq || client.decoder.is_ready() {
                continue;
            }
            tracing::info!(connection_id = id, peer = %client.peer, "websocket handshake timed out");
            self.close_client(id, false, CloseReason::HandshakeTimeout);
        }
    }

    /// One tick of the client heartbeat (spec 5.4), clients in accept order.
    fn heartbeat_tick(&mut self) {
        let limit = self.config.ping_not_response_limit as i64;
        let mut ping = if self.config.ping_data.is_empty() {
            None
        } else {
            let payload = self.config.ping_data.clone();
            self.encode_for_clients(&payload, false)
                .map(|plain| Outgoing::message(plain, payload, false))
        };
        let ids: Vec<u32> = self.clients.ids().collect();
        for id in ids {
            let Some(client) = self.clients.get_mut(id) else {
                continue;
            };
            if limit > 0 && i64::from(client.ping_count) >= limit * 2 {
                self.close_client(id, false, CloseReason::HeartbeatTimeout);
                continue;
            }
            client.ping_count = client.ping_count.saturating_add(1);
            let count = client.ping_count;
            if let Some(ping) = &mut ping {
                if count == 0 || (limit > 0 && count % 2 == 1) {
                    continue;
                }
                self.deliver(id, ping);
            }
        }
    }

    /// CMD_PING to every registered worker (spec 2.1), one shared buffer.
    fn ping_workers(&mut self) {
        let mut header = wire::empty_header(Command::Ping);
        header.flag = FLAG_BODY_IS_SCALAR;
        let ping = wire::encode_frame(&Frame {
            header,
            ext_data: Bytes::new(),
            body: Bytes::new(),
        });
        let links: Vec<LinkId> = self.router.entries().iter().map(|e| e.link).collect();
        for link in links {
            self.transmit_link(link, ping.clone());
        }
    }

    // ---------------------------------------------------------------- views

    /// The state in the original's orders.
    pub fn snapshot(&self) -> GatewaySnapshot {
        let clients = self
            .clients
            .ids()
            .map(|id| {
                let c = self.clients.get(id).expect("listed client exists");
                ClientSnapshot {
                    connection_id: id,
                    session: c.session.clone(),
                    uid: c.uid.as_ref().map(|u| u.name.clone()),
                    groups: c
                        .groups
                        .as_ref()
                        .map(|g| g.iter().map(|m| m.name.clone()).collect()),
                    worker_key: c.worker_key.clone(),
                    ping_count: c.ping_count,
                }
            })
            .collect();
        let mut uids: Vec<Bytes> = self.clients.uid_names().cloned().collect();
        uids.sort();
        let uid_index = uids
            .into_iter()
            .map(|u| {
                let members = self.clients.uid_members(&u).collect();
                (u, members)
            })
            .collect();
        let group_index = self
            .clients
            .group_names()
            .map(|g| (g.clone(), self.clients.group_members(g).collect()))
            .collect();
        GatewaySnapshot {
            clients,
            uid_index,
            group_index,
            workers: self.router.entries().to_vec(),
        }
    }

    /// Panics when internal structures disagree (tests and simulation call it after
    /// every input).
    pub fn check_invariants(&self) {
        self.clients.check_invariants();
        self.pace_check_invariants();
        for id in &self.closing_clients {
            assert!(
                !self.clients.contains(*id),
                "closing client {id} still listed"
            );
        }
        for entry in self.router.entries() {
            let link = self
                .links
                .get(&entry.link.0)
                .unwrap_or_else(|| panic!("routed link {:?} missing", entry.link));
            assert_eq!(link.key.as_ref(), Some(&entry.key), "routed link's key");
        }
        let mut keys = self
            .router
            .entries()
            .iter()
            .map(|e| &e.key)
            .collect::<Vec<_>>();
        keys.sort();
        keys.dedup();
        assert_eq!(
            keys.len(),
            self.router.entries().len(),
            "duplicate worker key"
        );
        assert!(self.clients.len() + self.closing_clients.len() <= self.config.clients_max);
        assert!(self.links.len() <= self.config.links_max);
        assert_eq!(self.register_input.len(), self.registers.len());
        for (index, input) in self.register_input.iter().enumerate() {
            assert!(
                input.buf.len() < FROM_REGISTER_LINE_MAX,
                "register {index} holds a partial line of {} bytes",
                input.buf.len()
            );
            assert!(
                !input.closing || input.buf.is_empty(),
                "closing register {index} keeps input"
            );
        }
    }

    /// The peer ip text of a link, as the original's `getRemoteIp()`.
    pub(super) fn link_ip(&self, id: LinkId) -> Option<IpAddr> {
        self.links.get(&id.0).map(|l| l.peer.ip())
    }
}

/// The tick after `at` on the `period` grid that is still ahead of `now`.
fn next_tick(at: Duration, period: Duration, now: Duration) -> Duration {
    let next = at + period;
    if next > now || period.is_zero() {
        return next;
    }
    let missed = (now - at).as_nanos() / period.as_nanos();
    u32::try_from(missed + 1)
        .ok()
        .and_then(|n| period.checked_mul(n))
        .map_or(now + period, |d| at + d)
}
