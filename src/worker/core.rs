//! The business worker's sans-IO core: register links, one link per gateway, client
//! events in, Gateway API calls out, query replies gathered.
//!
//! Shape (quinn-proto / str0m): inputs are `handle_*` methods taking `now` (a monotonic
//! [`Duration`] chosen by the driver), application commands are plain verbs
//! ([`WorkerCore::call`], [`WorkerCore::end_event`]), outputs are drained with
//! [`WorkerCore::poll_action`] after every input, and [`WorkerCore::poll_timeout`] says when
//! to call [`WorkerCore::handle_timeout`]. No sockets, no clock, no tokio.
//!
//! Links are named by [`GatewayLinkId`]s the core allocates when it asks for a connection
//! ([`Action::Connect`]); the driver reports `handle_connected`, `handle_bytes`,
//! `handle_written` and `handle_closed` for them.
//!
//! Behaviour, with the original's choices and where we differ:
//!
//! * **Register**: connect to every register address, send `worker_connect` with the
//!   secret on each (re)connection, ping every 25 s unless the address starts with
//!   `127.0.0.1`, reconnect after a close. *Difference*: the original retries a lost
//!   register every second; we retry at a steady `register_retry_interval` (500 ms) with
//!   jitter (each delay uniform in `[interval/2, interval]`, drawn from a generator seeded
//!   with [`WorkerConfig::seed`], never from a random source in the core), never backing
//!   off, so a worker rejoins within one interval of the register's return; while it
//!   cannot reach the register it warns once, then at most once per
//!   `register_warn_interval`, and says when the register is back. Each `broadcast_addresses` (a list or an
//!   object) replaces the list; new addresses are linked at once. *Difference*: an address
//!   missing from a broadcast is only forgotten after `address_removal_grace` while the
//!   register stays connected, so a register that shuts down (and broadcasts a shrinking
//!   list while its gateway links close) does not empty our list; while the register is
//!   away the last good list is kept.
//! * **Gateway links**: WORKER_CONNECT `{"worker_key":"<name>:<index>","secret_key":..}` is
//!   queued before the connection completes. After a close, an address still listed is
//!   retried after `reconnect_delay` (1 s like the original), doubling per failed attempt up
//!   to `reconnect_delay_max` (4 s), back to 1 s once a link stayed up for
//!   `link_stable_after`. Links to addresses dropped from the list are not closed (as the
//!   original). *Difference*: frames for a link that is still connecting are queued (the
//!   original drops them and returns false); an attempt not connected within
//!   `connect_timeout` is abandoned and retried like a close.
//! * **Queues**: each link has an output queue bounded by `link_queue_bytes_max` bytes (queued
//!   plus written-but-unconfirmed). *Difference*: the original drops silently at its
//!   buffer limit; we drop the new frame too but count it ([`WorkerStats`]), log the counts
//!   at most once per 10 s ([`crate::drop_log`]), make a
//!   bool-send return `false` and fail that gateway's part of a query at once.
//!   At most `link_window_bytes_max` bytes are handed to the driver before it confirms them with
//!   `handle_written`, so the bound holds end to end.
//! * **Queries** travel on the worker links (the original opens separate blocking
//!   connections): replies are matched in order per link and gathered. A query completes
//!   when every gateway answered, or failed (link closed, queue full, no link), or after
//!   `query_timeout`; it never blocks events or other calls. With missing gateways the
//!   result follows [`TimeoutPolicy`] (default: [`ApiError::Timeout`]) and
//!   [`CallDone::unanswered`] names them.
//! * **Suspect gateways** (*difference*; the original waits the whole timeout on every
//!   query, GatewayWorker issue #36): a gateway link is *suspect* when, for
//!   `suspect_after` (off in [`WorkerConfig::new`], 2 s in the BusinessWorker:
//!   [`SUSPECT_AFTER_DEFAULT`]), it has read nothing since the request of a reply it owes
//!   was all written, or it has bytes to write and has neither read nor written. Once
//!   a request is out, writes are no sign of life: a stopped gateway's kernel keeps
//!   taking them (megabytes of socket buffers), so a worker sending to its clients would
//!   otherwise wait the whole timeout on it; before, they are (a healthy gateway behind a
//!   backlog is still reading it). The query parts
//!   waiting on it fail at once, and later queries do not ask it at all (their result
//!   names it as missing, as after a timeout: [`TimeoutPolicy`]). Sends are still
//!   queued. The mark clears at the next byte read (or written, unless the request of
//!   the oldest reply owed is out); the replies it still owes are matched and
//!   discarded, so replies stay aligned.
//! * **Events and replies share a link**: a reply record is told from a frame only while
//!   a query is outstanding on that link, by its first word (< 28 cannot be a frame) or its
//!   fifth byte (a serialized value never starts with an event command byte). The one
//!   ambiguous case, a GET_SESSION reply of a raw session text (set verbatim by some
//!   GatewayClient) starting with byte 1, 3, 4, 201 or 205, cannot come from PHP senders.
//! * **Sessions** (spec 7.2): each event carries the session; the core remembers a CRC32
//!   of the last session text seen or written per client and, when an event brings a
//!   different text (another process changed it while ours may be in flight), reloads it
//!   with GET_SESSION on the same link before delivering the event (later events of that
//!   link wait behind it, at most `parked_events_max`; beyond, the reload is abandoned and
//!   they go out with the sessions they carried). [`WorkerCore::end_event`] writes a
//!   changed session back with SET_SESSION (empty text for null).
//! * **One event per client at a time**: a client's next event is held (with the events
//!   behind it on its link) until the business code ended the previous one, so its session
//!   check sees the previous event's write-back, as in the original's single-threaded
//!   process. Without this, a client answering a reply fast enough would bring the old
//!   session into its next event and lose the update. At most `parked_events_max` wait so;
//!   beyond, they go out as they are.
//! * **An event's effects are all-or-nothing** (*difference*: the original writes each call
//!   at once, so the sends of a handler that then throws still reach their clients). Between
//!   [`WorkerCore::begin_event`] and the event's end, the frames its calls produce (sends,
//!   uid/group/session commands, closes, and the session write-back at its end) are
//!   *staged* per link, not handed to the driver. [`WorkerCore::end_event`] commits them,
//!   in call order per link; [`WorkerCore::fail_event`] (the handler failed: a trap, out of
//!   fuel, memory or time) discards them, counted in [`WorkerStats::frames_rolled_back`] /
//!   [`WorkerStats::bytes_rolled_back`]: no gateway sees anything the failed event did.
//!   A query (a call that waits for gateway replies) first commits what the event staged
//!   before it, so that it observes it (joinGroup then getClientCountByGroup counts the
//!   join): effects before a query are delivered even if the event then fails. Nothing else
//!   commits early: a sleep or a long computation (the epoch-tick flush writes only
//!   committed bytes: earlier events' replies) keeps the running event's frames staged.
//!   Staged bytes count in their link's `link_queue_bytes_max` (with queued and unconfirmed
//!   bytes), so a commit never overflows it; a frame that would not fit is refused at once
//!   exactly like a frame at a full queue (dropped, counted in
//!   [`WorkerStats::frames_dropped`], a bool-send returns `false`), and the event goes on.
//!   One event runs at a time per core (the business code's instance); calls outside an
//!   event (worker start and stop) are not staged. Frames the core produces on its own
//!   (session reloads, pings, hellos) and queries never wait behind staged frames; staged
//!   frames never await a reply, so reply matching is unaffected.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::ops::Bound;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use crate::api::gather::Gather;
pub use crate::api::gather::TimeoutPolicy;
use crate::api::merge::GroupScan;
use crate::api::plan::{frame, Caller, Completion, Plan, Planner};
use crate::api::plan::{frame_bytes, json_encode};
use crate::api::CurrentClient;
use crate::api::{ApiCall, ApiError, ApiResult};
use crate::drop_log::{DropLog, DROP_LOG_INTERVAL};
use crate::protocol::client_id::client_id_text;
use crate::protocol::client_id::GatewayAddr;
use crate::protocol::frame::{Command, Frame, Header, RawHeader, FLAG_BINARY, HEADER_LEN};
use crate::protocol::frame::{FrameDecodeError, FrameDecoder, ReplyDecoder};
use crate::protocol::php::body::decode_body;
use crate::protocol::php::serialize::serialize;
use crate::protocol::php::unserialize::unserialize_lenient;
use crate::protocol::php::{PhpArray, PhpKey, PhpValue};
use crate::protocol::register::{
    decode_from_register, FromRegister, LineDecodeError, LineDecoder, ToRegister,
};
use crate::splitmix::SplitMix64;

/// A link (TCP connection) handle, allocated by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayLinkId(pub u64);

/// A call handle, allocated by [`WorkerCore::call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What a link connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A register, by its configured address text.
    Register(String),
    /// A gateway's internal address.
    Gateway(GatewayAddr),
}

/// Why the core closes a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent bytes that are not the protocol (frame too short or too long, a
    /// register line over its bound).
    Protocol(&'static str),
    /// The connection attempt took longer than `connect_timeout`.
    ConnectTimeout,
}

/// The four client events a gateway forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEventKind {
    /// CMD 1: the client connected.
    Connect,
    /// CMD 3: a client message.
    Message,
    /// CMD 4: the client closed.
    Close,
    /// CMD 205: websocket handshake data.
    WebSocketConnect,
}

/// One client event for the business code.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// Which event.
    pub kind: ClientEventKind,
    /// The client: id, gateway, connection id and session (null when none).
    pub client: CurrentClient,
    /// The frame header (client ip/port, gateway public port, flags).
    pub header: Header,
    /// The session text as received (empty when none).
    pub session_text: Bytes,
    /// The body: the message bytes, or the handshake array for WebSocketConnect.
    pub body: PhpValue,
    /// The client sent a binary websocket message ([`FLAG_BINARY`] extension).
    pub binary: bool,
}

