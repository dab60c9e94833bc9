//! What the core asks its driver to do, and the handles it names connections by.

use std::fmt;

use bytes::Bytes;

/// A client connection: its per-gateway `connection_id` (spec 3), allocated by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u32);

/// An internal link (worker or API caller), allocated by the core, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// Who a transmit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A client on the public port.
    Client(ConnectionId),
    /// A worker or API link on the internal port.
    Link(LinkId),
    /// The register connection with this index in `register_addresses`.
    Register(usize),
}

/// Why the core closes a connection (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// KICK (cmd 7).
    Kicked,
    /// DESTROY (cmd 8).
    Destroyed,
    /// Silent for 2L+2 heartbeat ticks.
    HeartbeatTimeout,
    /// A websocket client did not complete its handshake within `handshake_timeout`.
    HandshakeTimeout,
    /// No worker registered when an event had to be forwarded (spec 5.2).
    NoWorker,
    /// The client's protocol asked to close (websocket close frame, bad handshake).
    ProtocolClose,
    /// The client sent bytes its protocol cannot decode, or a message over the bound.
    ProtocolError,
    /// A link sent a command before authenticating (spec 4).
    Unauthorised,
    /// WORKER_CONNECT / GATEWAY_CLIENT_CONNECT with a wrong or missing secret.
    BadSecret,
    /// A link sent a malformed frame (bad length) or one over `package_size_max`.
    BadFrame,
    /// A worker registered again under the same key; the old link is closed.
    WorkerReplaced,
    /// A reply could not be queued (over `reply_size_max`, or the link's output past
    /// `link_pending_max` plus one largest reply): closing keeps replies aligned.
    ReplyOverflow,
    /// The register sent a line over
    /// [`FROM_REGISTER_LINE_MAX`](crate::protocol::register::FROM_REGISTER_LINE_MAX).
    RegisterLineTooLong,
    /// The gateway is shutting down ([`GatewayCore::handle_shutdown`](super::GatewayCore::handle_shutdown)).
    Shutdown,
}

/// One instruction for the driver; see the drain contract on
/// [`GatewayCore`](super::GatewayCore).
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `bytes` to `to`. Broadcasts hand the same `Bytes` to every recipient.
    Transmit {
        /// Recipient.
        to: Target,
        /// Bytes to write, in order after earlier transmits to the same target.
        bytes: Bytes,
    },
    /// Close a client. With `after_flush` write what is queued first, else drop it.
    /// The driver reports the end with `handle_client_closed` (the id stays reserved
    /// until then).
    CloseClient {
        /// The client.
        id: ConnectionId,
        /// Flush pending output before closing.
        after_flush: bool,
        /// Why.
        reason: CloseReason,
    },
    /// Close a link. With `after_flush` write what is queued first. The driver reports
    /// the end with `handle_link_closed`.
    CloseLink {
        /// The link.
        id: LinkId,
        /// Flush pending output before closing.
        after_flush: bool,
        /// Why.
        reason: CloseReason,
    },
    /// Open (or reopen) the connection to register `index`; report with
    /// `handle_register_connected`, or `handle_register_closed` on failure.
    ConnectRegister {
        /// Index into `register_addresses`.
        index: usize,
    },
    /// Stop reading link `id` (pacing, see [`GatewayConfig::link_pause_max`]): its bytes
    /// wait in the socket until [`Action::ResumeLink`]. Writing to it goes on. The core
    /// may still be handed what the driver read before it carried this out.
    ///
    /// [`GatewayConfig::link_pause_max`]: super::GatewayConfig::link_pause_max
    PauseLink {
        /// The link.
        id: LinkId,
    },
    /// Read link `id` again after a [`Action::PauseLink`].
    ResumeLink {
        /// The link.
        id: LinkId,
    },
    /// Close the connection to register `index` without flushing; the driver reports
    /// the end with `handle_register_closed` (which schedules the reconnect).
    CloseRegister {
        /// Index into `register_addresses`.
        index: usize,
        /// Why.
        reason: CloseReason,
    },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Transmit { to, bytes } => {
                write!(f, "Transmit({to:?}, {} bytes: {:?})", bytes.len(), bytes)
            }
            Action::CloseClient {
                id,
                after_flush,
                reason,
            } => write!(
                f,
                "CloseClient({id:?}, after_flush={after_flush}, {reason:?})"
            ),
            Action::CloseLink {
                id,
                after_flush,
                reason,
            } => write!(
                f,
                "CloseLink({id:?}, after_flush={after_flush}, {reason:?})"
            ),
            Action::ConnectRegister { index } => write!(f, "ConnectRegister({index})"),
            Action::PauseLink { id } => write!(f, "PauseLink({id:?})"),
            Action::ResumeLink { id } => write!(f, "ResumeLink({id:?})"),
            Action::CloseRegister { index, reason } => {
                write!(f, "CloseRegister({index}, {reason:?})")
            }
        }
    }
}

/// Why an accept was refused; the driver drops the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `clients_max` clients are connected.
    #[error("clients_max reached")]
    ClientsMax,
    /// `links_max` links are connected.
    #[error("links_max reached")]
    LinksMax,
    /// Every connection id is in use (4 294 967 295 clients).
    #[error("no free connection id")]
    NoConnectionId,
}

/// Counters of what the core dropped at a bound or on bad input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Messages for clients dropped at `client_pending_max` / `pending_before_handshake_max`.
    pub client_messages_dropped: u64,
    /// Frames for links (events, replies, pings) dropped at `link_pending_max`.
    pub link_frames_dropped: u64,
    /// Messages that could not be converted for a client (e.g. JSON of invalid UTF-8).
    pub client_messages_unencodable: u64,
    /// Clients destroyed because no worker was registered.
    pub clients_without_worker: u64,
    /// Commands with an unknown number.
    pub unknown_commands: u64,
    /// Messages decoded from clients (each forwarded as an ON_MESSAGE).
    pub client_messages_in: u64,
    /// Messages queued for clients (one per recipient of a send or broadcast).
    pub client_messages_out: u64,
    /// Bytes read from clients.
    pub client_bytes_in: u64,
    /// Bytes the driver wrote to clients.
    pub client_bytes_out: u64,
    /// Bytes read from links.
    pub link_bytes_in: u64,
    /// Bytes the driver wrote to links.
    pub link_bytes_out: u64,
    /// Pause episodes of worker links (pacing: a client fed by the link reached its
    /// high-water mark).
    pub link_pauses: u64,
    /// Pause episodes that reached `link_pause_max` (their clients then fell back to
    /// drop-and-count).
    pub link_pauses_at_bound: u64,
    /// Time links spent paused, in microseconds, counted when each episode ends.
    pub link_paused_micros: u64,
}