/// A finished call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallDone {
    /// The call.
    pub id: CallId,
    /// Its result.
    pub result: ApiResult,
    /// Gateways whose reply is missing from the result (queries only).
    pub unanswered: Vec<GatewayAddr>,
}

/// An output of the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to `peer` and report it as `link`.
    Connect {
        /// The new link.
        link: GatewayLinkId,
        /// Where to.
        peer: Peer,
    },
    /// Write `bytes` on `link`; report with `handle_written` once written.
    Transmit {
        /// The link.
        link: GatewayLinkId,
        /// The bytes, whole frames or lines.
        bytes: Bytes,
    },
    /// Close `link`; the core already treats it as closed (its `handle_closed` is ignored).
    Close {
        /// The link.
        link: GatewayLinkId,
        /// Why.
        reason: CloseReason,
    },
    /// A client event to run through the business code, then [`WorkerCore::end_event`]:
    /// always, even when the handler failed, since the client's next event waits for it.
    Event(ClientEvent),
    /// A call finished.
    CallDone(CallDone),
}

/// Settings of a worker core.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Worker name (first half of the worker key).
    pub name: String,
    /// Process index (second half of the worker key).
    pub index: u32,
    /// Secret shared with the register and the gateways (may be empty).
    pub secret_key: String,
    /// Register addresses (`ip:port` text).
    pub register_addresses: Vec<String>,
    /// Register keep-alive period (25 s).
    pub register_ping_interval: Duration,
    /// First reconnect delay of a gateway link after a close (1 s).
    pub reconnect_delay: Duration,
    /// Longest delay between attempts to reach a register (500 ms): each delay is drawn
    /// uniformly in `[interval/2, interval]`; no backoff.
    pub register_retry_interval: Duration,
    /// While a register cannot be reached: one warning at once, then at most one per this
    /// interval (30 s), each with the attempts and the time since it was lost.
    pub register_warn_interval: Duration,
    /// Seed of the reconnect jitter (the driver's owner draws it; the core draws nothing).
    /// Mixed with `index`, so instances sharing a config still spread their attempts.
    pub seed: u64,
    /// A connection attempt not completed by then is abandoned (and retried as a close).
    pub connect_timeout: Duration,
    /// Largest reconnect delay of a gateway link after repeated failures (registers are
    /// retried at `register_retry_interval`, without backoff).
    pub reconnect_delay_max: Duration,
    /// A link open this long resets the reconnect backoff (and makes a register's loss a new
    /// outage, warned about at once).
    pub link_stable_after: Duration,
    /// How long an address missing from broadcasts is kept while the register is up.
    pub address_removal_grace: Duration,
    /// Query deadline (the original's 5 s).
    pub query_timeout: Duration,
    /// A gateway link that read nothing for this long since the request of a reply it
    /// owes was written (or has bytes to write and neither read nor wrote) is suspect:
    /// queries stop waiting for it. `None` (the original's behaviour,
    /// what [`WorkerConfig::new`] gives) waits for `query_timeout`; the BusinessWorker
    /// uses [`SUSPECT_AFTER_DEFAULT`] (2 s).
    pub suspect_after: Option<Duration>,
    /// Result of a query with missing replies.
    pub timeout_policy: TimeoutPolicy,
    /// How `getAllGroup*` merges treat clients without uid/groups.
    pub group_scan: GroupScan,
    /// Bound of a link's output: queued plus unconfirmed bytes.
    pub link_queue_bytes_max: usize,
    /// Bytes handed to the driver per link before it confirms them.
    pub link_window_bytes_max: usize,
    /// Largest frame accepted from a gateway, and largest frame sent to one (10 MiB like
    /// workerman's `maxPackageSize`, the gateway's `package_size_max`): a frame from a
    /// gateway over it closes the link; a call whose frame would be over it is refused
    /// before anything is sent (a bool-send returns false, other calls
    /// [`ApiError::TooLarge`]; counted in [`WorkerStats::frames_too_large`]), since the
    /// gateway would close the whole link on it.
    pub package_size_max: usize,
    /// Largest reply payload accepted from a gateway (64 MiB,
    /// [`crate::protocol::frame::REPLY_SIZE_MAX_DEFAULT`], the same bound as the gateway's
    /// `reply_size_max` and the GatewayClient's). A larger one closes the link.
    pub reply_size_max: usize,
    /// Replies awaited on one link at most (queries and session reloads). A query that
    /// would exceed it fails at once with [`ApiError::Busy`] (counted in
    /// [`WorkerStats::calls_refused_busy`]); a session reload that would is skipped (the
    /// event goes out with the session it carried).
    pub pending_replies_max: usize,
    /// Bytes of client events held by the core while the driver has no room for them
    /// ([`WorkerCore::set_event_room`]); at or past it, [`WorkerCore::input_paused`] is true
    /// and the driver stops reading links until the business code catches up.
    pub held_events_bytes_max: usize,
    /// Longest register line accepted.
    pub register_line_bytes_max: usize,
    /// Clients whose session version is remembered at most (beyond, no reload check).
    pub session_versions_max: usize,
    /// Events held per link behind a session reload; beyond, the reload is abandoned and
    /// the held events are delivered with the sessions they carried.
    pub parked_events_max: usize,
    /// Bytes of the events parked on one link (behind a reload or a client's running
    /// event, estimated as for held events); beyond, they go out as they are, as past
    /// `parked_events_max`, and count against `held_events_bytes_max` from there. Without
    /// it a client could park `parked_events_max` messages of `package_size_max` each
    /// behind its own slow event: gigabytes.
    pub parked_events_bytes_max: usize,
}

impl WorkerConfig {
    /// Defaults of the original for a worker `name`, process `index`.
    pub fn new(name: &str, index: u32, register_addresses: Vec<String>) -> WorkerConfig {
        WorkerConfig {
            name: name.to_string(),
            index,
            secret_key: String::new(),
            register_addresses,
            register_ping_interval: Duration::from_secs(25),
            reconnect_delay: Duration::from_secs(1),
            register_retry_interval: Duration::from_millis(500),
            register_warn_interval: Duration::from_secs(30),
            seed: 0,
            reconnect_delay_max: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(5),
            link_stable_after: Duration::from_secs(5),
            address_removal_grace: Duration::from_secs(3),
            query_timeout: Duration::from_secs(5),
            suspect_after: None,
            timeout_policy: TimeoutPolicy::Fail,
            group_scan: GroupScan::Complete,
            link_queue_bytes_max: 10_240_000,
            link_window_bytes_max: 1 << 20,
            package_size_max: 10_485_760,
            reply_size_max: crate::protocol::frame::REPLY_SIZE_MAX_DEFAULT as usize,
            pending_replies_max: 1024,
            held_events_bytes_max: 16 << 20,
            register_line_bytes_max: crate::protocol::register::FROM_REGISTER_LINE_MAX,
            session_versions_max: 1 << 20,
            parked_events_max: 4096,
            parked_events_bytes_max: 16 << 20,
        }
    }
}

/// The BusinessWorker's `suspect_after`: well under the 5 s query timeout, and well over
/// a healthy gateway's reply time even on a loaded machine (a false suspicion costs one
/// query a missing gateway; the mark clears at the next byte).
pub const SUSPECT_AFTER_DEFAULT: Duration = Duration::from_secs(2);

/// Counters for what the core dropped or gave up on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Frames refused because their link's queue was full.
    pub frames_dropped: u64,
    /// Bytes of those frames.
    pub bytes_dropped: u64,
    /// Queries finished with missing replies.
    pub queries_incomplete: u64,
    /// Links closed for protocol errors.
    pub protocol_errors: u64,
    /// Session reloads (GET_SESSION before an event).
    pub session_reloads: u64,
    /// Calls refused because a frame would exceed `package_size_max`.
    pub frames_too_large: u64,
    /// Client events from a gateway whose frame exceeded `package_size_max`: each is
    /// skipped (its bytes discarded as they arrive, never buffered whole) and logged with
    /// its client id; the link stays up.
    pub events_too_large: u64,
    /// Queries refused because a link already awaited `pending_replies_max` replies.
    pub calls_refused_busy: u64,
    /// Session reloads skipped for the same reason.
    pub reloads_skipped_busy: u64,
    /// Times a gateway link became suspect (no progress for `suspect_after`).
    pub gateways_suspected: u64,
    /// Query parts answered at once as missing because their gateway was suspect.
    pub query_parts_suspect: u64,
    /// Session write-backs dropped because the event's gateway link closed while it ran
    /// (the client is gone; a restarted gateway may have given its id to a new client).
    pub session_writes_link_gone: u64,
    /// Frames of failed events discarded unsent ([`WorkerCore::fail_event`]).
    pub frames_rolled_back: u64,
    /// Bytes of those frames.
    pub bytes_rolled_back: u64,
}

/// The hex characters of a client id that name its gateway (ip 8, port 4; the
/// connection id's 8 follow).
const CLIENT_ID_PREFIX_LEN: usize = 12;

/// The events of one client handed to the business code and not yet ended.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// How many (more than one only when `parked_events_max` let a later one past).
    events: u32,
    /// The link the latest of them came on.
    link: GatewayLinkId,
}

/// What a reply expected on a link is for.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// Slot `slot` of call `call`.
    Call { call: CallId, slot: usize },
    /// The session of the first parked event.
    SessionReload,
}

#[derive(Debug)]
enum LinkPeer {
    Register(usize),
    Gateway(GatewayAddr),
}

#[derive(Debug)]
struct Link {
    peer: LinkPeer,
    opened_at: Option<Duration>,
    /// While connecting: when to give up.
    connect_deadline: Option<Duration>,
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    in_flight: usize,
    /// Frames of the running event, in call order: moved to `queue` when it ends (or at
    /// one of its queries), discarded when it fails. Counted in the link's bound.
    staged: VecDeque<Bytes>,
    /// Sum of `staged`'s lengths.
    staged_bytes: usize,
    inbound: BytesMut,
    /// Splits register lines off `inbound` (register links only; idle on gateway links).
    lines: LineDecoder,
    /// Bytes still to discard of a client event frame over `package_size_max`.
    skip_left: usize,
    pending: VecDeque<Pending>,
    /// Events waiting for a session reload (the first one is being reloaded).
    parked: VecDeque<ClientEvent>,
    /// Their estimated bytes ([`event_cost`]).
    parked_bytes: usize,
    /// A GET_SESSION for the first parked event is outstanding.
    reloading: bool,
    /// Last progress: opened, connected, a byte read or written (or, when it had nothing
    /// owed, the time it started owing something).
    progress_at: Duration,
    /// Last byte read (or connected).
    read_at: Duration,
    /// Bytes ever queued on the link, and ever confirmed written: the request of a reply
    /// awaited is out once `written_total_bytes` reaches its end.
    queued_total_bytes: u64,
    written_total_bytes: u64,
    /// For each entry of `pending`, where its request ends in the queued bytes.
    reply_ends: VecDeque<u64>,
    /// When the request of the oldest reply awaited was all written (`None`: not yet, or
    /// none awaited). From then on only a byte read is a sign of life: a stopped
    /// gateway's kernel keeps taking our later writes for a while (megabytes of socket
    /// buffers), while a healthy one answers as soon as it reads the request.
    front_written_at: Option<Duration>,
    /// Owing for `suspect_after` without progress (while a reply is awaited: without a
    /// byte read): queries do not wait for it.
    suspect: bool,
}

impl Link {
    /// The link owes us something: a reply, or bytes still to be written.
    fn owing(&self) -> bool {
        !self.pending.is_empty() || self.in_flight > 0 || self.queued_bytes > 0
    }

    /// Appends `bytes` to the output queue; when nothing was owed before, the time
    /// without progress counts from `now`.
    fn queue_owed(&mut self, bytes: Bytes, now: Duration) {
        if !self.owing() {
            self.progress_at = self.progress_at.max(now);
        }
        self.queued_bytes += bytes.len();
        self.queued_total_bytes += bytes.len() as u64;
        self.queue.push_back(bytes);
    }

    /// More events parked than the bounds allow (`parked_events_max`,
    /// `parked_events_bytes_max`): the head goes out as it is, without waiting.
    fn parked_over(&self, config: &WorkerConfig) -> bool {
        self.parked.len() > config.parked_events_max
            || self.parked_bytes > config.parked_events_bytes_max
    }

    /// Takes the first parked event.
    fn pop_parked(&mut self) -> Option<ClientEvent> {
        let event = self.parked.pop_front()?;
        self.parked_bytes = self.parked_bytes.saturating_sub(event_cost(&event));
        Some(event)
    }

    /// Awaits the reply `p` (its request was the last bytes queued).
    fn await_reply(&mut self, p: Pending, now: Duration) {
        self.pending.push_back(p);
        self.reply_ends.push_back(self.queued_total_bytes);
        if self.pending.len() == 1 {
            self.front_written_at = None;
            self.note_front_written(now);
        }
    }

    /// The oldest reply awaited arrived: the next one's request may already be out.
    fn pop_reply(&mut self, now: Duration) -> Option<Pending> {
        self.reply_ends.pop_front();
        self.front_written_at = None;
        self.note_front_written(now);
        self.pending.pop_front()
    }

    /// Sets `front_written_at` once the oldest awaited request is all written.
    fn note_front_written(&mut self, now: Duration) {
        let front_out = self
            .reply_ends
            .front()
            .is_some_and(|&end| end <= self.written_total_bytes);
        if front_out && self.front_written_at.is_none() {
            self.front_written_at = Some(now);
        }
    }

    /// Since when it has shown no sign of life, if it owes something: for a reply whose
    /// request is out, since the later of that moment and the last byte read; for bytes
    /// still to write, since the last byte read or written; the earlier of the two when
    /// it owes both.
    fn silent_since(&self) -> Option<Duration> {
        let reply = self.front_written_at.map(|t| t.max(self.read_at));
        let bytes = (self.in_flight > 0 || self.queued_bytes > 0).then_some(self.progress_at);
        match (reply, bytes) {
            (Some(r), Some(b)) => Some(r.min(b)),
            (r, b) => r.or(b),
        }
    }

    /// When it becomes suspect if nothing moves (gateway links only).
    fn suspect_at(&self, after: Option<Duration>) -> Option<Duration> {
        let after = after?;
        let gateway = matches!(self.peer, LinkPeer::Gateway(_));
        if !gateway || self.suspect {
            return None;
        }
        self.silent_since().map(|t| t.saturating_add(after))
    }
}

impl Link {
    fn new(
        peer: LinkPeer,
        now: Duration,
        connect_deadline: Duration,
        register_line_bytes_max: usize,
    ) -> Link {
        Link {
            peer,
            opened_at: None,
            connect_deadline: Some(connect_deadline),
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            staged: VecDeque::new(),
            staged_bytes: 0,
            inbound: BytesMut::new(),
            lines: LineDecoder::new(register_line_bytes_max),
            skip_left: 0,
            pending: VecDeque::new(),
            parked: VecDeque::new(),
            parked_bytes: 0,
            reloading: false,
            progress_at: now,
            read_at: now,
            queued_total_bytes: 0,
            written_total_bytes: 0,
            reply_ends: VecDeque::new(),
            front_written_at: None,
            suspect: false,
        }
    }
}

#[derive(Debug)]
struct RegisterEntry {
    address: String,
    link: Option<GatewayLinkId>,
    retry_at: Option<Duration>,
    ping_at: Option<Duration>,
    /// Since when the register is unreachable (lost or never reached), and the failed
    /// attempts since.
    down_since: Option<Duration>,
    failed_attempts: u64,
    /// When the last "register unreachable" warning went out.
    warned_at: Option<Duration>,
    /// A warning went out in the current outage (so its end is worth a line too).
    warned_in_outage: bool,
}

#[derive(Debug, Default)]
struct GatewayEntry {
    link: Option<GatewayLinkId>,
    retry_at: Option<Duration>,
    failures: u32,
}

/// The worker core; see the module documentation.
#[derive(Debug)]
pub struct WorkerCore {
    config: WorkerConfig,
    next_link: u64,
    next_call: u64,
    links: BTreeMap<GatewayLinkId, Link>,
    registers: Vec<RegisterEntry>,
    /// Effective gateway list, register order.
    listed: Vec<GatewayAddr>,
    /// The latest broadcast.
    announced: Vec<GatewayAddr>,
    removal_at: Option<Duration>,
    gateways: BTreeMap<GatewayAddr, GatewayEntry>,
    calls: BTreeMap<CallId, Gather>,
    session_versions: HashMap<Bytes, u32>,
    /// Events handed out and not yet ended, per client: a client's next event waits for
    /// the end of the previous one, so that its session check sees the write-back.
    events_in_flight: HashMap<Bytes, InFlight>,
    actions: VecDeque<Action>,
    stats: WorkerStats,
    /// Events the driver can still take ([`WorkerCore::set_event_room`]).
    event_room: usize,
    /// Events released in order but waiting for room, and their estimated bytes.
    held: VecDeque<ClientEvent>,
    held_bytes: usize,
    /// Reconnect jitter, seeded from [`WorkerConfig::seed`].
    jitter: SplitMix64,
    /// Dropped frames, logged at most once per interval.
    drop_log: DropLog,
    /// The latest `now` given to any input (for the helpers that take none).
    last_now: Duration,
    /// An event is running ([`WorkerCore::begin_event`]): the frames of its calls are
    /// staged on their links until it ends. At most one: the business code runs one event
    /// at a time.
    event_open: bool,
}

/// What [`WorkerCore::fail_event`] discarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolledBack {
    /// Frames the failed event had staged.
    pub frames: usize,
    /// Their bytes.
    pub bytes: usize,
}

impl WorkerCore {
    /// A core that starts by connecting to every register.
    pub fn new(config: WorkerConfig, now: Duration) -> WorkerCore {
        let mut core = WorkerCore {
            registers: config
                .register_addresses
                .iter()
                .map(|a| RegisterEntry {
                    address: a.clone(),
                    link: None,
                    retry_at: Some(now),
                    ping_at: None,
                    down_since: None,
                    failed_attempts: 0,
                    warned_at: None,
                    warned_in_outage: false,
                })
                .collect(),
            jitter: SplitMix64(
                config.seed ^ u64::from(config.index).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            drop_log: DropLog::new("worker", DROP_LOG_INTERVAL),
            last_now: now,
            config,
            next_link: 1,
            next_call: 1,
            links: BTreeMap::new(),
            listed: Vec::new(),
            announced: Vec::new(),
            removal_at: None,
            gateways: BTreeMap::new(),
            calls: BTreeMap::new(),
            session_versions: HashMap::new(),
            events_in_flight: HashMap::new(),
            actions: VecDeque::new(),
            stats: WorkerStats::default(),
            event_room: usize::MAX,
            held: VecDeque::new(),
            held_bytes: 0,
            event_open: false,
        };
        core.handle_timeout(now);
        core
    }

    /// Panics when an internal invariant does not hold. Called after every input by the
    /// unit tests' harness and by the simulation (never in production: it walks every
    /// link, call and held event). The invariants:
    /// - every link is owned by exactly one register or gateway entry, and back;
    /// - a link's output stays within `link_queue_bytes_max` (queued plus unconfirmed plus
    ///   staged), its `queued_bytes` and `staged_bytes` are the sums of its queue and its
    ///   staged frames, and only an open link has bytes in flight;
    /// - frames are staged only inside the one event transaction open at a time
    ///   ([`WorkerCore::begin_event`]);
    /// - a link buffers at most one partial frame (or register line) of its bound;
    /// - a session reload is in progress only with an event parked behind it, and parked
    ///   events stay within `parked_events_max` (+1 for the one being reloaded);
    /// - held events exist only while the driver has no room, and `held_bytes` is their sum;
    /// - every reply awaited for a call names a call still gathering or already finished
    ///   (a late reply is ignored), and at most `pending_replies_max` replies are awaited
    ///   per link, plus one session reload;
    /// - the session-version table stays within `session_versions_max`, and every client
    ///   with events in flight has a positive count.
    pub fn check_invariants(&self) {
        for (id, link) in &self.links {
            assert!(id.0 >= 1 && id.0 < self.next_link, "{id:?} not allocated");
            match &link.peer {
                LinkPeer::Register(i) => assert_eq!(
                    self.registers.get(*i).and_then(|r| r.link),
                    Some(*id),
                    "{id:?} is not its register's link"
                ),
                LinkPeer::Gateway(addr) => assert_eq!(
                    self.gateways.get(addr).and_then(|g| g.link),
                    Some(*id),
                    "{id:?} is not the link of gateway {addr}"
                ),
            }
            assert!(
                link.progress_at <= self.last_now && link.read_at <= self.last_now,
                "{id:?}: progress in the future"
            );
            assert_eq!(
                link.reply_ends.len(),
                link.pending.len(),
                "{id:?}: reply ends"
            );
            assert!(
                link.written_total_bytes <= link.queued_total_bytes
                    && link
                        .reply_ends
                        .iter()
                        .all(|&e| e <= link.queued_total_bytes),
                "{id:?}: written or awaited beyond what was queued"
            );
            assert_eq!(
                link.front_written_at.is_some(),
                link.reply_ends
                    .front()
                    .is_some_and(|&e| e <= link.written_total_bytes),
                "{id:?}: front_written_at is stale"
            );
            let queued: usize = link.queue.iter().map(Bytes::len).sum();
            assert_eq!(queued, link.queued_bytes, "{id:?}: queued_bytes is stale");
            let staged: usize = link.staged.iter().map(Bytes::len).sum();
            assert_eq!(staged, link.staged_bytes, "{id:?}: staged_bytes is stale");
            assert!(
                self.event_open || link.staged.is_empty(),
                "{id:?}: {} frames staged outside an event",
                link.staged.len()
            );
            assert!(
                link.queued_bytes + link.in_flight + link.staged_bytes
                    <= self.config.link_queue_bytes_max,
                "{id:?}: {} queued + {} in flight + {} staged over link_queue_bytes_max",
                link.queued_bytes,
                link.in_flight,
                link.staged_bytes
            );
            if link.opened_at.is_none() {
                assert_eq!(
                    link.in_flight, 0,
                    "{id:?}: bytes in flight before it opened"
                );
            }
            let inbound_max = match link.peer {
                LinkPeer::Register(_) => self.config.register_line_bytes_max,
                LinkPeer::Gateway(_) => {
                    self.config.package_size_max.max(self.config.reply_size_max) + HEADER_LEN
                }
            };
            assert!(
                link.inbound.len() <= inbound_max,
                "{id:?} buffers {} bytes of input",
                link.inbound.len()
            );
            if link.reloading {
                assert!(!link.parked.is_empty(), "{id:?} reloads for no event");
                assert!(
                    link.pending
                        .iter()
                        .any(|p| matches!(p, Pending::SessionReload)),
                    "{id:?} reloads without awaiting the reply"
                );
            }
            assert!(
                link.parked.len() <= self.config.parked_events_max + 1,
                "{id:?} parks {} events",
                link.parked.len()
            );
            let parked_bytes: usize = link.parked.iter().map(event_cost).sum();
            assert_eq!(
                parked_bytes, link.parked_bytes,
                "{id:?}: parked_bytes is stale"
            );
            assert!(
                link.parked_bytes <= self.config.parked_events_bytes_max,
                "{id:?} parks {} bytes",
                link.parked_bytes
            );
            let calls = link
                .pending
                .iter()
                .filter(|p| matches!(p, Pending::Call { .. }))
                .count();
            assert!(
                calls <= self.config.pending_replies_max,
                "{id:?} awaits {calls} replies"
            );
            for pending in &link.pending {
                if let Pending::Call { call, .. } = pending {
                    assert!(
                        call.0 >= 1 && call.0 < self.next_call,
                        "{call:?} not allocated"
                    );
                }
            }
        }
        for (i, register) in self.registers.iter().enumerate() {
            if let Some(link) = register.link {
                assert!(
                    matches!(self.links.get(&link), Some(l) if matches!(l.peer, LinkPeer::Register(j) if j == i)),
                    "register {i}'s {link:?} is not a register link"
                );
            }
        }
        for (addr, gateway) in &self.gateways {
            if let Some(link) = gateway.link {
                assert!(
                    matches!(self.links.get(&link), Some(l) if matches!(&l.peer, LinkPeer::Gateway(a) if a == addr)),
                    "gateway {addr}'s {link:?} is not its link"
                );
            }
        }
        for call in self.calls.keys() {
            assert!(
                call.0 >= 1 && call.0 < self.next_call,
                "{call:?} not allocated"
            );
        }
        if !self.held.is_empty() {
            assert_eq!(self.event_room, 0, "events held while the driver has room");
        }
        let held_bytes = self
            .held
            .iter()
            .map(event_cost)
            .fold(0usize, usize::saturating_add);
        assert_eq!(held_bytes, self.held_bytes, "held_bytes is stale");
        assert!(
            self.session_versions.len() <= self.config.session_versions_max,
            "{} session versions",
            self.session_versions.len()
        );
        assert!(
            self.events_in_flight.values().all(|f| f.events > 0),
            "a client with zero events in flight is still listed"
        );
    }

    /// Counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The settings it runs with (its worker key is `name:index`).
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Tells the core how many more events the driver can take now (its queue's free
    /// room). Beyond it, events are held in order (replies and acknowledgements are still
    /// handled: queries waiting on a link are never starved by throttled events); held
    /// events go out, oldest first, as room is given back. Default: unlimited.
    pub fn set_event_room(&mut self, room: usize) {
        self.event_room = room;
        while self.event_room > 0 {
            let Some(event) = self.held.pop_front() else {
                break;
            };
            self.held_bytes = self.held_bytes.saturating_sub(event_cost(&event));
            self.event_room -= 1;
            self.actions.push_back(Action::Event(event));
        }
    }

    /// True while the held events reach `held_events_bytes_max`: the driver should stop
    /// reading links (TCP backpressure towards the gateways) until room frees up.
    pub fn input_paused(&self) -> bool {
        self.held_bytes >= self.config.held_events_bytes_max
    }

    /// Events held for want of room, and their estimated bytes.
    pub fn held_events(&self) -> (usize, usize) {
        (self.held.len(), self.held_bytes)
    }

    /// No client event waits in the core: none held for want of room, none parked on a
    /// link (behind its client's running event or a session reload). With the driver's
    /// own queue empty too, a backlog of incoming events has drained.
    pub fn incoming_drained(&self) -> bool {
        self.held.is_empty() && self.links.values().all(|l| l.parked.is_empty())
    }

    /// Gives back what a backlog of incoming events grew, once it has drained
    /// ([`WorkerCore::incoming_drained`]): the held and parked event queues and the action
    /// queue keep at most `slots_kept` slots, and a link's empty input buffer larger than
    /// `inbound_kept` bytes is let go (the next read starts a fresh one). For the driver,
    /// once per drained backlog: never on the per-message path.
    pub fn shrink_incoming(&mut self, slots_kept: usize, inbound_kept: usize) {
        shrink_deque(&mut self.held, slots_kept);
        shrink_deque(&mut self.actions, slots_kept);
        for l in self.links.values_mut() {
            shrink_deque(&mut l.parked, slots_kept);
            if l.inbound.is_empty() && l.inbound.capacity() > inbound_kept {
                l.inbound = BytesMut::new();
            }
        }
    }

    /// Slots of the held, parked (all links) and action queues, for tests of
    /// [`WorkerCore::shrink_incoming`].
    #[cfg(test)]
    pub(crate) fn incoming_slots(&self) -> (usize, usize, usize) {
        let parked = self.links.values().map(|l| l.parked.capacity()).sum();
        (self.held.capacity(), parked, self.actions.capacity())
    }

    /// The gateway list in use (register order).
    pub fn gateway_addresses(&self) -> &[GatewayAddr] {
        &self.listed
    }

    /// Gateway links whose connection is established (their WORKER_CONNECT is on its way).
    pub fn connected_gateway_count(&self) -> usize {
        self.links
            .values()
            .filter(|l| matches!(l.peer, LinkPeer::Gateway(_)) && l.opened_at.is_some())
            .count()
    }

    /// Gateways with a link (open or connecting): listed ones in list order, then the
    /// others (dropped from the list but still linked) in address order.
    pub fn linked_gateways(&self) -> Vec<GatewayAddr> {
        let linked = |a: &GatewayAddr| self.gateways.get(a).is_some_and(|g| g.link.is_some());
        let mut out: Vec<GatewayAddr> = self.listed.iter().copied().filter(|a| linked(a)).collect();
        for a in self.gateways.keys() {
            if linked(a) && !self.listed.contains(a) {
                out.push(*a);
            }
        }
        out
    }

    /// Outputs are waiting for [`WorkerCore::poll_action`].
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next output, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next deadline at which [`WorkerCore::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        let registers = self.registers.iter().flat_map(|r| [r.retry_at, r.ping_at]);
        let gateways = self.gateways.values().map(|g| g.retry_at);
        let calls = self.calls.values().map(|c| Some(c.deadline()));
        let connects = self.links.values().map(|l| l.connect_deadline);
        let after = self.config.suspect_after;
        let suspects = self.links.values().map(move |l| l.suspect_at(after));
        registers
            .chain(gateways)
            .chain(calls)
            .chain(connects)
            .chain(suspects)
            .chain([self.removal_at, self.drop_log.poll_timeout()])
            .flatten()
            .min()
    }

    // ---- inputs --------------------------------------------------------------------

    /// Timers: reconnects, register pings, query deadlines, list removals.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        self.drop_log.handle_timeout(now);
        let stuck: Vec<GatewayLinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.connect_deadline.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for link in stuck {
            if self
                .links
                .get(&link)
                .is_some_and(|l| matches!(l.peer, LinkPeer::Register(_)))
            {
                // Warned about at a bounded rate by `handle_closed`.
                tracing::debug!(?link, "register connection attempt timed out");
            } else {
                tracing::warn!(?link, "connection attempt timed out");
            }
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::ConnectTimeout,
            });
            self.handle_closed(now, link);
        }
        self.check_suspects(now);
        for i in 0..self.registers.len() {
            if self.registers[i].retry_at.is_some_and(|t| t <= now) {
                self.registers[i].retry_at = None;
                let link = self.open_link(now, LinkPeer::Register(i));
                let peer = Peer::Register(self.registers[i].address.clone());
                self.registers[i].link = Some(link);
                self.actions.push_back(Action::Connect { link, peer });
            }
            if self.registers[i].ping_at.is_some_and(|t| t <= now) {
                self.registers[i].ping_at = Some(now + self.config.register_ping_interval);
                if let Some(link) = self.registers[i].link {
                    let mut line = BytesMut::new();
                    ToRegister::Ping.encode(&mut line);
                    self.enqueue(link, line.freeze());
                }
            }
        }
        let due: Vec<GatewayAddr> = self
            .gateways
            .iter()
            .filter(|(_, g)| g.retry_at.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            if let Some(g) = self.gateways.get_mut(&addr) {
                g.retry_at = None;
            }
            if self.listed.contains(&addr) {
                self.connect_gateway(now, addr);
            }
        }
        if self.removal_at.is_some_and(|t| t <= now) {
            self.removal_at = None;
            self.listed = self.announced.clone();
        }
        let expired: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(call) = self.calls.get_mut(&id) {
                call.expire();
            }
            self.try_finish(id);
        }
    }

    /// The connection of `link` is established.
    pub fn handle_connected(&mut self, now: Duration, link: GatewayLinkId) {
        self.last_now = self.last_now.max(now);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.opened_at = Some(now);
        l.connect_deadline = None;
        Self::progress(l, now, true);
        if let LinkPeer::Register(i) = l.peer {
            let register = &mut self.registers[i];
            if let Some(since) = register.down_since.take() {
                if register.warned_in_outage {
                    tracing::info!(
                        register = %register.address,
                        down_for = ?now.saturating_sub(since),
                        attempts = register.failed_attempts,
                        "register reachable again"
                    );
                }
                register.failed_attempts = 0;
                register.warned_in_outage = false;
            }
            let mut line = BytesMut::new();
            ToRegister::WorkerConnect {
                secret_key: self.config.secret_key.clone(),
            }
            .encode(&mut line);
            self.enqueue(link, line.freeze());
            let register = &mut self.registers[i];
            if !register.address.starts_with("127.0.0.1") {
                register.ping_at = Some(now + self.config.register_ping_interval);
            }
        }
        self.pump(link);
    }

    /// The driver wrote `n` bytes of this link's transmits.
    pub fn handle_written(&mut self, now: Duration, link: GatewayLinkId, n: usize) {
        self.last_now = self.last_now.max(now);
        if let Some(l) = self.links.get_mut(&link) {
            let confirmed = n.min(l.in_flight);
            l.in_flight -= confirmed;
            l.written_total_bytes += confirmed as u64;
            if n > 0 {
                Self::progress(l, now, false);
            }
            l.note_front_written(now);
            self.pump(link);
        }
    }

    /// The link closed (or its connection attempt failed).
    pub fn handle_closed(&mut self, now: Duration, link: GatewayLinkId) {
        self.last_now = self.last_now.max(now);
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        let stable = l
            .opened_at
            .is_some_and(|t| now.saturating_sub(t) >= self.config.link_stable_after);
        match l.peer {
            LinkPeer::Register(i) => {
                // Keep the last good list while the register is away.
                self.removal_at = None;
                let delay = self.register_retry_delay();
                let warn_interval = self.config.register_warn_interval;
                let register = &mut self.registers[i];
                register.link = None;
                register.ping_at = None;
                register.retry_at = Some(now + delay);
                if register.down_since.is_none() && stable {
                    // A register lost after a stable connection: a new outage, told at
                    // once (the rate limit is for flapping and for long outages).
                    register.warned_at = None;
                }
                let since = *register.down_since.get_or_insert(now);
                register.failed_attempts = register.failed_attempts.saturating_add(1);
                if register
                    .warned_at
                    .is_none_or(|t| now.saturating_sub(t) >= warn_interval)
                {
                    register.warned_at = Some(now);
                    register.warned_in_outage = true;
                    tracing::warn!(
                        register = %register.address,
                        lost = l.opened_at.is_some(),
                        down_for = ?now.saturating_sub(since),
                        attempts = register.failed_attempts,
                        "cannot reach the register; retrying every {:?} at most",
                        self.config.register_retry_interval
                    );
                }
            }
            LinkPeer::Gateway(addr) => {
                for pending in &l.pending {
                    if let Pending::Call { call, slot } = *pending {
                        self.fail_slot(call, slot);
                    }
                }
                // Events waiting for a reload are delivered with the session they carried.
                for event in l.parked {
                    self.deliver(link, event);
                }
                self.forget_sessions_of(addr);
                let listed = self.listed.contains(&addr);
                let config = &self.config;
                let g = self.gateways.entry(addr).or_default();
                g.link = None;
                if stable {
                    g.failures = 0;
                }
                if listed && g.retry_at.is_none() {
                    g.retry_at = Some(now + backoff(config, g.failures));
                    g.failures = g.failures.saturating_add(1);
                }
            }
        }
    }

    /// Bytes received on `link`.
    pub fn handle_bytes(&mut self, now: Duration, link: GatewayLinkId, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.inbound.extend_from_slice(data);
        if !data.is_empty() {
            Self::progress(l, now, true);
        }
        match l.peer {
            LinkPeer::Register(_) => self.read_register(now, link),
            LinkPeer::Gateway(_) => self.read_gateway(now, link),
        }
    }

    // ---- application commands ------------------------------------------------------

    /// Runs one API call; its [`CallDone`] follows through [`WorkerCore::poll_action`]
    /// (at once for sends and for calls that need no gateway).
    pub fn call(
        &mut self,
        now: Duration,
        call: &ApiCall,
        current: Option<&CurrentClient>,
    ) -> CallId {
        self.call_as(now, call, current, false)
    }

    /// [`WorkerCore::call`], and with `binary` a send reaches websocket clients as a binary
    /// frame: our [`FLAG_BINARY`] extension bit on the send frames (a PHP gateway ignores it).
    pub fn call_as(
        &mut self,
        now: Duration,
        call: &ApiCall,
        current: Option<&CurrentClient>,
        binary: bool,
    ) -> CallId {
        self.last_now = self.last_now.max(now);
        let targets = self.linked_gateways();
        let mut plan =
            Planner::new(Caller::Worker { current }, &targets, self.config.group_scan).plan(call);
        if let (true, Ok(plan)) = (binary, plan.as_mut()) {
            mark_binary(plan);
        }
        let id = self.new_call_id();
        match plan {
            Ok(plan) => self.execute(now, id, plan, &targets),
            Err(e) => self.done(id, Err(e), Vec::new()),
        }
        id
    }

    /// The business code starts running an event: until [`WorkerCore::end_event`] or
    /// [`WorkerCore::fail_event`], the frames its calls produce are staged (see the module
    /// documentation: all-or-nothing). One event at a time: beginning another while one is
    /// open commits the open one first (as its end would, without ending it).
    pub fn begin_event(&mut self) {
        if self.event_open {
            tracing::debug!("an event began before the previous one ended: its frames committed");
            self.commit_staged();
        }
        self.event_open = true;
    }

    /// The business code failed to handle `kind` for `client` (a trap, out of fuel, memory
    /// or time): what the event staged since [`WorkerCore::begin_event`] is discarded (no
    /// gateway sees it; counted in [`WorkerStats::frames_rolled_back`] and
    /// [`WorkerStats::bytes_rolled_back`]), nothing is written back, and the event ends as
    /// with [`WorkerCore::end_event`] (the client's next event may go). What it sent
    /// before one of its queries was committed by that query and stays sent.
    pub fn fail_event(
        &mut self,
        now: Duration,
        client: &CurrentClient,
        kind: ClientEventKind,
    ) -> RolledBack {
        let mut rolled = RolledBack::default();
        for l in self.links.values_mut() {
            rolled.frames += l.staged.len();
            rolled.bytes += l.staged_bytes;
            l.staged.clear();
            l.staged_bytes = 0;
        }
        self.event_open = false;
        self.stats.frames_rolled_back += rolled.frames as u64;
        self.stats.bytes_rolled_back += rolled.bytes as u64;
        // Unchanged session: nothing to write back; the end itself as for any event.
        let unchanged = PhpValue::Null;
        let _ = self.end_event(now, client, kind, &unchanged, &unchanged);
        rolled
    }

    /// After the business code handled `kind` for `client`: writes the session back with
    /// SET_SESSION when it changed (`old` is the session the code started from, updated by
    /// its own setSession/updateSession calls on that client, as the original's
    /// `Context::$old_session`). A non-array, non-null session is an error (the original
    /// throws) and nothing is written. Commits what the event staged (its frames, then
    /// the write-back) when it was begun with [`WorkerCore::begin_event`].
    pub fn end_event(
        &mut self,
        now: Duration,
        client: &CurrentClient,
        kind: ClientEventKind,
        old: &PhpValue,
        new: &PhpValue,
    ) -> Result<(), ApiError> {
        self.last_now = self.last_now.max(now);
        let outcome = if self.came_on_closed_link(&client.client_id) {
            // The link the event came on closed while it ran: the client it was for is
            // gone with that link, and a gateway that restarted may already have given its
            // id to a new client, whose session this must not overwrite.
            if kind != ClientEventKind::Close && old != new {
                self.stats.session_writes_link_gone += 1;
                tracing::debug!(
                    client_id = %String::from_utf8_lossy(&client.client_id),
                    "session write-back dropped: the event's gateway link closed while it ran"
                );
            }
            Ok(())
        } else {
            self.write_back(client, kind, old, new)
        };
        self.commit_event();
        self.event_ended(&client.client_id);
        outcome
    }

    /// The latest event handed out for `client_id` came on a link that has closed since.
    fn came_on_closed_link(&self, client_id: &Bytes) -> bool {
        self.events_in_flight
            .get(client_id)
            .is_some_and(|f| !self.links.contains_key(&f.link))
    }

    /// Writes a session changed by an event back to the client's gateway.
    fn write_back(
        &mut self,
        client: &CurrentClient,
        kind: ClientEventKind,
        old: &PhpValue,
        new: &PhpValue,
    ) -> Result<(), ApiError> {
        if kind == ClientEventKind::Close || old == new {
            return Ok(());
        }
        let text = match new {
            PhpValue::Null => Bytes::new(),
            PhpValue::Array(_) => Bytes::from(serialize(new)),
            _ => return Err(ApiError::BadArgument("$_SESSION must be an array".into())),
        };
        let targets = self.linked_gateways();
        let sender = Planner::new(
            Caller::Worker {
                current: Some(client),
            },
            &targets,
            self.config.group_scan,
        );
        let plan = sender.set_socket_session(&client.client_id, &text)?;
        if let Some(len) = plan
            .frames
            .iter()
            .map(|o| o.frame.encoded_len())
            .find(|&len| len > self.config.package_size_max)
        {
            self.stats.frames_too_large += 1;
            tracing::warn!(len, "session write-back refused: frame too large");
            let max = self.config.package_size_max;
            return Err(ApiError::TooLarge { len, max });
        }
        for o in &plan.frames {
            self.send_frame(o.to, &o.frame);
        }
        self.remember_session(&client.client_id, crc32(&text));
        Ok(())
    }

    // ---- calls ---------------------------------------------------------------------

    fn new_call_id(&mut self) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        id
    }

    fn execute(&mut self, now: Duration, id: CallId, plan: Plan, targets: &[GatewayAddr]) {
        // A frame over the gateway's package limit would make it close the whole link:
        // refuse the call before anything is sent.
        if let Some(len) = plan
            .frames
            .iter()
            .map(|o| o.frame.encoded_len())
            .find(|&len| len > self.config.package_size_max)
        {
            self.stats.frames_too_large += 1;
            tracing::warn!(
                len,
                max = self.config.package_size_max,
                "call refused: frame too large"
            );
            let result = match plan.completion {
                Completion::SendOutcome => Ok(PhpValue::Bool(false)),
                _ => Err(ApiError::TooLarge {
                    len,
                    max: self.config.package_size_max,
                }),
            };
            return self.done(id, result, Vec::new());
        }
        if matches!(plan.completion, Completion::Replies(_)) {
            let max = self.config.pending_replies_max;
            let busy = plan.frames.iter().any(|o| {
                self.gateways
                    .get(&o.to)
                    .and_then(|g| g.link)
                    .and_then(|link| self.links.get(&link))
                    .is_some_and(|l| l.pending.len() >= max)
            });
            if busy {
                self.stats.calls_refused_busy += 1;
                tracing::warn!(max, "query refused: too many replies awaited on a link");
                return self.done(id, Err(ApiError::Busy { max }), Vec::new());
            }
        }
        match plan.completion {
            Completion::Ready(result) => {
                for o in &plan.frames {
                    self.send_frame(o.to, &o.frame);
                }
                self.done(id, result, Vec::new());
            }
            Completion::SendOutcome => {
                let mut all = true;
                for o in &plan.frames {
                    all &= self.send_frame(o.to, &o.frame);
                }
                self.done(id, Ok(PhpValue::Bool(all)), Vec::new());
            }
            Completion::Replies(merge) => {
                // The query must observe what the running event did before it.
                self.commit_staged();
                let asked: Vec<GatewayAddr> = plan.frames.iter().map(|o| o.to).collect();
                // A fan-out also answers for listed gateways we have no link to.
                let fan_out = !targets.is_empty() && targets.iter().all(|t| asked.contains(t));
                let missing = if fan_out {
                    self.listed
                        .iter()
                        .copied()
                        .filter(|a| !asked.contains(a))
                        .collect()
                } else {
                    Vec::new()
                };
                let deadline = now + self.config.query_timeout;
                self.calls
                    .insert(id, Gather::new(merge, asked, missing, deadline));
                for (slot, o) in plan.frames.iter().enumerate() {
                    let link = self.gateways.get(&o.to).and_then(|g| g.link);
                    if link
                        .and_then(|link| self.links.get(&link))
                        .is_some_and(|l| l.suspect)
                    {
                        // Known to be stuck: answered at once as missing, nothing sent.
                        self.stats.query_parts_suspect += 1;
                        self.fail_slot(id, slot);
                        continue;
                    }
                    let queued = link.is_some_and(|link| {
                        let ok = self.enqueue(link, frame_bytes(&o.frame));
                        if ok {
                            if let Some(l) = self.links.get_mut(&link) {
                                l.await_reply(Pending::Call { call: id, slot }, now);
                            }
                        }
                        ok
                    });
                    if !queued {
                        self.fail_slot(id, slot);
                    }
                }
                self.try_finish(id);
            }
        }
    }

    fn done(&mut self, id: CallId, result: ApiResult, unanswered: Vec<GatewayAddr>) {
        self.actions.push_back(Action::CallDone(CallDone {
            id,
            result,
            unanswered,
        }));
    }

    fn fail_slot(&mut self, call: CallId, slot: usize) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.fail(slot);
        }
        self.try_finish(call);
    }

    fn try_finish(&mut self, id: CallId) {
        if !self.calls.get(&id).is_some_and(Gather::is_complete) {
            return;
        }
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let (result, unanswered) = call.finish(self.config.timeout_policy);
        if !unanswered.is_empty() {
            self.stats.queries_incomplete += 1;
            tracing::warn!(?unanswered, "query finished without every gateway's reply");
        }
        self.done(id, result, unanswered);
    }

    // ---- links ---------------------------------------------------------------------

    fn open_link(&mut self, now: Duration, peer: LinkPeer) -> GatewayLinkId {
        let id = GatewayLinkId(self.next_link);
        self.next_link += 1;
        let link = Link::new(
            peer,
            now,
            now + self.config.connect_timeout,
            self.config.register_line_bytes_max,
        );
        self.links.insert(id, link);
        id
    }

    fn connect_gateway(&mut self, now: Duration, addr: GatewayAddr) {
        if self
            .gateways
            .get(&addr)
            .is_some_and(|g| g.link.is_some() || g.retry_at.is_some())
        {
            return;
        }
        let link = self.open_link(now, LinkPeer::Gateway(addr));
        self.gateways.entry(addr).or_default().link = Some(link);
        self.actions.push_back(Action::Connect {
            link,
            peer: Peer::Gateway(addr),
        });
        let mut body = PhpArray::new();
        let worker_key = format!("{}:{}", self.config.name, self.config.index);
        body.insert(
            PhpKey::from_bytes(b"worker_key"),
            PhpValue::str(&worker_key),
        );
        body.insert(
            PhpKey::from_bytes(b"secret_key"),
            PhpValue::str(&self.config.secret_key),
        );
        let json = json_encode(&PhpValue::Array(body)).unwrap_or_default();
        let hello = frame(
            Command::WorkerConnect,
            0,
            Bytes::new(),
            &PhpValue::Str(json),
            0,
        );
        self.enqueue(link, frame_bytes(&hello));
    }

    /// Queues `frame`, an effect of an API call or of an event's write-back, on the link of
    /// gateway `to`: staged while an event runs ([`WorkerCore::begin_event`]), queued at
    /// once otherwise. False when there is no link or it is full.
    fn send_frame(&mut self, to: GatewayAddr, frame: &Frame) -> bool {
        let Some(link) = self.gateways.get(&to).and_then(|g| g.link) else {
            return false;
        };
        if self.event_open {
            self.stage(link, frame_bytes(frame))
        } else {
            self.enqueue(link, frame_bytes(frame))
        }
    }

    /// True when `len` more bytes fit the link's bound; otherwise counts the drop.
    fn admit(&mut self, link: GatewayLinkId, len: usize) -> bool {
        let Some(l) = self.links.get(&link) else {
            return false;
        };
        let used = l.queued_bytes + l.in_flight + l.staged_bytes;
        if used.saturating_add(len) > self.config.link_queue_bytes_max {
            self.stats.frames_dropped += 1;
            self.stats.bytes_dropped += len as u64;
            self.drop_log.record("link_queue", link.0, len);
            return false;
        }
        true
    }

    /// Appends to the link's output queue within `link_queue_bytes_max`; false when dropped.
    fn enqueue(&mut self, link: GatewayLinkId, bytes: Bytes) -> bool {
        if !self.admit(link, bytes.len()) {
            return false;
        }
        let last_now = self.last_now;
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        l.queue_owed(bytes, last_now);
        self.pump(link);
        true
    }

    /// Stages a frame of the running event on the link, within `link_queue_bytes_max`
    /// (staged bytes count in it, so committing never overflows it); false when dropped
    /// (as at a full queue).
    fn stage(&mut self, link: GatewayLinkId, bytes: Bytes) -> bool {
        if !self.admit(link, bytes.len()) {
            return false;
        }
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        l.staged_bytes += bytes.len();
        l.staged.push_back(bytes);
        true
    }

    /// Moves every link's staged frames, in order, behind its queue, and hands what the
    /// window allows to the driver. The event stays open.
    fn commit_staged(&mut self) {
        let (last_now, window) = (self.last_now, self.config.link_window_bytes_max);
        for (&id, l) in self.links.iter_mut() {
            if l.staged.is_empty() {
                continue;
            }
            // Both deques keep their capacity: no allocation per event once warm.
            while let Some(bytes) = l.staged.pop_front() {
                l.queue_owed(bytes, last_now);
            }
            l.staged_bytes = 0;
            pump_link(id, l, window, &mut self.actions);
        }
    }

    /// Commits the running event's frames and closes it ([`WorkerCore::end_event`]).
    fn commit_event(&mut self) {
        self.commit_staged();
        self.event_open = false;
    }

    /// Hands queued bytes of an open link to the driver, within the window.
    fn pump(&mut self, link: GatewayLinkId) {
        let window = self.config.link_window_bytes_max;
        if let Some(l) = self.links.get_mut(&link) {
            pump_link(link, l, window, &mut self.actions);
        }
    }

    fn protocol_error(&mut self, now: Duration, link: GatewayLinkId, what: &'static str) {
        self.stats.protocol_errors += 1;
        tracing::warn!(?link, what, "closing link");
        self.actions.push_back(Action::Close {
            link,
            reason: CloseReason::Protocol(what),
        });
        // The driver does not report a close it was asked for: clean up now.
        self.handle_closed(now, link);
    }

    // ---- register ------------------------------------------------------------------

    fn read_register(&mut self, now: Duration, link: GatewayLinkId) {
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            match l.lines.decode(&mut l.inbound) {
                Ok(Some(line)) => self.on_register_line(now, line.trim_ascii_end()),
                Ok(None) => return,
                Err(LineDecodeError::TooLong { .. }) => {
                    return self.protocol_error(now, link, "register line too long")
                }
            }
        }
    }

    fn on_register_line(&mut self, now: Duration, line: &[u8]) {
        let addresses = match decode_from_register(line) {
            Ok(FromRegister::BroadcastAddresses(addresses)) => addresses,
            Ok(FromRegister::Other { event }) => {
                tracing::warn!(%event, "unexpected register event");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad data from register");
                return;
            }
        };
        let mut announced = Vec::new();
        for a in addresses {
            match a.parse::<SocketAddrV4>() {
                Ok(addr) if !announced.contains(&addr) => announced.push(addr),
                Ok(_) => {}
                Err(_) => tracing::warn!(address = %a, "gateway address is not ipv4:port, skipped"),
            }
        }
        self.apply_broadcast(now, announced);
    }

    fn apply_broadcast(&mut self, now: Duration, announced: Vec<GatewayAddr>) {
        let kept: Vec<GatewayAddr> = self
            .listed
            .iter()
            .copied()
            .filter(|a| !announced.contains(a))
            .collect();
        self.listed = announced.clone();
        if kept.is_empty() {
            self.removal_at = None;
        } else {
            self.listed.extend(kept);
            self.removal_at = Some(now + self.config.address_removal_grace);
        }
        self.announced = announced;
        for addr in self.listed.clone() {
            self.connect_gateway(now, addr);
        }
    }

    // ---- gateway input -------------------------------------------------------------

    fn read_gateway(&mut self, now: Duration, link: GatewayLinkId) {
        let size_max = u32::try_from(self.config.package_size_max).unwrap_or(u32::MAX);
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if l.skip_left > 0 {
                let n = l.skip_left.min(l.inbound.len());
                l.inbound.advance(n);
                l.skip_left -= n;
                if l.skip_left > 0 {
                    return;
                }
            }
            let Some(word) = l.inbound.first_chunk::<4>().map(|w| u32::from_be_bytes(*w)) else {
                return;
            };
            let word = word as usize;
            let reply = if l.pending.is_empty() {
                false
            } else if word < HEADER_LEN {
                true
            } else if let Some(&cmd) = l.inbound.get(4) {
                !is_event_command(cmd)
            } else {
                return;
            };
            if reply {
                let reply_max = u32::try_from(self.config.reply_size_max).unwrap_or(u32::MAX);
                match ReplyDecoder::new(reply_max).decode(&mut l.inbound) {
                    Ok(Some(payload)) => {
                        let pending = l.pop_reply(now);
                        self.on_reply(link, pending, &payload);
                    }
                    Ok(None) => return,
                    Err(_) => return self.protocol_error(now, link, "reply too large"),
                }
                continue;
            }
            if word < HEADER_LEN {
                // Known at once, no need to wait for a whole header.
                return self.protocol_error(now, link, "frame shorter than its header");
            }
            if word > self.config.package_size_max {
                // A client event over the limit costs that event only: its header says
                // whose it is and how long it is, so its bytes are discarded as they come.
                let Some(bytes) = l.inbound.first_chunk::<HEADER_LEN>() else {
                    return;
                };
                let raw = RawHeader::parse(bytes);
                if !is_event_command(raw.cmd) || raw.ext_len as usize > word - HEADER_LEN {
                    return self.protocol_error(now, link, "frame too large");
                }
                l.skip_left = word;
                self.stats.events_too_large += 1;
                let gateway = SocketAddrV4::new(raw.local_ip.into(), raw.local_port);
                tracing::warn!(
                    ?link,
                    client_id = %String::from_utf8_lossy(&client_id_text(gateway, raw.connection_id)),
                    cmd = raw.cmd,
                    len = word,
                    max = self.config.package_size_max,
                    "client event skipped: frame too large"
                );
                continue;
            }
            match FrameDecoder::new(size_max).decode(&mut l.inbound) {
                Ok(Some(frame)) => self.on_frame(link, frame),
                Ok(None) => return,
                Err(FrameDecodeError::UnknownCommand { header }) => {
                    tracing::debug!(
                        ?link,
                        cmd = header.cmd,
                        "unknown command from gateway ignored"
                    );
                }
                Err(FrameDecodeError::TooLarge { .. }) => {
                    return self.protocol_error(now, link, "frame too large")
                }
                Err(_) => return self.protocol_error(now, link, "malformed frame header"),
            }
        }
    }

    fn on_reply(&mut self, link: GatewayLinkId, pending: Option<Pending>, payload: &[u8]) {
        let value = unserialize_lenient(payload);
        match pending {
            Some(Pending::Call { call, slot }) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.answer(slot, value);
                }
                self.try_finish(call);
            }
            Some(Pending::SessionReload) => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                if !l.reloading {
                    // Abandoned (too many events held): already delivered.
                    return;
                }
                l.reloading = false;
                let Some(mut event) = l.pop_parked() else {
                    return;
                };
                event.client.session = value;
                let crc = crc32(&event.session_text);
                self.remember_session(&event.client.client_id, crc);
                self.deliver(link, event);
                self.release_parked(link);
            }
            None => {}
        }
    }

    fn on_frame(&mut self, link: GatewayLinkId, frame: Frame) {
        let kind = match frame.header.cmd {
            Command::OnConnect => ClientEventKind::Connect,
            Command::OnMessage => ClientEventKind::Message,
            Command::OnClose => ClientEventKind::Close,
            Command::OnWebsocketConnect => ClientEventKind::WebSocketConnect,
            Command::Ping => return,
            other => {
                tracing::debug!(?other, "unexpected command from gateway ignored");
                return;
            }
        };
        let h = frame.header;
        let session = if frame.ext_data.is_empty() {
            PhpValue::Null
        } else {
            unserialize_lenient(&frame.ext_data)
        };
        let event = ClientEvent {
            kind,
            client: CurrentClient {
                client_id: client_id_text(
                    SocketAddrV4::new(h.local_ip, h.local_port),
                    h.connection_id,
                ),
                gateway: SocketAddrV4::new(h.local_ip, h.local_port),
                connection_id: h.connection_id,
                session,
            },
            header: h,
            session_text: frame.ext_data.clone(),
            body: decode_body(&frame.body, h.flag),
            binary: h.flag & FLAG_BINARY != 0,
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.parked_bytes = l.parked_bytes.saturating_add(event_cost(&event));
        l.parked.push_back(event);
        if l.reloading && l.parked_over(&self.config) {
            tracing::warn!(?link, "session reload abandoned: too many events held");
            l.reloading = false;
            if let Some(head) = l.pop_parked() {
                let crc = crc32(&head.session_text);
                self.remember_session(&head.client.client_id, crc);
                self.deliver(link, head);
            }
        }
        if !self.links.get(&link).is_some_and(|l| l.reloading) {
            self.release_parked(link);
        }
    }

    /// Delivers parked events in order until one needs a session reload.
    fn release_parked(&mut self, link: GatewayLinkId) {
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            let Some(event) = l.parked.front() else {
                return;
            };
            // The client's previous event is still running: wait, keeping the link's
            // order, unless more than `parked_events_max` wait (then they go out as they are,
            // as with an abandoned reload).
            if self.events_in_flight.contains_key(&event.client.client_id)
                && !l.parked_over(&self.config)
            {
                return;
            }
            let id = event.client.client_id.clone();
            let crc = crc32(&event.session_text);
            if event.kind == ClientEventKind::Close {
                self.session_versions.remove(&id);
            } else if event.kind == ClientEventKind::Connect {
                // A new connection: whatever was known of an earlier client with this id
                // (a gateway that restarted reuses ids, and the old client's close may never
                // have come) does not apply to it.
                self.session_versions.remove(&id);
                self.remember_session(&id, crc);
            } else {
                match self.session_versions.get(&id) {
                    Some(&known) if known != crc => {
                        let cid = event.client.connection_id;
                        let reload = frame(
                            Command::GetSessionByClientId,
                            0,
                            Bytes::new(),
                            &PhpValue::str(""),
                            0,
                        );
                        let reload = Frame {
                            header: Header {
                                connection_id: cid,
                                ..reload.header
                            },
                            ..reload
                        };
                        let busy = self
                            .links
                            .get(&link)
                            .is_some_and(|l| l.pending.len() >= self.config.pending_replies_max);
                        // Over the parking bounds nothing more may wait behind a reload.
                        let over = self
                            .links
                            .get(&link)
                            .is_some_and(|l| l.parked_over(&self.config));
                        if busy {
                            self.stats.reloads_skipped_busy += 1;
                            tracing::warn!(
                                ?link,
                                "session reload skipped: too many replies awaited"
                            );
                        }
                        if !busy && !over && self.enqueue(link, frame_bytes(&reload)) {
                            self.stats.session_reloads += 1;
                            let last_now = self.last_now;
                            if let Some(l) = self.links.get_mut(&link) {
                                l.await_reply(Pending::SessionReload, last_now);
                                l.reloading = true;
                            }
                            return;
                        }
                        // Queue full: deliver with the session the event carried.
                        self.remember_session(&id, crc);
                    }
                    Some(_) => {}
                    None => self.remember_session(&id, crc),
                }
            }
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if let Some(event) = l.pop_parked() {
                self.deliver(link, event);
            }
        }
    }

    /// Hands an event that came on `link` to the business code.
    fn deliver(&mut self, link: GatewayLinkId, event: ClientEvent) {
        let in_flight = self
            .events_in_flight
            .entry(event.client.client_id.clone())
            .or_insert(InFlight { events: 0, link });
        in_flight.events += 1;
        in_flight.link = link;
        if self.event_room > 0 && self.held.is_empty() {
            self.event_room -= 1;
            self.actions.push_back(Action::Event(event));
        } else {
            self.held_bytes = self.held_bytes.saturating_add(event_cost(&event));
            self.held.push_back(event);
        }
    }

    /// The business code is done with an event of `client_id`: when it was the client's
    /// last one in flight, the events held behind it go out (their session check now sees
    /// the write-back, as in the original's single-threaded process).
    fn event_ended(&mut self, client_id: &Bytes) {
        match self.events_in_flight.get_mut(client_id) {
            Some(f) if f.events > 1 => {
                f.events -= 1;
                return;
            }
            Some(_) => {
                self.events_in_flight.remove(client_id);
            }
            None => return,
        }
        // Walk the links in order without collecting their ids (no allocation per event).
        let mut cursor: Option<GatewayLinkId> = None;
        loop {
            let next = match cursor {
                None => self.links.keys().next(),
                Some(c) => self
                    .links
                    .range((Bound::Excluded(c), Bound::Unbounded))
                    .next()
                    .map(|(k, _)| k),
            };
            let Some(&link) = next else {
                return;
            };
            if self
                .links
                .get(&link)
                .is_some_and(|l| !l.reloading && !l.parked.is_empty())
            {
                self.release_parked(link);
            }
            cursor = Some(link);
        }
    }

    /// Forgets the session versions of `gateway`'s clients. Once the link is gone, what
    /// was written back on it is applied or lost, so the next events carry the gateway's
    /// own copy; and a gateway that restarted gives the same ids to new clients, whose
    /// events must not be taken for stale and "reloaded" (sim seed 50118: another instance's
    /// version of an earlier client turned a new client's null session into `[]`).
    fn forget_sessions_of(&mut self, gateway: GatewayAddr) {
        if self.session_versions.is_empty() {
            return;
        }
        let id = client_id_text(gateway, 0);
        let prefix = &id[..CLIENT_ID_PREFIX_LEN];
        self.session_versions
            .retain(|client_id, _| !client_id.starts_with(prefix));
    }

    fn remember_session(&mut self, client_id: &Bytes, crc: u32) {
        if self.session_versions.len() < self.config.session_versions_max
            || self.session_versions.contains_key(client_id)
        {
            self.session_versions.insert(client_id.clone(), crc);
        }
    }
}

impl WorkerCore {
    /// `l` made progress at `now`: a byte read (or the connection made) when `read`, else
    /// a byte written. No longer suspect, unless it only wrote while the request of a
    /// reply it owes is out.
    fn progress(l: &mut Link, now: Duration, read: bool) {
        l.progress_at = l.progress_at.max(now);
        if read {
            l.read_at = l.read_at.max(now);
        }
        if l.suspect && (read || l.front_written_at.is_none()) {
            l.suspect = false;
            if let LinkPeer::Gateway(addr) = l.peer {
                tracing::info!(gateway = %addr, "gateway made progress again: no longer suspect");
            }
        }
    }

    /// Marks suspect the gateway links that owe something and made no progress for
    /// `suspect_after`; the query parts waiting on them fail at once (their pending
    /// entries stay, so the late replies are matched and discarded).
    fn check_suspects(&mut self, now: Duration) {
        let after = self.config.suspect_after;
        let due: Vec<GatewayLinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.suspect_at(after).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for link in due {
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            l.suspect = true;
            self.stats.gateways_suspected += 1;
            if let LinkPeer::Gateway(addr) = l.peer {
                tracing::warn!(
                    gateway = %addr,
                    silent_for = ?now.saturating_sub(l.silent_since().unwrap_or(now)),
                    awaited_replies = l.pending.len(),
                    unwritten_bytes = l.queued_bytes + l.in_flight,
                    "gateway suspect: no progress; queries stop waiting for it"
                );
            }
            let calls: Vec<(CallId, usize)> = l
                .pending
                .iter()
                .filter_map(|p| match *p {
                    Pending::Call { call, slot } => Some((call, slot)),
                    Pending::SessionReload => None,
                })
                .collect();
            for (call, slot) in calls {
                self.fail_slot(call, slot);
            }
        }
    }

    /// Gateways whose link is suspect now (no progress for `suspect_after` while owing).
    pub fn suspect_gateways(&self) -> Vec<GatewayAddr> {
        self.links
            .values()
            .filter(|l| l.suspect)
            .filter_map(|l| match l.peer {
                LinkPeer::Gateway(addr) => Some(addr),
                LinkPeer::Register(_) => None,
            })
            .collect()
    }

    /// The next register retry delay: uniform in `[interval/2, interval]`.
    fn register_retry_delay(&mut self) -> Duration {
        let interval = self.config.register_retry_interval;
        let half = interval / 2;
        let span = u64::try_from((interval - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(self.jitter.below(span.saturating_add(1)))
    }
}

/// Hands queued bytes of `l` (link `id`), if open, to the driver within `window`.
fn pump_link(id: GatewayLinkId, l: &mut Link, window: usize, actions: &mut VecDeque<Action>) {
    if l.opened_at.is_none() {
        return;
    }
    while l.in_flight < window {
        let Some(bytes) = l.queue.pop_front() else {
            break;
        };
        l.queued_bytes -= bytes.len();
        l.in_flight += bytes.len();
        actions.push_back(Action::Transmit { link: id, bytes });
    }
}

fn backoff(config: &WorkerConfig, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(16);
    config
        .reconnect_delay
        .saturating_mul(factor)
        .min(config.reconnect_delay_max.max(config.reconnect_delay))
}

/// Lets `deque` keep no more slots than its length or `kept`, whichever is more.
fn shrink_deque<T>(deque: &mut VecDeque<T>, kept: usize) {
    if deque.capacity() > kept {
        deque.shrink_to(kept);
    }
}

/// Estimated bytes an event holds (its frame's parts plus a fixed overhead). The session
/// counts twice: a waiting event keeps it as received (for the session check at its end)
/// and unserialized for the guest (measured: 26 MB of events with 4 KiB sessions took
/// 54 MB while they waited).
fn event_cost(event: &ClientEvent) -> usize {
    let body = match &event.body {
        PhpValue::Str(b) => b.len(),
        other => serialize(other).len(),
    };
    let session = event.session_text.len().saturating_mul(2);
    (HEADER_LEN + 256 + body + event.client.client_id.len()).saturating_add(session)
}

/// Commands a gateway sends on a worker link; no serialized reply starts with these bytes.
fn is_event_command(byte: u8) -> bool {
    matches!(byte, 1 | 3 | 4 | 201 | 205)
}

/// CRC-32 (IEEE), PHP's `crc32()`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
#[path = "core_tests/mod.rs"]
mod tests;

#[cfg(test)]
#[path = "fault_tests.rs"]
pub(crate) mod fault_tests;

#[cfg(test)]
#[path = "oversize_tests.rs"]
mod oversize_tests;

/// Sets [`FLAG_BINARY`] on the frames of `plan` that carry a message for clients.
fn mark_binary(plan: &mut Plan) {
    for o in &mut plan.frames {
        let cmd = o.frame.header.cmd;
        let sends = [
            Command::SendToOne,
            Command::SendToAll,
            Command::SendToUid,
            Command::SendToGroup,
        ];
        if sends.contains(&cmd) {
            o.frame.header.flag |= FLAG_BINARY;
        }
    }
}
